//! Anthropic Messages API (`POST /v1/messages`) wire format, both ways.
//!
//! Client side (the gateway serving Anthropic SDK clients, any provider
//! behind): [`parse_messages_request`], [`message_body`], [`EventEncoder`],
//! [`error_body`]. Provider side (a plugin calling api.anthropic.com):
//! [`messages_request_body`], [`parse_message`], [`EventDecoder`],
//! [`parse_error`].
//!
//! Usage convention: the neutral `Usage.input_tokens` counts every prompt
//! token and `cached_input_tokens` the cache-read part of it (OpenAI's
//! convention), while Anthropic's `input_tokens` excludes cache reads and
//! writes, which it reports separately. Both directions convert.

use std::collections::HashMap;
use std::sync::LazyLock;

use serde_json::{Map, Value, json};

use super::common;

use crate::{
    ChatRequest, ChatResponse, ContentPart, ErrorKind, FinishReason, ImageSource, Message,
    ProviderError, RawJson, Reasoning, ReasoningEffort, Role, SamplingParams, StreamEvent, Tool,
    ToolChoice, Usage,
};

/// Value of the `anthropic-version` header the provider side speaks.
pub const API_VERSION: &str = "2023-06-01";

/// `extra_dialect` of requests parsed here.
const DIALECT: &str = "anthropic";

/// Where an Anthropic client's beta names (its `anthropic-beta` header)
/// travel in `extra`, under the name Bedrock's Claude body gives them. The
/// providers that serve Claude send them back as the header, or on
/// Bedrock in the model fields; the Messages body never carries them.
pub const BETAS_FIELD: &str = "anthropic_beta";

/// Records the beta names of an Anthropic client's `anthropic-beta`
/// headers (each a comma-separated list) on its `request`, in order and
/// without repeats. A name that is not a header token (letters, digits,
/// `-`, `_`, `.`) is a 400.
pub fn set_betas<'a>(
    request: &mut ChatRequest,
    headers: impl IntoIterator<Item = &'a str>,
) -> Result<(), ProviderError> {
    let mut betas: Vec<Value> = Vec::new();
    let names = headers
        .into_iter()
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .filter(|name| !name.is_empty());
    for name in names {
        if !is_beta_name(name) {
            return Err(ProviderError::invalid_request(format!(
                "anthropic-beta: '{name}' is not a beta name"
            )));
        }
        if !betas.iter().any(|known| known == name) {
            betas.push(Value::from(name));
        }
    }
    if !betas.is_empty() {
        request
            .extra
            .insert(BETAS_FIELD.into(), Value::Array(betas));
    }
    Ok(())
}

fn is_beta_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// The beta names an Anthropic client's request carries (see
/// [`set_betas`]; a body's own `anthropic_beta` list counts too, as
/// Bedrock's clients send it); other dialects' requests carry none.
pub fn betas(request: &ChatRequest) -> Vec<&str> {
    if request.extra_dialect.as_deref() != Some(DIALECT) {
        return Vec::new();
    }
    request
        .extra
        .get(BETAS_FIELD)
        .and_then(Value::as_array)
        .map(|names| {
            names
                .iter()
                .filter_map(Value::as_str)
                .filter(|name| is_beta_name(name))
                .collect()
        })
        .unwrap_or_default()
}

/// The `anthropic-beta` header value for `request`'s [`betas`], if any.
pub fn betas_header(request: &ChatRequest) -> Option<String> {
    let betas = betas(request);
    (!betas.is_empty()).then(|| betas.join(","))
}

// ---------------------------------------------------------------------------
// Client side: request parsing
// ---------------------------------------------------------------------------

/// A client's `POST /v1/messages` request, in neutral form.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientMessagesRequest {
    /// The `model` field: the gateway endpoint the client addresses.
    pub endpoint: String,
    pub stream: bool,
    /// `model` is left empty (the host fills it from the endpoint); unknown
    /// top-level fields are in `extra`, with `extra_dialect` `anthropic`.
    pub request: ChatRequest,
}

fn invalid(path: &str, message: impl std::fmt::Display) -> ProviderError {
    ProviderError::invalid_request(format!("{path}: {message}"))
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn expect_object<'a>(
    value: &'a Value,
    path: &str,
) -> Result<&'a Map<String, Value>, ProviderError> {
    value.as_object().ok_or_else(|| {
        invalid(
            path,
            format!("Input should be an object, got {}", type_name(value)),
        )
    })
}

fn expect_array<'a>(value: &'a Value, path: &str) -> Result<&'a Vec<Value>, ProviderError> {
    value.as_array().ok_or_else(|| {
        invalid(
            path,
            format!("Input should be an array, got {}", type_name(value)),
        )
    })
}

fn expect_str<'a>(value: &'a Value, path: &str) -> Result<&'a str, ProviderError> {
    value.as_str().ok_or_else(|| {
        invalid(
            path,
            format!("Input should be a string, got {}", type_name(value)),
        )
    })
}

/// A present, non-null field; `None` when absent or `null`.
fn field<'a>(obj: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    obj.get(key).filter(|value| !value.is_null())
}

fn required<'a>(
    obj: &'a Map<String, Value>,
    key: &str,
    path: &str,
) -> Result<&'a Value, ProviderError> {
    field(obj, key).ok_or_else(|| invalid(&join_path(path, key), "Field required"))
}

fn required_str<'a>(
    obj: &'a Map<String, Value>,
    key: &str,
    path: &str,
) -> Result<&'a str, ProviderError> {
    expect_str(required(obj, key, path)?, &join_path(path, key))
}

fn optional_str<'a>(
    obj: &'a Map<String, Value>,
    key: &str,
    path: &str,
) -> Result<Option<&'a str>, ProviderError> {
    field(obj, key)
        .map(|value| expect_str(value, &join_path(path, key)))
        .transpose()
}

fn join_path(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn expect_f64(value: &Value, path: &str) -> Result<f64, ProviderError> {
    value.as_f64().ok_or_else(|| {
        invalid(
            path,
            format!("Input should be a number, got {}", type_name(value)),
        )
    })
}

fn expect_u32(value: &Value, path: &str) -> Result<u32, ProviderError> {
    value
        .as_u64()
        .and_then(|n| u32::try_from(n).ok())
        .ok_or_else(|| {
            invalid(
                path,
                "Input should be a non-negative integer (at most 4294967295)",
            )
        })
}

/// Parses a client's Messages API request body.
pub fn parse_messages_request(body: &[u8]) -> Result<ClientMessagesRequest, ProviderError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        ProviderError::invalid_request(format!("request body is not valid JSON: {e}"))
    })?;
    let obj = value
        .as_object()
        .ok_or_else(|| ProviderError::invalid_request("request body must be a JSON object"))?;

    let mut endpoint = None;
    let mut stream = false;
    let mut messages = None;
    let mut system = None;
    let mut effort = None;
    let mut request = ChatRequest {
        extra_dialect: Some(DIALECT.to_string()),
        ..Default::default()
    };

    for (key, value) in obj {
        // Explicit nulls mean "not given", as the SDKs' omitted parameters.
        if value.is_null() {
            continue;
        }
        match key.as_str() {
            "model" => endpoint = Some(expect_str(value, key)?.to_string()),
            "messages" => messages = Some(parse_messages(value)?),
            "system" => system = parse_system(value, key)?,
            // 0 is valid: it pre-warms the prompt cache without generating.
            "max_tokens" => request.params.max_tokens = Some(expect_u32(value, key)?),
            "temperature" => request.params.temperature = Some(expect_f64(value, key)?),
            "top_p" => request.params.top_p = Some(expect_f64(value, key)?),
            "top_k" => request.params.top_k = Some(expect_u32(value, key)?),
            "stop_sequences" => {
                request.params.stop = expect_array(value, key)?
                    .iter()
                    .enumerate()
                    .map(|(i, s)| expect_str(s, &format!("{key}.{i}")).map(str::to_string))
                    .collect::<Result<_, _>>()?;
            }
            "stream" => {
                stream = value.as_bool().ok_or_else(|| {
                    invalid(
                        key,
                        format!("Input should be a boolean, got {}", type_name(value)),
                    )
                })?;
            }
            "tools" => request.tools = parse_tools(value)?,
            "output_config" => {
                let config = expect_object(value, key)?;
                if let Some(format) = field(config, "format") {
                    request.response_format =
                        Some(parse_output_format(format, "output_config.format")?);
                }
                effort = optional_str(config, "effort", key)?;
                // Forwarded as sent to an Anthropic upstream.
                request.extra.insert(key.clone(), value.clone());
            }
            // The structured-outputs beta's name for `output_config.format`.
            "output_format" => {
                request.response_format = Some(parse_output_format(value, key)?);
                request.extra.insert(key.clone(), value.clone());
            }
            "thinking" => {
                request.reasoning = parse_thinking(value)?;
                // Forwarded as sent to an Anthropic upstream.
                request.extra.insert(key.clone(), value.clone());
            }
            "tool_choice" => {
                let (choice, keep_original) = parse_tool_choice(value)?;
                request.tool_choice = Some(choice);
                // The neutral choice cannot say "no parallel calls"; keep the
                // original so an Anthropic upstream still gets the flag.
                if keep_original {
                    request.extra.insert(key.clone(), value.clone());
                }
            }
            _ => {
                request.extra.insert(key.clone(), value.clone());
            }
        }
    }

    let endpoint = endpoint.ok_or_else(|| invalid("model", "Field required"))?;
    let (messages, turn_system) = messages.ok_or_else(|| invalid("messages", "Field required"))?;
    request.messages = messages;
    // `system` turns inside `messages` have no neutral place but the system
    // prompt: they join it, after the top-level one, in order.
    let system: Vec<String> = system.into_iter().chain(turn_system).collect();
    request.system = (!system.is_empty()).then(|| system.join("\n"));
    if request.params.max_tokens.is_none() {
        return Err(invalid("max_tokens", "Field required"));
    }
    if let (Some(reasoning), Some(effort)) = (request.reasoning.as_mut(), effort) {
        output_effort(reasoning, effort);
    }
    Ok(ClientMessagesRequest {
        endpoint,
        stream,
        request,
    })
}

/// `thinking` as a neutral reasoning request: `enabled` with its budget,
/// `disabled`, or another type (e.g. `adaptive`) as "on, the provider's
/// default".
fn parse_thinking(value: &Value) -> Result<Option<Reasoning>, ProviderError> {
    let obj = expect_object(value, "thinking")?;
    Ok(Some(match required_str(obj, "type", "thinking")? {
        "disabled" => Reasoning::off(),
        "enabled" => Reasoning::with_budget(expect_u32(
            required(obj, "budget_tokens", "thinking")?,
            "thinking.budget_tokens",
        )?),
        _ => Reasoning::default(),
    }))
}

/// A structured-output format (`{"type": "json_schema", "schema": …}`) as
/// the neutral, OpenAI-style `response_format`.
fn parse_output_format(value: &Value, path: &str) -> Result<Value, ProviderError> {
    let format = expect_object(value, path)?;
    let kind = required_str(format, "type", path)?;
    if kind != "json_schema" {
        return Err(invalid(
            &join_path(path, "type"),
            format!("Input should be 'json_schema', got '{kind}'"),
        ));
    }
    let schema = expect_object(
        required(format, "schema", path)?,
        &join_path(path, "schema"),
    )?;
    Ok(json!({
        "type": "json_schema",
        "json_schema": {"name": "output", "schema": schema},
    }))
}

/// `output_config.effort` beside extended thinking: how hard Claude should
/// think, which other providers take as the reasoning level (`max` is
/// OpenAI's `xhigh`). Without thinking it only tunes Claude's answer
/// length, which has no neutral equivalent.
fn output_effort(reasoning: &mut Reasoning, effort: &str) {
    if reasoning.is_off() {
        return;
    }
    let level = match effort {
        "max" => Some(ReasoningEffort::XHigh),
        other => ReasoningEffort::parse(other),
    };
    if let Some(level) = level.filter(|level| *level != ReasoningEffort::None) {
        reasoning.effort = Some(level);
    }
}

/// A system prompt (string or text blocks) at `path`; `None` when empty.
fn parse_system(value: &Value, path: &str) -> Result<Option<String>, ProviderError> {
    let text = match value {
        Value::String(text) => text.clone(),
        Value::Array(blocks) => {
            let mut parts = Vec::with_capacity(blocks.len());
            for (i, block) in blocks.iter().enumerate() {
                let path = format!("{path}.{i}");
                let obj = expect_object(block, &path)?;
                let kind = required_str(obj, "type", &path)?;
                if kind != "text" {
                    return Err(invalid(
                        &format!("{path}.type"),
                        format!("system blocks must be of type 'text', got '{kind}'"),
                    ));
                }
                parts.push(required_str(obj, "text", &path)?.to_string());
            }
            parts.join("\n")
        }
        other => {
            return Err(invalid(
                path,
                format!(
                    "Input should be a string or an array of text blocks, got {}",
                    type_name(other)
                ),
            ));
        }
    };
    Ok((!text.is_empty()).then_some(text))
}

/// The turns, and the texts of `system` turns.
fn parse_messages(value: &Value) -> Result<(Vec<Message>, Vec<String>), ProviderError> {
    let mut out = Vec::new();
    let mut system = Vec::new();
    for (i, turn) in expect_array(value, "messages")?.iter().enumerate() {
        let path = format!("messages.{i}");
        let obj = expect_object(turn, &path)?;
        let role = match required_str(obj, "role", &path)? {
            "user" => Role::User,
            "assistant" => Role::Assistant,
            "system" => {
                let content = required(obj, "content", &path)?;
                system.extend(parse_system(content, &format!("{path}.content"))?);
                continue;
            }
            other => {
                return Err(invalid(
                    &format!("{path}.role"),
                    format!("Input should be 'user', 'assistant' or 'system', got '{other}'"),
                ));
            }
        };
        let content_path = format!("{path}.content");
        let parts = match required(obj, "content", &path)? {
            Value::String(text) => vec![ContentPart::text(text.clone())],
            Value::Array(blocks) => {
                let mut parts = Vec::with_capacity(blocks.len());
                for (j, block) in blocks.iter().enumerate() {
                    if let Some(part) = parse_block(block, role, &format!("{content_path}.{j}"))? {
                        parts.push(part);
                    }
                }
                parts
            }
            other => {
                return Err(invalid(
                    &content_path,
                    format!(
                        "Input should be a string or an array of content blocks, got {}",
                        type_name(other)
                    ),
                ));
            }
        };

        if role == Role::Assistant {
            out.push(Message {
                role,
                content: parts,
            });
            continue;
        }
        // A user turn: tool results become neutral `tool` turns, the other
        // blocks `user` turns, each run of one kind a message, in order.
        let first = out.len();
        for part in parts {
            let part_role = if matches!(part, ContentPart::ToolResult { .. }) {
                Role::Tool
            } else {
                Role::User
            };
            let this_turn = out.len() > first;
            match out.last_mut() {
                Some(last) if this_turn && last.role == part_role => last.content.push(part),
                _ => out.push(Message {
                    role: part_role,
                    content: vec![part],
                }),
            }
        }
        if out.len() == first {
            // An empty user turn stays a turn: the client's history is kept as sent.
            out.push(Message {
                role: Role::User,
                content: Vec::new(),
            });
        }
    }
    Ok((out, system))
}

/// One content block of a turn; `None` for blocks the neutral model drops.
fn parse_block(
    block: &Value,
    role: Role,
    path: &str,
) -> Result<Option<ContentPart>, ProviderError> {
    let obj = expect_object(block, path)?;
    let kind = required_str(obj, "type", path)?;
    let part = match kind {
        "text" => ContentPart::text(required_str(obj, "text", path)?),
        "image" => ContentPart::Image {
            source: parse_image_source(required(obj, "source", path)?, path)?,
        },
        "tool_use" => {
            if role != Role::Assistant {
                return Err(invalid(
                    path,
                    "tool_use blocks are only allowed in assistant turns",
                ));
            }
            let arguments = match field(obj, "input") {
                Some(input) => input.to_string(),
                None => "{}".to_string(),
            };
            ContentPart::ToolCall {
                id: required_str(obj, "id", path)?.to_string(),
                name: required_str(obj, "name", path)?.to_string(),
                arguments,
            }
        }
        "tool_result" => {
            if role != Role::User {
                return Err(invalid(
                    path,
                    "tool_result blocks are only allowed in user turns",
                ));
            }
            let is_error = match field(obj, "is_error") {
                Some(value) => value.as_bool().ok_or_else(|| {
                    invalid(
                        &format!("{path}.is_error"),
                        format!("Input should be a boolean, got {}", type_name(value)),
                    )
                })?,
                None => false,
            };
            ContentPart::ToolResult {
                tool_call_id: required_str(obj, "tool_use_id", path)?.to_string(),
                name: None,
                content: parse_tool_result_content(
                    field(obj, "content"),
                    &format!("{path}.content"),
                )?,
                is_error,
            }
        }
        "thinking" => ContentPart::Thinking {
            text: required_str(obj, "thinking", path)?.to_string(),
            // An empty signature (a thinking block another provider produced,
            // echoed back) signs nothing.
            signature: optional_str(obj, "signature", path)?
                .filter(|s| !s.is_empty())
                .map(str::to_string),
        },
        // Encrypted reasoning has no neutral form; only Anthropic could use
        // it, and it accepts histories without it.
        "redacted_thinking" => return Ok(None),
        other => {
            return Err(invalid(
                &format!("{path}.type"),
                format!("content block type '{other}' is not supported by this gateway"),
            ));
        }
    };
    Ok(Some(part))
}

