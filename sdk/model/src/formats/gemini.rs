//! The Google Gemini wire format (`generativelanguage` v1beta/v1, which
//! Vertex AI shares), both directions:
//!
//! - client side: requests the `google-genai` SDKs send to the gateway's
//!   Gemini dialect, and the answers, stream chunks and errors it sends back;
//! - provider side: requests the Gemini and Vertex AI plugins send upstream,
//!   and the parsing of what comes back.
//!
//! Gemini peculiarities the translation absorbs:
//! - function calls usually carry no id: ids are synthesized, and function
//!   responses are matched to calls by id when given, else by name in order;
//! - thought signatures (opaque tokens Gemini 3 requires back on function
//!   calls) travel in the neutral model as a `Thinking` part with empty text
//!   placed right before the part they belong to;
//! - function schemas are an OpenAPI subset: JSON Schema is cleaned up on the
//!   way out and Gemini's upper-case types are lowered on the way in.

use std::collections::HashMap;

use serde_json::{Map, Number, Value, json};

use crate::{
    ChatRequest, ChatResponse, ContentPart, EmbeddingsRequest, EmbeddingsResponse, ErrorKind,
    FinishReason, ImageSource, Message, ProviderError, RawJson, Reasoning, ReasoningEffort, Role,
    SamplingParams, StreamEvent, Tool, ToolChoice, Usage,
};

const DIALECT: &str = "gemini";

/// The thought signature Google documents for function calls the model did
/// not produce itself (history from another provider or a stream whose
/// signatures were not kept); Gemini 3 rejects unsigned calls otherwise.
const FOREIGN_SIGNATURE: &str = "skip_thought_signature_validator";

// ---------------------------------------------------------------------------
// Small JSON helpers
// ---------------------------------------------------------------------------

/// `topP` -> `top_p`: the API accepts proto field names too.
fn snake_case(camel: &str) -> String {
    let mut out = String::with_capacity(camel.len() + 4);
    for c in camel.chars() {
        if c.is_ascii_uppercase() {
            out.push('_');
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// `max_items` -> `maxItems`.
fn camel_case(snake: &str) -> String {
    let mut out = String::with_capacity(snake.len());
    let mut upper = false;
    for c in snake.chars() {
        if c == '_' && !out.is_empty() {
            upper = true;
        } else if upper {
            out.push(c.to_ascii_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

/// A field by its camelCase name or its snake_case proto name; `null`
/// counts as absent, as in proto JSON.
fn field<'a>(obj: &'a Map<String, Value>, camel: &str) -> Option<&'a Value> {
    let found = obj.get(camel).filter(|v| !v.is_null());
    if found.is_some() {
        return found;
    }
    let snake = snake_case(camel);
    if snake == camel {
        return None;
    }
    obj.get(&snake).filter(|v| !v.is_null())
}

fn is_known(key: &str, known: &[&str]) -> bool {
    known.iter().any(|k| *k == key || snake_case(k) == key)
}

fn at(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn invalid_value(path: &str, expected: &str) -> ProviderError {
    ProviderError::invalid_request(format!("Invalid value at '{path}': expected {expected}"))
}

fn missing(path: &str) -> ProviderError {
    ProviderError::invalid_request(format!("Missing required field '{path}'"))
}

fn parse_body(body: &[u8]) -> Result<Map<String, Value>, ProviderError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(ProviderError::invalid_request(
            "Invalid JSON payload received: the request body must be a JSON object",
        )),
        Err(e) => Err(ProviderError::invalid_request(format!(
            "Invalid JSON payload received: {e}"
        ))),
    }
}

fn as_f64(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        // Proto JSON allows numbers as strings.
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn as_i64(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64().or_else(|| {
            // Python clients send `40.0` for integer-valued floats.
            n.as_f64()
                .filter(|f| f.is_finite() && f.fract() == 0.0 && f.abs() < 9.0e15)
                .map(|f| f as i64)
        }),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn str_field<'a>(
    obj: &'a Map<String, Value>,
    key: &str,
    path: &str,
) -> Result<Option<&'a str>, ProviderError> {
    match field(obj, key) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(invalid_value(&at(path, key), "a string")),
    }
}

fn required_str<'a>(
    obj: &'a Map<String, Value>,
    key: &str,
    path: &str,
) -> Result<&'a str, ProviderError> {
    str_field(obj, key, path)?.ok_or_else(|| missing(&at(path, key)))
}

fn f64_field(
    obj: &Map<String, Value>,
    key: &str,
    path: &str,
) -> Result<Option<f64>, ProviderError> {
    field(obj, key)
        .map(|v| as_f64(v).ok_or_else(|| invalid_value(&at(path, key), "a number")))
        .transpose()
}

fn i64_field(
    obj: &Map<String, Value>,
    key: &str,
    path: &str,
) -> Result<Option<i64>, ProviderError> {
    field(obj, key)
        .map(|v| as_i64(v).ok_or_else(|| invalid_value(&at(path, key), "an integer")))
        .transpose()
}

fn u32_field(
    obj: &Map<String, Value>,
    key: &str,
    path: &str,
) -> Result<Option<u32>, ProviderError> {
    field(obj, key)
        .map(|v| {
            as_i64(v)
                .and_then(|n| u32::try_from(n).ok())
                .ok_or_else(|| invalid_value(&at(path, key), "a non-negative integer"))
        })
        .transpose()
}

fn bool_field(
    obj: &Map<String, Value>,
    key: &str,
    path: &str,
) -> Result<Option<bool>, ProviderError> {
    match field(obj, key) {
        None => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(invalid_value(&at(path, key), "a boolean")),
    }
}

fn object_field<'a>(
    obj: &'a Map<String, Value>,
    key: &str,
    path: &str,
) -> Result<Option<&'a Map<String, Value>>, ProviderError> {
    match field(obj, key) {
        None => Ok(None),
        Some(Value::Object(m)) => Ok(Some(m)),
        Some(_) => Err(invalid_value(&at(path, key), "an object")),
    }
}

fn array_field<'a>(
    obj: &'a Map<String, Value>,
    key: &str,
    path: &str,
) -> Result<Option<&'a Vec<Value>>, ProviderError> {
    match field(obj, key) {
        None => Ok(None),
        Some(Value::Array(a)) => Ok(Some(a)),
        Some(_) => Err(invalid_value(&at(path, key), "an array")),
    }
}

fn as_object<'a>(v: &'a Value, path: &str) -> Result<&'a Map<String, Value>, ProviderError> {
    v.as_object()
        .ok_or_else(|| invalid_value(path, "an object"))
}

/// Unsigned token counts, tolerant of strings (int64 in proto JSON).
fn count(obj: &Map<String, Value>, key: &str) -> Option<u32> {
    field(obj, key)
        .and_then(as_i64)
        .map(|n| u32::try_from(n.max(0)).unwrap_or(u32::MAX))
}

/// Embedding values keep their short decimal form (an `f32` widened to
/// `f64` would print as `0.10000000149011612`).
fn float_value(x: f32) -> Value {
    x.to_string()
        .parse::<f64>()
        .ok()
        .and_then(Number::from_f64)
        .map_or(Value::Null, Value::Number)
}

/// Arguments JSON text as the object Gemini wants; anything that is not an
/// object (empty or broken model output) becomes `{}`.
fn args_object(arguments: &str) -> Value {
    match serde_json::from_str::<Value>(arguments) {
        Ok(v @ Value::Object(_)) => v,
        _ => json!({}),
    }
}

fn image_part(source: &ImageSource) -> Value {
    match source {
        ImageSource::Base64 { media_type, data } => {
            json!({"inlineData": {"mimeType": media_type, "data": data}})
        }
        ImageSource::Url { url } => {
            if let ImageSource::Base64 { media_type, data } = ImageSource::from_url(url) {
                return json!({"inlineData": {"mimeType": media_type, "data": data}});
            }
            let mut file = Map::new();
            if let Some(mime) = guess_mime(url) {
                file.insert("mimeType".into(), json!(mime));
            }
            file.insert("fileUri".into(), json!(url));
            json!({ "fileData": file })
        }
    }
}

/// Vertex wants `fileData.mimeType`; the extension is the only hint a URL
/// gives without fetching it.
fn guess_mime(url: &str) -> Option<&'static str> {
    let path = url.split(['?', '#']).next().unwrap_or(url);
    let ext = path.rsplit_once('.')?.1.to_ascii_lowercase();
    Some(match ext.as_str() {
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "heic" => "image/heic",
        "heif" => "image/heif",
        "pdf" => "application/pdf",
        _ => return None,
    })
}

// ---------------------------------------------------------------------------
// Finish reasons and usage
// ---------------------------------------------------------------------------

fn finish_from_gemini(reason: &str, saw_call: bool) -> FinishReason {
    match reason {
        "STOP" if saw_call => FinishReason::ToolCalls,
        "STOP" => FinishReason::Stop,
        "MAX_TOKENS" => FinishReason::Length,
        "SAFETY"
        | "RECITATION"
        | "BLOCKLIST"
        | "PROHIBITED_CONTENT"
        | "SPII"
        | "LANGUAGE"
        | "IMAGE_SAFETY"
        | "IMAGE_PROHIBITED_CONTENT"
        | "IMAGE_RECITATION"
        | "MODEL_ARMOR" => FinishReason::ContentFilter,
        "MALFORMED_FUNCTION_CALL"
        | "UNEXPECTED_TOOL_CALL"
        | "TOO_MANY_TOOL_CALLS"
        | "MISSING_THOUGHT_SIGNATURE"
        | "OTHER"
        | "IMAGE_OTHER" => FinishReason::Error,
        // Unspecified or newer reasons: the answer is what it is.
        _ if saw_call => FinishReason::ToolCalls,
        _ => FinishReason::Stop,
    }
}

fn finish_to_gemini(reason: FinishReason) -> &'static str {
    match reason {
        // Gemini ends a function-calling turn with STOP as well.
        FinishReason::Stop | FinishReason::ToolCalls => "STOP",
        FinishReason::Length => "MAX_TOKENS",
        FinishReason::ContentFilter => "SAFETY",
        FinishReason::Error => "OTHER",
    }
}

fn usage_from_metadata(meta: &Map<String, Value>) -> Usage {
    let get = |key: &str| count(meta, key).unwrap_or(0);
    Usage {
        // Tool-use prompt tokens (search grounding, code execution) are
        // billed as input; thinking tokens as output.
        input_tokens: get("promptTokenCount").saturating_add(get("toolUsePromptTokenCount")),
        output_tokens: get("candidatesTokenCount").saturating_add(get("thoughtsTokenCount")),
        cached_input_tokens: count(meta, "cachedContentTokenCount"),
    }
}

fn usage_metadata(usage: &Usage) -> Value {
    let mut meta = Map::new();
    meta.insert("promptTokenCount".into(), json!(usage.input_tokens));
    meta.insert("candidatesTokenCount".into(), json!(usage.output_tokens));
    meta.insert(
        "totalTokenCount".into(),
        json!(usage.input_tokens.saturating_add(usage.output_tokens)),
    );
    if let Some(cached) = usage.cached_input_tokens {
        meta.insert("cachedContentTokenCount".into(), json!(cached));
    }
    Value::Object(meta)
}

// ---------------------------------------------------------------------------
// Schemas
// ---------------------------------------------------------------------------

/// A Gemini `Schema` (OpenAPI subset, upper-case types, `nullable`) as JSON
/// Schema, for providers that speak JSON Schema.
fn gemini_schema_to_json_schema(schema: &Value) -> Value {
    let Value::Object(map) = schema else {
        return schema.clone();
    };
    let mut out = Map::new();
    for (key, value) in map {
        let key = camel_case(key);
        match key.as_str() {
            "type" => match value.as_str() {
                Some(t) if t.eq_ignore_ascii_case("TYPE_UNSPECIFIED") || t.is_empty() => {}
                Some(t) => {
                    out.insert(key, json!(t.to_ascii_lowercase()));
                }
                None => {
                    out.insert(key, value.clone());
                }
            },
            "nullable" | "propertyOrdering" => {}
            // `format: enum` is Gemini's marker for enums, not JSON Schema.
            "format" if value.as_str() == Some("enum") => {}
            "properties" => {
                let props = value
                    .as_object()
                    .map(|p| {
                        p.iter()
                            .map(|(name, s)| (name.clone(), gemini_schema_to_json_schema(s)))
                            .collect::<Map<_, _>>()
                    })
                    .unwrap_or_default();
                out.insert(key, Value::Object(props));
            }
            "items" => {
                out.insert(key, gemini_schema_to_json_schema(value));
            }
            "anyOf" => {
                let variants = value
                    .as_array()
                    .map(|a| a.iter().map(gemini_schema_to_json_schema).collect())
                    .unwrap_or_default();
                out.insert(key, Value::Array(variants));
            }
            "example" => {
                out.insert("examples".into(), json!([value]));
            }
            _ => {
                out.insert(key, value.clone());
            }
        }
    }
    if map.get("nullable").and_then(Value::as_bool) == Some(true)
        && let Some(Value::String(t)) = out.get("type")
    {
        let t = t.clone();
        out.insert("type".into(), json!([t, "null"]));
    }
    Value::Object(out)
}

/// Keys of Gemini's `Schema`; others (`$schema`, `additionalProperties`,
/// `exclusiveMinimum`, ...) make the API answer 400 "Unknown name".
const GEMINI_SCHEMA_KEYS: &[&str] = &[
    "title",
    "description",
    "minItems",
    "maxItems",
    "minLength",
    "maxLength",
    "minProperties",
    "maxProperties",
    "pattern",
    "minimum",
    "maximum",
    "default",
    "example",
    "propertyOrdering",
];

/// Nesting limit of the cleanup, a guard against pathological schemas
/// (`allOf` including itself); recursive `$ref`s are cut earlier.
const MAX_SCHEMA_DEPTH: u32 = 64;

/// JSON Schema as a Gemini `Schema`: local `$ref`s inlined, `type` arrays
/// and `null` variants turned into `nullable`, `const`/`oneOf`/`allOf`
/// rewritten, and keys and formats the API rejects dropped.
fn json_schema_to_gemini(schema: &Value) -> Value {
    let defs = schema
        .as_object()
        .and_then(|root| root.get("$defs").or_else(|| root.get("definitions")))
        .and_then(Value::as_object);
    let mut cx = SchemaCx {
        defs,
        expanding: Vec::new(),
    };
    cx.clean(schema, 0)
}

fn resolve_ref<'a>(reference: &str, defs: Option<&'a Map<String, Value>>) -> Option<&'a Value> {
    let name = reference
        .strip_prefix("#/$defs/")
        .or_else(|| reference.strip_prefix("#/definitions/"))?;
    defs?.get(name)
}

struct SchemaCx<'a> {
    defs: Option<&'a Map<String, Value>>,
    /// `$ref`s being inlined on the current path: a repeat is recursion,
    /// which Gemini's schema cannot express.
    expanding: Vec<String>,
}

impl SchemaCx<'_> {
    fn clean(&mut self, schema: &Value, depth: u32) -> Value {
        let Value::Object(map) = schema else {
            // `true` / `{}`-like schemas accept anything; Gemini has no "any".
            return json!({});
        };
        if depth > MAX_SCHEMA_DEPTH {
            return json!({"type": "OBJECT"});
        }
        if let Some(reference) = map.get("$ref").and_then(Value::as_str) {
            let target = resolve_ref(reference, self.defs);
            let (Some(target), false) = (target, self.expanding.iter().any(|r| r == reference))
            else {
                let mut cut = json!({"type": "OBJECT"});
                if let Some(description) = map.get("description") {
                    cut["description"] = description.clone();
                }
                return cut;
            };
            // Sibling keys (a description next to the `$ref`) win over the target's.
            let mut merged = target.as_object().cloned().unwrap_or_default();
            for (k, v) in map {
                if k != "$ref" {
                    merged.insert(k.clone(), v.clone());
                }
            }
            self.expanding.push(reference.to_string());
            let cleaned = self.clean(&Value::Object(merged), depth + 1);
            self.expanding.pop();
            return cleaned;
        }
        if let Some(Value::Array(parts)) = map.get("allOf") {
            // Merge the conjuncts into one schema: exact for the usual
            // "object + extra properties" use, an approximation otherwise.
            let mut merged = Map::new();
            for part in parts {
                let part = match part.get("$ref").and_then(Value::as_str) {
                    Some(r) => resolve_ref(r, self.defs).unwrap_or(part),
                    None => part,
                };
                if let Some(obj) = part.as_object() {
                    merge_schema_into(&mut merged, obj);
                }
            }
            for (k, v) in map {
                if k != "allOf" {
                    merged.insert(k.clone(), v.clone());
                }
            }
            return self.clean(&Value::Object(merged), depth + 1);
        }
        self.clean_object(map, depth)
    }

    fn clean_object(&mut self, map: &Map<String, Value>, depth: u32) -> Value {
        let mut out = Map::new();
        let mut nullable = map.get("nullable").and_then(Value::as_bool) == Some(true);

        // Types: Gemini takes one type; `["string", "null"]` is nullable.
        let mut types: Vec<String> = match map.get("type") {
            Some(Value::String(t)) => vec![t.clone()],
            Some(Value::Array(ts)) => ts
                .iter()
                .filter_map(Value::as_str)
                .map(String::from)
                .collect(),
            _ => Vec::new(),
        };
        if types.iter().any(|t| t.eq_ignore_ascii_case("null")) {
            nullable = true;
            types.retain(|t| !t.eq_ignore_ascii_case("null"));
        }

        // Variants: `oneOf` is as close to `anyOf` as Gemini gets.
        let variants = map
            .get("anyOf")
            .or_else(|| map.get("oneOf"))
            .and_then(Value::as_array);
        if let Some(variants) = variants {
            let mut cleaned = Vec::new();
            for variant in variants {
                if variant.get("type").and_then(Value::as_str) == Some("null") {
                    nullable = true;
                } else {
                    cleaned.push(self.clean(variant, depth + 1));
                }
            }
            if cleaned.len() == 1 {
                // A single non-null variant: inline it, the parent's keys win.
                if let Some(Value::Object(single)) = cleaned.pop() {
                    out.extend(single);
                }
            } else if !cleaned.is_empty() {
                out.insert("anyOf".into(), Value::Array(cleaned));
            }
        } else if types.len() > 1 {
            let mut alternatives = Vec::new();
            for t in &types {
                let mut one = map.clone();
                one.insert("type".into(), json!(t));
                alternatives.push(self.clean(&Value::Object(one), depth + 1));
            }
            let mut result = Map::new();
            result.insert("anyOf".into(), Value::Array(alternatives));
            if let Some(d) = map.get("description") {
                result.insert("description".into(), d.clone());
            }
            if nullable {
                result.insert("nullable".into(), json!(true));
            }
            return Value::Object(result);
        }

        let mut gemini_type = types.first().map(|t| t.to_ascii_uppercase());
        if let Some(t) = &gemini_type {
            out.insert("type".into(), json!(t));
        }

        // Enums: Gemini enums are strings; `const` is a one-value enum.
        let enum_values = match (map.get("enum"), map.get("const")) {
            (Some(Value::Array(values)), _) => Some(values.clone()),
            (None, Some(value)) => Some(vec![value.clone()]),
            _ => None,
        };
        if let Some(values) = enum_values
            && !values.is_empty()
            && values.iter().all(Value::is_string)
        {
            if gemini_type.is_none() {
                gemini_type = Some("STRING".into());
                out.insert("type".into(), json!("STRING"));
            }
            if gemini_type.as_deref() == Some("STRING") {
                out.insert("enum".into(), Value::Array(values));
                out.insert("format".into(), json!("enum"));
            }
        }

        if let Some(Value::String(format)) = map.get("format") {
            let allowed = match gemini_type.as_deref() {
                Some("STRING") => ["enum", "date-time"].contains(&format.as_str()),
                Some("INTEGER") => ["int32", "int64"].contains(&format.as_str()),
                Some("NUMBER") => ["float", "double"].contains(&format.as_str()),
                _ => false,
            };
            if allowed && !out.contains_key("format") {
                out.insert("format".into(), json!(format));
            }
        }

        if let Some(Value::Object(props)) = map.get("properties") {
            let cleaned: Map<String, Value> = props
                .iter()
                .map(|(name, s)| (name.clone(), self.clean(s, depth + 1)))
                .collect();
            if !cleaned.is_empty() {
                if let Some(Value::Array(required)) = map.get("required") {
                    // Gemini rejects required names that are not properties.
                    let required: Vec<Value> = required
                        .iter()
                        .filter(|r| r.as_str().is_some_and(|r| cleaned.contains_key(r)))
                        .cloned()
                        .collect();
                    if !required.is_empty() {
                        out.insert("required".into(), Value::Array(required));
                    }
                }
                out.insert("properties".into(), Value::Object(cleaned));
            }
        }

        match map.get("items") {
            Some(items @ Value::Object(_)) => {
                out.insert("items".into(), self.clean(items, depth + 1));
            }
            // Tuple form (`items: [..]`, draft 4-7): the first shape stands for all.
            Some(Value::Array(items)) if !items.is_empty() => {
                out.insert("items".into(), self.clean(&items[0], depth + 1));
            }
            _ => {
                if let Some(Value::Array(prefix)) = map.get("prefixItems")
                    && let Some(first) = prefix.first()
                {
                    out.insert("items".into(), self.clean(first, depth + 1));
                }
            }
        }

        for key in GEMINI_SCHEMA_KEYS {
            if let Some(v) = map.get(*key) {
                out.insert((*key).to_string(), v.clone());
            }
        }
        if let Some(Value::Array(examples)) = map.get("examples")
            && let Some(first) = examples.first()
            && !out.contains_key("example")
        {
            out.insert("example".into(), first.clone());
        }
        if nullable {
            out.insert("nullable".into(), json!(true));
        }
        Value::Object(out)
    }
}

