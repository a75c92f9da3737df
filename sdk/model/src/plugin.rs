//! Plain Rust mirrors of the WIT records a plugin exchanges with the host
//! (`gateway:provider/types`). The SDK converts its wit-bindgen types to
//! these, the host converts its wasmtime bindings to these, and everything
//! else (admin API, UI, routing) works with these serde types only.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// An operation a provider may support.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Operation {
    Chat,
    ChatStream,
    Embeddings,
    /// Counting a chat request's input tokens (contract 0.3.0; not among
    /// the operations `describe` lists, whose 0.1.0 enum cannot grow: the
    /// plugin answers whether it can).
    CountTokens,
}

/// A client API dialect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Dialect {
    Openai,
    Anthropic,
    Gemini,
}

impl Dialect {
    pub fn as_str(self) -> &'static str {
        match self {
            Dialect::Openai => "openai",
            Dialect::Anthropic => "anthropic",
            Dialect::Gemini => "gemini",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FieldKind {
    String,
    Secret,
    Url,
    Enum,
    SecretJson,
}

impl FieldKind {
    /// Whether values of this kind are credentials (masked, encrypted).
    pub fn is_secret(self) -> bool {
        matches!(self, FieldKind::Secret | FieldKind::SecretJson)
    }
}

/// A configuration field an endpoint of a provider needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConfigField {
    pub name: String,
    pub label: String,
    pub kind: FieldKind,
    pub required: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_value: Option<String>,
    #[serde(default)]
    pub help: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<String>,
}

/// Capability badges of a model.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capabilities {
    #[serde(default)]
    pub tools: bool,
    #[serde(default)]
    pub vision: bool,
    #[serde(default)]
    pub reasoning: bool,
    #[serde(default)]
    pub prompt_caching: bool,
    #[serde(default)]
    pub embeddings: bool,
}

/// One entry of a provider's model catalog.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelInfo {
    pub id: String,
    pub display_name: String,
    pub context_window: u32,
    #[serde(default)]
    pub max_output_tokens: u32,
    pub input_price_per_mtok: f64,
    #[serde(default)]
    pub output_price_per_mtok: f64,
    #[serde(default)]
    pub capabilities: Capabilities,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub embedding_dimensions: Option<u32>,
}

/// What a provider plugin says about itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProviderInfo {
    pub id: String,
    pub display_name: String,
    pub version: String,
    #[serde(default)]
    pub description: String,
    pub operations: Vec<Operation>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub native_dialect: Option<Dialect>,
    pub config_fields: Vec<ConfigField>,
    #[serde(default)]
    pub egress_hosts: Vec<String>,
    pub models: Vec<ModelInfo>,
}

impl ProviderInfo {
    pub fn supports(&self, operation: Operation) -> bool {
        self.operations.contains(&operation)
    }

    pub fn model(&self, id: &str) -> Option<&ModelInfo> {
        self.models.iter().find(|m| m.id == id)
    }
}

/// A configured endpoint as a plugin sees it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Endpoint {
    pub name: String,
    pub model: String,
    /// Values by config field name, secrets in clear.
    pub config: BTreeMap<String, String>,
}

impl Endpoint {
    /// A config value, treating empty strings as unset.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.config
            .get(key)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }
}

/// An HTTP request built by a plugin and sent by the host.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HttpRequest {
    pub method: String,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// An HTTP response (header names lower-case).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// First value of a header (case-insensitive name).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}
