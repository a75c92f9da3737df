//! Background tasks tied to the lifetime of what started them.

/// A spawned task that is aborted when this handle is dropped, so a
/// periodic job or a watcher's event loop stops with its owner.
pub struct AbortOnDrop(pub tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
