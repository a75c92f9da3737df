//! Cohere v2 API wire format, provider side (a plugin calling
//! api.cohere.com): chat (`POST /v2/chat`, plain and SSE-streamed) and
//! embeddings (`POST /v2/embed`).
//!
//! Requests: [`chat_request_body`], [`embed_request_body`]. Answers:
//! [`parse_chat_response`], [`EventDecoder`] (typed stream events),
//! [`parse_embed_response`], [`parse_error`].
//!
//! Mapping notes:
//! - Cohere's `tool_plan` (the model's reasoning before it calls tools) and
//!   `thinking` content are neutral `Thinking` parts; an assistant turn
//!   that called tools goes back with its thinking and text as `tool_plan`
//!   (the shape Cohere itself answers with), other thinking is dropped.
//! - `tool_choice` has only `REQUIRED` and `NONE`: a forced tool is sent as
//!   `REQUIRED` with only that tool offered.
//! - Usage counts Cohere's `billed_units` (what prices apply to), falling
//!   back to the raw `tokens` counts when a response has no billed units.

use std::collections::HashMap;

use serde_json::{Map, Value, json};

use super::common;

use crate::{
    ChatRequest, ChatResponse, ContentPart, EmbeddingsRequest, EmbeddingsResponse, ErrorKind,
    FinishReason, ImageSource, Message, ProviderError, RawJson, Reasoning, Role, StreamEvent,
    ToolChoice, Usage,
};

/// `input_type` sent when the neutral request names none: Cohere requires
/// one for v3+ embedding models, and documents are the common case.
pub const DEFAULT_INPUT_TYPE: &str = "search_document";

// ---------------------------------------------------------------------------
// Requests
// ---------------------------------------------------------------------------

/// The `POST /v2/chat` body for `request`.
/// Cohere's `thinking` (reasoning models such as Command A Reasoning) for a
/// reasoning request: off, or on with the budget asked for, if any.
fn thinking(reasoning: &Reasoning) -> Value {
    if reasoning.is_off() {
        return json!({"type": "disabled"});
    }
    match reasoning.thinking_budget() {
        Some(budget) => json!({"type": "enabled", "token_budget": budget}),
        None => json!({"type": "enabled"}),
    }
}

pub fn chat_request_body(request: &ChatRequest, stream: bool) -> Value {
    let mut body = Map::new();
    body.insert("model".into(), json!(request.model));
    body.insert(
        "messages".into(),
        Value::Array(wire_messages(request.system.as_deref(), &request.messages)),
    );

    // A forced tool: Cohere can only force "some tool", so offer just that one.
    let forced = match &request.tool_choice {
        Some(ToolChoice::Tool { name }) => Some(name.as_str()),
        _ => None,
    };
    let tools: Vec<Value> = request
        .tools
        .iter()
        .filter(|tool| forced.is_none_or(|name| tool.name == name))
        .map(|tool| {
            let parameters = match &tool.parameters {
                Value::Object(_) => tool.parameters.clone(),
                _ => json!({"type": "object", "properties": {}}),
            };
            let mut function = json!({"name": tool.name, "parameters": parameters});
            if let Some(description) = tool.description.as_deref().filter(|d| !d.is_empty()) {
                function["description"] = json!(description);
            }
            json!({"type": "function", "function": function})
        })
        .collect();
    if !tools.is_empty() {
        body.insert("tools".into(), Value::Array(tools));
        match &request.tool_choice {
            Some(ToolChoice::Required | ToolChoice::Tool { .. }) => {
                body.insert("tool_choice".into(), json!("REQUIRED"));
            }
            Some(ToolChoice::None) => {
                body.insert("tool_choice".into(), json!("NONE"));
            }
            Some(ToolChoice::Auto) | None => {}
        }
    }

    let params = &request.params;
    let mut set = |key: &str, value: Option<Value>| {
        if let Some(value) = value {
            body.insert(key.into(), value);
        }
    };
    set("max_tokens", params.max_tokens.map(|v| json!(v)));
    set("temperature", params.temperature.map(|v| json!(v)));
    set("p", params.top_p.map(|v| json!(v)));
    set("k", params.top_k.map(|v| json!(v)));
    set(
        "stop_sequences",
        (!params.stop.is_empty()).then(|| json!(params.stop)),
    );
    set("seed", params.seed.map(|v| json!(v)));
    set(
        "frequency_penalty",
        params.frequency_penalty.map(|v| json!(v)),
    );
    set(
        "presence_penalty",
        params.presence_penalty.map(|v| json!(v)),
    );
    set(
        "response_format",
        request.response_format.as_ref().and_then(response_format),
    );
    set("thinking", request.reasoning.as_ref().map(thinking));
    if stream {
        body.insert("stream".into(), json!(true));
    }
    Value::Object(body)
}