fn merge_schema_into(target: &mut Map<String, Value>, source: &Map<String, Value>) {
    for (k, v) in source {
        match (k.as_str(), target.get_mut(k), v) {
            ("properties", Some(Value::Object(existing)), Value::Object(new)) => {
                existing.extend(new.clone());
            }
            ("required", Some(Value::Array(existing)), Value::Array(new)) => {
                for name in new {
                    if !existing.contains(name) {
                        existing.push(name.clone());
                    }
                }
            }
            _ => {
                target.insert(k.clone(), v.clone());
            }
        }
    }
}

/// Gemini rejects an OBJECT schema with empty `properties`, and a tool
/// without arguments needs no schema at all.
fn has_no_parameters(schema: &Value) -> bool {
    match schema {
        Value::Object(map) => {
            map.get("type").and_then(Value::as_str) == Some("OBJECT")
                && !map.contains_key("properties")
                && !map.contains_key("anyOf")
        }
        _ => true,
    }
}

// ---------------------------------------------------------------------------
// Client side: GenerateContentRequest -> ChatRequest
// ---------------------------------------------------------------------------

const REQUEST_KEYS: &[&str] = &[
    "contents",
    "systemInstruction",
    "tools",
    "toolConfig",
    "generationConfig",
    // The model is in the URL; SDKs never repeat it, some proxies do.
    "model",
];

const GENERATION_KEYS: &[&str] = &[
    "temperature",
    "topP",
    "topK",
    "maxOutputTokens",
    "stopSequences",
    "seed",
    "presencePenalty",
    "frequencyPenalty",
    "responseMimeType",
    "responseSchema",
    "responseJsonSchema",
];

/// Ids of the function calls in a request, so function responses without
/// an id find the call they answer.
#[derive(Default)]
struct CallIds {
    count: u32,
    /// (id, name, answered)
    calls: Vec<(String, String, bool)>,
}

impl CallIds {
    fn call(&mut self, id: Option<&str>, name: &str) -> String {
        let id = match id {
            Some(id) if !id.is_empty() => id.to_string(),
            _ => format!("call_{}_{}", self.count, name),
        };
        self.count += 1;
        self.calls.push((id.clone(), name.to_string(), false));
        id
    }

    fn response(&mut self, id: Option<&str>, name: &str) -> String {
        if let Some(id) = id.filter(|id| !id.is_empty()) {
            if let Some(call) = self.calls.iter_mut().find(|c| c.0 == id) {
                call.2 = true;
            }
            return id.to_string();
        }
        if let Some(call) = self.calls.iter_mut().find(|c| !c.2 && c.1 == name) {
            call.2 = true;
            return call.0.clone();
        }
        // A response to no known call: still give it a unique id.
        let id = format!("call_{}_{}", self.count, name);
        self.count += 1;
        id
    }
}

/// Appends a part to the last message when it has the same role; keeps
/// the neutral conversation alternating the way most providers want.
fn push_part(messages: &mut Vec<Message>, role: Role, part: ContentPart) {
    match messages.last_mut() {
        Some(last) if last.role == role => last.content.push(part),
        _ => messages.push(Message {
            role,
            content: vec![part],
        }),
    }
}

/// `{"result": x}` / `{"output": x}` / `{"error": x}` (the conventions of
/// the SDKs and docs) unwrap to `x`; other shapes stay whole.
fn function_response_content(response: Option<&Value>) -> (String, bool) {
    let Some(Value::Object(map)) = response else {
        return match response {
            Some(Value::String(s)) => (s.clone(), false),
            Some(v) => (v.to_string(), false),
            None => (String::new(), false),
        };
    };
    if map.len() == 1
        && let Some((key, value)) = map.iter().next()
        && ["result", "output", "error"].contains(&key.as_str())
    {
        let text = match value {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        return (text, key == "error");
    }
    (Value::Object(map.clone()).to_string(), false)
}

fn parse_request_part(
    part: &Value,
    path: &str,
    role: Role,
    ids: &mut CallIds,
    messages: &mut Vec<Message>,
) -> Result<(), ProviderError> {
    let obj = as_object(part, path)?;
    let signature = str_field(obj, "thoughtSignature", path)?.map(String::from);
    let thought = bool_field(obj, "thought", path)?.unwrap_or(false);
    let carrier = |messages: &mut Vec<Message>, role: Role, signature: Option<String>| {
        if let Some(signature) = signature {
            push_part(
                messages,
                role,
                ContentPart::Thinking {
                    text: String::new(),
                    signature: Some(signature),
                },
            );
        }
    };

    if let Some(text) = field(obj, "text") {
        let text = text
            .as_str()
            .ok_or_else(|| invalid_value(&at(path, "text"), "a string"))?;
        if thought {
            push_part(
                messages,
                role,
                ContentPart::Thinking {
                    text: text.to_string(),
                    signature,
                },
            );
        } else {
            carrier(messages, role, signature);
            if !text.is_empty() {
                push_part(messages, role, ContentPart::text(text));
            }
        }
    } else if let Some(data) = object_field(obj, "inlineData", path)? {
        let p = at(path, "inlineData");
        let media_type = required_str(data, "mimeType", &p)?.to_string();
        let data = required_str(data, "data", &p)?.to_string();
        carrier(messages, role, signature);
        push_part(
            messages,
            role,
            ContentPart::Image {
                source: ImageSource::Base64 { media_type, data },
            },
        );
    } else if let Some(file) = object_field(obj, "fileData", path)? {
        let url = required_str(file, "fileUri", &at(path, "fileData"))?.to_string();
        carrier(messages, role, signature);
        push_part(
            messages,
            role,
            ContentPart::Image {
                source: ImageSource::Url { url },
            },
        );
    } else if let Some(call) = object_field(obj, "functionCall", path)? {
        let p = at(path, "functionCall");
        if role != Role::Assistant {
            return Err(ProviderError::invalid_request(format!(
                "Invalid value at '{p}': a functionCall is only valid in a \"model\" turn"
            )));
        }
        let name = required_str(call, "name", &p)?;
        let arguments = match field(call, "args") {
            None => "{}".to_string(),
            Some(args @ Value::Object(_)) => args.to_string(),
            Some(_) => return Err(invalid_value(&at(&p, "args"), "an object")),
        };
        let id = ids.call(str_field(call, "id", &p)?, name);
        carrier(messages, role, signature);
        push_part(
            messages,
            role,
            ContentPart::ToolCall {
                id,
                name: name.to_string(),
                arguments,
            },
        );
    } else if let Some(response) = object_field(obj, "functionResponse", path)? {
        let p = at(path, "functionResponse");
        if role == Role::Assistant {
            return Err(ProviderError::invalid_request(format!(
                "Invalid value at '{p}': a functionResponse is only valid in a \"user\" turn"
            )));
        }
        let name = required_str(response, "name", &p)?;
        let tool_call_id = ids.response(str_field(response, "id", &p)?, name);
        let (content, is_error) = function_response_content(field(response, "response"));
        push_part(
            messages,
            Role::Tool,
            ContentPart::ToolResult {
                tool_call_id,
                name: Some(name.to_string()),
                content,
                is_error,
            },
        );
    } else if let Some(code) = object_field(obj, "executableCode", path)? {
        // Code the model ran with the code-execution tool: kept as text so
        // other providers see what happened.
        let language = str_field(code, "language", &at(path, "executableCode"))?
            .unwrap_or("python")
            .to_ascii_lowercase();
        let source = str_field(code, "code", &at(path, "executableCode"))?.unwrap_or_default();
        push_part(
            messages,
            role,
            ContentPart::text(format!("```{language}\n{source}\n```")),
        );
    } else if let Some(result) = object_field(obj, "codeExecutionResult", path)? {
        let output =
            str_field(result, "output", &at(path, "codeExecutionResult"))?.unwrap_or_default();
        push_part(messages, role, ContentPart::text(output));
    } else if thought || signature.is_some() {
        // A bare thought marker or signature: keep the signature.
        carrier(messages, role, signature);
    } else {
        return Err(ProviderError::invalid_request(format!(
            "Invalid value at '{path}': the part has no supported data field \
             (text, inlineData, fileData, functionCall, functionResponse)"
        )));
    }
    Ok(())
}

fn parse_contents(contents: &[Value], path: &str) -> Result<Vec<Message>, ProviderError> {
    let mut ids = CallIds::default();
    let mut messages = Vec::new();
    for (i, content) in contents.iter().enumerate() {
        let cpath = format!("{path}[{i}]");
        let obj = as_object(content, &cpath)?;
        let role = match str_field(obj, "role", &cpath)? {
            None | Some("") | Some("user") => Role::User,
            Some("model") => Role::Assistant,
            // Older clients put function responses in a "function" turn.
            Some("function") | Some("tool") => Role::User,
            Some(other) => {
                return Err(ProviderError::invalid_request(format!(
                    "Invalid value at '{cpath}.role': \"{other}\" (expected \"user\" or \"model\")"
                )));
            }
        };
        let parts =
            array_field(obj, "parts", &cpath)?.ok_or_else(|| missing(&at(&cpath, "parts")))?;
        for (j, part) in parts.iter().enumerate() {
            parse_request_part(
                part,
                &format!("{cpath}.parts[{j}]"),
                role,
                &mut ids,
                &mut messages,
            )?;
        }
    }
    Ok(messages)
}

fn parse_system_instruction(value: &Value, path: &str) -> Result<Option<String>, ProviderError> {
    let text = match value {
        Value::String(s) => s.clone(),
        Value::Object(obj) => {
            let parts = array_field(obj, "parts", path)?
                .map(Vec::as_slice)
                .unwrap_or_default();
            let mut texts = Vec::new();
            for (j, part) in parts.iter().enumerate() {
                let ppath = format!("{path}.parts[{j}]");
                let part = as_object(part, &ppath)?;
                match str_field(part, "text", &ppath)? {
                    Some(t) => texts.push(t),
                    None => {
                        return Err(invalid_value(
                            &ppath,
                            "a text part (only text is supported here)",
                        ));
                    }
                }
            }
            texts.join("\n")
        }
        _ => return Err(invalid_value(path, "a Content object")),
    };
    Ok(Some(text).filter(|t| !t.is_empty()))
}

fn parse_tools(tools: &[Value], leftover: &mut Vec<Value>) -> Result<Vec<Tool>, ProviderError> {
    let mut out = Vec::new();
    for (i, tool) in tools.iter().enumerate() {
        let tpath = format!("tools[{i}]");
        let obj = as_object(tool, &tpath)?;
        let mut rest = Map::new();
        for (key, value) in obj {
            if is_known(key, &["functionDeclarations"]) {
                continue;
            }
            rest.insert(key.clone(), value.clone());
        }
        if !rest.is_empty() {
            // Built-in tools (googleSearch, codeExecution, urlContext, ...)
            // only mean something to Gemini itself.
            leftover.push(Value::Object(rest));
        }
        let Some(declarations) = array_field(obj, "functionDeclarations", &tpath)? else {
            continue;
        };
        for (j, decl) in declarations.iter().enumerate() {
            let dpath = format!("{tpath}.functionDeclarations[{j}]");
            let decl = as_object(decl, &dpath)?;
            let name = required_str(decl, "name", &dpath)?.to_string();
            let description = str_field(decl, "description", &dpath)?.map(String::from);
            let parameters = if let Some(schema) = field(decl, "parametersJsonSchema") {
                schema.clone()
            } else if let Some(schema) = field(decl, "parameters") {
                if !schema.is_object() {
                    return Err(invalid_value(&at(&dpath, "parameters"), "a Schema object"));
                }
                gemini_schema_to_json_schema(schema)
            } else {
                json!({"type": "object", "properties": {}})
            };
            out.push(Tool {
                name,
                description,
                parameters,
            });
        }
    }
    Ok(out)
}

fn parse_tool_config(
    config: &Map<String, Value>,
    leftover: &mut Map<String, Value>,
) -> Result<Option<ToolChoice>, ProviderError> {
    for (key, value) in config {
        if !is_known(key, &["functionCallingConfig"]) {
            leftover.insert(key.clone(), value.clone());
        }
    }
    let path = "toolConfig.functionCallingConfig";
    let Some(fcc) = object_field(config, "functionCallingConfig", "toolConfig")? else {
        return Ok(None);
    };
    let allowed: Vec<String> = match array_field(fcc, "allowedFunctionNames", path)? {
        Some(names) => names
            .iter()
            .map(|n| {
                n.as_str()
                    .map(String::from)
                    .ok_or_else(|| invalid_value(&at(path, "allowedFunctionNames"), "strings"))
            })
            .collect::<Result<_, _>>()?,
        None => Vec::new(),
    };
    let mode = str_field(fcc, "mode", path)?.map(str::to_ascii_uppercase);
    Ok(match mode.as_deref() {
        None | Some("MODE_UNSPECIFIED") => None,
        // VALIDATED only adds schema adherence to AUTO.
        Some("AUTO") | Some("VALIDATED") => Some(ToolChoice::Auto),
        Some("NONE") => Some(ToolChoice::None),
        Some("ANY") if allowed.len() == 1 => Some(ToolChoice::Tool {
            name: allowed[0].clone(),
        }),
        Some("ANY") => Some(ToolChoice::Required),
        Some(other) => {
            return Err(ProviderError::invalid_request(format!(
                "Invalid value at '{path}.mode': \"{other}\" (expected AUTO, ANY, NONE or VALIDATED)"
            )));
        }
    })
}

fn parse_generation_config(
    config: &Map<String, Value>,
    request: &mut ChatRequest,
    leftover: &mut Map<String, Value>,
) -> Result<(), ProviderError> {
    let path = "generationConfig";
    let params = &mut request.params;
    params.temperature = f64_field(config, "temperature", path)?;
    params.top_p = f64_field(config, "topP", path)?;
    params.top_k = u32_field(config, "topK", path)?;
    params.max_tokens = u32_field(config, "maxOutputTokens", path)?;
    params.seed = i64_field(config, "seed", path)?;
    params.presence_penalty = f64_field(config, "presencePenalty", path)?;
    params.frequency_penalty = f64_field(config, "frequencyPenalty", path)?;
    if let Some(stops) = array_field(config, "stopSequences", path)? {
        params.stop = stops
            .iter()
            .map(|s| {
                s.as_str()
                    .map(String::from)
                    .ok_or_else(|| invalid_value(&at(path, "stopSequences"), "strings"))
            })
            .collect::<Result<_, _>>()?;
    }
    if let Some(thinking) = object_field(config, "thinkingConfig", path)? {
        // Also left in `extra`, so a Gemini upstream gets it as sent.
        request.reasoning = parse_thinking_config(thinking, &at(path, "thinkingConfig"))?;
    }
    let mime = str_field(config, "responseMimeType", path)?;
    let json_schema = field(config, "responseJsonSchema");
    let schema = field(config, "responseSchema");
    if mime == Some("application/json") {
        request.response_format = Some(match (json_schema, schema) {
            (Some(s), _) => {
                json!({"type": "json_schema", "json_schema": {"name": "response", "schema": s}})
            }
            (None, Some(s)) => json!({
                "type": "json_schema",
                "json_schema": {"name": "response", "schema": gemini_schema_to_json_schema(s)},
            }),
            (None, None) => json!({"type": "json_object"}),
        });
    }
    for (key, value) in config {
        let known = is_known(key, GENERATION_KEYS);
        // Non-JSON structured output (text/x.enum) only Gemini understands.
        let gemini_only_output = is_known(
            key,
            &["responseMimeType", "responseSchema", "responseJsonSchema"],
        ) && mime
            .is_some_and(|m| m != "application/json" && m != "text/plain");
        if !known || gemini_only_output {
            leftover.insert(key.clone(), value.clone());
        }
    }
    Ok(())
}

/// `thinkingConfig` as a neutral reasoning request: a budget of 0 is off,
/// -1 (dynamic) is "on, the provider's default", a level is an effort;
/// `includeThoughts` alone asks for thinking the provider sizes.
fn parse_thinking_config(
    config: &Map<String, Value>,
    path: &str,
) -> Result<Option<Reasoning>, ProviderError> {
    let budget = i64_field(config, "thinkingBudget", path)?;
    let level = str_field(config, "thinkingLevel", path)?.and_then(ReasoningEffort::parse);
    let include_thoughts = bool_field(config, "includeThoughts", path)?.unwrap_or(false);
    let budget_tokens = match budget {
        Some(0) => return Ok(Some(Reasoning::off())),
        Some(n) => u32::try_from(n).ok(),
        None => None,
    };
    let asked = budget.is_some() || level.is_some() || include_thoughts;
    Ok(asked.then_some(Reasoning {
        effort: level,
        budget_tokens,
    }))
}

/// A `generateContent` / `streamGenerateContent` request body as the
/// neutral request; the model comes from the URL (the host sets it).
pub fn parse_generate_content_request(body: &[u8]) -> Result<ChatRequest, ProviderError> {
    let obj = parse_body(body)?;
    parse_request_object(&obj)
}

fn parse_request_object(obj: &Map<String, Value>) -> Result<ChatRequest, ProviderError> {
    let mut request = ChatRequest::default();
    let mut extra = Map::new();
    for (key, value) in obj {
        if !is_known(key, REQUEST_KEYS) {
            extra.insert(key.clone(), value.clone());
        }
    }

    let contents = array_field(obj, "contents", "")?.ok_or_else(|| missing("contents"))?;
    if contents.is_empty() {
        return Err(ProviderError::invalid_request(
            "Invalid value at 'contents': must not be empty",
        ));
    }
    request.messages = parse_contents(contents, "contents")?;

    if let Some(system) = field(obj, "systemInstruction") {
        request.system = parse_system_instruction(system, "systemInstruction")?;
    }

    if let Some(tools) = array_field(obj, "tools", "")? {
        let mut leftover = Vec::new();
        request.tools = parse_tools(tools, &mut leftover)?;
        if !leftover.is_empty() {
            extra.insert("tools".into(), Value::Array(leftover));
        }
    }

    if let Some(config) = object_field(obj, "toolConfig", "")? {
        let mut leftover = Map::new();
        request.tool_choice = parse_tool_config(config, &mut leftover)?;
        if !leftover.is_empty() {
            extra.insert("toolConfig".into(), Value::Object(leftover));
        }
    }

    if let Some(config) = object_field(obj, "generationConfig", "")? {
        let mut leftover = Map::new();
        parse_generation_config(config, &mut request, &mut leftover)?;
        if !leftover.is_empty() {
            extra.insert("generationConfig".into(), Value::Object(leftover));
        }
    }

    if !extra.is_empty() {
        request.extra = extra;
        request.extra_dialect = Some(DIALECT.to_string());
    }
    Ok(request)
}

/// A `countTokens` body (`{contents}` or `{generateContentRequest}`) as the
/// neutral request whose prompt is to be counted.
pub fn parse_count_tokens_request(body: &[u8]) -> Result<ChatRequest, ProviderError> {
    let obj = parse_body(body)?;
    match object_field(&obj, "generateContentRequest", "")? {
        Some(inner) => parse_request_object(inner),
        None => parse_request_object(&obj),
    }
}

/// The `countTokens` body for `request`: the fields of its
/// `GenerateContentRequest` that count (contents, system instruction and
/// tools; the generation and tool configs count for nothing, and Vertex
/// AI's count refuses the latter). The Gemini API takes them as a
/// `generateContentRequest` naming the model resource (`models/…`), given
/// as `model`; Vertex AI takes them as they are (`model` None).
pub fn count_tokens_request_body(request: &ChatRequest, model: Option<&str>) -> Value {
    const COUNTED: [&str; 3] = ["contents", "systemInstruction", "tools"];
    let mut fields = match generate_content_request_body(request) {
        Value::Object(fields) => fields,
        _ => Map::new(),
    };
    fields.retain(|key, _| COUNTED.contains(&key.as_str()));
    match model {
        Some(model) => {
            fields.insert("model".into(), json!(model));
            json!({ "generateContentRequest": fields })
        }
        None => Value::Object(fields),
    }
}

/// The token count in a `countTokens` answer (proto JSON leaves out a
/// zero count).
pub fn parse_count_tokens(body: &[u8]) -> Result<u64, ProviderError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(answer)) => match answer.get("totalTokens") {
            None => Ok(0),
            Some(count) => count.as_u64().ok_or_else(|| {
                ProviderError::bad_upstream("Gemini countTokens answer with a bad totalTokens")
            }),
        },
        _ => Err(ProviderError::bad_upstream(
            "unreadable Gemini countTokens answer",
        )),
    }
}

