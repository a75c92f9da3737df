//! A builder of [`ProviderInfo`], so a plugin's `info` states only what is
//! its own: identity, extra operations, dialect, config fields, catalog.
//!
//! ```
//! use portico_sdk::prelude::*;
//!
//! let info = Describe::new("acme", "Acme", "1.0.0", "Acme chat and embeddings")
//!     .embeddings()
//!     .native_dialect(Dialect::Openai)
//!     .field(config::api_key("An Acme API key."))
//!     .field(config::proxy_base_url("https://api.acme.example/v1"))
//!     .catalog("[[models]]\nid = \"acme-1\"\ndisplay_name = \"Acme 1\"\ninput_price_per_mtok = 1.0\ncontext_window = 8192\nmax_output_tokens = 1024\n");
//! assert!(info.supports(Operation::ChatStream) && info.supports(Operation::Embeddings));
//! assert_eq!(info.config_fields.len(), 2);
//! ```

use portico_model::plugin::{ConfigField, Dialect, Operation, ProviderInfo};

use crate::catalog;

/// A [`ProviderInfo`] under construction: chat and streaming chat, no
/// native dialect, no config fields, no egress, no models until added.
#[derive(Debug, Clone)]
#[must_use]
pub struct Describe(ProviderInfo);

impl Describe {
    /// Pass the plugin crate's `env!("CARGO_PKG_VERSION")` as `version`.
    pub fn new(id: &str, display_name: &str, version: &str, description: &str) -> Self {
        Describe(ProviderInfo {
            id: id.to_string(),
            display_name: display_name.to_string(),
            version: version.to_string(),
            description: description.to_string(),
            operations: vec![Operation::Chat, Operation::ChatStream],
            native_dialect: None,
            config_fields: Vec::new(),
            egress_hosts: Vec::new(),
            models: Vec::new(),
        })
    }

    /// Declares the embeddings operation.
    pub fn embeddings(mut self) -> Self {
        self.0.operations.push(Operation::Embeddings);
        self
    }

    /// The client dialect whose requests the provider speaks natively.
    pub fn native_dialect(mut self, dialect: Dialect) -> Self {
        self.0.native_dialect = Some(dialect);
        self
    }

    /// Appends a config field (shown in this order).
    pub fn field(mut self, field: ConfigField) -> Self {
        self.0.config_fields.push(field);
        self
    }

    /// A host the plugin reaches through `host.http_fetch`.
    pub fn egress_host(mut self, host: &str) -> Self {
        self.0.egress_hosts.push(host.to_string());
        self
    }

    /// Finishes with the models of an embedded `models.toml` (see
    /// [`catalog::load`]).
    pub fn catalog(mut self, models_toml: &str) -> ProviderInfo {
        self.0.models = catalog::load(models_toml);
        self.0
    }

    /// Finishes without a catalog.
    pub fn build(self) -> ProviderInfo {
        self.0
    }
}
