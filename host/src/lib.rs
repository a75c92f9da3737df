//! Portico host: the axum gateway that loads provider plugins as sandboxed
//! WebAssembly components.
//!
//! - [`runtime`]: wasmtime engine, sandbox limits, pooled plugin instances.
//! - [`registry`]: the loaded plugins, with hot reload of the plugins dir.
//! - [`dialects`]: the client-facing APIs (OpenAI, ...).
//! - [`routing`]: endpoint → plugin → upstream round trip, streaming;
//!   [`policy`]: targets, fallbacks, retries, timeouts and limits.
//! - [`endpoints`]: the endpoint table and its manager; [`store`]: persistent
//!   state (SQLite); [`secrets`]: encryption at rest; [`config`]: CLI and
//!   endpoints file.
//! - [`admin`]: the management API; [`server`]: start-up and routes.
//! - [`access`]: gateway keys and rate limits.
//! - [`telemetry`]: request log, usage, metrics, logging and tracing.
//! - [`tasks`]: background tasks stopped with their owner.

pub mod access;
pub mod admin;
pub mod config;
pub mod conformance;
pub mod dialects;
pub mod endpoints;
pub mod policy;
pub mod registry;
pub mod routing;
pub mod runtime;
pub mod secrets;
pub mod server;
pub mod store;
pub mod tasks;
pub mod telemetry;
pub mod ui;
