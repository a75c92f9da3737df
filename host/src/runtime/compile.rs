//! Compiling components, with an on-disk cache of compiled artifacts so a
//! restart does not recompile unchanged plugins.
//!
//! Entry: `<cache_dir>/<sha256 of the .wasm>-<engine compatibility hash>.cwasm`,
//! holding wasmtime's serialized component followed by a trailer (SHA-256 of
//! the artifact + magic). The trailer lets a truncated or corrupted entry be
//! detected before it is handed to `Component::deserialize`, which must only
//! ever see bytes this host wrote; a bad entry is ignored and rewritten.

use std::hash::Hasher;
use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

const TRAILER_MAGIC: &[u8; 8] = b"PRTCWSM1";
const TRAILER_LEN: usize = 32 + TRAILER_MAGIC.len();

/// Where a compiled component came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CompileSource {
    /// Compiled now (no cache configured).
    Compiled,
    /// Compiled now and written to the cache.
    CompiledAndCached,
    /// Loaded from a valid cache entry.
    Cache,
}

/// A short, stable digest of everything that makes compiled code usable by
/// this engine (wasmtime version, target, compiler settings).
pub(crate) fn engine_hash(engine: &Engine) -> String {
    struct Sha(Sha256);
    impl Hasher for Sha {
        fn finish(&self) -> u64 {
            0
        }
        fn write(&mut self, bytes: &[u8]) {
            self.0.update(bytes);
        }
    }
    let mut hasher = Sha(Sha256::new());
    std::hash::Hash::hash(&engine.precompile_compatibility_hash(), &mut hasher);
    hex::encode(&hasher.0.finalize()[..8])
}

pub(crate) fn entry_path(cache_dir: &Path, sha256: &str, engine_hash: &str) -> PathBuf {
    cache_dir.join(format!("{sha256}-{engine_hash}.cwasm"))
}

/// Compiles `wasm` (whose digest is `sha256`) for `engine`, going through
/// the cache in `cache_dir` when given. Blocking: run it off the async
/// workers.
pub(crate) fn compile(
    engine: &Engine,
    engine_hash: &str,
    cache_dir: Option<&Path>,
    wasm: &[u8],
    sha256: &str,
) -> wasmtime::Result<(Component, CompileSource)> {
    let entry = cache_dir.map(|dir| (dir, entry_path(dir, sha256, engine_hash)));
    if let Some((_, path)) = &entry {
        match read_entry(engine, path) {
            Ok(Some(component)) => return Ok((component, CompileSource::Cache)),
            Ok(None) => {}
            Err(reason) => {
                tracing::warn!(path = %path.display(), %reason, "ignoring bad compiled-plugin cache entry")
            }
        }
    }
    let compiled = compile_apart(engine.config(), wasm)?;
    let source = match &entry {
        None => CompileSource::Compiled,
        Some((dir, path)) => match write_entry(&compiled, dir, path) {
            // Run the mapped entry rather than the compiled bytes: a copy
            // keeps every code page resident, the mapping only those in use.
            // SAFETY: `write_entry` just wrote this entry from `serialize`
            // of an engine with this engine's configuration.
            Ok(()) => match unsafe { map_entry(engine, path) } {
                Ok(mapped) => return Ok((mapped, CompileSource::CompiledAndCached)),
                Err(_) => CompileSource::CompiledAndCached,
            },
            Err(error) => {
                tracing::warn!(path = %path.display(), %error, "cannot write compiled-plugin cache entry");
                CompileSource::Compiled
            }
        },
    };
    // SAFETY: these bytes were just serialized by an engine with `engine`'s
    // configuration.
    let component = unsafe { Component::deserialize(engine, &compiled)? };
    Ok((component, source))
}

