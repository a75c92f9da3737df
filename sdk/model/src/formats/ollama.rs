//! Ollama native API wire format, provider side (a plugin calling an
//! Ollama server): chat (`POST /api/chat`, plain and NDJSON-streamed) and
//! embeddings (`POST /api/embed`).
//!
//! Requests: [`chat_request_body`], [`embed_request_body`]. Answers:
//! [`parse_chat_response`], [`ChunkDecoder`] (one NDJSON object at a time),
//! [`parse_embed_response`], [`parse_error`].
//!
//! Mapping notes:
//! - Images must be inline: Ollama takes base64 without a `data:` prefix
//!   and cannot fetch URLs, and a translator cannot either, so an image URL
//!   is a 400 that says so.
//! - Ollama tool calls have no ids (some versions add one): missing ids are
//!   synthesized; tool results go back with the called tool's `tool_name`.
//! - Ollama has no `tool_choice`: `none` drops the tools, a forced tool
//!   offers only that one (the model may still answer in text).

use serde_json::{Map, Value, json};

use super::common;

use crate::{
    ChatRequest, ChatResponse, ContentPart, EmbeddingsRequest, EmbeddingsResponse, FinishReason,
    ImageSource, Message, ProviderError, RawJson, Role, StreamEvent, ToolChoice, Usage,
};

// ---------------------------------------------------------------------------
// Requests
// ---------------------------------------------------------------------------

/// The `POST /api/chat` body for `request`. `stream` is always explicit:
/// Ollama streams unless told otherwise. Fails (400) on image URLs.
pub fn chat_request_body(request: &ChatRequest, stream: bool) -> Result<Value, ProviderError> {
    let mut body = Map::new();
    body.insert("model".into(), json!(request.model));
    body.insert("messages".into(), Value::Array(wire_messages(request)?));

    let tools: Vec<Value> = match &request.tool_choice {
        Some(ToolChoice::None) => Vec::new(),
        choice => request
            .tools
            .iter()
            .filter(|tool| match choice {
                Some(ToolChoice::Tool { name }) => &tool.name == name,
                _ => true,
            })
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
            .collect(),
    };
    if !tools.is_empty() {
        body.insert("tools".into(), Value::Array(tools));
    }
    body.insert("stream".into(), json!(stream));

    let params = &request.params;
    let mut options = Map::new();
    let mut set = |key: &str, value: Option<Value>| {
        if let Some(value) = value {
            options.insert(key.into(), value);
        }
    };
    set("temperature", params.temperature.map(|v| json!(v)));
    set("top_p", params.top_p.map(|v| json!(v)));
    set("top_k", params.top_k.map(|v| json!(v)));
    set("num_predict", params.max_tokens.map(|v| json!(v)));
    set(
        "stop",
        (!params.stop.is_empty()).then(|| json!(params.stop)),
    );
    set("seed", params.seed.map(|v| json!(v)));
    set(
        "presence_penalty",
        params.presence_penalty.map(|v| json!(v)),
    );
    set(
        "frequency_penalty",
        params.frequency_penalty.map(|v| json!(v)),
    );
    if !options.is_empty() {
        body.insert("options".into(), Value::Object(options));
    }
    if let Some(format) = request.response_format.as_ref().and_then(response_format) {
        body.insert("format".into(), format);
    }
    // `think` is on/off for every thinking model but gpt-oss, which takes
    // only a level (on/off is ignored) and cannot turn reasoning off.
    if let Some(reasoning) = &request.reasoning {
        if request.model.to_ascii_lowercase().contains("gpt-oss") {
            if let Some(level) = reasoning.three_level_effort() {
                body.insert("think".into(), json!(level.as_str()));
            }
        } else {
            body.insert("think".into(), json!(!reasoning.is_off()));
        }
    }
    Ok(Value::Object(body))
}

/// OpenAI-style `response_format` as Ollama's `format`: `"json"` for a JSON
/// object, the schema itself for a JSON schema; `text` is left out.
fn response_format(format: &Value) -> Option<Value> {
    match format.get("type").and_then(Value::as_str) {
        Some("json_object") => Some(json!("json")),
        Some("json_schema") => Some(
            format
                .pointer("/json_schema/schema")
                .filter(|s| s.is_object())
                .cloned()
                .unwrap_or_else(|| json!("json")),
        ),
        _ => None,
    }
}

