//! The OpenAI Responses API (`POST /v1/responses`), client side: the
//! gateway serves it for endpoints of any provider by translating to the
//! neutral chat model. Multi-turn state (`previous_response_id`) is kept by
//! the host, which stores each response's conversation.

use serde_json::{Map, Value, json};

use super::openai::fill_tool_result_names;
use crate::{
    ChatRequest, ChatResponse, ChatResponseBuilder, ContentPart, FinishReason, ImageSource,
    Message, ProviderError, Reasoning, ReasoningEffort, Role, StreamEvent, Tool, ToolChoice, Usage,
};

/// Request fields the response object repeats back to the client.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ResponseEcho {
    pub instructions: Option<String>,
    pub tools: Vec<Value>,
    pub tool_choice: Value,
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    pub max_output_tokens: Option<u32>,
    pub metadata: Value,
    pub text: Value,
    pub store: bool,
    pub previous_response_id: Option<String>,
    pub reasoning_effort: Option<ReasoningEffort>,
}

/// A parsed `/v1/responses` request.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientResponsesRequest {
    /// The client's `model`: the endpoint name.
    pub endpoint: String,
    pub stream: bool,
    /// The new turn only; the host prepends the stored conversation of
    /// `echo.previous_response_id`.
    pub request: ChatRequest,
    pub echo: ResponseEcho,
}

fn invalid(path: &str, problem: &str) -> ProviderError {
    ProviderError::invalid_request(format!("'{path}' {problem}"))
}

/// Parses a `POST /v1/responses` body; `input` is required.
pub fn parse_responses_request(body: &[u8]) -> Result<ClientResponsesRequest, ProviderError> {
    parse_request(body, InputRule::Required)
}

/// Parses a `POST /v1/responses/input_tokens` body. As in OpenAI's API,
/// `input` may be left out there: what is counted is then the stored
/// conversation `previous_response_id` names (the caller checks that there
/// is something to count).
pub fn parse_input_tokens_request(body: &[u8]) -> Result<ClientResponsesRequest, ProviderError> {
    parse_request(body, InputRule::Optional)
}

#[derive(Clone, Copy, PartialEq)]
enum InputRule {
    Required,
    Optional,
}

