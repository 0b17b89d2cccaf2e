//! Dynamic batching: requests from many connections become one forward pass.
//!
//! Each image of a request is one job. Jobs go into one queue per model; a dedicated OS thread (the
//! only one that touches that model's network) takes the oldest job and keeps collecting until the
//! batch holds `max_batch` images or the oldest job has waited `max_delay`, runs the batch, and answers
//! every job through its own oneshot channel. It waits only while another request is on its way
//! (announced by its handler, still decoding): a lone request runs at once instead of paying
//! `max_delay` for company that cannot come.
//!
//! Invariant: every job accepted by [`Batcher::submit`] is answered exactly once — with its own row
//! of the output, an error for the whole batch, or "deadline exceeded" — or dropped only because its
//! requester already went away. A request is admitted whole or refused whole: the queue bound counts
//! images, and a request whose images do not all fit is refused (503) before any is queued, so the
//! queue never grows past `max_queue` and memory stays bounded under a flood.

use crate::error::ServeError;
use crate::model::{Input, Loaded};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, TryRecvError};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tch::{Kind, Tensor};
use tokio::sync::oneshot;

/// One image, preprocessed, C×H×W.
pub enum ImageData {
    /// uint8 pixels from the training pipeline's decode + resize.
    Pixels(Vec<u8>),
    /// float32, already normalised (v2 FP32 clients).
    Normalized(Vec<f32>),
}

/// One image's answer: its row of logits and of probabilities.
#[derive(Debug, Clone)]
pub struct Row {
    pub logits: Vec<f32>,
    pub probabilities: Vec<f32>,
}

struct Job {
    data: ImageData,
    enqueued: Instant,
    deadline: Instant,
    reply: oneshot::Sender<Result<Row, ServeError>>,
}

#[derive(Debug, Clone, Copy)]
pub struct BatchConfig {
    pub max_batch: usize,
    pub max_delay: Duration,
    /// Images waiting in the queue, at most.
    pub max_queue: usize,
}

/// Counters for `/v1/models` and the tests: proof that batching happens.
#[derive(Debug, Default)]
pub struct Stats {
    pub images: AtomicU64,
    pub batches: AtomicU64,
    pub largest_batch: AtomicUsize,
    pub expired: AtomicU64,
}

pub struct Batcher {
    tx: mpsc::Sender<Job>,
    queued: Arc<AtomicUsize>,
    /// Requests announced (decoding their images) but not yet queued.
    coming: Arc<AtomicUsize>,
    config: BatchConfig,
    pub stats: Arc<Stats>,
}

impl Batcher {
    /// Start the model's batching thread. The thread ends when the `Batcher` is dropped and the queue
    /// is drained.
    pub fn start(model: Loaded, config: BatchConfig) -> Self {
        let (tx, rx) = mpsc::channel::<Job>();
        let queued = Arc::new(AtomicUsize::new(0));
        let coming = Arc::new(AtomicUsize::new(0));
        let stats = Arc::new(Stats::default());
        let (q, c, s) = (queued.clone(), coming.clone(), stats.clone());
        std::thread::Builder::new()
            .name(format!("batcher-{}", model.info.name))
            .spawn(move || run(model, rx, q, c, s, config))
            .expect("spawn the batcher thread");
        Batcher {
            tx,
            queued,
            coming,
            config,
            stats,
        }
    }

    /// Say a request is on its way (its images are being decoded), so a batch being collected waits
    /// for it; the guard withdraws the announcement when dropped (after `submit` queued its images,
    /// or on any early return).
    pub fn announce(&self) -> Coming {
        self.coming.fetch_add(1, Ordering::AcqRel);
        Coming(self.coming.clone())
    }

    /// Queue every image of one request (all or none) and wait for all their rows, in order.
    pub async fn submit(
        &self,
        images: Vec<ImageData>,
        deadline: Instant,
        coming: Coming,
    ) -> Result<Vec<Row>, ServeError> {
        let n = images.len();
        self.reserve(n)?;
        let mut waiting = Vec::with_capacity(n);
        let now = Instant::now();
        for (i, data) in images.into_iter().enumerate() {
            let (reply, rx) = oneshot::channel();
            let job = Job {
                data,
                enqueued: now,
                deadline,
                reply,
            };
            if self.tx.send(job).is_err() {
                self.queued.fetch_sub(n - i, Ordering::AcqRel);
                return Err(ServeError::ShuttingDown);
            }
            waiting.push(rx);
        }
        drop(coming);
        let all = async {
            let mut rows = Vec::with_capacity(n);
            for rx in waiting {
                rows.push(rx.await.map_err(|_| ServeError::ShuttingDown)??);
            }
            Ok(rows)
        };
        match tokio::time::timeout_at(deadline.into(), all).await {
            Ok(r) => r,
            Err(_) => Err(ServeError::DeadlineExceeded),
        }
    }

