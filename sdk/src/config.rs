//! Endpoint configuration: reading values with clear errors, and declaring
//! the fields a provider needs.
//!
//! Error messages name the endpoint and the field, never the value: values
//! may be secrets.

use portico_model::ProviderError;
use portico_model::plugin::{ConfigField, Endpoint, FieldKind};

/// Config accessors for [`Endpoint`] (in the prelude).
pub trait EndpointExt {
    /// A required value: `endpoint 'x' is missing config 'api_key'` (400)
    /// when unset or empty.
    fn require(&self, key: &str) -> Result<&str, ProviderError>;

    /// A value, or `default` when unset or empty.
    fn get_or<'a>(&'a self, key: &str, default: &'a str) -> &'a str;

    /// An http(s) base URL from `key` (or `default`), trailing slashes
    /// removed, ready for [`crate::http::join_url`].
    fn base_url(&self, key: &str, default: Option<&str>) -> Result<String, ProviderError>;
}

impl EndpointExt for Endpoint {
    fn require(&self, key: &str) -> Result<&str, ProviderError> {
        self.get(key).ok_or_else(|| missing(self, key))
    }

    fn get_or<'a>(&'a self, key: &str, default: &'a str) -> &'a str {
        self.get(key).unwrap_or(default)
    }

    fn base_url(&self, key: &str, default: Option<&str>) -> Result<String, ProviderError> {
        let value = match (self.get(key), default) {
            (Some(value), _) => value.trim(),
            (None, Some(default)) => default,
            (None, None) => return Err(missing(self, key)),
        };
        let lower = value.to_ascii_lowercase();
        let rest = lower
            .strip_prefix("https://")
            .or_else(|| lower.strip_prefix("http://"));
        if rest.is_none_or(|host| host.is_empty() || host.starts_with('/'))
            || value.contains(char::is_whitespace)
        {
            return Err(ProviderError::invalid_request(format!(
                "config '{key}' of endpoint '{}' must be an absolute http(s) URL",
                self.name
            )));
        }
        Ok(value.trim_end_matches('/').to_string())
    }
}

fn missing(endpoint: &Endpoint, key: &str) -> ProviderError {
    ProviderError::invalid_request(format!(
        "endpoint '{}' is missing config '{key}'",
        endpoint.name
    ))
}

/// A required field.
pub fn required(name: &str, label: &str, kind: FieldKind, help: &str) -> ConfigField {
    ConfigField {
        name: name.to_string(),
        label: label.to_string(),
        kind,
        required: true,
        default_value: None,
        help: help.to_string(),
        options: Vec::new(),
    }
}

/// An optional field, with the value used when it is left unset.
pub fn optional(
    name: &str,
    label: &str,
    kind: FieldKind,
    default: Option<&str>,
    help: &str,
) -> ConfigField {
    ConfigField {
        required: false,
        default_value: default.map(str::to_string),
        ..required(name, label, kind, help)
    }
}

/// A field the provider needs, pre-filled with `default` (e.g. a region).
pub fn required_default(
    name: &str,
    label: &str,
    kind: FieldKind,
    default: &str,
    help: &str,
) -> ConfigField {
    ConfigField {
        default_value: Some(default.to_string()),
        ..required(name, label, kind, help)
    }
}

/// An `enum` field choosing one of `options` (the first is the default).
pub fn choice(name: &str, label: &str, options: &[&str], help: &str) -> ConfigField {
    ConfigField {
        required: false,
        default_value: options.first().map(|o| o.to_string()),
        options: options.iter().map(|o| o.to_string()).collect(),
        ..required(name, label, FieldKind::Enum, help)
    }
}

/// The required `api_key` secret of most hosted APIs; `help` says where
/// to get one.
pub fn api_key(help: &str) -> ConfigField {
    required("api_key", "API key", FieldKind::Secret, help)
}

/// The optional `base_url` field overriding the API root (`default`, or
/// another setting when `None`).
pub fn base_url(default: Option<&str>, help: &str) -> ConfigField {
    optional("base_url", "Base URL", FieldKind::Url, default, help)
}

/// [`base_url`] for a hosted API whose root rarely changes.
pub fn proxy_base_url(default: &str) -> ConfigField {
    base_url(
        Some(default),
        "API root; change it only to go through a proxy.",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint(pairs: &[(&str, &str)]) -> Endpoint {
        Endpoint {
            name: "prod-gpt".into(),
            model: "gpt-4o".into(),
            config: pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    #[test]
    fn require_names_endpoint_and_key_but_not_values() {
        let ep = endpoint(&[("api_key", "sk-secret"), ("empty", "")]);
        assert_eq!(ep.require("api_key").unwrap(), "sk-secret");
        let err = ep.require("empty").unwrap_err();
        assert_eq!(err.message, "endpoint 'prod-gpt' is missing config 'empty'");
        assert_eq!(err.status, 400);
        assert_eq!(ep.get_or("missing", "dflt"), "dflt");
    }

    #[test]
    fn base_urls() {
        let ep = endpoint(&[
            ("base_url", "https://proxy.example.com/v1/"),
            ("bad", "ftp://x"),
            ("sk", "sk-secret x"),
        ]);
        assert_eq!(
            ep.base_url("base_url", None).unwrap(),
            "https://proxy.example.com/v1"
        );
        assert_eq!(
            ep.base_url("unset", Some("https://api.openai.com/v1"))
                .unwrap(),
            "https://api.openai.com/v1"
        );
        let err = ep.base_url("bad", None).unwrap_err();
        assert_eq!(
            err.message,
            "config 'bad' of endpoint 'prod-gpt' must be an absolute http(s) URL"
        );
        assert!(
            !ep.base_url("sk", None)
                .unwrap_err()
                .message
                .contains("secret")
        );
        assert!(
            ep.base_url("unset", None)
                .unwrap_err()
                .message
                .contains("missing config 'unset'")
        );
        assert!(endpoint(&[("u", "http://")]).base_url("u", None).is_err());
        assert!(
            endpoint(&[("u", "HTTP://localhost:8080")])
                .base_url("u", None)
                .is_ok()
        );
    }

    #[test]
    fn field_builders() {
        let f = optional(
            "base_url",
            "Base URL",
            FieldKind::Url,
            Some("https://x"),
            "h",
        );
        assert!(!f.required);
        assert_eq!(f.default_value.as_deref(), Some("https://x"));
        let c = choice("region", "Region", &["us", "eu"], "h");
        assert_eq!(
            (c.kind, c.default_value.as_deref(), c.options.len()),
            (FieldKind::Enum, Some("us"), 2)
        );
        assert!(required("api_key", "API key", FieldKind::Secret, "h").required);
    }
}