fn parse_request(body: &[u8], input: InputRule) -> Result<ClientResponsesRequest, ProviderError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        ProviderError::invalid_request(format!("request body is not valid JSON: {e}"))
    })?;
    let obj = value
        .as_object()
        .ok_or_else(|| ProviderError::invalid_request("request body must be a JSON object"))?;
    let endpoint = obj
        .get("model")
        .and_then(Value::as_str)
        .filter(|m| !m.is_empty())
        .ok_or_else(|| invalid("model", "is required: pass the endpoint name"))?
        .to_string();
    if !obj.get("conversation").is_none_or(Value::is_null) {
        // Answering without the conversation would lose its turns.
        return Err(invalid(
            "conversation",
            "is not supported by this gateway: continue a conversation with previous_response_id",
        ));
    }
    let instructions = match obj.get("instructions") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return Err(invalid("instructions", "must be a string")),
    };
    let mut system_parts: Vec<String> = instructions.iter().cloned().collect();
    let messages = match obj.get("input") {
        None | Some(Value::Null) if input == InputRule::Optional => Vec::new(),
        None | Some(Value::Null) => return Err(invalid("input", "is required")),
        Some(Value::String(text)) => vec![Message::user(text.clone())],
        Some(Value::Array(items)) => parse_input_items(items, &mut system_parts)?,
        Some(_) => {
            return Err(invalid(
                "input",
                "must be a string or an array of input items",
            ));
        }
    };
    let tools_json: Vec<Value> = match obj.get("tools") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(tools)) => tools.clone(),
        Some(_) => return Err(invalid("tools", "must be an array")),
    };
    let tools = tools_json
        .iter()
        .enumerate()
        .map(|(i, tool)| parse_tool(i, tool))
        .collect::<Result<Vec<_>, _>>()?;
    let tool_choice = match obj.get("tool_choice") {
        None | Some(Value::Null) => None,
        Some(choice) => Some(parse_tool_choice(choice)?),
    };
    let number = |key: &str| -> Result<Option<f64>, ProviderError> {
        match obj.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v
                .as_f64()
                .map(Some)
                .ok_or_else(|| invalid(key, "must be a number")),
        }
    };
    let temperature = number("temperature")?;
    let top_p = number("top_p")?;
    let max_output_tokens = match obj.get("max_output_tokens") {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            v.as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .ok_or_else(|| invalid("max_output_tokens", "must be a positive integer"))?,
        ),
    };
    let text = obj
        .get("text")
        .cloned()
        .unwrap_or_else(|| json!({"format": {"type": "text"}}));
    let response_format = match text.pointer("/format/type").and_then(Value::as_str) {
        None | Some("text") => None,
        Some("json_object") => Some(json!({"type": "json_object"})),
        Some("json_schema") => {
            let format = text.get("format").cloned().unwrap_or_default();
            let mut schema = Map::new();
            for key in ["name", "schema", "strict", "description"] {
                if let Some(v) = format.get(key) {
                    schema.insert(key.to_string(), v.clone());
                }
            }
            Some(json!({"type": "json_schema", "json_schema": schema}))
        }
        Some(other) => {
            return Err(invalid(
                "text.format.type",
                &format!("'{other}' is not supported"),
            ));
        }
    };
    let reasoning_effort = match obj.get("reasoning") {
        None | Some(Value::Null) => None,
        Some(Value::Object(reasoning)) => match reasoning.get("effort") {
            None | Some(Value::Null) => None,
            Some(Value::String(effort)) => ReasoningEffort::parse(effort),
            Some(_) => return Err(invalid("reasoning.effort", "must be a string")),
        },
        Some(_) => return Err(invalid("reasoning", "must be an object")),
    };
    let previous_response_id = match obj.get("previous_response_id") {
        None | Some(Value::Null) => None,
        Some(Value::String(id)) => Some(id.clone()),
        Some(_) => return Err(invalid("previous_response_id", "must be a string")),
    };
    let request = ChatRequest {
        system: (!system_parts.is_empty()).then(|| system_parts.join("\n\n")),
        messages,
        tools,
        tool_choice,
        params: crate::SamplingParams {
            max_tokens: max_output_tokens,
            temperature,
            top_p,
            ..Default::default()
        },
        response_format,
        reasoning: reasoning_effort.map(Reasoning::with_effort),
        ..Default::default()
    };
    Ok(ClientResponsesRequest {
        endpoint,
        stream: obj.get("stream").and_then(Value::as_bool).unwrap_or(false),
        request,
        echo: ResponseEcho {
            instructions,
            tools: tools_json,
            tool_choice: obj
                .get("tool_choice")
                .cloned()
                .unwrap_or_else(|| json!("auto")),
            temperature,
            top_p,
            max_output_tokens,
            metadata: obj.get("metadata").cloned().unwrap_or_else(|| json!({})),
            text,
            store: obj.get("store").and_then(Value::as_bool).unwrap_or(true),
            previous_response_id,
            reasoning_effort,
        },
    })
}