/// The `countTokens` answer.
pub fn count_tokens_body(total_tokens: u64) -> Value {
    json!({ "totalTokens": total_tokens })
}

// ---------------------------------------------------------------------------
// Client side: ChatResponse / StreamEvent -> GenerateContentResponse
// ---------------------------------------------------------------------------

/// Whether a signature can go to a Gemini client: the SDKs decode
/// `thoughtSignature` as base64 bytes and fail on anything else, including
/// base64-looking text of the wrong length or with stray trailing bits (an
/// Anthropic signature is such text). Both alphabets pass, padded or not.
fn is_base64(signature: &str) -> bool {
    use base64::Engine as _;
    use base64::alphabet::{STANDARD, URL_SAFE};
    use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};

    const CONFIG: GeneralPurposeConfig =
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
    const STANDARD_ANY_PADDING: GeneralPurpose = GeneralPurpose::new(&STANDARD, CONFIG);
    const URL_SAFE_ANY_PADDING: GeneralPurpose = GeneralPurpose::new(&URL_SAFE, CONFIG);
    !signature.is_empty()
        && (STANDARD_ANY_PADDING.decode(signature).is_ok()
            || URL_SAFE_ANY_PADDING.decode(signature).is_ok())
}

/// A signature with no part after it, as Gemini sends one: on an empty text.
fn trailing_signature(signature: &str) -> Value {
    json!({"text": "", "thoughtSignature": signature})
}

/// Neutral parts as Gemini response parts; an empty-text `Thinking` with a
/// signature lends the signature to the part after it.
fn response_parts(content: &[ContentPart]) -> Vec<Value> {
    let mut parts = Vec::new();
    let mut signature: Option<&str> = None;
    for part in content {
        let mut value = match part {
            ContentPart::Text { text } => json!({ "text": text }),
            ContentPart::Thinking {
                text,
                signature: sig,
            } => {
                let sig = sig.as_deref().filter(|s| is_base64(s));
                if text.is_empty() {
                    if sig.is_some() {
                        signature = sig;
                    }
                    continue;
                }
                let mut v = json!({"text": text, "thought": true});
                if let Some(sig) = sig {
                    v["thoughtSignature"] = json!(sig);
                }
                v
            }
            ContentPart::ToolCall {
                id,
                name,
                arguments,
            } => json!({"functionCall": {"id": id, "name": name, "args": args_object(arguments)}}),
            ContentPart::Image { source } => image_part(source),
            // Not something a model answers with.
            ContentPart::ToolResult { .. } => continue,
        };
        if let Some(sig) = signature.take() {
            value["thoughtSignature"] = json!(sig);
        }
        parts.push(value);
    }
    parts.extend(signature.map(trailing_signature));
    parts
}

/// A `GenerateContentResponse` body for a client of the Gemini dialect.
pub fn generate_content_body(response: &ChatResponse, model: &str) -> Value {
    json!({
        "candidates": [{
            "content": {"role": "model", "parts": response_parts(&response.content)},
            "finishReason": finish_to_gemini(response.finish_reason),
            "index": 0,
        }],
        "usageMetadata": usage_metadata(&response.usage),
        "modelVersion": model,
        "responseId": response.id,
    })
}

#[derive(Debug)]
struct PendingCall {
    index: u32,
    id: String,
    name: String,
    arguments: String,
    signature: Option<String>,
}

/// Renders neutral stream events as `streamGenerateContent` chunks (the
/// host frames each as an SSE `data:` line). Gemini streams whole
/// `functionCall` parts, so tool-call deltas are buffered until the call
/// is complete. Signatures go where a whole answer has them: on the thought
/// they seal, or on the part after them (a trailing one on an empty text).
#[derive(Debug)]
pub struct ChunkEncoder {
    id: String,
    model: String,
    pending: Vec<PendingCall>,
    /// The last thought delta, held until the next event, which may be the
    /// signature that seals it: a signature on a part of its own would read
    /// back as the signature of the part after it.
    held_thought: Option<String>,
    /// A signature for the next part.
    lent_signature: Option<String>,
    usage: Option<Usage>,
    reason: Option<FinishReason>,
    finished: bool,
}

impl ChunkEncoder {
    pub fn new(id: String, model: String) -> Self {
        Self {
            id,
            model,
            pending: Vec::new(),
            held_thought: None,
            lent_signature: None,
            usage: None,
            reason: None,
            finished: false,
        }
    }

    fn chunk(&self, parts: Vec<Value>, finish: Option<FinishReason>) -> Value {
        let mut candidate = json!({
            "content": {"role": "model", "parts": parts},
            "index": 0,
        });
        if let Some(reason) = finish {
            candidate["finishReason"] = json!(finish_to_gemini(reason));
        }
        let mut chunk = json!({
            "candidates": [candidate],
            "modelVersion": self.model,
            "responseId": self.id,
        });
        if finish.is_some()
            && let Some(usage) = &self.usage
        {
            chunk["usageMetadata"] = usage_metadata(usage);
        }
        chunk
    }

    fn call_parts(&mut self) -> Vec<Value> {
        self.pending
            .drain(..)
            .map(|call| {
                let mut part = json!({"functionCall": {
                    "id": call.id,
                    "name": call.name,
                    "args": args_object(&call.arguments),
                }});
                if let Some(signature) = call.signature {
                    part["thoughtSignature"] = json!(signature);
                }
                part
            })
            .collect()
    }

    /// A part of the answer, with the signature lent to it.
    fn part_chunk(&mut self, mut part: Value) -> Value {
        if let Some(signature) = self.lent_signature.take() {
            part["thoughtSignature"] = json!(signature);
        }
        self.chunk(vec![part], None)
    }

    /// The held thought, signed by `signature` if it is one a Gemini client
    /// can take.
    fn release_thought(&mut self, signature: Option<&str>, out: &mut Vec<Value>) {
        if let Some(text) = self.held_thought.take() {
            let mut part = json!({"text": text, "thought": true});
            if let Some(signature) = signature.filter(|s| is_base64(s)) {
                part["thoughtSignature"] = json!(signature);
            }
            out.push(self.part_chunk(part));
        }
    }

    /// What is held back, for a stream that ends in an error.
    pub fn interrupt(&mut self) -> Vec<Value> {
        let mut out = Vec::new();
        self.release_thought(None, &mut out);
        self.flush_calls(&mut out);
        out
    }

    fn flush_calls(&mut self, out: &mut Vec<Value>) {
        if !self.pending.is_empty() {
            let parts = self.call_parts();
            out.push(self.chunk(parts, None));
        }
    }

    pub fn encode(&mut self, event: &StreamEvent) -> Vec<Value> {
        let mut out = Vec::new();
        if self.finished {
            return out;
        }
        if self.held_thought.is_some() {
            let seal = match event {
                StreamEvent::ThinkingSignature { signature } => Some(signature.as_str()),
                _ => None,
            };
            self.release_thought(seal, &mut out);
            if seal.is_some() {
                return out;
            }
        }
        match event {
            StreamEvent::Start { id, .. } => {
                if self.id.is_empty() {
                    self.id = id.clone();
                }
            }
            StreamEvent::TextDelta { text } if !text.is_empty() => {
                self.flush_calls(&mut out);
                out.push(self.part_chunk(json!({ "text": text })));
            }
            StreamEvent::ThinkingDelta { text } if !text.is_empty() => {
                self.flush_calls(&mut out);
                self.held_thought = Some(text.clone());
            }
            // With no thought open, a signature is the next part's; another
            // provider's signature (not base64) means nothing to Gemini.
            StreamEvent::ThinkingSignature { signature } if is_base64(signature) => {
                self.lent_signature = Some(signature.clone());
            }
            StreamEvent::ToolCallStart { index, id, name } => {
                self.flush_calls(&mut out);
                self.pending.push(PendingCall {
                    index: *index,
                    id: id.clone(),
                    name: name.clone(),
                    arguments: String::new(),
                    signature: self.lent_signature.take(),
                });
            }
            StreamEvent::ToolCallDelta { index, arguments } => {
                if let Some(call) = self.pending.iter_mut().find(|c| c.index == *index) {
                    call.arguments.push_str(arguments);
                }
            }
            StreamEvent::Usage { usage } => self.usage = Some(*usage),
            StreamEvent::Finish { reason } => self.reason = Some(*reason),
            // A Gemini upstream's part that no neutral event carries (only a
            // client of the upstream's own dialect gets raw events).
            StreamEvent::Raw { data } if data.is_object() => {
                self.flush_calls(&mut out);
                let chunk = if data.get("thoughtSignature").is_some() {
                    self.chunk(vec![data.clone()], None)
                } else {
                    self.part_chunk(data.clone())
                };
                out.push(chunk);
            }
            StreamEvent::TextDelta { .. }
            | StreamEvent::ThinkingDelta { .. }
            | StreamEvent::ThinkingSignature { .. }
            | StreamEvent::Raw { .. } => {}
        }
        out
    }

    /// The last chunk: any buffered calls, `finishReason` and usage.
    pub fn finish(&mut self) -> Vec<Value> {
        if self.finished {
            return Vec::new();
        }
        let mut out = Vec::new();
        self.release_thought(None, &mut out);
        self.finished = true;
        let mut parts = self.call_parts();
        if let Some(signature) = self.lent_signature.take() {
            parts.push(trailing_signature(&signature));
        } else if parts.is_empty() {
            // `chunk.text` in the SDKs reads "" rather than None.
            parts.push(json!({"text": ""}));
        }
        let reason = self.reason.unwrap_or_default();
        out.push(self.chunk(parts, Some(reason)));
        out
    }
}

// ---------------------------------------------------------------------------
// Client side: embeddings
// ---------------------------------------------------------------------------

/// An embeddings request of the Gemini dialect; `batch` tells which answer
/// shape the client expects (`batchEmbedContents` or `embedContent`).
#[derive(Debug, Clone, PartialEq)]
pub struct ClientEmbedRequest {
    pub request: EmbeddingsRequest,
    pub batch: bool,
}

impl ClientEmbedRequest {
    pub fn parse(body: &[u8], batch: bool) -> Result<Self, ProviderError> {
        let request = if batch {
            parse_batch_embed_contents_request(body)?
        } else {
            parse_embed_content_request(body)?
        };
        Ok(Self { request, batch })
    }

    /// The answer in the shape the client asked for.
    pub fn response_body(&self, response: &EmbeddingsResponse) -> Value {
        if self.batch {
            batch_embed_contents_body(response)
        } else {
            embed_content_body(response)
        }
    }
}

struct EmbedItem {
    text: String,
    task_type: Option<String>,
    dimensions: Option<u32>,
}

fn parse_embed_item(obj: &Map<String, Value>, path: &str) -> Result<EmbedItem, ProviderError> {
    let content =
        object_field(obj, "content", path)?.ok_or_else(|| missing(&at(path, "content")))?;
    let cpath = at(path, "content");
    let parts =
        array_field(content, "parts", &cpath)?.ok_or_else(|| missing(&at(&cpath, "parts")))?;
    let mut texts = Vec::new();
    for (j, part) in parts.iter().enumerate() {
        let ppath = format!("{cpath}.parts[{j}]");
        let part = as_object(part, &ppath)?;
        match str_field(part, "text", &ppath)? {
            Some(text) => texts.push(text),
            None => {
                return Err(invalid_value(
                    &ppath,
                    "a text part (only text can be embedded here)",
                ));
            }
        }
    }
    Ok(EmbedItem {
        text: texts.join("\n"),
        task_type: str_field(obj, "taskType", path)?.map(String::from),
        dimensions: u32_field(obj, "outputDimensionality", path)?,
    })
}

fn input_type_from_task(task: &str) -> Option<&'static str> {
    Some(match task {
        "RETRIEVAL_DOCUMENT" => "search_document",
        "RETRIEVAL_QUERY" => "search_query",
        "CLASSIFICATION" => "classification",
        "CLUSTERING" => "clustering",
        _ => return None,
    })
}

fn task_from_input_type(input_type: &str) -> Option<&'static str> {
    Some(match input_type {
        "search_document" => "RETRIEVAL_DOCUMENT",
        "search_query" => "RETRIEVAL_QUERY",
        "classification" => "CLASSIFICATION",
        "clustering" => "CLUSTERING",
        _ => return None,
    })
}

fn embeddings_request(items: Vec<EmbedItem>) -> EmbeddingsRequest {
    let mut request = EmbeddingsRequest::default();
    let first_task = items.first().and_then(|i| i.task_type.clone());
    request.dimensions = items.first().and_then(|i| i.dimensions);
    if let Some(task) = first_task.filter(|t| t != "TASK_TYPE_UNSPECIFIED") {
        match input_type_from_task(&task) {
            Some(input_type) => request.input_type = Some(input_type.to_string()),
            // SEMANTIC_SIMILARITY, QUESTION_ANSWERING, ...: Gemini only.
            None => {
                request.extra.insert("taskType".into(), json!(task));
                request.extra_dialect = Some(DIALECT.to_string());
            }
        }
    }
    request.inputs = items.into_iter().map(|i| i.text).collect();
    request
}

/// An `embedContent` body: one input (its text parts joined).
pub fn parse_embed_content_request(body: &[u8]) -> Result<EmbeddingsRequest, ProviderError> {
    let obj = parse_body(body)?;
    let item = parse_embed_item(&obj, "")?;
    Ok(embeddings_request(vec![item]))
}

/// A `batchEmbedContents` body: one input per request.
pub fn parse_batch_embed_contents_request(body: &[u8]) -> Result<EmbeddingsRequest, ProviderError> {
    let obj = parse_body(body)?;
    let requests = array_field(&obj, "requests", "")?.ok_or_else(|| missing("requests"))?;
    if requests.is_empty() {
        return Err(ProviderError::invalid_request(
            "Invalid value at 'requests': must not be empty",
        ));
    }
    let mut items: Vec<EmbedItem> = Vec::with_capacity(requests.len());
    for (i, request) in requests.iter().enumerate() {
        let path = format!("requests[{i}]");
        let item = parse_embed_item(as_object(request, &path)?, &path)?;
        if let Some(first) = items.first() {
            // The neutral request has one purpose and size for all inputs.
            if item.task_type != first.task_type {
                return Err(ProviderError::invalid_request(format!(
                    "Invalid value at '{path}.taskType': all requests of a batch must use the same taskType"
                )));
            }
            if item.dimensions != first.dimensions {
                return Err(ProviderError::invalid_request(format!(
                    "Invalid value at '{path}.outputDimensionality': all requests of a batch must use the same outputDimensionality"
                )));
            }
        }
        items.push(item);
    }
    Ok(embeddings_request(items))
}

fn values(embedding: &[f32]) -> Value {
    Value::Array(embedding.iter().map(|x| float_value(*x)).collect())
}

/// The `embedContent` answer.
pub fn embed_content_body(response: &EmbeddingsResponse) -> Value {
    let first = response
        .embeddings
        .first()
        .map(Vec::as_slice)
        .unwrap_or_default();
    json!({"embedding": {"values": values(first)}})
}

/// The `batchEmbedContents` answer.
pub fn batch_embed_contents_body(response: &EmbeddingsResponse) -> Value {
    let embeddings: Vec<Value> = response
        .embeddings
        .iter()
        .map(|e| json!({"values": values(e)}))
        .collect();
    json!({ "embeddings": embeddings })
}

// ---------------------------------------------------------------------------
// Client side: errors
// ---------------------------------------------------------------------------

fn status_name(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::InvalidRequest => "INVALID_ARGUMENT",
        ErrorKind::Authentication => "UNAUTHENTICATED",
        ErrorKind::Permission => "PERMISSION_DENIED",
        ErrorKind::NotFound => "NOT_FOUND",
        ErrorKind::RateLimited => "RESOURCE_EXHAUSTED",
        ErrorKind::Overloaded => "UNAVAILABLE",
        ErrorKind::Upstream | ErrorKind::Internal => "INTERNAL",
    }
}

/// A Google API error body (`{"error": {code, message, status}}`), with a
/// `RetryInfo` detail when a retry delay is known.
pub fn error_body(error: &ProviderError) -> Value {
    let mut inner = json!({
        "code": error.status,
        "message": error.message,
        "status": status_name(error.kind),
    });
    if let Some(ms) = error.retry_after_ms {
        let delay = if ms % 1000 == 0 {
            format!("{}s", ms / 1000)
        } else {
            format!("{}.{:03}s", ms / 1000, ms % 1000)
        };
        inner["details"] = json!([{
            "@type": "type.googleapis.com/google.rpc.RetryInfo",
            "retryDelay": delay,
        }]);
    }
    json!({ "error": inner })
}

// ---------------------------------------------------------------------------
// Provider side: ChatRequest -> GenerateContentRequest
// ---------------------------------------------------------------------------

fn tool_response_value(content: &str, is_error: bool) -> Value {
    let inner = serde_json::from_str::<Value>(content)
        .unwrap_or_else(|_| Value::String(content.to_string()));
    let key = if is_error { "error" } else { "result" };
    json!({ key: inner })
}

/// The function name for a tool result that does not carry it: the
/// matching earlier call's, else the one in a synthesized id.
fn tool_result_name(
    name: Option<&String>,
    tool_call_id: &str,
    names: &HashMap<&str, &str>,
) -> String {
    if let Some(name) = name.filter(|n| !n.is_empty()) {
        return name.clone();
    }
    if let Some(name) = names.get(tool_call_id) {
        return (*name).to_string();
    }
    tool_call_id
        .strip_prefix("call_")
        .and_then(|rest| rest.split_once('_'))
        .filter(|(n, name)| {
            !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) && !name.is_empty()
        })
        .map_or_else(|| tool_call_id.to_string(), |(_, name)| name.to_string())
}

