//! Amazon Bedrock wire formats: the Converse API (`POST
//! /model/{modelId}/converse` and `/converse-stream`) and the InvokeModel
//! bodies of the embedding models (Amazon Titan, Cohere Embed).
//!
//! Provider side only for now (a plugin calling Bedrock):
//! [`converse_request_body`], [`parse_converse`], [`ConverseStreamDecoder`]
//! (the JSON payloads of the event-stream messages; the binary framing is
//! the SDK's `eventstream`), [`embeddings_request_body`],
//! [`parse_embeddings`], [`parse_error`], [`exception_error`]. Kept here,
//! next to the other formats, so the host can serve a Bedrock dialect later.
//!
//! Usage convention: like Anthropic's, Bedrock's `inputTokens` excludes
//! prompt-cache reads and writes (`cacheReadInputTokens`,
//! `cacheWriteInputTokens`); the neutral `input_tokens` counts them all.

use std::collections::HashMap;

use serde_json::{Map, Value, json};

use super::common;

use crate::{
    ChatRequest, ChatResponse, ContentPart, EmbeddingsRequest, EmbeddingsResponse, ErrorKind,
    FinishReason, ImageSource, Message, ProviderError, RawJson, ReasoningEffort, Role, StreamEvent,
    ToolChoice, Usage,
};

/// Output tokens left for Claude's answer besides its thinking budget when
/// the client set no limit.
const THINKING_ANSWER_TOKENS: u32 = 4096;

/// Most texts one Cohere Embed call on Bedrock accepts.
pub const COHERE_MAX_TEXTS: usize = 96;

// ---------------------------------------------------------------------------
// Converse: request
// ---------------------------------------------------------------------------

/// The CountTokens body for `request`: its Converse body's fields that
/// count (messages, system prompt, tools, model-specific fields such as
/// Claude's thinking), as `{"input": {"converse": …}}`.
pub fn count_tokens_request_body(request: &ChatRequest) -> Result<Value, ProviderError> {
    const COUNTED: [&str; 4] = [
        "messages",
        "system",
        "toolConfig",
        "additionalModelRequestFields",
    ];
    let mut converse = match converse_request_body(request)? {
        Value::Object(fields) => fields,
        _ => Map::new(),
    };
    converse.retain(|key, _| COUNTED.contains(&key.as_str()));
    Ok(json!({ "input": { "converse": converse } }))
}

/// The input-token count in a CountTokens answer.
pub fn parse_count_tokens(body: &[u8]) -> Result<u64, ProviderError> {
    serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|answer| answer.get("inputTokens").and_then(Value::as_u64))
        .ok_or_else(|| {
            ProviderError::bad_upstream("Bedrock CountTokens answer without inputTokens")
        })
}

/// The Converse body for `request` (the model id goes in the URL path, not
/// the body). Fails for content Converse cannot carry, e.g. remote image
/// URLs (Converse takes image bytes only).
pub fn converse_request_body(request: &ChatRequest) -> Result<Value, ProviderError> {
    let mut body = Map::new();
    body.insert(
        "messages".into(),
        Value::Array(wire_messages(&request.messages)?),
    );
    if let Some(system) = request.system.as_deref().filter(|s| !s.trim().is_empty()) {
        body.insert("system".into(), json!([{"text": system}]));
    }

    let params = &request.params;
    let model = request.model.to_ascii_lowercase();
    // Converse has no reasoning field: each family that reasons on request
    // takes its own in the model-specific fields. Claude's extended
    // thinking, under Anthropic's own rules:
    let claude = model.contains("anthropic.claude");
    // Claude's JSON mode (see `anthropic::JSON_ANSWER_TOOL`) forces a tool
    // call, which leaves no room for thinking.
    let json_mode = claude && super::anthropic::json_mode(request);
    let thinking = (claude && !json_mode)
        .then(|| super::anthropic::thinking_for(request, params.max_tokens))
        .flatten();
    // Nova 2 Lite and OpenAI's open-weight models take a level instead.
    let level = reasoning_level(&model, request.reasoning.as_ref());
    let mut inference = Map::new();
    // Nova refuses a token limit and sampling beside its highest level.
    let nova_high = matches!(level, Some((LevelField::Nova, ReasoningEffort::High)));
    match (params.max_tokens, thinking) {
        (Some(_), _) if nova_high => {}
        (Some(max_tokens), _) => {
            inference.insert("maxTokens".into(), json!(max_tokens));
        }
        // The budget must stay below maxTokens: room for an answer besides.
        (None, Some(budget)) => {
            inference.insert(
                "maxTokens".into(),
                json!(budget.saturating_add(THINKING_ANSWER_TOKENS)),
            );
        }
        (None, None) => {}
    }
    let sampling = super::anthropic::Sampling::beside_thinking(params, thinking.is_some());
    if let Some(temperature) = sampling.temperature.filter(|_| !nova_high) {
        inference.insert("temperature".into(), json!(temperature));
    }
    if let Some(top_p) = sampling.top_p.filter(|_| !nova_high) {
        inference.insert("topP".into(), json!(top_p));
    }
    if !params.stop.is_empty() {
        inference.insert("stopSequences".into(), json!(params.stop));
    }
    if !inference.is_empty() {
        body.insert("inferenceConfig".into(), Value::Object(inference));
    }
    // Converse has no top_k; the model-specific fields carry it (Anthropic,
    // Mistral and Cohere models on Bedrock name it `top_k`).
    let mut additional = Map::new();
    if let Some(top_k) = sampling.top_k {
        additional.insert("top_k".into(), json!(top_k));
    }
    if let Some(budget) = thinking {
        additional.insert(
            "thinking".into(),
            json!({"type": "enabled", "budget_tokens": budget}),
        );
    }
    // An Anthropic client's betas: Claude on Bedrock takes them here.
    let betas = super::anthropic::betas(request);
    if claude && !betas.is_empty() {
        additional.insert(super::anthropic::BETAS_FIELD.into(), json!(betas));
    }
    match level {
        Some((LevelField::Nova, level)) => {
            additional.insert(
                "reasoningConfig".into(),
                json!({"type": "enabled", "maxReasoningEffort": level.as_str()}),
            );
        }
        Some((LevelField::GptOss, level)) => {
            additional.insert("reasoning_effort".into(), json!(level.as_str()));
        }
        None => {}
    }
    if !additional.is_empty() {
        body.insert(
            "additionalModelRequestFields".into(),
            Value::Object(additional),
        );
    }
    if let Some(output_config) = output_config(request) {
        body.insert("outputConfig".into(), output_config);
    }
    // seed, penalties and a plain JSON answer without a schema have no
    // Converse equivalent.

    let tool_config = if json_mode {
        Some(json_answer_tool_config())
    } else {
        tool_config(request)
    };
    if let Some(tool_config) = tool_config {
        body.insert("toolConfig".into(), tool_config);
    }
    Ok(Value::Object(body))
}

/// A `response_format` schema as Converse structured output, which takes
/// the schema as a JSON string.
fn output_config(request: &ChatRequest) -> Option<Value> {
    let format = super::common::SchemaFormat::of(request.response_format.as_ref())?;
    let mut json_schema = json!({
        "schema": format.schema.to_string(),
        "name": format.name.unwrap_or("output"),
    });
    if let Some(description) = format.description.filter(|d| !d.is_empty()) {
        json_schema["description"] = json!(description);
    }
    Some(json!({
        "textFormat": {
            "type": "json_schema",
            "structure": {"jsonSchema": json_schema},
        }
    }))
}

/// Where a model family on Bedrock takes a reasoning level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LevelField {
    /// Nova 2 Lite: `reasoningConfig.maxReasoningEffort` (reasoning is off
    /// by default; other Nova models refuse the field).
    Nova,
    /// OpenAI's gpt-oss: `reasoning_effort`, as in OpenAI's own API.
    GptOss,
}