/// Compiles `wasm` on an engine of its own with `config` and on a thread
/// of its own, both gone afterwards; returns the serialized artifact (the
/// same as the serving engine's, as compatibility is a matter of
/// configuration).
///
/// Compiling on the serving engine kept ~55 MB resident for good after a
/// start that compiled every plugin (idle RSS ~105 MB, against ~42 MB from
/// the cache): Cranelift keeps a reusable compilation context per compiling
/// thread in its engine, grown to the largest function compiled, and the
/// allocator keeps the pages of a thread's freed scratch data, including
/// pages shared with the long-lived data allocated next on the same thread.
/// A throwaway engine drops the contexts, a throwaway thread takes its
/// pages with it, and collecting on wasmtime's compile pool (rayon's global
/// one) and here returns the rest: ~51 MB after such a start.
fn compile_apart(config: &wasmtime::Config, wasm: &[u8]) -> wasmtime::Result<Vec<u8>> {
    let compiled = std::thread::scope(|scope| {
        std::thread::Builder::new()
            .name("portico-compile".into())
            .spawn_scoped(scope, || {
                let compiler = Engine::new(config)?;
                Component::new(&compiler, wasm)?.serialize()
            })
            .map_err(wasmtime::Error::from)?
            .join()
            .map_err(|_| wasmtime::Error::msg("the compiler panicked"))?
    });
    release_compiler_memory();
    compiled
}

/// Returns the memory the allocator holds unused on this thread and on
/// rayon's global pool, where wasmtime compiles in parallel.
fn release_compiler_memory() {
    // SAFETY: `mi_collect` only frees memory the allocator holds unused;
    // it takes no pointers and is safe to call on any thread at any time.
    rayon::broadcast(|_| unsafe { libmimalloc_sys::mi_collect(true) });
    unsafe { libmimalloc_sys::mi_collect(true) };
}

/// `Ok(None)` when there is no entry; `Err` when it exists but is unusable.
///
/// The entry is checked by streaming it through the digest, then mapped
/// from the file rather than read into memory: only the code pages a plugin
/// actually runs become resident, where a copy kept every page of every
/// plugin (about 2 MB each) in the process.
fn read_entry(engine: &Engine, path: &Path) -> Result<Option<Component>, String> {
    let mut file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.to_string()),
    };
    let len = file.metadata().map_err(|e| e.to_string())?.len();
    let Some(split) = len.checked_sub(TRAILER_LEN as u64) else {
        return Err("truncated".into());
    };
    let mut digest = Sha256::new();
    std::io::copy(&mut (&mut file).take(split), &mut digest).map_err(|e| e.to_string())?;
    let mut trailer = [0u8; TRAILER_LEN];
    file.read_exact(&mut trailer).map_err(|e| e.to_string())?;
    if &trailer[32..] != TRAILER_MAGIC || trailer[..32] != digest.finalize()[..] {
        return Err("checksum mismatch".into());
    }
    // SAFETY: the checksum above proves these are the bytes this host
    // wrote (the cache dir is the host's own, not user input).
    unsafe { map_entry(engine, path) }.map(Some)
}

/// Maps a cache entry's compiled code from its file.
///
/// # Safety
/// The entry must hold bytes this host wrote with `write_entry`: checked by
/// its digest, or just written. `deserialize_file` requires a file produced
/// by `serialize` of a compatible engine, left unchanged while mapped;
/// entries are only ever replaced by rename, never rewritten in place, and
/// the engine hash in the file name, re-checked by wasmtime, covers
/// compatibility. The trailer after the artifact is outside every section
/// wasmtime reads.
unsafe fn map_entry(engine: &Engine, path: &Path) -> Result<Component, String> {
    unsafe { Component::deserialize_file(engine, path) }.map_err(|e| format!("{e:#}"))
}

fn write_entry(compiled: &[u8], dir: &Path, path: &Path) -> anyhow::Result<()> {
    let digest = Sha256::digest(compiled);
    std::fs::create_dir_all(dir)?;
    // Write then rename, so a concurrent reader never sees half an entry.
    let tmp = dir.join(format!(".{}.tmp", uuid::Uuid::new_v4()));
    let written = std::fs::File::create(&tmp).and_then(|mut file| {
        file.write_all(compiled)?;
        file.write_all(&digest)?;
        file.write_all(TRAILER_MAGIC)
    });
    if let Err(e) = written.and_then(|()| std::fs::rename(&tmp, path)) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e.into());
    }
    Ok(())
}
