//! Ingest a zip and build its decode cache, printing what happened and how long each step took:
//! `cargo run --release -p tanren-dataset --example ingest -- <zip> <out_dir> [size] [channels]`.
//! A manual check on real uploads (e.g. ../shared/datasets/mnist-digits.zip), not part of the tests.

use std::path::PathBuf;
use std::time::Instant;

use tanren_dataset::{ingest_zip, load_or_build, Limits, Split};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [zip, out, rest @ ..] = &args[..] else {
        return Err("usage: ingest <zip> <out_dir> [size] [channels]".into());
    };
    let size: u32 = rest.first().map_or(Ok(128), |s| s.parse())?;
    let channels: u32 = rest.get(1).map_or(Ok(3), |s| s.parse())?;
    let out = PathBuf::from(out);

    let t = Instant::now();
    let m = ingest_zip(zip.as_ref(), &out, &Limits::default(), 0)?;
    println!(
        "ingest: {:.2}s, layout {:?}, sha256 {}",
        t.elapsed().as_secs_f64(),
        m.layout,
        m.sha256
    );
    for c in &m.classes {
        println!(
            "  class {} {:?}: train {}, test {}",
            c.index, c.name, c.train, c.test
        );
    }
    println!("  skipped {}", m.skipped.len());

    let cache = out.join("cache");
    for pass in ["build", "reload"] {
        for split in [Split::Train, Split::Test] {
            let t = Instant::now();
            let (p, status) = load_or_build(&out, &m, split, size, channels, &cache)?;
            println!(
                "cache {pass} {split:?} {size}px {channels}c: {} images, {:?}, {:.2}s",
                p.n,
                status,
                t.elapsed().as_secs_f64()
            );
        }
    }
    Ok(())
}