/// The reasoning level to send to a family that takes one (`model` in
/// lowercase): low, medium or high, the levels both accept. `None` for
/// other families, and when reasoning is off or not asked for: Nova's
/// default is off, and gpt-oss cannot turn it off.
fn reasoning_level(
    model: &str,
    reasoning: Option<&crate::Reasoning>,
) -> Option<(LevelField, ReasoningEffort)> {
    let field = if model.contains("amazon.nova-2-lite") {
        LevelField::Nova
    } else if model.contains("openai.gpt-oss") {
        LevelField::GptOss
    } else {
        return None;
    };
    Some((field, reasoning?.three_level_effort()?))
}

/// Claude's JSON mode in Converse terms: the one tool, forced.
fn json_answer_tool_config() -> Value {
    let [tool] = &*super::anthropic::JSON_ANSWER;
    json!({
        "tools": [{"toolSpec": {
            "name": tool.name,
            "description": tool.description,
            "inputSchema": {"json": tool.parameters},
        }}],
        "toolChoice": {"tool": {"name": tool.name}},
    })
}

fn tool_config(request: &ChatRequest) -> Option<Value> {
    if request.tools.is_empty() {
        return None;
    }
    let history_has_tools = request.messages.iter().any(|m| {
        m.content.iter().any(|p| {
            matches!(
                p,
                ContentPart::ToolCall { .. } | ContentPart::ToolResult { .. }
            )
        })
    });
    let choice = match &request.tool_choice {
        None | Some(ToolChoice::Auto) => Some(json!({"auto": {}})),
        Some(ToolChoice::Required) => Some(json!({"any": {}})),
        Some(ToolChoice::Tool { name }) => Some(json!({"tool": {"name": name}})),
        // Converse cannot forbid tool use. Without tool blocks in the
        // history, leaving the tools out does it; with them, Bedrock
        // requires the tool config, so the model may still call one.
        Some(ToolChoice::None) if !history_has_tools => return None,
        Some(ToolChoice::None) => None,
    };
    let tools: Vec<Value> = request
        .tools
        .iter()
        .map(|tool| {
            // OpenAI-dialect tools may omit parameters; Converse needs a schema.
            let schema = match &tool.parameters {
                Value::Object(schema) if !schema.is_empty() => tool.parameters.clone(),
                _ => json!({"type": "object", "properties": {}}),
            };
            let mut spec = json!({"name": tool.name, "inputSchema": {"json": schema}});
            if let Some(description) = tool.description.as_deref().filter(|d| !d.is_empty()) {
                spec["description"] = json!(description);
            }
            json!({"toolSpec": spec})
        })
        .collect();
    let mut config = json!({"tools": tools});
    if let Some(choice) = choice {
        config["toolChoice"] = choice;
    }
    Some(config)
}

/// Neutral turns as Converse messages: tool results go in user turns,
/// consecutive same-role turns merge (Converse requires alternation), and
/// empty turns are dropped.
fn wire_messages(messages: &[Message]) -> Result<Vec<Value>, ProviderError> {
    let mut turns: Vec<(&'static str, Vec<Value>)> = Vec::new();
    for message in messages {
        let role = match message.role {
            Role::User | Role::Tool => "user",
            Role::Assistant => "assistant",
        };
        let mut blocks = Vec::with_capacity(message.content.len());
        for part in &message.content {
            if let Some(block) = wire_block(part, message.role)? {
                blocks.push(block);
            }
        }
        if blocks.is_empty() {
            continue;
        }
        match turns.last_mut() {
            Some((last_role, last_blocks)) if *last_role == role => last_blocks.extend(blocks),
            _ => turns.push((role, blocks)),
        }
    }
    Ok(turns
        .into_iter()
        .map(|(role, mut blocks)| {
            if role == "user" {
                // Claude on Bedrock wants a turn's tool results first.
                blocks.sort_by_key(|block| block.get("toolResult").is_none());
            }
            json!({"role": role, "content": blocks})
        })
        .collect())
}

fn wire_block(part: &ContentPart, role: Role) -> Result<Option<Value>, ProviderError> {
    Ok(match part {
        // Converse rejects blank text blocks.
        ContentPart::Text { text } if text.trim().is_empty() => None,
        ContentPart::Text { text } => Some(json!({"text": text})),
        ContentPart::Image { source } => Some(wire_image(source)?),
        ContentPart::ToolCall {
            id,
            name,
            arguments,
        } => Some(json!({"toolUse": {
            "toolUseId": id,
            "name": name,
            "input": arguments_object(arguments),
        }})),
        ContentPart::ToolResult {
            tool_call_id,
            content,
            is_error,
            ..
        } => {
            let content = if content.is_empty() {
                json!([])
            } else {
                json!([{"text": content}])
            };
            let mut result = json!({"toolUseId": tool_call_id, "content": content});
            // `status` is only accepted by some models (Claude); send it
            // only when it carries information.
            if *is_error {
                result["status"] = json!("error");
            }
            Some(json!({ "toolResult": result }))
        }
        // Replayed reasoning must carry the model's signature; unsigned
        // reasoning (another provider's) cannot be sent back.
        ContentPart::Thinking {
            text,
            signature: Some(signature),
        } if role == Role::Assistant => Some(json!({"reasoningContent": {
            "reasoningText": {"text": text, "signature": signature}
        }})),
        ContentPart::Thinking { .. } => None,
    })
}

fn wire_image(source: &ImageSource) -> Result<Value, ProviderError> {
    let source = match source {
        ImageSource::Url { url } => ImageSource::from_url(url),
        other => other.clone(),
    };
    let ImageSource::Base64 { media_type, data } = source else {
        return Err(ProviderError::invalid_request(
            "Bedrock Converse takes images as inline bytes only: send a data: URL (base64) instead of a remote image URL",
        ));
    };
    let format = match media_type.to_ascii_lowercase().as_str() {
        "image/png" => "png",
        "image/jpeg" | "image/jpg" => "jpeg",
        "image/gif" => "gif",
        "image/webp" => "webp",
        other => {
            return Err(ProviderError::invalid_request(format!(
                "Bedrock Converse accepts png, jpeg, gif and webp images, not '{other}'"
            )));
        }
    };
    // The JSON protocol carries blobs as base64, exactly what we have.
    Ok(json!({"image": {"format": format, "source": {"bytes": data}}}))
}

fn arguments_object(arguments: &str) -> Value {
    match serde_json::from_str::<Value>(arguments) {
        Ok(value @ Value::Object(_)) => value,
        _ => Value::Object(Map::new()),
    }
}

// ---------------------------------------------------------------------------
// Converse: responses and stream events
// ---------------------------------------------------------------------------

fn finish_reason(stop_reason: &str) -> FinishReason {
    match stop_reason {
        "max_tokens" | "model_context_window_exceeded" => FinishReason::Length,
        "tool_use" => FinishReason::ToolCalls,
        "content_filtered" | "guardrail_intervened" => FinishReason::ContentFilter,
        // end_turn, stop_sequence and reasons added later.
        _ => FinishReason::Stop,
    }
}

fn count(value: &Value, key: &str) -> Option<u32> {
    value
        .get(key)
        .and_then(Value::as_u64)
        .map(|n| u32::try_from(n).unwrap_or(u32::MAX))
}

/// Converse `usage` in the neutral convention.
fn usage(wire: &Value) -> Usage {
    let cache_read = count(wire, "cacheReadInputTokens");
    let cache_write = count(wire, "cacheWriteInputTokens").unwrap_or(0);
    Usage {
        input_tokens: count(wire, "inputTokens")
            .unwrap_or(0)
            .saturating_add(cache_read.unwrap_or(0))
            .saturating_add(cache_write),
        output_tokens: count(wire, "outputTokens").unwrap_or(0),
        cached_input_tokens: cache_read,
    }
}

fn str_field(value: &Value, key: &str) -> String {
    value
        .get(key)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

/// Parses a Converse answer (`raw` keeps the body). Converse answers carry
/// neither an id nor the model: both are left empty.
pub fn parse_converse(body: &[u8]) -> Result<ChatResponse, ProviderError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        ProviderError::bad_upstream(format!(
            "Bedrock Converse answer is not valid JSON ({e}): {}",
            common::truncate(&String::from_utf8_lossy(body), 200)
        ))
    })?;
    let blocks = value
        .pointer("/output/message/content")
        .and_then(Value::as_array)
        .ok_or_else(|| {
            ProviderError::bad_upstream("Bedrock Converse answer has no output.message.content")
        })?;
    let mut content = Vec::with_capacity(blocks.len());
    for block in blocks {
        if let Some(text) = block.get("text").and_then(Value::as_str) {
            content.push(ContentPart::text(text));
        } else if let Some(tool) = block.get("toolUse") {
            content.push(ContentPart::ToolCall {
                id: str_field(tool, "toolUseId"),
                name: str_field(tool, "name"),
                arguments: tool
                    .get("input")
                    .map_or_else(|| "{}".to_string(), Value::to_string),
            });
        } else if let Some(reasoning) = block.pointer("/reasoningContent/reasoningText") {
            content.push(ContentPart::Thinking {
                text: str_field(reasoning, "text"),
                signature: reasoning
                    .get("signature")
                    .and_then(Value::as_str)
                    .map(str::to_string),
            });
        }
        // Redacted reasoning, citations, guard content: no neutral form;
        // `raw` keeps them.
    }
    let mut response = ChatResponse {
        id: String::new(),
        model: String::new(),
        content,
        finish_reason: value
            .get("stopReason")
            .and_then(Value::as_str)
            .map(finish_reason)
            .unwrap_or_default(),
        usage: value.get("usage").map(usage).unwrap_or_default(),
        raw: RawJson::from_body(body),
    };
    super::anthropic::json_answer_as_text(&mut response);
    Ok(response)
}

