//! OpenAI Chat Completions and Embeddings wire format, both directions.
//!
//! Client side (the gateway serves the OpenAI API): [`parse_chat_request`],
//! [`chat_completion_body`], [`ChunkEncoder`], [`parse_embeddings_request`],
//! [`embeddings_body`], [`error_body`].
//!
//! Provider side (a plugin talks to an OpenAI-compatible upstream):
//! [`chat_request_body`], [`parse_chat_completion`], [`ChunkDecoder`],
//! [`embeddings_request_body`], [`parse_embeddings`], [`parse_error`].
//!
//! Decisions worth knowing:
//! - `max_tokens` is sent as `max_completion_tokens`, the field current
//!   OpenAI models all accept (o-series and gpt-5 reject `max_tokens`).
//!   OpenAI-compatible upstreams that only know `max_tokens` select it with
//!   [`ChatBodyOptions::max_tokens_field`].
//! - Unknown client fields (`ChatRequest::extra`) are merged into upstream
//!   bodies only when `extra_dialect == Some("openai")`, and a field the
//!   neutral translation already set wins over an `extra` field of the
//!   same name (the neutral fields were read from the same client body, so
//!   a conflict can only be a stale duplicate).
//! - Reasoning text travels as the de-facto `reasoning_content` field
//!   (DeepSeek, vLLM); OpenAI itself does not expose it in this API.
//! - OpenAI has no "error" finish reason: [`FinishReason::Error`] is
//!   reported to OpenAI clients as `"stop"`.
//! - Only choice 0 is read; clients asking for `n > 1` get a 400.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{Map, Value, json};

use super::common;
use crate::{
    ChatRequest, ChatResponse, ContentPart, EmbeddingsRequest, EmbeddingsResponse, ErrorKind,
    FinishReason, ImageSource, Message, ProviderError, RawJson, Reasoning, ReasoningEffort, Role,
    SamplingParams, StreamEvent, Tool, ToolChoice, Usage,
};

/// Dialect tag of `extra` fields that came from an OpenAI client.
pub const DIALECT: &str = "openai";

// ---------------------------------------------------------------------------
// Client side: parsing what OpenAI SDKs send.
// ---------------------------------------------------------------------------

/// A parsed `POST /v1/chat/completions` body.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientChatRequest {
    /// The client's `model` field: the gateway endpoint name.
    pub endpoint: String,
    pub stream: bool,
    /// `stream_options.include_usage`.
    pub include_usage: bool,
    /// The neutral request; `model` is left empty, unknown top-level fields
    /// are in `extra`, `extra_dialect` is `Some("openai")`.
    pub request: ChatRequest,
}

/// Top-level chat fields the neutral model carries; everything else goes to
/// `extra`.
const KNOWN_CHAT_FIELDS: &[&str] = &[
    "model",
    "messages",
    "stream",
    "stream_options",
    "tools",
    "tool_choice",
    "max_tokens",
    "max_completion_tokens",
    "temperature",
    "top_p",
    "stop",
    "seed",
    "presence_penalty",
    "frequency_penalty",
    "response_format",
    "n",
];

/// Parses an OpenAI Chat Completions request body.
pub fn parse_chat_request(body: &[u8]) -> Result<ClientChatRequest, ProviderError> {
    match plain_chat::parse(body) {
        Some(parsed) => Ok(parsed),
        None => parse_chat_request_value(body),
    }
}

/// The full reading of a chat request, through a `Value` tree.
fn parse_chat_request_value(body: &[u8]) -> Result<ClientChatRequest, ProviderError> {
    let obj = parse_object(body)?;
    let endpoint = required_str(&obj, "model")?.to_string();

    let messages_value =
        field(&obj, "messages").ok_or_else(|| invalid("messages", "is required"))?;
    let items = messages_value
        .as_array()
        .ok_or_else(|| invalid("messages", "must be an array"))?;
    if items.is_empty() {
        return Err(invalid("messages", "must contain at least one message"));
    }
    let mut system = Vec::new();
    let mut messages: Vec<Message> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        parse_message(i, item, &mut system, &mut messages)?;
    }
    fill_tool_result_names(&mut messages);

    if let Some(n) = opt_u32(&obj, "n")?
        && n != 1
    {
        return Err(invalid(
            "n",
            "must be 1: the gateway returns a single choice",
        ));
    }

    let stream = opt_bool(&obj, "stream")?.unwrap_or(false);
    let include_usage = match field(&obj, "stream_options") {
        None => false,
        Some(Value::Object(options)) => opt_bool(options, "include_usage")
            .map_err(|_| invalid("stream_options.include_usage", "must be a boolean"))?
            .unwrap_or(false),
        Some(_) => return Err(invalid("stream_options", "must be an object")),
    };

    let tools = match field(&obj, "tools") {
        None => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, t)| parse_tool(i, t))
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(invalid("tools", "must be an array")),
    };
    let tool_choice = field(&obj, "tool_choice")
        .map(parse_tool_choice)
        .transpose()?;

    let params = SamplingParams {
        max_tokens: match opt_u32(&obj, "max_completion_tokens")? {
            Some(v) => Some(v),
            None => opt_u32(&obj, "max_tokens")?,
        },
        temperature: opt_f64(&obj, "temperature")?,
        top_p: opt_f64(&obj, "top_p")?,
        top_k: None,
        stop: parse_stop(field(&obj, "stop"))?,
        seed: opt_i64(&obj, "seed")?,
        presence_penalty: opt_f64(&obj, "presence_penalty")?,
        frequency_penalty: opt_f64(&obj, "frequency_penalty")?,
    };
    let response_format = match field(&obj, "response_format") {
        None => None,
        Some(v @ Value::Object(_)) => Some(v.clone()),
        Some(_) => return Err(invalid("response_format", "must be an object")),
    };

    // Kept in `extra` too, so an OpenAI-compatible upstream gets the
    // client's own value even when this gateway does not know it.
    let reasoning = match field(&obj, "reasoning_effort") {
        None => None,
        Some(Value::String(effort)) => ReasoningEffort::parse(effort).map(Reasoning::with_effort),
        Some(_) => return Err(invalid("reasoning_effort", "must be a string")),
    };

    let extra = obj
        .into_iter()
        .filter(|(k, _)| !KNOWN_CHAT_FIELDS.contains(&k.as_str()))
        .collect();
    Ok(ClientChatRequest {
        endpoint,
        stream,
        include_usage,
        request: ChatRequest {
            model: String::new(),
            system: if system.is_empty() {
                None
            } else {
                Some(system.join("\n\n"))
            },
            messages,
            tools,
            tool_choice,
            params,
            response_format,
            reasoning,
            extra,
            extra_dialect: Some(DIALECT.to_string()),
        },
    })
}

/// The common shape of a chat request (text messages in the four usual
/// roles, sampling parameters, nothing else), read straight into the
/// neutral request without a `Value` tree, which cost ~3% of a translated
/// request at the gateway. Strict where the `Value` reading is lenient: any
/// other field, role or shape, an error of any kind, or a value that reading
/// would refuse, gives `None`, and the `Value` reading (which defines the
/// behaviour and words the errors) runs instead. Tests check both agree.
mod plain_chat {
    use std::borrow::Cow;

    use serde::Deserialize;

    use super::{ClientChatRequest, DIALECT};
    use crate::{ChatRequest, ContentPart, Message, Role, SamplingParams};

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Request<'a> {
        #[serde(borrow)]
        model: Cow<'a, str>,
        #[serde(borrow)]
        messages: Vec<PlainMessage<'a>>,
        stream: Option<bool>,
        stream_options: Option<StreamOptions>,
        n: Option<u32>,
        max_tokens: Option<u32>,
        max_completion_tokens: Option<u32>,
        temperature: Option<f64>,
        top_p: Option<f64>,
        seed: Option<i64>,
        presence_penalty: Option<f64>,
        frequency_penalty: Option<f64>,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct PlainMessage<'a> {
        #[serde(borrow)]
        role: Cow<'a, str>,
        #[serde(borrow)]
        content: Cow<'a, str>,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct StreamOptions {
        include_usage: Option<bool>,
    }

    pub(super) fn parse(body: &[u8]) -> Option<ClientChatRequest> {
        let request: Request = serde_json::from_slice(body).ok()?;
        if request.model.is_empty()
            || request.messages.is_empty()
            || request.n.is_some_and(|n| n != 1)
        {
            return None;
        }
        let mut system: Vec<String> = Vec::new();
        let mut messages = Vec::with_capacity(request.messages.len());
        for message in request.messages {
            match &*message.role {
                "system" | "developer" => system.push(message.content.into_owned()),
                "user" => messages.push(Message {
                    role: Role::User,
                    content: vec![ContentPart::text(message.content)],
                }),
                "assistant" => messages.push(Message {
                    role: Role::Assistant,
                    // As the `Value` reading's `push_text`: no empty part.
                    content: if message.content.is_empty() {
                        Vec::new()
                    } else {
                        vec![ContentPart::text(message.content)]
                    },
                }),
                _ => return None,
            }
        }
        let system = match system.len() {
            0 => None,
            1 => system.pop(),
            _ => Some(system.join("\n\n")),
        };
        Some(ClientChatRequest {
            endpoint: request.model.into_owned(),
            stream: request.stream.unwrap_or(false),
            include_usage: request
                .stream_options
                .and_then(|options| options.include_usage)
                .unwrap_or(false),
            request: ChatRequest {
                model: String::new(),
                system,
                messages,
                tools: Vec::new(),
                tool_choice: None,
                params: SamplingParams {
                    max_tokens: request.max_completion_tokens.or(request.max_tokens),
                    temperature: request.temperature,
                    top_p: request.top_p,
                    top_k: None,
                    stop: Vec::new(),
                    seed: request.seed,
                    presence_penalty: request.presence_penalty,
                    frequency_penalty: request.frequency_penalty,
                },
                response_format: None,
                reasoning: None,
                extra: Default::default(),
                extra_dialect: Some(DIALECT.to_string()),
            },
        })
    }
}