/// OpenAI-style `response_format` as Cohere's: `json_object` as is, a
/// `json_schema` as `json_object` constrained by the schema; `text` (the
/// default) is left out.
fn response_format(format: &Value) -> Option<Value> {
    match format.get("type").and_then(Value::as_str) {
        Some("json_object") => {
            let mut out = json!({"type": "json_object"});
            if let Some(schema) = format.get("json_schema").filter(|s| s.is_object()) {
                out["json_schema"] = schema.clone();
            }
            Some(out)
        }
        Some("json_schema") => {
            let schema = format
                .pointer("/json_schema/schema")
                .filter(|s| s.is_object())
                .cloned();
            Some(match schema {
                Some(schema) => json!({"type": "json_object", "json_schema": schema}),
                None => json!({"type": "json_object"}),
            })
        }
        _ => None,
    }
}

/// The system prompt and the turns as Cohere messages. Tool results become
/// `tool` messages wherever the neutral turn carries them (OpenAI clients
/// send tool turns, Anthropic clients user turns).
fn wire_messages(system: Option<&str>, messages: &[Message]) -> Vec<Value> {
    let mut out = Vec::with_capacity(messages.len() + 1);
    if let Some(system) = system.filter(|s| !s.is_empty()) {
        out.push(json!({"role": "system", "content": system}));
    }
    for message in messages {
        for part in &message.content {
            if let ContentPart::ToolResult {
                tool_call_id,
                content,
                is_error,
                ..
            } = part
            {
                // Cohere has no error flag on tool results; say it in the text.
                let content = if *is_error {
                    format!("Error: {content}")
                } else {
                    content.clone()
                };
                out.push(json!({"role": "tool", "tool_call_id": tool_call_id, "content": content}));
            }
        }
        match message.role {
            Role::Assistant => {
                if let Some(turn) = assistant_message(message) {
                    out.push(turn);
                }
            }
            Role::User | Role::Tool => {
                if let Some(turn) = user_message(message) {
                    out.push(turn);
                }
            }
        }
    }
    out
}

fn user_message(message: &Message) -> Option<Value> {
    let has_images = message
        .content
        .iter()
        .any(|p| matches!(p, ContentPart::Image { .. }));
    if !has_images {
        let text = message.text();
        return (!text.is_empty()).then(|| json!({"role": "user", "content": text}));
    }
    let parts: Vec<Value> = message
        .content
        .iter()
        .filter_map(|part| match part {
            ContentPart::Text { text } if !text.is_empty() => {
                Some(json!({"type": "text", "text": text}))
            }
            ContentPart::Image { source } => Some(image_part(source)),
            _ => None,
        })
        .collect();
    Some(json!({"role": "user", "content": parts}))
}

fn image_part(source: &ImageSource) -> Value {
    // Cohere takes public URLs and base64 data URLs alike.
    json!({"type": "image_url", "image_url": {"url": source.to_url()}})
}

fn assistant_message(message: &Message) -> Option<Value> {
    let mut text = String::new();
    let mut thinking = String::new();
    let mut tool_calls = Vec::new();
    for part in &message.content {
        match part {
            ContentPart::Text { text: t } => text.push_str(t),
            ContentPart::Thinking { text: t, .. } => thinking.push_str(t),
            ContentPart::ToolCall {
                id,
                name,
                arguments,
            } => tool_calls.push(json!({
                "id": id,
                "type": "function",
                "function": {"name": name, "arguments": arguments_text(arguments)},
            })),
            ContentPart::Image { .. } | ContentPart::ToolResult { .. } => {}
        }
    }
    if text.is_empty() && tool_calls.is_empty() {
        return None;
    }
    let mut turn = json!({"role": "assistant"});
    if tool_calls.is_empty() {
        turn["content"] = json!(text);
    } else {
        // Cohere's own tool-calling turns carry their words as the plan,
        // not as content: send text said alongside calls the same way.
        let plan: Vec<&str> = [thinking.as_str(), text.as_str()]
            .into_iter()
            .filter(|s| !s.is_empty())
            .collect();
        if !plan.is_empty() {
            turn["tool_plan"] = json!(plan.join("\n"));
        }
        turn["tool_calls"] = Value::Array(tool_calls);
    }
    Some(turn)
}