fn parse_input_items(
    items: &[Value],
    system: &mut Vec<String>,
) -> Result<Vec<Message>, ProviderError> {
    let mut messages: Vec<Message> = Vec::new();
    // Appends a part to the last turn when it has `role`, else opens one.
    let mut push = |role: Role, part: ContentPart| match messages.last_mut() {
        Some(last) if last.role == role => last.content.push(part),
        _ => messages.push(Message {
            role,
            content: vec![part],
        }),
    };
    for (i, item) in items.iter().enumerate() {
        let path = format!("input[{i}]");
        let obj = item
            .as_object()
            .ok_or_else(|| invalid(&path, "must be an object"))?;
        let kind = obj.get("type").and_then(Value::as_str).unwrap_or("message");
        match kind {
            "message" => {
                let role = obj
                    .get("role")
                    .and_then(Value::as_str)
                    .ok_or_else(|| invalid(&format!("{path}.role"), "is required"))?;
                let parts = message_content(obj.get("content"), &format!("{path}.content"))?;
                match role {
                    "system" | "developer" => system.push(
                        parts
                            .iter()
                            .filter_map(|p| match p {
                                ContentPart::Text { text } => Some(text.as_str()),
                                _ => None,
                            })
                            .collect::<Vec<_>>()
                            .join("\n"),
                    ),
                    "user" | "assistant" => {
                        let role = if role == "user" {
                            Role::User
                        } else {
                            Role::Assistant
                        };
                        for part in parts {
                            push(role, part);
                        }
                    }
                    other => {
                        return Err(invalid(
                            &format!("{path}.role"),
                            &format!("'{other}' is not a valid role"),
                        ));
                    }
                }
            }
            "function_call" => {
                let field = |key: &str| {
                    obj.get(key)
                        .and_then(Value::as_str)
                        .map(String::from)
                        .ok_or_else(|| invalid(&format!("{path}.{key}"), "is required"))
                };
                push(
                    Role::Assistant,
                    ContentPart::ToolCall {
                        id: field("call_id")?,
                        name: field("name")?,
                        arguments: field("arguments")?,
                    },
                );
            }
            "function_call_output" => {
                let call_id = obj
                    .get("call_id")
                    .and_then(Value::as_str)
                    .ok_or_else(|| invalid(&format!("{path}.call_id"), "is required"))?;
                let content = match obj.get("output") {
                    Some(Value::String(s)) => s.clone(),
                    Some(Value::Array(parts)) => parts
                        .iter()
                        .filter_map(|p| p.get("text").and_then(Value::as_str))
                        .collect::<Vec<_>>()
                        .join(""),
                    _ => {
                        return Err(invalid(
                            &format!("{path}.output"),
                            "is required and must be a string",
                        ));
                    }
                };
                push(
                    Role::Tool,
                    ContentPart::ToolResult {
                        tool_call_id: call_id.to_string(),
                        name: None,
                        content,
                        is_error: false,
                    },
                );
            }
            // Reasoning items carry the provider's hidden state; other
            // providers cannot use it, so it is dropped.
            "reasoning" => {}
            other => {
                return Err(invalid(
                    &format!("{path}.type"),
                    &format!("'{other}' items are not supported by this gateway"),
                ));
            }
        }
    }
    fill_tool_result_names(&mut messages);
    Ok(messages)
}

fn message_content(content: Option<&Value>, path: &str) -> Result<Vec<ContentPart>, ProviderError> {
    match content {
        Some(Value::String(text)) => Ok(vec![ContentPart::text(text.clone())]),
        Some(Value::Array(parts)) => parts
            .iter()
            .enumerate()
            .map(|(i, part)| {
                let path = format!("{path}[{i}]");
                match part.get("type").and_then(Value::as_str) {
                    Some("input_text" | "output_text" | "text" | "refusal") => {
                        let text = part
                            .get("text")
                            .or_else(|| part.get("refusal"))
                            .and_then(Value::as_str)
                            .ok_or_else(|| invalid(&format!("{path}.text"), "is required"))?;
                        Ok(ContentPart::text(text))
                    }
                    Some("input_image") => {
                        let url =
                            part.get("image_url")
                                .and_then(Value::as_str)
                                .ok_or_else(|| {
                                    invalid(
                                        &format!("{path}.image_url"),
                                        "is required (file_id images are not supported)",
                                    )
                                })?;
                        Ok(ContentPart::Image {
                            source: ImageSource::from_url(url),
                        })
                    }
                    other => Err(invalid(
                        &format!("{path}.type"),
                        &format!(
                            "{} is not supported",
                            other.map_or("a missing type".into(), |t| format!("'{t}'"))
                        ),
                    )),
                }
            })
            .collect(),
        _ => Err(invalid(
            path,
            "is required and must be a string or an array of content parts",
        )),
    }
}