fn parse_message(
    i: usize,
    value: &Value,
    system: &mut Vec<String>,
    messages: &mut Vec<Message>,
) -> Result<(), ProviderError> {
    let path = format!("messages[{i}]");
    let obj = value
        .as_object()
        .ok_or_else(|| invalid(&path, "must be an object"))?;
    let role = obj
        .get("role")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid(&format!("{path}.role"), "is required and must be a string"))?;
    let content_path = format!("{path}.content");
    match role {
        "system" | "developer" => {
            let content =
                field(obj, "content").ok_or_else(|| invalid(&content_path, "is required"))?;
            system.push(text_content(content, &content_path)?);
        }
        "user" => {
            let content =
                field(obj, "content").ok_or_else(|| invalid(&content_path, "is required"))?;
            messages.push(Message {
                role: Role::User,
                content: user_content(content, &content_path)?,
            });
        }
        "assistant" => messages.push(parse_assistant(obj, &path)?),
        "tool" => {
            let tool_call_id =
                obj.get("tool_call_id")
                    .and_then(Value::as_str)
                    .ok_or_else(|| {
                        invalid(
                            &format!("{path}.tool_call_id"),
                            "is required and must be a string",
                        )
                    })?;
            let content = match field(obj, "content") {
                Some(content) => text_content(content, &content_path)?,
                None => String::new(),
            };
            let result = ContentPart::ToolResult {
                tool_call_id: tool_call_id.to_string(),
                name: None,
                content,
                is_error: false,
            };
            // Consecutive tool messages answer one assistant turn: keep them
            // in one neutral turn, as providers with user-side tool results
            // (Anthropic, Gemini) need.
            match messages.last_mut() {
                Some(last) if last.role == Role::Tool => last.content.push(result),
                _ => messages.push(Message {
                    role: Role::Tool,
                    content: vec![result],
                }),
            }
        }
        "function" => {
            return Err(invalid(
                &format!("{path}.role"),
                "'function' is deprecated and not supported; use 'tool'",
            ));
        }
        other => {
            return Err(invalid(
                &format!("{path}.role"),
                &format!(
                    "has unsupported value '{other}' (expected system, developer, user, assistant or tool)"
                ),
            ));
        }
    }
    Ok(())
}

fn parse_assistant(obj: &Map<String, Value>, path: &str) -> Result<Message, ProviderError> {
    let mut content = Vec::new();
    let content_path = format!("{path}.content");
    match field(obj, "content") {
        None => {}
        Some(Value::String(text)) => push_text(&mut content, text.clone()),
        Some(Value::Array(parts)) => {
            for (j, part) in parts.iter().enumerate() {
                let part_path = format!("{content_path}[{j}]");
                let kind = part_type(part, &part_path)?;
                match kind {
                    "text" => push_text(
                        &mut content,
                        required_part_str(part, "text", &part_path)?.to_string(),
                    ),
                    "refusal" => push_text(
                        &mut content,
                        required_part_str(part, "refusal", &part_path)?.to_string(),
                    ),
                    other => {
                        return Err(invalid(
                            &format!("{part_path}.type"),
                            &format!(
                                "'{other}' is not supported in assistant messages (expected text or refusal)"
                            ),
                        ));
                    }
                }
            }
        }
        Some(_) => {
            return Err(invalid(
                &content_path,
                "must be a string, an array of parts or null",
            ));
        }
    }
    match field(obj, "tool_calls") {
        None => {}
        Some(Value::Array(calls)) => {
            for (j, call) in calls.iter().enumerate() {
                content.push(parse_tool_call(call, &format!("{path}.tool_calls[{j}]"))?);
            }
        }
        Some(_) => return Err(invalid(&format!("{path}.tool_calls"), "must be an array")),
    }
    Ok(Message {
        role: Role::Assistant,
        content,
    })
}

fn parse_tool_call(call: &Value, path: &str) -> Result<ContentPart, ProviderError> {
    let obj = call
        .as_object()
        .ok_or_else(|| invalid(path, "must be an object"))?;
    if let Some(kind) = field(obj, "type")
        && kind.as_str() != Some("function")
    {
        return Err(invalid(&format!("{path}.type"), "must be 'function'"));
    }
    let id = obj
        .get("id")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid(&format!("{path}.id"), "is required and must be a string"))?;
    let function = obj
        .get("function")
        .and_then(Value::as_object)
        .ok_or_else(|| {
            invalid(
                &format!("{path}.function"),
                "is required and must be an object",
            )
        })?;
    let name = function
        .get("name")
        .and_then(Value::as_str)
        .ok_or_else(|| {
            invalid(
                &format!("{path}.function.name"),
                "is required and must be a string",
            )
        })?;
    Ok(ContentPart::ToolCall {
        id: id.to_string(),
        name: name.to_string(),
        arguments: arguments_text(function),
    })
}

/// Tool-call arguments as JSON text; tolerates an object where a string
/// belongs (some clients and upstreams send one).
fn arguments_text(function: &Map<String, Value>) -> String {
    match function.get("arguments") {
        Some(Value::String(s)) => s.clone(),
        None | Some(Value::Null) => String::new(),
        Some(other) => other.to_string(),
    }
}

fn user_content(content: &Value, path: &str) -> Result<Vec<ContentPart>, ProviderError> {
    match content {
        Value::String(text) => Ok(vec![ContentPart::text(text.clone())]),
        Value::Array(parts) => {
            let mut out = Vec::with_capacity(parts.len());
            for (j, part) in parts.iter().enumerate() {
                let part_path = format!("{path}[{j}]");
                match part_type(part, &part_path)? {
                    "text" => out.push(ContentPart::text(required_part_str(
                        part, "text", &part_path,
                    )?)),
                    "image_url" => {
                        let url = match part.get("image_url") {
                            Some(Value::Object(image)) => image.get("url").and_then(Value::as_str),
                            Some(Value::String(url)) => Some(url.as_str()),
                            _ => None,
                        }
                        .ok_or_else(|| {
                            invalid(
                                &format!("{part_path}.image_url.url"),
                                "is required and must be a string",
                            )
                        })?;
                        out.push(ContentPart::Image {
                            source: ImageSource::from_url(url),
                        });
                    }
                    "input_audio" => {
                        return Err(invalid(
                            &format!("{part_path}.type"),
                            "audio input is not supported",
                        ));
                    }
                    "file" => {
                        return Err(invalid(
                            &format!("{part_path}.type"),
                            "file input is not supported",
                        ));
                    }
                    other => {
                        return Err(invalid(
                            &format!("{part_path}.type"),
                            &format!("'{other}' is not supported (expected text or image_url)"),
                        ));
                    }
                }
            }
            Ok(out)
        }
        _ => Err(invalid(
            path,
            "must be a string or an array of content parts",
        )),
    }
}

/// Text of a system/developer/tool message: a string or text parts.
fn text_content(content: &Value, path: &str) -> Result<String, ProviderError> {
    match content {
        Value::String(text) => Ok(text.clone()),
        Value::Array(parts) => {
            let mut texts = Vec::with_capacity(parts.len());
            for (j, part) in parts.iter().enumerate() {
                let part_path = format!("{path}[{j}]");
                match part_type(part, &part_path)? {
                    "text" => texts.push(required_part_str(part, "text", &part_path)?),
                    other => {
                        return Err(invalid(
                            &format!("{part_path}.type"),
                            &format!("'{other}' is not supported here (expected text)"),
                        ));
                    }
                }
            }
            Ok(texts.join("\n"))
        }
        _ => Err(invalid(path, "must be a string or an array of text parts")),
    }
}

fn part_type<'a>(part: &'a Value, path: &str) -> Result<&'a str, ProviderError> {
    part.get("type")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid(&format!("{path}.type"), "is required"))
}

fn required_part_str<'a>(part: &'a Value, key: &str, path: &str) -> Result<&'a str, ProviderError> {
    part.get(key)
        .and_then(Value::as_str)
        .ok_or_else(|| invalid(&format!("{path}.{key}"), "is required and must be a string"))
}

fn push_text(content: &mut Vec<ContentPart>, text: String) {
    if !text.is_empty() {
        content.push(ContentPart::Text { text });
    }
}

/// OpenAI tool messages carry no tool name; providers such as Gemini need
/// it, so take it from the assistant call with the same id.
pub(crate) fn fill_tool_result_names(messages: &mut [Message]) {
    let mut names: BTreeMap<String, String> = BTreeMap::new();
    for message in messages.iter_mut() {
        for part in &mut message.content {
            match part {
                ContentPart::ToolCall { id, name, .. } => {
                    names.insert(id.clone(), name.clone());
                }
                ContentPart::ToolResult {
                    tool_call_id,
                    name: name @ None,
                    ..
                } => {
                    *name = names.get(tool_call_id).cloned();
                }
                _ => {}
            }
        }
    }
}

fn parse_tool(i: usize, value: &Value) -> Result<Tool, ProviderError> {
    let path = format!("tools[{i}]");
    let obj = value
        .as_object()
        .ok_or_else(|| invalid(&path, "must be an object"))?;
    match obj.get("type").and_then(Value::as_str) {
        Some("function") | None => {}
        Some(other) => {
            return Err(invalid(
                &format!("{path}.type"),
                &format!("'{other}' is not supported (only function tools are)"),
            ));
        }
    }
    let function = obj
        .get("function")
        .and_then(Value::as_object)
        .ok_or_else(|| {
            invalid(
                &format!("{path}.function"),
                "is required and must be an object",
            )
        })?;
    let name = function
        .get("name")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .ok_or_else(|| {
            invalid(
                &format!("{path}.function.name"),
                "is required and must be a non-empty string",
            )
        })?;
    let description = match field(function, "description") {
        None => None,
        Some(Value::String(d)) => Some(d.clone()),
        Some(_) => {
            return Err(invalid(
                &format!("{path}.function.description"),
                "must be a string",
            ));
        }
    };
    let parameters = match field(function, "parameters") {
        None => json!({"type": "object", "properties": {}}),
        Some(p @ Value::Object(_)) => p.clone(),
        Some(_) => {
            return Err(invalid(
                &format!("{path}.function.parameters"),
                "must be a JSON Schema object",
            ));
        }
    };
    Ok(Tool {
        name: name.to_string(),
        description,
        parameters,
    })
}

fn parse_tool_choice(value: &Value) -> Result<ToolChoice, ProviderError> {
    match value {
        Value::String(s) => match s.as_str() {
            "auto" => Ok(ToolChoice::Auto),
            "none" => Ok(ToolChoice::None),
            "required" => Ok(ToolChoice::Required),
            other => Err(invalid(
                "tool_choice",
                &format!("has unsupported value '{other}' (expected auto, none or required)"),
            )),
        },
        Value::Object(obj) => {
            let name = obj
                .get("function")
                .and_then(|f| f.get("name"))
                .and_then(Value::as_str)
                .filter(|_| obj.get("type").and_then(Value::as_str).is_none_or(|t| t == "function"))
                .ok_or_else(|| invalid("tool_choice", "must name a function: {\"type\": \"function\", \"function\": {\"name\": …}}"))?;
            Ok(ToolChoice::Tool {
                name: name.to_string(),
            })
        }
        _ => Err(invalid("tool_choice", "must be a string or an object")),
    }
}

