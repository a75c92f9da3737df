//! The batched request log writer. The request path only appends the entry
//! to a shared buffer under a short lock; a background task writes the
//! buffer to the store in one transaction every `interval`, or as soon as
//! `batch_size` entries wait. The writer is only woken when a batch fills,
//! not per entry: a wake-up per request (another thread, a futex) cost
//! more than the row itself.
//!
//! When the buffer holds `capacity` entries (the store cannot keep up),
//! new entries are dropped: counted in `portico_request_log_dropped_total`
//! and logged (at most once a minute). The request itself is never slowed
//! down and the metrics still count the call.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{Mutex, Notify, oneshot};

use crate::store::{RequestLogEntry, Store};

#[derive(Debug, Clone, Copy)]
pub struct WriterOptions {
    /// Entries the channel holds before new ones are dropped.
    pub capacity: usize,
    /// Entries written per transaction at most.
    pub batch_size: usize,
    /// Longest time an entry waits before it is written.
    pub interval: Duration,
}

impl Default for WriterOptions {
    fn default() -> Self {
        WriterOptions {
            capacity: 10_000,
            batch_size: 200,
            interval: Duration::from_secs(1),
        }
    }
}

/// The sending side of the request log, shared by every request.
pub struct RequestLog {
    shared: Arc<Shared>,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

struct Shared {
    pending: std::sync::Mutex<Pending>,
    /// Wakes the writer: a batch is full, a flush is asked, or closing.
    wake: Notify,
    options: WriterOptions,
    dropped: AtomicU64,
    /// When a drop was last logged, to keep a full buffer from flooding
    /// the log.
    last_drop_warning: std::sync::Mutex<Option<Instant>>,
}

#[derive(Default)]
struct Pending {
    entries: Vec<RequestLogEntry>,
    /// Flushes waiting for everything queued before them to be written.
    flushes: Vec<oneshot::Sender<()>>,
    closed: bool,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl RequestLog {
    /// Starts the writer task on the current Tokio runtime.
    pub fn spawn(store: Arc<dyn Store>, options: WriterOptions) -> Self {
        let shared = Arc::new(Shared {
            pending: std::sync::Mutex::new(Pending::default()),
            wake: Notify::new(),
            options: WriterOptions {
                capacity: options.capacity.max(1),
                batch_size: options.batch_size.max(1),
                ..options
            },
            dropped: AtomicU64::new(0),
            last_drop_warning: std::sync::Mutex::new(None),
        });
        let task = tokio::spawn(write_loop(store, shared.clone()));
        RequestLog {
            shared,
            task: Mutex::new(Some(task)),
        }
    }

    /// Queues an entry without waiting; drops (and counts) it when the
    /// buffer is full or the writer has stopped.
    pub fn submit(&self, entry: RequestLogEntry) {
        let shared = &*self.shared;
        let queued = {
            let mut pending = shared.lock();
            if pending.closed || pending.entries.len() >= shared.options.capacity {
                None
            } else {
                pending.entries.push(entry);
                Some(pending.entries.len())
            }
        };
        match queued {
            Some(len) => {
                if len == shared.options.batch_size {
                    shared.wake.notify_one();
                }
            }
            None => self.count_drop(),
        }
    }

    fn count_drop(&self) {
        let shared = &*self.shared;
        let total = shared.dropped.fetch_add(1, Ordering::Relaxed) + 1;
        ::metrics::counter!("portico_request_log_dropped_total").increment(1);
        let mut last = shared
            .last_drop_warning
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if last.is_none_or(|at| at.elapsed() >= Duration::from_secs(60)) {
            *last = Some(Instant::now());
            tracing::warn!(
                dropped_total = total,
                "request log queue full or closed: entries dropped (metrics still count them)"
            );
        }
    }

    /// Entries dropped so far.
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }

    /// Waits until everything queued before this call is written.
    pub async fn flush(&self) {
        let (done, wait) = oneshot::channel();
        {
            let mut pending = self.shared.lock();
            if pending.closed {
                return;
            }
            pending.flushes.push(done);
        }
        self.shared.wake.notify_one();
        let _ = wait.await;
    }

    /// Writes what is queued and stops the writer (it drains everything
    /// before it ends); later entries are dropped.
    pub async fn close(&self) {
        self.shared.lock().closed = true;
        self.shared.wake.notify_one();
        if let Some(task) = self.task.lock().await.take() {
            let _ = task.await;
        }
    }
}

/// A log dropped without `close` still writes what it holds, and its
/// writer task ends instead of ticking forever.
impl Drop for RequestLog {
    fn drop(&mut self) {
        self.shared.lock().closed = true;
        self.shared.wake.notify_one();
    }
}

async fn write_loop(store: Arc<dyn Store>, shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(shared.options.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shared.wake.notified() => {}
            _ = tick.tick() => {}
        }
        // Drain in batches so one transaction stays bounded, and answer the
        // flushes that were waiting before the drain began.
        let (flushes, closed) = {
            let mut pending = shared.lock();
            (std::mem::take(&mut pending.flushes), pending.closed)
        };
        loop {
            let batch: Vec<RequestLogEntry> = {
                let mut pending = shared.lock();
                let take = pending.entries.len().min(shared.options.batch_size);
                pending.entries.drain(..take).collect()
            };
            if batch.is_empty() {
                break;
            }
            write(&store, batch).await;
        }
        for done in flushes {
            let _ = done.send(());
        }
        if closed {
            return;
        }
    }
}

async fn write(store: &Arc<dyn Store>, batch: Vec<RequestLogEntry>) {
    let count = batch.len();
    if let Err(error) = store.insert_request_log(batch).await {
        // Retrying could pile up without bound behind a broken store; the
        // metrics still have these calls.
        ::metrics::counter!("portico_request_log_dropped_total").increment(count as u64);
        tracing::warn!(%error, count, "could not write request log entries; dropped");
    }
}