struct Turn {
    role: &'static str,
    parts: Vec<Value>,
}

fn push_turn_part(turns: &mut Vec<Turn>, role: &'static str, part: Value) {
    match turns.last_mut() {
        Some(last) if last.role == role => last.parts.push(part),
        _ => turns.push(Turn {
            role,
            parts: vec![part],
        }),
    }
}

fn build_contents(messages: &[Message]) -> Vec<Value> {
    let mut names: HashMap<&str, &str> = HashMap::new();
    for message in messages {
        for part in &message.content {
            if let ContentPart::ToolCall { id, name, .. } = part {
                names.insert(id.as_str(), name.as_str());
            }
        }
    }

    let mut turns: Vec<Turn> = Vec::new();
    for message in messages {
        let role = match message.role {
            Role::Assistant => "model",
            Role::User | Role::Tool => "user",
        };
        let mut signature: Option<&str> = None;
        for part in &message.content {
            let (part_role, mut value) = match part {
                ContentPart::Text { text } if text.is_empty() => continue,
                ContentPart::Text { text } => (role, json!({ "text": text })),
                ContentPart::Image { source } => (role, image_part(source)),
                ContentPart::Thinking {
                    text,
                    signature: sig,
                } => match sig {
                    Some(sig) if text.is_empty() => {
                        signature = Some(sig);
                        continue;
                    }
                    Some(sig) if message.role == Role::Assistant => (
                        role,
                        json!({"text": text, "thought": true, "thoughtSignature": sig}),
                    ),
                    // Reasoning without a signature (another provider's, or
                    // a stream's) is no use to Gemini.
                    _ => continue,
                },
                ContentPart::ToolCall {
                    name, arguments, ..
                } => (
                    "model",
                    json!({"functionCall": {"name": name, "args": args_object(arguments)}}),
                ),
                ContentPart::ToolResult {
                    tool_call_id,
                    name,
                    content,
                    is_error,
                } => (
                    "user",
                    json!({"functionResponse": {
                        "name": tool_result_name(name.as_ref(), tool_call_id, &names),
                        "response": tool_response_value(content, *is_error),
                    }}),
                ),
            };
            if let Some(sig) = signature.take() {
                value["thoughtSignature"] = json!(sig);
            }
            push_turn_part(&mut turns, part_role, value);
        }
        if let Some(sig) = signature {
            push_turn_part(&mut turns, role, trailing_signature(sig));
        }
    }

    turns
        .into_iter()
        .map(|mut turn| {
            if turn.role == "model" {
                // The first call of each model step must be signed.
                if let Some(first) = turn
                    .parts
                    .iter_mut()
                    .find(|p| p.get("functionCall").is_some())
                    && first.get("thoughtSignature").is_none()
                {
                    first["thoughtSignature"] = json!(FOREIGN_SIGNATURE);
                }
            }
            json!({"role": turn.role, "parts": turn.parts})
        })
        .collect()
}

fn generation_config(
    params: &SamplingParams,
    response_format: Option<&Value>,
) -> Map<String, Value> {
    let mut config = Map::new();
    if let Some(v) = params.temperature {
        config.insert("temperature".into(), json!(v));
    }
    if let Some(v) = params.top_p {
        config.insert("topP".into(), json!(v));
    }
    if let Some(v) = params.top_k {
        config.insert("topK".into(), json!(v));
    }
    if let Some(v) = params.max_tokens {
        config.insert("maxOutputTokens".into(), json!(v));
    }
    if !params.stop.is_empty() {
        config.insert("stopSequences".into(), json!(params.stop));
    }
    if let Some(v) = params.seed {
        config.insert("seed".into(), json!(v));
    }
    if let Some(v) = params.presence_penalty {
        config.insert("presencePenalty".into(), json!(v));
    }
    if let Some(v) = params.frequency_penalty {
        config.insert("frequencyPenalty".into(), json!(v));
    }
    if let Some(format) = response_format {
        match format.get("type").and_then(Value::as_str) {
            Some("json_object") => {
                config.insert("responseMimeType".into(), json!("application/json"));
            }
            Some("json_schema") => {
                config.insert("responseMimeType".into(), json!("application/json"));
                if let Some(schema) = format.get("json_schema").and_then(|s| s.get("schema")) {
                    config.insert("responseSchema".into(), json_schema_to_gemini(schema));
                }
            }
            _ => {}
        }
    }
    config
}

/// The largest thinking budget every Gemini thinking model accepts
/// (Flash's; Pro's is 32768).
const MAX_THINKING_BUDGET: u32 = 24576;

/// The smallest budget Gemini 2.5 Pro takes: it cannot turn thinking off.
const MIN_PRO_THINKING_BUDGET: u32 = 128;

/// How a Gemini model takes its thinking settings, judged by its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ThinkingControl {
    /// A budget, 0 turning thinking off (Gemini 2.5 Flash and Flash-Lite).
    Budget,
    /// A budget, but thinking cannot be turned off (Gemini 2.5 Pro).
    BudgetAlwaysOn,
    /// Gemini 3 and later: a level (a budget is only tolerated), and
    /// thinking cannot be turned off. Pro takes LOW and HIGH; the others
    /// MINIMAL and MEDIUM as well.
    Level { pro: bool },
}

impl ThinkingControl {
    fn of(model: &str) -> Self {
        // Vertex may name the model by its resource path.
        let name = model
            .rsplit('/')
            .next()
            .unwrap_or(model)
            .to_ascii_lowercase();
        let Some(version) = name.strip_prefix("gemini-") else {
            return ThinkingControl::Budget;
        };
        let major = version
            .split(|c: char| !c.is_ascii_digit())
            .next()
            .and_then(|digits| digits.parse::<u32>().ok())
            .unwrap_or(0);
        if major >= 3 {
            ThinkingControl::Level {
                pro: version.contains("-pro"),
            }
        } else if version.starts_with("2.5-pro") {
            ThinkingControl::BudgetAlwaysOn
        } else {
            ThinkingControl::Budget
        }
    }
}

/// `thinkingConfig` for a reasoning request from another dialect, in the
/// model's own terms, with the thoughts shown when thinking is on (as the
/// other dialects show reasoning). Gemini 2.5: a budget, 0 when off (the
/// smallest for Pro, which cannot turn thinking off); no budget leaves it to
/// the model (dynamic). Gemini 3 and later: the level, the lowest the model
/// takes when off; a request's default (medium) is Pro's default, HIGH.
fn thinking_config(reasoning: &Reasoning, model: &str) -> Value {
    let control = ThinkingControl::of(model);
    if let ThinkingControl::Level { pro } = control {
        let level = match reasoning.effort_level() {
            None => return json!({"includeThoughts": true}),
            Some(ReasoningEffort::None | ReasoningEffort::Minimal) if pro => "LOW",
            Some(ReasoningEffort::None | ReasoningEffort::Minimal) => "MINIMAL",
            Some(ReasoningEffort::Low) => "LOW",
            Some(ReasoningEffort::Medium) if pro => "HIGH",
            Some(ReasoningEffort::Medium) => "MEDIUM",
            Some(ReasoningEffort::High | ReasoningEffort::XHigh) => "HIGH",
        };
        return if reasoning.is_off() {
            json!({"thinkingLevel": level})
        } else {
            json!({"includeThoughts": true, "thinkingLevel": level})
        };
    }
    if reasoning.is_off() {
        let budget = match control {
            ThinkingControl::BudgetAlwaysOn => MIN_PRO_THINKING_BUDGET,
            _ => 0,
        };
        return json!({"thinkingBudget": budget});
    }
    match reasoning.thinking_budget() {
        Some(budget) => json!({
            "includeThoughts": true,
            "thinkingBudget": budget.min(MAX_THINKING_BUDGET),
        }),
        None => json!({"includeThoughts": true}),
    }
}

/// Adds `extra` (Gemini-dialect fields the neutral model does not carry)
/// without overriding what the neutral request set: objects merge key by
/// key, `tools` arrays concatenate.
fn merge_extra(body: &mut Map<String, Value>, extra: &Map<String, Value>) {
    for (key, value) in extra {
        match (body.get_mut(key), value) {
            (None, _) => {
                body.insert(key.clone(), value.clone());
            }
            (Some(Value::Object(existing)), Value::Object(new)) => {
                for (k, v) in new {
                    existing.entry(k.clone()).or_insert_with(|| v.clone());
                }
            }
            (Some(Value::Array(existing)), Value::Array(new)) if key == "tools" => {
                existing.extend(new.iter().cloned());
            }
            (Some(_), _) => {}
        }
    }
}

/// The upstream `generateContent` / `streamGenerateContent` body (the model
/// goes in the URL).
pub fn generate_content_request_body(request: &ChatRequest) -> Value {
    let mut body = Map::new();
    body.insert(
        "contents".into(),
        Value::Array(build_contents(&request.messages)),
    );
    if let Some(system) = request.system.as_deref().filter(|s| !s.is_empty()) {
        body.insert(
            "systemInstruction".into(),
            json!({"parts": [{ "text": system }]}),
        );
    }
    if !request.tools.is_empty() {
        let declarations: Vec<Value> = request
            .tools
            .iter()
            .map(|tool| {
                let mut decl = Map::new();
                decl.insert("name".into(), json!(tool.name));
                if let Some(description) = tool.description.as_deref().filter(|d| !d.is_empty()) {
                    decl.insert("description".into(), json!(description));
                }
                let parameters = json_schema_to_gemini(&tool.parameters);
                if !has_no_parameters(&parameters) {
                    decl.insert("parameters".into(), parameters);
                }
                Value::Object(decl)
            })
            .collect();
        body.insert(
            "tools".into(),
            json!([{ "functionDeclarations": declarations }]),
        );
        if let Some(choice) = &request.tool_choice {
            let config = match choice {
                ToolChoice::Auto => json!({"mode": "AUTO"}),
                ToolChoice::None => json!({"mode": "NONE"}),
                ToolChoice::Required => json!({"mode": "ANY"}),
                ToolChoice::Tool { name } => json!({"mode": "ANY", "allowedFunctionNames": [name]}),
            };
            body.insert(
                "toolConfig".into(),
                json!({ "functionCallingConfig": config }),
            );
        }
    }
    let mut config = generation_config(&request.params, request.response_format.as_ref());
    // A Gemini client's own `thinkingConfig` is merged from `extra` below.
    if request.extra_dialect.as_deref() != Some(DIALECT)
        && let Some(reasoning) = &request.reasoning
    {
        config.insert(
            "thinkingConfig".into(),
            thinking_config(reasoning, &request.model),
        );
    }
    if !config.is_empty() {
        body.insert("generationConfig".into(), Value::Object(config));
    }
    if request.extra_dialect.as_deref() == Some(DIALECT) {
        merge_extra(&mut body, &request.extra);
    }
    Value::Object(body)
}

// ---------------------------------------------------------------------------
// Provider side: GenerateContentResponse -> ChatResponse / StreamEvent
// ---------------------------------------------------------------------------

/// An id for a function call Gemini gave none: unique per response when
/// Gemini names the response, so ids do not repeat across turns.
fn synthesized_call_id(response_id: &str, index: u32, name: &str) -> String {
    if response_id.is_empty() {
        format!("call_{index}_{name}")
    } else {
        format!("call_{response_id}_{index}")
    }
}

fn call_id(call: &Map<String, Value>, response_id: &str, index: u32, name: &str) -> String {
    match call.get("id").and_then(Value::as_str) {
        Some(id) if !id.is_empty() => id.to_string(),
        _ => synthesized_call_id(response_id, index, name),
    }
}

fn first_candidate(response: &Map<String, Value>) -> Option<&Map<String, Value>> {
    response
        .get("candidates")
        .and_then(Value::as_array)
        .and_then(|c| c.first())
        .and_then(Value::as_object)
}

fn candidate_parts(candidate: &Map<String, Value>) -> &[Value] {
    candidate
        .get("content")
        .and_then(|c| c.get("parts"))
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
}

fn block_reason(response: &Map<String, Value>) -> Option<&str> {
    response
        .get("promptFeedback")
        .and_then(|f| f.get("blockReason"))
        .and_then(Value::as_str)
        .filter(|r| *r != "BLOCK_REASON_UNSPECIFIED")
}

fn str_of<'a>(obj: &'a Map<String, Value>, key: &str) -> &'a str {
    obj.get(key).and_then(Value::as_str).unwrap_or_default()
}

/// An `{"error": ...}` object (in a 200 body or a stream) as an error.
fn embedded_error(error: &Value, status_hint: u16) -> ProviderError {
    let status = error
        .get("code")
        .and_then(Value::as_u64)
        .and_then(|c| u16::try_from(c).ok())
        .filter(|c| *c >= 400)
        .unwrap_or(status_hint);
    error_from_google(status, &[], error)
}

/// A `generateContent` answer as the neutral response.
pub fn parse_generate_content(body: &[u8]) -> Result<ChatResponse, ProviderError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| ProviderError::bad_upstream(format!("unreadable Gemini response: {e}")))?;
    let obj = value
        .as_object()
        .ok_or_else(|| ProviderError::bad_upstream("Gemini response is not a JSON object"))?;
    if let Some(error) = obj.get("error") {
        return Err(embedded_error(error, 502));
    }
    let response_id = str_of(obj, "responseId");
    let mut content = Vec::new();
    let mut calls = 0u32;
    let finish_reason = if let Some(candidate) = first_candidate(obj) {
        for part in candidate_parts(candidate)
            .iter()
            .filter_map(Value::as_object)
        {
            let signature = part
                .get("thoughtSignature")
                .and_then(Value::as_str)
                .map(String::from);
            let thought = part.get("thought").and_then(Value::as_bool) == Some(true);
            let mut converted = None;
            if let Some(text) = part.get("text").and_then(Value::as_str) {
                if thought {
                    content.push(ContentPart::Thinking {
                        text: text.to_string(),
                        signature,
                    });
                    continue;
                }
                if !text.is_empty() {
                    converted = Some(ContentPart::text(text));
                }
            } else if let Some(call) = part.get("functionCall").and_then(Value::as_object) {
                let name = str_of(call, "name").to_string();
                let args = call.get("args").cloned().unwrap_or_else(|| json!({}));
                converted = Some(ContentPart::ToolCall {
                    id: call_id(call, response_id, calls, &name),
                    name,
                    arguments: args.to_string(),
                });
                calls += 1;
            } else if let Some(data) = part.get("inlineData").and_then(Value::as_object) {
                converted = Some(ContentPart::Image {
                    source: ImageSource::Base64 {
                        media_type: str_of(data, "mimeType").to_string(),
                        data: str_of(data, "data").to_string(),
                    },
                });
            }
            if let Some(signature) = signature {
                content.push(ContentPart::Thinking {
                    text: String::new(),
                    signature: Some(signature),
                });
            }
            content.extend(converted);
        }
        match candidate.get("finishReason").and_then(Value::as_str) {
            Some(reason) => finish_from_gemini(reason, calls > 0),
            None if calls > 0 => FinishReason::ToolCalls,
            None => FinishReason::Stop,
        }
    } else if block_reason(obj).is_some() {
        FinishReason::ContentFilter
    } else {
        FinishReason::Stop
    };
    let usage = obj
        .get("usageMetadata")
        .and_then(Value::as_object)
        .map(usage_from_metadata)
        .unwrap_or_default();
    Ok(ChatResponse {
        id: response_id.to_string(),
        model: str_of(obj, "modelVersion").to_string(),
        content,
        finish_reason,
        usage,
        raw: RawJson::from_body(body),
    })
}

/// Turns the `data` payloads of a `streamGenerateContent?alt=sse` stream
/// (each a whole `GenerateContentResponse`) into neutral events.
#[derive(Debug, Default)]
pub struct ChunkDecoder {
    started: bool,
    calls: u32,
    finished: bool,
    response_id: String,
    last_usage: Option<Usage>,
    /// The last event was streamed thinking not yet signed.
    thinking_open: bool,
}

impl ChunkDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Decodes one SSE `data` payload; without `alt=sse` Gemini streams a
    /// JSON array of responses, which is accepted as well.
    pub fn decode(&mut self, data: &str) -> Result<Vec<StreamEvent>, ProviderError> {
        let data = data.trim();
        let mut events = Vec::new();
        if data.is_empty() || data == "[DONE]" {
            return Ok(events);
        }
        let value: Value = serde_json::from_str(data).map_err(|e| {
            ProviderError::bad_upstream(format!("unreadable Gemini stream chunk: {e}"))
        })?;
        match &value {
            Value::Array(items) => {
                for item in items {
                    self.decode_response(item, &mut events)?;
                }
            }
            _ => self.decode_response(&value, &mut events)?,
        }
        Ok(events)
    }

    /// Ends unsigned thinking streamed so far (an empty signature), so
    /// that a signature next is a part of its own.
    fn end_thinking(&mut self, events: &mut Vec<StreamEvent>) {
        if std::mem::take(&mut self.thinking_open) {
            events.push(StreamEvent::ThinkingSignature {
                signature: String::new(),
            });
        }
    }

    fn decode_response(
        &mut self,
        value: &Value,
        events: &mut Vec<StreamEvent>,
    ) -> Result<(), ProviderError> {
        let obj = value.as_object().ok_or_else(|| {
            ProviderError::bad_upstream("Gemini stream chunk is not a JSON object")
        })?;
        if let Some(error) = obj.get("error") {
            return Err(embedded_error(error, 502));
        }
        if !self.started {
            self.started = true;
            self.response_id = str_of(obj, "responseId").to_string();
            events.push(StreamEvent::Start {
                id: self.response_id.clone(),
                model: str_of(obj, "modelVersion").to_string(),
            });
        }
        let candidate = first_candidate(obj);
        if let Some(candidate) = candidate {
            for part in candidate_parts(candidate)
                .iter()
                .filter_map(Value::as_object)
            {
                let thought = part.get("thought").and_then(Value::as_bool) == Some(true);
                let signature = part
                    .get("thoughtSignature")
                    .and_then(Value::as_str)
                    .filter(|s| !s.is_empty());
                if thought {
                    if let Some(text) = part.get("text").and_then(Value::as_str)
                        && !text.is_empty()
                    {
                        events.push(StreamEvent::ThinkingDelta {
                            text: text.to_string(),
                        });
                        self.thinking_open = true;
                    }
                    // A signed thought is sealed, as in a whole answer.
                    if let Some(signature) = signature {
                        events.push(StreamEvent::ThinkingSignature {
                            signature: signature.to_string(),
                        });
                        self.thinking_open = false;
                    }
                    continue;
                }
                if !part.contains_key("text") && !part.contains_key("functionCall") {
                    // A part no neutral event can carry (a generated image,
                    // code the model ran): passed whole, signature included,
                    // to Gemini clients; other clients never see raw events,
                    // so for them the thinking before it ends here.
                    self.end_thinking(events);
                    events.push(StreamEvent::Raw {
                        data: Value::Object(part.clone()),
                    });
                    continue;
                }
                // The signature of any other part goes first, as the empty
                // signed thinking that a whole answer has before the part.
                // Right after unsigned thinking it would seal that thinking
                // instead (and be replayed on the wrong part), so an empty
                // signature ends that thinking unsigned first.
                if let Some(signature) = signature {
                    self.end_thinking(events);
                    events.push(StreamEvent::ThinkingSignature {
                        signature: signature.to_string(),
                    });
                }
                if let Some(text) = part.get("text").and_then(Value::as_str) {
                    if text.is_empty() {
                        continue;
                    }
                    self.thinking_open = false;
                    events.push(StreamEvent::TextDelta {
                        text: text.to_string(),
                    });
                } else if let Some(call) = part.get("functionCall").and_then(Value::as_object) {
                    self.thinking_open = false;
                    let index = self.calls;
                    self.calls += 1;
                    let name = str_of(call, "name").to_string();
                    let args = call.get("args").cloned().unwrap_or_else(|| json!({}));
                    events.push(StreamEvent::ToolCallStart {
                        index,
                        id: call_id(call, &self.response_id, index, &name),
                        name,
                    });
                    events.push(StreamEvent::ToolCallDelta {
                        index,
                        arguments: args.to_string(),
                    });
                }
            }
        }
        if let Some(meta) = obj.get("usageMetadata").and_then(Value::as_object) {
            let usage = usage_from_metadata(meta);
            if self.last_usage != Some(usage) {
                self.last_usage = Some(usage);
                events.push(StreamEvent::Usage { usage });
            }
        }
        if !self.finished {
            let reason = match candidate
                .and_then(|c| c.get("finishReason"))
                .and_then(Value::as_str)
            {
                Some(reason) => Some(finish_from_gemini(reason, self.calls > 0)),
                None if candidate.is_none() && block_reason(obj).is_some() => {
                    Some(FinishReason::ContentFilter)
                }
                None => None,
            };
            if let Some(reason) = reason {
                self.finished = true;
                events.push(StreamEvent::Finish { reason });
            }
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// Provider side: embeddings
// ---------------------------------------------------------------------------

/// The upstream `batchEmbedContents` body for `model`.
pub fn batch_embed_contents_request_body(request: &EmbeddingsRequest, model: &str) -> Value {
    let model = if model.starts_with("models/") {
        model.to_string()
    } else {
        format!("models/{model}")
    };
    let gemini_extra = request.extra_dialect.as_deref() == Some(DIALECT);
    let task_type = request
        .input_type
        .as_deref()
        .and_then(task_from_input_type)
        .map(String::from)
        .or_else(|| {
            gemini_extra
                .then(|| request.extra.get("taskType").and_then(Value::as_str))
                .flatten()
                .map(String::from)
        });
    let requests: Vec<Value> = request
        .inputs
        .iter()
        .map(|text| {
            let mut item = Map::new();
            item.insert("model".into(), json!(model));
            item.insert("content".into(), json!({"parts": [{ "text": text }]}));
            if let Some(task) = &task_type {
                item.insert("taskType".into(), json!(task));
            }
            if let Some(dimensions) = request.dimensions {
                item.insert("outputDimensionality".into(), json!(dimensions));
            }
            Value::Object(item)
        })
        .collect();
    json!({ "requests": requests })
}

fn parse_values(embedding: &Value) -> Result<Vec<f32>, ProviderError> {
    let values = embedding
        .get("values")
        .and_then(Value::as_array)
        .ok_or_else(|| ProviderError::bad_upstream("Gemini embedding without values"))?;
    values
        .iter()
        .map(|v| {
            v.as_f64().map(|f| f as f32).ok_or_else(|| {
                ProviderError::bad_upstream("Gemini embedding value is not a number")
            })
        })
        .collect()
}

/// A `batchEmbedContents` (or `embedContent`) answer.
pub fn parse_batch_embed_contents(body: &[u8]) -> Result<EmbeddingsResponse, ProviderError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| ProviderError::bad_upstream(format!("unreadable Gemini response: {e}")))?;
    if let Some(error) = value.get("error") {
        return Err(embedded_error(error, 502));
    }
    let embeddings = if let Some(list) = value.get("embeddings").and_then(Value::as_array) {
        list.iter()
            .map(parse_values)
            .collect::<Result<Vec<_>, _>>()?
    } else if let Some(single) = value.get("embedding") {
        vec![parse_values(single)?]
    } else {
        return Err(ProviderError::bad_upstream(
            "Gemini embeddings response without embeddings",
        ));
    };
    let usage = value
        .get("usageMetadata")
        .and_then(Value::as_object)
        .map(usage_from_metadata)
        .unwrap_or_default();
    Ok(EmbeddingsResponse {
        model: String::new(),
        embeddings,
        usage,
    })
}