fn parse_stop(value: Option<&Value>) -> Result<Vec<String>, ProviderError> {
    match value {
        None => Ok(Vec::new()),
        Some(Value::String(s)) => Ok(vec![s.clone()]),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| invalid("stop", "must be a string or an array of strings"))
            })
            .collect(),
        Some(_) => Err(invalid("stop", "must be a string or an array of strings")),
    }
}

/// A parsed `POST /v1/embeddings` body.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientEmbeddingsRequest {
    /// The client's `model` field: the gateway endpoint name.
    pub endpoint: String,
    /// `encoding_format == "base64"`.
    pub base64: bool,
    /// `model` left empty; unknown fields in `extra`.
    pub request: EmbeddingsRequest,
}

/// Parses an OpenAI Embeddings request body.
pub fn parse_embeddings_request(body: &[u8]) -> Result<ClientEmbeddingsRequest, ProviderError> {
    let obj = parse_object(body)?;
    let endpoint = required_str(&obj, "model")?.to_string();
    let token_ids = || invalid("input", "token-id arrays are not supported; send strings");
    let inputs = match field(&obj, "input") {
        None => return Err(invalid("input", "is required")),
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(items)) => {
            if items.is_empty() {
                return Err(invalid("input", "must not be empty"));
            }
            let mut inputs = Vec::with_capacity(items.len());
            for item in items {
                match item {
                    Value::String(s) => inputs.push(s.clone()),
                    Value::Number(_) | Value::Array(_) => return Err(token_ids()),
                    _ => return Err(invalid("input", "must be a string or an array of strings")),
                }
            }
            inputs
        }
        Some(_) => return Err(invalid("input", "must be a string or an array of strings")),
    };
    let dimensions = opt_u32(&obj, "dimensions")?;
    if dimensions == Some(0) {
        return Err(invalid("dimensions", "must be a positive integer"));
    }
    let base64 = match field(&obj, "encoding_format") {
        None => false,
        Some(Value::String(f)) if f == "float" => false,
        Some(Value::String(f)) if f == "base64" => true,
        Some(_) => return Err(invalid("encoding_format", "must be 'float' or 'base64'")),
    };
    let extra = obj
        .into_iter()
        .filter(|(k, _)| {
            !matches!(
                k.as_str(),
                "model" | "input" | "dimensions" | "encoding_format"
            )
        })
        .collect();
    Ok(ClientEmbeddingsRequest {
        endpoint,
        base64,
        request: EmbeddingsRequest {
            model: String::new(),
            inputs,
            dimensions,
            input_type: None,
            extra,
            extra_dialect: Some(DIALECT.to_string()),
        },
    })
}

// ---------------------------------------------------------------------------
// Client side: encoding answers the way OpenAI does.
// ---------------------------------------------------------------------------

/// A `chat.completion` object for `response`, reported as `model` (the
/// endpoint name the client used).
pub fn chat_completion_body<'a>(
    response: &'a ChatResponse,
    model: &'a str,
    created: u64,
) -> ChatCompletion<'a> {
    let id = if response.id.is_empty() {
        Cow::Owned(common::random_id("chatcmpl-"))
    } else {
        Cow::Borrowed(response.id.as_str())
    };
    let mut text: Option<Cow<'a, str>> = None;
    let mut thinking: Option<Cow<'a, str>> = None;
    let mut tool_calls = Vec::new();
    for part in &response.content {
        match part {
            ContentPart::Text { text: t } => append(&mut text, t),
            ContentPart::Thinking { text: t, .. } => append(&mut thinking, t),
            ContentPart::ToolCall {
                id,
                name,
                arguments,
            } => tool_calls.push(ToolCallBody {
                function: FunctionBody { arguments, name },
                id,
                kind: "function",
            }),
            ContentPart::Image { .. } | ContentPart::ToolResult { .. } => {}
        }
    }
    let content = match text {
        None if !tool_calls.is_empty() => None,
        text => Some(text.unwrap_or_default()),
    };
    ChatCompletion {
        choices: [CompletionChoice {
            finish_reason: finish_reason_str(response.finish_reason),
            index: 0,
            logprobs: (),
            message: AssistantMessage {
                content,
                reasoning_content: thinking.filter(|t| !t.is_empty()),
                refusal: (),
                role: "assistant",
                tool_calls,
            },
        }],
        created,
        id,
        model,
        object: "chat.completion",
        usage: UsageBody::new(&response.usage),
    }
}

/// Appends `more` to `text`, borrowing while there is one piece only.
fn append<'a>(text: &mut Option<Cow<'a, str>>, more: &'a str) {
    match text {
        None => *text = Some(Cow::Borrowed(more)),
        Some(text) => text.to_mut().push_str(more),
    }
}

/// An OpenAI `chat.completion` object of [`chat_completion_body`], written
/// from borrowed parts. Fields are in alphabetical order, the order a
/// `Value` object is written in, as for [`Chunk`].
#[derive(Debug, Serialize)]
pub struct ChatCompletion<'a> {
    choices: [CompletionChoice<'a>; 1],
    created: u64,
    id: Cow<'a, str>,
    model: &'a str,
    object: &'static str,
    usage: UsageBody,
}

#[derive(Debug, Serialize)]
struct CompletionChoice<'a> {
    finish_reason: &'static str,
    index: u32,
    /// Always `null`.
    logprobs: (),
    message: AssistantMessage<'a>,
}

#[derive(Debug, Serialize)]
struct AssistantMessage<'a> {
    /// `null` for an answer made of tool calls only.
    content: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reasoning_content: Option<Cow<'a, str>>,
    /// Always `null`.
    refusal: (),
    role: &'static str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tool_calls: Vec<ToolCallBody<'a>>,
}

#[derive(Debug, Serialize)]
struct ToolCallBody<'a> {
    function: FunctionBody<'a>,
    id: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
}

#[derive(Debug, Serialize)]
struct FunctionBody<'a> {
    arguments: &'a str,
    name: &'a str,
}

/// OpenAI's `usage` object.
#[derive(Debug, Serialize)]
struct UsageBody {
    completion_tokens: u32,
    prompt_tokens: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    prompt_tokens_details: Option<CachedTokens>,
    total_tokens: u32,
}

#[derive(Debug, Serialize)]
struct CachedTokens {
    cached_tokens: u32,
}

impl UsageBody {
    fn new(usage: &Usage) -> Self {
        UsageBody {
            completion_tokens: usage.output_tokens,
            prompt_tokens: usage.input_tokens,
            prompt_tokens_details: usage
                .cached_input_tokens
                .map(|cached_tokens| CachedTokens { cached_tokens }),
            total_tokens: usage.total(),
        }
    }
}

fn finish_reason_str(reason: FinishReason) -> &'static str {
    match reason {
        FinishReason::Stop | FinishReason::Error => "stop",
        FinishReason::Length => "length",
        FinishReason::ToolCalls => "tool_calls",
        FinishReason::ContentFilter => "content_filter",
    }
}

fn usage_json(usage: &Usage) -> Value {
    serde_json::to_value(UsageBody::new(usage)).unwrap_or(Value::Null)
}

/// Encodes neutral stream events as `chat.completion.chunk` objects; the
/// host writes each as an SSE `data:` line and ends with `data: [DONE]`.
#[derive(Debug, Clone)]
pub struct ChunkEncoder {
    id: String,
    model: String,
    created: u64,
    include_usage: bool,
    started: bool,
    finished: bool,
    usage: Option<Usage>,
}

impl ChunkEncoder {
    pub fn new(id: String, model: String, created: u64, include_usage: bool) -> Self {
        Self {
            id,
            model,
            created,
            include_usage,
            started: false,
            finished: false,
            usage: None,
        }
    }

    /// Chunks for one event (often one, none for `Usage`/`Raw`, two when
    /// the event implies the opening role chunk).
    pub fn encode<'a>(&'a mut self, event: &'a StreamEvent) -> Vec<Chunk<'a>> {
        let opening = !self.started
            && !matches!(
                event,
                StreamEvent::Usage { .. }
                    | StreamEvent::Raw { .. }
                    | StreamEvent::ThinkingSignature { .. }
            );
        self.started |= opening;
        let mut finish = None;
        let delta = match event {
            // Chat Completions has no place for a thinking signature.
            StreamEvent::Start { .. }
            | StreamEvent::Raw { .. }
            | StreamEvent::ThinkingSignature { .. } => None,
            StreamEvent::TextDelta { text } => (!text.is_empty()).then(|| ChunkDelta {
                content: Some(text),
                ..ChunkDelta::default()
            }),
            StreamEvent::ThinkingDelta { text } => (!text.is_empty()).then(|| ChunkDelta {
                reasoning_content: Some(text),
                ..ChunkDelta::default()
            }),
            StreamEvent::ToolCallStart { index, id, name } => Some(ChunkDelta {
                tool_calls: Some([ToolCallChunk {
                    function: FunctionChunk {
                        arguments: "",
                        name: Some(name),
                    },
                    id: Some(id),
                    index: *index,
                    kind: Some("function"),
                }]),
                ..ChunkDelta::default()
            }),
            StreamEvent::ToolCallDelta { index, arguments } => {
                (!arguments.is_empty()).then(|| ChunkDelta {
                    tool_calls: Some([ToolCallChunk {
                        function: FunctionChunk {
                            arguments,
                            name: None,
                        },
                        id: None,
                        index: *index,
                        kind: None,
                    }]),
                    ..ChunkDelta::default()
                })
            }
            StreamEvent::Finish { .. } if self.finished => None,
            StreamEvent::Finish { reason } => {
                self.finished = true;
                finish = Some(finish_reason_str(*reason));
                Some(ChunkDelta::default())
            }
            StreamEvent::Usage { usage } => {
                self.usage = Some(*usage);
                None
            }
        };
        let mut out = Vec::with_capacity(2);
        if opening {
            out.push(self.chunk(
                ChunkDelta {
                    content: Some(""),
                    role: Some("assistant"),
                    ..ChunkDelta::default()
                },
                None,
            ));
        }
        if let Some(delta) = delta {
            out.push(self.chunk(delta, finish));
        }
        out
    }