/// Arguments as the JSON object text Cohere expects (`{}` when empty).
fn arguments_text(arguments: &str) -> String {
    if arguments.trim().is_empty() {
        "{}".to_string()
    } else {
        arguments.to_string()
    }
}

/// The `POST /v2/embed` body: float vectors, `input_type` from the request
/// (or its `extra.input_type`, which OpenAI clients can send as an extra
/// body field), [`DEFAULT_INPUT_TYPE`] otherwise.
pub fn embed_request_body(request: &EmbeddingsRequest) -> Value {
    let input_type = request
        .input_type
        .as_deref()
        .or_else(|| request.extra.get("input_type").and_then(Value::as_str))
        .filter(|t| !t.is_empty())
        .unwrap_or(DEFAULT_INPUT_TYPE);
    let mut body = json!({
        "model": request.model,
        "texts": request.inputs,
        "input_type": input_type,
        "embedding_types": ["float"],
    });
    if let Some(dimensions) = request.dimensions {
        body["output_dimension"] = json!(dimensions);
    }
    body
}

// ---------------------------------------------------------------------------
// Answers
// ---------------------------------------------------------------------------

fn finish_reason(reason: &str) -> FinishReason {
    match reason {
        "MAX_TOKENS" | "ERROR_LIMIT" => FinishReason::Length,
        "TOOL_CALL" => FinishReason::ToolCalls,
        "ERROR" | "TIMEOUT" => FinishReason::Error,
        "ERROR_TOXIC" => FinishReason::ContentFilter,
        // COMPLETE, STOP_SEQUENCE and reasons added later.
        _ => FinishReason::Stop,
    }
}

fn count(value: Option<&Value>) -> Option<u32> {
    value
        .and_then(Value::as_f64)
        .filter(|n| n.is_finite() && *n >= 0.0)
        .map(|n| n.round().min(f64::from(u32::MAX)) as u32)
}

/// Neutral usage of a Cohere `usage` object (billed units first).
fn usage(usage: &Value) -> Usage {
    let pick = |key: &str| {
        count(usage.pointer(&format!("/billed_units/{key}")))
            .or_else(|| count(usage.pointer(&format!("/tokens/{key}"))))
            .unwrap_or(0)
    };
    Usage {
        input_tokens: pick("input_tokens"),
        output_tokens: pick("output_tokens"),
        cached_input_tokens: count(usage.get("cached_tokens")),
    }
}

fn str_at<'a>(value: &'a Value, pointer: &str) -> &'a str {
    value
        .pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// Arguments text of a Cohere function call (a string, or an object some
/// deployments send).
fn call_arguments(function: &Value) -> String {
    match function.get("arguments") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

/// Parses a `POST /v2/chat` answer; `raw` keeps the body.
pub fn parse_chat_response(body: &[u8]) -> Result<ChatResponse, ProviderError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        ProviderError::bad_upstream(format!(
            "Cohere answer is not valid JSON ({e}): {}",
            common::truncate(&String::from_utf8_lossy(body), 200)
        ))
    })?;
    let message = value
        .get("message")
        .filter(|m| m.is_object())
        .ok_or_else(|| ProviderError::bad_upstream("Cohere answer has no message object"))?;
    let mut content = Vec::new();
    let tool_plan = str_at(message, "/tool_plan");
    if !tool_plan.is_empty() {
        content.push(ContentPart::Thinking {
            text: tool_plan.to_string(),
            signature: None,
        });
    }
    if let Some(blocks) = message.get("content").and_then(Value::as_array) {
        for block in blocks {
            match block.get("type").and_then(Value::as_str) {
                Some("text") => content.push(ContentPart::text(str_at(block, "/text"))),
                Some("thinking") => content.push(ContentPart::Thinking {
                    text: str_at(block, "/thinking").to_string(),
                    signature: None,
                }),
                _ => {}
            }
        }
    }
    if let Some(calls) = message.get("tool_calls").and_then(Value::as_array) {
        for call in calls {
            let function = call.get("function").unwrap_or(&Value::Null);
            content.push(ContentPart::ToolCall {
                id: str_at(call, "/id").to_string(),
                name: str_at(function, "/name").to_string(),
                arguments: call_arguments(function),
            });
        }
    }
    Ok(ChatResponse {
        id: str_at(&value, "/id").to_string(),
        model: String::new(),
        content,
        finish_reason: value
            .get("finish_reason")
            .and_then(Value::as_str)
            .map(finish_reason)
            .unwrap_or_default(),
        usage: value.get("usage").map(usage).unwrap_or_default(),
        raw: RawJson::from_body(body),
    })
}

