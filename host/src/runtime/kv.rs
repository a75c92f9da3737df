//! The per-plugin in-memory cache behind `host.cache-get` / `cache-set`
//! (e.g. an OAuth token a plugin fetched): TTL per entry, bounded in size.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Longest TTL honoured; longer requests are clamped.
const MAX_TTL: Duration = Duration::from_secs(24 * 3600);

struct Entry {
    value: Vec<u8>,
    expires: Instant,
}

impl Entry {
    fn size(&self, key: &str) -> usize {
        key.len() + self.value.len()
    }
}

/// One plugin's cache. Shared by all versions of a provider id, so a
/// cached token survives a hot reload.
pub(crate) struct KvCache {
    max_bytes: usize,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    entries: HashMap<String, Entry>,
    bytes: usize,
}

impl Inner {
    fn remove(&mut self, key: &str) {
        if let Some(old) = self.entries.remove(key) {
            self.bytes -= old.size(key);
        }
    }
}

impl KvCache {
    pub(crate) fn new(max_bytes: usize) -> Self {
        KvCache {
            max_bytes,
            inner: Mutex::new(Inner::default()),
        }
    }

    pub(crate) fn get(&self, key: &str) -> Option<Vec<u8>> {
        let mut inner = self.inner.lock().ok()?;
        match inner.entries.get(key) {
            Some(entry) if entry.expires > Instant::now() => Some(entry.value.clone()),
            Some(_) => {
                inner.remove(key);
                None
            }
            None => None,
        }
    }

    /// Stores `value` for `ttl_ms`; a zero TTL deletes the key. An entry
    /// larger than a quarter of the cache is not stored. When full, expired
    /// entries go first, then those closest to expiry.
    pub(crate) fn set(&self, key: String, value: Vec<u8>, ttl_ms: u64) {
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        inner.remove(&key);
        let size = key.len() + value.len();
        if ttl_ms == 0 || size > self.max_bytes / 4 {
            return;
        }
        let now = Instant::now();
        let ttl = Duration::from_millis(ttl_ms).min(MAX_TTL);
        let Some(expires) = now.checked_add(ttl) else {
            return;
        };
        if inner.bytes + size > self.max_bytes {
            let before = inner.entries.len();
            inner.entries.retain(|_, e| e.expires > now);
            if inner.entries.len() != before {
                inner.bytes = inner.entries.iter().map(|(k, e)| e.size(k)).sum();
            }
        }
        while inner.bytes + size > self.max_bytes {
            let Some(victim) = inner
                .entries
                .iter()
                .min_by_key(|(_, e)| e.expires)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            inner.remove(&victim);
        }
        inner.bytes += size;
        inner.entries.insert(key, Entry { value, expires });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn get_set_and_expiry() {
        let kv = KvCache::new(1024);
        kv.set("a".into(), b"1".to_vec(), 60_000);
        assert_eq!(kv.get("a"), Some(b"1".to_vec()));
        kv.set("a".into(), b"2".to_vec(), 60_000);
        assert_eq!(kv.get("a"), Some(b"2".to_vec()));
        kv.set("a".into(), b"3".to_vec(), 0);
        assert_eq!(kv.get("a"), None);
        kv.set("b".into(), b"x".to_vec(), 1);
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(kv.get("b"), None);
    }

    #[test]
    fn size_bound_evicts_soonest_to_expire() {
        let kv = KvCache::new(100);
        kv.set("short".into(), vec![0; 20], 1_000);
        kv.set("long".into(), vec![0; 20], 100_000);
        kv.set("mid".into(), vec![0; 20], 50_000);
        // 25 + 24 + 23 = 72 bytes; adding 24 more needs no eviction...
        kv.set("four".into(), vec![0; 20], 70_000);
        assert!(kv.get("short").is_some());
        // ...but another one does: the entry closest to expiry goes.
        kv.set("five".into(), vec![0; 20], 80_000);
        assert!(kv.get("short").is_none());
        assert!(kv.get("long").is_some());
        assert!(kv.get("five").is_some());
        // Oversized values are refused.
        kv.set("big".into(), vec![0; 60], 80_000);
        assert!(kv.get("big").is_none());
        let inner = kv.inner.lock().unwrap();
        assert!(inner.bytes <= 100);
        assert_eq!(
            inner.bytes,
            inner.entries.iter().map(|(k, e)| e.size(k)).sum::<usize>()
        );
    }
}