    /// Closing chunks: with `include_usage`, the usage-only chunk
    /// (`choices: []`) OpenAI sends last.
    pub fn finish(&mut self) -> Vec<Value> {
        if !self.include_usage {
            return Vec::new();
        }
        let usage = self.usage.unwrap_or_default();
        vec![json!({
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [],
            "usage": usage_json(&usage),
        })]
    }

    fn chunk<'a>(
        &'a self,
        delta: ChunkDelta<'a>,
        finish_reason: Option<&'static str>,
    ) -> Chunk<'a> {
        Chunk {
            choices: [ChunkChoice {
                delta,
                finish_reason,
                index: 0,
                logprobs: (),
            }],
            created: self.created,
            id: &self.id,
            model: &self.model,
            object: "chat.completion.chunk",
        }
    }
}

/// One `chat.completion.chunk` of [`ChunkEncoder::encode`], written straight
/// from borrowed parts (no `Value` tree per streamed token). Here and in the
/// types below, fields are in alphabetical order, the order a `Value` object
/// is written in, so the bytes match what the `json!` form produced.
#[derive(Debug, Serialize)]
pub struct Chunk<'a> {
    choices: [ChunkChoice<'a>; 1],
    created: u64,
    id: &'a str,
    model: &'a str,
    object: &'static str,
}

#[derive(Debug, Serialize)]
struct ChunkChoice<'a> {
    delta: ChunkDelta<'a>,
    finish_reason: Option<&'static str>,
    index: u32,
    /// Always `null`.
    logprobs: (),
}

#[derive(Debug, Default, Serialize)]
struct ChunkDelta<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    content: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reasoning_content: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_calls: Option<[ToolCallChunk<'a>; 1]>,
}

#[derive(Debug, Serialize)]
struct ToolCallChunk<'a> {
    function: FunctionChunk<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    index: u32,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    kind: Option<&'static str>,
}

#[derive(Debug, Serialize)]
struct FunctionChunk<'a> {
    arguments: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
}

/// An embeddings `list` object; `base64` encodes each vector as standard
/// base64 of its little-endian `f32` bytes.
pub fn embeddings_body(response: &EmbeddingsResponse, model: &str, base64: bool) -> Value {
    let data: Vec<Value> = response
        .embeddings
        .iter()
        .enumerate()
        .map(|(index, vector)| {
            let embedding = if base64 {
                Value::String(common::f32s_to_base64(vector))
            } else {
                Value::Array(vector.iter().map(|v| common::f32_json(*v)).collect())
            };
            json!({"object": "embedding", "index": index, "embedding": embedding})
        })
        .collect();
    json!({
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": response.usage.input_tokens, "total_tokens": response.usage.total()},
    })
}

/// An OpenAI error document for `error`. `code` carries the gateway's error
/// kind (`rate_limited`, `overloaded`, …).
pub fn error_body(error: &ProviderError) -> Value {
    let (kind, code) = match error.kind {
        ErrorKind::InvalidRequest => ("invalid_request_error", "invalid_request"),
        ErrorKind::Authentication => ("authentication_error", "authentication"),
        ErrorKind::Permission => ("permission_error", "permission"),
        ErrorKind::NotFound => ("not_found_error", "not_found"),
        ErrorKind::RateLimited => ("rate_limit_error", "rate_limited"),
        ErrorKind::Overloaded => ("server_error", "overloaded"),
        ErrorKind::Upstream => ("server_error", "upstream"),
        ErrorKind::Internal => ("server_error", "internal"),
    };
    json!({"error": {"message": error.message, "type": kind, "param": null, "code": code}})
}

// ---------------------------------------------------------------------------
// Provider side: talking to an OpenAI-compatible upstream.
// ---------------------------------------------------------------------------

/// Which body field carries `SamplingParams::max_tokens` upstream.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum MaxTokensField {
    /// `max_completion_tokens`: what OpenAI accepts for every current model.
    #[default]
    MaxCompletionTokens,
    /// `max_tokens`: for OpenAI-compatible APIs that predate the rename.
    MaxTokens,
}

/// Variations between OpenAI-compatible upstreams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChatBodyOptions {
    pub max_tokens_field: MaxTokensField,
    /// Send `stream_options: {include_usage: true}` on streaming calls.
    pub stream_usage: bool,
    /// Send `top_k` (not an OpenAI parameter, but vLLM, Together and
    /// Fireworks accept it).
    pub top_k: bool,
    /// Send a client's reasoning request as `reasoning_effort` (OpenAI,
    /// Azure, Groq, Together, Fireworks and Databricks accept it; Mistral
    /// rejects unknown fields).
    pub reasoning_effort: bool,
}

impl Default for ChatBodyOptions {
    fn default() -> Self {
        Self {
            max_tokens_field: MaxTokensField::MaxCompletionTokens,
            stream_usage: true,
            top_k: false,
            reasoning_effort: true,
        }
    }
}

/// The upstream Chat Completions body for `request` (OpenAI defaults).
pub fn chat_request_body(request: &ChatRequest, stream: bool) -> Value {
    chat_request_body_with(request, stream, &ChatBodyOptions::default())
}

/// [`chat_request_body`] with upstream-specific options.
pub fn chat_request_body_with(
    request: &ChatRequest,
    stream: bool,
    options: &ChatBodyOptions,
) -> Value {
    chat_body(request, stream, options).to_value()
}

/// The upstream Chat Completions body for `request`, as typed parts
/// borrowed from it: written to JSON without building a `Value` tree (for
/// a chat of a few KB, the tree and its copies of every message cost about
/// as much as writing it). Its JSON is that of [`chat_request_body_with`]
/// byte for byte.
pub fn chat_body<'a>(
    request: &'a ChatRequest,
    stream: bool,
    options: &ChatBodyOptions,
) -> ChatBody<'a> {
    use BodyField as F;
    let mut fields: Vec<(&'a str, BodyField<'a>)> = Vec::with_capacity(16);
    fields.push(("model", F::Str(&request.model)));
    fields.push(("messages", F::Messages(wire_messages(request))));
    if !request.tools.is_empty() {
        fields.push(("tools", F::Tools(&request.tools)));
    }
    if let Some(choice) = &request.tool_choice {
        fields.push(("tool_choice", F::ToolChoice(choice)));
    }
    let params = &request.params;
    if let Some(max) = params.max_tokens {
        let key = match options.max_tokens_field {
            MaxTokensField::MaxCompletionTokens => "max_completion_tokens",
            MaxTokensField::MaxTokens => "max_tokens",
        };
        fields.push((key, F::U32(max)));
    }
    let floats = [
        ("temperature", params.temperature),
        ("top_p", params.top_p),
        ("presence_penalty", params.presence_penalty),
        ("frequency_penalty", params.frequency_penalty),
    ];
    fields.extend(
        floats
            .into_iter()
            .filter_map(|(key, value)| Some((key, F::F64(value?)))),
    );
    if options.top_k
        && let Some(top_k) = params.top_k
    {
        fields.push(("top_k", F::U32(top_k)));
    }
    if !params.stop.is_empty() {
        fields.push(("stop", F::Strings(&params.stop)));
    }
    if let Some(seed) = params.seed {
        fields.push(("seed", F::I64(seed)));
    }
    if let Some(format) = &request.response_format {
        fields.push(("response_format", F::Json(format)));
    }
    // "Off" is left out: models without reasoning reject the field, and
    // those with it default to little or none.
    if options.reasoning_effort
        && let Some(effort) = request
            .reasoning
            .as_ref()
            .and_then(Reasoning::effort_level)
            .filter(|effort| *effort != ReasoningEffort::None)
    {
        fields.push(("reasoning_effort", F::Str(effort.as_str())));
    }
    if stream {
        fields.push(("stream", F::Bool(true)));
        if options.stream_usage {
            fields.push((
                "stream_options",
                F::StreamOptions {
                    include_usage: true,
                },
            ));
        }
    }
    if request.extra_dialect.as_deref() == Some(DIALECT) {
        // A field the translation set wins over an `extra` of the same name.
        let extra = request.extra.iter();
        common::push_missing(&mut fields, extra.map(|(k, v)| (k.as_str(), F::Json(v))));
    }
    ChatBody(common::SortedObject::new(fields))
}

/// A Chat Completions request body; see [`chat_body`].
#[derive(Debug)]
pub struct ChatBody<'a>(common::SortedObject<'a, BodyField<'a>>);

impl ChatBody<'_> {
    /// Drops a top-level field (e.g. `model`, for upstreams that take the
    /// model from the URL).
    pub fn remove(&mut self, key: &str) {
        self.0.remove(key);
    }

    /// The body as a `Value`, for code that edits it.
    pub fn to_value(&self) -> Value {
        self.0.to_value()
    }
}

impl Serialize for ChatBody<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}

#[derive(Debug, Serialize)]
#[serde(untagged)]
enum BodyField<'a> {
    Str(&'a str),
    Messages(Vec<WireMessage<'a>>),
    Tools(#[serde(serialize_with = "tools")] &'a [Tool]),
    ToolChoice(#[serde(serialize_with = "tool_choice")] &'a ToolChoice),
    U32(u32),
    I64(i64),
    F64(f64),
    Bool(bool),
    Strings(&'a [String]),
    Json(&'a Value),
    /// `stream_options`.
    StreamOptions {
        include_usage: bool,
    },
}

// Struct fields below are in alphabetical order: the order a `Value` object
// writes its keys in.

fn tools<S: serde::Serializer>(tools: &&[Tool], serializer: S) -> Result<S::Ok, S::Error> {
    #[derive(Serialize)]
    struct WireTool<'a> {
        function: WireFunction<'a>,
        #[serde(rename = "type")]
        kind: &'static str,
    }
    #[derive(Serialize)]
    struct WireFunction<'a> {
        #[serde(skip_serializing_if = "Option::is_none")]
        description: Option<&'a str>,
        name: &'a str,
        parameters: &'a Value,
    }
    serializer.collect_seq(tools.iter().map(|tool| WireTool {
        function: WireFunction {
            description: tool.description.as_deref(),
            name: &tool.name,
            parameters: &tool.parameters,
        },
        kind: "function",
    }))
}

fn tool_choice<S: serde::Serializer>(
    choice: &&ToolChoice,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    #[derive(Serialize)]
    struct Named<'a> {
        function: Name<'a>,
        #[serde(rename = "type")]
        kind: &'static str,
    }
    match choice {
        ToolChoice::Auto => serializer.serialize_str("auto"),
        ToolChoice::None => serializer.serialize_str("none"),
        ToolChoice::Required => serializer.serialize_str("required"),
        ToolChoice::Tool { name } => Named {
            function: Name { name },
            kind: "function",
        }
        .serialize(serializer),
    }
}

#[derive(Debug, Serialize)]
struct Name<'a> {
    name: &'a str,
}

#[derive(Debug, Serialize)]
#[serde(untagged)]
enum WireMessage<'a> {
    Tool {
        content: &'a str,
        role: &'static str,
        tool_call_id: &'a str,
    },
    Assistant {
        /// `null` when the turn is only tool calls.
        content: Option<String>,
        role: &'static str,
        #[serde(skip_serializing_if = "Vec::is_empty")]
        tool_calls: Vec<WireToolCall<'a>>,
    },
    /// System and user turns.
    Plain {
        content: WireContent<'a>,
        role: &'static str,
    },
}