fn parse_image_source(value: &Value, path: &str) -> Result<ImageSource, ProviderError> {
    let path = format!("{path}.source");
    let obj = expect_object(value, &path)?;
    match required_str(obj, "type", &path)? {
        "base64" => Ok(ImageSource::Base64 {
            media_type: required_str(obj, "media_type", &path)?.to_string(),
            data: required_str(obj, "data", &path)?.to_string(),
        }),
        "url" => Ok(ImageSource::Url {
            url: required_str(obj, "url", &path)?.to_string(),
        }),
        other => Err(invalid(
            &format!("{path}.type"),
            format!(
                "image source type '{other}' is not supported by this gateway (use 'base64' or 'url')"
            ),
        )),
    }
}

/// The neutral text of a `tool_result` content: a string, or text blocks
/// joined by newlines.
fn parse_tool_result_content(value: Option<&Value>, path: &str) -> Result<String, ProviderError> {
    match value {
        None => Ok(String::new()),
        Some(Value::String(text)) => Ok(text.clone()),
        Some(Value::Array(blocks)) => {
            let mut texts = Vec::with_capacity(blocks.len());
            for (i, block) in blocks.iter().enumerate() {
                let block_path = format!("{path}.{i}");
                let obj = expect_object(block, &block_path)?;
                match required_str(obj, "type", &block_path)? {
                    "text" => texts.push(required_str(obj, "text", &block_path)?.to_string()),
                    other => {
                        return Err(invalid(
                            &format!("{block_path}.type"),
                            format!(
                                "'{other}' blocks inside tool_result are not supported by this gateway"
                            ),
                        ));
                    }
                }
            }
            Ok(texts.join("\n"))
        }
        Some(other) => Err(invalid(
            path,
            format!(
                "Input should be a string or an array of content blocks, got {}",
                type_name(other)
            ),
        )),
    }
}

fn parse_tools(value: &Value) -> Result<Vec<Tool>, ProviderError> {
    let mut tools = Vec::new();
    for (i, tool) in expect_array(value, "tools")?.iter().enumerate() {
        let path = format!("tools.{i}");
        let obj = expect_object(tool, &path)?;
        if let Some(kind) = optional_str(obj, "type", &path)?
            && kind != "custom"
        {
            return Err(invalid(
                &format!("{path}.type"),
                format!("server tool '{kind}' is not supported by this gateway"),
            ));
        }
        let schema = required(obj, "input_schema", &path)?;
        expect_object(schema, &format!("{path}.input_schema"))?;
        tools.push(Tool {
            name: required_str(obj, "name", &path)?.to_string(),
            description: optional_str(obj, "description", &path)?.map(str::to_string),
            parameters: schema.clone(),
        });
    }
    Ok(tools)
}

/// The neutral choice, and whether the original object carries options
/// the neutral one cannot.
fn parse_tool_choice(value: &Value) -> Result<(ToolChoice, bool), ProviderError> {
    let obj = expect_object(value, "tool_choice")?;
    let choice = match required_str(obj, "type", "tool_choice")? {
        "auto" => ToolChoice::Auto,
        "any" => ToolChoice::Required,
        "none" => ToolChoice::None,
        "tool" => ToolChoice::Tool {
            name: required_str(obj, "name", "tool_choice")?.to_string(),
        },
        other => {
            return Err(invalid(
                "tool_choice.type",
                format!("Input should be 'auto', 'any', 'tool' or 'none', got '{other}'"),
            ));
        }
    };
    Ok((choice, field(obj, "disable_parallel_tool_use").is_some()))
}

// ---------------------------------------------------------------------------
// Client side: responses, stream events, errors
// ---------------------------------------------------------------------------

/// An Anthropic-looking message id (`msg_…`) for an upstream id.
fn message_id(id: &str) -> String {
    if id.starts_with("msg_") {
        id.to_string()
    } else if id.is_empty() {
        common::random_id("msg_")
    } else {
        format!("msg_{id}")
    }
}

/// The call id, or a fresh one when the upstream gave none (Gemini);
/// clients echo it back in `tool_result`.
fn tool_use_id(id: &str) -> String {
    if id.is_empty() {
        common::random_id("toolu_")
    } else {
        id.to_string()
    }
}

/// Tool-call arguments as the JSON object Anthropic's `input` must be.
fn arguments_object(arguments: &str) -> Value {
    match serde_json::from_str::<Value>(arguments) {
        Ok(value @ Value::Object(_)) => value,
        _ => Value::Object(Map::new()),
    }
}

fn stop_reason(reason: FinishReason, called_tools: bool) -> &'static str {
    match reason {
        // Some upstreams (Gemini) end tool-calling turns with a plain stop;
        // Anthropic clients loop on `tool_use`.
        FinishReason::Stop | FinishReason::Error if called_tools => "tool_use",
        FinishReason::Stop | FinishReason::Error => "end_turn",
        FinishReason::Length => "max_tokens",
        FinishReason::ToolCalls => "tool_use",
        FinishReason::ContentFilter => "refusal",
    }
}

/// Neutral usage in Anthropic's convention (`input_tokens` without cache reads).
fn usage_body(usage: &Usage) -> Value {
    let cached = usage.cached_input_tokens.unwrap_or(0);
    let mut body = json!({
        "input_tokens": usage.input_tokens.saturating_sub(cached),
        "output_tokens": usage.output_tokens,
    });
    if let Some(cached) = usage.cached_input_tokens {
        body["cache_read_input_tokens"] = json!(cached);
    }
    body
}

/// A non-streamed Messages API answer for a client; `model` is the name the
/// client asked for.
pub fn message_body(response: &ChatResponse, model: &str) -> Value {
    let id = message_id(&response.id);
    let mut content = Vec::new();
    let mut called_tools = false;
    for part in &response.content {
        match part {
            ContentPart::Text { text } if !text.is_empty() => {
                content.push(json!({"type": "text", "text": text}));
            }
            ContentPart::ToolCall {
                id: call_id,
                name,
                arguments,
            } => {
                called_tools = true;
                content.push(json!({
                    "type": "tool_use",
                    "id": tool_use_id(call_id),
                    "name": name,
                    "input": arguments_object(arguments),
                }));
            }
            ContentPart::Thinking { text, signature } => {
                content.push(json!({
                    "type": "thinking",
                    "thinking": text,
                    "signature": signature.as_deref().unwrap_or(""),
                }));
            }
            _ => {}
        }
    }
    json!({
        "id": id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop_reason(response.finish_reason, called_tools),
        "stop_sequence": null,
        "usage": usage_body(&response.usage),
    })
}

/// The content block open in an [`EventEncoder`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OpenBlock {
    Text,
    Thinking,
    Tool,
}

/// Turns neutral stream events into Anthropic SSE events for a client.
#[derive(Debug, Clone)]
pub struct EventEncoder {
    id: String,
    model: String,
    started: bool,
    finished: bool,
    /// The open block and its index.
    open: Option<(OpenBlock, u32)>,
    next_index: u32,
    /// Neutral tool-call index -> content block index.
    tool_blocks: HashMap<u32, u32>,
    usage: Option<Usage>,
    reason: Option<FinishReason>,
}

type SseEvent = (&'static str, Value);

impl EventEncoder {
    /// `id` is the message id to report, `model` the name the client asked for.
    pub fn new(id: String, model: String) -> Self {
        Self {
            id,
            model,
            started: false,
            finished: false,
            open: None,
            next_index: 0,
            tool_blocks: HashMap::new(),
            usage: None,
            reason: None,
        }
    }

    /// The Anthropic SSE events (name, data) for one neutral event.
    pub fn encode(&mut self, event: &StreamEvent) -> Vec<SseEvent> {
        let mut out = Vec::new();
        if self.finished {
            return out;
        }
        match event {
            StreamEvent::Start { id, model } => {
                if self.id.is_empty() {
                    self.id.clone_from(id);
                }
                if self.model.is_empty() {
                    self.model.clone_from(model);
                }
                self.ensure_started(&mut out);
            }
            StreamEvent::TextDelta { text } if !text.is_empty() => {
                self.ensure_started(&mut out);
                let index = self.ensure_block(OpenBlock::Text, &mut out);
                out.push(delta(index, json!({"type": "text_delta", "text": text})));
            }
            StreamEvent::ThinkingDelta { text } if !text.is_empty() => {
                self.ensure_started(&mut out);
                let index = self.ensure_block(OpenBlock::Thinking, &mut out);
                out.push(delta(
                    index,
                    json!({"type": "thinking_delta", "thinking": text}),
                ));
            }
            StreamEvent::ThinkingSignature { signature } if !signature.is_empty() => {
                self.ensure_started(&mut out);
                let index = self.ensure_block(OpenBlock::Thinking, &mut out);
                out.push(delta(
                    index,
                    json!({"type": "signature_delta", "signature": signature}),
                ));
                // The signature seals the block: more thinking is a new block.
                self.close_block(&mut out);
            }
            // Thinking ended unsigned: a signature next is a block of its own.
            StreamEvent::ThinkingSignature { .. } => {
                if matches!(self.open, Some((OpenBlock::Thinking, _))) {
                    self.close_block(&mut out);
                }
            }
            StreamEvent::ToolCallStart {
                index: tool,
                id,
                name,
            } => {
                self.ensure_started(&mut out);
                self.close_block(&mut out);
                let index = self.next_index;
                self.next_index += 1;
                self.open = Some((OpenBlock::Tool, index));
                self.tool_blocks.insert(*tool, index);
                out.push((
                    "content_block_start",
                    json!({
                        "type": "content_block_start",
                        "index": index,
                        "content_block": {
                            "type": "tool_use",
                            "id": tool_use_id(id),
                            "name": name,
                            "input": {},
                        },
                    }),
                ));
            }
            StreamEvent::ToolCallDelta {
                index: tool,
                arguments,
            } if !arguments.is_empty() => {
                // Deltas of a call whose block was already closed (an upstream
                // interleaving parallel calls) still go to that block's index,
                // which is how SDKs accumulate; deltas of a call that never
                // started have no block to go to and are dropped.
                if let Some(&index) = self.tool_blocks.get(tool) {
                    out.push(delta(
                        index,
                        json!({"type": "input_json_delta", "partial_json": arguments}),
                    ));
                }
            }
            StreamEvent::Usage { usage } => self.usage = Some(*usage),
            StreamEvent::Finish { reason } => self.reason = Some(*reason),
            // Empty deltas, and raw upstream events (their dialect is unknown here).
            _ => {}
        }
        out
    }

    /// Closes the stream: the open block, `message_delta` (stop reason and
    /// usage), `message_stop`. Later calls return nothing.
    pub fn finish(&mut self) -> Vec<SseEvent> {
        let mut out = Vec::new();
        if self.finished {
            return out;
        }
        self.ensure_started(&mut out);
        self.close_block(&mut out);
        self.finished = true;
        let usage = self.usage.unwrap_or_default();
        out.push((
            "message_delta",
            json!({
                "type": "message_delta",
                "delta": {
                    "stop_reason": stop_reason(self.reason.unwrap_or_default(), !self.tool_blocks.is_empty()),
                    "stop_sequence": null,
                },
                // Input counts too: most upstreams report usage only at the
                // end, and current SDKs take input_tokens from here.
                "usage": usage_body(&usage),
            }),
        ));
        out.push(("message_stop", json!({"type": "message_stop"})));
        out
    }

    fn ensure_started(&mut self, out: &mut Vec<SseEvent>) {
        if self.started {
            return;
        }
        self.started = true;
        self.id = message_id(&self.id);
        let mut usage = self
            .usage
            .map(|usage| usage_body(&usage))
            .unwrap_or_else(|| json!({"input_tokens": 0}));
        // Output is only known at the end; message_delta carries it.
        usage["output_tokens"] = json!(0);
        out.push((
            "message_start",
            json!({
                "type": "message_start",
                "message": {
                    "id": self.id,
                    "type": "message",
                    "role": "assistant",
                    "model": self.model,
                    "content": [],
                    "stop_reason": null,
                    "stop_sequence": null,
                    "usage": usage,
                },
            }),
        ));
        out.push(("ping", json!({"type": "ping"})));
    }

    /// The index of an open block of `kind`, opening one if needed.
    fn ensure_block(&mut self, kind: OpenBlock, out: &mut Vec<SseEvent>) -> u32 {
        if let Some((open, index)) = self.open
            && open == kind
        {
            return index;
        }
        self.close_block(out);
        let index = self.next_index;
        self.next_index += 1;
        self.open = Some((kind, index));
        let block = match kind {
            OpenBlock::Thinking => json!({"type": "thinking", "thinking": "", "signature": ""}),
            _ => json!({"type": "text", "text": ""}),
        };
        out.push((
            "content_block_start",
            json!({"type": "content_block_start", "index": index, "content_block": block}),
        ));
        index
    }

    fn close_block(&mut self, out: &mut Vec<SseEvent>) {
        if let Some((_, index)) = self.open.take() {
            out.push((
                "content_block_stop",
                json!({"type": "content_block_stop", "index": index}),
            ));
        }
    }
}

fn delta(index: u32, delta: Value) -> SseEvent {
    (
        "content_block_delta",
        json!({"type": "content_block_delta", "index": index, "delta": delta}),
    )
}

/// Anthropic's error `type` for a neutral error kind.
fn error_type(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::InvalidRequest => "invalid_request_error",
        ErrorKind::Authentication => "authentication_error",
        ErrorKind::Permission => "permission_error",
        ErrorKind::NotFound => "not_found_error",
        ErrorKind::RateLimited => "rate_limit_error",
        ErrorKind::Overloaded => "overloaded_error",
        ErrorKind::Upstream | ErrorKind::Internal => "api_error",
    }
}

/// An Anthropic error body for a client (also the data of an SSE `error` event).
pub fn error_body(error: &ProviderError) -> Value {
    json!({"type": "error", "error": {"type": error_type(error.kind), "message": error.message}})
}

/// The HTTP status to answer a client with for `error`: Anthropic's SDKs
/// pick the exception class from the status, and overload is 529 there.
pub fn error_status(error: &ProviderError) -> u16 {
    // The status was chosen where the error arose (e.g. 413 for a body
    // over the limit); only overload has an Anthropic-specific code.
    match error.kind {
        ErrorKind::Overloaded => 529,
        _ => error.status,
    }
}

// ---------------------------------------------------------------------------
// Provider side: request building
// ---------------------------------------------------------------------------

/// The Messages API body for `request`. `default_max_tokens` applies when
/// the request sets none (Anthropic requires it).
pub fn messages_request_body(
    request: &ChatRequest,
    stream: bool,
    default_max_tokens: u32,
) -> Value {
    messages_body(request, stream, default_max_tokens).to_value()
}

/// The `/v1/messages/count_tokens` body for `request`: the Messages body's
/// fields that the count takes (it refuses `max_tokens`, `stream` and the
/// sampling options).
pub fn count_tokens_request_body(request: &ChatRequest) -> Value {
    const COUNTED: [&str; 10] = [
        "model",
        "messages",
        "system",
        "tools",
        "tool_choice",
        "thinking",
        "context_management",
        "mcp_servers",
        "output_config",
        "output_format",
    ];
    // Counting runs no model, so the client's max_tokens (a placeholder
    // for a count request) must not crowd out the thinking it would send:
    // any max_tokens above a thinking budget does.
    let mut request = request.clone();
    request.params.max_tokens = None;
    let mut body = messages_request_body(&request, false, COUNT_TOKENS_MAX_TOKENS);
    if let Some(fields) = body.as_object_mut() {
        fields.retain(|key, _| COUNTED.contains(&key.as_str()));
    }
    body
}

/// The max_tokens a count request is built with, so that the thinking
/// budget derived from a reasoning level fits under it.
const COUNT_TOKENS_MAX_TOKENS: u32 = 64_000;

/// The input-token count in a `count_tokens` answer.
pub fn parse_count_tokens(body: &[u8]) -> Result<u64, ProviderError> {
    serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|answer| answer.get("input_tokens").and_then(Value::as_u64))
        .ok_or_else(|| {
            ProviderError::bad_upstream("Anthropic count_tokens answer without input_tokens")
        })
}

/// The tool through which Claude answers in JSON mode: Claude has no
/// plain JSON answer (OpenAI's `response_format` `json_object`; its
/// structured outputs need a schema), so, as Anthropic's tool-use guide
/// suggests, the request offers one tool taking any object and forces it,
/// and the answer's call becomes the JSON text of the answer. The name is
/// one no client tool has in practice.
pub const JSON_ANSWER_TOOL: &str = "json_answer_of_the_gateway";

pub(crate) static JSON_ANSWER: LazyLock<[Tool; 1]> = LazyLock::new(|| {
    [Tool {
        name: JSON_ANSWER_TOOL.into(),
        description: Some("Give your whole answer as this tool's input: one JSON object.".into()),
        parameters: json!({"type": "object"}),
    }]
});

static JSON_ANSWER_CHOICE: LazyLock<ToolChoice> = LazyLock::new(|| ToolChoice::Tool {
    name: JSON_ANSWER_TOOL.into(),
});

/// Whether `request` asks for a plain JSON answer (`json_object`, no
/// schema) that Claude gives through [`JSON_ANSWER_TOOL`] (here and on
/// Bedrock): a request of another dialect than Anthropic's, offering no
/// tools of its own.
pub(crate) fn json_mode(request: &ChatRequest) -> bool {
    request.extra_dialect.as_deref() != Some(DIALECT)
        && request.tools.is_empty()
        && request
            .response_format
            .as_ref()
            .and_then(|format| format.get("type"))
            .and_then(Value::as_str)
            == Some("json_object")
}