fn wire_messages(request: &ChatRequest) -> Result<Vec<Value>, ProviderError> {
    let mut out = Vec::with_capacity(request.messages.len() + 1);
    if let Some(system) = request.system.as_deref().filter(|s| !s.is_empty()) {
        out.push(json!({"role": "system", "content": system}));
    }
    for (turn, message) in request.messages.iter().enumerate() {
        for part in &message.content {
            if let ContentPart::ToolResult {
                tool_call_id,
                name,
                content,
                is_error,
            } = part
            {
                let content = if *is_error {
                    format!("Error: {content}")
                } else {
                    content.clone()
                };
                let mut tool = json!({"role": "tool", "content": content});
                let name = name
                    .clone()
                    .or_else(|| called_tool(&request.messages[..turn], tool_call_id));
                if let Some(name) = name.filter(|n| !n.is_empty()) {
                    tool["tool_name"] = json!(name);
                }
                out.push(tool);
            }
        }
        match message.role {
            Role::Assistant => {
                if let Some(turn) = assistant_message(message) {
                    out.push(turn);
                }
            }
            Role::User | Role::Tool => {
                if let Some(turn) = user_message(message, turn)? {
                    out.push(turn);
                }
            }
        }
    }
    Ok(out)
}

/// The name of the tool an earlier assistant turn called with `id`.
fn called_tool(history: &[Message], id: &str) -> Option<String> {
    history.iter().rev().find_map(|message| {
        message.content.iter().find_map(|part| match part {
            ContentPart::ToolCall { id: call, name, .. } if call == id => Some(name.clone()),
            _ => None,
        })
    })
}

fn user_message(message: &Message, turn: usize) -> Result<Option<Value>, ProviderError> {
    let mut images = Vec::new();
    for part in &message.content {
        if let ContentPart::Image { source } = part {
            images.push(inline_image(source, turn)?);
        }
    }
    let text = message.text();
    if text.is_empty() && images.is_empty() {
        return Ok(None);
    }
    let mut wire = json!({"role": "user", "content": text});
    if !images.is_empty() {
        wire["images"] = json!(images);
    }
    Ok(Some(wire))
}

/// The base64 data of an inline image; URLs are refused with a clear 400.
fn inline_image(source: &ImageSource, turn: usize) -> Result<String, ProviderError> {
    let inline = match source {
        ImageSource::Url { url } => ImageSource::from_url(url),
        other => other.clone(),
    };
    match inline {
        ImageSource::Base64 { data, .. } => Ok(data),
        ImageSource::Url { .. } => Err(ProviderError::invalid_request(format!(
            "messages[{turn}]: Ollama needs inline images (base64 data: URLs); \
             image URLs are not supported, the gateway does not fetch them"
        ))),
    }
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
                name, arguments, ..
            } => tool_calls.push(json!({
                "function": {"name": name, "arguments": arguments_object(arguments)},
            })),
            ContentPart::Image { .. } | ContentPart::ToolResult { .. } => {}
        }
    }
    if text.is_empty() && tool_calls.is_empty() {
        return None;
    }
    let mut wire = json!({"role": "assistant", "content": text});
    if !thinking.is_empty() {
        wire["thinking"] = json!(thinking);
    }
    if !tool_calls.is_empty() {
        wire["tool_calls"] = Value::Array(tool_calls);
    }
    Some(wire)
}

/// Tool-call arguments as the JSON object Ollama wants (`{}` when the text
/// is not an object).
fn arguments_object(arguments: &str) -> Value {
    match serde_json::from_str::<Value>(arguments) {
        Ok(value @ Value::Object(_)) => value,
        _ => Value::Object(Map::new()),
    }
}

/// The `POST /api/embed` body.
pub fn embed_request_body(request: &EmbeddingsRequest) -> Value {
    let mut body = json!({"model": request.model, "input": request.inputs});
    if let Some(dimensions) = request.dimensions {
        body["dimensions"] = json!(dimensions);
    }
    body
}

// ---------------------------------------------------------------------------
// Answers
// ---------------------------------------------------------------------------