fn parse_tool(i: usize, tool: &Value) -> Result<Tool, ProviderError> {
    let path = format!("tools[{i}]");
    match tool.get("type").and_then(Value::as_str) {
        Some("function") => {}
        other => {
            return Err(invalid(
                &format!("{path}.type"),
                &format!(
                    "{} is not supported (only function tools are)",
                    other.unwrap_or("missing")
                ),
            ));
        }
    }
    let name = tool
        .get("name")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .ok_or_else(|| invalid(&format!("{path}.name"), "is required"))?;
    Ok(Tool {
        name: name.to_string(),
        description: tool
            .get("description")
            .and_then(Value::as_str)
            .map(String::from),
        parameters: tool
            .get("parameters")
            .filter(|p| p.is_object())
            .cloned()
            .unwrap_or_else(|| json!({"type": "object", "properties": {}})),
    })
}

fn parse_tool_choice(choice: &Value) -> Result<ToolChoice, ProviderError> {
    match choice {
        Value::String(s) => match s.as_str() {
            "auto" => Ok(ToolChoice::Auto),
            "none" => Ok(ToolChoice::None),
            "required" => Ok(ToolChoice::Required),
            other => Err(invalid(
                "tool_choice",
                &format!("'{other}' is not supported"),
            )),
        },
        Value::Object(obj) if obj.get("type").and_then(Value::as_str) == Some("function") => obj
            .get("name")
            .and_then(Value::as_str)
            .map(|name| ToolChoice::Tool {
                name: name.to_string(),
            })
            .ok_or_else(|| invalid("tool_choice.name", "is required")),
        _ => Err(invalid(
            "tool_choice",
            "must be auto, none, required or {\"type\": \"function\", \"name\": …}",
        )),
    }
}

/// Output item ids derive from the response id and the item's position, so
/// a streamed response and its final object agree.
fn item_id(prefix: &str, response_id: &str, index: usize) -> String {
    let suffix = response_id.strip_prefix("resp_").unwrap_or(response_id);
    format!("{prefix}_{suffix}_{index}")
}

/// The output items of a response, in order: one message item per run of
/// text, one function_call item per tool call, reasoning as summaries.
fn output_items(response_id: &str, content: &[ContentPart]) -> Vec<Value> {
    let mut items: Vec<Value> = Vec::new();
    for part in content {
        let index = items.len();
        match part {
            ContentPart::Text { text } => {
                let extends_message = items.last().is_some_and(|last| last["type"] == "message");
                if extends_message {
                    if let Some(Value::String(existing)) = items
                        .last_mut()
                        .and_then(|last| last.pointer_mut("/content/0/text"))
                    {
                        existing.push_str(text);
                    }
                } else {
                    items.push(message_item(
                        &item_id("msg", response_id, index),
                        text,
                        "completed",
                    ));
                }
            }
            ContentPart::ToolCall {
                id,
                name,
                arguments,
            } => items.push(function_call_item(
                &item_id("fc", response_id, index),
                id,
                name,
                arguments,
                "completed",
            )),
            ContentPart::Thinking { text, .. } if !text.is_empty() => items.push(json!({
                "type": "reasoning",
                "id": item_id("rs", response_id, index),
                "summary": [{"type": "summary_text", "text": text}],
            })),
            _ => {}
        }
    }
    items
}

fn message_item(id: &str, text: &str, status: &str) -> Value {
    json!({
        "type": "message",
        "id": id,
        "status": status,
        "role": "assistant",
        "content": [{"type": "output_text", "text": text, "annotations": []}],
    })
}

fn function_call_item(id: &str, call_id: &str, name: &str, arguments: &str, status: &str) -> Value {
    json!({
        "type": "function_call",
        "id": id,
        "call_id": call_id,
        "name": name,
        "arguments": arguments,
        "status": status,
    })
}

fn usage_json(usage: &Usage) -> Value {
    json!({
        "input_tokens": usage.input_tokens,
        "input_tokens_details": {"cached_tokens": usage.cached_input_tokens.unwrap_or(0)},
        "output_tokens": usage.output_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": usage.total(),
    })
}