/// An answer's call of [`JSON_ANSWER_TOOL`] as the text it stands for;
/// an answer that called it and no other tool has stopped, not called.
pub(crate) fn json_answer_as_text(response: &mut ChatResponse) {
    let mut answered = false;
    for part in &mut response.content {
        if let ContentPart::ToolCall {
            name, arguments, ..
        } = part
            && name == JSON_ANSWER_TOOL
        {
            *part = ContentPart::text(std::mem::take(arguments));
            answered = true;
        }
    }
    // Every Claude answer passes here; most called no such tool.
    if !answered {
        return;
    }
    let other_calls = response
        .content
        .iter()
        .any(|part| matches!(part, ContentPart::ToolCall { .. }));
    if !other_calls && response.finish_reason == FinishReason::ToolCalls {
        response.finish_reason = FinishReason::Stop;
    }
}

/// [`messages_request_body`] as typed parts borrowed from `request`,
/// written to JSON without building a `Value` tree; its JSON is the
/// `Value` form's byte for byte.
pub fn messages_body(
    request: &ChatRequest,
    stream: bool,
    default_max_tokens: u32,
) -> MessagesBody<'_> {
    use BodyField as F;
    let mut fields: Vec<(&str, BodyField)> = Vec::with_capacity(12);
    fields.push(("model", F::Str(&request.model)));
    let max_tokens = request.params.max_tokens.unwrap_or(default_max_tokens);
    fields.push(("max_tokens", F::U32(max_tokens)));
    let json_mode = json_mode(request);
    // An Anthropic client's own `thinking` is forwarded from `extra` below;
    // JSON mode forces a tool call, which Claude refuses beside thinking.
    let thinking = (request.extra_dialect.as_deref() != Some(DIALECT) && !json_mode)
        .then(|| thinking_for(request, Some(max_tokens)))
        .flatten();
    if let Some(budget_tokens) = thinking {
        fields.push((
            "thinking",
            F::Thinking(WireThinking {
                budget_tokens,
                kind: "enabled",
            }),
        ));
    }
    if let Some(system) = request.system.as_deref().filter(|s| !s.is_empty()) {
        fields.push(("system", F::Str(system)));
    }
    fields.push(("messages", F::Messages(wire_turns(&request.messages))));
    // Only the options the neutral choice lacks come from the client's own
    // `tool_choice` (kept in `extra` by this dialect's parser).
    let original_choice = (request.extra_dialect.as_deref() == Some(DIALECT))
        .then(|| request.extra.get("tool_choice"))
        .flatten();
    if json_mode {
        fields.push(("tools", F::Tools(&*JSON_ANSWER)));
        fields.push((
            "tool_choice",
            F::ToolChoice(WireToolChoice::new(&JSON_ANSWER_CHOICE, None)),
        ));
    }
    if !request.tools.is_empty() {
        fields.push(("tools", F::Tools(&request.tools)));
        // Anthropic rejects tool_choice without tools.
        if let Some(choice) = &request.tool_choice {
            let disable_parallel_tool_use = original_choice
                .and_then(Value::as_object)
                .and_then(|original| original.get("disable_parallel_tool_use"));
            fields.push((
                "tool_choice",
                F::ToolChoice(WireToolChoice::new(choice, disable_parallel_tool_use)),
            ));
        }
    }
    let params = &request.params;
    let sampling = Sampling::beside_thinking(params, thinking.is_some());
    if let Some(temperature) = sampling.temperature {
        fields.push(("temperature", F::F64(temperature)));
    }
    if let Some(top_p) = sampling.top_p {
        fields.push(("top_p", F::F64(top_p)));
    }
    if let Some(top_k) = sampling.top_k {
        fields.push(("top_k", F::U32(top_k)));
    }
    if !params.stop.is_empty() {
        fields.push(("stop_sequences", F::Strings(&params.stop)));
    }
    if stream {
        fields.push(("stream", F::Bool(true)));
    }
    // An Anthropic client's own `output_config` is forwarded from `extra`
    // below. A plain JSON answer without a schema, the seed and the
    // penalties have no Messages API equivalent.
    if request.extra_dialect.as_deref() != Some(DIALECT)
        && let Some(format) = common::SchemaFormat::of(request.response_format.as_ref())
    {
        fields.push((
            "output_config",
            F::OutputConfig(WireOutputConfig {
                format: WireOutputFormat {
                    schema: format.schema,
                    kind: "json_schema",
                },
            }),
        ));
    }

    if request.extra_dialect.as_deref() == Some(DIALECT) {
        // `tool_choice` was used above, or has nothing to choose from; the
        // betas go in a header.
        let extra = request
            .extra
            .iter()
            .filter(|(key, _)| *key != "tool_choice" && *key != BETAS_FIELD);
        common::push_missing(&mut fields, extra.map(|(k, v)| (k.as_str(), F::Json(v))));
    }
    MessagesBody(common::SortedObject::new(fields))
}

/// The smallest thinking budget Anthropic accepts.
const MIN_THINKING_BUDGET: u32 = 1024;

/// The sampling options to send to Claude.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Sampling {
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    pub top_k: Option<u32>,
}

impl Sampling {
    /// The request's sampling options, less those Anthropic refuses beside
    /// extended thinking (a temperature other than 1, any top_k, a top_p
    /// below 0.95) when the gateway turned thinking on: the client asked
    /// for reasoning in its own dialect, where these options go with it,
    /// and would otherwise get a 400 for a combination it never wrote.
    pub(crate) fn beside_thinking(params: &SamplingParams, thinking: bool) -> Self {
        if !thinking {
            return Self {
                temperature: params.temperature,
                top_p: params.top_p,
                top_k: params.top_k,
            };
        }
        Self {
            temperature: params.temperature.filter(|t| *t == 1.0),
            top_p: params.top_p.filter(|p| (0.95..=1.0).contains(p)),
            top_k: None,
        }
    }
}

/// The thinking budget for a reasoning request from another dialect, or
/// `None` to send no `thinking`: when it is off, when `max_tokens` leaves
/// no room for the minimum budget (the budget must stay below it), when a
/// tool call is forced (Anthropic refuses that with thinking), or when the
/// conversation ends in tool calls without the signed thinking Anthropic
/// then requires in front of them (another dialect's client has none to
/// replay).
pub(crate) fn thinking_for(request: &ChatRequest, max_tokens: Option<u32>) -> Option<u32> {
    let reasoning = request.reasoning.as_ref()?;
    if reasoning.is_off() {
        return None;
    }
    let forced_tool = !request.tools.is_empty()
        && matches!(
            request.tool_choice,
            Some(ToolChoice::Required | ToolChoice::Tool { .. })
        );
    if forced_tool {
        return None;
    }
    let wanted = reasoning
        .thinking_budget()
        .unwrap_or_else(|| ReasoningEffort::Medium.budget_tokens())
        .max(MIN_THINKING_BUDGET);
    let budget = match max_tokens {
        Some(max_tokens) => wanted.min(max_tokens.saturating_sub(1)),
        None => wanted,
    };
    let last_assistant = request
        .messages
        .iter()
        .rev()
        .find(|message| message.role == Role::Assistant);
    let unsigned_tool_turn = last_assistant.is_some_and(|message| {
        let calls = message
            .content
            .iter()
            .any(|part| matches!(part, ContentPart::ToolCall { .. }));
        let signed = message.content.iter().any(|part| {
            matches!(
                part,
                ContentPart::Thinking {
                    signature: Some(_),
                    ..
                }
            )
        });
        calls && !signed
    });
    (budget >= MIN_THINKING_BUDGET && !unsigned_tool_turn).then_some(budget)
}

/// A Messages API request body; see [`messages_body`].
#[derive(Debug)]
pub struct MessagesBody<'a>(common::SortedObject<'a, BodyField<'a>>);

impl MessagesBody<'_> {
    /// The body as a `Value`, for code that edits it.
    pub fn to_value(&self) -> Value {
        self.0.to_value()
    }
}

impl serde::Serialize for MessagesBody<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}

// Struct fields below are in alphabetical order: the order a `Value` object
// writes its keys in.

#[derive(Debug, serde::Serialize)]
#[serde(untagged)]
enum BodyField<'a> {
    Str(&'a str),
    Messages(Vec<WireTurn<'a>>),
    Tools(#[serde(serialize_with = "tools")] &'a [Tool]),
    ToolChoice(WireToolChoice<'a>),
    U32(u32),
    F64(f64),
    Bool(bool),
    Strings(&'a [String]),
    Thinking(WireThinking),
    OutputConfig(WireOutputConfig<'a>),
    Json(&'a Value),
}

#[derive(Debug, serde::Serialize)]
struct WireOutputConfig<'a> {
    format: WireOutputFormat<'a>,
}

#[derive(Debug, serde::Serialize)]
struct WireOutputFormat<'a> {
    schema: &'a Value,
    #[serde(rename = "type")]
    kind: &'static str,
}

#[derive(Debug, serde::Serialize)]
struct WireThinking {
    budget_tokens: u32,
    #[serde(rename = "type")]
    kind: &'static str,
}

#[derive(Debug, serde::Serialize)]
struct WireToolChoice<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    disable_parallel_tool_use: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    #[serde(rename = "type")]
    kind: &'static str,
}

impl<'a> WireToolChoice<'a> {
    fn new(choice: &'a ToolChoice, disable_parallel_tool_use: Option<&'a Value>) -> Self {
        let (kind, name) = match choice {
            ToolChoice::Auto => ("auto", None),
            ToolChoice::None => ("none", None),
            ToolChoice::Required => ("any", None),
            ToolChoice::Tool { name } => ("tool", Some(name.as_str())),
        };
        WireToolChoice {
            disable_parallel_tool_use,
            name,
            kind,
        }
    }
}

fn tools<S: serde::Serializer>(tools: &&[Tool], serializer: S) -> Result<S::Ok, S::Error> {
    #[derive(serde::Serialize)]
    struct WireTool<'a> {
        #[serde(skip_serializing_if = "Option::is_none")]
        description: Option<&'a str>,
        input_schema: &'a Value,
        name: &'a str,
    }
    // OpenAI-dialect tools may omit parameters; Anthropic requires an object schema.
    static EMPTY_SCHEMA: LazyLock<Value> =
        LazyLock::new(|| json!({"type": "object", "properties": {}}));
    serializer.collect_seq(tools.iter().map(|tool| WireTool {
        description: tool.description.as_deref(),
        input_schema: match &tool.parameters {
            Value::Object(schema) if !schema.is_empty() => &tool.parameters,
            _ => &EMPTY_SCHEMA,
        },
        name: &tool.name,
    }))
}

#[derive(Debug, serde::Serialize)]
struct WireTurn<'a> {
    content: WireContent<'a>,
    role: &'static str,
}

#[derive(Debug, serde::Serialize)]
#[serde(untagged)]
enum WireContent<'a> {
    Text(&'a str),
    Blocks(Vec<WireBlock<'a>>),
}

#[derive(Debug, serde::Serialize)]
#[serde(untagged)]
enum WireBlock<'a> {
    Text {
        text: &'a str,
        #[serde(rename = "type")]
        kind: &'static str,
    },
    Image {
        source: WireImage,
        #[serde(rename = "type")]
        kind: &'static str,
    },
    ToolUse {
        id: &'a str,
        input: Value,
        name: &'a str,
        #[serde(rename = "type")]
        kind: &'static str,
    },
    ToolResult {
        #[serde(skip_serializing_if = "str::is_empty")]
        content: &'a str,
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        is_error: bool,
        tool_use_id: &'a str,
        #[serde(rename = "type")]
        kind: &'static str,
    },
    Thinking {
        signature: &'a str,
        thinking: &'a str,
        #[serde(rename = "type")]
        kind: &'static str,
    },
}

#[derive(Debug, serde::Serialize)]
#[serde(untagged)]
enum WireImage {
    Base64 {
        data: String,
        media_type: String,
        #[serde(rename = "type")]
        kind: &'static str,
    },
    Url {
        #[serde(rename = "type")]
        kind: &'static str,
        url: String,
    },
}

/// Neutral turns as Anthropic messages: tool results go in user turns,
/// consecutive same-role turns merge (Anthropic requires alternation), and
/// empty turns are dropped.
fn wire_turns(messages: &[Message]) -> Vec<WireTurn<'_>> {
    let mut turns: Vec<(&'static str, Vec<WireBlock>)> = Vec::new();
    for message in messages {
        let role = match message.role {
            Role::User | Role::Tool => "user",
            Role::Assistant => "assistant",
        };
        let blocks: Vec<WireBlock> = message
            .content
            .iter()
            .filter_map(|part| wire_block(part, message.role))
            .collect();
        if blocks.is_empty() {
            continue;
        }
        match turns.last_mut() {
            Some((last_role, last_blocks)) if *last_role == role => last_blocks.extend(blocks),
            _ => turns.push((role, blocks)),
        }
    }
    turns
        .into_iter()
        .map(|(role, mut blocks)| {
            if role == "user" {
                // Anthropic wants a turn's tool results before any other block.
                blocks.sort_by_key(|block| !matches!(block, WireBlock::ToolResult { .. }));
            }
            let content = match blocks.as_slice() {
                [WireBlock::Text { text, .. }] => WireContent::Text(text),
                _ => WireContent::Blocks(blocks),
            };
            WireTurn { content, role }
        })
        .collect()
}

fn wire_block(part: &ContentPart, role: Role) -> Option<WireBlock<'_>> {
    match part {
        // Anthropic rejects empty text blocks.
        ContentPart::Text { text } if text.is_empty() => None,
        ContentPart::Text { text } => Some(WireBlock::Text { text, kind: "text" }),
        ContentPart::Image { source } => {
            let source = match source {
                ImageSource::Url { url } => ImageSource::from_url(url),
                other => other.clone(),
            };
            let source = match source {
                ImageSource::Base64 { media_type, data } => WireImage::Base64 {
                    data,
                    media_type,
                    kind: "base64",
                },
                ImageSource::Url { url } => WireImage::Url { kind: "url", url },
            };
            Some(WireBlock::Image {
                source,
                kind: "image",
            })
        }
        ContentPart::ToolCall {
            id,
            name,
            arguments,
        } => Some(WireBlock::ToolUse {
            id,
            input: arguments_object(arguments),
            name,
            kind: "tool_use",
        }),
        ContentPart::ToolResult {
            tool_call_id,
            content,
            is_error,
            ..
        } => Some(WireBlock::ToolResult {
            content,
            is_error: *is_error,
            tool_use_id: tool_call_id,
            kind: "tool_result",
        }),
        // Anthropic verifies the signature of replayed thinking; unsigned
        // reasoning (another provider's) cannot be sent back.
        ContentPart::Thinking {
            text,
            signature: Some(signature),
        } if role == Role::Assistant => Some(WireBlock::Thinking {
            signature,
            thinking: text,
            kind: "thinking",
        }),
        ContentPart::Thinking { .. } => None,
    }
}

// ---------------------------------------------------------------------------
// Provider side: responses, stream events, errors
// ---------------------------------------------------------------------------

fn finish_reason(stop_reason: &str) -> FinishReason {
    match stop_reason {
        "max_tokens" | "model_context_window_exceeded" => FinishReason::Length,
        "tool_use" => FinishReason::ToolCalls,
        "refusal" => FinishReason::ContentFilter,
        // end_turn, stop_sequence, pause_turn and reasons added later.
        _ => FinishReason::Stop,
    }
}

/// Anthropic's usage counters, kept apart so partial updates (message_delta)
/// can be applied before converting to the neutral convention.
#[derive(Debug, Clone, Copy, Default)]
struct WireUsage {
    input: u32,
    cache_creation: u32,
    cache_read: Option<u32>,
    output: u32,
}

impl WireUsage {
    /// Applies the counters present in `usage`.
    fn update(&mut self, usage: &Value) {
        let count = |key: &str| usage.get(key).and_then(Value::as_u64);
        self.apply(&wire::UsageCounts {
            input_tokens: count("input_tokens"),
            cache_creation_input_tokens: count("cache_creation_input_tokens"),
            cache_read_input_tokens: count("cache_read_input_tokens"),
            output_tokens: count("output_tokens"),
        });
    }

    /// Applies the counters present.
    fn apply(&mut self, counts: &wire::UsageCounts) {
        let clamp = |n: u64| u32::try_from(n).unwrap_or(u32::MAX);
        if let Some(n) = counts.input_tokens {
            self.input = clamp(n);
        }
        if let Some(n) = counts.cache_creation_input_tokens {
            self.cache_creation = clamp(n);
        }
        if let Some(n) = counts.cache_read_input_tokens {
            self.cache_read = Some(clamp(n));
        }
        if let Some(n) = counts.output_tokens {
            self.output = clamp(n);
        }
    }

    fn neutral(&self) -> Usage {
        Usage {
            input_tokens: self
                .input
                .saturating_add(self.cache_creation)
                .saturating_add(self.cache_read.unwrap_or(0)),
            output_tokens: self.output,
            cached_input_tokens: self.cache_read,
        }
    }
}

fn str_field(value: &Value, key: &str) -> String {
    value
        .get(key)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

/// Parses a Messages API answer; `raw` keeps the body.
pub fn parse_message(body: &[u8]) -> Result<ChatResponse, ProviderError> {
    // The common shape is read straight into typed views; anything they do
    // not cover exactly (an error document, an unexpected type) takes the
    // `Value` reading, which defines the behaviour.
    let mut response = match wire::message(body) {
        Some(response) => response,
        None => parse_message_value(body)?,
    };
    json_answer_as_text(&mut response);
    Ok(response)
}

/// The reference reading of a Messages answer, through a `Value` tree.
fn parse_message_value(body: &[u8]) -> Result<ChatResponse, ProviderError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        ProviderError::bad_upstream(format!("Anthropic answer is not valid JSON: {e}"))
    })?;
    if value.get("type").and_then(Value::as_str) == Some("error") {
        return Err(error_from_body(&value, None, None));
    }
    let blocks = value
        .get("content")
        .and_then(Value::as_array)
        .ok_or_else(|| ProviderError::bad_upstream("Anthropic answer has no content array"))?;
    let mut content = Vec::with_capacity(blocks.len());
    for block in blocks {
        match block.get("type").and_then(Value::as_str) {
            Some("text") => content.push(ContentPart::text(str_field(block, "text"))),
            Some("tool_use") => content.push(ContentPart::ToolCall {
                id: str_field(block, "id"),
                name: str_field(block, "name"),
                arguments: block
                    .get("input")
                    .map_or_else(|| "{}".to_string(), Value::to_string),
            }),
            Some("thinking") => content.push(ContentPart::Thinking {
                text: str_field(block, "thinking"),
                signature: block
                    .get("signature")
                    .and_then(Value::as_str)
                    .map(str::to_string),
            }),
            // Redacted thinking and server-tool blocks have no neutral form;
            // `raw` keeps them for Anthropic clients.
            _ => {}
        }
    }
    let mut usage = WireUsage::default();
    if let Some(wire) = value.get("usage") {
        usage.update(wire);
    }
    Ok(ChatResponse {
        id: str_field(&value, "id"),
        model: str_field(&value, "model"),
        content,
        finish_reason: value
            .get("stop_reason")
            .and_then(Value::as_str)
            .map(finish_reason)
            .unwrap_or_default(),
        usage: usage.neutral(),
        raw: RawJson::from_body(body),
    })
}

