//! Secrets at rest: AES-256-GCM under one master key.
//!
//! A stored secret is `enc:v1:<base64(nonce || ciphertext+tag)>` with a
//! fresh random 96-bit nonce per value. The associated data binds each
//! ciphertext to its endpoint and field, so a value copied into another row
//! or field of the database does not decrypt.
//!
//! The master key comes from `PORTICO_MASTER_KEY` (base64 of 32 bytes) or,
//! when that is unset, from `<data dir>/master.key`, generated on first start
//! with owner-only permissions.

use std::fmt;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use aes_gcm::aead::{Aead, Generate, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Key};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

/// Prefix of an encrypted value; the version allows a later scheme.
pub const PREFIX: &str = "enc:v1:";
/// Name of the generated key file inside the data dir.
pub const KEY_FILE: &str = "master.key";
/// Environment variable holding the master key (base64 of 32 bytes).
pub const KEY_ENV: &str = "PORTICO_MASTER_KEY";

const NONCE_LEN: usize = 12;

type Nonce = aes_gcm::aead::Nonce<Aes256Gcm>;
const KEY_LEN: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    #[error(
        "{source_name} is not a valid master key: expected the base64 encoding of 32 random bytes (e.g. `openssl rand -base64 32`), got {detail}"
    )]
    MalformedKey { source_name: String, detail: String },
    #[error("master key file {path}: {source}")]
    KeyFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the system random number generator failed: {0}")]
    Random(String),
    #[error("not an encrypted value (no `{PREFIX}` prefix)")]
    NotEncrypted,
    #[error("encrypted value is malformed")]
    Malformed,
    /// Wrong key, or the value was tampered with or moved.
    #[error("encrypted value does not decrypt with this master key")]
    Decrypt,
}

/// Encrypts and decrypts secret values. Its `Debug` never shows the key.
#[derive(Clone)]
pub struct Cipher {
    cipher: Aes256Gcm,
}

impl fmt::Debug for Cipher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Cipher(..)")
    }
}

/// Where the master key came from (for the start-up log line).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    Env,
    ExistingFile(PathBuf),
    GeneratedFile(PathBuf),
}

impl fmt::Display for KeySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeySource::Env => write!(f, "environment variable {KEY_ENV}"),
            KeySource::ExistingFile(path) => write!(f, "key file {}", path.display()),
            KeySource::GeneratedFile(path) => {
                write!(f, "newly generated key file {}", path.display())
            }
        }
    }
}

impl Cipher {
    /// A cipher from the base64 text of a 32-byte key; `source_name` names
    /// where the text came from, for the error message.
    pub fn from_base64(text: &str, source_name: &str) -> Result<Self, SecretsError> {
        let malformed = |detail: String| SecretsError::MalformedKey {
            source_name: source_name.to_string(),
            detail,
        };
        let bytes = BASE64
            .decode(text.trim())
            .map_err(|e| malformed(format!("invalid base64 ({e})")))?;
        if bytes.len() != KEY_LEN {
            return Err(malformed(format!("{} bytes", bytes.len())));
        }
        let key = Aes256Gcm::new_from_slice(&bytes)
            .map_err(|_| malformed(format!("{} bytes", bytes.len())))?;
        Ok(Cipher { cipher: key })
    }

    /// The master key: `env_key` (the value of [`KEY_ENV`]) when given,
    /// else the key file in `data_dir`, generated if missing.
    pub fn load_or_create(
        env_key: Option<&str>,
        data_dir: &Path,
    ) -> Result<(Self, KeySource), SecretsError> {
        if let Some(text) = env_key {
            return Ok((Self::from_base64(text, KEY_ENV)?, KeySource::Env));
        }
        let path = data_dir.join(KEY_FILE);
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                warn_if_readable_by_others(&path);
                let cipher = Self::from_base64(&text, &format!("key file {}", path.display()))?;
                Ok((cipher, KeySource::ExistingFile(path)))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = Key::<Aes256Gcm>::try_generate()
                    .map_err(|e| SecretsError::Random(e.to_string()))?;
                let text = BASE64.encode(key.as_slice());
                match write_new_key_file(&path, &text) {
                    Ok(()) => Ok((
                        Self::from_base64(&text, "generated key")?,
                        KeySource::GeneratedFile(path),
                    )),
                    // Another process created it first: use theirs.
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                        Self::load_or_create(None, data_dir)
                    }
                    Err(source) => Err(SecretsError::KeyFile { path, source }),
                }
            }
            Err(source) => Err(SecretsError::KeyFile { path, source }),
        }
    }

    /// Encrypts `plaintext` for field `field` of endpoint `endpoint`.
    pub fn encrypt(
        &self,
        endpoint: &str,
        field: &str,
        plaintext: &str,
    ) -> Result<String, SecretsError> {
        let nonce = Nonce::try_generate().map_err(|e| SecretsError::Random(e.to_string()))?;
        let aad = associated_data(endpoint, field);
        let ciphertext = self
            .cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: plaintext.as_bytes(),
                    aad: &aad,
                },
            )
            // Only fails for absurd lengths (beyond 64 GiB).
            .map_err(|_| SecretsError::Malformed)?;
        let mut blob = Vec::with_capacity(NONCE_LEN + ciphertext.len());
        blob.extend_from_slice(nonce.as_slice());
        blob.extend_from_slice(&ciphertext);
        Ok(format!("{PREFIX}{}", BASE64.encode(blob)))
    }

    /// Decrypts a value made by [`Cipher::encrypt`] for the same endpoint
    /// and field.
    pub fn decrypt(
        &self,
        endpoint: &str,
        field: &str,
        stored: &str,
    ) -> Result<String, SecretsError> {
        let encoded = stored
            .strip_prefix(PREFIX)
            .ok_or(SecretsError::NotEncrypted)?;
        let blob = BASE64
            .decode(encoded)
            .map_err(|_| SecretsError::Malformed)?;
        if blob.len() < NONCE_LEN {
            return Err(SecretsError::Malformed);
        }
        let (nonce, ciphertext) = blob.split_at(NONCE_LEN);
        let nonce = Nonce::try_from(nonce).map_err(|_| SecretsError::Malformed)?;
        let aad = associated_data(endpoint, field);
        let plaintext = self
            .cipher
            .decrypt(
                &nonce,
                Payload {
                    msg: ciphertext,
                    aad: &aad,
                },
            )
            .map_err(|_| SecretsError::Decrypt)?;
        String::from_utf8(plaintext).map_err(|_| SecretsError::Malformed)
    }
}

