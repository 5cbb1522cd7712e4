//! The batches of a run of training steps, read from an image set on disk by a background
//! thread a few steps ahead of the trainer, so training at paper scale neither holds the
//! set in memory nor waits on the disk at every step.
//!
//! The thread takes each step's indices from [`DataOrder`], a pure function of the step,
//! so a resumed run gets exactly the batches of an uninterrupted one whatever the prefetch
//! depth. The bounded channel caps memory at `prefetch` ready batches plus the one being
//! read.

use super::data_order::DataOrder;
use crate::artifact::{RandomAccess, RandomAccessError};
use histodiff_engine::stage::StageError;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tch::Tensor;

/// Ready batches to keep ahead of the trainer: enough to hide a slow read, few enough that
/// batches of 256 images at 256² px (50 MB each) cost little memory.
pub const DEFAULT_PREFETCH: usize = 3;

#[derive(Debug, thiserror::Error)]
pub enum LoaderError {
    #[error("batch loader: the data order draws from {order} images but the set holds {set}")]
    SizeMismatch { order: usize, set: usize },
    #[error("batch loader: the image set is empty")]
    EmptySet,
    #[error("batch loader: cannot start its thread: {0}")]
    Spawn(std::io::Error),
    #[error("batch of step {step}: {source}")]
    Read {
        step: u64,
        source: RandomAccessError,
    },
    #[error("batch of step {step}: {source}")]
    Tensor { step: u64, source: tch::TchError },
    #[error("batch loader: asked for step {asked} but its next batch is step {next}")]
    OutOfOrder { asked: u64, next: u64 },
    #[error("batch loader: asked for step {asked}, past the end of its run at step {end}")]
    PastEnd { asked: u64, end: u64 },
    #[error("batch loader: its thread ended before step {step}")]
    Died { step: u64 },
}

/// Bad data and a mismatched set are the input's fault; the rest are the loader's.
impl From<LoaderError> for StageError {
    fn from(e: LoaderError) -> Self {
        match e {
            LoaderError::Read { .. } | LoaderError::SizeMismatch { .. } | LoaderError::EmptySet => {
                StageError::Invalid(e.to_string())
            }
            _ => StageError::other(e),
        }
    }
}

/// The batch of one step, on the CPU.
#[derive(Debug)]
pub struct LoadedBatch {
    pub step: u64,
    /// uint8 (b, 3, H, W).
    pub images: Tensor,
    /// int64 (b,), for a labeled set.
    pub labels: Option<Tensor>,
}

/// What the loader's thread has prepared so far; the time excludes waiting for the
/// trainer, so images per second measures the data path alone.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LoaderStats {
    pub batches: u64,
    pub images: u64,
    pub seconds: f64,
}

impl LoaderStats {
    /// Images prepared per second of preparing, or `None` before the first batch.
    pub fn images_per_second(&self) -> Option<f64> {
        (self.seconds > 0.0).then(|| self.images as f64 / self.seconds)
    }

    fn record(&mut self, images: usize, took: Duration) {
        self.batches += 1;
        self.images += images as u64;
        self.seconds += took.as_secs_f64();
    }
}

type Sent = Result<LoadedBatch, LoaderError>;

/// Streams the batches of steps `steps` in order; dropping it stops its thread.
pub struct BatchLoader {
    /// `None` only while dropping, so the thread's blocked send fails and it can end.
    batches: Option<Receiver<Sent>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    stats: Arc<Mutex<LoaderStats>>,
    next: u64,
    end: u64,
}