/// Typed views of an Anthropic Messages answer: the fast reading of
/// [`parse_message`], without a `Value` tree (a `BTreeMap` per object,
/// every key and string copied). Each view is strict where the `Value`
/// reading is lenient (a field of an unexpected type fails the whole
/// reading), so an answer either reads the same both ways or falls back;
/// the tests compare the two.
mod wire {
    use serde::{Deserialize, Deserializer};

    use super::{ChatResponse, ContentPart, RawJson, Value, WireUsage, finish_reason};

    #[derive(Deserialize)]
    struct Message {
        #[serde(rename = "type")]
        kind: Option<String>,
        id: Option<String>,
        model: Option<String>,
        content: Option<Vec<Block>>,
        stop_reason: Option<String>,
        usage: Option<UsageCounts>,
    }

    #[derive(Deserialize)]
    struct Block {
        #[serde(rename = "type")]
        kind: Option<String>,
        text: Option<String>,
        id: Option<String>,
        name: Option<String>,
        /// `Some(Value::Null)` for an explicit `null`, as the `Value` reading.
        #[serde(default, deserialize_with = "present")]
        input: Option<Value>,
        thinking: Option<String>,
        signature: Option<String>,
    }

    /// The token counters of a `usage` object.
    #[derive(Deserialize)]
    pub(super) struct UsageCounts {
        pub input_tokens: Option<u64>,
        pub cache_creation_input_tokens: Option<u64>,
        pub cache_read_input_tokens: Option<u64>,
        pub output_tokens: Option<u64>,
    }

    fn present<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Value>, D::Error> {
        Value::deserialize(deserializer).map(Some)
    }

    /// `None` when the typed views do not cover this body.
    pub(super) fn message(body: &[u8]) -> Option<ChatResponse> {
        let message: Message = serde_json::from_slice(body).ok()?;
        if message.kind.as_deref() == Some("error") {
            return None;
        }
        let blocks = message.content?;
        let mut content = Vec::with_capacity(blocks.len());
        for block in blocks {
            match block.kind.as_deref() {
                Some("text") => content.push(ContentPart::text(block.text.unwrap_or_default())),
                Some("tool_use") => content.push(ContentPart::ToolCall {
                    id: block.id.unwrap_or_default(),
                    name: block.name.unwrap_or_default(),
                    arguments: block
                        .input
                        .map_or_else(|| "{}".to_string(), |input| input.to_string()),
                }),
                Some("thinking") => content.push(ContentPart::Thinking {
                    text: block.thinking.unwrap_or_default(),
                    signature: block.signature,
                }),
                _ => {}
            }
        }
        let mut usage = WireUsage::default();
        if let Some(counts) = &message.usage {
            usage.apply(counts);
        }
        Some(ChatResponse {
            id: message.id.unwrap_or_default(),
            model: message.model.unwrap_or_default(),
            content,
            finish_reason: message
                .stop_reason
                .as_deref()
                .map(finish_reason)
                .unwrap_or_default(),
            usage: usage.neutral(),
            raw: RawJson::from_body(body),
        })
    }
}

/// Turns Anthropic SSE events into neutral stream events.
#[derive(Debug, Clone, Default)]
pub struct EventDecoder {
    /// Content block index -> neutral tool-call index, for client tool_use blocks.
    tool_blocks: HashMap<u64, u32>,
    next_tool: u32,
    /// Content block indexes of [`JSON_ANSWER_TOOL`] calls, whose input
    /// streams as the answer's text.
    json_answers: Vec<u64>,
    usage: WireUsage,
}

impl EventDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Decodes one SSE event; `event` is its `event:` name, possibly empty
    /// (the data's `type` then tells).
    pub fn decode(&mut self, event: &str, data: &str) -> Result<Vec<StreamEvent>, ProviderError> {
        let value: Value = serde_json::from_str(data).map_err(|e| {
            ProviderError::bad_upstream(format!(
                "Anthropic stream event '{event}' is not valid JSON: {e}"
            ))
        })?;
        let kind = if event.is_empty() {
            value
                .get("type")
                .and_then(Value::as_str)
                .unwrap_or_default()
        } else {
            event
        };
        let mut out = Vec::new();
        match kind {
            "message_start" => {
                let message = value.get("message").unwrap_or(&Value::Null);
                out.push(StreamEvent::Start {
                    id: str_field(message, "id"),
                    model: str_field(message, "model"),
                });
                if let Some(usage) = message.get("usage") {
                    self.usage.update(usage);
                    out.push(StreamEvent::Usage {
                        usage: self.usage.neutral(),
                    });
                }
            }
            "content_block_start" => {
                let index = value.get("index").and_then(Value::as_u64).unwrap_or(0);
                let block = value.get("content_block").unwrap_or(&Value::Null);
                match block.get("type").and_then(Value::as_str) {
                    Some("text") => push_text(&mut out, str_field(block, "text"), false),
                    Some("thinking") => {
                        push_text(&mut out, str_field(block, "thinking"), true);
                        push_signature(&mut out, str_field(block, "signature"));
                    }
                    Some("tool_use") if str_field(block, "name") == JSON_ANSWER_TOOL => {
                        self.json_answers.push(index);
                        if let Some(input) = block.get("input").and_then(Value::as_object)
                            && !input.is_empty()
                        {
                            push_text(&mut out, Value::Object(input.clone()).to_string(), false);
                        }
                    }
                    Some("tool_use") => {
                        let tool = self.next_tool;
                        self.next_tool += 1;
                        self.tool_blocks.insert(index, tool);
                        out.push(StreamEvent::ToolCallStart {
                            index: tool,
                            id: str_field(block, "id"),
                            name: str_field(block, "name"),
                        });
                        // Input normally streams as deltas from `{}`; keep any given upfront.
                        if let Some(input) = block.get("input").and_then(Value::as_object)
                            && !input.is_empty()
                        {
                            out.push(StreamEvent::ToolCallDelta {
                                index: tool,
                                arguments: Value::Object(input.clone()).to_string(),
                            });
                        }
                    }
                    // Server tool blocks and redacted thinking: Anthropic acts
                    // on them itself, nothing for the client to run or read.
                    _ => {}
                }
            }
            "content_block_delta" => {
                let index = value.get("index").and_then(Value::as_u64).unwrap_or(0);
                let delta = value.get("delta").unwrap_or(&Value::Null);
                match delta.get("type").and_then(Value::as_str) {
                    Some("text_delta") => push_text(&mut out, str_field(delta, "text"), false),
                    Some("thinking_delta") => {
                        push_text(&mut out, str_field(delta, "thinking"), true)
                    }
                    Some("input_json_delta") if self.json_answers.contains(&index) => {
                        push_text(&mut out, str_field(delta, "partial_json"), false);
                    }
                    Some("input_json_delta") => {
                        let arguments = str_field(delta, "partial_json");
                        // Server tool inputs also stream as input_json_delta.
                        if let Some(&tool) = self.tool_blocks.get(&index)
                            && !arguments.is_empty()
                        {
                            out.push(StreamEvent::ToolCallDelta {
                                index: tool,
                                arguments,
                            });
                        }
                    }
                    Some("signature_delta") => {
                        push_signature(&mut out, str_field(delta, "signature"))
                    }
                    // citations_delta: no neutral form.
                    _ => {}
                }
            }
            "message_delta" => {
                if let Some(usage) = value.get("usage") {
                    self.usage.update(usage);
                    out.push(StreamEvent::Usage {
                        usage: self.usage.neutral(),
                    });
                }
                if let Some(reason) = value.pointer("/delta/stop_reason").and_then(Value::as_str) {
                    let reason = match finish_reason(reason) {
                        // A JSON answer and no other call: the answer is whole.
                        FinishReason::ToolCalls
                            if !self.json_answers.is_empty() && self.next_tool == 0 =>
                        {
                            FinishReason::Stop
                        }
                        reason => reason,
                    };
                    out.push(StreamEvent::Finish { reason });
                }
            }
            "error" => return Err(error_from_body(&value, None, None)),
            // ping, content_block_stop, message_stop, and event types added later.
            _ => {}
        }
        Ok(out)
    }
}

fn push_text(out: &mut Vec<StreamEvent>, text: String, thinking: bool) {
    if text.is_empty() {
        return;
    }
    out.push(if thinking {
        StreamEvent::ThinkingDelta { text }
    } else {
        StreamEvent::TextDelta { text }
    });
}

fn push_signature(out: &mut Vec<StreamEvent>, signature: String) {
    if !signature.is_empty() {
        out.push(StreamEvent::ThinkingSignature { signature });
    }
}

/// The neutral kind and the HTTP status Anthropic uses for an error `type`.
fn error_kind(error_type: &str) -> Option<(ErrorKind, u16)> {
    Some(match error_type {
        "invalid_request_error" => (ErrorKind::InvalidRequest, 400),
        "authentication_error" => (ErrorKind::Authentication, 401),
        "billing_error" => (ErrorKind::Permission, 402),
        "permission_error" => (ErrorKind::Permission, 403),
        "not_found_error" => (ErrorKind::NotFound, 404),
        "request_too_large" => (ErrorKind::InvalidRequest, 413),
        "rate_limit_error" => (ErrorKind::RateLimited, 429),
        "api_error" => (ErrorKind::Upstream, 500),
        "timeout_error" => (ErrorKind::Upstream, 504),
        "overloaded_error" => (ErrorKind::Overloaded, 529),
        _ => return None,
    })
}

/// A `{"type":"error","error":{type,message}}` body as an error. `status` is
/// the HTTP status when there is one (not for errors inside a stream).
fn error_from_body(
    value: &Value,
    status: Option<u16>,
    retry_after_ms: Option<u64>,
) -> ProviderError {
    let error = value.get("error").unwrap_or(&Value::Null);
    let error_type = error
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let message = match error.get("message").and_then(Value::as_str) {
        Some(message) if !message.is_empty() => common::truncate(message, 2000),
        _ if error_type.is_empty() => "Anthropic error without details".to_string(),
        _ => format!("Anthropic {error_type} without a message"),
    };
    let (kind, status) = match (error_kind(error_type), status) {
        (Some((kind, _)), Some(status)) => (kind, status),
        (Some((kind, typical)), None) => (kind, typical),
        (None, Some(status)) => (ErrorKind::from_status(status), status),
        (None, None) => (ErrorKind::Upstream, 500),
    };
    ProviderError::upstream_with_kind(kind, status, message, retry_after_ms)
}

/// The error of a non-2xx Anthropic answer: kind from the error `type`
/// (the status when the type is unknown), `retry-after-ms` / `retry-after`
/// honoured.
pub fn parse_error(status: u16, headers: &[(String, String)], body: &[u8]) -> ProviderError {
    let now_ms = common::system_now_ms();
    match serde_json::from_slice::<Value>(body) {
        Ok(value) if status >= 400 && value.get("error").is_some_and(Value::is_object) => {
            error_from_body(
                &value,
                Some(status),
                common::retry_after_ms(headers, now_ms),
            )
        }
        // Proxies and load balancers answer with HTML or plain text.
        _ => common::upstream_error(status, headers, body, now_ms),
    }
}

#[cfg(test)]
mod tests {
    //! Client parsing, client answers and SSE encoding, provider body
    //! building, provider answer/stream/error parsing.

    use super::*;