fn count(value: &Value, key: &str) -> u32 {
    value
        .get(key)
        .and_then(Value::as_u64)
        .map_or(0, |n| u32::try_from(n).unwrap_or(u32::MAX))
}

fn usage(value: &Value) -> Usage {
    Usage {
        input_tokens: count(value, "prompt_eval_count"),
        output_tokens: count(value, "eval_count"),
        cached_input_tokens: None,
    }
}

fn str_field<'a>(value: &'a Value, key: &str) -> &'a str {
    value.get(key).and_then(Value::as_str).unwrap_or_default()
}

/// The finish reason of a final (`done`) object.
fn finish_reason(done: &Value, called_tools: bool) -> FinishReason {
    match str_field(done, "done_reason") {
        "length" => FinishReason::Length,
        // Ollama says "stop" for turns that call tools.
        _ if called_tools => FinishReason::ToolCalls,
        _ => FinishReason::Stop,
    }
}

/// A tool call of an Ollama message, with its id or a synthesized one.
fn tool_call(call: &Value) -> (String, String, String) {
    let function = call.get("function").unwrap_or(&Value::Null);
    let id = match call.get("id").and_then(Value::as_str) {
        Some(id) if !id.is_empty() => id.to_string(),
        _ => common::random_id("call_"),
    };
    let arguments = match function.get("arguments") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => "{}".to_string(),
        Some(other) => other.to_string(),
    };
    (id, str_field(function, "name").to_string(), arguments)
}

/// An `{"error": "..."}` object (a 200 body, or a stream line) as an error.
fn embedded_error(value: &Value) -> Option<ProviderError> {
    let message = value.get("error")?;
    let message = message
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| message.to_string());
    Some(ProviderError::bad_upstream(format!(
        "Ollama failed: {}",
        common::truncate(&message, 1000)
    )))
}

fn parse_object(body: &[u8], what: &str) -> Result<Value, ProviderError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        ProviderError::bad_upstream(format!(
            "Ollama {what} is not valid JSON ({e}): {}",
            common::truncate(&String::from_utf8_lossy(body), 200)
        ))
    })?;
    if !value.is_object() {
        return Err(ProviderError::bad_upstream(format!(
            "Ollama {what} is not a JSON object"
        )));
    }
    if let Some(error) = embedded_error(&value) {
        return Err(error);
    }
    Ok(value)
}

/// Parses a non-streamed `POST /api/chat` answer; `raw` keeps the body.
pub fn parse_chat_response(body: &[u8]) -> Result<ChatResponse, ProviderError> {
    let value = parse_object(body, "chat answer")?;
    let message = value
        .get("message")
        .filter(|m| m.is_object())
        .ok_or_else(|| ProviderError::bad_upstream("Ollama answer has no message object"))?;
    let mut content = Vec::new();
    let thinking = str_field(message, "thinking");
    if !thinking.is_empty() {
        content.push(ContentPart::Thinking {
            text: thinking.to_string(),
            signature: None,
        });
    }
    let text = str_field(message, "content");
    if !text.is_empty() {
        content.push(ContentPart::text(text));
    }
    let calls = message
        .get("tool_calls")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    for call in calls {
        let (id, name, arguments) = tool_call(call);
        content.push(ContentPart::ToolCall {
            id,
            name,
            arguments,
        });
    }
    Ok(ChatResponse {
        id: String::new(),
        model: str_field(&value, "model").to_string(),
        content,
        finish_reason: finish_reason(&value, !calls.is_empty()),
        usage: usage(&value),
        raw: RawJson::from_body(body),
    })
}

/// Turns the NDJSON objects of a streamed `/api/chat` answer into neutral
/// events: text and thinking deltas, whole tool calls, and at the final
/// `done` object the finish reason and the token counts.
#[derive(Debug, Clone, Default)]
pub struct ChunkDecoder {
    started: bool,
    done: bool,
    next_tool: u32,
}