#[derive(Debug, Serialize)]
#[serde(untagged)]
enum WireContent<'a> {
    Text(&'a str),
    Parts(Vec<WirePart<'a>>),
}

#[derive(Debug, Serialize)]
#[serde(untagged)]
enum WirePart<'a> {
    Text {
        text: &'a str,
        #[serde(rename = "type")]
        kind: &'static str,
    },
    Image {
        image_url: Url,
        #[serde(rename = "type")]
        kind: &'static str,
    },
}

#[derive(Debug, Serialize)]
struct Url {
    url: String,
}

#[derive(Debug, Serialize)]
struct WireToolCall<'a> {
    function: WireCalledFunction<'a>,
    id: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
}

#[derive(Debug, Serialize)]
struct WireCalledFunction<'a> {
    arguments: &'a str,
    name: &'a str,
}

fn wire_messages(request: &ChatRequest) -> Vec<WireMessage<'_>> {
    let mut out = Vec::with_capacity(request.messages.len() + 1);
    if let Some(system) = &request.system {
        out.push(WireMessage::Plain {
            content: WireContent::Text(system),
            role: "system",
        });
    }
    for message in &request.messages {
        // Tool results become `tool` messages wherever they sit (Anthropic
        // clients put them in user turns); they go first, since OpenAI wants
        // them right after the assistant turn that made the calls.
        for part in &message.content {
            if let ContentPart::ToolResult {
                tool_call_id,
                content,
                ..
            } = part
            {
                out.push(WireMessage::Tool {
                    content,
                    role: "tool",
                    tool_call_id,
                });
            }
        }
        match message.role {
            Role::User | Role::Tool => {
                let parts: Vec<WirePart> = message
                    .content
                    .iter()
                    .filter_map(|part| match part {
                        ContentPart::Text { text } => Some(WirePart::Text { text, kind: "text" }),
                        ContentPart::Image { source } => Some(WirePart::Image {
                            image_url: Url {
                                url: source.to_url(),
                            },
                            kind: "image_url",
                        }),
                        _ => None,
                    })
                    .collect();
                let had_results = message
                    .content
                    .iter()
                    .any(|p| matches!(p, ContentPart::ToolResult { .. }));
                if parts.is_empty() && (had_results || message.role == Role::Tool) {
                    continue;
                }
                // A lone text part is sent as a plain string, which every
                // OpenAI-compatible upstream accepts.
                let content = match parts.as_slice() {
                    [] => WireContent::Text(""),
                    [WirePart::Text { text, .. }] => WireContent::Text(text),
                    _ => WireContent::Parts(parts),
                };
                out.push(WireMessage::Plain {
                    content,
                    role: "user",
                });
            }
            Role::Assistant => {
                let text: String = message.text();
                let tool_calls: Vec<WireToolCall> = message
                    .content
                    .iter()
                    .filter_map(|part| match part {
                        ContentPart::ToolCall {
                            id,
                            name,
                            arguments,
                        } => Some(WireToolCall {
                            function: WireCalledFunction { arguments, name },
                            id,
                            kind: "function",
                        }),
                        _ => None,
                    })
                    .collect();
                let content = (!text.is_empty() || tool_calls.is_empty()).then_some(text);
                out.push(WireMessage::Assistant {
                    content,
                    role: "assistant",
                    tool_calls,
                });
            }
        }
    }
    out
}

fn insert_opt<T: Into<Value>>(body: &mut Map<String, Value>, key: &str, value: Option<T>) {
    if let Some(value) = value {
        body.insert(key.into(), value.into());
    }
}

/// Parses a successful Chat Completions response body; `raw` keeps the
/// whole body for passthrough to OpenAI clients.
pub fn parse_chat_completion(body: &[u8]) -> Result<ChatResponse, ProviderError> {
    // The common shape is read straight into typed views; anything they do
    // not cover exactly (an error object, an unexpected type) takes the
    // `Value` reading, which defines the behaviour.
    match wire::completion(body) {
        Some(response) => Ok(response),
        None => parse_chat_completion_value(body),
    }
}

/// The reference reading of a chat completion, through a `Value` tree.
fn parse_chat_completion_value(body: &[u8]) -> Result<ChatResponse, ProviderError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        ProviderError::bad_upstream(format!(
            "upstream chat response is not valid JSON ({e}): {}",
            common::truncate(&String::from_utf8_lossy(body), 200)
        ))
    })?;
    if let Some(error) = value.get("error").filter(|e| !e.is_null()) {
        return Err(stream_error(error));
    }
    let choice = value
        .get("choices")
        .and_then(Value::as_array)
        .and_then(|choices| {
            choices
                .iter()
                .find(|c| c.get("index").and_then(Value::as_u64).unwrap_or(0) == 0)
                .or(choices.first())
        })
        .ok_or_else(|| ProviderError::bad_upstream("upstream chat response has no choices"))?;
    let message = choice.get("message").and_then(Value::as_object);
    let mut content = Vec::new();
    if let Some(message) = message {
        if let Some(thinking) = reasoning_text(message) {
            content.push(ContentPart::Thinking {
                text: thinking.to_string(),
                signature: None,
            });
        }
        match message.get("content") {
            Some(Value::String(text)) => push_text(&mut content, text.clone()),
            Some(Value::Array(parts)) => {
                for part in parts {
                    if let Some(text) = part.get("text").and_then(Value::as_str) {
                        push_text(&mut content, text.to_string());
                    }
                }
            }
            _ => {}
        }
        if let Some(refusal) = message.get("refusal").and_then(Value::as_str) {
            push_text(&mut content, refusal.to_string());
        }
        if let Some(calls) = message.get("tool_calls").and_then(Value::as_array) {
            for call in calls {
                let Some(function) = call.get("function").and_then(Value::as_object) else {
                    continue;
                };
                content.push(ContentPart::ToolCall {
                    id: call
                        .get("id")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string(),
                    name: function
                        .get("name")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string(),
                    arguments: arguments_text(function),
                });
            }
        }
    }
    let finish_reason = choice
        .get("finish_reason")
        .and_then(Value::as_str)
        .map(parse_finish_reason)
        .unwrap_or_default();
    Ok(ChatResponse {
        id: str_field(&value, "id"),
        model: str_field(&value, "model"),
        content,
        finish_reason,
        usage: value.get("usage").map(parse_usage).unwrap_or_default(),
        raw: RawJson::from_body(body),
    })
}

fn reasoning_text(obj: &Map<String, Value>) -> Option<&str> {
    ["reasoning_content", "reasoning"]
        .iter()
        .filter_map(|k| obj.get(*k).and_then(Value::as_str))
        .find(|t| !t.is_empty())
}