/// The response object (`object: "response"`).
pub fn response_body(
    id: &str,
    created_at: u64,
    model: &str,
    response: &ChatResponse,
    echo: &ResponseEcho,
) -> Value {
    let (status, incomplete) = match response.finish_reason {
        FinishReason::Length => ("incomplete", json!({"reason": "max_output_tokens"})),
        FinishReason::ContentFilter => ("incomplete", json!({"reason": "content_filter"})),
        _ => ("completed", Value::Null),
    };
    let mut body = skeleton(id, created_at, model, echo, status);
    body["incomplete_details"] = incomplete;
    body["output"] = Value::Array(output_items(id, &response.content));
    body["usage"] = usage_json(&response.usage);
    body
}

fn skeleton(id: &str, created_at: u64, model: &str, echo: &ResponseEcho, status: &str) -> Value {
    json!({
        "id": id,
        "object": "response",
        "created_at": created_at,
        "status": status,
        "error": null,
        "incomplete_details": null,
        "instructions": echo.instructions,
        "max_output_tokens": echo.max_output_tokens,
        "model": model,
        "output": [],
        "parallel_tool_calls": true,
        "previous_response_id": echo.previous_response_id,
        "reasoning": {"effort": echo.reasoning_effort.map(ReasoningEffort::as_str), "summary": null},
        "store": echo.store,
        "temperature": echo.temperature,
        "text": echo.text,
        "tool_choice": echo.tool_choice,
        "tools": echo.tools,
        "top_p": echo.top_p,
        "truncation": "disabled",
        "usage": null,
        "metadata": echo.metadata,
    })
}

/// The item being streamed.
#[derive(Debug)]
enum OpenItem {
    Message {
        index: usize,
        text: String,
    },
    FunctionCall {
        index: usize,
        call_id: String,
        name: String,
        arguments: String,
    },
}

/// Turns neutral stream events into Responses API server-sent events
/// (`response.created` … `response.completed`).
#[derive(Debug)]
pub struct ResponsesEventEncoder {
    id: String,
    created_at: u64,
    model: String,
    echo: ResponseEcho,
    sequence: u64,
    started: bool,
    open: Option<OpenItem>,
    items: usize,
    built: ChatResponseBuilder,
}