/// Turns the events of a `converse-stream` answer (event type and JSON
/// payload of each event-stream message) into neutral stream events.
#[derive(Debug, Clone, Default)]
pub struct ConverseStreamDecoder {
    model: String,
    started: bool,
    stopped: bool,
    /// contentBlockIndex -> neutral tool-call index.
    tool_blocks: HashMap<u64, u32>,
    next_tool: u32,
    /// contentBlockIndexes of Claude's JSON-mode answer, streamed as text.
    json_answers: Vec<u64>,
}

impl ConverseStreamDecoder {
    /// A decoder whose `Start` event names `model` (the stream does not).
    pub fn new(model: impl Into<String>) -> Self {
        Self {
            model: model.into(),
            ..Self::default()
        }
    }

    /// Whether `messageStop` arrived (the answer is complete; `metadata`
    /// with the usage normally follows).
    pub fn is_finished(&self) -> bool {
        self.stopped
    }

    /// Decodes one event of type `event_type` (`:event-type` header).
    pub fn decode(
        &mut self,
        event_type: &str,
        payload: &[u8],
    ) -> Result<Vec<StreamEvent>, ProviderError> {
        let value: Value = serde_json::from_slice(payload).map_err(|e| {
            ProviderError::bad_upstream(format!(
                "Bedrock stream event '{event_type}' is not valid JSON: {e}"
            ))
        })?;
        let mut out = Vec::new();
        if !self.started {
            self.started = true;
            out.push(StreamEvent::Start {
                id: String::new(),
                model: self.model.clone(),
            });
        }
        match event_type {
            "contentBlockStart" => {
                let index = value
                    .get("contentBlockIndex")
                    .and_then(Value::as_u64)
                    .unwrap_or(0);
                if let Some(tool) = value.pointer("/start/toolUse")
                    && str_field(tool, "name") == super::anthropic::JSON_ANSWER_TOOL
                {
                    self.json_answers.push(index);
                } else if let Some(tool) = value.pointer("/start/toolUse") {
                    let call = self.next_tool;
                    self.next_tool += 1;
                    self.tool_blocks.insert(index, call);
                    out.push(StreamEvent::ToolCallStart {
                        index: call,
                        id: str_field(tool, "toolUseId"),
                        name: str_field(tool, "name"),
                    });
                }
            }
            "contentBlockDelta" => {
                let index = value
                    .get("contentBlockIndex")
                    .and_then(Value::as_u64)
                    .unwrap_or(0);
                let delta = value.get("delta").unwrap_or(&Value::Null);
                if let Some(text) = delta.get("text").and_then(Value::as_str) {
                    if !text.is_empty() {
                        out.push(StreamEvent::TextDelta { text: text.into() });
                    }
                } else if let Some(input) = delta.pointer("/toolUse/input").and_then(Value::as_str)
                {
                    if self.json_answers.contains(&index) {
                        if !input.is_empty() {
                            out.push(StreamEvent::TextDelta { text: input.into() });
                        }
                        return Ok(out);
                    }
                    match self.tool_blocks.get(&index) {
                        Some(&call) if !input.is_empty() => out.push(StreamEvent::ToolCallDelta {
                            index: call,
                            arguments: input.into(),
                        }),
                        Some(_) => {}
                        None => {
                            return Err(ProviderError::bad_upstream(format!(
                                "Bedrock stream sent tool input for block {index} before its contentBlockStart"
                            )));
                        }
                    }
                } else if let Some(text) = delta
                    .pointer("/reasoningContent/text")
                    .and_then(Value::as_str)
                    && !text.is_empty()
                {
                    out.push(StreamEvent::ThinkingDelta { text: text.into() });
                } else if let Some(signature) = delta
                    .pointer("/reasoningContent/signature")
                    .and_then(Value::as_str)
                    && !signature.is_empty()
                {
                    out.push(StreamEvent::ThinkingSignature {
                        signature: signature.into(),
                    });
                }
                // Redacted reasoning: no neutral form.
            }
            "messageStop" => {
                self.stopped = true;
                let reason = match value.get("stopReason").and_then(Value::as_str) {
                    // A JSON answer and no other call: the answer is whole.
                    Some("tool_use") if !self.json_answers.is_empty() && self.next_tool == 0 => {
                        FinishReason::Stop
                    }
                    reason => reason.map(finish_reason).unwrap_or_default(),
                };
                out.push(StreamEvent::Finish { reason });
            }
            "metadata" => {
                if let Some(wire) = value.get("usage") {
                    out.push(StreamEvent::Usage { usage: usage(wire) });
                }
            }
            // messageStart (Start is emitted above), contentBlockStop, and
            // event types added later.
            _ => {}
        }
        Ok(out)
    }

    /// The end of the body: an error unless `messageStop` arrived.
    pub fn end(&self) -> Result<(), ProviderError> {
        if self.stopped {
            Ok(())
        } else {
            Err(ProviderError::bad_upstream(
                "the Bedrock stream ended before messageStop: the answer is incomplete",
            ))
        }
    }
}

// ---------------------------------------------------------------------------
// Embeddings (InvokeModel)
// ---------------------------------------------------------------------------

/// The embedding API family of a Bedrock model id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmbeddingFamily {
    /// Amazon Titan text / multimodal embeddings: one `inputText` per call.
    Titan,
    /// Cohere Embed: up to [`COHERE_MAX_TEXTS`] `texts` per call.
    Cohere,
}

impl EmbeddingFamily {
    /// The family of `model` (ids, inference profiles or ARNs); Titan's
    /// shape is the default for unknown models.
    pub fn of(model: &str) -> Self {
        if model.to_ascii_lowercase().contains("cohere.embed") {
            EmbeddingFamily::Cohere
        } else {
            EmbeddingFamily::Titan
        }
    }
}