impl BatchLoader {
    /// Starts reading the batches of `steps` from `images` in the order of `order`,
    /// keeping up to `prefetch` (at least 1) ready.
    pub fn start(
        images: RandomAccess,
        order: DataOrder,
        steps: Range<u64>,
        prefetch: usize,
    ) -> Result<Self, LoaderError> {
        if images.is_empty() {
            return Err(LoaderError::EmptySet);
        }
        if order.len() != images.len() {
            return Err(LoaderError::SizeMismatch {
                order: order.len(),
                set: images.len(),
            });
        }
        let (tx, rx) = sync_channel(prefetch.max(1));
        let producer = Producer {
            images,
            order,
            stop: Arc::new(AtomicBool::new(false)),
            stats: Arc::new(Mutex::new(LoaderStats::default())),
        };
        let (stop, stats) = (producer.stop.clone(), producer.stats.clone());
        let run = steps.clone();
        let thread = std::thread::Builder::new()
            .name("histodiff-batch-loader".into())
            .spawn(move || producer.run(run, tx))
            .map_err(LoaderError::Spawn)?;
        Ok(Self {
            batches: Some(rx),
            stop,
            thread: Some(thread),
            stats,
            next: steps.start,
            end: steps.end,
        })
    }

    /// The batch of `step`, which must be the step after the previous call's (the first
    /// call takes the run's first step). Waits if the thread is behind.
    pub fn next(&mut self, step: u64) -> Result<LoadedBatch, LoaderError> {
        if step >= self.end {
            return Err(LoaderError::PastEnd {
                asked: step,
                end: self.end,
            });
        }
        if step != self.next {
            return Err(LoaderError::OutOfOrder {
                asked: step,
                next: self.next,
            });
        }
        let received = self.batches.as_ref().map(|rx| rx.recv());
        // A failed step is used up too: the thread ends after sending its error, and
        // later calls say so rather than asking for that step again.
        self.next += 1;
        match received {
            Some(Ok(Ok(batch))) if batch.step == step => Ok(batch),
            Some(Ok(Ok(batch))) => Err(LoaderError::OutOfOrder {
                asked: step,
                next: batch.step,
            }),
            Some(Ok(Err(e))) => Err(e),
            Some(Err(_)) | None => Err(LoaderError::Died { step }),
        }
    }

    /// Cumulative counts of the thread's work so far.
    pub fn stats(&self) -> LoaderStats {
        *self.stats.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Images prepared per second of preparing so far, or `None` before the first batch.
    pub fn prepared_images_per_second(&self) -> Option<f64> {
        self.stats().images_per_second()
    }
}

impl Drop for BatchLoader {
    /// Stops the thread and waits for it: at most the batch it is reading.
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // A thread blocked on a full channel wakes with an error once the receiver is gone.
        self.batches = None;
        if let Some(thread) = self.thread.take() {
            // A panic on the thread has already surfaced as `Died`; nothing to add here.
            let _ = thread.join();
        }
    }
}

/// The loader thread's state.
struct Producer {
    images: RandomAccess,
    order: DataOrder,
    stop: Arc<AtomicBool>,
    stats: Arc<Mutex<LoaderStats>>,
}

impl Producer {
    /// Sends each step's batch until the run ends, the loader is dropped or a read fails.
    fn run(mut self, steps: Range<u64>, tx: SyncSender<Sent>) {
        for step in steps {
            if self.stop.load(Ordering::Relaxed) {
                return;
            }
            let started = Instant::now();
            let batch = self.prepare(step);
            if let Ok(b) = &batch {
                let images = b.images.size().first().copied().unwrap_or(0) as usize;
                let mut stats = self.stats.lock().unwrap_or_else(PoisonError::into_inner);
                stats.record(images, started.elapsed());
            }
            let failed = batch.is_err();
            if tx.send(batch).is_err() || failed {
                return;
            }
        }
    }

    /// Reads the batch of `step` and makes its tensors.
    fn prepare(&mut self, step: u64) -> Sent {
        let indices = self.order.batch(step);
        let batch = self
            .images
            .read(&indices)
            .map_err(|source| LoaderError::Read { step, source })?;
        let tensor_error = |source| LoaderError::Tensor { step, source };
        let s = batch.image_size as i64;
        let images = Tensor::f_from_slice(&batch.images)
            .and_then(|t| t.f_view([indices.len() as i64, 3, s, s]))
            .map_err(tensor_error)?;
        let labels = batch
            .labels
            .as_deref()
            .map(Tensor::f_from_slice)
            .transpose()
            .map_err(tensor_error)?;
        Ok(LoadedBatch {
            step,
            images,
            labels,
        })
    }
}
