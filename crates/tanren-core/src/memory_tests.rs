use super::*;
use crate::config::ResnetSpec;
use tanren_search::ParamValue;

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

fn cfg(image: u32, batch: u32, optimizer: &str) -> TrainConfig {
    let mut p = crate::space::seed_params();
    p.insert("image_size".into(), ParamValue::Int(image as i64));
    p.insert("batch_size".into(), ParamValue::Int(batch as i64));
    p.insert("optimizer".into(), ParamValue::Cat(optimizer.into()));
    crate::space::train_config(&p, 10, 0).expect("valid")
}

#[test]
fn activations_of_the_seed_cnn_layer_by_layer() {
    let spec = ModelSpec::seed_cnn(10, 28);
    let input = 3 * 28 * 28;
    let conv_relu = 2 * 16 * 28 * 28;
    let pooled_and_indices = 3 * 16 * 14 * 14;
    let head = 2 * 16 * 14 * 14 + 2 * 10;
    assert_eq!(
        activation_floats(&spec),
        input + conv_relu + pooled_and_indices + head
    );
}

#[test]
fn the_estimate_grows_with_batch_image_optimizer_and_data() {
    let small = trial_memory(&cfg(32, 32, "adam"), 0, false);
    let big_batch = trial_memory(&cfg(32, 128, "adam"), 0, false);
    assert_eq!(big_batch.activations, 4 * small.activations);
    assert_eq!(big_batch.input, 4 * small.input);
    assert_eq!(
        big_batch.weights, small.weights,
        "weights do not depend on the batch"
    );
    assert!(trial_memory(&cfg(64, 32, "adam"), 0, false).activations > 3 * small.activations);
    // Adam keeps two tensors per weight, SGD with momentum one, plain SGD none: 4, 3, 2 copies.
    let mut sgd = cfg(32, 32, "sgd");
    sgd.momentum = 0.9;
    assert_eq!(trial_memory(&sgd, 0, false).weights * 4, small.weights * 3);
    sgd.momentum = 0.0;
    assert_eq!(trial_memory(&sgd, 0, false).weights * 2, small.weights);
    let c = cfg(32, 32, "adam");
    let data = dataset_bytes(&c, 1000);
    assert_eq!(data, 1000 * 3 * 32 * 32);
    assert_eq!(trial_memory(&c, data, false).total(), small.total() + data);
    assert!(
        trial_memory(&c, 0, true).total() > small.total(),
        "cuDNN workspace"
    );
}

#[test]
fn a_cifar_resnet_20_at_batch_128_needs_hundreds_of_megabytes_not_gigabytes() {
    // PyTorch measures roughly 0.3-0.5 GiB of activations for this network and batch; the estimate
    // may be larger (it must not be smaller) but not absurdly so.
    let mut c = cfg(32, 128, "sgd");
    c.model = ModelSpec::Resnet(ResnetSpec {
        in_channels: 3,
        num_classes: 10,
        image_size: 32,
        depth: 20,
        width: 16,
    });
    let m = trial_memory(&c, 0, true);
    assert!(m.activations > 300 * MIB && m.activations < 2 * GIB, "{m:?}");
    assert!(m.weights < 10 * MIB, "0.27 M weights: {m:?}");
}

fn state(total: u64, free_now: Option<u64>, free_idle: u64, reserved: u64) -> MemoryState {
    MemoryState {
        total,
        free_now,
        free_idle,
        reserved,
    }
}

#[test]
fn admission_fits_is_busy_beside_running_trials_and_never_past_the_device() {
    // Nothing running, plenty free.
    assert_eq!(
        admit(GIB, &state(16 * GIB, Some(12 * GIB), 12 * GIB, 0)),
        Admission::Fits
    );
    // Two running trials reserved 10 GiB of the 12 free when idle: 2 GiB left, 3 GiB needed.
    assert_eq!(
        admit(3 * GIB, &state(16 * GIB, Some(11 * GIB), 12 * GIB, 10 * GIB)),
        Admission::Busy {
            need: 3 * GIB,
            free: 2 * GIB
        }
    );
    // The reservation comes off the idle figure, not off what is free now (the running trials have
    // used part of it already), so it is not counted twice.
    assert_eq!(
        admit(GIB, &state(16 * GIB, Some(4 * GIB), 12 * GIB, 10 * GIB)),
        Admission::Fits
    );
    // ... but what is free now still bounds it (another process took memory).
    assert_eq!(
        admit(GIB, &state(16 * GIB, Some(GIB / 2), 12 * GIB, 0)),
        Admission::Busy {
            need: GIB,
            free: GIB / 2
        }
    );
    // Unknown free memory (CUDA without cudaMemGetInfo): the total less the reservations.
    assert_eq!(
        admit(5 * GIB, &state(16 * GIB, None, 16 * GIB, 10 * GIB)),
        Admission::Fits
    );
    assert!(matches!(
        admit(7 * GIB, &state(16 * GIB, None, 16 * GIB, 10 * GIB)),
        Admission::Busy { .. }
    ));
    // More than the device has: never, whatever runs.
    assert_eq!(
        admit(17 * GIB, &state(16 * GIB, Some(16 * GIB), 16 * GIB, 0)),
        Admission::Never {
            need: 17 * GIB,
            limit: 16 * GIB
        }
    );
}

#[test]
fn a_batch_that_fits_alone_does_not_fit_twice() {
    // What --slots 2 on a small device means: the same trial twice only if two estimates fit.
    let c = cfg(128, 256, "adam");
    let need = trial_memory(&c, 0, true).total();
    let total = need * 3 / 2;
    assert_eq!(admit(need, &state(total, Some(total), total, 0)), Admission::Fits);
    assert!(matches!(
        admit(need, &state(total, Some(total - need / 4), total, need)),
        Admission::Busy { .. }
    ));
}

#[test]
fn bytes_read_for_a_person() {
    assert_eq!(human_bytes(812 * MIB), "812 MiB");
    assert_eq!(human_bytes(3 * GIB + 400 * MIB), "3.4 GiB");
    assert_eq!(human_bytes(10), "1 MiB");
}