fn str_field(value: &Value, key: &str) -> String {
    value
        .get(key)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

fn parse_finish_reason(reason: &str) -> FinishReason {
    match reason {
        "length" => FinishReason::Length,
        "tool_calls" | "function_call" => FinishReason::ToolCalls,
        "content_filter" => FinishReason::ContentFilter,
        "error" => FinishReason::Error,
        _ => FinishReason::Stop,
    }
}

fn parse_usage(value: &Value) -> Usage {
    let count = |value: Option<&Value>| value.and_then(Value::as_u64);
    usage_from_counts(
        count(value.get("prompt_tokens")),
        count(value.get("completion_tokens")),
        count(
            value
                .get("prompt_tokens_details")
                .and_then(|details| details.get("cached_tokens")),
        ),
    )
}

fn usage_from_counts(prompt: Option<u64>, completion: Option<u64>, cached: Option<u64>) -> Usage {
    let clamp = |n: u64| n.min(u32::MAX as u64) as u32;
    Usage {
        input_tokens: prompt.map_or(0, clamp),
        output_tokens: completion.map_or(0, clamp),
        cached_input_tokens: cached.map(clamp),
    }
}

/// Typed, borrowed views of an upstream chat completion and stream chunk:
/// the fast readings of [`parse_chat_completion`] and
/// [`ChunkDecoder::decode_typed`]. Building a `Value` tree (a `BTreeMap`
/// per object, every key and string copied) was most of a response's
/// parse. Each view is strict where the `Value` reading is lenient (a field
/// of an unexpected type fails the whole reading), so an input either reads
/// the same both ways or falls back; the tests compare the two.
mod wire {
    use std::borrow::Cow;

    use serde::Deserialize;
    use serde::de::IgnoredAny;
    use serde_json::value::RawValue;

    use super::{ChatResponse, ContentPart, RawJson, Value, push_text};

    #[derive(Deserialize)]
    struct Completion<'a> {
        id: Option<String>,
        model: Option<String>,
        #[serde(borrow)]
        choices: Option<Vec<Choice<'a>>>,
        usage: Option<Usage>,
        /// Present and not null: an error document, for the `Value` path.
        error: Option<IgnoredAny>,
    }

    #[derive(Deserialize)]
    struct Choice<'a> {
        index: Option<u64>,
        #[serde(borrow)]
        message: Option<Message<'a>>,
        finish_reason: Option<String>,
    }

    #[derive(Deserialize)]
    struct Message<'a> {
        /// A string or an array of parts; read once its kind is known.
        #[serde(borrow)]
        content: Option<&'a RawValue>,
        reasoning_content: Option<String>,
        reasoning: Option<String>,
        refusal: Option<String>,
        #[serde(borrow)]
        tool_calls: Option<Vec<ToolCall<'a>>>,
    }

    #[derive(Deserialize)]
    struct Part {
        text: Option<String>,
    }

    #[derive(Deserialize)]
    struct ToolCall<'a> {
        id: Option<String>,
        #[serde(borrow)]
        function: Option<Function<'a>>,
    }

    #[derive(Deserialize)]
    struct Function<'a> {
        name: Option<String>,
        #[serde(borrow)]
        arguments: Option<&'a RawValue>,
    }

    #[derive(Deserialize)]
    struct Usage {
        prompt_tokens: Option<u64>,
        completion_tokens: Option<u64>,
        prompt_tokens_details: Option<UsageDetails>,
    }

    #[derive(Deserialize)]
    struct UsageDetails {
        cached_tokens: Option<u64>,
    }

    impl Usage {
        fn neutral(&self) -> super::Usage {
            super::usage_from_counts(
                self.prompt_tokens,
                self.completion_tokens,
                self.prompt_tokens_details
                    .as_ref()
                    .and_then(|d| d.cached_tokens),
            )
        }
    }

    #[derive(Deserialize)]
    pub(super) struct Chunk<'a> {
        #[serde(borrow, default, deserialize_with = "text")]
        id: Option<Cow<'a, str>>,
        #[serde(borrow, default, deserialize_with = "text")]
        model: Option<Cow<'a, str>>,
        #[serde(borrow)]
        choices: Option<Vec<ChunkChoice<'a>>>,
        usage: Option<Usage>,
        /// Present and not null, each of these sends the chunk to the
        /// `Value` reading.
        error: Option<IgnoredAny>,
        prompt_filter_results: Option<IgnoredAny>,
        x_groq: Option<IgnoredAny>,
    }

    #[derive(Deserialize)]
    struct ChunkChoice<'a> {
        index: Option<u64>,
        #[serde(borrow)]
        delta: Option<Delta<'a>>,
        #[serde(borrow, default, deserialize_with = "text")]
        finish_reason: Option<Cow<'a, str>>,
    }

    #[derive(Deserialize)]
    struct Delta<'a> {
        #[serde(borrow, default, deserialize_with = "text")]
        content: Option<Cow<'a, str>>,
        #[serde(borrow, default, deserialize_with = "text")]
        refusal: Option<Cow<'a, str>>,
        #[serde(borrow, default, deserialize_with = "text")]
        reasoning_content: Option<Cow<'a, str>>,
        #[serde(borrow, default, deserialize_with = "text")]
        reasoning: Option<Cow<'a, str>>,
        #[serde(borrow)]
        tool_calls: Option<Vec<CallDelta<'a>>>,
    }

    #[derive(Deserialize)]
    struct CallDelta<'a> {
        #[serde(borrow, default, deserialize_with = "text")]
        id: Option<Cow<'a, str>>,
        index: Option<u64>,
        #[serde(borrow)]
        function: Option<FunctionDelta<'a>>,
    }

    #[derive(Deserialize)]
    struct FunctionDelta<'a> {
        #[serde(borrow, default, deserialize_with = "text")]
        name: Option<Cow<'a, str>>,
        #[serde(borrow, default, deserialize_with = "text")]
        arguments: Option<Cow<'a, str>>,
    }

    /// An optional string, borrowed from the input unless it has escapes
    /// (serde's own `Cow` always copies; most stream tokens need no copy
    /// until they become events).
    fn text<'de, D: serde::Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Cow<'de, str>>, D::Error> {
        struct Text;
        impl<'de> serde::de::Visitor<'de> for Text {
            type Value = Option<Cow<'de, str>>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string or null")
            }
            fn visit_none<E>(self) -> Result<Self::Value, E> {
                Ok(None)
            }
            fn visit_unit<E>(self) -> Result<Self::Value, E> {
                Ok(None)
            }
            fn visit_some<D: serde::Deserializer<'de>>(
                self,
                deserializer: D,
            ) -> Result<Self::Value, D::Error> {
                deserializer.deserialize_str(self)
            }
            fn visit_borrowed_str<E>(self, text: &'de str) -> Result<Self::Value, E> {
                Ok(Some(Cow::Borrowed(text)))
            }
            fn visit_str<E>(self, text: &str) -> Result<Self::Value, E> {
                Ok(Some(Cow::Owned(text.to_owned())))
            }
            fn visit_string<E>(self, text: String) -> Result<Self::Value, E> {
                Ok(Some(Cow::Owned(text)))
            }
        }
        deserializer.deserialize_option(Text)
    }

    /// A stream chunk read through the typed views; `None` when they do not
    /// cover it.
    pub(super) fn chunk(data: &str) -> Option<Chunk<'_>> {
        let chunk: Chunk = serde_json::from_str(data).ok()?;
        if chunk.error.is_some() || chunk.prompt_filter_results.is_some() || chunk.x_groq.is_some()
        {
            return None;
        }
        Some(chunk)
    }

    impl Chunk<'_> {
        /// What the chunk says, for `ChunkDecoder::apply`.
        pub(super) fn view(&self) -> super::ChunkView<'_> {
            let chunk = self;
            fn text<'b>(value: &'b Option<Cow<'_, str>>) -> Option<&'b str> {
                value.as_deref()
            }
            super::ChunkView {
                id: text(&chunk.id),
                model: text(&chunk.model),
                choices: chunk
                    .choices
                    .iter()
                    .flatten()
                    .filter(|choice| choice.index.unwrap_or(0) == 0)
                    .map(|choice| super::ChoiceView {
                        delta: choice.delta.as_ref().map(|delta| super::DeltaView {
                            reasoning: [&delta.reasoning_content, &delta.reasoning]
                                .into_iter()
                                .filter_map(text)
                                .find(|t| !t.is_empty()),
                            content: text(&delta.content),
                            refusal: text(&delta.refusal),
                            tool_calls: delta
                                .tool_calls
                                .iter()
                                .flatten()
                                .map(|call| super::CallView {
                                    id: text(&call.id),
                                    index: call.index,
                                    name: call.function.as_ref().and_then(|f| text(&f.name)),
                                    arguments: call
                                        .function
                                        .as_ref()
                                        .and_then(|f| text(&f.arguments)),
                                })
                                .collect(),
                        }),
                        finish_reason: text(&choice.finish_reason),
                    })
                    .collect(),
                usage: chunk.usage.as_ref().map(Usage::neutral),
            }
        }
    }

    /// `None` when the typed views do not cover this body.
    pub(super) fn completion(body: &[u8]) -> Option<ChatResponse> {
        let completion: Completion = serde_json::from_slice(body).ok()?;
        if completion.error.is_some() {
            return None;
        }
        let mut choices = completion.choices?;
        let at = choices
            .iter()
            .position(|c| c.index.unwrap_or(0) == 0)
            .or(if choices.is_empty() { None } else { Some(0) })?;
        let choice = choices.swap_remove(at);
        let mut content = Vec::new();
        if let Some(message) = choice.message {
            let thinking = [message.reasoning_content, message.reasoning]
                .into_iter()
                .flatten()
                .find(|t| !t.is_empty());
            if let Some(text) = thinking {
                content.push(ContentPart::Thinking {
                    text,
                    signature: None,
                });
            }
            if let Some(raw) = message.content {
                match raw.get().as_bytes().first() {
                    Some(b'"') => push_text(&mut content, serde_json::from_str(raw.get()).ok()?),
                    Some(b'[') => {
                        let parts: Vec<Part> = serde_json::from_str(raw.get()).ok()?;
                        for text in parts.into_iter().filter_map(|part| part.text) {
                            push_text(&mut content, text);
                        }
                    }
                    _ => {}
                }
            }
            if let Some(refusal) = message.refusal {
                push_text(&mut content, refusal);
            }
            for call in message.tool_calls.into_iter().flatten() {
                let Some(function) = call.function else {
                    continue;
                };
                content.push(ContentPart::ToolCall {
                    id: call.id.unwrap_or_default(),
                    name: function.name.unwrap_or_default(),
                    arguments: arguments_text(function.arguments)?,
                });
            }
        }
        let usage = completion
            .usage
            .as_ref()
            .map_or_else(Default::default, Usage::neutral);
        Some(ChatResponse {
            id: completion.id.unwrap_or_default(),
            model: completion.model.unwrap_or_default(),
            content,
            finish_reason: choice
                .finish_reason
                .as_deref()
                .map(super::parse_finish_reason)
                .unwrap_or_default(),
            usage,
            raw: RawJson::from_body(body),
        })
    }

    /// As `super::arguments_text`: a string as is, anything else as JSON.
    fn arguments_text(arguments: Option<&RawValue>) -> Option<String> {
        match arguments {
            None => Some(String::new()),
            Some(raw) if raw.get().starts_with('"') => serde_json::from_str(raw.get()).ok(),
            Some(raw) => serde_json::from_str::<Value>(raw.get())
                .ok()
                .map(|value| value.to_string()),
        }
    }
}

/// An error object found inside a 200 body or a stream chunk.
fn stream_error(error: &Value) -> ProviderError {
    let message = common::json_error_message(&json!({ "error": error })).unwrap_or_else(|| {
        format!(
            "upstream reported an error: {}",
            common::truncate(&error.to_string(), 300)
        )
    });
    let kind = match error
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or_default()
    {
        "invalid_request_error" => ErrorKind::InvalidRequest,
        "authentication_error" => ErrorKind::Authentication,
        "permission_error" => ErrorKind::Permission,
        "not_found_error" => ErrorKind::NotFound,
        "rate_limit_error" | "tokens" | "requests" => ErrorKind::RateLimited,
        "overloaded_error" => ErrorKind::Overloaded,
        _ => ErrorKind::Upstream,
    };
    ProviderError::new(kind, message)
}

/// Decodes the `data:` payloads of a streamed Chat Completions response.
#[derive(Debug, Clone, Default)]
pub struct ChunkDecoder {
    started: bool,
    done: bool,
    finished: bool,
    /// Upstream (index, id) of each tool call seen; the position is the
    /// neutral index.
    tool_calls: Vec<(u64, String)>,
}

