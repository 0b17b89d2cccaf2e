//! Fixtures written straight into the control plane's database (SQLite or PostgreSQL, through sqlx's
//! `Any` driver and the store's own schema): a finished study of many trials, each with its epochs
//! and a result blob as large as a real one, in one transaction — seconds for 10,000 trials where
//! running them would take hours. What `tests/browser/seed_trials.py` does for the dashboard test.

use sqlx::any::AnyPoolOptions;
use tanren_core::TrialResult;

/// Classes and test images of the result blob each seeded trial carries (a confusion matrix and one
/// prediction per test image, as a real trial stores).
const BLOB_CLASSES: usize = 10;
const BLOB_TEST_IMAGES: usize = 2000;

/// A small deterministic generator (xorshift), so a seed gives the same study every time.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[(self.next() % xs.len() as u64) as usize]
    }
}

/// Insert a finished (`complete`) study named `name` on `dataset_id` with `spec` (a stored study's
/// spec JSON) and `n` trials: about 85% complete with a result blob and 3 epochs, the rest pruned or
/// failed. Returns the study's id. The control plane may be running: nothing it holds in memory
/// refers to a finished study.
pub async fn finished_study(
    database_url: &str,
    dataset_id: i64,
    spec: &str,
    name: &str,
    n: usize,
    seed: u64,
) -> anyhow::Result<i64> {
    sqlx::any::install_default_drivers();
    let pool = AnyPoolOptions::new()
        .max_connections(1)
        .connect(database_url)
        .await?;
    let now = tanren_store::now_ms();
    let mut tx = pool.begin().await?;
    let (study_id,): (i64,) = sqlx::query_as(
        "INSERT INTO studies (name, dataset_id, state, spec, max_trials, created_at, finished_at, end_reason)
         VALUES ($1, $2, 'complete', $3, $4, $5, $6, 'trial_budget') RETURNING id",
    )
    .bind(name)
    .bind(dataset_id)
    .bind(spec)
    .bind(n as i64)
    .bind(now - n as i64 * 1000)
    .bind(now)
    .fetch_one(&mut *tx)
    .await?;
    let mut rng = Rng(seed.max(1));
    for i in 0..n {
        let lr = 10f64.powf(-4.0 + 2.0 * rng.unit());
        let params = serde_json::json!({
            "learning_rate": lr,
            "batch_size": rng.pick(&[8, 16, 32, 64, 128]),
            "epochs": 3,
            "image_size": 16 + rng.next() % 49,
            "optimizer": rng.pick(&["adam", "adamw", "sgd"]),
            "conv_blocks": 1 + rng.next() % 4,
            "channels": 8 + rng.next() % 57,
            "dropout": 0.5 * rng.unit(),
        })
        .to_string();
        let roll = rng.unit();
        let state = if roll < 0.85 {
            "complete"
        } else if roll < 0.95 {
            "pruned"
        } else {
            "failed"
        };
        let acc = (0.95 - (-3.0 - lr.log10()).abs() * 0.2 + 0.1 * (rng.unit() - 0.5)).clamp(0.3, 0.99);
        let ms = 0.1 + 3.0 * rng.unit();
        let t0 = now - (n - i) as i64 * 1000;
        let done = state == "complete";
        let blob = done.then(|| blob(acc, ms, &mut rng)).transpose()?;
        let (trial_id,): (i64,) = sqlx::query_as(
            "INSERT INTO trials (study_id, number, state, params, config, worker_id, device, val_accuracy,
               val_loss, test_accuracy, test_loss, train_seconds, inference_ms, inference_ips, parameter_count,
               model_bytes, epochs_completed, result, error, failure_kind, created_at, started_at, finished_at)
             VALUES ($1, $2, $3, $4, '{}', 'seed-worker', 'cpu', $5, $6, $7, $8, $9, $10, $11, $12, $13, $14,
               $15, $16, $17, $18, $19, $20)
             RETURNING id",
        )
        .bind(study_id)
        .bind(i as i64)
        .bind(state)
        .bind(params)
        .bind(done.then_some(acc))
        .bind(done.then_some(1.0 - acc))
        .bind(done.then_some(acc - 0.02))
        .bind(done.then_some(1.1 - acc))
        .bind(done.then_some(5.0 + 55.0 * rng.unit()))
        .bind(done.then_some(ms))
        .bind(done.then_some(1000.0 / ms))
        .bind(done.then_some(1000 + (rng.next() % 500_000) as i64))
        .bind(done.then_some(4096i64))
        .bind(if done { 3i64 } else { 1 })
        .bind(blob)
        .bind((state == "failed").then_some("seeded failure"))
        .bind((state == "failed").then_some("error"))
        .bind(t0)
        .bind(t0 + 50)
        .bind(t0 + 900)
        .fetch_one(&mut *tx)
        .await?;
        let epochs = if done { 3 } else { 1 };
        for e in 1..=epochs {
            sqlx::query(
                "INSERT INTO trial_epochs (trial_id, epoch, train_loss, val_loss, val_accuracy, elapsed_seconds)
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(trial_id)
            .bind(e as i64)
            .bind(1.0 / e as f64)
            .bind(1.1 / e as f64)
            .bind(acc * (0.7 + 0.1 * e as f64))
            .bind(3.0 * e as f64)
            .execute(&mut *tx)
            .await?;
        }
    }
    tx.commit().await?;
    pool.close().await;
    Ok(study_id)
}

/// A result as large as a real trial's on a 10-class, 2,000-image test split.
fn blob(acc: f64, ms: f64, rng: &mut Rng) -> anyhow::Result<String> {
    let k = BLOB_CLASSES;
    let predictions: Vec<u32> = (0..BLOB_TEST_IMAGES)
        .map(|_| (rng.next() % k as u64) as u32)
        .collect();
    let mut confusion = vec![vec![0u64; k]; k];
    for (i, p) in predictions.iter().enumerate() {
        confusion[i % k][*p as usize] += 1;
    }
    let r = TrialResult {
        val_accuracy: acc,
        val_loss: 1.0 - acc,
        test_accuracy: acc - 0.02,
        test_loss: 1.1 - acc,
        per_class_accuracy: (0..k).map(|_| rng.unit()).collect(),
        confusion,
        test_predictions: predictions,
        train_seconds: 30.0,
        prepare_seconds: 1.0,
        inference_ms_per_image: ms,
        inference_images_per_second: 1000.0 / ms,
        parameter_count: 100_000,
        model_bytes: 4096,
        epochs_completed: 3,
        device: "cpu".into(),
        stopped_early: false,
        peak_memory_bytes: None,
    };
    Ok(serde_json::to_string(&r)?)
}