/// Turns the typed events of a Cohere v2 chat stream into neutral events.
#[derive(Debug, Clone, Default)]
pub struct EventDecoder {
    started: bool,
    finished: bool,
    /// Cohere tool-call index -> neutral tool-call index.
    tools: HashMap<u64, u32>,
    next_tool: u32,
}

impl EventDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether `message-end` arrived (the stream is complete).
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// Decodes one SSE event; `event` is its `event:` name (may be empty or
    /// `message`: the data's `type` tells then).
    pub fn decode(&mut self, event: &str, data: &str) -> Result<Vec<StreamEvent>, ProviderError> {
        let value: Value = serde_json::from_str(data).map_err(|e| {
            ProviderError::bad_upstream(format!(
                "Cohere stream event is not valid JSON ({e}): {}",
                common::truncate(data, 200)
            ))
        })?;
        let kind = match value.get("type").and_then(Value::as_str) {
            Some(kind) => kind,
            None => event,
        };
        let mut out = Vec::new();
        if !self.started && kind != "message-start" {
            // A stream must open with Start; tolerate a missing message-start.
            self.started = true;
            out.push(StreamEvent::Start {
                id: String::new(),
                model: String::new(),
            });
        }
        let delta = value.pointer("/delta/message").unwrap_or(&Value::Null);
        match kind {
            "message-start" if !self.started => {
                self.started = true;
                out.push(StreamEvent::Start {
                    id: str_at(&value, "/id").to_string(),
                    model: String::new(),
                });
            }
            "content-start" | "content-delta" => {
                let content = delta.get("content").unwrap_or(&Value::Null);
                push_delta(&mut out, str_at(content, "/thinking"), true);
                push_delta(&mut out, str_at(content, "/text"), false);
            }
            "tool-plan-delta" => push_delta(&mut out, str_at(delta, "/tool_plan"), true),
            "tool-call-start" => {
                let call = delta.get("tool_calls").unwrap_or(&Value::Null);
                let index = self.next_tool;
                self.next_tool += 1;
                if let Some(cohere_index) = value.get("index").and_then(Value::as_u64) {
                    self.tools.insert(cohere_index, index);
                }
                let function = call.get("function").unwrap_or(&Value::Null);
                out.push(StreamEvent::ToolCallStart {
                    index,
                    id: str_at(call, "/id").to_string(),
                    name: str_at(function, "/name").to_string(),
                });
                let arguments = call_arguments(function);
                if !arguments.is_empty() {
                    out.push(StreamEvent::ToolCallDelta { index, arguments });
                }
            }
            "tool-call-delta" => {
                let arguments = call_arguments(
                    delta
                        .pointer("/tool_calls/function")
                        .unwrap_or(&Value::Null),
                );
                let index = value
                    .get("index")
                    .and_then(Value::as_u64)
                    .and_then(|i| self.tools.get(&i).copied())
                    .or_else(|| self.next_tool.checked_sub(1));
                if let Some(index) = index
                    && !arguments.is_empty()
                {
                    out.push(StreamEvent::ToolCallDelta { index, arguments });
                }
            }
            "message-end" => {
                self.finished = true;
                let end = value.get("delta").unwrap_or(&Value::Null);
                let reason = end.get("finish_reason").and_then(Value::as_str);
                if reason == Some("ERROR")
                    && let Some(error) = end.get("error").and_then(Value::as_str)
                    && !error.is_empty()
                {
                    return Err(ProviderError::bad_upstream(format!(
                        "Cohere stream failed: {}",
                        common::truncate(error, 1000)
                    )));
                }
                out.push(StreamEvent::Finish {
                    reason: reason.map(finish_reason).unwrap_or_default(),
                });
                if let Some(wire) = end.get("usage") {
                    out.push(StreamEvent::Usage { usage: usage(wire) });
                }
            }
            // content-end, tool-call-end, citation-start/end, debug and
            // event types added later carry nothing neutral.
            _ => {}
        }
        Ok(out)
    }
}