impl ChunkDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether `[DONE]` was seen.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Whether a `finish_reason` was seen.
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// Events of one SSE `data:` payload (one `chat.completion.chunk`).
    pub fn decode(&mut self, data: &str) -> Result<Vec<StreamEvent>, ProviderError> {
        let data = data.trim();
        if data.is_empty() {
            return Ok(Vec::new());
        }
        if data == "[DONE]" {
            self.done = true;
            return Ok(Vec::new());
        }
        if let Some(events) = self.decode_typed(data) {
            return Ok(events);
        }
        let chunk: Value = serde_json::from_str(data).map_err(|e| {
            ProviderError::bad_upstream(format!(
                "upstream stream chunk is not valid JSON ({e}): {}",
                common::truncate(data, 200)
            ))
        })?;
        self.decode_chunk(&chunk)
    }

    /// Events of a chunk in the common shape, read through typed views
    /// without a `Value` tree; `None` (and no state change) when the chunk
    /// needs [`decode_chunk`](Self::decode_chunk): an error object, a
    /// field of an unexpected type, not JSON, or an Azure
    /// `prompt_filter_results` / Groq `x_groq` chunk, which callers adjust
    /// as a `Value` first.
    pub fn decode_typed(&mut self, data: &str) -> Option<Vec<StreamEvent>> {
        let chunk = wire::chunk(data)?;
        Some(self.apply(chunk.view()))
    }

    /// Events of one already parsed `chat.completion.chunk` (for callers
    /// that look at the chunk themselves first).
    pub fn decode_chunk(&mut self, chunk: &Value) -> Result<Vec<StreamEvent>, ProviderError> {
        if let Some(error) = chunk.get("error").filter(|e| !e.is_null()) {
            return Err(stream_error(error));
        }
        fn as_str(value: Option<&Value>) -> Option<&str> {
            value.and_then(Value::as_str)
        }
        let choices = chunk
            .get("choices")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .filter(|c| c.get("index").and_then(Value::as_u64).unwrap_or(0) == 0)
            .map(|choice| ChoiceView {
                delta: choice
                    .get("delta")
                    .and_then(Value::as_object)
                    .map(|delta| DeltaView {
                        reasoning: reasoning_text(delta),
                        content: as_str(delta.get("content")),
                        refusal: as_str(delta.get("refusal")),
                        tool_calls: delta
                            .get("tool_calls")
                            .and_then(Value::as_array)
                            .map(Vec::as_slice)
                            .unwrap_or_default()
                            .iter()
                            .map(|call| {
                                let function = call.get("function");
                                CallView {
                                    id: as_str(call.get("id")),
                                    index: call.get("index").and_then(Value::as_u64),
                                    name: as_str(function.and_then(|f| f.get("name"))),
                                    arguments: as_str(function.and_then(|f| f.get("arguments"))),
                                }
                            })
                            .collect(),
                    }),
                finish_reason: as_str(choice.get("finish_reason")),
            })
            .collect();
        Ok(self.apply(ChunkView {
            id: as_str(chunk.get("id")),
            model: as_str(chunk.get("model")),
            choices,
            usage: chunk
                .get("usage")
                .filter(|u| u.is_object())
                .map(parse_usage),
        }))
    }

    /// The one place a chunk's content becomes events and decoder state,
    /// whichever reading produced the view.
    fn apply(&mut self, chunk: ChunkView) -> Vec<StreamEvent> {
        let mut events = Vec::new();
        if !self.started {
            self.started = true;
            events.push(StreamEvent::Start {
                id: chunk.id.unwrap_or_default().to_string(),
                model: chunk.model.unwrap_or_default().to_string(),
            });
        }
        for choice in chunk.choices {
            if let Some(delta) = choice.delta {
                self.apply_delta(delta, &mut events);
            }
            if let Some(reason) = choice.finish_reason
                && !self.finished
            {
                self.finished = true;
                events.push(StreamEvent::Finish {
                    reason: parse_finish_reason(reason),
                });
            }
        }
        if let Some(usage) = chunk.usage {
            events.push(StreamEvent::Usage { usage });
        }
        events
    }

    fn apply_delta(&mut self, delta: DeltaView, events: &mut Vec<StreamEvent>) {
        if let Some(text) = delta.reasoning {
            events.push(StreamEvent::ThinkingDelta {
                text: text.to_string(),
            });
        }
        for text in [delta.content, delta.refusal].into_iter().flatten() {
            if !text.is_empty() {
                events.push(StreamEvent::TextDelta {
                    text: text.to_string(),
                });
            }
        }
        for call in delta.tool_calls {
            let id = call.id.filter(|id| !id.is_empty());
            let name = call.name.unwrap_or_default();
            let arguments = call.arguments.unwrap_or_default();
            // Upstreams that omit `index` send one complete call per delta.
            let upstream_index = call.index;
            let existing = self.tool_calls.iter().rposition(|(index, known_id)| {
                upstream_index.is_none_or(|u| u == *index) && id.is_none_or(|id| id == known_id)
            });
            let position = match existing {
                Some(position) => position,
                None => {
                    let position = self.tool_calls.len();
                    let id = id
                        .map(str::to_string)
                        .unwrap_or_else(|| format!("call_{position}"));
                    let upstream = upstream_index.unwrap_or(position as u64);
                    self.tool_calls.push((upstream, id.clone()));
                    events.push(StreamEvent::ToolCallStart {
                        index: position as u32,
                        id,
                        name: name.to_string(),
                    });
                    position
                }
            };
            if !arguments.is_empty() {
                events.push(StreamEvent::ToolCallDelta {
                    index: position as u32,
                    arguments: arguments.to_string(),
                });
            }
        }
    }
}

/// What a stream chunk says, borrowed from either reading of it.
struct ChunkView<'a> {
    id: Option<&'a str>,
    model: Option<&'a str>,
    /// Choice 0's entries.
    choices: Vec<ChoiceView<'a>>,
    usage: Option<Usage>,
}

struct ChoiceView<'a> {
    delta: Option<DeltaView<'a>>,
    finish_reason: Option<&'a str>,
}

struct DeltaView<'a> {
    /// The first non-empty of `reasoning_content` and `reasoning`.
    reasoning: Option<&'a str>,
    content: Option<&'a str>,
    refusal: Option<&'a str>,
    tool_calls: Vec<CallView<'a>>,
}

struct CallView<'a> {
    id: Option<&'a str>,
    index: Option<u64>,
    name: Option<&'a str>,
    arguments: Option<&'a str>,
}

/// The upstream Embeddings body; always asks for float vectors (what
/// [`parse_embeddings`] reads), whatever encoding the client wants.
pub fn embeddings_request_body(request: &EmbeddingsRequest) -> Value {
    let mut body = Map::new();
    body.insert("model".into(), request.model.clone().into());
    body.insert("input".into(), request.inputs.clone().into());
    body.insert("encoding_format".into(), "float".into());
    insert_opt(&mut body, "dimensions", request.dimensions);
    if request.extra_dialect.as_deref() == Some(DIALECT) {
        for (key, value) in &request.extra {
            body.entry(key.clone()).or_insert_with(|| value.clone());
        }
    }
    Value::Object(body)
}

/// Parses a successful Embeddings response (float arrays, or base64 from
/// upstreams that ignore `encoding_format`), in input order.
pub fn parse_embeddings(body: &[u8]) -> Result<EmbeddingsResponse, ProviderError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        ProviderError::bad_upstream(format!(
            "upstream embeddings response is not valid JSON ({e}): {}",
            common::truncate(&String::from_utf8_lossy(body), 200)
        ))
    })?;
    if let Some(error) = value.get("error").filter(|e| !e.is_null()) {
        return Err(stream_error(error));
    }
    let data = value.get("data").and_then(Value::as_array).ok_or_else(|| {
        ProviderError::bad_upstream("upstream embeddings response has no data array")
    })?;
    let mut indexed = Vec::with_capacity(data.len());
    for (position, item) in data.iter().enumerate() {
        let index = item
            .get("index")
            .and_then(Value::as_u64)
            .unwrap_or(position as u64);
        let vector = match item.get("embedding") {
            Some(Value::Array(numbers)) => numbers
                .iter()
                .map(|n| n.as_f64().map(|f| f as f32))
                .collect::<Option<Vec<f32>>>()
                .ok_or_else(|| {
                    ProviderError::bad_upstream("upstream embedding contains a non-number")
                })?,
            Some(Value::String(encoded)) => common::base64_to_f32s(encoded).map_err(|e| {
                ProviderError::bad_upstream(format!("upstream base64 embedding: {e}"))
            })?,
            _ => {
                return Err(ProviderError::bad_upstream(
                    "upstream embeddings item has no embedding",
                ));
            }
        };
        indexed.push((index, vector));
    }
    indexed.sort_by_key(|(index, _)| *index);
    Ok(EmbeddingsResponse {
        model: str_field(&value, "model"),
        embeddings: indexed.into_iter().map(|(_, v)| v).collect(),
        usage: value.get("usage").map(parse_usage).unwrap_or_default(),
    })
}

/// Maps an upstream error response: OpenAI's `{"error": {"message"}}`
/// (and other common shapes), kind from the status, `Retry-After` /
/// `retry-after-ms` in milliseconds, non-JSON bodies quoted truncated.
pub fn parse_error(status: u16, headers: &[(String, String)], body: &[u8]) -> ProviderError {
    common::upstream_error(status, headers, body, common::system_now_ms())
}

// ---------------------------------------------------------------------------
// Small JSON readers with client-facing messages.
// ---------------------------------------------------------------------------

fn invalid(path: &str, problem: &str) -> ProviderError {
    ProviderError::invalid_request(format!("'{path}' {problem}"))
}

fn parse_object(body: &[u8]) -> Result<Map<String, Value>, ProviderError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(obj)) => Ok(obj),
        Ok(_) => Err(ProviderError::invalid_request(
            "request body must be a JSON object",
        )),
        Err(e) => Err(ProviderError::invalid_request(format!(
            "request body is not valid JSON: {e}"
        ))),
    }
}

/// A field, treating JSON `null` as absent (clients send explicit nulls).
fn field<'a>(obj: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    obj.get(key).filter(|v| !v.is_null())
}

fn required_str<'a>(obj: &'a Map<String, Value>, key: &str) -> Result<&'a str, ProviderError> {
    match field(obj, key) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s),
        Some(_) => Err(invalid(key, "must be a non-empty string")),
        None => Err(invalid(key, "is required")),
    }
}

fn opt_f64(obj: &Map<String, Value>, key: &str) -> Result<Option<f64>, ProviderError> {
    field(obj, key)
        .map(|v| v.as_f64().ok_or_else(|| invalid(key, "must be a number")))
        .transpose()
}