// ---------------------------------------------------------------------------
// Provider side: errors
// ---------------------------------------------------------------------------

/// `"30s"` / `"1.5s"` (a protobuf Duration in JSON) in milliseconds.
fn duration_ms(text: &str) -> Option<u64> {
    let seconds: f64 = text.trim().strip_suffix('s')?.parse().ok()?;
    (seconds.is_finite() && seconds >= 0.0).then(|| (seconds * 1000.0).round() as u64)
}

fn retry_after_header(headers: &[(String, String)]) -> Option<u64> {
    headers
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case("retry-after"))
        .and_then(|(_, value)| value.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(|s| (s * 1000.0).round() as u64)
}

fn error_from_google(status: u16, headers: &[(String, String)], error: &Value) -> ProviderError {
    let message = error
        .get("message")
        .and_then(Value::as_str)
        .filter(|m| !m.is_empty())
        .map(String::from)
        .unwrap_or_else(|| format!("Gemini API error (HTTP {status})"));
    let details = error
        .get("details")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let type_is = |detail: &Value, suffix: &str| {
        detail
            .get("@type")
            .and_then(Value::as_str)
            .is_some_and(|t| t.ends_with(suffix))
    };
    let retry_info = details
        .iter()
        .filter(|d| type_is(d, "google.rpc.RetryInfo"))
        .find_map(|d| d.get("retryDelay").and_then(Value::as_str))
        .and_then(duration_ms);
    let retry_after_ms = retry_after_header(headers).or(retry_info);
    // Gemini answers a bad API key with 400 INVALID_ARGUMENT.
    let bad_key = details.iter().any(|d| {
        type_is(d, "google.rpc.ErrorInfo")
            && d.get("reason").and_then(Value::as_str) == Some("API_KEY_INVALID")
    });
    if bad_key {
        return ProviderError {
            kind: ErrorKind::Authentication,
            status: 401,
            message,
            retry_after_ms,
        };
    }
    ProviderError::from_upstream(status, message, retry_after_ms)
}

/// An upstream error response (Google's `{"error": {code, message, status,
/// details}}`, possibly wrapped in an array by non-SSE streams).
pub fn parse_error(status: u16, headers: &[(String, String)], body: &[u8]) -> ProviderError {
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    let error = parsed.as_ref().and_then(|v| match v {
        Value::Array(items) => items.first().and_then(|i| i.get("error")),
        other => other.get("error"),
    });
    match error {
        Some(error) => error_from_google(status, headers, error),
        None => {
            let text = String::from_utf8_lossy(body);
            let text = text.trim();
            let message = if text.is_empty() {
                format!("Gemini API error (HTTP {status})")
            } else {
                text.chars().take(500).collect()
            };
            ProviderError::from_upstream(status, message, retry_after_header(headers))
        }
    }
}

#[cfg(test)]
mod tests {
    //! The Gemini wire format, both directions, on the JSON the google-genai
    //! SDK sends and the Gemini API answers.

    use serde_json::{Value, json};

    use crate::formats::gemini::{
        self, ChunkDecoder, ChunkEncoder, ClientEmbedRequest, parse_generate_content_request,
    };
    use crate::{
        ChatRequest, ChatResponse, ContentPart, EmbeddingsRequest, EmbeddingsResponse, ErrorKind,
        FinishReason, ImageSource, Message, ProviderError, Role, SamplingParams, StreamEvent, Tool,
        ToolChoice, Usage,
    };

    fn parse(body: Value) -> ChatRequest {
        parse_generate_content_request(body.to_string().as_bytes()).expect("valid request")
    }

    #[test]
    fn thinking_config_is_a_neutral_reasoning_request_both_ways() {
        use crate::{Reasoning, ReasoningEffort};
        let with = |thinking: Value| {
            parse(json!({
                "contents": [{"role": "user", "parts": [{"text": "hi"}]}],
                "generationConfig": {"thinkingConfig": thinking},
            }))
        };
        let budget = Reasoning::with_budget;
        let level = Reasoning::with_effort;
        let cases = [
            (
                json!({"thinkingBudget": 2048, "includeThoughts": true}),
                Some(budget(2048)),
            ),
            (json!({"thinking_budget": 0}), Some(Reasoning::off())),
            (json!({"thinkingBudget": -1}), Some(Reasoning::default())),
            (
                json!({"thinkingLevel": "HIGH"}),
                Some(level(ReasoningEffort::High)),
            ),
            (json!({"includeThoughts": true}), Some(Reasoning::default())),
            (json!({"includeThoughts": false}), None),
        ];
        for (thinking, reasoning) in cases {
            let request = with(thinking.clone());
            assert_eq!(request.reasoning, reasoning, "{thinking}");
            // A Gemini upstream gets the client's own config, as sent.
            let body = gemini::generate_content_request_body(&request);
            assert_eq!(body["generationConfig"]["thinkingConfig"], thinking);
        }
        let error = parse_generate_content_request(
            br#"{"contents":[{"parts":[{"text":"x"}]}],"generationConfig":{"thinkingConfig":{"thinkingBudget":"lots"}}}"#,
        )
        .unwrap_err();
        assert_eq!(error.status, 400);
        assert!(
            error.message.contains("thinkingBudget"),
            "{}",
            error.message
        );

        // From another dialect: a budget (the level's, at most what every
        // Gemini thinking model takes) and the thoughts shown; off is 0.
        let foreign = |reasoning: Reasoning| ChatRequest {
            model: "gemini-2.5-flash".into(),
            messages: vec![Message::user("hi")],
            reasoning: Some(reasoning),
            extra_dialect: Some("openai".into()),
            ..Default::default()
        };
        let thinking = |reasoning| {
            gemini::generate_content_request_body(&foreign(reasoning))["generationConfig"]
                ["thinkingConfig"]
                .clone()
        };
        assert_eq!(
            thinking(level(ReasoningEffort::Low)),
            json!({"includeThoughts": true, "thinkingBudget": 2048})
        );
        assert_eq!(
            thinking(level(ReasoningEffort::XHigh)),
            json!({"includeThoughts": true, "thinkingBudget": 24576})
        );
        assert_eq!(thinking(budget(3000))["thinkingBudget"], 3000);
        assert_eq!(thinking(Reasoning::off()), json!({"thinkingBudget": 0}));
        assert_eq!(
            thinking(Reasoning::default()),
            json!({"includeThoughts": true})
        );
        // Models that cannot turn thinking off get their lowest setting;
        // Gemini 3 and later a level, Pro's two or Flash's four.
        let on = |model: &str, reasoning: Reasoning| {
            let mut request = foreign(reasoning);
            request.model = model.into();
            gemini::generate_content_request_body(&request)["generationConfig"]["thinkingConfig"]
                .clone()
        };
        assert_eq!(
            on("gemini-2.5-pro", Reasoning::off()),
            json!({"thinkingBudget": 128})
        );
        assert_eq!(
            on("gemini-2.5-pro", level(ReasoningEffort::Low)),
            json!({"includeThoughts": true, "thinkingBudget": 2048})
        );
        for (effort, pro, flash) in [
            (ReasoningEffort::Minimal, "LOW", "MINIMAL"),
            (ReasoningEffort::Low, "LOW", "LOW"),
            (ReasoningEffort::Medium, "HIGH", "MEDIUM"),
            (ReasoningEffort::XHigh, "HIGH", "HIGH"),
        ] {
            assert_eq!(
                on("gemini-3-pro-preview", level(effort)),
                json!({"includeThoughts": true, "thinkingLevel": pro})
            );
            assert_eq!(
                on(
                    "publishers/google/models/gemini-3-flash-preview",
                    level(effort)
                ),
                json!({"includeThoughts": true, "thinkingLevel": flash})
            );
        }
        assert_eq!(
            on("gemini-3.1-pro-preview", budget(3000)),
            json!({"includeThoughts": true, "thinkingLevel": "HIGH"})
        );
        assert_eq!(
            on("gemini-3-pro-preview", Reasoning::off()),
            json!({"thinkingLevel": "LOW"})
        );
        assert_eq!(
            on("gemini-3-flash-preview", Reasoning::off()),
            json!({"thinkingLevel": "MINIMAL"})
        );
        assert_eq!(
            on("gemini-3-flash-preview", Reasoning::default()),
            json!({"includeThoughts": true})
        );
        assert_eq!(
            on("gemini-2.0-flash", Reasoning::off()),
            json!({"thinkingBudget": 0})
        );

        let mut none = foreign(Reasoning::default());
        none.reasoning = None;
        assert!(
            gemini::generate_content_request_body(&none)
                .get("generationConfig")
                .is_none()
        );
    }

    fn parse_err(body: Value) -> ProviderError {
        parse_generate_content_request(body.to_string().as_bytes()).expect_err("invalid request")
    }

    fn text(t: &str) -> ContentPart {
        ContentPart::text(t)
    }

    // ---------------------------------------------------------------------------
    // Client requests
    // ---------------------------------------------------------------------------

    #[test]
    fn sdk_hello_request() {
        // client.models.generate_content(model=..., contents={"text": "Hello!"})
        let request = parse(json!({"contents": [{"parts": [{"text": "Hello!"}], "role": "user"}]}));
        assert_eq!(request.messages, vec![Message::user("Hello!")]);
        assert_eq!(request.system, None);
        assert!(request.tools.is_empty());
        assert_eq!(request.params, SamplingParams::default());
        assert!(request.extra.is_empty());
        assert_eq!(request.extra_dialect, None);
        assert_eq!(request.model, "");
    }