/// The InvokeModel body embedding `request.inputs` with `model`. Titan
/// embeds one text per call, so several inputs are a 400 there.
pub fn embeddings_request_body(
    model: &str,
    request: &EmbeddingsRequest,
) -> Result<Value, ProviderError> {
    if request.inputs.is_empty() {
        return Err(ProviderError::invalid_request(
            "embeddings need at least one input",
        ));
    }
    match EmbeddingFamily::of(model) {
        EmbeddingFamily::Titan => {
            let [input] = request.inputs.as_slice() else {
                return Err(ProviderError::invalid_request(format!(
                    "Bedrock model '{model}' embeds one input per request, and this request has {}: send the inputs one at a time",
                    request.inputs.len()
                )));
            };
            let mut body = json!({"inputText": input});
            if let Some(dimensions) = request.dimensions {
                body["dimensions"] = json!(dimensions);
            }
            Ok(body)
        }
        EmbeddingFamily::Cohere => {
            if request.inputs.len() > COHERE_MAX_TEXTS {
                return Err(ProviderError::invalid_request(format!(
                    "Bedrock model '{model}' embeds at most {COHERE_MAX_TEXTS} inputs per request, and this request has {}",
                    request.inputs.len()
                )));
            }
            let input_type = request.input_type.as_deref().unwrap_or("search_document");
            let mut body = json!({
                "texts": request.inputs,
                "input_type": input_type,
                "embedding_types": ["float"],
            });
            if let Some(dimensions) = request.dimensions {
                // Embed v4; v3 models have a fixed size and reject it.
                body["output_dimension"] = json!(dimensions);
            }
            Ok(body)
        }
    }
}

/// Parses an InvokeModel embeddings answer of `model`. Cohere's token count
/// comes in the `x-amzn-bedrock-input-token-count` header.
pub fn parse_embeddings(
    model: &str,
    headers: &[(String, String)],
    body: &[u8],
) -> Result<EmbeddingsResponse, ProviderError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        ProviderError::bad_upstream(format!(
            "Bedrock embeddings answer is not valid JSON ({e}): {}",
            common::truncate(&String::from_utf8_lossy(body), 200)
        ))
    })?;
    let header_tokens = common::header(headers, "x-amzn-bedrock-input-token-count")
        .and_then(|v| v.parse::<u32>().ok());
    let (embeddings, tokens) = match EmbeddingFamily::of(model) {
        EmbeddingFamily::Titan => {
            let vector = value.get("embedding").ok_or_else(|| {
                ProviderError::bad_upstream("Bedrock Titan answer has no 'embedding'")
            })?;
            (
                vec![float_vector(vector)?],
                count(&value, "inputTextTokenCount").or(header_tokens),
            )
        }
        EmbeddingFamily::Cohere => {
            // `embeddings` is a list of vectors, or {"float": [...]} when
            // embedding_types was given.
            let vectors = match value.get("embeddings") {
                Some(Value::Object(by_type)) => by_type.get("float"),
                other => other,
            }
            .and_then(Value::as_array)
            .ok_or_else(|| {
                ProviderError::bad_upstream("Bedrock Cohere answer has no float 'embeddings'")
            })?;
            let embeddings = vectors
                .iter()
                .map(float_vector)
                .collect::<Result<Vec<_>, _>>()?;
            (embeddings, header_tokens)
        }
    };
    Ok(EmbeddingsResponse {
        model: model.to_string(),
        embeddings,
        usage: Usage {
            input_tokens: tokens.unwrap_or(0),
            output_tokens: 0,
            cached_input_tokens: None,
        },
    })
}

fn float_vector(value: &Value) -> Result<Vec<f32>, ProviderError> {
    let bad = || {
        ProviderError::bad_upstream("Bedrock answered an embedding that is not a list of numbers")
    };
    value
        .as_array()
        .ok_or_else(bad)?
        .iter()
        .map(|v| v.as_f64().map(|f| f as f32).ok_or_else(bad))
        .collect()
}

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

/// The neutral kind and the status this gateway answers with for a Bedrock
/// error type (`ThrottlingException`, or `throttlingException` in streams).
fn error_kind(error_type: &str) -> Option<(ErrorKind, u16)> {
    Some(match error_type.to_ascii_lowercase().as_str() {
        // AWS answers bad or expired credentials with 403; for the client
        // they are an authentication failure (401), not a permission one.
        "unrecognizedclientexception"
        | "invalidsignatureexception"
        | "incompletesignatureexception"
        | "missingauthenticationtokenexception"
        | "expiredtokenexception"
        | "invalidclienttokenid"
        | "signaturedoesnotmatch" => (ErrorKind::Authentication, 401),
        "accessdeniedexception" => (ErrorKind::Permission, 403),
        "validationexception" => (ErrorKind::InvalidRequest, 400),
        "conflictexception" => (ErrorKind::InvalidRequest, 409),
        "resourcenotfoundexception" => (ErrorKind::NotFound, 404),
        "throttlingexception" | "servicequotaexceededexception" | "toomanyrequestsexception" => {
            (ErrorKind::RateLimited, 429)
        }
        "serviceunavailableexception" | "modelnotreadyexception" => (ErrorKind::Overloaded, 503),
        "internalserverexception"
        | "modelerrorexception"
        | "modelstreamerrorexception"
        | "modeltimeoutexception" => (ErrorKind::Upstream, 502),
        _ => return None,
    })
}

/// `ValidationException` from `ValidationException:http://internal…` or
/// `com.amazon.coral.service#ValidationException`.
fn short_type(raw: &str) -> &str {
    let raw = raw.split(':').next().unwrap_or(raw);
    raw.rsplit('#').next().unwrap_or(raw).trim()
}

fn body_message(value: &Value) -> Option<String> {
    ["message", "Message"]
        .iter()
        .filter_map(|key| value.get(*key).and_then(Value::as_str))
        .map(str::trim)
        .find(|m| !m.is_empty())
        .map(|m| common::truncate(m, 2000))
}

/// The error of a non-2xx Bedrock answer: kind from the error type (the
/// `x-amzn-errortype` header, else the body's `__type`), the status when
/// the type is unknown; `Retry-After` honoured when present.
pub fn parse_error(status: u16, headers: &[(String, String)], body: &[u8]) -> ProviderError {
    let now_ms = common::system_now_ms();
    let value = serde_json::from_slice::<Value>(body).ok();
    let error_type = common::header(headers, "x-amzn-errortype")
        .map(short_type)
        .or_else(|| {
            value
                .as_ref()
                .and_then(|v| v.get("__type"))
                .and_then(Value::as_str)
                .map(short_type)
        })
        .unwrap_or_default()
        .to_string();
    let message = value.as_ref().and_then(body_message);
    if status < 400 || (message.is_none() && error_type.is_empty()) {
        // Not a Bedrock error document (a proxy page, an empty body).
        return common::upstream_error(status, headers, body, now_ms);
    }
    let message = match (message, error_type.is_empty()) {
        (Some(message), _) => message,
        (None, false) => format!("Bedrock {error_type} without a message"),
        (None, true) => format!("Bedrock answered HTTP {status}"),
    };
    let retry_after = common::retry_after_ms(headers, now_ms);
    match error_kind(&error_type) {
        Some((kind, status)) => {
            ProviderError::upstream_with_kind(kind, status, message, retry_after)
        }
        None => ProviderError::from_upstream(status, message, retry_after),
    }
}

