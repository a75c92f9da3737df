//! The batched request log writer. The request path only does a
//! non-blocking `try_send` into a bounded channel; a background task writes
//! the entries to the store in one transaction every `batch_size` entries or
//! every `interval`, whichever comes first.
//!
//! When the channel is full (the store cannot keep up), the entry is
//! dropped: it is counted in `portico_request_log_dropped_total` and logged
//! (at most once a minute). The request itself is never slowed down and the
//! metrics still count the call.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{Mutex, mpsc, oneshot};

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

enum Message {
    Entry(Box<RequestLogEntry>),
    /// Write what was queued before this message, then answer.
    Flush(oneshot::Sender<()>),
}

/// The sending side of the request log, shared by every request.
pub struct RequestLog {
    tx: mpsc::Sender<Message>,
    dropped: AtomicU64,
    /// When a drop was last logged, to keep a full queue from flooding
    /// the log.
    last_drop_warning: std::sync::Mutex<Option<Instant>>,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl RequestLog {
    /// Starts the writer task on the current Tokio runtime.
    pub fn spawn(store: Arc<dyn Store>, options: WriterOptions) -> Self {
        let (tx, rx) = mpsc::channel(options.capacity.max(1));
        let task = tokio::spawn(write_loop(store, rx, options));
        RequestLog {
            tx,
            dropped: AtomicU64::new(0),
            last_drop_warning: std::sync::Mutex::new(None),
            task: Mutex::new(Some(task)),
        }
    }

    /// Queues an entry without waiting; drops (and counts) it when the
    /// queue is full or the writer has stopped.
    pub fn submit(&self, entry: RequestLogEntry) {
        if self.tx.try_send(Message::Entry(Box::new(entry))).is_err() {
            let total = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            ::metrics::counter!("portico_request_log_dropped_total").increment(1);
            let mut last = self
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
    }

    /// Entries dropped so far.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Waits until everything queued before this call is written.
    pub async fn flush(&self) {
        let (done, wait) = oneshot::channel();
        if self.tx.send(Message::Flush(done)).await.is_ok() {
            let _ = wait.await;
        }
    }

    /// Writes what is queued and stops the writer; later entries are
    /// dropped.
    pub async fn close(&self) {
        self.flush().await;
        if let Some(task) = self.task.lock().await.take() {
            task.abort();
            let _ = task.await;
        }
    }
}

async fn write_loop(
    store: Arc<dyn Store>,
    mut rx: mpsc::Receiver<Message>,
    options: WriterOptions,
) {
    let mut batch: Vec<RequestLogEntry> = Vec::with_capacity(options.batch_size);
    let mut tick = tokio::time::interval(options.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            message = rx.recv() => match message {
                Some(Message::Entry(entry)) => {
                    batch.push(*entry);
                    if batch.len() >= options.batch_size {
                        write(&store, &mut batch).await;
                    }
                }
                Some(Message::Flush(done)) => {
                    write(&store, &mut batch).await;
                    let _ = done.send(());
                }
                None => {
                    write(&store, &mut batch).await;
                    return;
                }
            },
            _ = tick.tick() => write(&store, &mut batch).await,
        }
    }
}

async fn write(store: &Arc<dyn Store>, batch: &mut Vec<RequestLogEntry>) {
    if batch.is_empty() {
        return;
    }
    if let Err(error) = store.insert_request_log(batch).await {
        // Retrying could pile up without bound behind a broken store; the
        // metrics still have these calls.
        ::metrics::counter!("portico_request_log_dropped_total").increment(batch.len() as u64);
        tracing::warn!(%error, count = batch.len(), "could not write request log entries; dropped");
    }
    batch.clear();
}