    /// Take `n` queue slots or refuse the whole request.
    fn reserve(&self, n: usize) -> Result<(), ServeError> {
        let max = self.config.max_queue;
        if n > max {
            // Retrying would never help: this is the request's size, not the server's load.
            return Err(ServeError::TooLarge(format!(
                "{n} images in one request can never fit the queue of {max} (--max-queue)"
            )));
        }
        self.queued
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |q| {
                (q + n <= max).then_some(q + n)
            })
            .map(|_| ())
            .map_err(|q| {
                ServeError::Overloaded(format!(
                    "{q} images queued, {n} more would pass the queue limit of {max} (--max-queue)"
                ))
            })
    }

    /// Images per forward pass, at most, for this model.
    pub fn max_batch(&self) -> usize {
        self.config.max_batch
    }

    pub fn queued(&self) -> usize {
        self.queued.load(Ordering::Acquire)
    }
}

/// Withdraws a request's announcement (see [`Batcher::announce`]) when dropped.
pub struct Coming(Arc<AtomicUsize>);

impl Drop for Coming {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

fn run(
    model: Loaded,
    rx: mpsc::Receiver<Job>,
    queued: Arc<AtomicUsize>,
    coming: Arc<AtomicUsize>,
    stats: Arc<Stats>,
    cfg: BatchConfig,
) {
    let max = cfg.max_batch.max(1);
    while let Ok(first) = rx.recv() {
        let flush_at = first.enqueued + cfg.max_delay;
        let mut batch = vec![first];
        while batch.len() < max {
            // What is already queued joins at once.
            match rx.try_recv() {
                Ok(job) => {
                    batch.push(job);
                    continue;
                }
                Err(TryRecvError::Disconnected) => break,
                Err(TryRecvError::Empty) => {}
            }
            // Wait for more only while someone is on the way, and not past the oldest job's delay.
            let wait = flush_at.saturating_duration_since(Instant::now());
            if wait.is_zero() || coming.load(Ordering::Acquire) == 0 {
                break;
            }
            match rx.recv_timeout(wait) {
                Ok(job) => batch.push(job),
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => break,
            }
        }
        queued.fetch_sub(batch.len(), Ordering::AcqRel);
        let now = Instant::now();
        let mut live = Vec::with_capacity(batch.len());
        for job in batch {
            if job.reply.is_closed() {
                continue; // the requester gave up (deadline, disconnect): no work for nobody
            }
            if job.deadline <= now {
                stats.expired.fetch_add(1, Ordering::Relaxed);
                let _ = job.reply.send(Err(ServeError::DeadlineExceeded));
                continue;
            }
            live.push(job);
        }
        if live.is_empty() {
            continue;
        }
        stats.batches.fetch_add(1, Ordering::Relaxed);
        stats.images.fetch_add(live.len() as u64, Ordering::Relaxed);
        stats.largest_batch.fetch_max(live.len(), Ordering::Relaxed);
        // Pixel and float jobs run as (at most) two forward passes; each answers its own jobs.
        let (pixels, floats): (Vec<Job>, Vec<Job>) = live
            .into_iter()
            .partition(|j| matches!(j.data, ImageData::Pixels(_)));
        for group in [pixels, floats] {
            if !group.is_empty() {
                answer(&model, group);
            }
        }
    }
}

fn answer(model: &Loaded, jobs: Vec<Job>) {
    let n = jobs.len() as i64;
    let (c, s) = (model.info.channels as i64, model.info.image_size as i64);
    let input = match &jobs[0].data {
        ImageData::Pixels(_) => {
            let mut all = Vec::with_capacity(jobs.len() * (c * s * s) as usize);
            for j in &jobs {
                if let ImageData::Pixels(p) = &j.data {
                    all.extend_from_slice(p);
                }
            }
            Input::Pixels(Tensor::from_slice(&all).view([n, c, s, s]))
        }
        ImageData::Normalized(_) => {
            let mut all = Vec::with_capacity(jobs.len() * (c * s * s) as usize);
            for j in &jobs {
                if let ImageData::Normalized(p) = &j.data {
                    all.extend_from_slice(p);
                }
            }
            Input::Normalized(Tensor::from_slice(&all).view([n, c, s, s]).to_kind(Kind::Float))
        }
    };
    let k = model.info.classes.len();
    match model.forward(input) {
        Ok((logits, probs)) => {
            for (i, job) in jobs.into_iter().enumerate() {
                let row = Row {
                    logits: logits[i * k..(i + 1) * k].to_vec(),
                    probabilities: probs[i * k..(i + 1) * k].to_vec(),
                };
                let _ = job.reply.send(Ok(row));
            }
        }
        Err(e) => {
            tracing::error!(model = %model.info.name, error = %e, "forward pass failed");
            for job in jobs {
                let _ = job.reply.send(Err(ServeError::Internal(e.to_string())));
            }
        }
    }
}
