//! Portico host: the axum gateway that loads provider plugins as sandboxed
//! WebAssembly components.
