//! Portico host: the axum gateway that loads provider plugins as sandboxed
//! WebAssembly components.
//!
//! - [`runtime`]: wasmtime engine, sandbox limits, pooled plugin instances.
//! - [`registry`]: the loaded plugins, with hot reload of the plugins dir.
//! - [`dialects`]: the client-facing APIs (OpenAI, ...).
//! - [`routing`]: endpoint → plugin → upstream round trip, streaming.
//! - [`endpoints`]: the endpoint table; [`config`]: CLI and endpoints file.
//! - [`admin`]: the management API; [`server`]: start-up and routes.

pub mod admin;
pub mod config;
pub mod dialects;
pub mod endpoints;
pub mod registry;
pub mod routing;
pub mod runtime;
pub mod server;