impl ChunkDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether the final (`done: true`) object arrived.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Decodes one stream object.
    pub fn decode(&mut self, chunk: &Value) -> Result<Vec<StreamEvent>, ProviderError> {
        if let Some(error) = embedded_error(chunk) {
            return Err(error);
        }
        let mut out = Vec::new();
        if !self.started {
            self.started = true;
            out.push(StreamEvent::Start {
                id: String::new(),
                model: str_field(chunk, "model").to_string(),
            });
        }
        let message = chunk.get("message").unwrap_or(&Value::Null);
        let thinking = str_field(message, "thinking");
        if !thinking.is_empty() {
            out.push(StreamEvent::ThinkingDelta {
                text: thinking.to_string(),
            });
        }
        let text = str_field(message, "content");
        if !text.is_empty() {
            out.push(StreamEvent::TextDelta {
                text: text.to_string(),
            });
        }
        if let Some(calls) = message.get("tool_calls").and_then(Value::as_array) {
            for call in calls {
                let (id, name, arguments) = tool_call(call);
                let index = self.next_tool;
                self.next_tool += 1;
                out.push(StreamEvent::ToolCallStart { index, id, name });
                out.push(StreamEvent::ToolCallDelta { index, arguments });
            }
        }
        if chunk.get("done").and_then(Value::as_bool) == Some(true) {
            self.done = true;
            out.push(StreamEvent::Finish {
                reason: finish_reason(chunk, self.next_tool > 0),
            });
            out.push(StreamEvent::Usage {
                usage: usage(chunk),
            });
        }
        Ok(out)
    }
}

/// Parses a `POST /api/embed` answer.
pub fn parse_embed_response(body: &[u8]) -> Result<EmbeddingsResponse, ProviderError> {
    let value = parse_object(body, "embed answer")?;
    let vectors = value
        .get("embeddings")
        .and_then(Value::as_array)
        .ok_or_else(|| ProviderError::bad_upstream("Ollama embed answer has no embeddings"))?;
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
                    ProviderError::bad_upstream("Ollama embedding is not an array of numbers")
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(EmbeddingsResponse {
        model: str_field(&value, "model").to_string(),
        embeddings,
        usage: Usage {
            input_tokens: count(&value, "prompt_eval_count"),
            output_tokens: 0,
            cached_input_tokens: None,
        },
    })
}