/// Whether a stored value is an encrypted secret.
pub fn is_encrypted(value: &str) -> bool {
    value.starts_with(PREFIX)
}

fn associated_data(endpoint: &str, field: &str) -> Vec<u8> {
    // NUL cannot occur in endpoint names, so the pair is unambiguous.
    let mut aad = Vec::with_capacity(endpoint.len() + field.len() + 1);
    aad.extend_from_slice(endpoint.as_bytes());
    aad.push(0);
    aad.extend_from_slice(field.as_bytes());
    aad
}

/// Creates the key file with owner-only permissions, atomically: the key is
/// written to a private temporary file which is then hard-linked into
/// place, so the key file never exists partially written or with wider
/// permissions, and an existing one is never replaced.
fn write_new_key_file(path: &Path, text: &str) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(".{KEY_FILE}.{}.tmp", uuid::Uuid::new_v4().simple()));
    let result = (|| {
        let mut file = private_create_new(&tmp)?;
        file.write_all(text.as_bytes())?;
        file.write_all(b"\n")?;
        file.sync_all()?;
        std::fs::hard_link(&tmp, path)
    })();
    let _ = std::fs::remove_file(&tmp);
    result?;
    // Make the new directory entry durable too.
    if let Ok(dir) = std::fs::File::open(dir) {
        let _ = dir.sync_all();
    }
    Ok(())
}

#[cfg(unix)]
fn private_create_new(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt as _;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
}

#[cfg(not(unix))]
fn private_create_new(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
}

#[cfg(unix)]
fn warn_if_readable_by_others(path: &Path) {
    use std::os::unix::fs::PermissionsExt as _;
    if let Ok(meta) = std::fs::metadata(path) {
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            tracing::warn!(
                path = %path.display(),
                mode = format!("{mode:o}"),
                "master key file is accessible to other users; restrict it with chmod 600"
            );
        }
    }
}

#[cfg(not(unix))]
fn warn_if_readable_by_others(_path: &Path) {}

#[cfg(test)]
mod tests {
    use super::*;

    fn cipher() -> Cipher {
        Cipher::from_base64(&BASE64.encode([7u8; 32]), "test").unwrap()
    }

    #[test]
    fn round_trip_with_fresh_nonces() {
        let c = cipher();
        let a = c.encrypt("ep", "api_key", "sk-secret").unwrap();
        let b = c.encrypt("ep", "api_key", "sk-secret").unwrap();
        assert!(a.starts_with(PREFIX));
        assert_ne!(a, b, "each encryption uses a new nonce");
        assert!(!a.contains("sk-secret"));
        assert_eq!(c.decrypt("ep", "api_key", &a).unwrap(), "sk-secret");
        assert_eq!(c.decrypt("ep", "api_key", &b).unwrap(), "sk-secret");
    }

    #[test]
    fn bound_to_endpoint_field_and_key() {
        let c = cipher();
        let a = c.encrypt("ep", "api_key", "sk-secret").unwrap();
        assert!(matches!(
            c.decrypt("other", "api_key", &a),
            Err(SecretsError::Decrypt)
        ));
        assert!(matches!(
            c.decrypt("ep", "token", &a),
            Err(SecretsError::Decrypt)
        ));
        let other = Cipher::from_base64(&BASE64.encode([8u8; 32]), "test").unwrap();
        assert!(matches!(
            other.decrypt("ep", "api_key", &a),
            Err(SecretsError::Decrypt)
        ));
        assert!(matches!(
            c.decrypt("ep", "api_key", "plain"),
            Err(SecretsError::NotEncrypted)
        ));
        assert!(matches!(
            c.decrypt("ep", "api_key", "enc:v1:AAAA"),
            Err(SecretsError::Malformed)
        ));
    }

    #[test]
    fn malformed_keys_are_rejected_clearly() {
        let short = Cipher::from_base64(&BASE64.encode([1u8; 16]), KEY_ENV).unwrap_err();
        assert!(short.to_string().contains("PORTICO_MASTER_KEY"));
        assert!(short.to_string().contains("16 bytes"));
        let junk = Cipher::from_base64("not base64!", KEY_ENV).unwrap_err();
        assert!(junk.to_string().contains("invalid base64"));
    }

    #[test]
    fn key_file_is_generated_once_with_owner_only_permissions() {
        let dir = tempfile::tempdir().unwrap();
        let (c1, source) = Cipher::load_or_create(None, dir.path()).unwrap();
        assert!(matches!(source, KeySource::GeneratedFile(_)));
        let (c2, source) = Cipher::load_or_create(None, dir.path()).unwrap();
        assert!(matches!(source, KeySource::ExistingFile(_)));
        let sealed = c1.encrypt("e", "f", "v").unwrap();
        assert_eq!(c2.decrypt("e", "f", &sealed).unwrap(), "v");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(dir.path().join(KEY_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        // No temporary files left behind.
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from(KEY_FILE)]);
    }
}