pub type ResponsesEvent = (&'static str, Value);

impl ResponsesEventEncoder {
    pub fn new(id: String, created_at: u64, model: String, echo: ResponseEcho) -> Self {
        Self {
            id,
            created_at,
            model,
            echo,
            sequence: 0,
            started: false,
            open: None,
            items: 0,
            built: ChatResponseBuilder::default(),
        }
    }

    fn event(&mut self, name: &'static str, mut data: Value) -> ResponsesEvent {
        data["type"] = json!(name);
        data["sequence_number"] = json!(self.sequence);
        self.sequence += 1;
        (name, data)
    }

    fn start(&mut self, out: &mut Vec<ResponsesEvent>) {
        if self.started {
            return;
        }
        self.started = true;
        let response = skeleton(
            &self.id,
            self.created_at,
            &self.model,
            &self.echo,
            "in_progress",
        );
        let created = self.event("response.created", json!({"response": response.clone()}));
        out.push(created);
        let progress = self.event("response.in_progress", json!({"response": response}));
        out.push(progress);
    }

    fn close_item(&mut self, out: &mut Vec<ResponsesEvent>) {
        match self.open.take() {
            None => {}
            Some(OpenItem::Message { index, text }) => {
                let item_id = item_id("msg", &self.id, index);
                let part = json!({"type": "output_text", "text": text, "annotations": []});
                let e = self.event(
                    "response.output_text.done",
                    json!({"item_id": item_id, "output_index": index, "content_index": 0, "text": text, "logprobs": []}),
                );
                out.push(e);
                let e = self.event(
                    "response.content_part.done",
                    json!({"item_id": item_id, "output_index": index, "content_index": 0, "part": part}),
                );
                out.push(e);
                let e = self.event(
                    "response.output_item.done",
                    json!({"output_index": index, "item": message_item(&item_id, &text, "completed")}),
                );
                out.push(e);
            }
            Some(OpenItem::FunctionCall {
                index,
                call_id,
                name,
                arguments,
            }) => {
                let item_id = item_id("fc", &self.id, index);
                let e = self.event(
                    "response.function_call_arguments.done",
                    json!({"item_id": item_id, "output_index": index, "arguments": arguments}),
                );
                out.push(e);
                let item = function_call_item(&item_id, &call_id, &name, &arguments, "completed");
                let e = self.event(
                    "response.output_item.done",
                    json!({"output_index": index, "item": item}),
                );
                out.push(e);
            }
        }
    }

    pub fn encode(&mut self, event: &StreamEvent) -> Vec<ResponsesEvent> {
        self.built.push(event);
        let mut out = Vec::new();
        self.start(&mut out);
        match event {
            StreamEvent::TextDelta { text } => {
                if !matches!(self.open, Some(OpenItem::Message { .. })) {
                    self.close_item(&mut out);
                    let index = self.items;
                    self.items += 1;
                    let item_id = item_id("msg", &self.id, index);
                    let mut item = message_item(&item_id, "", "in_progress");
                    item["content"] = json!([]);
                    let e = self.event(
                        "response.output_item.added",
                        json!({"output_index": index, "item": item}),
                    );
                    out.push(e);
                    let e = self.event(
                        "response.content_part.added",
                        json!({"item_id": item_id, "output_index": index, "content_index": 0,
                               "part": {"type": "output_text", "text": "", "annotations": []}}),
                    );
                    out.push(e);
                    self.open = Some(OpenItem::Message {
                        index,
                        text: String::new(),
                    });
                }
                if let Some(OpenItem::Message {
                    index,
                    text: so_far,
                }) = &mut self.open
                {
                    so_far.push_str(text);
                    let index = *index;
                    let item_id = item_id("msg", &self.id, index);
                    let e = self.event(
                        "response.output_text.delta",
                        json!({"item_id": item_id, "output_index": index, "content_index": 0, "delta": text, "logprobs": []}),
                    );
                    out.push(e);
                }
            }
            StreamEvent::ToolCallStart { id, name, .. } => {
                self.close_item(&mut out);
                let index = self.items;
                self.items += 1;
                let item = function_call_item(
                    &item_id("fc", &self.id, index),
                    id,
                    name,
                    "",
                    "in_progress",
                );
                let e = self.event(
                    "response.output_item.added",
                    json!({"output_index": index, "item": item}),
                );
                out.push(e);
                self.open = Some(OpenItem::FunctionCall {
                    index,
                    call_id: id.clone(),
                    name: name.clone(),
                    arguments: String::new(),
                });
            }
            StreamEvent::ToolCallDelta { arguments, .. } => {
                if let Some(OpenItem::FunctionCall {
                    index,
                    arguments: so_far,
                    ..
                }) = &mut self.open
                {
                    so_far.push_str(arguments);
                    let index = *index;
                    let item_id = item_id("fc", &self.id, index);
                    let e = self.event(
                        "response.function_call_arguments.delta",
                        json!({"item_id": item_id, "output_index": index, "delta": arguments}),
                    );
                    out.push(e);
                }
            }
            _ => {}
        }
        out
    }

    /// Closes the open item and ends with `response.completed` (or
    /// `response.incomplete`) carrying the whole response object.
    pub fn finish(&mut self) -> Vec<ResponsesEvent> {
        let mut out = Vec::new();
        self.start(&mut out);
        self.close_item(&mut out);
        let response = std::mem::take(&mut self.built).finish();
        let body = self.final_body(&response);
        let name = if body["status"] == "incomplete" {
            "response.incomplete"
        } else {
            "response.completed"
        };
        let e = self.event(name, json!({"response": body}));
        out.push(e);
        out
    }

    fn final_body(&self, response: &ChatResponse) -> Value {
        let mut body = response_body(&self.id, self.created_at, &self.model, response, &self.echo);
        // Items were numbered as they streamed: thinking was not streamed,
        // so renumber the final object's items the same way.
        let streamed: Vec<ContentPart> = response
            .content
            .iter()
            .filter(|p| !matches!(p, ContentPart::Thinking { .. }))
            .cloned()
            .collect();
        body["output"] = Value::Array(output_items(&self.id, &streamed));
        body
    }
}

/// The conversation to store for `previous_response_id`: the turns sent
/// plus the assistant's answer.
pub fn conversation_after(history: &[Message], response: &ChatResponse) -> Vec<Message> {
    let mut conversation = history.to_vec();
    let answer: Vec<ContentPart> = response
        .content
        .iter()
        .filter(|p| matches!(p, ContentPart::Text { .. } | ContentPart::ToolCall { .. }))
        .cloned()
        .collect();
    if !answer.is_empty() {
        conversation.push(Message {
            role: Role::Assistant,
            content: answer,
        });
    }
    conversation
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasoning_effort_is_a_neutral_reasoning_request_and_echoed() {
        let parsed = parse_responses_request(
            br#"{"model":"ep","input":"hi","reasoning":{"effort":"low","summary":"auto"}}"#,
        )
        .unwrap();
        assert_eq!(
            parsed.request.reasoning,
            Some(Reasoning::with_effort(ReasoningEffort::Low))
        );
        let object = skeleton("resp_1", 0, "ep", &parsed.echo, "completed");
        assert_eq!(
            object["reasoning"],
            json!({"effort": "low", "summary": null})
        );
        let parsed = parse_responses_request(br#"{"model":"ep","input":"hi"}"#).unwrap();
        assert_eq!(parsed.request.reasoning, None);
        let error =
            parse_responses_request(br#"{"model":"ep","input":"hi","reasoning":{"effort":1}}"#)
                .unwrap_err();
        assert!(
            error.message.contains("reasoning.effort"),
            "{}",
            error.message
        );
    }

    #[test]
    fn a_conversation_is_refused_rather_than_dropped() {
        let error =
            parse_responses_request(br#"{"model":"ep","input":"hi","conversation":"conv_1"}"#)
                .unwrap_err();
        assert!(
            error.message.contains("'conversation' is not supported"),
            "{}",
            error.message
        );
        assert!(
            parse_responses_request(br#"{"model":"ep","input":"hi","conversation":null}"#).is_ok()
        );
    }

    #[test]
    fn input_is_optional_only_when_counting_tokens() {
        for body in [
            &br#"{"model":"ep","previous_response_id":"resp_1"}"#[..],
            br#"{"model":"ep","input":null,"instructions":"Be brief."}"#,
        ] {
            let error = parse_responses_request(body).unwrap_err();
            assert_eq!(error.message, "'input' is required");
            let counted = parse_input_tokens_request(body).unwrap();
            assert!(counted.request.messages.is_empty());
        }
        let counted =
            parse_input_tokens_request(br#"{"model":"ep","instructions":"Be brief."}"#).unwrap();
        assert_eq!(counted.request.system.as_deref(), Some("Be brief."));
        let with_input = br#"{"model":"ep","input":"hi","previous_response_id":"resp_1"}"#;
        assert_eq!(
            parse_input_tokens_request(with_input),
            parse_responses_request(with_input)
        );
    }

    #[test]
    fn parses_string_input_instructions_and_tools() {
        let parsed = parse_responses_request(
            br#"{"model":"ep","input":"Hello!","instructions":"Be brief.","max_output_tokens":50,
                 "tools":[{"type":"function","name":"f","parameters":{"type":"object"}}],"tool_choice":"required"}"#,
        )
        .unwrap();
        assert_eq!(parsed.endpoint, "ep");
        assert_eq!(parsed.request.system.as_deref(), Some("Be brief."));
        assert_eq!(parsed.request.messages, vec![Message::user("Hello!")]);
        assert_eq!(parsed.request.params.max_tokens, Some(50));
        assert_eq!(parsed.request.tools[0].name, "f");
        assert_eq!(parsed.request.tool_choice, Some(ToolChoice::Required));
        assert!(parsed.echo.store);
    }

    #[test]
    fn parses_items_with_function_calls_and_outputs() {
        let parsed = parse_responses_request(
            br#"{"model":"ep","input":[
                {"role":"developer","content":"Rules."},
                {"role":"user","content":[{"type":"input_text","text":"Weather?"},{"type":"input_image","image_url":"data:image/png;base64,AAAA"}]},
                {"type":"function_call","call_id":"c1","name":"get_weather","arguments":"{\"city\":\"Paris\"}"},
                {"type":"function_call_output","call_id":"c1","output":"18C"}
            ]}"#,
        )
        .unwrap();
        let messages = &parsed.request.messages;
        assert_eq!(parsed.request.system.as_deref(), Some("Rules."));
        assert_eq!(messages.len(), 3);
        assert_eq!(messages[0].role, Role::User);
        assert!(matches!(
            messages[0].content[1],
            ContentPart::Image {
                source: ImageSource::Base64 { .. }
            }
        ));
        assert_eq!(messages[1].role, Role::Assistant);
        assert_eq!(
            messages[2].content[0],
            ContentPart::ToolResult {
                tool_call_id: "c1".into(),
                name: Some("get_weather".into()),
                content: "18C".into(),
                is_error: false
            }
        );
    }

    #[test]
    fn rejects_bad_input_with_clear_errors() {
        for (body, needle) in [
            (&br#"{"input":"x"}"#[..], "model"),
            (br#"{"model":"ep"}"#, "input"),
            (
                br#"{"model":"ep","input":[{"type":"web_search_call"}]}"#,
                "web_search_call",
            ),
            (
                br#"{"model":"ep","input":"x","tools":[{"type":"web_search"}]}"#,
                "tools[0].type",
            ),
            (b"not json", "JSON"),
        ] {
            let error = parse_responses_request(body).unwrap_err();
            assert_eq!(error.status, 400);
            assert!(
                error.message.contains(needle),
                "{} lacks {needle}",
                error.message
            );
        }
    }

    #[test]
    fn response_body_has_message_and_function_call_items() {
        let response = ChatResponse {
            content: vec![
                ContentPart::text("Let me check."),
                ContentPart::ToolCall {
                    id: "c1".into(),
                    name: "f".into(),
                    arguments: "{}".into(),
                },
            ],
            finish_reason: FinishReason::ToolCalls,
            usage: Usage {
                input_tokens: 5,
                output_tokens: 7,
                cached_input_tokens: None,
            },
            ..Default::default()
        };
        let body = response_body("resp_1", 10, "ep", &response, &ResponseEcho::default());
        assert_eq!(body["object"], "response");
        assert_eq!(body["status"], "completed");
        assert_eq!(body["output"][0]["content"][0]["text"], "Let me check.");
        assert_eq!(body["output"][1]["call_id"], "c1");
        assert_eq!(body["usage"]["total_tokens"], 12);
    }

    #[test]
    fn stream_events_follow_the_responses_sequence() {
        let mut encoder =
            ResponsesEventEncoder::new("resp_9".into(), 1, "ep".into(), ResponseEcho::default());
        let mut names = Vec::new();
        let mut last = Value::Null;
        for event in [
            StreamEvent::Start {
                id: String::new(),
                model: String::new(),
            },
            StreamEvent::TextDelta { text: "Hi".into() },
            StreamEvent::TextDelta { text: "!".into() },
            StreamEvent::ToolCallStart {
                index: 0,
                id: "c1".into(),
                name: "f".into(),
            },
            StreamEvent::ToolCallDelta {
                index: 0,
                arguments: "{}".into(),
            },
            StreamEvent::Finish {
                reason: FinishReason::ToolCalls,
            },
        ] {
            for (name, data) in encoder.encode(&event) {
                names.push(name);
                last = data;
            }
        }
        for (name, data) in encoder.finish() {
            names.push(name);
            last = data;
        }
        assert_eq!(
            names,
            [
                "response.created",
                "response.in_progress",
                "response.output_item.added",
                "response.content_part.added",
                "response.output_text.delta",
                "response.output_text.delta",
                "response.output_text.done",
                "response.content_part.done",
                "response.output_item.done",
                "response.output_item.added",
                "response.function_call_arguments.delta",
                "response.function_call_arguments.done",
                "response.output_item.done",
                "response.completed",
            ]
        );
        assert_eq!(last["sequence_number"], 13);
        assert_eq!(last["response"]["output"][0]["content"][0]["text"], "Hi!");
        assert_eq!(last["response"]["output"][0]["id"], "msg_9_0");
        assert_eq!(last["response"]["output"][1]["id"], "fc_9_1");
    }
}
