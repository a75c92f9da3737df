//! Model catalogs kept as an editable `models.toml` embedded in the plugin.
//!
//! ```toml
//! [[models]]
//! id = "gpt-4.1-mini"                 # upstream model id
//! display_name = "GPT-4.1 mini"
//! context_window = 1047576            # input + output tokens
//! max_output_tokens = 32768           # 0 / omitted for embedding models
//! input_price_per_mtok = 0.40         # USD per million input tokens
//! output_price_per_mtok = 1.60        # USD per million output tokens
//! capabilities = ["tools", "vision", "prompt_caching"]
//!
//! [[models]]
//! id = "text-embedding-3-small"
//! display_name = "Text Embedding 3 Small"
//! context_window = 8191
//! input_price_per_mtok = 0.02
//! capabilities = ["embeddings"]
//! embedding_dimensions = 1536
//! ```
//!
//! Capabilities: `tools`, `vision`, `reasoning`, `prompt_caching`,
//! `embeddings`. Unknown keys are rejected, so typos fail the plugin's
//! catalog test instead of silently dropping data.

use std::collections::BTreeSet;

use portico_model::plugin::{Capabilities, ModelInfo};
use serde::Deserialize;

/// Why a catalog does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid model catalog: {0}")]
pub struct CatalogError(pub String);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CatalogFile {
    #[serde(default)]
    models: Vec<Entry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    id: String,
    display_name: String,
    context_window: u32,
    #[serde(default)]
    max_output_tokens: u32,
    input_price_per_mtok: f64,
    #[serde(default)]
    output_price_per_mtok: f64,
    #[serde(default)]
    capabilities: Vec<String>,
    #[serde(default)]
    embedding_dimensions: Option<u32>,
}

/// Parses and checks a catalog document.
pub fn parse(toml_text: &str) -> Result<Vec<ModelInfo>, CatalogError> {
    let file: CatalogFile = toml::from_str(toml_text).map_err(|e| CatalogError(e.to_string()))?;
    let mut seen = BTreeSet::new();
    file.models
        .into_iter()
        .map(|entry| {
            let id = entry.id.trim().to_string();
            let fail = |problem: String| CatalogError(format!("model '{id}': {problem}"));
            if id.is_empty() {
                return Err(CatalogError("a model has an empty id".into()));
            }
            if !seen.insert(id.clone()) {
                return Err(fail("duplicate id".into()));
            }
            if entry.context_window == 0 {
                return Err(fail("context_window must be positive".into()));
            }
            for price in [entry.input_price_per_mtok, entry.output_price_per_mtok] {
                if !price.is_finite() || price < 0.0 {
                    return Err(fail(format!("price {price} must be a non-negative number")));
                }
            }
            let mut capabilities = Capabilities::default();
            for name in &entry.capabilities {
                let flag = match name.as_str() {
                    "tools" => &mut capabilities.tools,
                    "vision" => &mut capabilities.vision,
                    "reasoning" => &mut capabilities.reasoning,
                    "prompt_caching" => &mut capabilities.prompt_caching,
                    "embeddings" => &mut capabilities.embeddings,
                    other => {
                        return Err(fail(format!(
                            "unknown capability '{other}' (expected tools, vision, reasoning, prompt_caching, embeddings)"
                        )));
                    }
                };
                *flag = true;
            }
            if capabilities.embeddings && entry.embedding_dimensions.is_none() {
                return Err(fail("embedding models need embedding_dimensions".into()));
            }
            Ok(ModelInfo {
                id,
                display_name: entry.display_name,
                context_window: entry.context_window,
                max_output_tokens: entry.max_output_tokens,
                input_price_per_mtok: entry.input_price_per_mtok,
                output_price_per_mtok: entry.output_price_per_mtok,
                capabilities,
                embedding_dimensions: entry.embedding_dimensions,
            })
        })
        .collect()
}

/// Parses the plugin's embedded catalog (`include_str!("../models.toml")`).
///
/// # Panics
///
/// When the catalog is invalid. It is compiled into the plugin, so this is
/// a build defect: cover it with a unit test calling [`parse`]. (A panic
/// at load makes the host reject the plugin with the message.)
pub fn load(embedded: &str) -> Vec<ModelInfo> {
    match parse(embedded) {
        Ok(models) => models,
        Err(e) => panic!("{e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"
[[models]]
id = "chat-1"
display_name = "Chat 1"
context_window = 128000
max_output_tokens = 16384
input_price_per_mtok = 2.5
output_price_per_mtok = 10
capabilities = ["tools", "vision", "prompt_caching"]

[[models]]
id = "embed-1"
display_name = "Embed 1"
context_window = 8191
input_price_per_mtok = 0.02
capabilities = ["embeddings"]
embedding_dimensions = 1536
"#;

    #[test]
    fn parses_catalog() {
        let models = parse(SAMPLE).unwrap();
        assert_eq!(models.len(), 2);
        assert_eq!(models[0].id, "chat-1");
        assert_eq!(models[0].output_price_per_mtok, 10.0);
        assert!(
            models[0].capabilities.tools
                && models[0].capabilities.vision
                && !models[0].capabilities.reasoning
        );
        assert_eq!(models[1].max_output_tokens, 0);
        assert_eq!(models[1].embedding_dimensions, Some(1536));
        assert_eq!(load(SAMPLE), models);
        assert_eq!(parse("").unwrap(), vec![]);
    }

    #[test]
    fn rejects_mistakes() {
        let typo = SAMPLE.replace("context_window = 8191", "context_windw = 8191");
        assert!(parse(&typo).is_err());
        let bad_cap = SAMPLE.replace("\"vision\"", "\"telepathy\"");
        assert!(
            parse(&bad_cap)
                .unwrap_err()
                .0
                .contains("unknown capability 'telepathy'")
        );
        let dup = SAMPLE.replace("embed-1", "chat-1");
        assert!(parse(&dup).unwrap_err().0.contains("duplicate id"));
        let no_dims = SAMPLE.replace("embedding_dimensions = 1536", "");
        assert!(
            parse(&no_dims)
                .unwrap_err()
                .0
                .contains("embedding_dimensions")
        );
        let negative = SAMPLE.replace("input_price_per_mtok = 2.5", "input_price_per_mtok = -1");
        assert!(parse(&negative).is_err());
    }
}