    #[test]
    fn json_mode_answers_through_a_forced_tool() {
        let mut request = ChatRequest {
            model: "claude-x".into(),
            messages: vec![Message::user("Give me JSON")],
            response_format: Some(json!({"type": "json_object"})),
            reasoning: Some(Reasoning::with_effort(ReasoningEffort::High)),
            extra_dialect: Some("openai".into()),
            ..Default::default()
        };
        let body = messages_request_body(&request, false, 4096);
        assert_eq!(
            body["tools"],
            json!([{
                "name": JSON_ANSWER_TOOL,
                "description": "Give your whole answer as this tool's input: one JSON object.",
                "input_schema": {"type": "object"},
            }])
        );
        assert_eq!(
            body["tool_choice"],
            json!({"type": "tool", "name": JSON_ANSWER_TOOL})
        );
        // A forced tool call leaves no room for thinking.
        assert!(body.get("thinking").is_none(), "{body}");
        assert!(body.get("output_config").is_none(), "{body}");

        // The forced call is the answer's text; the answer stopped.
        let answer = format!(
            r#"{{"id":"msg_1","type":"message","role":"assistant","model":"claude-x","content":[{{"type":"tool_use","id":"toolu_1","name":"{JSON_ANSWER_TOOL}","input":{{"city":"Oslo","days":[1,2]}}}}],"stop_reason":"tool_use","usage":{{"input_tokens":5,"output_tokens":7}}}}"#
        );
        let parsed = parse_message(answer.as_bytes()).unwrap();
        assert_eq!(parsed.text(), r#"{"city":"Oslo","days":[1,2]}"#);
        assert_eq!(parsed.finish_reason, FinishReason::Stop);
        assert_eq!(
            parse_message_value(answer.as_bytes()).map(|mut r| {
                json_answer_as_text(&mut r);
                r.content
            }),
            Ok(parsed.content.clone())
        );

        // Streamed: the input's deltas are the text.
        let mut decoder = EventDecoder::new();
        let mut events = Vec::new();
        for (name, data) in [
            ("content_block_start", format!(r#"{{"type":"content_block_start","index":0,"content_block":{{"type":"tool_use","id":"toolu_1","name":"{JSON_ANSWER_TOOL}","input":{{}}}}}}"#)),
            ("content_block_delta", r#"{"type":"content_block_delta","index":0,"delta":{"type":"input_json_delta","partial_json":"{\"city\": "}}"#.to_string()),
            ("content_block_delta", r#"{"type":"content_block_delta","index":0,"delta":{"type":"input_json_delta","partial_json":"\"Oslo\"}"}}"#.to_string()),
            ("message_delta", r#"{"type":"message_delta","delta":{"stop_reason":"tool_use"},"usage":{"output_tokens":7}}"#.to_string()),
        ] {
            events.extend(decoder.decode(name, &data).unwrap());
        }
        let text: String = StreamEvent::text_deltas(&events).collect();
        assert_eq!(text, r#"{"city": "Oslo"}"#);
        assert!(
            !events
                .iter()
                .any(|e| matches!(e, StreamEvent::ToolCallStart { .. }))
        );
        assert_eq!(
            events.last(),
            Some(&StreamEvent::Finish {
                reason: FinishReason::Stop
            })
        );

        // With the client's own tools, or from an Anthropic client, no JSON mode.
        request.tools = vec![Tool {
            name: "get".into(),
            description: None,
            parameters: json!({"type": "object"}),
        }];
        let body = messages_request_body(&request, false, 4096);
        assert_eq!(body["tools"][0]["name"], "get");
        assert!(body.get("tool_choice").is_none());
        request.tools.clear();
        request.extra_dialect = Some(DIALECT.into());
        assert!(
            messages_request_body(&request, false, 4096)
                .get("tools")
                .is_none()
        );
    }

    #[test]
    fn beta_headers_travel_beside_the_body_not_in_it() {
        let mut client = parse_messages_request(
            br#"{"model":"claude","max_tokens":10,"messages":[{"role":"user","content":"hi"}],
                "context_management":{"edits":[{"type":"clear_tool_uses_20250919"}]}}"#,
        )
        .unwrap();
        set_betas(
            &mut client.request,
            [
                "context-management-2025-06-27, interleaved-thinking-2025-05-14",
                "context-management-2025-06-27,,",
            ],
        )
        .unwrap();
        assert_eq!(
            betas(&client.request),
            [
                "context-management-2025-06-27",
                "interleaved-thinking-2025-05-14"
            ]
        );
        assert_eq!(
            betas_header(&client.request).as_deref(),
            Some("context-management-2025-06-27,interleaved-thinking-2025-05-14")
        );
        let body = messages_request_body(&client.request, false, 10);
        assert!(body.get(BETAS_FIELD).is_none(), "{body}");
        assert_eq!(
            body["context_management"],
            json!({"edits": [{"type": "clear_tool_uses_20250919"}]})
        );

        // No header, no betas; a name that is no header token is refused.
        let mut plain = client.request.clone();
        plain.extra.remove(BETAS_FIELD);
        set_betas(&mut plain, [" ", ""]).unwrap();
        assert_eq!(betas_header(&plain), None);
        let err = set_betas(&mut plain, ["ok-1, bad name"]).unwrap_err();
        assert_eq!(err.status, 400);
        assert!(err.message.contains("'bad name'"), "{}", err.message);

        // Another dialect's extra fields are not Anthropic's betas.
        let mut other = client.request.clone();
        other.extra_dialect = Some("openai".into());
        assert!(betas(&other).is_empty());
    }

    /// The typed body writes what its `Value` form writes, byte for byte.
    #[test]
    fn typed_messages_body_writes_its_value_form() {
        let mut request = ChatRequest {
            model: "claude-x".into(),
            system: Some("Be brief.".into()),
            messages: vec![
                Message {
                    role: Role::User,
                    content: vec![
                        ContentPart::text("Look \"here\"\n"),
                        ContentPart::text(""),
                        ContentPart::Image {
                            source: ImageSource::Url {
                                url: "data:image/png;base64,AAAA".into(),
                            },
                        },
                        ContentPart::Image {
                            source: ImageSource::Url {
                                url: "https://example.com/a.png".into(),
                            },
                        },
                    ],
                },
                Message {
                    role: Role::Assistant,
                    content: vec![
                        ContentPart::Thinking {
                            text: "hmm".into(),
                            signature: Some("sig".into()),
                        },
                        ContentPart::Thinking {
                            text: "unsigned".into(),
                            signature: None,
                        },
                        ContentPart::ToolCall {
                            id: "t1".into(),
                            name: "get".into(),
                            arguments: "{\"b\":1,\"a\":2}".into(),
                        },
                        ContentPart::ToolCall {
                            id: "t2".into(),
                            name: "get".into(),
                            arguments: "not json".into(),
                        },
                    ],
                },
                Message {
                    role: Role::Tool,
                    content: vec![ContentPart::ToolResult {
                        tool_call_id: "t1".into(),
                        name: None,
                        content: "42".into(),
                        is_error: true,
                    }],
                },
                Message {
                    role: Role::User,
                    content: vec![
                        ContentPart::text("and"),
                        ContentPart::ToolResult {
                            tool_call_id: "t2".into(),
                            name: None,
                            content: String::new(),
                            is_error: false,
                        },
                    ],
                },
                Message::assistant("Done."),
            ],
            tools: vec![
                Tool {
                    name: "get".into(),
                    description: Some("Get".into()),
                    parameters: json!({"type": "object", "properties": {"q": {"type": "string"}}}),
                },
                Tool {
                    name: "bare".into(),
                    description: None,
                    parameters: json!({}),
                },
            ],
            tool_choice: Some(ToolChoice::Tool { name: "get".into() }),
            extra_dialect: Some(DIALECT.into()),
            ..Default::default()
        };
        request.params.temperature = Some(0.25);
        request.params.top_k = Some(5);
        request.params.stop = vec!["\n\n".into()];
        request.extra.insert(
            "tool_choice".into(),
            json!({"type": "tool", "name": "get", "disable_parallel_tool_use": true}),
        );
        request
            .extra
            .insert("metadata".into(), json!({"user_id": "u"}));
        request.extra.insert("model".into(), json!("ignored"));
        let mut requests = vec![request.clone()];
        request.tools.clear();
        request.extra_dialect = None;
        request.system = Some(String::new());
        request.reasoning = Some(Reasoning::with_effort(ReasoningEffort::Low));
        requests.push(request);
        for request in &requests {
            for stream in [false, true] {
                let typed = messages_body(request, stream, 1024);
                let value = messages_request_body(request, stream, 1024);
                assert_eq!(
                    crate::json::to_string(&typed).ok(),
                    serde_json::to_string(&value).ok(),
                    "{request:?}"
                );
            }
        }
        let body = messages_request_body(&requests[0], false, 1024);
        assert_eq!(body["tool_choice"]["disable_parallel_tool_use"], true);
        assert_eq!(body["metadata"]["user_id"], "u");
        assert_eq!(body["model"], "claude-x");
        assert_eq!(body["messages"][0]["content"][0]["type"], "text");
        // The tool turn and the next user turn merged, results first.
        let merged = &body["messages"][2]["content"];
        assert_eq!(merged[0]["type"], "tool_result");
        assert_eq!(merged[1]["type"], "tool_result");
        assert_eq!(merged[2]["text"], "and");
    }

    #[test]
    fn client_thinking_is_a_neutral_reasoning_request() {
        let parse = |thinking: &str| {
            parse_messages_request(
                format!(r#"{{"model":"ep","max_tokens":4096,"messages":[{{"role":"user","content":"hi"}}],"thinking":{thinking}}}"#)
                    .as_bytes(),
            )
        };
        let request = parse(r#"{"type":"enabled","budget_tokens":2048}"#)
            .unwrap()
            .request;
        assert_eq!(request.reasoning, Some(Reasoning::with_budget(2048)));
        // Forwarded as sent to an Anthropic upstream.
        let body = messages_request_body(&request, false, 1024);
        assert_eq!(
            body["thinking"],
            json!({"type": "enabled", "budget_tokens": 2048})
        );
        assert_eq!(body["max_tokens"], 4096);
        let request = parse(r#"{"type":"disabled"}"#).unwrap().request;
        assert_eq!(request.reasoning, Some(Reasoning::off()));
        let request = parse(r#"{"type":"adaptive"}"#).unwrap().request;
        assert_eq!(request.reasoning, Some(Reasoning::default()));
        for bad in [
            r#""on""#,
            r#"{"type":"enabled"}"#,
            r#"{"budget_tokens":1024}"#,
        ] {
            let error = parse(bad).unwrap_err();
            assert_eq!(error.status, 400, "{bad}");
            assert!(
                error.message.contains("thinking"),
                "{bad}: {}",
                error.message
            );
        }
    }

    #[test]
    fn output_effort_sets_the_level_of_thinking() {
        let parse = |fields: &str| {
            parse_messages_request(
                format!(r#"{{"model":"ep","max_tokens":4096,"messages":[{{"role":"user","content":"hi"}}]{fields}}}"#)
                    .as_bytes(),
            )
            .unwrap()
            .request
        };
        let thinking = r#","thinking":{"type":"enabled","budget_tokens":2048}"#;
        let request = parse(&format!(r#"{thinking},"output_config":{{"effort":"max"}}"#));
        let reasoning = request.reasoning.unwrap();
        assert_eq!(reasoning.effort_level(), Some(ReasoningEffort::XHigh));
        assert_eq!(reasoning.thinking_budget(), Some(2048));
        let request = parse(&format!(r#"{thinking},"output_config":{{"effort":"low"}}"#));
        assert_eq!(
            request.reasoning.unwrap().effort_level(),
            Some(ReasoningEffort::Low)
        );
        // Without thinking, effort is no reasoning request.
        let request = parse(r#","output_config":{"effort":"high"}"#);
        assert_eq!(request.reasoning, None);
        let request = parse(r#","thinking":{"type":"disabled"},"output_config":{"effort":"high"}"#);
        assert_eq!(request.reasoning, Some(Reasoning::off()));
        // Forwarded as sent to an Anthropic upstream.
        assert_eq!(
            messages_request_body(&request, false, 1024)["output_config"],
            json!({"effort": "high"})
        );
    }

    #[test]
    fn structured_output_crosses_dialects() {
        let schema = json!({"type": "object", "properties": {"city": {"type": "string"}},
            "required": ["city"], "additionalProperties": false});
        let body = json!({"model": "ep", "max_tokens": 100,
            "messages": [{"role": "user", "content": "hi"}],
            "output_config": {"format": {"type": "json_schema", "schema": schema}}});
        let request = parse_messages_request(body.to_string().as_bytes())
            .unwrap()
            .request;
        assert_eq!(
            request.response_format,
            Some(
                json!({"type": "json_schema", "json_schema": {"name": "output", "schema": schema}})
            )
        );
        // The beta's top-level `output_format` reads the same.
        let beta = json!({"model": "ep", "max_tokens": 100,
            "messages": [{"role": "user", "content": "hi"}],
            "output_format": {"type": "json_schema", "schema": schema}});
        let beta = parse_messages_request(beta.to_string().as_bytes())
            .unwrap()
            .request;
        assert_eq!(beta.response_format, request.response_format);

        // From another dialect, a schema becomes `output_config.format`.
        let mut other = ChatRequest {
            model: "claude-x".into(),
            messages: vec![Message::user("hi")],
            response_format: Some(json!({"type": "json_schema", "json_schema": {
                "name": "place", "strict": true, "schema": schema}})),
            extra_dialect: Some("openai".into()),
            ..Default::default()
        };
        let sent = messages_request_body(&other, false, 1024);
        assert_eq!(
            sent["output_config"],
            json!({"format": {"type": "json_schema", "schema": schema}})
        );
        let typed = serde_json::to_value(messages_body(&other, false, 1024)).unwrap();
        assert_eq!(typed, sent);
        // A plain JSON answer has no structured-output form (JSON mode
        // takes a tool instead; see json_mode_answers_through_a_forced_tool).
        other.response_format = Some(json!({"type": "json_object"}));
        assert!(
            messages_request_body(&other, false, 1024)
                .get("output_config")
                .is_none()
        );

        for (bad, path) in [
            (json!({"type": "json_object"}), "output_config.format.type"),
            (
                json!({"type": "json_schema"}),
                "output_config.format.schema",
            ),
            (
                json!({"type": "json_schema", "schema": "x"}),
                "output_config.format.schema",
            ),
            (json!("json"), "output_config.format"),
        ] {
            let body = json!({"model": "ep", "max_tokens": 100,
                "messages": [{"role": "user", "content": "hi"}],
                "output_config": {"format": bad}});
            let error = parse_messages_request(body.to_string().as_bytes()).unwrap_err();
            assert_eq!(error.status, 400);
            assert!(error.message.starts_with(path), "{path}: {}", error.message);
        }
    }

    #[test]
    fn sampling_claude_refuses_beside_thinking_stays_out() {
        let mut request = ChatRequest {
            model: "claude-x".into(),
            messages: vec![Message::user("hi")],
            reasoning: Some(Reasoning::with_effort(ReasoningEffort::Low)),
            extra_dialect: Some("gemini".into()),
            ..Default::default()
        };
        request.params.temperature = Some(0.7);
        request.params.top_p = Some(0.9);
        request.params.top_k = Some(40);
        let body = messages_request_body(&request, false, 4096);
        assert_eq!(body["thinking"]["budget_tokens"], 2048);
        for key in ["temperature", "top_p", "top_k"] {
            assert!(body.get(key).is_none(), "{key} in {body}");
        }
        // What Anthropic accepts with thinking goes through.
        request.params.temperature = Some(1.0);
        request.params.top_p = Some(0.95);
        let body = messages_request_body(&request, false, 4096);
        assert_eq!(
            (body["temperature"].as_f64(), body["top_p"].as_f64()),
            (Some(1.0), Some(0.95))
        );
        // Without thinking (none asked for, or no room for it) nothing is dropped.
        for max_tokens in [None, Some(1000)] {
            request.reasoning = max_tokens
                .is_some()
                .then(|| Reasoning::with_effort(ReasoningEffort::Low));
            request.params.max_tokens = max_tokens;
            request.params.temperature = Some(0.7);
            let body = messages_request_body(&request, false, 4096);
            assert!(body.get("thinking").is_none(), "{body}");
            assert_eq!(body["temperature"], 0.7);
            assert_eq!(body["top_k"], 40);
        }
    }

    #[test]
    fn reasoning_from_other_dialects_becomes_thinking() {
        let request = |reasoning: Reasoning, max_tokens: Option<u32>| {
            let mut request = ChatRequest {
                model: "claude-x".into(),
                messages: vec![Message::user("hi")],
                reasoning: Some(reasoning),
                extra_dialect: Some("openai".into()),
                ..Default::default()
            };
            request.params.max_tokens = max_tokens;
            request
        };
        let effort = Reasoning::with_effort;
        let thinking = |body: &Value| body.get("thinking").cloned();

        // A level becomes its budget, below the default limit (the model's
        // most output) when the client set none.
        let high = request(effort(ReasoningEffort::High), None);
        let body = messages_request_body(&high, false, 64000);
        assert_eq!(
            thinking(&body),
            Some(json!({"type": "enabled", "budget_tokens": 16384}))
        );
        assert_eq!(body["max_tokens"], 64000);
        let body = messages_request_body(&high, false, 4096);
        assert_eq!(body["thinking"]["budget_tokens"], 4095);
        assert_eq!(body["max_tokens"], 4096);
        // The client's limit is kept and the budget stays below it.
        let body = messages_request_body(
            &request(effort(ReasoningEffort::High), Some(5000)),
            false,
            4096,
        );
        assert_eq!(body["max_tokens"], 5000);
        assert_eq!(body["thinking"]["budget_tokens"], 4999);
        // A limit with no room for Anthropic's minimum budget: no thinking.
        let body = messages_request_body(
            &request(effort(ReasoningEffort::Low), Some(1024)),
            false,
            4096,
        );
        assert_eq!(thinking(&body), None);
        assert_eq!(body["max_tokens"], 1024);
        // "On" without a size: medium; a small budget: the minimum; off: none.
        let body = messages_request_body(&request(Reasoning::default(), None), false, 64000);
        assert_eq!(body["thinking"]["budget_tokens"], 8192);
        let small = Reasoning::with_budget(100);
        let body = messages_request_body(&request(small, None), false, 4096);
        assert_eq!(body["thinking"]["budget_tokens"], 1024);
        for off in [Reasoning::off(), effort(ReasoningEffort::None)] {
            let body = messages_request_body(&request(off, None), false, 4096);
            assert_eq!(thinking(&body), None);
            assert_eq!(body["max_tokens"], 4096);
        }

        // Tool calls Anthropic would want signed thinking in front of.
        let mut tool_turn = request(effort(ReasoningEffort::Medium), None);
        tool_turn.messages.push(Message {
            role: Role::Assistant,
            content: vec![ContentPart::ToolCall {
                id: "t1".into(),
                name: "get".into(),
                arguments: "{}".into(),
            }],
        });
        tool_turn.messages.push(Message {
            role: Role::Tool,
            content: vec![ContentPart::ToolResult {
                tool_call_id: "t1".into(),
                name: Some("get".into()),
                content: "42".into(),
                is_error: false,
            }],
        });
        assert_eq!(
            thinking(&messages_request_body(&tool_turn, false, 64000)),
            None
        );
        tool_turn.messages[1].content.insert(
            0,
            ContentPart::Thinking {
                text: "hmm".into(),
                signature: Some("sig".into()),
            },
        );
        assert_eq!(
            thinking(&messages_request_body(&tool_turn, false, 64000)),
            Some(json!({"type": "enabled", "budget_tokens": 8192}))
        );
        // A forced tool call wins over thinking (Anthropic refuses both).
        tool_turn.tools = vec![Tool {
            name: "get".into(),
            description: None,
            parameters: json!({"type": "object"}),
        }];
        tool_turn.tool_choice = Some(ToolChoice::Required);
        assert_eq!(
            thinking(&messages_request_body(&tool_turn, false, 64000)),
            None
        );
        tool_turn.tool_choice = Some(ToolChoice::Auto);
        assert!(thinking(&messages_request_body(&tool_turn, false, 64000)).is_some());
    }

    #[test]
    fn typed_message_reading_matches_the_value_reading() {
        // Answers the typed views must read, each exactly as the `Value`
        // reading does.
        let covered = [
            r#"{"id":"msg_1","type":"message","role":"assistant","model":"claude-x","content":[{"type":"text","text":"Hi \"you\"\n","citations":null}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":10,"cache_creation_input_tokens":2,"cache_read_input_tokens":3,"output_tokens":4,"service_tier":"standard","cache_creation":{"ephemeral_5m_input_tokens":0}}}"#,
            r#"{"type":"message","content":[{"type":"thinking","thinking":"hmm","signature":"sig"},{"type":"redacted_thinking","data":"xx"},{"type":"tool_use","id":"toolu_1","name":"get","input":{"b":[1,2],"a":"x"}},{"type":"tool_use","id":"t2","name":"n","input":null},{"type":"tool_use","id":"t3","name":"m"},{"type":"server_tool_use","id":"s","name":"web_search","input":{"query":"q"}},{"type":"web_search_tool_result","tool_use_id":"s","content":[{"type":"web_search_result","url":"u"}]}],"stop_reason":"tool_use","usage":{"input_tokens":99999999999}}"#,
            r#"{"content":[],"stop_reason":null,"usage":null}"#,
            r#"  {"content":[{"type":"text"},{"text":"untyped"}],"stop_reason":"max_tokens"}"#,
        ];
        for body in covered {
            let typed = wire::message(body.as_bytes())
                .unwrap_or_else(|| panic!("typed views should cover {body}"));
            assert_eq!(Ok(typed), parse_message_value(body.as_bytes()), "{body}");
        }
        // Bodies left to the `Value` reading.
        let fallback = [
            r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
            r#"{"type":"message","content":"text"}"#,
            r#"{"type":"message"}"#,
            r#"{"content":[{"type":"text","text":5}]}"#,
            r#"{"content":["x"]}"#,
            r#"{"content":[],"usage":{"input_tokens":-1}}"#,
            "{",
        ];
        for body in fallback {
            assert!(wire::message(body.as_bytes()).is_none(), "{body}");
            assert_eq!(
                parse_message(body.as_bytes()),
                parse_message_value(body.as_bytes()),
                "{body}"
            );
        }
    }
    use crate::SamplingParams;

    fn parse(body: Value) -> ClientMessagesRequest {
        parse_messages_request(body.to_string().as_bytes()).expect("valid request")
    }

    fn parse_err(body: &str) -> ProviderError {
        parse_messages_request(body.as_bytes()).expect_err("invalid request")
    }

    fn names(events: &[(&'static str, Value)]) -> Vec<&'static str> {
        events.iter().map(|(name, _)| *name).collect()
    }

    // --- client side: request parsing -----------------------------------------

    #[test]
    fn client_request_with_system_string_and_sampling() {
        let parsed = parse(json!({
            "model": "claude-endpoint",
            "max_tokens": 1024,
            "system": "Be brief.",
            "messages": [{"role": "user", "content": "Hello"}],
            "temperature": 0.5,
            "top_p": 0.9,
            "top_k": 40,
            "stop_sequences": ["END", "STOP"],
            "stream": true,
            "metadata": {"user_id": "u-1"},
            "thinking": {"type": "enabled", "budget_tokens": 2048},
        }));
        assert_eq!(parsed.endpoint, "claude-endpoint");
        assert!(parsed.stream);
        let request = parsed.request;
        assert_eq!(request.model, "");
        assert_eq!(request.system.as_deref(), Some("Be brief."));
        assert_eq!(request.messages, vec![Message::user("Hello")]);
        assert_eq!(request.params.max_tokens, Some(1024));
        assert_eq!(request.params.temperature, Some(0.5));
        assert_eq!(request.params.top_p, Some(0.9));
        assert_eq!(request.params.top_k, Some(40));
        assert_eq!(
            request.params.stop,
            vec!["END".to_string(), "STOP".to_string()]
        );
        assert_eq!(request.extra_dialect.as_deref(), Some("anthropic"));
        assert_eq!(request.extra.len(), 2);
        assert_eq!(request.extra["metadata"], json!({"user_id": "u-1"}));
        assert_eq!(
            request.extra["thinking"],
            json!({"type": "enabled", "budget_tokens": 2048})
        );
    }

    #[test]
    fn client_request_with_system_blocks_and_text_blocks() {
        let parsed = parse(json!({
            "model": "m",
            "max_tokens": 10,
            "system": [
                {"type": "text", "text": "You are a pirate."},
                {"type": "text", "text": "Answer in English.", "cache_control": {"type": "ephemeral"}},
            ],
            "messages": [
                {"role": "user", "content": [{"type": "text", "text": "Hi"}, {"type": "text", "text": "there"}]},
                {"role": "assistant", "content": "Arr"},
            ],
        }));
        assert!(!parsed.stream);
        let request = parsed.request;
        assert_eq!(
            request.system.as_deref(),
            Some("You are a pirate.\nAnswer in English.")
        );
        assert_eq!(
            request.messages,
            vec![
                Message {
                    role: Role::User,
                    content: vec![ContentPart::text("Hi"), ContentPart::text("there")]
                },
                Message::assistant("Arr"),
            ]
        );
        assert!(request.extra.is_empty());
    }

    #[test]
    fn client_request_with_images() {
        let parsed = parse(json!({
            "model": "m",
            "max_tokens": 10,
            "messages": [{"role": "user", "content": [
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}},
                {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
                {"type": "text", "text": "Compare these."},
            ]}],
        }));
        assert_eq!(
            parsed.request.messages[0].content,
            vec![
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
                ContentPart::text("Compare these."),
            ]
        );

        let err = parse_err(
            r#"{"model":"m","max_tokens":1,"messages":[{"role":"user","content":[
                {"type":"image","source":{"type":"file","file_id":"file_1"}}]}]}"#,
        );
        assert_eq!(err.kind, ErrorKind::InvalidRequest);
        assert_eq!(err.status, 400);
        assert!(
            err.message.starts_with("messages.0.content.0.source.type:"),
            "{}",
            err.message
        );
        assert!(err.message.contains("'file'"), "{}", err.message);
    }

    #[test]
    fn client_request_with_tool_use_and_tool_result_turns() {
        let parsed = parse(json!({
            "model": "m",
            "max_tokens": 100,
            "tools": [{
                "name": "get_weather",
                "description": "Weather of a city",
                "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
            }],
            "tool_choice": {"type": "any"},
            "messages": [
                {"role": "user", "content": "Weather in Paris and Rome?"},
                {"role": "assistant", "content": [
                    {"type": "thinking", "thinking": "Two cities.", "signature": "sig-1"},
                    {"type": "text", "text": "Checking."},
                    {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}},
                    {"type": "tool_use", "id": "toolu_2", "name": "get_weather", "input": {"city": "Rome"}},
                ]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_1", "content": "18C"},
                    {"type": "tool_result", "tool_use_id": "toolu_2", "is_error": true,
                     "content": [{"type": "text", "text": "service down"}, {"type": "text", "text": "retry later"}]},
                    {"type": "text", "text": "Also, what about tomorrow?"},
                ]},
            ],
        }));
        let request = parsed.request;
        assert_eq!(
            request.tools,
            vec![Tool {
                name: "get_weather".into(),
                description: Some("Weather of a city".into()),
                parameters: json!({"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}),
            }]
        );
        assert_eq!(request.tool_choice, Some(ToolChoice::Required));
        assert!(request.extra.is_empty());
        assert_eq!(
            request.messages,
            vec![
                Message::user("Weather in Paris and Rome?"),
                Message {
                    role: Role::Assistant,
                    content: vec![
                        ContentPart::Thinking {
                            text: "Two cities.".into(),
                            signature: Some("sig-1".into())
                        },
                        ContentPart::text("Checking."),
                        ContentPart::ToolCall {
                            id: "toolu_1".into(),
                            name: "get_weather".into(),
                            arguments: r#"{"city":"Paris"}"#.into(),
                        },
                        ContentPart::ToolCall {
                            id: "toolu_2".into(),
                            name: "get_weather".into(),
                            arguments: r#"{"city":"Rome"}"#.into(),
                        },
                    ],
                },
                Message {
                    role: Role::Tool,
                    content: vec![
                        ContentPart::ToolResult {
                            tool_call_id: "toolu_1".into(),
                            name: None,
                            content: "18C".into(),
                            is_error: false,
                        },
                        ContentPart::ToolResult {
                            tool_call_id: "toolu_2".into(),
                            name: None,
                            content: "service down\nretry later".into(),
                            is_error: true,
                        },
                    ],
                },
                Message::user("Also, what about tomorrow?"),
            ]
        );
    }

    #[test]
    fn client_user_turn_split_preserves_block_order() {
        let parsed = parse(json!({
            "model": "m",
            "max_tokens": 5,
            "messages": [{"role": "user", "content": [
                {"type": "text", "text": "before"},
                {"type": "tool_result", "tool_use_id": "a"},
                {"type": "text", "text": "after"},
            ]}],
        }));
        let roles: Vec<Role> = parsed.request.messages.iter().map(|m| m.role).collect();
        assert_eq!(roles, vec![Role::User, Role::Tool, Role::User]);
        assert_eq!(
            parsed.request.messages[1].content,
            vec![ContentPart::ToolResult {
                tool_call_id: "a".into(),
                name: None,
                content: String::new(),
                is_error: false
            }]
        );
    }

    #[test]
    fn client_tool_choice_variants() {
        let choice = |tool_choice: Value| {
            parse(
                json!({"model": "m", "max_tokens": 1, "messages": [], "tool_choice": tool_choice}),
            )
            .request
        };
        assert_eq!(
            choice(json!({"type": "auto"})).tool_choice,
            Some(ToolChoice::Auto)
        );
        assert_eq!(
            choice(json!({"type": "none"})).tool_choice,
            Some(ToolChoice::None)
        );
        assert_eq!(
            choice(json!({"type": "tool", "name": "lookup"})).tool_choice,
            Some(ToolChoice::Tool {
                name: "lookup".into()
            })
        );
        // The option the neutral choice cannot carry is kept for an Anthropic upstream.
        let request = choice(json!({"type": "auto", "disable_parallel_tool_use": true}));
        assert_eq!(request.tool_choice, Some(ToolChoice::Auto));
        assert_eq!(
            request.extra["tool_choice"],
            json!({"type": "auto", "disable_parallel_tool_use": true})
        );

        let err = parse_err(
            r#"{"model":"m","max_tokens":1,"messages":[],"tool_choice":{"type":"tool"}}"#,
        );
        assert_eq!(err.message, "tool_choice.name: Field required");
        let err = parse_err(
            r#"{"model":"m","max_tokens":1,"messages":[],"tool_choice":{"type":"maybe"}}"#,
        );
        assert!(
            err.message.starts_with("tool_choice.type:"),
            "{}",
            err.message
        );
    }

    #[test]
    fn client_request_errors_name_the_field() {
        let cases = [
            (
                r#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#,
                "max_tokens: Field required",
            ),
            (r#"{"max_tokens":5,"messages":[]}"#, "model: Field required"),
            (
                r#"{"model":"m","max_tokens":5}"#,
                "messages: Field required",
            ),
            (
                r#"{"model":"m","max_tokens":-1,"messages":[]}"#,
                "max_tokens: Input should be a non-negative integer",
            ),
            (
                r#"{"model":"m","max_tokens":"lots","messages":[]}"#,
                "max_tokens: Input should be a non-negative integer",
            ),
            (
                r#"{"model":"m","max_tokens":5,"messages":{}}"#,
                "messages: Input should be an array, got an object",
            ),
            (
                r#"{"model":"m","max_tokens":5,"messages":[{"role":"tool","content":"x"}]}"#,
                "messages.0.role: ",
            ),
            (
                r#"{"model":"m","max_tokens":5,"messages":[{"role":"user"}]}"#,
                "messages.0.content: Field required",
            ),
            (
                r#"{"model":"m","max_tokens":5,"messages":[{"role":"user","content":[{"type":"text"}]}]}"#,
                "messages.0.content.0.text: Field required",
            ),
            (
                r#"{"model":"m","max_tokens":5,"messages":[{"role":"user","content":[{"type":"document","source":{}}]}]}"#,
                "messages.0.content.0.type: content block type 'document' is not supported",
            ),
            (
                r#"{"model":"m","max_tokens":5,"messages":[{"role":"user","content":[{"type":"tool_use","id":"a","name":"b","input":{}}]}]}"#,
                "messages.0.content.0: tool_use blocks are only allowed in assistant turns",
            ),
            (
                r#"{"model":"m","max_tokens":5,"messages":[],"tools":[{"name":"t"}]}"#,
                "tools.0.input_schema: Field required",
            ),
            (
                r#"{"model":"m","max_tokens":5,"messages":[],"tools":[{"type":"web_search_20250305","name":"web_search"}]}"#,
                "tools.0.type: server tool 'web_search_20250305' is not supported",
            ),
            (
                r#"{"model":"m","max_tokens":5,"messages":[],"stream":"yes"}"#,
                "stream: Input should be a boolean",
            ),
            (
                r#"{"model":"m","max_tokens":5,"messages":[],"system":[{"type":"image"}]}"#,
                "system.0.type: ",
            ),
            (r#"[1,2]"#, "request body must be a JSON object"),
            (r#"{"model": "m", "#, "request body is not valid JSON"),
            ("", "request body is not valid JSON"),
        ];
        for (body, expected) in cases {
            let err = parse_err(body);
            assert_eq!(err.kind, ErrorKind::InvalidRequest, "{body}");
            assert_eq!(err.status, 400, "{body}");
            assert!(
                err.message.starts_with(expected),
                "body {body}: got {:?}, want prefix {expected:?}",
                err.message
            );
        }
    }

    #[test]
    fn client_system_turns_join_the_system_prompt_and_max_tokens_zero_is_valid() {
        let parsed = parse(json!({
            "model": "m",
            "max_tokens": 0,
            "system": "Top.",
            "messages": [
                {"role": "system", "content": "Early."},
                {"role": "user", "content": "Hi"},
                {"role": "system", "content": [{"type": "text", "text": "Tools changed."}]},
                {"role": "assistant", "content": "Hello"},
            ],
        }));
        let request = parsed.request;
        assert_eq!(request.params.max_tokens, Some(0));
        assert_eq!(
            request.system.as_deref(),
            Some("Top.\nEarly.\nTools changed.")
        );
        assert_eq!(
            request.messages,
            vec![Message::user("Hi"), Message::assistant("Hello")]
        );

        let err = parse_err(
            r#"{"model":"m","max_tokens":1,"messages":[{"role":"system","content":[{"type":"image"}]}]}"#,
        );
        assert!(
            err.message.starts_with("messages.0.content.0.type:"),
            "{}",
            err.message
        );
    }

    #[test]
    fn client_redacted_thinking_is_dropped() {
        let parsed = parse(json!({
            "model": "m",
            "max_tokens": 5,
            "messages": [{"role": "assistant", "content": [
                {"type": "redacted_thinking", "data": "EmwKAhgBEgy"},
                {"type": "text", "text": "ok"},
            ]}],
        }));
        assert_eq!(parsed.request.messages, vec![Message::assistant("ok")]);
    }

    // --- client side: answers --------------------------------------------------

    #[test]
    fn message_body_with_text_tool_use_and_thinking() {
        let response = ChatResponse {
            id: "chatcmpl-42".into(),
            model: "gpt-4o-2024-08-06".into(),
            content: vec![
                ContentPart::Thinking {
                    text: "Let me see.".into(),
                    signature: None,
                },
                ContentPart::text("Looking it up."),
                ContentPart::ToolCall {
                    id: "call_1".into(),
                    name: "lookup".into(),
                    arguments: r#"{"q":"rust"}"#.into(),
                },
                ContentPart::ToolCall {
                    id: "call_2".into(),
                    name: "lookup".into(),
                    arguments: "{not json".into(),
                },
            ],
            finish_reason: FinishReason::ToolCalls,
            usage: Usage {
                input_tokens: 120,
                output_tokens: 30,
                cached_input_tokens: Some(100),
            },
            raw: None,
        };
        assert_eq!(
            message_body(&response, "my-endpoint"),
            json!({
                "id": "msg_chatcmpl-42",
                "type": "message",
                "role": "assistant",
                "model": "my-endpoint",
                "content": [
                    {"type": "thinking", "thinking": "Let me see.", "signature": ""},
                    {"type": "text", "text": "Looking it up."},
                    {"type": "tool_use", "id": "call_1", "name": "lookup", "input": {"q": "rust"}},
                    {"type": "tool_use", "id": "call_2", "name": "lookup", "input": {}},
                ],
                "stop_reason": "tool_use",
                "stop_sequence": null,
                "usage": {"input_tokens": 20, "output_tokens": 30, "cache_read_input_tokens": 100},
            })
        );
    }

    #[test]
    fn message_body_stop_reasons_and_ids() {
        let mut response = ChatResponse {
            id: "msg_abc".into(),
            content: vec![ContentPart::text("Hi")],
            usage: Usage {
                input_tokens: 5,
                output_tokens: 1,
                cached_input_tokens: None,
            },
            ..Default::default()
        };
        let body = message_body(&response, "m");
        assert_eq!(body["id"], "msg_abc");
        assert_eq!(body["stop_reason"], "end_turn");
        assert_eq!(
            body["usage"],
            json!({"input_tokens": 5, "output_tokens": 1})
        );

        response.finish_reason = FinishReason::Length;
        assert_eq!(message_body(&response, "m")["stop_reason"], "max_tokens");
        response.finish_reason = FinishReason::ContentFilter;
        assert_eq!(message_body(&response, "m")["stop_reason"], "refusal");

        // An upstream that ends a tool-calling turn with a plain stop (Gemini).
        response.finish_reason = FinishReason::Stop;
        response.id = String::new();
        response.content.push(ContentPart::ToolCall {
            id: String::new(),
            name: "f".into(),
            arguments: String::new(),
        });
        let body = message_body(&response, "m");
        assert_eq!(body["stop_reason"], "tool_use");
        let id = body["id"].as_str().unwrap();
        assert!(id.starts_with("msg_") && id.len() > 4, "{id}");
        let tool_id = body["content"][1]["id"].as_str().unwrap();
        assert!(
            tool_id.starts_with("toolu_") && tool_id.len() > 6,
            "{tool_id}"
        );
        assert_eq!(body["content"][1]["input"], json!({}));
        // Made-up ids are unique: clients echo tool ids back across turns.
        let again = message_body(&response, "m");
        assert_ne!(again["id"], body["id"]);
        assert_ne!(again["content"][1]["id"], body["content"][1]["id"]);
    }

    #[test]
    fn error_body_maps_kinds() {
        let cases = [
            (ErrorKind::InvalidRequest, "invalid_request_error"),
            (ErrorKind::Authentication, "authentication_error"),
            (ErrorKind::Permission, "permission_error"),
            (ErrorKind::NotFound, "not_found_error"),
            (ErrorKind::RateLimited, "rate_limit_error"),
            (ErrorKind::Overloaded, "overloaded_error"),
            (ErrorKind::Upstream, "api_error"),
            (ErrorKind::Internal, "api_error"),
        ];
        for (kind, expected) in cases {
            let error = ProviderError::new(kind, "boom");
            let body = error_body(&error);
            let status = error_status(&error);
            assert_eq!(
                status,
                if kind == ErrorKind::Overloaded {
                    529
                } else {
                    kind.default_status()
                }
            );
            assert_eq!(
                body,
                json!({"type": "error", "error": {"type": expected, "message": "boom"}})
            );
        }
    }

    // --- client side: SSE encoding ----------------------------------------------

    #[test]
    fn encoder_text_only_sequence() {
        let mut encoder = EventEncoder::new("msg_1".into(), "my-endpoint".into());
        let mut events = Vec::new();
        for event in [
            StreamEvent::Start {
                id: "chatcmpl-9".into(),
                model: "gpt-4o".into(),
            },
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
                    input_tokens: 12,
                    output_tokens: 2,
                    cached_input_tokens: None,
                },
            },
        ] {
            events.extend(encoder.encode(&event));
        }
        events.extend(encoder.finish());
        let expected: Vec<(&str, Value)> = vec![
            (
                "message_start",
                json!({"type": "message_start", "message": {
                    "id": "msg_1", "type": "message", "role": "assistant", "model": "my-endpoint",
                    "content": [], "stop_reason": null, "stop_sequence": null,
                    "usage": {"input_tokens": 0, "output_tokens": 0},
                }}),
            ),
            ("ping", json!({"type": "ping"})),
            (
                "content_block_start",
                json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
            ),
            (
                "content_block_delta",
                json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hel"}}),
            ),
            (
                "content_block_delta",
                json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "lo"}}),
            ),
            (
                "content_block_stop",
                json!({"type": "content_block_stop", "index": 0}),
            ),
            (
                "message_delta",
                json!({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": null},
                       "usage": {"input_tokens": 12, "output_tokens": 2}}),
            ),
            ("message_stop", json!({"type": "message_stop"})),
        ];
        assert_eq!(events, expected);
        assert!(encoder.finish().is_empty());
        assert!(
            encoder
                .encode(&StreamEvent::TextDelta {
                    text: "late".into()
                })
                .is_empty()
        );
    }

    #[test]
    fn encoder_text_and_two_tool_calls() {
        let mut encoder = EventEncoder::new("msg_2".into(), "ep".into());
        let mut events = Vec::new();
        // Usage known before Start (some upstreams) goes into message_start.
        events.extend(encoder.encode(&StreamEvent::Usage {
            usage: Usage {
                input_tokens: 50,
                output_tokens: 0,
                cached_input_tokens: Some(40),
            },
        }));
        assert!(events.is_empty());
        for event in [
            StreamEvent::Start {
                id: String::new(),
                model: String::new(),
            },
            StreamEvent::TextDelta {
                text: "Let me check.".into(),
            },
            StreamEvent::ToolCallStart {
                index: 0,
                id: "call_a".into(),
                name: "weather".into(),
            },
            StreamEvent::ToolCallDelta {
                index: 0,
                arguments: r#"{"city":"#.into(),
            },
            StreamEvent::ToolCallDelta {
                index: 0,
                arguments: r#""Paris"}"#.into(),
            },
            StreamEvent::ToolCallStart {
                index: 1,
                id: "call_b".into(),
                name: "time".into(),
            },
            StreamEvent::ToolCallDelta {
                index: 1,
                arguments: String::new(),
            },
            StreamEvent::ToolCallDelta {
                index: 1,
                arguments: "{}".into(),
            },
            StreamEvent::ToolCallDelta {
                index: 7,
                arguments: "{\"orphan\":1}".into(),
            },
            StreamEvent::Finish {
                reason: FinishReason::ToolCalls,
            },
            StreamEvent::Usage {
                usage: Usage {
                    input_tokens: 50,
                    output_tokens: 25,
                    cached_input_tokens: Some(40),
                },
            },
        ] {
            events.extend(encoder.encode(&event));
        }
        events.extend(encoder.finish());

        assert_eq!(
            names(&events),
            vec![
                "message_start",
                "ping",
                "content_block_start",
                "content_block_delta",
                "content_block_stop",
                "content_block_start",
                "content_block_delta",
                "content_block_delta",
                "content_block_stop",
                "content_block_start",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop",
            ]
        );
        assert_eq!(
            events[0].1["message"]["usage"],
            json!({"input_tokens": 10, "output_tokens": 0, "cache_read_input_tokens": 40})
        );
        let indexes: Vec<u64> = events[2..12]
            .iter()
            .map(|(_, data)| data["index"].as_u64().unwrap())
            .collect();
        assert_eq!(indexes, vec![0, 0, 0, 1, 1, 1, 1, 2, 2, 2]);
        assert_eq!(
            events[5].1,
            json!({"type": "content_block_start", "index": 1,
                   "content_block": {"type": "tool_use", "id": "call_a", "name": "weather", "input": {}}})
        );
        assert_eq!(
            events[7].1,
            json!({"type": "content_block_delta", "index": 1,
                   "delta": {"type": "input_json_delta", "partial_json": "\"Paris\"}"}})
        );
        assert_eq!(events[9].1["content_block"]["id"], "call_b");
        assert_eq!(events[10].1["delta"]["partial_json"], "{}");
        assert_eq!(
            events[12].1,
            json!({"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": null},
                   "usage": {"input_tokens": 10, "output_tokens": 25, "cache_read_input_tokens": 40}})
        );
    }

    #[test]
    fn encoder_finish_without_start() {
        let mut encoder = EventEncoder::new("msg_3".into(), "ep".into());
        let events = encoder.finish();
        assert_eq!(
            names(&events),
            vec!["message_start", "ping", "message_delta", "message_stop"]
        );
        assert_eq!(events[0].1["message"]["id"], "msg_3");
        assert_eq!(events[2].1["delta"]["stop_reason"], "end_turn");
        assert_eq!(
            events[2].1["usage"],
            json!({"input_tokens": 0, "output_tokens": 0})
        );
        assert!(encoder.finish().is_empty());
    }

    #[test]
    fn encoder_opens_message_lazily_and_switches_thinking_to_text() {
        let mut encoder = EventEncoder::new(String::new(), "ep".into());
        let mut events = encoder.encode(&StreamEvent::ThinkingDelta { text: "hmm".into() });
        events.extend(encoder.encode(&StreamEvent::TextDelta {
            text: "Answer".into(),
        }));
        // A late Start does not restart the message.
        events.extend(encoder.encode(&StreamEvent::Start {
            id: "x".into(),
            model: "y".into(),
        }));
        events.extend(encoder.encode(&StreamEvent::Finish {
            reason: FinishReason::Length,
        }));
        events.extend(encoder.finish());
        assert_eq!(
            names(&events),
            vec![
                "message_start",
                "ping",
                "content_block_start",
                "content_block_delta",
                "content_block_stop",
                "content_block_start",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop",
            ]
        );
        assert!(
            events[0].1["message"]["id"]
                .as_str()
                .unwrap()
                .starts_with("msg_")
        );
        assert_eq!(
            events[2].1["content_block"],
            json!({"type": "thinking", "thinking": "", "signature": ""})
        );
        assert_eq!(
            events[3].1["delta"],
            json!({"type": "thinking_delta", "thinking": "hmm"})
        );
        assert_eq!(events[5].1["index"], 1);
        assert_eq!(events[8].1["delta"]["stop_reason"], "max_tokens");
    }

    #[test]
    fn encoder_ends_thinking_at_an_empty_signature() {
        // Gemini's thought summaries, then a call signed for itself: the
        // signature is a thinking block of its own, as in a whole answer.
        let mut encoder = EventEncoder::new("msg_4".into(), "ep".into());
        let mut events = Vec::new();
        for event in [
            StreamEvent::ThinkingDelta {
                text: "Plan.".into(),
            },
            StreamEvent::ThinkingSignature {
                signature: String::new(),
            },
            StreamEvent::ThinkingSignature {
                signature: "c2ln".into(),
            },
            StreamEvent::ToolCallStart {
                index: 0,
                id: "call_1".into(),
                name: "f".into(),
            },
            StreamEvent::ToolCallDelta {
                index: 0,
                arguments: "{}".into(),
            },
        ] {
            events.extend(encoder.encode(&event));
        }
        events.extend(encoder.finish());
        let content = &accumulate(&events)["content"];
        assert_eq!(
            content[0],
            json!({"type": "thinking", "thinking": "Plan.", "signature": ""})
        );
        assert_eq!(
            content[1],
            json!({"type": "thinking", "thinking": "", "signature": "c2ln"})
        );
        assert_eq!(content[2]["type"], "tool_use");
    }

    /// Rebuilds a message from SSE events the way the official SDKs accumulate
    /// them (blocks appended on start, deltas applied by index).
    fn accumulate(events: &[(&'static str, Value)]) -> Value {
        let mut message = Value::Null;
        let mut json_bufs: Vec<String> = Vec::new();
        for (name, data) in events {
            assert_eq!(data["type"], *name, "event name matches data type");
            match *name {
                "message_start" => message = data["message"].clone(),
                "content_block_start" => {
                    let content = message["content"].as_array_mut().unwrap();
                    assert_eq!(
                        data["index"].as_u64().unwrap() as usize,
                        content.len(),
                        "blocks start in order"
                    );
                    content.push(data["content_block"].clone());
                    json_bufs.push(String::new());
                }
                "content_block_delta" => {
                    let index = data["index"].as_u64().unwrap() as usize;
                    let block = &mut message["content"][index];
                    let delta = &data["delta"];
                    match delta["type"].as_str().unwrap() {
                        "text_delta" => {
                            block["text"] = json!(format!(
                                "{}{}",
                                block["text"].as_str().unwrap(),
                                delta["text"].as_str().unwrap()
                            ))
                        }
                        "input_json_delta" => {
                            json_bufs[index].push_str(delta["partial_json"].as_str().unwrap())
                        }
                        // As the Anthropic SDKs accumulate them.
                        "thinking_delta" => {
                            block["thinking"] = json!(format!(
                                "{}{}",
                                block["thinking"].as_str().unwrap(),
                                delta["thinking"].as_str().unwrap()
                            ))
                        }
                        "signature_delta" => block["signature"] = delta["signature"].clone(),
                        other => panic!("unexpected delta {other}"),
                    }
                }
                "content_block_stop" => {
                    let index = data["index"].as_u64().unwrap() as usize;
                    if message["content"][index]["type"] == "tool_use"
                        && !json_bufs[index].is_empty()
                    {
                        message["content"][index]["input"] =
                            serde_json::from_str(&json_bufs[index]).unwrap();
                    }
                }
                "message_delta" => {
                    message["stop_reason"] = data["delta"]["stop_reason"].clone();
                    message["usage"] = data["usage"].clone();
                }
                "message_stop" | "ping" => {}
                other => panic!("unexpected event {other}"),
            }
        }
        message
    }

    #[test]
    fn encoded_stream_accumulates_to_the_non_streamed_body() {
        let response = ChatResponse {
            id: "msg_same".into(),
            model: "upstream".into(),
            content: vec![
                ContentPart::Thinking {
                    text: "Two tools.".into(),
                    signature: Some("sig-A".into()),
                },
                ContentPart::Thinking {
                    text: "Then text.".into(),
                    signature: Some("sig-B".into()),
                },
                ContentPart::text("Sure."),
                ContentPart::ToolCall {
                    id: "call_1".into(),
                    name: "a".into(),
                    arguments: r#"{"x":[1,2]}"#.into(),
                },
                ContentPart::ToolCall {
                    id: "call_2".into(),
                    name: "b".into(),
                    arguments: r#"{"y":"z"}"#.into(),
                },
            ],
            finish_reason: FinishReason::ToolCalls,
            usage: Usage {
                input_tokens: 9,
                output_tokens: 4,
                cached_input_tokens: None,
            },
            raw: None,
        };
        let mut encoder = EventEncoder::new("msg_same".into(), "ep".into());
        let mut events = encoder.encode(&StreamEvent::Start {
            id: String::new(),
            model: String::new(),
        });
        for event in [
            // Two signed thinking blocks back to back stay two blocks.
            StreamEvent::ThinkingDelta {
                text: "Two ".into(),
            },
            StreamEvent::ThinkingDelta {
                text: "tools.".into(),
            },
            StreamEvent::ThinkingSignature {
                signature: "sig-A".into(),
            },
            StreamEvent::ThinkingDelta {
                text: "Then text.".into(),
            },
            StreamEvent::ThinkingSignature {
                signature: "sig-B".into(),
            },
            StreamEvent::TextDelta { text: "Su".into() },
            StreamEvent::TextDelta { text: "re.".into() },
            StreamEvent::ToolCallStart {
                index: 0,
                id: "call_1".into(),
                name: "a".into(),
            },
            StreamEvent::ToolCallDelta {
                index: 0,
                arguments: r#"{"x":[1,"#.into(),
            },
            StreamEvent::ToolCallDelta {
                index: 0,
                arguments: "2]}".into(),
            },
            StreamEvent::ToolCallStart {
                index: 1,
                id: "call_2".into(),
                name: "b".into(),
            },
            StreamEvent::ToolCallDelta {
                index: 1,
                arguments: r#"{"y":"z"}"#.into(),
            },
            StreamEvent::Usage {
                usage: response.usage,
            },
            StreamEvent::Finish {
                reason: FinishReason::ToolCalls,
            },
        ] {
            events.extend(encoder.encode(&event));
        }
        events.extend(encoder.finish());
        assert_eq!(accumulate(&events), message_body(&response, "ep"));
    }

    // --- provider side: request body --------------------------------------------

    #[test]
    fn provider_body_merges_turns_and_maps_tool_results_and_images() {
        let request = ChatRequest {
            model: "claude-sonnet-4-5".into(),
            system: Some("Be helpful.".into()),
            messages: vec![
                Message::user("First."),
                Message::user("Second."),
                Message {
                    role: Role::User,
                    content: vec![
                        ContentPart::Image {
                            source: ImageSource::Base64 {
                                media_type: "image/jpeg".into(),
                                data: "/9j/4AAQ".into(),
                            },
                        },
                        ContentPart::Image {
                            source: ImageSource::Url {
                                url: "https://example.com/a.png".into(),
                            },
                        },
                        ContentPart::Image {
                            source: ImageSource::Url {
                                url: "data:image/gif;base64,R0lGOD".into(),
                            },
                        },
                    ],
                },
                Message {
                    role: Role::Assistant,
                    content: vec![
                        ContentPart::Thinking {
                            text: "unsigned reasoning".into(),
                            signature: None,
                        },
                        ContentPart::text(""),
                        ContentPart::ToolCall {
                            id: "call_1".into(),
                            name: "f".into(),
                            arguments: r#"{"a":1}"#.into(),
                        },
                        ContentPart::ToolCall {
                            id: "call_2".into(),
                            name: "g".into(),
                            arguments: String::new(),
                        },
                    ],
                },
                Message {
                    role: Role::Tool,
                    content: vec![ContentPart::ToolResult {
                        tool_call_id: "call_1".into(),
                        name: Some("f".into()),
                        content: "one".into(),
                        is_error: false,
                    }],
                },
                Message {
                    role: Role::Tool,
                    content: vec![ContentPart::ToolResult {
                        tool_call_id: "call_2".into(),
                        name: None,
                        content: "failed".into(),
                        is_error: true,
                    }],
                },
                Message::user("Thanks."),
                Message {
                    role: Role::Assistant,
                    content: vec![],
                },
            ],
            params: SamplingParams {
                temperature: Some(0.2),
                seed: Some(7),
                stop: vec!["\n\nHuman:".into()],
                ..Default::default()
            },
            // Not the Anthropic dialect: never forwarded.
            extra: serde_json::from_value(json!({"logprobs": true})).unwrap(),
            extra_dialect: Some("openai".into()),
            tool_choice: Some(ToolChoice::Auto),
            ..Default::default()
        };
        let body = messages_request_body(&request, true, 4096);
        assert_eq!(
            body,
            json!({
                "model": "claude-sonnet-4-5",
                "max_tokens": 4096,
                "system": "Be helpful.",
                "messages": [
                    {"role": "user", "content": [
                        {"type": "text", "text": "First."},
                        {"type": "text", "text": "Second."},
                        {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": "/9j/4AAQ"}},
                        {"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}},
                        {"type": "image", "source": {"type": "base64", "media_type": "image/gif", "data": "R0lGOD"}},
                    ]},
                    {"role": "assistant", "content": [
                        {"type": "tool_use", "id": "call_1", "name": "f", "input": {"a": 1}},
                        {"type": "tool_use", "id": "call_2", "name": "g", "input": {}},
                    ]},
                    {"role": "user", "content": [
                        {"type": "tool_result", "tool_use_id": "call_1", "content": "one"},
                        {"type": "tool_result", "tool_use_id": "call_2", "content": "failed", "is_error": true},
                        {"type": "text", "text": "Thanks."},
                    ]},
                ],
                "temperature": 0.2,
                "stop_sequences": ["\n\nHuman:"],
                "stream": true,
            })
        );
    }

    #[test]
    fn provider_body_puts_tool_results_before_text_in_a_merged_turn() {
        let request = ChatRequest {
            model: "m".into(),
            messages: vec![
                Message {
                    role: Role::Assistant,
                    content: vec![ContentPart::ToolCall {
                        id: "t".into(),
                        name: "f".into(),
                        arguments: "{}".into(),
                    }],
                },
                Message::user("note first"),
                Message {
                    role: Role::Tool,
                    content: vec![ContentPart::ToolResult {
                        tool_call_id: "t".into(),
                        name: None,
                        content: String::new(),
                        is_error: false,
                    }],
                },
            ],
            ..Default::default()
        };
        let body = messages_request_body(&request, false, 100);
        assert_eq!(
            body["messages"][1],
            json!({"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "t"},
                {"type": "text", "text": "note first"},
            ]})
        );
        assert!(body.get("stream").is_none());
    }

    #[test]
    fn provider_body_tools_choice_and_anthropic_passthrough() {
        let mut request = ChatRequest {
            model: "claude-haiku".into(),
            messages: vec![Message {
                role: Role::Assistant,
                content: vec![
                    ContentPart::Thinking {
                        text: "signed".into(),
                        signature: Some("sig".into()),
                    },
                    ContentPart::text("Hi"),
                ],
            }],
            tools: vec![
                Tool {
                    name: "a".into(),
                    description: Some("does a".into()),
                    parameters: json!({"type": "object"}),
                },
                Tool {
                    name: "b".into(),
                    description: None,
                    parameters: json!({}),
                },
            ],
            tool_choice: Some(ToolChoice::Tool { name: "a".into() }),
            params: SamplingParams {
                max_tokens: Some(321),
                top_k: Some(5),
                top_p: Some(0.7),
                ..Default::default()
            },
            extra: serde_json::from_value(json!({
                "metadata": {"user_id": "u"},
                "thinking": {"type": "enabled", "budget_tokens": 1024},
                "model": "must-not-override",
                "tool_choice": {"type": "any", "disable_parallel_tool_use": true},
            }))
            .unwrap(),
            extra_dialect: Some("anthropic".into()),
            ..Default::default()
        };
        let body = messages_request_body(&request, false, 4096);
        assert_eq!(
            body,
            json!({
                "model": "claude-haiku",
                "max_tokens": 321,
                "messages": [{"role": "assistant", "content": [
                    {"type": "thinking", "thinking": "signed", "signature": "sig"},
                    {"type": "text", "text": "Hi"},
                ]}],
                "tools": [
                    {"name": "a", "description": "does a", "input_schema": {"type": "object"}},
                    {"name": "b", "input_schema": {"type": "object", "properties": {}}},
                ],
                "tool_choice": {"type": "tool", "name": "a", "disable_parallel_tool_use": true},
                "top_p": 0.7,
                "top_k": 5,
                "metadata": {"user_id": "u"},
                "thinking": {"type": "enabled", "budget_tokens": 1024},
            })
        );

        for (choice, expected) in [
            (ToolChoice::Auto, json!({"type": "auto"})),
            (ToolChoice::None, json!({"type": "none"})),
            (ToolChoice::Required, json!({"type": "any"})),
        ] {
            request.tool_choice = Some(choice);
            request.extra.clear();
            assert_eq!(
                messages_request_body(&request, false, 1)["tool_choice"],
                expected
            );
        }
        // Anthropic rejects tool_choice without tools.
        request.tools.clear();
        assert!(
            messages_request_body(&request, false, 1)
                .get("tool_choice")
                .is_none()
        );
    }

    #[test]
    fn count_tokens_body_keeps_what_the_count_takes() {
        let request = ChatRequest {
            model: "claude-sonnet-4-5".into(),
            system: Some("Be terse.".into()),
            messages: vec![Message::user("How many")],
            tools: vec![Tool {
                name: "f".into(),
                description: None,
                parameters: json!({"type": "object"}),
            }],
            params: SamplingParams {
                max_tokens: Some(100),
                temperature: Some(0.5),
                stop: vec!["END".into()],
                ..Default::default()
            },
            reasoning: Some(Reasoning::with_budget(2048)),
            extra_dialect: Some("openai".into()),
            ..Default::default()
        };
        let body = count_tokens_request_body(&request);
        let mut keys: Vec<&str> = body
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        keys.sort_unstable();
        assert_eq!(keys, ["messages", "model", "system", "thinking", "tools"]);
        assert_eq!(body["thinking"]["budget_tokens"], 2048);

        assert_eq!(parse_count_tokens(br#"{"input_tokens": 14}"#), Ok(14));
        for bad in [&b"{}"[..], b"{oops", br#"{"input_tokens": -1}"#] {
            assert_eq!(
                parse_count_tokens(bad).unwrap_err().kind,
                ErrorKind::Upstream
            );
        }
    }

    #[test]
    fn round_trip_client_request_to_provider_body() {
        let client_body = json!({
            "model": "claude-endpoint",
            "max_tokens": 2048,
            "system": "You are terse.",
            "messages": [
                {"role": "user", "content": [
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"}},
                    {"type": "image", "source": {"type": "url", "url": "https://example.com/x.png"}},
                    {"type": "text", "text": "What is in these, and what's the weather in Oslo?"},
                ]},
                {"role": "assistant", "content": [
                    {"type": "thinking", "thinking": "Need weather.", "signature": "c2ln"},
                    {"type": "text", "text": "A cat and a dog. Checking weather."},
                    {"type": "tool_use", "id": "toolu_01", "name": "weather", "input": {"city": "Oslo", "days": 2}},
                ]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_01", "content": "rainy", "is_error": true},
                    {"type": "text", "text": "Summarize."},
                ]},
                {"role": "assistant", "content": "It rains in Oslo."},
                {"role": "user", "content": "Thanks"},
            ],
            "tools": [{"name": "weather", "description": "Forecast",
                       "input_schema": {"type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"}}}}],
            "tool_choice": {"type": "auto", "disable_parallel_tool_use": true},
            "temperature": 0.3,
            "top_k": 10,
            "stop_sequences": ["###"],
            "metadata": {"user_id": "abc"},
            "service_tier": "auto",
            "stream": true,
        });
        let parsed = parse(client_body.clone());
        let mut request = parsed.request;
        request.model = "claude-sonnet-4-5-20250929".into();
        let provider_body = messages_request_body(&request, parsed.stream, 1);

        let mut expected = client_body;
        expected["model"] = json!("claude-sonnet-4-5-20250929");
        assert_eq!(provider_body, expected);
    }

    // --- provider side: answers ---------------------------------------------------

    #[test]
    fn parse_message_reads_content_stop_reason_and_usage() {
        let body = json!({
            "id": "msg_01XFDUDYJgAACzvnptvVoYEL",
            "type": "message",
            "role": "assistant",
            "model": "claude-sonnet-4-5-20250929",
            "content": [
                {"type": "thinking", "thinking": "The user wants...", "signature": "EqQBCgIYAhIM"},
                {"type": "redacted_thinking", "data": "EmwKAhgBEgy"},
                {"type": "text", "text": "I'll check."},
                {"type": "tool_use", "id": "toolu_01A09q90qw90lq917835lq9", "name": "get_weather",
                 "input": {"location": "San Francisco, CA", "unit": "celsius"}},
            ],
            "stop_reason": "tool_use",
            "stop_sequence": null,
            "usage": {"input_tokens": 100, "cache_creation_input_tokens": 20, "cache_read_input_tokens": 300, "output_tokens": 50},
        });
        let response = parse_message(body.to_string().as_bytes()).unwrap();
        assert_eq!(response.id, "msg_01XFDUDYJgAACzvnptvVoYEL");
        assert_eq!(response.model, "claude-sonnet-4-5-20250929");
        assert_eq!(response.finish_reason, FinishReason::ToolCalls);
        assert_eq!(
            response.usage,
            Usage {
                input_tokens: 420,
                output_tokens: 50,
                cached_input_tokens: Some(300)
            }
        );
        assert_eq!(response.content.len(), 3);
        assert_eq!(
            response.content[0],
            ContentPart::Thinking {
                text: "The user wants...".into(),
                signature: Some("EqQBCgIYAhIM".into())
            }
        );
        assert_eq!(response.content[1], ContentPart::text("I'll check."));
        match &response.content[2] {
            ContentPart::ToolCall {
                id,
                name,
                arguments,
            } => {
                assert_eq!(id, "toolu_01A09q90qw90lq917835lq9");
                assert_eq!(name, "get_weather");
                let args: Value = serde_json::from_str(arguments).unwrap();
                assert_eq!(
                    args,
                    json!({"location": "San Francisco, CA", "unit": "celsius"})
                );
            }
            other => panic!("expected a tool call, got {other:?}"),
        }
        assert_eq!(response.raw.as_ref().and_then(RawJson::parse), Some(body));

        for (reason, expected) in [
            ("end_turn", FinishReason::Stop),
            ("stop_sequence", FinishReason::Stop),
            ("max_tokens", FinishReason::Length),
            ("refusal", FinishReason::ContentFilter),
            ("pause_turn", FinishReason::Stop),
        ] {
            let body = json!({"id": "m", "content": [{"type": "text", "text": "x"}], "stop_reason": reason,
                              "usage": {"input_tokens": 1, "output_tokens": 1}});
            let response = parse_message(body.to_string().as_bytes()).unwrap();
            assert_eq!(response.finish_reason, expected, "{reason}");
            assert_eq!(
                response.usage,
                Usage {
                    input_tokens: 1,
                    output_tokens: 1,
                    cached_input_tokens: None
                }
            );
        }
    }

    #[test]
    fn parse_message_rejects_unreadable_answers() {
        let err = parse_message(b"<html>502</html>").unwrap_err();
        assert_eq!(err.kind, ErrorKind::Upstream);
        let err = parse_message(br#"{"id":"x"}"#).unwrap_err();
        assert_eq!(err.kind, ErrorKind::Upstream);
        let err = parse_message(
            br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
        )
        .unwrap_err();
        assert_eq!(
            (err.kind, err.status, err.message.as_str()),
            (ErrorKind::Overloaded, 529, "Overloaded")
        );
    }

    // --- provider side: stream decoding -----------------------------------------

    /// A recorded Messages API stream (text, then a tool call whose input
    /// streams as partial JSON).
    const RECORDED_STREAM: &str = r#"event: message_start
    data: {"type":"message_start","message":{"id":"msg_014p7gG3wDgGV9EUtLvnow3U","type":"message","role":"assistant","model":"claude-3-haiku-20240307","stop_sequence":null,"usage":{"input_tokens":472,"output_tokens":2},"content":[],"stop_reason":null}}

    event: content_block_start
    data: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}

    event: ping
    data: {"type": "ping"}

    event: content_block_delta
    data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Okay"}}

    event: content_block_delta
    data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":", let's check the weather for San Francisco, CA:"}}

    event: content_block_stop
    data: {"type":"content_block_stop","index":0}

    event: content_block_start
    data: {"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"toolu_01T1x1fJ34qAmk2tNTrN7Up6","name":"get_weather","input":{}}}

    event: content_block_delta
    data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":""}}

    event: content_block_delta
    data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\"location\":"}}

    event: content_block_delta
    data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":" \"San"}}

    event: content_block_delta
    data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":" Francisc"}}

    event: content_block_delta
    data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"o,"}}

    event: content_block_delta
    data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":" CA\""}}

    event: content_block_delta
    data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":", "}}

    event: content_block_delta
    data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"\"unit\": \"fah"}}

    event: content_block_delta
    data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"renheit\"}"}}

    event: content_block_stop
    data: {"type":"content_block_stop","index":1}

    event: message_delta
    data: {"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"output_tokens":89}}

    event: message_stop
    data: {"type":"message_stop"}

    "#;

    /// Splits an SSE text into (event, data) pairs.
    fn sse_events(text: &str) -> Vec<(String, String)> {
        text.split("\n\n")
            .filter(|chunk| !chunk.trim().is_empty())
            .map(|chunk| {
                let mut event = String::new();
                let mut data = String::new();
                for line in chunk.lines().map(str::trim_start) {
                    if let Some(rest) = line.strip_prefix("event: ") {
                        event = rest.to_string();
                    } else if let Some(rest) = line.strip_prefix("data: ") {
                        data = rest.to_string();
                    }
                }
                (event, data)
            })
            .collect()
    }

    #[test]
    fn decoder_on_recorded_stream() {
        let mut decoder = EventDecoder::new();
        let mut events = Vec::new();
        for (event, data) in sse_events(RECORDED_STREAM) {
            events.extend(decoder.decode(&event, &data).unwrap());
        }
        let arguments = [
            r#"{"location":"#,
            r#" "San"#,
            " Francisc",
            "o,",
            r#" CA""#,
            ", ",
            r#""unit": "fah"#,
            r#"renheit"}"#,
        ];
        let mut expected = vec![
            StreamEvent::Start {
                id: "msg_014p7gG3wDgGV9EUtLvnow3U".into(),
                model: "claude-3-haiku-20240307".into(),
            },
            StreamEvent::Usage {
                usage: Usage {
                    input_tokens: 472,
                    output_tokens: 2,
                    cached_input_tokens: None,
                },
            },
            StreamEvent::TextDelta {
                text: "Okay".into(),
            },
            StreamEvent::TextDelta {
                text: ", let's check the weather for San Francisco, CA:".into(),
            },
            StreamEvent::ToolCallStart {
                index: 0,
                id: "toolu_01T1x1fJ34qAmk2tNTrN7Up6".into(),
                name: "get_weather".into(),
            },
        ];
        expected.extend(arguments.iter().map(|a| StreamEvent::ToolCallDelta {
            index: 0,
            arguments: a.to_string(),
        }));
        expected.push(StreamEvent::Usage {
            usage: Usage {
                input_tokens: 472,
                output_tokens: 89,
                cached_input_tokens: None,
            },
        });
        expected.push(StreamEvent::Finish {
            reason: FinishReason::ToolCalls,
        });
        assert_eq!(events, expected);

        let joined: String = arguments.concat();
        let input: Value = serde_json::from_str(&joined).unwrap();
        assert_eq!(
            input,
            json!({"location": "San Francisco, CA", "unit": "fahrenheit"})
        );
    }

    #[test]
    fn decoder_thinking_server_tools_unnamed_events_and_errors() {
        let mut decoder = EventDecoder::new();
        let mut events = Vec::new();
        // Event names omitted: the data's type tells.
        for data in [
            json!({"type": "message_start", "message": {"id": "msg_x", "model": "claude", "content": [],
                   "usage": {"input_tokens": 10, "cache_read_input_tokens": 90, "output_tokens": 1}}}),
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": ""}}),
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "Hmm."}}),
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "signature_delta", "signature": "abc"}}),
            json!({"type": "content_block_stop", "index": 0}),
            json!({"type": "content_block_start", "index": 1,
                   "content_block": {"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search", "input": {}}}),
            json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": "{\"query\":\"x\"}"}}),
            json!({"type": "content_block_stop", "index": 1}),
            json!({"type": "content_block_start", "index": 2, "content_block": {"type": "tool_use", "id": "toolu_9", "name": "f", "input": {}}}),
            json!({"type": "content_block_delta", "index": 2, "delta": {"type": "input_json_delta", "partial_json": "{}"}}),
            json!({"type": "some_future_event"}),
            json!({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": null},
                   "usage": {"input_tokens": 10, "cache_read_input_tokens": 90, "output_tokens": 33}}),
        ] {
            events.extend(decoder.decode("", &data.to_string()).unwrap());
        }
        let usage_in = Usage {
            input_tokens: 100,
            output_tokens: 1,
            cached_input_tokens: Some(90),
        };
        let usage_out = Usage {
            input_tokens: 100,
            output_tokens: 33,
            cached_input_tokens: Some(90),
        };
        assert_eq!(
            events,
            vec![
                StreamEvent::Start {
                    id: "msg_x".into(),
                    model: "claude".into()
                },
                StreamEvent::Usage { usage: usage_in },
                StreamEvent::ThinkingDelta {
                    text: "Hmm.".into()
                },
                StreamEvent::ThinkingSignature {
                    signature: "abc".into()
                },
                StreamEvent::ToolCallStart {
                    index: 0,
                    id: "toolu_9".into(),
                    name: "f".into()
                },
                StreamEvent::ToolCallDelta {
                    index: 0,
                    arguments: "{}".into()
                },
                StreamEvent::Usage { usage: usage_out },
                StreamEvent::Finish {
                    reason: FinishReason::Stop
                },
            ]
        );

        let err = decoder
            .decode(
                "error",
                r#"{"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}"#,
            )
            .unwrap_err();
        assert_eq!(
            (err.kind, err.status, err.message.as_str()),
            (ErrorKind::Overloaded, 529, "Overloaded")
        );
        let err = decoder
            .decode(
                "",
                r#"{"type":"error","error":{"type":"rate_limit_error","message":"slow down"}}"#,
            )
            .unwrap_err();
        assert_eq!(err.kind, ErrorKind::RateLimited);
        assert!(
            decoder
                .decode("ping", r#"{"type": "ping"}"#)
                .unwrap()
                .is_empty()
        );
        let err = decoder
            .decode("content_block_delta", "{truncated")
            .unwrap_err();
        assert_eq!(err.kind, ErrorKind::Upstream);
    }

    // --- provider side: errors ------------------------------------------------------

    #[test]
    fn parse_error_reads_type_message_and_retry_after() {
        let headers = vec![
            ("Retry-After".to_string(), "17".to_string()),
            ("request-id".to_string(), "req_1".to_string()),
        ];
        let body = br#"{"type":"error","error":{"type":"rate_limit_error","message":"Number of request tokens has exceeded your per-minute rate limit"},"request_id":"req_1"}"#;
        let err = parse_error(429, &headers, body);
        assert_eq!(err.kind, ErrorKind::RateLimited);
        assert_eq!(err.status, 429);
        assert_eq!(
            err.message,
            "Number of request tokens has exceeded your per-minute rate limit"
        );
        assert_eq!(err.retry_after_ms, Some(17_000));

        let err = parse_error(
            529,
            &[],
            br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
        );
        assert_eq!(
            (err.kind, err.status, err.retry_after_ms),
            (ErrorKind::Overloaded, 529, None)
        );

        let err = parse_error(
            400,
            &[("retry-after-ms".into(), "250".into()), ("retry-after".into(), "9".into())],
            br#"{"type":"error","error":{"type":"invalid_request_error","message":"max_tokens: Field required"}}"#,
        );
        assert_eq!(err.kind, ErrorKind::InvalidRequest);
        assert_eq!(err.message, "max_tokens: Field required");
        assert_eq!(err.retry_after_ms, Some(250));

        let err = parse_error(401, &[], br#"{"type":"error","error":{"type":"authentication_error","message":"invalid x-api-key"}}"#);
        assert_eq!(err.kind, ErrorKind::Authentication);
        let err = parse_error(
            404,
            &[],
            br#"{"type":"error","error":{"type":"not_found_error","message":"model: nope"}}"#,
        );
        assert_eq!(err.kind, ErrorKind::NotFound);

        // Not Anthropic JSON (a proxy page): the status decides.
        let err = parse_error(
            503,
            &[("retry-after".into(), "not-a-number".into())],
            b"<html>Service Unavailable</html>",
        );
        assert_eq!(err.kind, ErrorKind::Overloaded);
        assert_eq!(err.status, 503);
        assert_eq!(err.retry_after_ms, None);
        assert!(
            err.message.contains("Service Unavailable"),
            "{}",
            err.message
        );
        let err = parse_error(500, &[], b"");
        assert_eq!(err.kind, ErrorKind::Upstream);
        assert!(err.message.contains("HTTP 500"), "{}", err.message);
        // An unknown type falls back to the status.
        let err = parse_error(
            418,
            &[],
            br#"{"type":"error","error":{"type":"teapot_error","message":"short and stout"}}"#,
        );
        assert_eq!((err.kind, err.status), (ErrorKind::InvalidRequest, 418));
    }
}