/// The error of a non-2xx Ollama answer (`{"error": "..."}` bodies): kind
/// from the status (404: model not pulled), `Retry-After` honoured.
pub fn parse_error(status: u16, headers: &[(String, String)], body: &[u8]) -> ProviderError {
    common::upstream_error(status, headers, body, common::system_now_ms())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ErrorKind, SamplingParams, Tool};

    #[test]
    fn reasoning_requests_turn_think_on_or_off() {
        let mut request = ChatRequest {
            model: "qwen3".into(),
            messages: vec![Message::user("hi")],
            ..Default::default()
        };
        let think = |request: &ChatRequest| {
            chat_request_body(request, false)
                .unwrap()
                .get("think")
                .cloned()
        };
        assert_eq!(think(&request), None);
        request.reasoning = Some(crate::Reasoning::with_effort(crate::ReasoningEffort::High));
        assert_eq!(think(&request), Some(json!(true)));
        request.reasoning = Some(crate::Reasoning::off());
        assert_eq!(think(&request), Some(json!(false)));

        // gpt-oss takes a level instead, and has no "off".
        request.model = "gpt-oss:20b".into();
        for (reasoning, level) in [
            (
                crate::Reasoning::with_effort(crate::ReasoningEffort::Minimal),
                Some("low"),
            ),
            (crate::Reasoning::with_budget(5000), Some("medium")),
            (crate::Reasoning::default(), Some("medium")),
            (
                crate::Reasoning::with_effort(crate::ReasoningEffort::XHigh),
                Some("high"),
            ),
            (crate::Reasoning::off(), None),
        ] {
            request.reasoning = Some(reasoning);
            assert_eq!(think(&request), level.map(|level| json!(level)));
        }
    }

    fn request() -> ChatRequest {
        ChatRequest {
            model: "llama3.2".into(),
            system: Some("Be brief.".into()),
            messages: vec![
                Message {
                    role: Role::User,
                    content: vec![
                        ContentPart::text("Weather here?"),
                        ContentPart::Image {
                            source: ImageSource::Url {
                                url: "data:image/png;base64,iVBORw0KGgo=".into(),
                            },
                        },
                        ContentPart::Image {
                            source: ImageSource::Base64 {
                                media_type: "image/jpeg".into(),
                                data: "/9j/4AAQ".into(),
                            },
                        },
                    ],
                },
                Message {
                    role: Role::Assistant,
                    content: vec![ContentPart::ToolCall {
                        id: "call_x".into(),
                        name: "get_weather".into(),
                        arguments: "{\"city\":\"Paris\"}".into(),
                    }],
                },
                Message {
                    role: Role::Tool,
                    content: vec![ContentPart::ToolResult {
                        tool_call_id: "call_x".into(),
                        name: None,
                        content: "18C".into(),
                        is_error: false,
                    }],
                },
            ],
            tools: vec![Tool {
                name: "get_weather".into(),
                description: Some("Weather".into()),
                parameters: json!({"type": "object", "properties": {"city": {"type": "string"}}}),
            }],
            params: SamplingParams {
                max_tokens: Some(50),
                temperature: Some(0.2),
                top_p: Some(0.8),
                top_k: Some(20),
                stop: vec!["END".into()],
                seed: Some(3),
                presence_penalty: Some(0.5),
                frequency_penalty: Some(0.25),
            },
            response_format: Some(json!({"type": "json_object"})),
            ..Default::default()
        }
    }

    #[test]
    fn builds_chat_body() {
        let body = chat_request_body(&request(), false).unwrap();
        assert_eq!(
            body,
            json!({
                "model": "llama3.2",
                "messages": [
                    {"role": "system", "content": "Be brief."},
                    {"role": "user", "content": "Weather here?", "images": ["iVBORw0KGgo=", "/9j/4AAQ"]},
                    {"role": "assistant", "content": "", "tool_calls": [
                        {"function": {"name": "get_weather", "arguments": {"city": "Paris"}}}
                    ]},
                    {"role": "tool", "content": "18C", "tool_name": "get_weather"},
                ],
                "tools": [{"type": "function", "function": {
                    "name": "get_weather", "description": "Weather",
                    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
                }}],
                "stream": false,
                "options": {"temperature": 0.2, "top_p": 0.8, "top_k": 20, "num_predict": 50,
                            "stop": ["END"], "seed": 3, "presence_penalty": 0.5, "frequency_penalty": 0.25},
                "format": "json",
            })
        );
        let mut req = request();
        req.tool_choice = Some(ToolChoice::None);
        req.response_format = Some(
            json!({"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}}),
        );
        req.params = SamplingParams::default();
        let body = chat_request_body(&req, true).unwrap();
        assert_eq!(body["stream"], true);
        assert!(body.get("tools").is_none() && body.get("options").is_none());
        assert_eq!(body["format"], json!({"type": "object"}));
    }

    #[test]
    fn image_urls_are_refused() {
        let req = ChatRequest {
            model: "llava".into(),
            messages: vec![Message {
                role: Role::User,
                content: vec![ContentPart::Image {
                    source: ImageSource::Url {
                        url: "https://example.com/cat.png".into(),
                    },
                }],
            }],
            ..Default::default()
        };
        let err = chat_request_body(&req, false).unwrap_err();
        assert_eq!((err.kind, err.status), (ErrorKind::InvalidRequest, 400));
        assert!(err.message.contains("inline images"), "{}", err.message);
    }

    #[test]
    fn parses_chat_answers() {
        let body = br#"{"model":"llama3.2","created_at":"2025-01-01T00:00:00Z",
            "message":{"role":"assistant","content":"Hello!"},"done":true,"done_reason":"stop",
            "total_duration":1,"load_duration":1,"prompt_eval_count":26,"prompt_eval_duration":1,
            "eval_count":3,"eval_duration":1}"#;
        let parsed = parse_chat_response(body).unwrap();
        assert_eq!(parsed.text(), "Hello!");
        assert_eq!(parsed.model, "llama3.2");
        assert_eq!(parsed.finish_reason, FinishReason::Stop);
        assert_eq!(
            (parsed.usage.input_tokens, parsed.usage.output_tokens),
            (26, 3)
        );

        let body = br#"{"model":"llama3.2","message":{"role":"assistant","content":"",
            "tool_calls":[{"function":{"name":"get_weather","arguments":{"city":"Paris"}}}]},
            "done":true,"done_reason":"stop","prompt_eval_count":10,"eval_count":5}"#;
        let parsed = parse_chat_response(body).unwrap();
        assert_eq!(parsed.finish_reason, FinishReason::ToolCalls);
        let [
            ContentPart::ToolCall {
                id,
                name,
                arguments,
            },
        ] = parsed.content.as_slice()
        else {
            panic!("expected one tool call: {:?}", parsed.content)
        };
        assert!(id.starts_with("call_") && id.len() > 10);
        assert_eq!(name, "get_weather");
        assert_eq!(arguments, "{\"city\":\"Paris\"}");

        let body = br#"{"model":"m","message":{"role":"assistant","content":"a b"},"done":true,"done_reason":"length"}"#;
        assert_eq!(
            parse_chat_response(body).unwrap().finish_reason,
            FinishReason::Length
        );
        let err = parse_chat_response(br#"{"error":"model crashed"}"#).unwrap_err();
        assert_eq!(err.status, 502);
        assert!(err.message.contains("model crashed"));
        assert!(parse_chat_response(b"[1]").is_err());
    }

    #[test]
    fn decodes_chunks() {
        let lines = [
            json!({"model":"qwen3","created_at":"t","message":{"role":"assistant","content":"","thinking":"Hmm"},"done":false}),
            json!({"model":"qwen3","created_at":"t","message":{"role":"assistant","content":"Hi"},"done":false}),
            json!({"model":"qwen3","created_at":"t","message":{"role":"assistant","content":"","tool_calls":[
                {"id":"call_1","function":{"index":0,"name":"f","arguments":{"a":1}}}]},"done":false}),
            json!({"model":"qwen3","created_at":"t","message":{"role":"assistant","content":""},"done":true,
                "done_reason":"stop","prompt_eval_count":7,"eval_count":4}),
        ];
        let mut decoder = ChunkDecoder::new();
        let mut out = Vec::new();
        for line in &lines {
            out.extend(decoder.decode(line).unwrap());
        }
        assert!(decoder.is_done());
        assert_eq!(
            out,
            vec![
                StreamEvent::Start {
                    id: String::new(),
                    model: "qwen3".into()
                },
                StreamEvent::ThinkingDelta { text: "Hmm".into() },
                StreamEvent::TextDelta { text: "Hi".into() },
                StreamEvent::ToolCallStart {
                    index: 0,
                    id: "call_1".into(),
                    name: "f".into()
                },
                StreamEvent::ToolCallDelta {
                    index: 0,
                    arguments: "{\"a\":1}".into()
                },
                StreamEvent::Finish {
                    reason: FinishReason::ToolCalls
                },
                StreamEvent::Usage {
                    usage: Usage {
                        input_tokens: 7,
                        output_tokens: 4,
                        cached_input_tokens: None
                    }
                },
            ]
        );
        let mut decoder = ChunkDecoder::new();
        let err = decoder
            .decode(&json!({"error": "out of memory"}))
            .unwrap_err();
        assert!(err.message.contains("out of memory"));
    }

    #[test]
    fn embeddings_and_errors() {
        let req = EmbeddingsRequest {
            model: "nomic-embed-text".into(),
            inputs: vec!["a".into()],
            dimensions: Some(64),
            ..Default::default()
        };
        assert_eq!(
            embed_request_body(&req),
            json!({"model": "nomic-embed-text", "input": ["a"], "dimensions": 64})
        );
        let parsed = parse_embed_response(
            br#"{"model":"nomic-embed-text","embeddings":[[0.5,-2]],"total_duration":1,"prompt_eval_count":1}"#,
        )
        .unwrap();
        assert_eq!(parsed.embeddings, vec![vec![0.5, -2.0]]);
        assert_eq!(parsed.usage.input_tokens, 1);
        assert!(parse_embed_response(br#"{"embeddings":[["x"]]}"#).is_err());

        let err = parse_error(
            404,
            &[],
            br#"{"error":"model \"nope\" not found, try pulling it first"}"#,
        );
        assert_eq!((err.kind, err.status), (ErrorKind::NotFound, 404));
        assert_eq!(
            err.message,
            "model \"nope\" not found, try pulling it first"
        );
        let err = parse_error(
            500,
            &[],
            br#"{"error":"llama runner process has terminated"}"#,
        );
        assert_eq!((err.kind, err.status), (ErrorKind::Upstream, 502));
    }
}