fn opt_u32(obj: &Map<String, Value>, key: &str) -> Result<Option<u32>, ProviderError> {
    field(obj, key)
        .map(|v| {
            v.as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .ok_or_else(|| invalid(key, "must be a non-negative integer"))
        })
        .transpose()
}

fn opt_i64(obj: &Map<String, Value>, key: &str) -> Result<Option<i64>, ProviderError> {
    field(obj, key)
        .map(|v| v.as_i64().ok_or_else(|| invalid(key, "must be an integer")))
        .transpose()
}

fn opt_bool(obj: &Map<String, Value>, key: &str) -> Result<Option<bool>, ProviderError> {
    field(obj, key)
        .map(|v| v.as_bool().ok_or_else(|| invalid(key, "must be a boolean")))
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Completions the typed views must read, each exactly as the `Value`
    /// reading does.
    const COVERED: &[&str] = &[
        r#"{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"gpt-x","choices":[{"index":0,"message":{"role":"assistant","content":"Hello \"there\"\n"},"finish_reason":"stop"}],"usage":{"prompt_tokens":12,"completion_tokens":3,"total_tokens":15}}"#,
        r#"{"id":"c","model":"m","choices":[{"index":1,"message":{"content":"second"},"finish_reason":"length"},{"index":0,"message":{"content":"first","refusal":null},"finish_reason":"stop"}]}"#,
        r#"{"id":"c","choices":[{"message":{"content":null,"tool_calls":[{"id":"call_1","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Paris\"}"}},{"id":"call_2","function":{"name":"obj","arguments":{"b":1,"a":[true,null]}}},{"id":"call_3","function":null},{"function":{"name":"none","arguments":null}}]},"finish_reason":"tool_calls"}],"usage":{"prompt_tokens":5,"completion_tokens":7,"prompt_tokens_details":{"cached_tokens":4}}}"#,
        r#"{"choices":[{"index":0,"message":{"reasoning_content":"","reasoning":"think","content":[{"type":"text","text":"a"},{"type":"image_url","image_url":{"url":"x"}},{"text":""},{"text":"b"}],"refusal":"no"},"finish_reason":"content_filter"}],"usage":{"prompt_tokens":99999999999,"completion_tokens":1,"prompt_tokens_details":null},"error":null}"#,
        r#"{"choices":[{"message":null,"finish_reason":null}],"usage":null,"system_fingerprint":"fp","service_tier":"default"}"#,
        "  {\"choices\":[{\"message\":{\"content\":42}}]}\n",
    ];

    /// Bodies the typed views leave to the `Value` reading.
    const FALLBACK: &[&str] = &[
        r#"{"error":{"message":"overloaded","type":"overloaded_error"}}"#,
        r#"{"choices":[]}"#,
        r#"{"id":"c"}"#,
        r#"{"choices":[{"index":"0","message":{"content":"x"}}]}"#,
        r#"{"choices":[{"message":{"content":"x","reasoning":{"summary":"s"}}}]}"#,
        r#"{"choices":[{"message":{"content":"x"}}],"usage":{"prompt_tokens":1.5}}"#,
        r#"{"choices":[{"message":{"content":["plain"]}}]}"#,
        r#"{"id":"a","id":"b","choices":[{"message":{"content":"x"}}]}"#,
        "not json",
    ];

    /// Chat requests the plain reading must read exactly as the `Value`
    /// reading does.
    const PLAIN_REQUESTS: &[&str] = &[
        r#"{"model":"gpt","messages":[{"role":"user","content":"hi"}]}"#,
        r#"{"messages":[{"role":"system","content":"Be brief."},{"role":"developer","content":"Use \"quotes\"\n"},{"role":"user","content":""},{"role":"assistant","content":""},{"role":"assistant","content":"\u00e9t\u00e9"},{"role":"user","content":"and?"}],"model":"claude","stream":true,"stream_options":{"include_usage":true},"n":1,"max_tokens":256,"max_completion_tokens":100,"temperature":0.2,"top_p":1,"seed":-7,"presence_penalty":-0.5,"frequency_penalty":2e-1}"#,
        r#"{"model":"m","messages":[{"role":"user","content":"x"}],"stream":null,"stream_options":null,"n":null,"max_tokens":null,"temperature":null,"top_p":null,"seed":null}"#,
        r#"{"model":"m","messages":[{"role":"user","content":"x"}],"stream":false,"stream_options":{"include_usage":null},"max_tokens":4294967295}"#,
        " {\"model\":\"m\",\"messages\":[{\"role\":\"system\",\"content\":\"only system\"},{\"role\":\"user\",\"content\":\"x\"}]}\n",
    ];

    /// Chat requests the plain reading leaves to the `Value` reading.
    const NOT_PLAIN_REQUESTS: &[&str] = &[
        r#"{"model":"m","messages":[{"role":"user","content":"x"}],"user":"u1"}"#,
        r#"{"model":"m","messages":[{"role":"user","content":"x"}],"reasoning_effort":"low"}"#,
        r#"{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"x"}]}]}"#,
        r#"{"model":"m","messages":[{"role":"user","content":"x","name":"ann"}]}"#,
        r#"{"model":"m","messages":[{"role":"tool","content":"x","tool_call_id":"c"}]}"#,
        r#"{"model":"m","messages":[{"role":"function","content":"x"}]}"#,
        r#"{"model":"m","messages":[{"role":"assistant","content":null}]}"#,
        r#"{"model":"m","messages":[{"role":"user","content":"x"}],"n":2}"#,
        r#"{"model":"m","messages":[{"role":"user","content":"x"}],"max_tokens":-1}"#,
        r#"{"model":"m","messages":[{"role":"user","content":"x"}],"max_tokens":1.0}"#,
        r#"{"model":"m","messages":[{"role":"user","content":"x"}],"stream":"yes"}"#,
        r#"{"model":"m","messages":[{"role":"user","content":"x"}],"stream_options":{"include_obfuscation":false}}"#,
        r#"{"model":"m","model":"n","messages":[{"role":"user","content":"x"}]}"#,
        r#"{"model":"","messages":[{"role":"user","content":"x"}]}"#,
        r#"{"model":"m","messages":[]}"#,
        r#"{"messages":[{"role":"user","content":"x"}]}"#,
        r#"{"model":"m","messages":[{"role":"user","content":"x"}]} trailing"#,
        "[]",
    ];

    #[test]
    fn plain_chat_reading_matches_the_value_reading() {
        for body in PLAIN_REQUESTS {
            let plain = plain_chat::parse(body.as_bytes());
            let Some(plain) = plain else {
                panic!("the plain reading should cover {body}");
            };
            // The `Value` reading alone, as `parse_chat_request` runs it
            // when the plain reading declines.
            let reference = parse_chat_request_value(body.as_bytes());
            assert_eq!(Ok(plain), reference, "{body}");
        }
        for body in NOT_PLAIN_REQUESTS {
            assert!(plain_chat::parse(body.as_bytes()).is_none(), "{body}");
            assert_eq!(
                parse_chat_request(body.as_bytes()),
                parse_chat_request_value(body.as_bytes()),
                "{body}"
            );
        }
    }

    #[test]
    fn typed_chunk_reading_matches_the_value_reading() {
        let stream = [
            r#"{"id":"c1","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}],"usage":null,"obfuscation":"x"}"#,
            r#"{"id":"c1","choices":[{"index":0,"delta":{"content":"He said \"hi\"\n"}}]}"#,
            r#"{"id":"c1","choices":[{"index":0,"delta":{"reasoning_content":"","reasoning":"think","refusal":"no"}},{"index":1,"delta":{"content":"other choice"}}]}"#,
            r#"{"choices":[{"delta":{"tool_calls":[{"index":0,"id":"call_a","type":"function","function":{"name":"f","arguments":""}}]}}]}"#,
            r#"{"choices":[{"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"x\":"}},{"index":1,"id":"call_b","function":{"name":"g","arguments":"{}"}}]}}]}"#,
            r#"{"choices":[{"delta":{"tool_calls":[{"id":"","function":{"name":"h","arguments":"{}"}},{"index":0,"function":null}]}}]}"#,
            r#"{"choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}"#,
            r#"{"choices":[{"index":0,"delta":null,"finish_reason":"stop"}]}"#,
            r#"{"id":"c1","choices":[],"usage":{"prompt_tokens":9,"completion_tokens":4,"prompt_tokens_details":{"cached_tokens":2}}}"#,
            r#"{"choices":null}"#,
        ];
        let mut typed = ChunkDecoder::new();
        let mut reference = ChunkDecoder::new();
        for data in stream {
            let Some(events) = typed.decode_typed(data) else {
                panic!("typed views should cover {data}");
            };
            let value: Value = serde_json::from_str(data).unwrap_or_default();
            assert_eq!(Ok(events), reference.decode_chunk(&value), "{data}");
            assert_eq!(typed.tool_calls, reference.tool_calls);
            assert_eq!(
                (typed.started, typed.finished),
                (reference.started, reference.finished)
            );
        }
        // Chunks left to the `Value` reading, with no state change.
        for data in [
            "[DONE]",
            "",
            r#"{"error":{"message":"boom"}}"#,
            r#"{"choices":[],"prompt_filter_results":[{"prompt_index":0}]}"#,
            r#"{"choices":[],"x_groq":{"usage":{"prompt_tokens":1}}}"#,
            r#"{"choices":[{"delta":{"tool_calls":[{"function":{"arguments":{"x":1}}}]}}]}"#,
            r#"{"choices":[{"index":-1,"delta":{"content":"x"}}]}"#,
            r#"{"choices":[{"delta":{"content":"x"}}],"usage":"n/a"}"#,
        ] {
            let mut decoder = ChunkDecoder::new();
            assert!(decoder.decode_typed(data).is_none(), "{data}");
            assert!(!decoder.started && decoder.tool_calls.is_empty(), "{data}");
        }
    }

    #[test]
    fn typed_completion_reading_matches_the_value_reading() {
        for body in COVERED {
            let typed = wire::completion(body.as_bytes())
                .unwrap_or_else(|| panic!("typed views should cover {body}"));
            let reference = parse_chat_completion_value(body.as_bytes());
            assert_eq!(Ok(typed), reference, "{body}");
        }
        for body in FALLBACK {
            assert!(wire::completion(body.as_bytes()).is_none(), "{body}");
            assert_eq!(
                parse_chat_completion(body.as_bytes()),
                parse_chat_completion_value(body.as_bytes()),
                "{body}"
            );
        }
    }
}