fn push_delta(out: &mut Vec<StreamEvent>, text: &str, thinking: bool) {
    if text.is_empty() {
        return;
    }
    let text = text.to_string();
    out.push(if thinking {
        StreamEvent::ThinkingDelta { text }
    } else {
        StreamEvent::TextDelta { text }
    });
}

/// Parses a `POST /v2/embed` answer (`embeddings.float`; the older
/// `embeddings: [[...]]` shape too).
pub fn parse_embed_response(body: &[u8]) -> Result<EmbeddingsResponse, ProviderError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        ProviderError::bad_upstream(format!(
            "Cohere embed answer is not valid JSON ({e}): {}",
            common::truncate(&String::from_utf8_lossy(body), 200)
        ))
    })?;
    let vectors = match value.get("embeddings") {
        Some(Value::Object(by_type)) => by_type.get("float"),
        Some(list @ Value::Array(_)) => Some(list),
        _ => None,
    }
    .and_then(Value::as_array)
    .ok_or_else(|| ProviderError::bad_upstream("Cohere embed answer has no float embeddings"))?;
    let embeddings = vectors
        .iter()
        .map(|vector| {
            vector
                .as_array()
                .and_then(|values| {
                    values
                        .iter()
                        .map(|v| v.as_f64().map(|f| f as f32))
                        .collect::<Option<Vec<f32>>>()
                })
                .ok_or_else(|| {
                    ProviderError::bad_upstream("Cohere embedding is not an array of numbers")
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(EmbeddingsResponse {
        model: String::new(),
        embeddings,
        usage: Usage {
            input_tokens: count(value.pointer("/meta/billed_units/input_tokens")).unwrap_or(0),
            output_tokens: 0,
            cached_input_tokens: None,
        },
    })
}

/// The error of a non-2xx Cohere answer (`{"message": ...}` bodies): kind
/// from the status, `Retry-After` honoured. Cohere's own statuses are
/// mapped: 402 (billing) to permission, 498 (invalid token) to
/// authentication, 499 (cancelled) to an upstream failure.
pub fn parse_error(status: u16, headers: &[(String, String)], body: &[u8]) -> ProviderError {
    let now_ms = common::system_now_ms();
    let error = common::upstream_error(status, headers, body, now_ms);
    let (kind, status) = match status {
        402 => (ErrorKind::Permission, 402),
        498 => (ErrorKind::Authentication, 401),
        499 => (ErrorKind::Upstream, 502),
        _ => return error,
    };
    ProviderError::upstream_with_kind(kind, status, error.message, error.retry_after_ms)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{SamplingParams, Tool};

    #[test]
    fn reasoning_requests_become_thinking() {
        let mut request = ChatRequest {
            model: "command-a-reasoning-08-2025".into(),
            messages: vec![Message::user("hi")],
            ..Default::default()
        };
        assert!(chat_request_body(&request, false).get("thinking").is_none());
        let cases = [
            (
                Reasoning::with_effort(crate::ReasoningEffort::Low),
                json!({"type": "enabled", "token_budget": 2048}),
            ),
            (Reasoning::default(), json!({"type": "enabled"})),
            (Reasoning::off(), json!({"type": "disabled"})),
        ];
        for (reasoning, thinking) in cases {
            request.reasoning = Some(reasoning);
            assert_eq!(chat_request_body(&request, false)["thinking"], thinking);
        }
    }

    fn request() -> ChatRequest {
        ChatRequest {
            model: "command-a-03-2025".into(),
            system: Some("Be brief.".into()),
            messages: vec![
                Message::user("What is the weather in Paris?"),
                Message {
                    role: Role::Assistant,
                    content: vec![
                        ContentPart::Thinking {
                            text: "I will look it up.".into(),
                            signature: None,
                        },
                        ContentPart::ToolCall {
                            id: "get_weather_1".into(),
                            name: "get_weather".into(),
                            arguments: "{\"city\":\"Paris\"}".into(),
                        },
                    ],
                },
                Message {
                    role: Role::Tool,
                    content: vec![ContentPart::ToolResult {
                        tool_call_id: "get_weather_1".into(),
                        name: None,
                        content: "18C, sunny".into(),
                        is_error: false,
                    }],
                },
                Message {
                    role: Role::User,
                    content: vec![
                        ContentPart::text("And this picture?"),
                        ContentPart::Image {
                            source: ImageSource::Base64 {
                                media_type: "image/png".into(),
                                data: "iVBORw0KGgo=".into(),
                            },
                        },
                    ],
                },
            ],
            tools: vec![Tool {
                name: "get_weather".into(),
                description: Some("Weather of a city".into()),
                parameters: json!({"type": "object", "properties": {"city": {"type": "string"}}}),
            }],
            params: SamplingParams {
                max_tokens: Some(100),
                temperature: Some(0.3),
                top_p: Some(0.9),
                top_k: Some(40),
                stop: vec!["END".into()],
                seed: Some(7),
                presence_penalty: Some(0.1),
                frequency_penalty: Some(0.2),
            },
            ..Default::default()
        }
    }

    #[test]
    fn builds_chat_body() {
        let body = chat_request_body(&request(), false);
        assert_eq!(
            body,
            json!({
                "model": "command-a-03-2025",
                "messages": [
                    {"role": "system", "content": "Be brief."},
                    {"role": "user", "content": "What is the weather in Paris?"},
                    {"role": "assistant", "tool_plan": "I will look it up.", "tool_calls": [
                        {"id": "get_weather_1", "type": "function",
                         "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}
                    ]},
                    {"role": "tool", "tool_call_id": "get_weather_1", "content": "18C, sunny"},
                    {"role": "user", "content": [
                        {"type": "text", "text": "And this picture?"},
                        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
                    ]},
                ],
                "tools": [{"type": "function", "function": {
                    "name": "get_weather",
                    "description": "Weather of a city",
                    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
                }}],
                "max_tokens": 100,
                "temperature": 0.3,
                "p": 0.9,
                "k": 40,
                "stop_sequences": ["END"],
                "seed": 7,
                "frequency_penalty": 0.2,
                "presence_penalty": 0.1,
            })
        );
        assert_eq!(chat_request_body(&request(), true)["stream"], true);
    }

    #[test]
    fn tool_choice_and_response_format() {
        let mut req = request();
        req.tools.push(Tool {
            name: "get_time".into(),
            description: None,
            parameters: Value::Null,
        });
        req.tool_choice = Some(ToolChoice::Tool {
            name: "get_time".into(),
        });
        req.response_format = Some(json!({"type": "json_schema", "json_schema": {
            "name": "x", "schema": {"type": "object"}}}));
        let body = chat_request_body(&req, false);
        assert_eq!(body["tool_choice"], "REQUIRED");
        assert_eq!(
            body["tools"],
            json!([{"type": "function", "function": {
                "name": "get_time", "parameters": {"type": "object", "properties": {}}}}])
        );
        assert_eq!(
            body["response_format"],
            json!({"type": "json_object", "json_schema": {"type": "object"}})
        );
        req.tool_choice = Some(ToolChoice::None);
        req.response_format = Some(json!({"type": "text"}));
        let body = chat_request_body(&req, false);
        assert_eq!(body["tool_choice"], "NONE");
        assert_eq!(body["tools"].as_array().map(Vec::len), Some(2));
        assert!(body.get("response_format").is_none());
        req.tool_choice = Some(ToolChoice::Auto);
        assert!(chat_request_body(&req, false).get("tool_choice").is_none());
    }

    #[test]
    fn text_beside_tool_calls_becomes_the_plan() {
        let turn = Message {
            role: Role::Assistant,
            content: vec![
                ContentPart::text("Let me check."),
                ContentPart::ToolCall {
                    id: "c1".into(),
                    name: "f".into(),
                    arguments: String::new(),
                },
            ],
        };
        assert_eq!(
            assistant_message(&turn),
            Some(
                json!({"role": "assistant", "tool_plan": "Let me check.", "tool_calls": [
                    {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
                ]})
            )
        );
        assert_eq!(assistant_message(&Message::assistant("")), None);
    }

    #[test]
    fn tool_results_in_user_turns_become_tool_messages() {
        let req = ChatRequest {
            model: "m".into(),
            messages: vec![Message {
                role: Role::User,
                content: vec![
                    ContentPart::ToolResult {
                        tool_call_id: "c1".into(),
                        name: Some("f".into()),
                        content: "boom".into(),
                        is_error: true,
                    },
                    ContentPart::text("go on"),
                ],
            }],
            ..Default::default()
        };
        assert_eq!(
            chat_request_body(&req, false)["messages"],
            json!([
                {"role": "tool", "tool_call_id": "c1", "content": "Error: boom"},
                {"role": "user", "content": "go on"},
            ])
        );
    }

    #[test]
    fn parses_chat_answers() {
        let body = br#"{
            "id": "c14c80c3-18eb-4519-9460-6c92edd8cfb4",
            "finish_reason": "COMPLETE",
            "message": {"role": "assistant", "content": [{"type": "text", "text": "Hello!"}]},
            "usage": {"billed_units": {"input_tokens": 5, "output_tokens": 3},
                      "tokens": {"input_tokens": 71, "output_tokens": 3}}
        }"#;
        let parsed = parse_chat_response(body).unwrap();
        assert_eq!(parsed.id, "c14c80c3-18eb-4519-9460-6c92edd8cfb4");
        assert_eq!(parsed.text(), "Hello!");
        assert_eq!(parsed.finish_reason, FinishReason::Stop);
        assert_eq!(
            (parsed.usage.input_tokens, parsed.usage.output_tokens),
            (5, 3)
        );
        assert!(parsed.raw.is_some());

        let tools = br#"{
            "id": "x", "finish_reason": "TOOL_CALL",
            "message": {"role": "assistant", "tool_plan": "I will check the weather.",
                "tool_calls": [{"id": "get_weather_abc", "type": "function",
                    "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]},
            "usage": {"tokens": {"input_tokens": 20, "output_tokens": 9}}
        }"#;
        let parsed = parse_chat_response(tools).unwrap();
        assert_eq!(parsed.finish_reason, FinishReason::ToolCalls);
        assert_eq!(
            parsed.content,
            vec![
                ContentPart::Thinking {
                    text: "I will check the weather.".into(),
                    signature: None
                },
                ContentPart::ToolCall {
                    id: "get_weather_abc".into(),
                    name: "get_weather".into(),
                    arguments: "{\"city\":\"Paris\"}".into(),
                },
            ]
        );
        assert_eq!(
            (parsed.usage.input_tokens, parsed.usage.output_tokens),
            (20, 9)
        );
        for (reason, expected) in [
            ("MAX_TOKENS", FinishReason::Length),
            ("STOP_SEQUENCE", FinishReason::Stop),
            ("ERROR", FinishReason::Error),
        ] {
            let body = json!({"id": "x", "finish_reason": reason,
                "message": {"role": "assistant", "content": []}});
            let parsed = parse_chat_response(body.to_string().as_bytes()).unwrap();
            assert_eq!(parsed.finish_reason, expected, "{reason}");
        }
        assert_eq!(parse_chat_response(b"<html>").unwrap_err().status, 502);
        assert_eq!(
            parse_chat_response(br#"{"id": "x"}"#).unwrap_err().kind,
            ErrorKind::Upstream
        );
    }

    #[test]
    fn decodes_stream_events() {
        let events = [
            (
                "message-start",
                r#"{"id":"m1","type":"message-start","delta":{"message":{"role":"assistant","content":[],"tool_plan":"","tool_calls":[],"citations":[]}}}"#,
            ),
            (
                "tool-plan-delta",
                r#"{"type":"tool-plan-delta","delta":{"message":{"tool_plan":"Checking."}}}"#,
            ),
            (
                "tool-call-start",
                r#"{"type":"tool-call-start","index":0,"delta":{"message":{"tool_calls":{"id":"t1","type":"function","function":{"name":"get_weather","arguments":""}}}}}"#,
            ),
            (
                "tool-call-delta",
                r#"{"type":"tool-call-delta","index":0,"delta":{"message":{"tool_calls":{"function":{"arguments":"{\"city\":"}}}}}"#,
            ),
            (
                "tool-call-delta",
                r#"{"type":"tool-call-delta","index":0,"delta":{"message":{"tool_calls":{"function":{"arguments":"\"Paris\"}"}}}}}"#,
            ),
            ("tool-call-end", r#"{"type":"tool-call-end","index":0}"#),
            (
                "content-start",
                r#"{"type":"content-start","index":0,"delta":{"message":{"content":{"type":"text","text":""}}}}"#,
            ),
            (
                "content-delta",
                r#"{"type":"content-delta","index":0,"delta":{"message":{"content":{"text":"Hi"}}}}"#,
            ),
            ("content-end", r#"{"type":"content-end","index":0}"#),
            (
                "message-end",
                r#"{"type":"message-end","delta":{"finish_reason":"TOOL_CALL","usage":{"billed_units":{"input_tokens":3,"output_tokens":2},"tokens":{"input_tokens":69,"output_tokens":2}}}}"#,
            ),
        ];
        let mut decoder = EventDecoder::new();
        let mut out = Vec::new();
        for (event, data) in events {
            out.extend(decoder.decode(event, data).unwrap());
        }
        assert!(decoder.is_finished());
        assert_eq!(
            out,
            vec![
                StreamEvent::Start {
                    id: "m1".into(),
                    model: String::new()
                },
                StreamEvent::ThinkingDelta {
                    text: "Checking.".into()
                },
                StreamEvent::ToolCallStart {
                    index: 0,
                    id: "t1".into(),
                    name: "get_weather".into()
                },
                StreamEvent::ToolCallDelta {
                    index: 0,
                    arguments: "{\"city\":".into()
                },
                StreamEvent::ToolCallDelta {
                    index: 0,
                    arguments: "\"Paris\"}".into()
                },
                StreamEvent::TextDelta { text: "Hi".into() },
                StreamEvent::Finish {
                    reason: FinishReason::ToolCalls
                },
                StreamEvent::Usage {
                    usage: Usage {
                        input_tokens: 3,
                        output_tokens: 2,
                        cached_input_tokens: None
                    }
                },
            ]
        );
        let mut decoder = EventDecoder::new();
        assert!(decoder.decode("content-delta", "{not json").is_err());
    }

    #[test]
    fn embeddings() {
        let req = EmbeddingsRequest {
            model: "embed-v4.0".into(),
            inputs: vec!["a".into(), "b".into()],
            dimensions: Some(256),
            ..Default::default()
        };
        assert_eq!(
            embed_request_body(&req),
            json!({"model": "embed-v4.0", "texts": ["a", "b"], "input_type": "search_document",
                   "embedding_types": ["float"], "output_dimension": 256})
        );
        let mut extra = EmbeddingsRequest {
            model: "m".into(),
            inputs: vec!["q".into()],
            ..Default::default()
        };
        extra
            .extra
            .insert("input_type".into(), json!("search_query"));
        assert_eq!(embed_request_body(&extra)["input_type"], "search_query");
        extra.input_type = Some("clustering".into());
        assert_eq!(embed_request_body(&extra)["input_type"], "clustering");

        let body = br#"{"id":"e1","embeddings":{"float":[[0.5,-1.25],[3,0]]},"texts":["a","b"],
            "meta":{"api_version":{"version":"2"},"billed_units":{"input_tokens":2}},
            "response_type":"embeddings_by_type"}"#;
        let parsed = parse_embed_response(body).unwrap();
        assert_eq!(parsed.embeddings, vec![vec![0.5, -1.25], vec![3.0, 0.0]]);
        assert_eq!(parsed.usage.input_tokens, 2);
        assert!(parse_embed_response(br#"{"embeddings":{"int8":[[1]]}}"#).is_err());
        assert!(parse_embed_response(br#"{"embeddings":{"float":[["x"]]}}"#).is_err());
    }

    #[test]
    fn errors() {
        let headers = vec![("retry-after".to_string(), "4".to_string())];
        let err = parse_error(
            429,
            &headers,
            br#"{"id":"1","message":"You are using a Trial key"}"#,
        );
        assert_eq!(
            (err.kind, err.status, err.retry_after_ms),
            (ErrorKind::RateLimited, 429, Some(4000))
        );
        assert_eq!(err.message, "You are using a Trial key");
        let err = parse_error(401, &[], br#"{"message":"invalid api token"}"#);
        assert_eq!((err.kind, err.status), (ErrorKind::Authentication, 401));
        let err = parse_error(498, &[], br#"{"message":"invalid api token"}"#);
        assert_eq!((err.kind, err.status), (ErrorKind::Authentication, 401));
        let err = parse_error(500, &[], br#"{"message":"internal server error"}"#);
        assert_eq!((err.kind, err.status), (ErrorKind::Upstream, 502));
        let err = parse_error(404, &[], br#"{"message":"model 'x' not found"}"#);
        assert_eq!(err.kind, ErrorKind::NotFound);
    }
}