/// The error of an exception message inside a stream (`:exception-type`
/// header and its JSON payload).
pub fn exception_error(exception_type: &str, payload: &[u8]) -> ProviderError {
    let message = serde_json::from_slice::<Value>(payload)
        .ok()
        .as_ref()
        .and_then(body_message)
        .unwrap_or_else(|| format!("Bedrock {exception_type} during the stream"));
    let (kind, status) = error_kind(exception_type).unwrap_or((ErrorKind::Upstream, 502));
    ProviderError::upstream_with_kind(kind, status, message, None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{SamplingParams, Tool};

    #[test]
    fn a_schema_becomes_structured_output() {
        let schema = json!({"type": "object", "properties": {"city": {"type": "string"}}});
        let mut request = ChatRequest {
            model: "us.anthropic.claude-sonnet-4-5-20250929-v1:0".into(),
            messages: vec![Message::user("hi")],
            response_format: Some(json!({"type": "json_schema", "json_schema": {
                "name": "place", "description": "A place", "schema": schema, "strict": true,
            }})),
            ..Default::default()
        };
        let body = converse_request_body(&request).unwrap();
        let json_schema = &body["outputConfig"]["textFormat"]["structure"]["jsonSchema"];
        assert_eq!(body["outputConfig"]["textFormat"]["type"], "json_schema");
        assert_eq!(json_schema["name"], "place");
        assert_eq!(json_schema["description"], "A place");
        // Converse takes the schema as a JSON string.
        let sent: Value = serde_json::from_str(json_schema["schema"].as_str().unwrap()).unwrap();
        assert_eq!(sent, schema);

        // A plain JSON answer has no Converse equivalent.
        request.response_format = Some(json!({"type": "json_object"}));
        let body = converse_request_body(&request).unwrap();
        assert!(body.get("outputConfig").is_none());
    }

    #[test]
    fn reasoning_requests_give_claude_thinking_only() {
        let mut request = ChatRequest {
            model: "us.anthropic.claude-sonnet-4-20250514-v1:0".into(),
            messages: vec![Message::user("hi")],
            reasoning: Some(crate::Reasoning::with_effort(crate::ReasoningEffort::Low)),
            ..Default::default()
        };
        let body = converse_request_body(&request).unwrap();
        assert_eq!(
            body["additionalModelRequestFields"],
            json!({"thinking": {"type": "enabled", "budget_tokens": 2048}})
        );
        assert_eq!(body["inferenceConfig"]["maxTokens"], 2048 + 4096);
        // Sampling Claude refuses beside thinking stays out.
        request.params.max_tokens = Some(3000);
        request.params.top_k = Some(5);
        request.params.temperature = Some(0.2);
        request.params.top_p = Some(0.97);
        let body = converse_request_body(&request).unwrap();
        assert_eq!(
            body["inferenceConfig"],
            json!({"maxTokens": 3000, "topP": 0.97})
        );
        assert_eq!(
            body["additionalModelRequestFields"],
            json!({"thinking": {"type": "enabled", "budget_tokens": 2048}})
        );
        // Other families on Bedrock have no such field, and keep their sampling.
        request.model = "amazon.nova-pro-v1:0".into();
        let body = converse_request_body(&request).unwrap();
        assert_eq!(
            body["inferenceConfig"],
            json!({"maxTokens": 3000, "temperature": 0.2, "topP": 0.97})
        );
        assert_eq!(body["additionalModelRequestFields"], json!({"top_k": 5}));
    }

    #[test]
    fn claude_json_mode_answers_through_a_forced_tool() {
        use super::super::anthropic::JSON_ANSWER_TOOL;
        let mut request = ChatRequest {
            model: "anthropic.claude-sonnet-4-5-20250929-v1:0".into(),
            messages: vec![Message::user("JSON please")],
            response_format: Some(json!({"type": "json_object"})),
            extra_dialect: Some("openai".into()),
            ..Default::default()
        };
        let body = converse_request_body(&request).unwrap();
        assert_eq!(
            body["toolConfig"]["toolChoice"],
            json!({"tool": {"name": JSON_ANSWER_TOOL}})
        );
        assert_eq!(
            body["toolConfig"]["tools"][0]["toolSpec"]["inputSchema"],
            json!({"json": {"type": "object"}})
        );
        let answer = format!(
            r#"{{"output":{{"message":{{"role":"assistant","content":[{{"toolUse":{{"toolUseId":"t1","name":"{JSON_ANSWER_TOOL}","input":{{"a":1}}}}}}]}}}},"stopReason":"tool_use","usage":{{"inputTokens":3,"outputTokens":4,"totalTokens":7}}}}"#
        );
        let parsed = parse_converse(answer.as_bytes()).unwrap();
        assert_eq!(
            (parsed.text(), parsed.finish_reason),
            (r#"{"a":1}"#.to_string(), FinishReason::Stop)
        );

        let mut decoder = ConverseStreamDecoder::new("m");
        let mut events = Vec::new();
        for (kind, payload) in [
            (
                "contentBlockStart",
                json!({"contentBlockIndex": 0, "start": {"toolUse": {"toolUseId": "t1", "name": JSON_ANSWER_TOOL}}}),
            ),
            (
                "contentBlockDelta",
                json!({"contentBlockIndex": 0, "delta": {"toolUse": {"input": "{\"a\": "}}}),
            ),
            (
                "contentBlockDelta",
                json!({"contentBlockIndex": 0, "delta": {"toolUse": {"input": "1}"}}}),
            ),
            ("messageStop", json!({"stopReason": "tool_use"})),
        ] {
            events.extend(
                decoder
                    .decode(kind, payload.to_string().as_bytes())
                    .unwrap(),
            );
        }
        let text: String = StreamEvent::text_deltas(&events).collect();
        assert_eq!(text, r#"{"a": 1}"#);
        assert_eq!(
            events.last(),
            Some(&StreamEvent::Finish {
                reason: FinishReason::Stop
            })
        );

        // Other families have no forced tool for it.
        request.model = "meta.llama3-70b-instruct-v1:0".into();
        assert!(
            converse_request_body(&request)
                .unwrap()
                .get("toolConfig")
                .is_none()
        );
    }

    #[test]
    fn anthropic_clients_betas_reach_claude_in_the_model_fields() {
        let mut request = ChatRequest {
            model: "us.anthropic.claude-sonnet-4-5-20250929-v1:0".into(),
            messages: vec![Message::user("hi")],
            extra_dialect: Some("anthropic".into()),
            ..Default::default()
        };
        super::super::anthropic::set_betas(&mut request, ["context-1m-2025-08-07"]).unwrap();
        let body = converse_request_body(&request).unwrap();
        assert_eq!(
            body["additionalModelRequestFields"],
            json!({"anthropic_beta": ["context-1m-2025-08-07"]})
        );
        let counted = count_tokens_request_body(&request).unwrap();
        assert_eq!(
            counted["input"]["converse"]["additionalModelRequestFields"],
            json!({"anthropic_beta": ["context-1m-2025-08-07"]})
        );
        // Other families know no betas.
        request.model = "amazon.nova-pro-v1:0".into();
        let body = converse_request_body(&request).unwrap();
        assert!(body.get("additionalModelRequestFields").is_none());
    }

    #[test]
    fn nova_2_lite_and_gpt_oss_get_a_reasoning_level() {
        use crate::{Reasoning, ReasoningEffort as E};
        let request = |model: &str, reasoning: Option<Reasoning>| ChatRequest {
            model: model.into(),
            messages: vec![Message::user("hi")],
            reasoning,
            params: SamplingParams {
                max_tokens: Some(500),
                temperature: Some(0.3),
                ..Default::default()
            },
            ..Default::default()
        };
        let nova = "us.amazon.nova-2-lite-v1:0";
        for (reasoning, level) in [
            (Reasoning::with_effort(E::Minimal), "low"),
            (Reasoning::with_budget(5000), "medium"),
            (Reasoning::default(), "medium"),
        ] {
            let body = converse_request_body(&request(nova, Some(reasoning))).unwrap();
            assert_eq!(
                body["additionalModelRequestFields"],
                json!({"reasoningConfig": {"type": "enabled", "maxReasoningEffort": level}})
            );
            assert_eq!(
                body["inferenceConfig"],
                json!({"maxTokens": 500, "temperature": 0.3})
            );
        }
        // Beside the highest level Nova takes no limit and no sampling.
        let body =
            converse_request_body(&request(nova, Some(Reasoning::with_effort(E::XHigh)))).unwrap();
        assert_eq!(
            body["additionalModelRequestFields"]["reasoningConfig"]["maxReasoningEffort"],
            "high"
        );
        assert!(body.get("inferenceConfig").is_none(), "{body}");
        // Off, or not asked for: nothing (Nova's default is off).
        for reasoning in [Some(Reasoning::off()), None] {
            let body = converse_request_body(&request(nova, reasoning)).unwrap();
            assert!(body.get("additionalModelRequestFields").is_none());
        }

        let oss = "openai.gpt-oss-120b-1:0";
        let body =
            converse_request_body(&request(oss, Some(Reasoning::with_effort(E::High)))).unwrap();
        assert_eq!(
            body["additionalModelRequestFields"],
            json!({"reasoning_effort": "high"})
        );
        assert_eq!(body["inferenceConfig"]["maxTokens"], 500);
        let body = converse_request_body(&request(oss, Some(Reasoning::off()))).unwrap();
        assert!(body.get("additionalModelRequestFields").is_none());
    }

    fn request_with(messages: Vec<Message>) -> ChatRequest {
        ChatRequest {
            model: "anthropic.claude-3-5-sonnet-20240620-v1:0".into(),
            messages,
            ..Default::default()
        }
    }

    #[test]
    fn request_with_system_sampling_and_merged_turns() {
        let mut request = request_with(vec![
            Message::user("Hello"),
            Message::user("  "), // blank: dropped
            Message::user("again"),
            Message::assistant("Hi!"),
            Message::user("Bye"),
        ]);
        request.system = Some("Be brief.".into());
        request.params = SamplingParams {
            max_tokens: Some(512),
            temperature: Some(0.5),
            top_p: Some(0.9),
            top_k: Some(40),
            stop: vec!["END".into()],
            seed: Some(3),
            ..Default::default()
        };
        let body = converse_request_body(&request).unwrap();
        assert_eq!(
            body,
            json!({
                "messages": [
                    {"role": "user", "content": [{"text": "Hello"}, {"text": "again"}]},
                    {"role": "assistant", "content": [{"text": "Hi!"}]},
                    {"role": "user", "content": [{"text": "Bye"}]},
                ],
                "system": [{"text": "Be brief."}],
                "inferenceConfig": {"maxTokens": 512, "temperature": 0.5, "topP": 0.9, "stopSequences": ["END"]},
                "additionalModelRequestFields": {"top_k": 40},
            })
        );
        // Nothing optional set: only the messages.
        let body = converse_request_body(&request_with(vec![Message::user("x")])).unwrap();
        assert_eq!(
            body,
            json!({"messages": [{"role": "user", "content": [{"text": "x"}]}]})
        );
    }

    fn weather_tool() -> Tool {
        Tool {
            name: "get_weather".into(),
            description: Some("Weather of a city".into()),
            parameters: json!({"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}),
        }
    }

    #[test]
    fn tools_calls_results_and_choices() {
        let mut request = request_with(vec![
            Message::user("Paris?"),
            Message {
                role: Role::Assistant,
                content: vec![
                    ContentPart::Thinking {
                        text: "Look it up.".into(),
                        signature: Some("sig".into()),
                    },
                    ContentPart::Thinking {
                        text: "unsigned".into(),
                        signature: None,
                    },
                    ContentPart::text("Checking."),
                    ContentPart::ToolCall {
                        id: "tooluse_1".into(),
                        name: "get_weather".into(),
                        arguments: r#"{"city":"Paris"}"#.into(),
                    },
                ],
            },
            Message {
                role: Role::Tool,
                content: vec![ContentPart::ToolResult {
                    tool_call_id: "tooluse_1".into(),
                    name: None,
                    content: "18C".into(),
                    is_error: false,
                }],
            },
            Message {
                role: Role::User,
                content: vec![ContentPart::text("And?")],
            },
        ]);
        request.tools = vec![
            weather_tool(),
            Tool {
                name: "noop".into(),
                description: None,
                parameters: Value::Null,
            },
        ];
        let body = converse_request_body(&request).unwrap();
        assert_eq!(
            body["messages"],
            json!([
                {"role": "user", "content": [{"text": "Paris?"}]},
                {"role": "assistant", "content": [
                    {"reasoningContent": {"reasoningText": {"text": "Look it up.", "signature": "sig"}}},
                    {"text": "Checking."},
                    {"toolUse": {"toolUseId": "tooluse_1", "name": "get_weather", "input": {"city": "Paris"}}},
                ]},
                {"role": "user", "content": [
                    {"toolResult": {"toolUseId": "tooluse_1", "content": [{"text": "18C"}]}},
                    {"text": "And?"},
                ]},
            ])
        );
        assert_eq!(
            body["toolConfig"],
            json!({
                "tools": [
                    {"toolSpec": {"name": "get_weather", "description": "Weather of a city",
                                  "inputSchema": {"json": weather_tool().parameters}}},
                    {"toolSpec": {"name": "noop", "inputSchema": {"json": {"type": "object", "properties": {}}}}},
                ],
                "toolChoice": {"auto": {}},
            })
        );

        request.tool_choice = Some(ToolChoice::Required);
        assert_eq!(
            converse_request_body(&request).unwrap()["toolConfig"]["toolChoice"],
            json!({"any": {}})
        );
        request.tool_choice = Some(ToolChoice::Tool {
            name: "get_weather".into(),
        });
        assert_eq!(
            converse_request_body(&request).unwrap()["toolConfig"]["toolChoice"],
            json!({"tool": {"name": "get_weather"}})
        );
        // `none` with tool blocks in the history: tools stay, no choice.
        request.tool_choice = Some(ToolChoice::None);
        let config = converse_request_body(&request).unwrap()["toolConfig"].clone();
        assert_eq!(config["tools"].as_array().map(Vec::len), Some(2));
        assert!(config.get("toolChoice").is_none());
        // `none` without: no tools at all.
        let mut plain = request_with(vec![Message::user("hi")]);
        plain.tools = vec![weather_tool()];
        plain.tool_choice = Some(ToolChoice::None);
        assert!(
            converse_request_body(&plain)
                .unwrap()
                .get("toolConfig")
                .is_none()
        );

        // Error results, empty results, arguments that are not an object.
        let errored = request_with(vec![
            Message {
                role: Role::Assistant,
                content: vec![ContentPart::ToolCall {
                    id: "t".into(),
                    name: "f".into(),
                    arguments: "not json".into(),
                }],
            },
            Message {
                role: Role::Tool,
                content: vec![
                    ContentPart::ToolResult {
                        tool_call_id: "t".into(),
                        name: Some("f".into()),
                        content: "boom".into(),
                        is_error: true,
                    },
                    ContentPart::ToolResult {
                        tool_call_id: "u".into(),
                        name: None,
                        content: String::new(),
                        is_error: false,
                    },
                ],
            },
        ]);
        let body = converse_request_body(&errored).unwrap();
        assert_eq!(
            body["messages"][0]["content"][0]["toolUse"]["input"],
            json!({})
        );
        assert_eq!(
            body["messages"][1]["content"],
            json!([
                {"toolResult": {"toolUseId": "t", "content": [{"text": "boom"}], "status": "error"}},
                {"toolResult": {"toolUseId": "u", "content": []}},
            ])
        );
    }

    #[test]
    fn images_are_inline_bytes() {
        let request = request_with(vec![Message {
            role: Role::User,
            content: vec![
                ContentPart::text("What is this?"),
                ContentPart::Image {
                    source: ImageSource::Base64 {
                        media_type: "image/png".into(),
                        data: "iVBORw0KGgo=".into(),
                    },
                },
                ContentPart::Image {
                    source: ImageSource::Url {
                        url: "data:image/jpeg;base64,/9j/4AAQ".into(),
                    },
                },
            ],
        }]);
        let body = converse_request_body(&request).unwrap();
        assert_eq!(
            body["messages"][0]["content"],
            json!([
                {"text": "What is this?"},
                {"image": {"format": "png", "source": {"bytes": "iVBORw0KGgo="}}},
                {"image": {"format": "jpeg", "source": {"bytes": "/9j/4AAQ"}}},
            ])
        );
        let remote = request_with(vec![Message {
            role: Role::User,
            content: vec![ContentPart::Image {
                source: ImageSource::Url {
                    url: "https://example.com/cat.png".into(),
                },
            }],
        }]);
        let err = converse_request_body(&remote).unwrap_err();
        assert_eq!(err.kind, ErrorKind::InvalidRequest);
        assert!(err.message.contains("inline bytes"), "{}", err.message);
        let tiff = request_with(vec![Message {
            role: Role::User,
            content: vec![ContentPart::Image {
                source: ImageSource::Base64 {
                    media_type: "image/tiff".into(),
                    data: "AAAA".into(),
                },
            }],
        }]);
        assert!(
            converse_request_body(&tiff)
                .unwrap_err()
                .message
                .contains("image/tiff")
        );
    }

    #[test]
    fn parses_converse_answers() {
        // The shape of the Converse API reference's example answer, with a
        // reasoning block and a tool call.
        let body = json!({
            "output": {"message": {"role": "assistant", "content": [
                {"reasoningContent": {"reasoningText": {"text": "The user asks...", "signature": "EqoB"}}},
                {"text": "I'll check."},
                {"toolUse": {"toolUseId": "tooluse_kZJMlvQmRJ6eAyJE5GIl7Q", "name": "top_song",
                             "input": {"sign": "WZPZ"}}},
            ]}},
            "stopReason": "tool_use",
            "usage": {"inputTokens": 375, "outputTokens": 63, "totalTokens": 438,
                      "cacheReadInputTokens": 100, "cacheWriteInputTokens": 20},
            "metrics": {"latencyMs": 1386},
        });
        let response = parse_converse(body.to_string().as_bytes()).unwrap();
        assert_eq!(
            response.content,
            vec![
                ContentPart::Thinking {
                    text: "The user asks...".into(),
                    signature: Some("EqoB".into())
                },
                ContentPart::text("I'll check."),
                ContentPart::ToolCall {
                    id: "tooluse_kZJMlvQmRJ6eAyJE5GIl7Q".into(),
                    name: "top_song".into(),
                    arguments: r#"{"sign":"WZPZ"}"#.into(),
                },
            ]
        );
        assert_eq!(response.finish_reason, FinishReason::ToolCalls);
        assert_eq!(
            response.usage,
            Usage {
                input_tokens: 495,
                output_tokens: 63,
                cached_input_tokens: Some(100)
            }
        );
        assert_eq!(response.raw.as_ref().and_then(RawJson::parse), Some(body));

        for (reason, expected) in [
            ("end_turn", FinishReason::Stop),
            ("stop_sequence", FinishReason::Stop),
            ("max_tokens", FinishReason::Length),
            ("guardrail_intervened", FinishReason::ContentFilter),
            ("content_filtered", FinishReason::ContentFilter),
            ("something_new", FinishReason::Stop),
        ] {
            let body = json!({"output": {"message": {"role": "assistant", "content": [{"text": "x"}]}},
                              "stopReason": reason, "usage": {"inputTokens": 1, "outputTokens": 2, "totalTokens": 3}});
            let response = parse_converse(body.to_string().as_bytes()).unwrap();
            assert_eq!(response.finish_reason, expected, "{reason}");
            assert_eq!(response.usage.total(), 3);
            assert_eq!(response.text(), "x");
        }

        let err = parse_converse(b"<html>").unwrap_err();
        assert_eq!((err.kind, err.status), (ErrorKind::Upstream, 502));
        let err = parse_converse(br#"{"output": {}}"#).unwrap_err();
        assert!(
            err.message.contains("output.message.content"),
            "{}",
            err.message
        );
    }

    #[test]
    fn decodes_stream_events() {
        let mut decoder = ConverseStreamDecoder::new("anthropic.claude-3-5-sonnet-20240620-v1:0");
        let mut events = Vec::new();
        for (event_type, payload) in [
            (
                "messageStart",
                json!({"role": "assistant", "p": "abcdefghijkl"}),
            ),
            (
                "contentBlockDelta",
                json!({"contentBlockIndex": 0, "delta": {"reasoningContent": {"text": "Hmm."}}}),
            ),
            (
                "contentBlockDelta",
                json!({"contentBlockIndex": 0, "delta": {"reasoningContent": {"signature": "sig"}}}),
            ),
            ("contentBlockStop", json!({"contentBlockIndex": 0})),
            (
                "contentBlockDelta",
                json!({"contentBlockIndex": 1, "delta": {"text": "Let me "}, "p": "abc"}),
            ),
            (
                "contentBlockDelta",
                json!({"contentBlockIndex": 1, "delta": {"text": "check."}}),
            ),
            ("contentBlockStop", json!({"contentBlockIndex": 1})),
            (
                "contentBlockStart",
                json!({"contentBlockIndex": 2, "start": {"toolUse": {"toolUseId": "tooluse_A", "name": "get_weather"}}}),
            ),
            (
                "contentBlockDelta",
                json!({"contentBlockIndex": 2, "delta": {"toolUse": {"input": ""}}}),
            ),
            (
                "contentBlockDelta",
                json!({"contentBlockIndex": 2, "delta": {"toolUse": {"input": "{\"city\": "}}}),
            ),
            (
                "contentBlockDelta",
                json!({"contentBlockIndex": 2, "delta": {"toolUse": {"input": "\"Zürich\"}"}}}),
            ),
            ("contentBlockStop", json!({"contentBlockIndex": 2})),
            (
                "contentBlockStart",
                json!({"contentBlockIndex": 3, "start": {"toolUse": {"toolUseId": "tooluse_B", "name": "get_time"}}}),
            ),
            (
                "contentBlockDelta",
                json!({"contentBlockIndex": 3, "delta": {"toolUse": {"input": "{}"}}}),
            ),
            ("contentBlockStop", json!({"contentBlockIndex": 3})),
            ("messageStop", json!({"stopReason": "tool_use"})),
            (
                "metadata",
                json!({"usage": {"inputTokens": 50, "outputTokens": 20, "totalTokens": 70}, "metrics": {"latencyMs": 900}}),
            ),
            ("someFutureEvent", json!({})),
        ] {
            events.extend(
                decoder
                    .decode(event_type, payload.to_string().as_bytes())
                    .unwrap(),
            );
        }
        assert!(decoder.is_finished());
        decoder.end().unwrap();
        assert_eq!(
            events,
            vec![
                StreamEvent::Start {
                    id: String::new(),
                    model: "anthropic.claude-3-5-sonnet-20240620-v1:0".into()
                },
                StreamEvent::ThinkingDelta {
                    text: "Hmm.".into()
                },
                StreamEvent::ThinkingSignature {
                    signature: "sig".into()
                },
                StreamEvent::TextDelta {
                    text: "Let me ".into()
                },
                StreamEvent::TextDelta {
                    text: "check.".into()
                },
                StreamEvent::ToolCallStart {
                    index: 0,
                    id: "tooluse_A".into(),
                    name: "get_weather".into()
                },
                StreamEvent::ToolCallDelta {
                    index: 0,
                    arguments: "{\"city\": ".into()
                },
                StreamEvent::ToolCallDelta {
                    index: 0,
                    arguments: "\"Zürich\"}".into()
                },
                StreamEvent::ToolCallStart {
                    index: 1,
                    id: "tooluse_B".into(),
                    name: "get_time".into()
                },
                StreamEvent::ToolCallDelta {
                    index: 1,
                    arguments: "{}".into()
                },
                StreamEvent::Finish {
                    reason: FinishReason::ToolCalls
                },
                StreamEvent::Usage {
                    usage: Usage {
                        input_tokens: 50,
                        output_tokens: 20,
                        cached_input_tokens: None
                    }
                },
            ]
        );

        let mut early = ConverseStreamDecoder::new("m");
        early
            .decode(
                "contentBlockDelta",
                br#"{"contentBlockIndex":0,"delta":{"text":"cut"}}"#,
            )
            .unwrap();
        assert_eq!(early.end().unwrap_err().kind, ErrorKind::Upstream);
        let err = early.decode("contentBlockDelta", b"{trunc").unwrap_err();
        assert_eq!(err.status, 502);
        let err = early
            .decode(
                "contentBlockDelta",
                br#"{"contentBlockIndex":7,"delta":{"toolUse":{"input":"{}"}}}"#,
            )
            .unwrap_err();
        assert!(
            err.message.contains("before its contentBlockStart"),
            "{}",
            err.message
        );
    }

    #[test]
    fn errors_from_type_header_body_and_status() {
        let headers = |t: &str| vec![("x-amzn-errortype".to_string(), t.to_string())];
        let err = parse_error(
            403,
            &headers(
                "UnrecognizedClientException:http://internal.amazon.com/coral/com.amazon.coral.service/",
            ),
            br#"{"message":"The security token included in the request is invalid."}"#,
        );
        assert_eq!(
            (err.kind, err.status, err.message.as_str()),
            (
                ErrorKind::Authentication,
                401,
                "The security token included in the request is invalid."
            )
        );
        let err = parse_error(
            403,
            &headers("InvalidSignatureException"),
            br#"{"message":"The request signature we calculated does not match the signature you provided."}"#,
        );
        assert_eq!((err.kind, err.status), (ErrorKind::Authentication, 401));
        let err = parse_error(
            403,
            &headers("AccessDeniedException"),
            br#"{"Message":"You don't have access to the model with the specified model ID."}"#,
        );
        assert_eq!((err.kind, err.status), (ErrorKind::Permission, 403));
        assert!(err.message.starts_with("You don't have access"));

        let mut throttled = headers("ThrottlingException");
        throttled.push(("Retry-After".into(), "3".into()));
        let err = parse_error(
            429,
            &throttled,
            br#"{"message":"Too many requests, please wait before trying again."}"#,
        );
        assert_eq!(
            (err.kind, err.status, err.retry_after_ms),
            (ErrorKind::RateLimited, 429, Some(3000))
        );
        let err = parse_error(
            400,
            &headers("ValidationException"),
            br#"{"message":"Malformed input request"}"#,
        );
        assert_eq!((err.kind, err.status), (ErrorKind::InvalidRequest, 400));
        let err = parse_error(
            404,
            &headers("ResourceNotFoundException"),
            br#"{"message":"Model not found"}"#,
        );
        assert_eq!((err.kind, err.status), (ErrorKind::NotFound, 404));
        let err = parse_error(
            503,
            &headers("ServiceUnavailableException"),
            br#"{"message":"busy"}"#,
        );
        assert_eq!((err.kind, err.status), (ErrorKind::Overloaded, 503));
        let err = parse_error(
            500,
            &headers("InternalServerException"),
            br#"{"message":"oops"}"#,
        );
        assert_eq!((err.kind, err.status), (ErrorKind::Upstream, 502));

        // Type only in the body (`__type`), message missing.
        let err = parse_error(
            400,
            &[],
            br#"{"__type":"com.amazon.coral.validate#ValidationException"}"#,
        );
        assert_eq!(err.kind, ErrorKind::InvalidRequest);
        assert_eq!(err.message, "Bedrock ValidationException without a message");
        // Unknown type: the status decides.
        let err = parse_error(
            418,
            &headers("TeapotException"),
            br#"{"message":"short and stout"}"#,
        );
        assert_eq!((err.kind, err.status), (ErrorKind::InvalidRequest, 418));
        // Not Bedrock JSON.
        let err = parse_error(502, &[], b"<html>Bad Gateway</html>");
        assert_eq!((err.kind, err.status), (ErrorKind::Upstream, 502));
        assert!(err.message.contains("Bad Gateway"), "{}", err.message);
    }

    #[test]
    fn stream_exceptions() {
        let err = exception_error(
            "throttlingException",
            br#"{"message":"Too many tokens, please wait before trying again."}"#,
        );
        assert_eq!(
            (err.kind, err.status, err.message.as_str()),
            (
                ErrorKind::RateLimited,
                429,
                "Too many tokens, please wait before trying again."
            )
        );
        let err = exception_error("modelStreamErrorException", b"");
        assert_eq!((err.kind, err.status), (ErrorKind::Upstream, 502));
        assert_eq!(
            err.message,
            "Bedrock modelStreamErrorException during the stream"
        );
        let err = exception_error("validationException", br#"{"message":"bad"}"#);
        assert_eq!(err.kind, ErrorKind::InvalidRequest);
        assert_eq!(exception_error("newException", b"{}").status, 502);
    }

    #[test]
    fn titan_embeddings() {
        let model = "amazon.titan-embed-text-v2:0";
        let mut request = EmbeddingsRequest {
            inputs: vec!["hello world".into()],
            dimensions: Some(256),
            ..Default::default()
        };
        assert_eq!(
            embeddings_request_body(model, &request).unwrap(),
            json!({"inputText": "hello world", "dimensions": 256})
        );
        request.dimensions = None;
        assert_eq!(
            embeddings_request_body(model, &request).unwrap(),
            json!({"inputText": "hello world"})
        );
        request.inputs.push("two".into());
        let err = embeddings_request_body(model, &request).unwrap_err();
        assert_eq!(err.status, 400);
        assert!(
            err.message.contains("one input per request"),
            "{}",
            err.message
        );
        request.inputs.clear();
        assert!(embeddings_request_body(model, &request).is_err());

        let answer = br#"{"embedding": [0.5, -1.25, 3.0], "embeddingsByType": {"float": [0.5, -1.25, 3.0]}, "inputTextTokenCount": 3}"#;
        let parsed = parse_embeddings(model, &[], answer).unwrap();
        assert_eq!(parsed.embeddings, vec![vec![0.5f32, -1.25, 3.0]]);
        assert_eq!(parsed.usage.input_tokens, 3);
        assert_eq!(parsed.model, model);
        let err = parse_embeddings(model, &[], br#"{"embedding": ["x"]}"#).unwrap_err();
        assert_eq!(err.status, 502);
        assert!(parse_embeddings(model, &[], br#"{}"#).is_err());
    }

    #[test]
    fn cohere_embeddings() {
        let model = "cohere.embed-english-v3";
        assert_eq!(EmbeddingFamily::of(model), EmbeddingFamily::Cohere);
        assert_eq!(
            EmbeddingFamily::of("amazon.titan-embed-text-v1"),
            EmbeddingFamily::Titan
        );
        let request = EmbeddingsRequest {
            inputs: vec!["a".into(), "b c".into()],
            input_type: Some("search_query".into()),
            ..Default::default()
        };
        assert_eq!(
            embeddings_request_body(model, &request).unwrap(),
            json!({"texts": ["a", "b c"], "input_type": "search_query", "embedding_types": ["float"]})
        );
        let too_many = EmbeddingsRequest {
            inputs: vec!["x".into(); COHERE_MAX_TEXTS + 1],
            ..Default::default()
        };
        assert!(embeddings_request_body(model, &too_many).is_err());

        let headers = vec![(
            "X-Amzn-Bedrock-Input-Token-Count".to_string(),
            "3".to_string(),
        )];
        let by_type = br#"{"id": "e1", "embeddings": {"float": [[1.0, 2.0], [3.0, 4.5]]}, "response_type": "embeddings_by_type", "texts": ["a", "b c"]}"#;
        let parsed = parse_embeddings(model, &headers, by_type).unwrap();
        assert_eq!(parsed.embeddings, vec![vec![1.0f32, 2.0], vec![3.0, 4.5]]);
        assert_eq!(parsed.usage.input_tokens, 3);
        let floats =
            br#"{"id": "e1", "embeddings": [[1.0, 2.0]], "response_type": "embeddings_floats"}"#;
        assert_eq!(
            parse_embeddings(model, &[], floats).unwrap().embeddings,
            vec![vec![1.0f32, 2.0]]
        );
    }
}
