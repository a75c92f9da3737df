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
    FinishReason, ImageSource, Message, ProviderError, Role, SamplingParams, StreamEvent, Tool,
    ToolChoice, Usage,
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

/// The `countTokens` answer.
pub fn count_tokens_body(total_tokens: u32) -> Value {
    json!({ "totalTokens": total_tokens })
}

// ---------------------------------------------------------------------------
// Client side: ChatResponse / StreamEvent -> GenerateContentResponse
// ---------------------------------------------------------------------------

/// Whether a signature can go to a Gemini client: the SDKs decode
/// `thoughtSignature` as base64 bytes and fail on anything else.
fn is_base64(signature: &str) -> bool {
    !signature.is_empty()
        && signature
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'=' | b'-' | b'_'))
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
}

/// Renders neutral stream events as `streamGenerateContent` chunks (the
/// host frames each as an SSE `data:` line). Gemini streams whole
/// `functionCall` parts, so tool-call deltas are buffered until the call
/// is complete.
#[derive(Debug)]
pub struct ChunkEncoder {
    id: String,
    model: String,
    pending: Vec<PendingCall>,
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
                json!({"functionCall": {
                    "id": call.id,
                    "name": call.name,
                    "args": args_object(&call.arguments),
                }})
            })
            .collect()
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
        match event {
            StreamEvent::Start { id, .. } => {
                if self.id.is_empty() {
                    self.id = id.clone();
                }
            }
            StreamEvent::TextDelta { text } if !text.is_empty() => {
                self.flush_calls(&mut out);
                out.push(self.chunk(vec![json!({ "text": text })], None));
            }
            StreamEvent::ThinkingDelta { text } if !text.is_empty() => {
                self.flush_calls(&mut out);
                out.push(self.chunk(vec![json!({"text": text, "thought": true})], None));
            }
            StreamEvent::ToolCallStart { index, id, name } => {
                self.flush_calls(&mut out);
                self.pending.push(PendingCall {
                    index: *index,
                    id: id.clone(),
                    name: name.clone(),
                    arguments: String::new(),
                });
            }
            StreamEvent::ToolCallDelta { index, arguments } => {
                if let Some(call) = self.pending.iter_mut().find(|c| c.index == *index) {
                    call.arguments.push_str(arguments);
                }
            }
            StreamEvent::Usage { usage } => self.usage = Some(*usage),
            StreamEvent::Finish { reason } => self.reason = Some(*reason),
            StreamEvent::TextDelta { .. }
            | StreamEvent::ThinkingDelta { .. }
            | StreamEvent::Raw { .. } => {}
        }
        out
    }

    /// The last chunk: any buffered calls, `finishReason` and usage.
    pub fn finish(&mut self) -> Vec<Value> {
        if self.finished {
            return Vec::new();
        }
        self.finished = true;
        let mut parts = self.call_parts();
        if parts.is_empty() {
            // `chunk.text` in the SDKs reads "" rather than None.
            parts.push(json!({"text": ""}));
        }
        let reason = self.reason.unwrap_or_default();
        vec![self.chunk(parts, Some(reason))]
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
    let config = generation_config(&request.params, request.response_format.as_ref());
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
        raw: Some(value.clone()),
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
                if let Some(text) = part.get("text").and_then(Value::as_str) {
                    if text.is_empty() {
                        continue;
                    }
                    let text = text.to_string();
                    events.push(if thought {
                        StreamEvent::ThinkingDelta { text }
                    } else {
                        StreamEvent::TextDelta { text }
                    });
                } else if let Some(call) = part.get("functionCall").and_then(Value::as_object) {
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
