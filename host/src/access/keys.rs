//! Gateway keys: generation, hashing, and the in-memory index that
//! authenticates a presented key without touching the database.

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;
use sha2::{Digest, Sha256};

use crate::routing::CallerKey;
use crate::store::StoredGatewayKey;

/// Every key starts with this, so it is recognisable in configs and logs.
pub const KEY_PREFIX: &str = "pk_";
/// Random base62 characters after [`KEY_PREFIX`]: 40 × log2(62) ≈ 238 bits.
const RANDOM_CHARS: usize = 40;
/// Characters of the key kept as its visible prefix (`pk_` and 7 random
/// characters): enough to tell keys apart, far too few to guess the rest.
pub const SHOWN_CHARS: usize = 10;

const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// A fresh key from the operating system's CSPRNG.
pub fn generate() -> Result<String, getrandom::Error> {
    let mut key = String::with_capacity(KEY_PREFIX.len() + RANDOM_CHARS);
    key.push_str(KEY_PREFIX);
    let mut buf = [0u8; 64];
    while key.len() < KEY_PREFIX.len() + RANDOM_CHARS {
        getrandom::fill(&mut buf)?;
        for byte in buf {
            // Rejection sampling: 248 = 4 × 62, so the kept bytes map
            // uniformly onto the alphabet (no modulo bias).
            if byte < 248 && key.len() < KEY_PREFIX.len() + RANDOM_CHARS {
                key.push(char::from(BASE62[usize::from(byte % 62)]));
            }
        }
    }
    Ok(key)
}

/// The visible prefix of a key.
pub fn shown_prefix(key: &str) -> String {
    key.chars().take(SHOWN_CHARS).collect()
}

/// SHA-256 of a key. Keys are 238 random bits, so a fast unsalted hash is
/// enough: there is no dictionary to try, and lookup stays a map access.
pub fn digest(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

pub fn digest_hex(key: &str) -> String {
    hex::encode(digest(key))
}

/// The caller identity a stored key grants.
pub fn caller_key(stored: &StoredGatewayKey) -> CallerKey {
    CallerKey {
        id: stored.id.clone(),
        name: stored.name.clone(),
        prefix: stored.prefix.clone(),
        endpoints: stored.endpoints.clone(),
        requests_per_minute: stored.requests_per_minute,
        tokens_per_minute: stored.tokens_per_minute,
    }
}

/// Active keys by the SHA-256 of the key; replaced as a whole on every
/// change, so reads are lock-free.
#[derive(Default)]
pub struct KeyIndex {
    by_digest: ArcSwap<HashMap<[u8; 32], Arc<CallerKey>>>,
}

impl KeyIndex {
    /// Rebuilds the index from the stored keys; revoked keys and rows with
    /// an unreadable hash are left out (the latter logged).
    pub fn replace(&self, stored: &[StoredGatewayKey]) {
        let mut map = HashMap::with_capacity(stored.len());
        for key in stored.iter().filter(|k| k.revoked_at.is_none()) {
            let digest = hex::decode(&key.hash)
                .ok()
                .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok());
            match digest {
                Some(digest) => {
                    map.insert(digest, Arc::new(caller_key(key)));
                }
                None => {
                    tracing::error!(key = %key.prefix, id = %key.id, "stored gateway key has a malformed hash; it cannot be used")
                }
            }
        }
        self.by_digest.store(Arc::new(map));
    }

    /// The active key `presented` is, if any. The lookup is by digest: a
    /// timing difference could only reveal bits of a SHA-256 output, which
    /// says nothing useful about any key.
    pub fn find(&self, presented: &str) -> Option<Arc<CallerKey>> {
        if !presented.starts_with(KEY_PREFIX) {
            return None;
        }
        self.by_digest.load().get(&digest(presented)).cloned()
    }

    pub fn len(&self) -> usize {
        self.by_digest.load().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use super::*;

    fn stored(key: &str, id: &str, revoked: bool) -> StoredGatewayKey {
        StoredGatewayKey {
            id: id.into(),
            name: format!("name of {id}"),
            prefix: shown_prefix(key),
            hash: digest_hex(key),
            endpoints: None,
            requests_per_minute: None,
            tokens_per_minute: Some(100),
            created_at: SystemTime::now(),
            revoked_at: revoked.then(SystemTime::now),
            last_used_at: None,
        }
    }

    #[test]
    fn generated_keys_have_the_format_and_differ() {
        let a = generate().unwrap();
        let b = generate().unwrap();
        assert_ne!(a, b);
        for key in [&a, &b] {
            assert_eq!(key.len(), 43);
            assert!(key.starts_with("pk_"));
            assert!(key[3..].bytes().all(|c| c.is_ascii_alphanumeric()));
        }
        assert_eq!(shown_prefix(&a), a[..10]);
        // Every alphabet character is reachable (rejection sampling keeps
        // the distribution uniform; 100 keys make a miss vanishingly rare).
        let many: String = (0..100)
            .map(|_| generate().unwrap()[3..].to_string())
            .collect();
        assert!(BASE62.iter().all(|c| many.as_bytes().contains(c)));
    }

    #[test]
    fn digest_is_sha256_hex() {
        assert_eq!(
            digest_hex("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn index_finds_active_keys_only() {
        let active = generate().unwrap();
        let revoked = generate().unwrap();
        let index = KeyIndex::default();
        index.replace(&[stored(&active, "k1", false), stored(&revoked, "k2", true)]);
        assert_eq!(index.len(), 1);
        let found = index.find(&active).unwrap();
        assert_eq!(found.id, "k1");
        assert_eq!(found.tokens_per_minute, Some(100));
        assert!(index.find(&revoked).is_none());
        assert!(index.find("pk_unknown").is_none());
        assert!(index.find("dummy").is_none());
        // One character off is a different key.
        let mut near = active.clone();
        near.pop();
        near.push(if active.ends_with('a') { 'b' } else { 'a' });
        assert!(index.find(&near).is_none());
        index.replace(&[]);
        assert!(index.find(&active).is_none());
    }
}