    fn sdk_function_calling_request() -> Value {
        // What google-genai sends for a second turn of manual function calling
        // with config=GenerateContentConfig(system_instruction=..., tools=[...],
        // tool_config=..., temperature=..., thinking_config=..., ...).
        json!({
            "contents": [
                {"parts": [{"text": "What's the weather in Paris and London?"}], "role": "user"},
                {"parts": [
                    {"functionCall": {"args": {"location": "Paris"}, "name": "get_weather"},
                     "thoughtSignature": "CiQBVKhc7sig=="},
                    {"functionCall": {"args": {"location": "London"}, "name": "get_weather"}}
                ], "role": "model"},
                {"parts": [
                    {"functionResponse": {"name": "get_weather", "response": {"result": {"temp_c": 21}}}},
                    {"functionResponse": {"name": "get_weather", "response": {"error": "station offline"}}}
                ], "role": "user"}
            ],
            "systemInstruction": {"parts": [{"text": "You are terse."}, {"text": "Use metric units."}], "role": "user"},
            "tools": [
                {"functionDeclarations": [{
                    "description": "Current weather for a city.",
                    "name": "get_weather",
                    "parameters": {
                        "type": "OBJECT",
                        "properties": {
                            "location": {"type": "STRING", "description": "City name"},
                            "unit": {"type": "STRING", "format": "enum", "enum": ["C", "F"], "nullable": true}
                        },
                        "required": ["location"],
                        "propertyOrdering": ["location", "unit"]
                    }
                }]},
                {"googleSearch": {}}
            ],
            "toolConfig": {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["get_weather"]}},
            "generationConfig": {
                "temperature": 0.2,
                "topP": 0.9,
                "topK": 40.0,
                "maxOutputTokens": 256,
                "stopSequences": ["END"],
                "seed": 7,
                "presencePenalty": 0.5,
                "frequencyPenalty": 0.25,
                "responseMimeType": "application/json",
                "thinkingConfig": {"includeThoughts": true, "thinkingBudget": 1024}
            },
            "safetySettings": [{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_NONE"}]
        })
    }

    #[test]
    fn sdk_function_calling_request_parses() {
        let request = parse(sdk_function_calling_request());
        assert_eq!(
            request.system.as_deref(),
            Some("You are terse.\nUse metric units.")
        );
        assert_eq!(
            request.messages,
            vec![
                Message::user("What's the weather in Paris and London?"),
                Message {
                    role: Role::Assistant,
                    content: vec![
                        ContentPart::Thinking {
                            text: String::new(),
                            signature: Some("CiQBVKhc7sig==".into())
                        },
                        ContentPart::ToolCall {
                            id: "call_0_get_weather".into(),
                            name: "get_weather".into(),
                            arguments: r#"{"location":"Paris"}"#.into(),
                        },
                        ContentPart::ToolCall {
                            id: "call_1_get_weather".into(),
                            name: "get_weather".into(),
                            arguments: r#"{"location":"London"}"#.into(),
                        },
                    ],
                },
                Message {
                    role: Role::Tool,
                    content: vec![
                        // Matched by name, in order.
                        ContentPart::ToolResult {
                            tool_call_id: "call_0_get_weather".into(),
                            name: Some("get_weather".into()),
                            content: r#"{"temp_c":21}"#.into(),
                            is_error: false,
                        },
                        ContentPart::ToolResult {
                            tool_call_id: "call_1_get_weather".into(),
                            name: Some("get_weather".into()),
                            content: "station offline".into(),
                            is_error: true,
                        },
                    ],
                },
            ]
        );
        assert_eq!(
            request.tools,
            vec![Tool {
                name: "get_weather".into(),
                description: Some("Current weather for a city.".into()),
                parameters: json!({
                    "type": "object",
                    "properties": {
                        "location": {"type": "string", "description": "City name"},
                        "unit": {"type": ["string", "null"], "enum": ["C", "F"]}
                    },
                    "required": ["location"]
                }),
            }]
        );
        assert_eq!(
            request.tool_choice,
            Some(ToolChoice::Tool {
                name: "get_weather".into()
            })
        );
        assert_eq!(
            request.params,
            SamplingParams {
                max_tokens: Some(256),
                temperature: Some(0.2),
                top_p: Some(0.9),
                top_k: Some(40),
                stop: vec!["END".into()],
                seed: Some(7),
                presence_penalty: Some(0.5),
                frequency_penalty: Some(0.25),
            }
        );
        assert_eq!(
            request.response_format,
            Some(json!({"type": "json_object"}))
        );
        assert_eq!(request.extra_dialect.as_deref(), Some("gemini"));
        assert_eq!(
            Value::Object(request.extra.clone()),
            json!({
                "safetySettings": [{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_NONE"}],
                "tools": [{"googleSearch": {}}],
                "generationConfig": {"thinkingConfig": {"includeThoughts": true, "thinkingBudget": 1024}}
            })
        );
    }

    #[test]
    fn function_responses_match_by_id_when_given() {
        let request = parse(json!({"contents": [
            {"role": "user", "parts": [{"text": "go"}]},
            {"role": "model", "parts": [
                {"functionCall": {"id": "a1", "name": "f", "args": {}}},
                {"functionCall": {"id": "b2", "name": "f"}}
            ]},
            {"role": "user", "parts": [
                {"functionResponse": {"id": "b2", "name": "f", "response": {"output": "second"}}},
                {"functionResponse": {"name": "f", "response": {"output": "first"}}}
            ]}
        ]}));
        let results: Vec<(String, String)> = request.messages[2]
            .content
            .iter()
            .map(|p| match p {
                ContentPart::ToolResult {
                    tool_call_id,
                    content,
                    ..
                } => (tool_call_id.clone(), content.clone()),
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        // The id-less response takes the call b2 did not answer.
        assert_eq!(
            results,
            vec![
                ("b2".into(), "second".into()),
                ("a1".into(), "first".into())
            ]
        );
        assert!(matches!(
            &request.messages[1].content[1],
            ContentPart::ToolCall { arguments, .. } if arguments == "{}"
        ));
    }

    #[test]
    fn images_thoughts_and_mixed_user_turns() {
        let request = parse(json!({"contents": [
            {"role": "user", "parts": [
                {"text": "Compare these"},
                {"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}},
                {"fileData": {"fileUri": "https://example.com/cat.jpg", "mimeType": "image/jpeg"}}
            ]},
            {"role": "model", "parts": [
                {"text": "Looking at both...", "thought": true},
                {"text": "The first is a chart."}
            ]},
            {"role": "user", "parts": [{"text": "And the second?"}]}
        ]}));
        assert_eq!(
            request.messages[0].content,
            vec![
                text("Compare these"),
                ContentPart::Image {
                    source: ImageSource::Base64 {
                        media_type: "image/png".into(),
                        data: "iVBORw0KGgo=".into()
                    }
                },
                ContentPart::Image {
                    source: ImageSource::Url {
                        url: "https://example.com/cat.jpg".into()
                    }
                },
            ]
        );
        assert_eq!(
            request.messages[1].content,
            vec![
                ContentPart::Thinking {
                    text: "Looking at both...".into(),
                    signature: None
                },
                text("The first is a chart."),
            ]
        );
        assert_eq!(request.messages[2], Message::user("And the second?"));
    }

    #[test]
    fn function_response_and_text_in_one_user_turn_split_roles() {
        let request = parse(json!({"contents": [
            {"role": "model", "parts": [{"functionCall": {"name": "now", "args": {}}}]},
            {"role": "user", "parts": [
                {"functionResponse": {"name": "now", "response": {"time": "12:00"}}},
                {"text": "Also, be brief."}
            ]},
            {"role": "user", "parts": [{"text": "Thanks"}]}
        ]}));
        let roles: Vec<Role> = request.messages.iter().map(|m| m.role).collect();
        assert_eq!(roles, vec![Role::Assistant, Role::Tool, Role::User]);
        // Consecutive user turns merge.
        assert_eq!(
            request.messages[2].content,
            vec![text("Also, be brief."), text("Thanks")]
        );
        assert!(matches!(
            &request.messages[1].content[0],
            ContentPart::ToolResult { content, tool_call_id, .. }
                if content == r#"{"time":"12:00"}"# && tool_call_id == "call_0_now"
        ));
    }

    #[test]
    fn snake_case_fields_and_json_schema_declarations() {
        let request = parse(json!({
            "contents": [{"role": "user", "parts": [{"text": "hi"}]}],
            "system_instruction": {"parts": [{"text": "sys"}]},
            "tools": [{"function_declarations": [{
                "name": "lookup",
                "parameters_json_schema": {"type": "object", "properties": {"q": {"type": "string"}}, "additionalProperties": false}
            }]}],
            "tool_config": {"function_calling_config": {"mode": "NONE"}},
            "generation_config": {
                "max_output_tokens": "64",
                "response_mime_type": "application/json",
                "response_schema": {"type": "OBJECT", "properties": {"answer": {"type": "STRING"}}}
            }
        }));
        assert_eq!(request.system.as_deref(), Some("sys"));
        assert_eq!(request.params.max_tokens, Some(64));
        assert_eq!(request.tool_choice, Some(ToolChoice::None));
        // parametersJsonSchema is JSON Schema already: kept as sent.
        assert_eq!(
            request.tools[0].parameters,
            json!({"type": "object", "properties": {"q": {"type": "string"}}, "additionalProperties": false})
        );
        assert_eq!(
            request.response_format,
            Some(json!({"type": "json_schema", "json_schema": {
                "name": "response",
                "schema": {"type": "object", "properties": {"answer": {"type": "string"}}}
            }}))
        );
        assert!(request.extra.is_empty());
    }

    #[test]
    fn tool_config_modes() {
        let with_mode = |fcc: Value| {
            parse(json!({
                "contents": [{"parts": [{"text": "x"}]}],
                "toolConfig": {"functionCallingConfig": fcc}
            }))
            .tool_choice
        };
        assert_eq!(with_mode(json!({"mode": "AUTO"})), Some(ToolChoice::Auto));
        assert_eq!(
            with_mode(json!({"mode": "ANY"})),
            Some(ToolChoice::Required)
        );
        assert_eq!(
            with_mode(json!({"mode": "ANY", "allowedFunctionNames": ["a", "b"]})),
            Some(ToolChoice::Required)
        );
        assert_eq!(with_mode(json!({"mode": "NONE"})), Some(ToolChoice::None));
        assert_eq!(with_mode(json!({})), None);
        let err = parse_err(json!({
            "contents": [{"parts": [{"text": "x"}]}],
            "toolConfig": {"functionCallingConfig": {"mode": "SOMETIMES"}}
        }));
        assert!(
            err.message
                .contains("toolConfig.functionCallingConfig.mode"),
            "{}",
            err.message
        );
    }

    #[test]
    fn invalid_requests_name_the_field() {
        let cases = [
            (json!({}), "contents"),
            (json!({"contents": []}), "contents"),
            (json!({"contents": [{"role": "user"}]}), "contents[0].parts"),
            (
                json!({"contents": [{"role": "user", "parts": [{}]}]}),
                "contents[0].parts[0]",
            ),
            (
                json!({"contents": [{"role": "bot", "parts": [{"text": "x"}]}]}),
                "contents[0].role",
            ),
            (
                json!({"contents": [{"parts": [{"inlineData": {"data": "AAAA"}}]}]}),
                "contents[0].parts[0].inlineData.mimeType",
            ),
            (
                json!({"contents": [{"parts": [{"functionCall": {"name": "f"}}]}]}),
                "contents[0].parts[0].functionCall",
            ),
            (
                json!({"contents": [{"role": "model", "parts": [{"functionResponse": {"name": "f", "response": {}}}]}]}),
                "contents[0].parts[0].functionResponse",
            ),
            (
                json!({"contents": [{"parts": [{"text": "x"}]}], "generationConfig": {"temperature": "hot"}}),
                "generationConfig.temperature",
            ),
            (
                json!({"contents": [{"parts": [{"text": "x"}]}], "generationConfig": {"maxOutputTokens": -1}}),
                "generationConfig.maxOutputTokens",
            ),
            (
                json!({"contents": [{"parts": [{"text": "x"}]}], "tools": [{"functionDeclarations": [{"description": "d"}]}]}),
                "tools[0].functionDeclarations[0].name",
            ),
        ];
        for (body, field) in cases {
            let err = parse_err(body.clone());
            assert_eq!(err.kind, ErrorKind::InvalidRequest, "{body}");
            assert_eq!(err.status, 400);
            assert!(
                err.message.contains(field),
                "{body}: {:?} should name {field}",
                err.message
            );
        }
        let err = parse_generate_content_request(b"{not json").unwrap_err();
        assert_eq!(err.status, 400);
        assert!(err.message.starts_with("Invalid JSON payload received"));
    }

    #[test]
    fn count_tokens_request_forms() {
        let plain = gemini::parse_count_tokens_request(
            br#"{"contents":[{"parts":[{"text":"count me"}]}]}"#,
        )
        .unwrap();
        assert_eq!(plain.messages, vec![Message::user("count me")]);
        let wrapped = gemini::parse_count_tokens_request(
        br#"{"generateContentRequest":{"model":"models/x","contents":[{"parts":[{"text":"hi"}]}],"systemInstruction":{"parts":[{"text":"s"}]}}}"#,
    )
    .unwrap();
        assert_eq!(wrapped.system.as_deref(), Some("s"));
        assert_eq!(gemini::count_tokens_body(12), json!({"totalTokens": 12}));
    }

    #[test]
    fn count_tokens_upstream_fields_and_answers() {
        let request = ChatRequest {
            model: "gemini-2.5-flash".into(),
            system: Some("Be terse.".into()),
            messages: vec![Message::user("How many")],
            tools: vec![Tool {
                name: "f".into(),
                description: None,
                parameters: json!({"type": "object"}),
            }],
            tool_choice: Some(ToolChoice::Required),
            params: SamplingParams {
                temperature: Some(0.5),
                ..Default::default()
            },
            ..Default::default()
        };
        let fields = gemini::count_tokens_request_body(&request, None);
        let mut keys: Vec<&str> = fields
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        keys.sort_unstable();
        assert_eq!(keys, ["contents", "systemInstruction", "tools"]);
        assert_eq!(
            fields["contents"],
            json!([{"role": "user", "parts": [{"text": "How many"}]}])
        );
        // The Gemini API's form: the same fields with the model, wrapped.
        let mut wrapped = fields.clone();
        wrapped["model"] = json!("models/gemini-2.5-flash");
        assert_eq!(
            gemini::count_tokens_request_body(&request, Some("models/gemini-2.5-flash")),
            json!({ "generateContentRequest": wrapped })
        );

        assert_eq!(
            gemini::parse_count_tokens(br#"{"totalTokens": 31}"#),
            Ok(31)
        );
        // Proto JSON leaves a zero count out.
        assert_eq!(gemini::parse_count_tokens(b"{}"), Ok(0));
        for bad in [&b"{oops"[..], br#"{"totalTokens": "many"}"#, b"[]"] {
            let error = gemini::parse_count_tokens(bad).unwrap_err();
            assert_eq!(error.kind, ErrorKind::Upstream);
        }
    }

    // ---------------------------------------------------------------------------
    // Client responses
    // ---------------------------------------------------------------------------

    #[test]
    fn generate_content_body_shape() {
        let response = ChatResponse {
            id: "resp-1".into(),
            model: "upstream-model".into(),
            content: vec![
                ContentPart::Thinking {
                    text: "Let me check.".into(),
                    signature: None,
                },
                text("Checking the weather."),
                ContentPart::Thinking {
                    text: String::new(),
                    signature: Some("c2lnLTE=".into()),
                },
                ContentPart::ToolCall {
                    id: "call_abc".into(),
                    name: "get_weather".into(),
                    arguments: r#"{"location":"Paris"}"#.into(),
                },
            ],
            finish_reason: FinishReason::ToolCalls,
            usage: Usage {
                input_tokens: 10,
                output_tokens: 5,
                cached_input_tokens: Some(4),
            },
            raw: None,
        };
        assert_eq!(
            gemini::generate_content_body(&response, "my-endpoint"),
            json!({
                "candidates": [{
                    "content": {"role": "model", "parts": [
                        {"text": "Let me check.", "thought": true},
                        {"text": "Checking the weather."},
                        {"functionCall": {"id": "call_abc", "name": "get_weather", "args": {"location": "Paris"}},
                         "thoughtSignature": "c2lnLTE="}
                    ]},
                    "finishReason": "STOP",
                    "index": 0
                }],
                "usageMetadata": {
                    "promptTokenCount": 10,
                    "candidatesTokenCount": 5,
                    "totalTokenCount": 15,
                    "cachedContentTokenCount": 4
                },
                "modelVersion": "my-endpoint",
                "responseId": "resp-1"
            })
        );
    }

    #[test]
    fn finish_reasons_in_bodies() {
        let body = |reason| {
            let response = ChatResponse {
                finish_reason: reason,
                ..Default::default()
            };
            gemini::generate_content_body(&response, "m")["candidates"][0]["finishReason"].clone()
        };
        assert_eq!(body(FinishReason::Stop), "STOP");
        assert_eq!(body(FinishReason::Length), "MAX_TOKENS");
        assert_eq!(body(FinishReason::ContentFilter), "SAFETY");
        assert_eq!(body(FinishReason::Error), "OTHER");
    }

    #[test]
    fn chunk_encoder_text_stream() {
        let mut encoder = ChunkEncoder::new("r1".into(), "ep".into());
        let mut chunks = Vec::new();
        for event in [
            StreamEvent::Start {
                id: "up".into(),
                model: "up-model".into(),
            },
            StreamEvent::ThinkingDelta { text: "hmm".into() },
            StreamEvent::TextDelta { text: "Hel".into() },
            StreamEvent::TextDelta {
                text: String::new(),
            },
            StreamEvent::TextDelta { text: "lo".into() },
            StreamEvent::Finish {
                reason: FinishReason::Stop,
            },
            StreamEvent::Usage {
                usage: Usage {
                    input_tokens: 3,
                    output_tokens: 2,
                    cached_input_tokens: None,
                },
            },
        ] {
            chunks.extend(encoder.encode(&event));
        }
        chunks.extend(encoder.finish());
        assert!(encoder.finish().is_empty());
        assert_eq!(
            chunks,
            vec![
                json!({"candidates": [{"content": {"role": "model", "parts": [{"text": "hmm", "thought": true}]}, "index": 0}],
                   "modelVersion": "ep", "responseId": "r1"}),
                json!({"candidates": [{"content": {"role": "model", "parts": [{"text": "Hel"}]}, "index": 0}],
                   "modelVersion": "ep", "responseId": "r1"}),
                json!({"candidates": [{"content": {"role": "model", "parts": [{"text": "lo"}]}, "index": 0}],
                   "modelVersion": "ep", "responseId": "r1"}),
                json!({"candidates": [{"content": {"role": "model", "parts": [{"text": ""}]}, "finishReason": "STOP", "index": 0}],
                   "usageMetadata": {"promptTokenCount": 3, "candidatesTokenCount": 2, "totalTokenCount": 5},
                   "modelVersion": "ep", "responseId": "r1"}),
            ]
        );
    }

    #[test]
    fn signatures_stream_to_gemini_clients_where_a_whole_answer_has_them() {
        // Upstream parts, one per chunk: a sealed thought, unsigned thought
        // summaries, a signed call, text and Gemini's trailing signature.
        let upstream = [
            json!({"text": "Sealed.", "thought": true, "thoughtSignature": "c2lnMQ=="}),
            json!({"text": "Plan", "thought": true}),
            json!({"text": "ning.", "thought": true}),
            json!({"functionCall": {"name": "f", "args": {"a": 1}}, "thoughtSignature": "c2lnMg=="}),
            json!({"text": "Done."}),
            json!({"text": "", "thoughtSignature": "c2lnMw=="}),
        ];
        let mut encoder = ChunkEncoder::new("gw".into(), "ep".into());
        let mut chunks: Vec<Value> = decoded_part_by_part(&upstream)
            .iter()
            .flat_map(|event| encoder.encode(event))
            .collect();
        chunks.extend(encoder.finish());
        let parts: Vec<Value> = chunks
            .iter()
            .flat_map(|c| {
                c["candidates"][0]["content"]["parts"]
                    .as_array()
                    .unwrap()
                    .clone()
            })
            .map(|mut part| {
                if let Some(call) = part.get_mut("functionCall") {
                    call.as_object_mut().unwrap().remove("id");
                }
                part
            })
            .collect();
        assert_eq!(
            parts,
            vec![
                upstream[0].clone(),
                upstream[1].clone(),
                upstream[2].clone(),
                upstream[3].clone(),
                upstream[4].clone(),
                upstream[5].clone(),
            ]
        );

        // Replayed by the client as its history, every signature goes back
        // upstream on its part (thoughts without one are left out).
        let replay = json!({"contents": [
            {"role": "user", "parts": [{"text": "x"}]},
            {"role": "model", "parts": parts},
            {"role": "user", "parts": [{"text": "y"}]},
        ]});
        let request = parse_generate_content_request(replay.to_string().as_bytes()).unwrap();
        let body = gemini::generate_content_request_body(&ChatRequest {
            extra_dialect: None,
            ..request
        });
        assert_eq!(
            body["contents"][1]["parts"],
            json!([upstream[0], upstream[3], upstream[4], upstream[5]])
        );

        // A stream cut by an error still delivers the thought held back.
        let mut encoder = ChunkEncoder::new("gw".into(), "ep".into());
        assert!(
            encoder
                .encode(&StreamEvent::ThinkingDelta { text: "Hm".into() })
                .is_empty()
        );
        let rest = encoder.interrupt();
        assert_eq!(
            rest[0]["candidates"][0]["content"]["parts"],
            json!([{"text": "Hm", "thought": true}])
        );
    }

    #[test]
    fn a_raw_part_ends_the_thinking_before_it() {
        // Raw parts reach only Gemini clients: for the others, a signature
        // after the image must not seal the thought summary before it.
        let upstream = [
            json!({"text": "Drawing.", "thought": true}),
            json!({"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}}),
            json!({"text": "Here.", "thoughtSignature": "c2lnNQ=="}),
        ];
        let content = streamed_part_by_part(&upstream).content;
        assert_eq!(
            content,
            vec![
                ContentPart::Thinking {
                    text: "Drawing.".into(),
                    signature: None
                },
                ContentPart::Thinking {
                    text: String::new(),
                    signature: Some("c2lnNQ==".into())
                },
                ContentPart::text("Here."),
            ]
        );
    }

    #[test]
    fn streamed_images_reach_gemini_clients_whole() {
        // An image model's answer: text, then a signed image part.
        let image = json!({"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}, "thoughtSignature": "c2lnNA=="});
        let upstream = [json!({"text": "Here it is."}), image.clone()];
        let events = decoded_part_by_part(&upstream);
        assert!(events.contains(&StreamEvent::Raw {
            data: image.clone()
        }));
        // No other event carries it: the signature stays with its image.
        assert!(
            !events
                .iter()
                .any(|e| matches!(e, StreamEvent::ThinkingSignature { .. })),
            "{events:?}"
        );
        let mut encoder = ChunkEncoder::new("gw".into(), "ep".into());
        let mut chunks: Vec<Value> = events.iter().flat_map(|e| encoder.encode(e)).collect();
        chunks.extend(encoder.finish());
        let parts: Vec<&Value> = chunks
            .iter()
            .flat_map(|c| c["candidates"][0]["content"]["parts"].as_array().unwrap())
            .collect();
        assert_eq!(parts[..2], [&upstream[0], &image]);
    }

    #[test]
    fn chunk_encoder_buffers_tool_calls() {
        let mut encoder = ChunkEncoder::new("r2".into(), "ep".into());
        let mut emitted = Vec::new();
        let events = [
            StreamEvent::Start {
                id: String::new(),
                model: String::new(),
            },
            StreamEvent::TextDelta {
                text: "Checking.".into(),
            },
            StreamEvent::ToolCallStart {
                index: 0,
                id: "call_a".into(),
                name: "get_weather".into(),
            },
            StreamEvent::ToolCallDelta {
                index: 0,
                arguments: r#"{"loc"#.into(),
            },
            StreamEvent::ToolCallDelta {
                index: 0,
                arguments: r#"ation":"Paris"}"#.into(),
            },
            StreamEvent::ToolCallStart {
                index: 1,
                id: "call_b".into(),
                name: "get_time".into(),
            },
            StreamEvent::ToolCallDelta {
                index: 1,
                arguments: r#"{"tz":"CET"}"#.into(),
            },
            StreamEvent::Finish {
                reason: FinishReason::ToolCalls,
            },
        ];
        for event in &events {
            emitted.push(encoder.encode(event).len());
        }
        // Nothing for start and deltas; the first call comes out when the
        // second one starts.
        assert_eq!(emitted, vec![0, 1, 0, 0, 0, 1, 0, 0]);
        let mut encoder = ChunkEncoder::new("r2".into(), "ep".into());
        let mut chunks: Vec<Value> = events.iter().flat_map(|e| encoder.encode(e)).collect();
        chunks.extend(encoder.finish());
        assert_eq!(chunks.len(), 3);
        assert_eq!(
            chunks[1]["candidates"][0]["content"]["parts"],
            json!([{"functionCall": {"id": "call_a", "name": "get_weather", "args": {"location": "Paris"}}}])
        );
        assert_eq!(
            chunks[2]["candidates"][0],
            json!({
                "content": {"role": "model", "parts": [{"functionCall": {"id": "call_b", "name": "get_time", "args": {"tz": "CET"}}}]},
                "finishReason": "STOP",
                "index": 0
            })
        );
        // No usage event: no usageMetadata invented.
        assert!(chunks[2].get("usageMetadata").is_none());
    }

    #[test]
    fn error_body_shapes() {
        let mut error = ProviderError::new(ErrorKind::RateLimited, "slow down");
        error.retry_after_ms = Some(30_000);
        assert_eq!(
            gemini::error_body(&error),
            json!({"error": {
                "code": 429,
                "message": "slow down",
                "status": "RESOURCE_EXHAUSTED",
                "details": [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "30s"}]
            }})
        );
        let statuses = [
            (ErrorKind::InvalidRequest, 400, "INVALID_ARGUMENT"),
            (ErrorKind::Authentication, 401, "UNAUTHENTICATED"),
            (ErrorKind::Permission, 403, "PERMISSION_DENIED"),
            (ErrorKind::NotFound, 404, "NOT_FOUND"),
            (ErrorKind::Overloaded, 503, "UNAVAILABLE"),
            (ErrorKind::Internal, 500, "INTERNAL"),
        ];
        for (kind, code, status) in statuses {
            let body = gemini::error_body(&ProviderError::new(kind, "x"));
            assert_eq!(body["error"]["code"], code);
            assert_eq!(body["error"]["status"], status);
            assert!(body["error"].get("details").is_none());
        }
        let mut partial = ProviderError::new(ErrorKind::Overloaded, "busy");
        partial.retry_after_ms = Some(1500);
        assert_eq!(
            gemini::error_body(&partial)["error"]["details"][0]["retryDelay"],
            "1.500s"
        );
    }

    // ---------------------------------------------------------------------------
    // Client embeddings
    // ---------------------------------------------------------------------------

    #[test]
    fn embed_content_requests() {
        let single = gemini::parse_embed_content_request(
        br#"{"model":"models/text-embedding-004","content":{"parts":[{"text":"Hello"},{"text":"world"}]},"taskType":"RETRIEVAL_QUERY","outputDimensionality":256}"#,
    )
    .unwrap();
        assert_eq!(
            single,
            EmbeddingsRequest {
                inputs: vec!["Hello\nworld".into()],
                dimensions: Some(256),
                input_type: Some("search_query".into()),
                ..Default::default()
            }
        );

        // google-genai's embed_content(contents=[...]) goes to batchEmbedContents.
        let batch = gemini::parse_batch_embed_contents_request(
        br#"{"requests":[
            {"model":"models/gemini-embedding-001","content":{"parts":[{"text":"a"}],"role":"user"},"taskType":"SEMANTIC_SIMILARITY"},
            {"model":"models/gemini-embedding-001","content":{"parts":[{"text":"b"}],"role":"user"},"taskType":"SEMANTIC_SIMILARITY"}
        ]}"#,
    )
    .unwrap();
        assert_eq!(batch.inputs, vec!["a", "b"]);
        assert_eq!(batch.input_type, None);
        assert_eq!(
            batch.extra.get("taskType"),
            Some(&json!("SEMANTIC_SIMILARITY"))
        );
        assert_eq!(batch.extra_dialect.as_deref(), Some("gemini"));

        let mixed = gemini::parse_batch_embed_contents_request(
        br#"{"requests":[{"content":{"parts":[{"text":"a"}]},"taskType":"CLUSTERING"},{"content":{"parts":[{"text":"b"}]}}]}"#,
    )
    .unwrap_err();
        assert!(
            mixed.message.contains("requests[1].taskType"),
            "{}",
            mixed.message
        );
        let image = gemini::parse_embed_content_request(
            br#"{"content":{"parts":[{"inlineData":{"mimeType":"image/png","data":"AA=="}}]}}"#,
        )
        .unwrap_err();
        assert!(
            image.message.contains("content.parts[0]"),
            "{}",
            image.message
        );
        assert!(gemini::parse_batch_embed_contents_request(br#"{"requests":[]}"#).is_err());

        let client =
            ClientEmbedRequest::parse(br#"{"content":{"parts":[{"text":"x"}]}}"#, false).unwrap();
        assert!(!client.batch);
        let response = EmbeddingsResponse {
            embeddings: vec![vec![0.5]],
            ..Default::default()
        };
        assert_eq!(
            client.response_body(&response),
            json!({"embedding": {"values": [0.5]}})
        );
    }

    #[test]
    fn embed_bodies() {
        let response = EmbeddingsResponse {
            model: "m".into(),
            embeddings: vec![vec![0.1, -0.25], vec![1.0, 0.0]],
            usage: Usage::default(),
        };
        // f32 values keep their short form.
        assert_eq!(
            gemini::embed_content_body(&response).to_string(),
            r#"{"embedding":{"values":[0.1,-0.25]}}"#
        );
        assert_eq!(
            gemini::batch_embed_contents_body(&response),
            json!({"embeddings": [{"values": [0.1, -0.25]}, {"values": [1.0, 0.0]}]})
        );
    }

    // ---------------------------------------------------------------------------
    // Provider requests
    // ---------------------------------------------------------------------------

    #[test]
    fn provider_body_from_openai_style_history() {
        let request = ChatRequest {
            model: "gemini-2.5-flash".into(),
            system: Some("Be helpful.".into()),
            messages: vec![
                Message::user("Weather in Paris?"),
                Message {
                    role: Role::Assistant,
                    content: vec![
                        text("Let me check."),
                        ContentPart::ToolCall {
                            id: "call_XyZ".into(),
                            name: "get_weather".into(),
                            arguments: r#"{"location":"Paris"}"#.into(),
                        },
                    ],
                },
                Message {
                    role: Role::Tool,
                    content: vec![ContentPart::ToolResult {
                        tool_call_id: "call_XyZ".into(),
                        name: None,
                        content: r#"{"temp_c": 21}"#.into(),
                        is_error: false,
                    }],
                },
                Message {
                    role: Role::User,
                    content: vec![
                        text("And this photo?"),
                        ContentPart::Image {
                            source: ImageSource::from_url("data:image/png;base64,iVBORw0KGgo="),
                        },
                        ContentPart::Image {
                            source: ImageSource::Url {
                                url: "https://example.com/a.webp?x=1".into(),
                            },
                        },
                    ],
                },
            ],
            tools: vec![Tool {
                name: "get_weather".into(),
                description: Some("Weather".into()),
                parameters: json!({
                    "$schema": "http://json-schema.org/draft-07/schema#",
                    "type": "object",
                    "properties": {"location": {"type": "string", "format": "uri"}},
                    "required": ["location", "ghost"],
                    "additionalProperties": false
                }),
            }],
            tool_choice: Some(ToolChoice::Required),
            params: SamplingParams {
                max_tokens: Some(100),
                temperature: Some(0.5),
                stop: vec!["STOP!".into()],
                ..Default::default()
            },
            ..Default::default()
        };
        assert_eq!(
            gemini::generate_content_request_body(&request),
            json!({
                "contents": [
                    {"role": "user", "parts": [{"text": "Weather in Paris?"}]},
                    {"role": "model", "parts": [
                        {"text": "Let me check."},
                        {"functionCall": {"name": "get_weather", "args": {"location": "Paris"}},
                         "thoughtSignature": "skip_thought_signature_validator"}
                    ]},
                    // The tool result and the next user turn merge into one user turn.
                    {"role": "user", "parts": [
                        {"functionResponse": {"name": "get_weather", "response": {"result": {"temp_c": 21}}}},
                        {"text": "And this photo?"},
                        {"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}},
                        {"fileData": {"mimeType": "image/webp", "fileUri": "https://example.com/a.webp?x=1"}}
                    ]}
                ],
                "systemInstruction": {"parts": [{"text": "Be helpful."}]},
                "tools": [{"functionDeclarations": [{
                    "name": "get_weather",
                    "description": "Weather",
                    "parameters": {
                        "type": "OBJECT",
                        "properties": {"location": {"type": "STRING"}},
                        "required": ["location"]
                    }
                }]}],
                "toolConfig": {"functionCallingConfig": {"mode": "ANY"}},
                "generationConfig": {"temperature": 0.5, "maxOutputTokens": 100, "stopSequences": ["STOP!"]}
            })
        );
    }

    #[test]
    fn provider_tool_result_names_and_errors() {
        let request = ChatRequest {
            messages: vec![Message {
                role: Role::User,
                content: vec![
                    // Anthropic-style: tool results inside a user turn, no
                    // name; one refers to a call not in history.
                    ContentPart::ToolResult {
                        tool_call_id: "call_3_search_docs".into(),
                        name: None,
                        content: "not json".into(),
                        is_error: true,
                    },
                    ContentPart::ToolResult {
                        tool_call_id: "toolu_1".into(),
                        name: Some("explicit".into()),
                        content: "42".into(),
                        is_error: false,
                    },
                ],
            }],
            tool_choice: Some(ToolChoice::Tool { name: "x".into() }),
            ..Default::default()
        };
        let body = gemini::generate_content_request_body(&request);
        assert_eq!(
            body["contents"],
            json!([{"role": "user", "parts": [
                {"functionResponse": {"name": "search_docs", "response": {"error": "not json"}}},
                {"functionResponse": {"name": "explicit", "response": {"result": 42}}}
            ]}])
        );
        // No tools: no toolConfig, no generationConfig.
        assert!(body.get("toolConfig").is_none());
        assert!(body.get("generationConfig").is_none());
        assert!(body.get("systemInstruction").is_none());
    }

    #[test]
    fn provider_schema_cleanup() {
        let pydantic_like = json!({
            "$defs": {
                "Unit": {"enum": ["C", "F"], "title": "Unit", "type": "string"},
                "Place": {
                    "type": "object",
                    "properties": {"city": {"type": "string"}, "near": {"$ref": "#/$defs/Place"}},
                    "required": ["city"]
                }
            },
            "type": "object",
            "title": "Args",
            "properties": {
                "unit": {"$ref": "#/$defs/Unit", "description": "Unit to use"},
                "place": {"$ref": "#/$defs/Place"},
                "days": {"anyOf": [{"type": "integer", "exclusiveMinimum": 0}, {"type": "null"}], "default": null},
                "tags": {"type": ["array", "null"], "items": {"type": "string", "format": "email", "minLength": 1}},
                "mode": {"const": "fast"},
                "value": {"type": ["string", "number"]},
                "when": {"type": "string", "format": "date-time"},
                "count": {"type": "integer", "format": "int64", "enum": [1, 2]},
                "both": {"allOf": [
                    {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]},
                    {"properties": {"b": {"type": "boolean"}}, "required": ["b"]}
                ]},
                "empty": {"type": "object", "properties": {}}
            },
            "required": ["unit"],
            "additionalProperties": false
        });
        let request = ChatRequest {
            tools: vec![
                Tool {
                    name: "plan".into(),
                    description: None,
                    parameters: pydantic_like,
                },
                Tool {
                    name: "ping".into(),
                    description: None,
                    parameters: json!({"type": "object", "properties": {}}),
                },
            ],
            ..Default::default()
        };
        let body = gemini::generate_content_request_body(&request);
        let decls = &body["tools"][0]["functionDeclarations"];
        // A tool without arguments carries no schema.
        assert_eq!(decls[1], json!({"name": "ping"}));
        let params = &decls[0]["parameters"];
        assert_eq!(params["type"], "OBJECT");
        assert_eq!(params["title"], "Args");
        assert!(params.get("$defs").is_none());
        assert!(params.get("additionalProperties").is_none());
        let props = &params["properties"];
        assert_eq!(
            props["unit"],
            json!({"type": "STRING", "enum": ["C", "F"], "format": "enum", "title": "Unit", "description": "Unit to use"})
        );
        assert_eq!(
            props["place"]["properties"]["city"],
            json!({"type": "STRING"})
        );
        // Recursion is cut at the first repeat of a `$ref`.
        assert_eq!(
            props["place"]["properties"]["near"],
            json!({"type": "OBJECT"})
        );
        assert_eq!(props["place"]["required"], json!(["city"]));
        assert_eq!(
            props["days"],
            json!({"type": "INTEGER", "nullable": true, "default": null})
        );
        assert_eq!(
            props["tags"],
            json!({"type": "ARRAY", "nullable": true, "items": {"type": "STRING", "minLength": 1}})
        );
        assert_eq!(
            props["mode"],
            json!({"type": "STRING", "enum": ["fast"], "format": "enum"})
        );
        assert_eq!(
            props["value"],
            json!({"anyOf": [{"type": "STRING"}, {"type": "NUMBER"}]})
        );
        assert_eq!(
            props["when"],
            json!({"type": "STRING", "format": "date-time"})
        );
        assert_eq!(
            props["count"],
            json!({"type": "INTEGER", "format": "int64"})
        );
        assert_eq!(
            props["both"],
            json!({"type": "OBJECT", "properties": {"a": {"type": "STRING"}, "b": {"type": "BOOLEAN"}}, "required": ["a", "b"]})
        );
        assert_eq!(props["empty"], json!({"type": "OBJECT"}));
        assert_eq!(params["required"], json!(["unit"]));
        // Nothing Gemini rejects anywhere in the tree.
        let text = params.to_string();
        for banned in [
            "$ref",
            "$defs",
            "additionalProperties",
            "exclusiveMinimum",
            "anyOf\":[{\"type\":\"null",
            "const",
        ] {
            assert!(!text.contains(banned), "{banned} left in {text}");
        }
    }

    #[test]
    fn provider_response_format_and_params() {
        let request = ChatRequest {
            messages: vec![Message::user("json please")],
            params: SamplingParams {
                top_p: Some(0.8),
                top_k: Some(20),
                seed: Some(-3),
                presence_penalty: Some(0.1),
                frequency_penalty: Some(0.2),
                ..Default::default()
            },
            response_format: Some(json!({"type": "json_schema", "json_schema": {
                "name": "answer", "strict": true,
                "schema": {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"], "additionalProperties": false}
            }})),
            ..Default::default()
        };
        assert_eq!(
            gemini::generate_content_request_body(&request)["generationConfig"],
            json!({
                "topP": 0.8, "topK": 20, "seed": -3, "presencePenalty": 0.1, "frequencyPenalty": 0.2,
                "responseMimeType": "application/json",
                "responseSchema": {"type": "OBJECT", "properties": {"a": {"type": "STRING"}}, "required": ["a"]}
            })
        );
        let json_object = ChatRequest {
            messages: vec![Message::user("x")],
            response_format: Some(json!({"type": "json_object"})),
            ..Default::default()
        };
        assert_eq!(
            gemini::generate_content_request_body(&json_object)["generationConfig"],
            json!({"responseMimeType": "application/json"})
        );
    }

    #[test]
    fn provider_tool_choice_mapping() {
        let config = |choice| {
            let request = ChatRequest {
                messages: vec![Message::user("x")],
                tools: vec![Tool {
                    name: "f".into(),
                    description: None,
                    parameters: json!({"type": "object"}),
                }],
                tool_choice: Some(choice),
                ..Default::default()
            };
            gemini::generate_content_request_body(&request)["toolConfig"]["functionCallingConfig"]
                .clone()
        };
        assert_eq!(config(ToolChoice::Auto), json!({"mode": "AUTO"}));
        assert_eq!(config(ToolChoice::None), json!({"mode": "NONE"}));
        assert_eq!(config(ToolChoice::Required), json!({"mode": "ANY"}));
        assert_eq!(
            config(ToolChoice::Tool { name: "f".into() }),
            json!({"mode": "ANY", "allowedFunctionNames": ["f"]})
        );
    }

    #[test]
    fn gemini_client_to_gemini_provider_round_trip() {
        // A Gemini-dialect client on a Gemini endpoint: signatures, built-in
        // tools, thinking and safety settings survive the neutral model.
        let request = parse(sdk_function_calling_request());
        let body = gemini::generate_content_request_body(&request);
        assert_eq!(
            body["contents"],
            json!([
                {"role": "user", "parts": [{"text": "What's the weather in Paris and London?"}]},
                {"role": "model", "parts": [
                    {"functionCall": {"name": "get_weather", "args": {"location": "Paris"}}, "thoughtSignature": "CiQBVKhc7sig=="},
                    {"functionCall": {"name": "get_weather", "args": {"location": "London"}}}
                ]},
                {"role": "user", "parts": [
                    {"functionResponse": {"name": "get_weather", "response": {"result": {"temp_c": 21}}}},
                    {"functionResponse": {"name": "get_weather", "response": {"error": "station offline"}}}
                ]}
            ])
        );
        assert_eq!(
            body["tools"],
            json!([
                {"functionDeclarations": [{
                    "name": "get_weather",
                    "description": "Current weather for a city.",
                    "parameters": {
                        "type": "OBJECT",
                        "properties": {
                            "location": {"type": "STRING", "description": "City name"},
                            "unit": {"type": "STRING", "enum": ["C", "F"], "format": "enum", "nullable": true}
                        },
                        "required": ["location"]
                    }
                }]},
                {"googleSearch": {}}
            ])
        );
        assert_eq!(
            body["generationConfig"],
            json!({
                "temperature": 0.2, "topP": 0.9, "topK": 40, "maxOutputTokens": 256, "stopSequences": ["END"],
                "seed": 7, "presencePenalty": 0.5, "frequencyPenalty": 0.25,
                "responseMimeType": "application/json",
                "thinkingConfig": {"includeThoughts": true, "thinkingBudget": 1024}
            })
        );
        assert_eq!(body["safetySettings"][0]["threshold"], "BLOCK_NONE");
        assert_eq!(
            body["toolConfig"],
            json!({"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["get_weather"]}})
        );

        // The same extras are ignored when they came from another dialect.
        let mut foreign = request.clone();
        foreign.extra_dialect = Some("openai".into());
        let body = gemini::generate_content_request_body(&foreign);
        assert!(body.get("safetySettings").is_none());
        assert_eq!(body["tools"].as_array().map(Vec::len), Some(1));
    }

    // ---------------------------------------------------------------------------
    // Provider responses
    // ---------------------------------------------------------------------------

    #[test]
    fn parse_generate_content_response() {
        let body = json!({
            "candidates": [{
                "content": {"parts": [
                    {"text": "**Checking** the forecast", "thought": true},
                    {"text": "I'll look that up."},
                    {"functionCall": {"name": "get_weather", "args": {"location": "Paris"}}, "thoughtSignature": "Cs0CAVSoXO4="},
                    {"functionCall": {"name": "get_time", "args": {}}}
                ], "role": "model"},
                "finishReason": "STOP",
                "index": 0,
                "safetyRatings": []
            }],
            "usageMetadata": {
                "promptTokenCount": 42, "candidatesTokenCount": 18, "totalTokenCount": 120,
                "thoughtsTokenCount": 60, "cachedContentTokenCount": 8,
                "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 42}]
            },
            "modelVersion": "gemini-2.5-flash",
            "responseId": "mDdGaL3lEPqN"
        });
        let response = gemini::parse_generate_content(body.to_string().as_bytes()).unwrap();
        assert_eq!(response.id, "mDdGaL3lEPqN");
        assert_eq!(response.model, "gemini-2.5-flash");
        assert_eq!(response.finish_reason, FinishReason::ToolCalls);
        assert_eq!(
            response.usage,
            Usage {
                input_tokens: 42,
                output_tokens: 78,
                cached_input_tokens: Some(8)
            }
        );
        assert_eq!(
            response.content,
            vec![
                ContentPart::Thinking {
                    text: "**Checking** the forecast".into(),
                    signature: None
                },
                text("I'll look that up."),
                ContentPart::Thinking {
                    text: String::new(),
                    signature: Some("Cs0CAVSoXO4=".into())
                },
                ContentPart::ToolCall {
                    id: "call_mDdGaL3lEPqN_0".into(),
                    name: "get_weather".into(),
                    arguments: r#"{"location":"Paris"}"#.into(),
                },
                ContentPart::ToolCall {
                    id: "call_mDdGaL3lEPqN_1".into(),
                    name: "get_time".into(),
                    arguments: "{}".into()
                },
            ]
        );
        assert_eq!(
            response.raw.as_ref().and_then(crate::RawJson::parse),
            Some(body)
        );
        assert_eq!(response.text(), "I'll look that up.");

        // Feeding the answer back (an OpenAI client replaying history) puts the
        // signature back on its call and finds names for the results.
        let mut history = vec![
            Message::user("weather?"),
            Message {
                role: Role::Assistant,
                content: response.content.clone(),
            },
        ];
        history.push(Message {
            role: Role::Tool,
            content: ["call_mDdGaL3lEPqN_0", "call_mDdGaL3lEPqN_1"]
                .iter()
                .map(|id| ContentPart::ToolResult {
                    tool_call_id: (*id).into(),
                    name: None,
                    content: "ok".into(),
                    is_error: false,
                })
                .collect(),
        });
        let body = gemini::generate_content_request_body(&ChatRequest {
            messages: history,
            ..Default::default()
        });
        assert_eq!(
            body["contents"][1]["parts"],
            json!([
                {"text": "I'll look that up."},
                {"functionCall": {"name": "get_weather", "args": {"location": "Paris"}}, "thoughtSignature": "Cs0CAVSoXO4="},
                {"functionCall": {"name": "get_time", "args": {}}}
            ])
        );
        assert_eq!(
            body["contents"][2]["parts"],
            json!([
                {"functionResponse": {"name": "get_weather", "response": {"result": "ok"}}},
                {"functionResponse": {"name": "get_time", "response": {"result": "ok"}}}
            ])
        );
    }

    #[test]
    fn parse_generate_content_blocked_and_limits() {
        let blocked = br#"{"promptFeedback":{"blockReason":"SAFETY","safetyRatings":[]},"usageMetadata":{"promptTokenCount":9,"totalTokenCount":9},"modelVersion":"gemini-2.0-flash"}"#;
        let response = gemini::parse_generate_content(blocked).unwrap();
        assert_eq!(response.finish_reason, FinishReason::ContentFilter);
        assert!(response.content.is_empty());
        assert_eq!(response.usage.input_tokens, 9);

        let cut = br#"{"candidates":[{"content":{"parts":[{"text":"Once upon"}],"role":"model"},"finishReason":"MAX_TOKENS","index":0}]}"#;
        let response = gemini::parse_generate_content(cut).unwrap();
        assert_eq!(response.finish_reason, FinishReason::Length);
        assert_eq!(response.text(), "Once upon");

        let recitation = br#"{"candidates":[{"finishReason":"RECITATION","index":0}]}"#;
        assert_eq!(
            gemini::parse_generate_content(recitation)
                .unwrap()
                .finish_reason,
            FinishReason::ContentFilter
        );

        let error =
        br#"{"error":{"code":503,"message":"The model is overloaded.","status":"UNAVAILABLE"}}"#;
        let err = gemini::parse_generate_content(error).unwrap_err();
        assert_eq!(err.kind, ErrorKind::Overloaded);
        assert!(gemini::parse_generate_content(b"<html>").is_err());
    }

    /// `streamGenerateContent?alt=sse` data payloads as gemini-2.5-flash sends
    /// them: thoughts, text pieces, a function call, and a final chunk.
    const RECORDED_STREAM: &[&str] = &[
        r#"{"candidates": [{"content": {"parts": [{"text": "**Planning the answer**\n\nThe user wants Paris weather.","thought": true}],"role": "model"},"index": 0}],"usageMetadata": {"promptTokenCount": 61,"totalTokenCount": 61,"promptTokensDetails": [{"modality": "TEXT","tokenCount": 61}]},"modelVersion": "gemini-2.5-flash","responseId": "TPhGaJq8Ie"}"#,
        r#"{"candidates": [{"content": {"parts": [{"text": "Sure"}],"role": "model"},"index": 0}],"usageMetadata": {"promptTokenCount": 61,"candidatesTokenCount": 1,"totalTokenCount": 140,"thoughtsTokenCount": 78},"modelVersion": "gemini-2.5-flash","responseId": "TPhGaJq8Ie"}"#,
        r#"{"candidates": [{"content": {"parts": [{"text": ", let me check the weather in Paris."}],"role": "model"},"index": 0}],"usageMetadata": {"promptTokenCount": 61,"candidatesTokenCount": 10,"totalTokenCount": 149,"thoughtsTokenCount": 78},"modelVersion": "gemini-2.5-flash","responseId": "TPhGaJq8Ie"}"#,
        r#"{"candidates": [{"content": {"parts": [{"functionCall": {"name": "get_weather","args": {"location": "Paris, FR","unit": "celsius"}},"thoughtSignature": "CiIBVKhc7oDFQw=="}],"role": "model"},"index": 0}],"usageMetadata": {"promptTokenCount": 61,"candidatesTokenCount": 30,"totalTokenCount": 169,"thoughtsTokenCount": 78},"modelVersion": "gemini-2.5-flash","responseId": "TPhGaJq8Ie"}"#,
        r#"{"candidates": [{"content": {"parts": [{"text": ""}],"role": "model"},"finishReason": "STOP","index": 0}],"usageMetadata": {"promptTokenCount": 61,"candidatesTokenCount": 30,"totalTokenCount": 169,"thoughtsTokenCount": 78,"promptTokensDetails": [{"modality": "TEXT","tokenCount": 61}]},"modelVersion": "gemini-2.5-flash","responseId": "TPhGaJq8Ie"}"#,
    ];

    #[test]
    fn chunk_decoder_recorded_stream() {
        let mut decoder = ChunkDecoder::new();
        let mut events = Vec::new();
        for data in RECORDED_STREAM {
            events.extend(decoder.decode(data).unwrap());
        }
        let usage = |output| StreamEvent::Usage {
            usage: Usage {
                input_tokens: 61,
                output_tokens: output,
                cached_input_tokens: None,
            },
        };
        assert_eq!(
            events,
            vec![
                StreamEvent::Start {
                    id: "TPhGaJq8Ie".into(),
                    model: "gemini-2.5-flash".into()
                },
                StreamEvent::ThinkingDelta {
                    text: "**Planning the answer**\n\nThe user wants Paris weather.".into()
                },
                usage(0),
                StreamEvent::TextDelta {
                    text: "Sure".into()
                },
                usage(79),
                StreamEvent::TextDelta {
                    text: ", let me check the weather in Paris.".into()
                },
                usage(88),
                // The call's signature goes first, as in a whole answer.
                StreamEvent::ThinkingSignature {
                    signature: "CiIBVKhc7oDFQw==".into()
                },
                StreamEvent::ToolCallStart {
                    index: 0,
                    id: "call_TPhGaJq8Ie_0".into(),
                    name: "get_weather".into()
                },
                StreamEvent::ToolCallDelta {
                    index: 0,
                    arguments: r#"{"location":"Paris, FR","unit":"celsius"}"#.into()
                },
                usage(108),
                // Same usage again: not repeated.
                StreamEvent::Finish {
                    reason: FinishReason::ToolCalls
                },
            ]
        );
        // Blank keep-alive payloads decode to nothing.
        assert_eq!(decoder.decode("  ").unwrap(), vec![]);
    }

    #[test]
    fn chunk_decoder_re_encodes_for_gemini_clients() {
        // Provider stream -> neutral events -> client chunks: text passes
        // through, the call arrives whole, the last chunk finishes with usage.
        let mut decoder = ChunkDecoder::new();
        let mut encoder = ChunkEncoder::new("gw-1".into(), "my-endpoint".into());
        let mut chunks = Vec::new();
        for data in RECORDED_STREAM {
            for event in decoder.decode(data).unwrap() {
                chunks.extend(encoder.encode(&event));
            }
        }
        chunks.extend(encoder.finish());
        let parts: Vec<Value> = chunks
            .iter()
            .map(|c| c["candidates"][0]["content"]["parts"][0].clone())
            .collect();
        assert_eq!(parts[0]["thought"], true);
        assert_eq!(parts[1], json!({"text": "Sure"}));
        assert_eq!(
            parts[2],
            json!({"text": ", let me check the weather in Paris."})
        );
        assert_eq!(
            parts[3]["functionCall"]["args"],
            json!({"location": "Paris, FR", "unit": "celsius"})
        );
        assert_eq!(chunks.len(), 4);
        assert_eq!(chunks[3]["candidates"][0]["finishReason"], "STOP");
        assert_eq!(chunks[3]["usageMetadata"]["candidatesTokenCount"], 108);
    }

    /// The events of an upstream stream sending `parts` one chunk each.
    fn decoded_part_by_part(parts: &[Value]) -> Vec<StreamEvent> {
        let mut decoder = ChunkDecoder::new();
        parts
            .iter()
            .flat_map(|part| {
                let chunk = json!({"candidates": [{"content": {"parts": [part], "role": "model"}}], "responseId": "r"});
                decoder.decode(&chunk.to_string()).unwrap()
            })
            .collect()
    }

    /// The answer a client streaming `parts` one chunk each rebuilds.
    fn streamed_part_by_part(parts: &[Value]) -> ChatResponse {
        let mut builder = crate::ChatResponseBuilder::default();
        for event in decoded_part_by_part(parts) {
            builder.push(&event);
        }
        builder.finish()
    }

    #[test]
    fn streamed_signatures_rebuild_as_in_a_whole_answer() {
        // A signed thought, then a signed call, then a signed empty text
        // part (Gemini's trailing signature), streamed part by part.
        let parts = [
            json!({"text": "Planning.", "thought": true, "thoughtSignature": "c2lnMQ=="}),
            json!({"functionCall": {"name": "f", "args": {"a": 1}}, "thoughtSignature": "c2lnMg=="}),
            json!({"text": "Done."}),
            json!({"text": "", "thoughtSignature": "c2lnMw=="}),
        ];
        let whole = json!({"candidates": [{"content": {"parts": parts, "role": "model"}}], "responseId": "r"});
        let whole = gemini::parse_generate_content(whole.to_string().as_bytes()).unwrap();
        assert_eq!(streamed_part_by_part(&parts).content, whole.content);
        assert_eq!(
            whole.content[1],
            ContentPart::Thinking {
                text: String::new(),
                signature: Some("c2lnMg==".into())
            }
        );
    }

    #[test]
    fn a_signature_right_after_unsigned_thinking_stays_with_its_part() {
        // Gemini 3 with thoughts shown: unsigned thought summaries, then the
        // call that carries the signature. Streamed, it rebuilds as the
        // whole answer does and is replayed on the call, not the thought.
        let parts = [
            json!({"text": "Planning.", "thought": true}),
            json!({"text": " More.", "thought": true}),
            json!({"functionCall": {"name": "f", "args": {}}, "thoughtSignature": "c2lnMg=="}),
        ];
        let streamed = streamed_part_by_part(&parts);
        let whole = json!({"candidates": [{"content": {"parts": [
            {"text": "Planning. More.", "thought": true}, parts[2].clone()
        ], "role": "model"}}], "responseId": "r"});
        let whole = gemini::parse_generate_content(whole.to_string().as_bytes()).unwrap();
        assert_eq!(streamed.content, whole.content);

        let replay = ChatRequest {
            messages: vec![
                Message::user("x"),
                Message {
                    role: Role::Assistant,
                    content: streamed.content,
                },
            ],
            ..Default::default()
        };
        let body = gemini::generate_content_request_body(&replay);
        assert_eq!(
            body["contents"][1]["parts"],
            json!([{"functionCall": {"name": "f", "args": {}}, "thoughtSignature": "c2lnMg=="}])
        );
    }

    #[test]
    fn chunk_decoder_errors_blocks_and_arrays() {
        let mut decoder = ChunkDecoder::new();
        let err = decoder
        .decode(r#"{"error":{"code":429,"message":"Resource has been exhausted","status":"RESOURCE_EXHAUSTED"}}"#)
        .unwrap_err();
        assert_eq!(err.kind, ErrorKind::RateLimited);
        assert_eq!(err.status, 429);
        assert!(ChunkDecoder::new().decode("{oops").is_err());

        let mut decoder = ChunkDecoder::new();
        let events = decoder
        .decode(r#"{"promptFeedback":{"blockReason":"PROHIBITED_CONTENT"},"modelVersion":"gemini-2.0-flash","responseId":"x"}"#)
        .unwrap();
        assert_eq!(
            events.last(),
            Some(&StreamEvent::Finish {
                reason: FinishReason::ContentFilter
            })
        );

        // Without alt=sse the stream is a JSON array of responses.
        let mut decoder = ChunkDecoder::new();
        let events = decoder
        .decode(r#"[{"candidates":[{"content":{"parts":[{"text":"a"}],"role":"model"}}]},{"candidates":[{"content":{"parts":[{"text":"b"}],"role":"model"},"finishReason":"MAX_TOKENS"}]}]"#)
        .unwrap();
        assert_eq!(
            events,
            vec![
                StreamEvent::Start {
                    id: String::new(),
                    model: String::new()
                },
                StreamEvent::TextDelta { text: "a".into() },
                StreamEvent::TextDelta { text: "b".into() },
                StreamEvent::Finish {
                    reason: FinishReason::Length
                },
            ]
        );
        // Call ids without a response id still differ per call.
        let mut decoder = ChunkDecoder::new();
        let events = decoder
        .decode(r#"{"candidates":[{"content":{"parts":[{"functionCall":{"name":"a","args":{}}},{"functionCall":{"name":"b","id":"given"}}],"role":"model"},"finishReason":"STOP"}]}"#)
        .unwrap();
        let ids: Vec<&str> = events
            .iter()
            .filter_map(|e| match e {
                StreamEvent::ToolCallStart { id, .. } => Some(id.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(ids, vec!["call_0_a", "given"]);
    }

    // ---------------------------------------------------------------------------
    // Provider embeddings and errors
    // ---------------------------------------------------------------------------

    #[test]
    fn batch_embed_request_and_response() {
        let request = EmbeddingsRequest {
            model: "ignored".into(),
            inputs: vec!["doc one".into(), "doc two".into()],
            dimensions: Some(768),
            input_type: Some("search_document".into()),
            ..Default::default()
        };
        assert_eq!(
            gemini::batch_embed_contents_request_body(&request, "gemini-embedding-001"),
            json!({"requests": [
                {"model": "models/gemini-embedding-001", "content": {"parts": [{"text": "doc one"}]},
                 "taskType": "RETRIEVAL_DOCUMENT", "outputDimensionality": 768},
                {"model": "models/gemini-embedding-001", "content": {"parts": [{"text": "doc two"}]},
                 "taskType": "RETRIEVAL_DOCUMENT", "outputDimensionality": 768}
            ]})
        );
        let mapped = |input_type: &str| {
            let request = EmbeddingsRequest {
                inputs: vec!["x".into()],
                input_type: Some(input_type.into()),
                ..Default::default()
            };
            gemini::batch_embed_contents_request_body(&request, "models/m")["requests"][0].clone()
        };
        assert_eq!(mapped("search_query")["taskType"], "RETRIEVAL_QUERY");
        assert_eq!(mapped("classification")["taskType"], "CLASSIFICATION");
        assert_eq!(mapped("clustering")["taskType"], "CLUSTERING");
        assert!(mapped("something_else").get("taskType").is_none());
        assert_eq!(mapped("clustering")["model"], "models/m");

        // A Gemini client's task type reaches a Gemini provider unchanged.
        let client = gemini::parse_batch_embed_contents_request(
        br#"{"requests":[{"content":{"parts":[{"text":"q"}]},"taskType":"QUESTION_ANSWERING"}]}"#,
    )
    .unwrap();
        assert_eq!(
            gemini::batch_embed_contents_request_body(&client, "m")["requests"][0]["taskType"],
            "QUESTION_ANSWERING"
        );

        let response = gemini::parse_batch_embed_contents(
        br#"{"embeddings":[{"values":[0.013168523,-0.008711934,1]},{"values":[0.5,0.25,-1e-3]}]}"#,
    )
    .unwrap();
        assert_eq!(
            response.embeddings,
            vec![
                vec![0.013168523f32, -0.008711934, 1.0],
                vec![0.5, 0.25, -0.001]
            ]
        );
        let single =
            gemini::parse_batch_embed_contents(br#"{"embedding":{"values":[1,2]}}"#).unwrap();
        assert_eq!(single.embeddings, vec![vec![1.0, 2.0]]);
        assert!(
            gemini::parse_batch_embed_contents(br#"{"embeddings":[{"values":["x"]}]}"#).is_err()
        );
        assert!(gemini::parse_batch_embed_contents(br#"{}"#).is_err());
    }

    #[test]
    fn parse_error_with_retry_delay() {
        let body = br#"{
      "error": {
        "code": 429,
        "message": "You exceeded your current quota, please check your plan and billing details.",
        "status": "RESOURCE_EXHAUSTED",
        "details": [
          {"@type": "type.googleapis.com/google.rpc.QuotaFailure",
           "violations": [{"quotaMetric": "generativelanguage.googleapis.com/generate_content_free_tier_requests", "quotaId": "GenerateRequestsPerMinutePerProjectPerModel-FreeTier"}]},
          {"@type": "type.googleapis.com/google.rpc.Help", "links": [{"description": "Learn more", "url": "https://ai.google.dev/gemini-api/docs/rate-limits"}]},
          {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "30s"}
        ]
      }
    }"#;
        let error = gemini::parse_error(429, &[], body);
        assert_eq!(error.kind, ErrorKind::RateLimited);
        assert_eq!(error.status, 429);
        assert_eq!(error.retry_after_ms, Some(30_000));
        assert!(error.message.starts_with("You exceeded your current quota"));

        // A Retry-After header wins; fractional delays are kept.
        let headers = vec![("Retry-After".to_string(), "7".to_string())];
        assert_eq!(
            gemini::parse_error(429, &headers, body).retry_after_ms,
            Some(7_000)
        );
        let fractional = br#"{"error":{"code":429,"message":"m","status":"RESOURCE_EXHAUSTED","details":[{"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"1.25s"}]}}"#;
        assert_eq!(
            gemini::parse_error(429, &[], fractional).retry_after_ms,
            Some(1_250)
        );
    }

    #[test]
    fn parse_error_kinds() {
        let bad_key = br#"{"error":{"code":400,"message":"API key not valid. Please pass a valid API key.","status":"INVALID_ARGUMENT","details":[{"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":"API_KEY_INVALID","domain":"googleapis.com","metadata":{"service":"generativelanguage.googleapis.com"}}]}}"#;
        let error = gemini::parse_error(400, &[], bad_key);
        assert_eq!((error.kind, error.status), (ErrorKind::Authentication, 401));

        let invalid = br#"{"error":{"code":400,"message":"* GenerateContentRequest.contents: contents is not specified\n","status":"INVALID_ARGUMENT"}}"#;
        let error = gemini::parse_error(400, &[], invalid);
        assert_eq!((error.kind, error.status), (ErrorKind::InvalidRequest, 400));
        assert!(error.message.contains("contents is not specified"));

        let not_found = br#"{"error":{"code":404,"message":"models/gemini-9 is not found for API version v1beta","status":"NOT_FOUND"}}"#;
        assert_eq!(
            gemini::parse_error(404, &[], not_found).kind,
            ErrorKind::NotFound
        );

        // Non-SSE streams wrap the error in an array.
        let wrapped = br#"[{"error":{"code":503,"message":"The model is overloaded. Please try again later.","status":"UNAVAILABLE"}}]"#;
        let error = gemini::parse_error(503, &[], wrapped);
        assert_eq!(error.kind, ErrorKind::Overloaded);
        assert_eq!(
            error.message,
            "The model is overloaded. Please try again later."
        );

        let html = gemini::parse_error(502, &[], b"<html>Bad Gateway</html>");
        assert_eq!((html.kind, html.status), (ErrorKind::Upstream, 502));
        assert_eq!(html.message, "<html>Bad Gateway</html>");
        assert_eq!(
            gemini::parse_error(500, &[], b"").message,
            "Gemini API error (HTTP 500)"
        );
    }

    #[test]
    fn signatures_that_are_not_base64_stay_out_of_client_bodies() {
        // The google-genai SDKs decode thoughtSignature as base64 bytes.
        let response = ChatResponse {
            content: vec![
                ContentPart::Thinking {
                    text: "why".into(),
                    signature: Some("not base64!".into()),
                },
                ContentPart::Thinking {
                    text: String::new(),
                    signature: Some("{json}".into()),
                },
                text("answer"),
                // Base64 characters, but a length no encoder produces.
                ContentPart::Thinking {
                    text: "hmm".into(),
                    signature: Some("Eq0a1b2".into()),
                },
                // Stray bits after the last whole byte: not canonical.
                ContentPart::Thinking {
                    text: "so".into(),
                    signature: Some("QR==".into()),
                },
            ],
            ..Default::default()
        };
        assert_eq!(
            gemini::generate_content_body(&response, "m")["candidates"][0]["content"]["parts"],
            json!([
                {"text": "why", "thought": true},
                {"text": "answer"},
                {"text": "hmm", "thought": true},
                {"text": "so", "thought": true}
            ])
        );
    }

    #[test]
    fn base64_signatures_of_either_alphabet_reach_client_bodies() {
        for signature in ["c2lnLTE=", "c2lnLTE", "-_-_", "+/+/"] {
            let response = ChatResponse {
                content: vec![ContentPart::Thinking {
                    text: "why".into(),
                    signature: Some(signature.into()),
                }],
                ..Default::default()
            };
            assert_eq!(
                gemini::generate_content_body(&response, "m")["candidates"][0]["content"]["parts"],
                json!([{"text": "why", "thought": true, "thoughtSignature": signature}]),
                "{signature}"
            );
        }
    }
}
