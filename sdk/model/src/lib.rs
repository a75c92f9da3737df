//! Provider-neutral request/response/event model of the Portico gateway.
//!
//! These types are the JSON schema of the payloads that cross the WIT
//! boundary (`gateway:provider@0.1.0`), and the pivot every client dialect
//! and every provider translates to and from. The host and the plugin SDK
//! both depend on this crate, so a translation is written once.
//!
//! Compatibility rule: fields are only ever added, always optional
//! (`#[serde(default)]`), so plugins built against an older model keep
//! working with a newer host and vice versa.

pub mod error;
pub mod formats;
pub mod json;
pub mod plugin;
mod tagged;

pub use error::{ErrorKind, ProviderError};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// A chat request, as a provider plugin receives it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ChatRequest {
    /// Upstream model id (the host fills it from the endpoint).
    #[serde(default)]
    pub model: String,
    /// System prompt, if any (several client system parts are joined).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
    /// Conversation turns, oldest first.
    #[serde(default)]
    pub messages: Vec<Message>,
    /// Tools the model may call.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tools: Vec<Tool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<ToolChoice>,
    /// Sampling parameters.
    #[serde(default)]
    pub params: SamplingParams,
    /// Ask for a JSON-object answer (OpenAI `response_format`), if set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_format: Option<Value>,
    /// How much the model should reason before answering, when the client
    /// asked (OpenAI `reasoning_effort`, Anthropic `thinking`, Gemini
    /// `thinkingConfig`); `None` leaves it to the provider.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning: Option<Reasoning>,
    /// Client-dialect fields the neutral model does not know. Forwarded
    /// unchanged only when the client dialect is the provider's native one
    /// (`extra_dialect`), and ignored otherwise.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub extra: Map<String, Value>,
    /// Dialect `extra` came from (`openai`, `anthropic`, `gemini`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extra_dialect: Option<String>,
}

/// Sampling parameters; `None` means the provider's default.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SamplingParams {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_k: Option<u32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stop: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub presence_penalty: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frequency_penalty: Option<f64>,
}

/// A client's request for reasoning ("thinking"), in the terms it used:
/// an effort level, a token budget, or both. Each provider format reads
/// it through [`Reasoning::effort_level`] or [`Reasoning::thinking_budget`],
/// so every pair of dialects maps the same way.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reasoning {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effort: Option<ReasoningEffort>,
    /// Tokens the model may spend thinking; 0 turns thinking off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget_tokens: Option<u32>,
}

/// OpenAI's scale of reasoning effort, the coarsest the dialects share.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReasoningEffort {
    /// No reasoning.
    None,
    Minimal,
    Low,
    Medium,
    High,
    #[serde(rename = "xhigh")]
    XHigh,
}

impl ReasoningEffort {
    /// Parses an OpenAI `reasoning_effort` (or Gemini `thinkingLevel`,
    /// any case); `None` for a value this gateway does not know.
    pub fn parse(value: &str) -> Option<Self> {
        Some(match value.to_ascii_lowercase().as_str() {
            "none" => Self::None,
            "minimal" => Self::Minimal,
            "low" => Self::Low,
            "medium" => Self::Medium,
            "high" => Self::High,
            "xhigh" => Self::XHigh,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Minimal => "minimal",
            Self::Low => "low",
            Self::Medium => "medium",
            Self::High => "high",
            Self::XHigh => "xhigh",
        }
    }

    /// The thinking budget a level stands for where a provider wants
    /// tokens (Anthropic's minimum budget is 1024).
    pub fn budget_tokens(self) -> u32 {
        match self {
            Self::None => 0,
            Self::Minimal => 1024,
            Self::Low => 2048,
            Self::Medium => 8192,
            Self::High => 16384,
            Self::XHigh => 32768,
        }
    }

    /// The level a token budget stands for where a provider wants a level:
    /// the lowest whose budget covers it, at most `high`. Never `minimal`
    /// or `xhigh`, which only some OpenAI models accept (a large budget,
    /// such as Claude Code's 31999, would otherwise fail on the others).
    pub fn from_budget(budget: u32) -> Self {
        match budget {
            0 => Self::None,
            1..=2048 => Self::Low,
            2049..=8192 => Self::Medium,
            _ => Self::High,
        }
    }
}

impl Reasoning {
    /// A request for this level of effort.
    pub fn with_effort(effort: ReasoningEffort) -> Self {
        Reasoning {
            effort: Some(effort),
            budget_tokens: None,
        }
    }

    /// A request for this thinking budget.
    pub fn with_budget(budget_tokens: u32) -> Self {
        Reasoning {
            effort: None,
            budget_tokens: Some(budget_tokens),
        }
    }

    /// Reasoning turned off.
    pub fn off() -> Self {
        Reasoning::with_effort(ReasoningEffort::None)
    }

    /// Whether the client turned reasoning off.
    pub fn is_off(&self) -> bool {
        self.budget_tokens == Some(0) || self.effort == Some(ReasoningEffort::None)
    }

    /// The effort level asked for: the client's own level, else the level
    /// of its budget; `None` when it gave neither (the provider decides).
    pub fn effort_level(&self) -> Option<ReasoningEffort> {
        if self.is_off() {
            return Some(ReasoningEffort::None);
        }
        self.effort
            .or_else(|| self.budget_tokens.map(ReasoningEffort::from_budget))
    }

    /// For models whose reasoning field takes only low, medium or high
    /// (gpt-oss on Bedrock or Ollama, Nova 2 Lite): the level asked for,
    /// clamped to those three (medium when none is named); `None` when
    /// reasoning is off, which such a field cannot say (the caller sends
    /// nothing: Nova's default is off, and gpt-oss cannot turn it off).
    pub fn three_level_effort(&self) -> Option<ReasoningEffort> {
        Some(match self.effort_level() {
            Some(ReasoningEffort::None) => return None,
            None | Some(ReasoningEffort::Medium) => ReasoningEffort::Medium,
            Some(ReasoningEffort::Minimal | ReasoningEffort::Low) => ReasoningEffort::Low,
            Some(ReasoningEffort::High | ReasoningEffort::XHigh) => ReasoningEffort::High,
        })
    }

    /// The thinking budget asked for: the client's own budget, else its
    /// level's; 0 when off; `None` when it gave neither.
    pub fn thinking_budget(&self) -> Option<u32> {
        if self.is_off() {
            return Some(0);
        }
        self.budget_tokens
            .or_else(|| self.effort.map(ReasoningEffort::budget_tokens))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    User,
    Assistant,
    /// Tool results (OpenAI `tool` role); providers that carry tool results
    /// in user turns map it there.
    Tool,
}

/// One conversation turn.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub role: Role,
    pub content: Vec<ContentPart>,
}

impl Message {
    /// A user turn with one text part.
    pub fn user(text: impl Into<String>) -> Self {
        Self {
            role: Role::User,
            content: vec![ContentPart::text(text)],
        }
    }

    /// An assistant turn with one text part.
    pub fn assistant(text: impl Into<String>) -> Self {
        Self {
            role: Role::Assistant,
            content: vec![ContentPart::text(text)],
        }
    }

    /// All text parts of this turn, concatenated.
    pub fn text(&self) -> String {
        self.content
            .iter()
            .filter_map(|part| match part {
                ContentPart::Text { text } => Some(text.as_str()),
                _ => None,
            })
            .collect()
    }
}

/// A piece of a turn. (Deserialized by hand, in `tagged`.)
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ContentPart {
    Text {
        text: String,
    },
    /// An image in a user turn.
    Image {
        source: ImageSource,
    },
    /// A call the assistant made.
    ToolCall {
        id: String,
        name: String,
        /// JSON object text, as the model produced it.
        arguments: String,
    },
    /// The result of a call, sent back by the client.
    ToolResult {
        tool_call_id: String,
        /// Name of the called tool, when the client dialect carries it
        /// (Gemini needs it; the host fills it from history otherwise).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
        content: String,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        is_error: bool,
    },
    /// Model reasoning text, when a provider exposes it.
    Thinking {
        text: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        signature: Option<String>,
    },
}

impl ContentPart {
    pub fn text(text: impl Into<String>) -> Self {
        ContentPart::Text { text: text.into() }
    }
}

/// Where an image comes from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ImageSource {
    /// A remote `http(s)` URL.
    Url { url: String },
    /// Inline bytes, base64-encoded.
    Base64 { media_type: String, data: String },
}

impl ImageSource {
    /// Parses `data:<mime>;base64,<data>` URLs into `Base64`, anything
    /// else into `Url`.
    pub fn from_url(url: &str) -> Self {
        if let Some((mime, data)) = url
            .strip_prefix("data:")
            .and_then(|rest| rest.split_once(";base64,"))
        {
            return ImageSource::Base64 {
                media_type: mime.to_string(),
                data: data.to_string(),
            };
        }
        ImageSource::Url {
            url: url.to_string(),
        }
    }

    /// The image as a URL (`data:` URL for inline bytes).
    pub fn to_url(&self) -> String {
        match self {
            ImageSource::Url { url } => url.clone(),
            ImageSource::Base64 { media_type, data } => format!("data:{media_type};base64,{data}"),
        }
    }
}

/// A function the model may call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tool {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// JSON Schema of the arguments object.
    #[serde(default = "empty_object_schema")]
    pub parameters: Value,
}

fn empty_object_schema() -> Value {
    serde_json::json!({"type": "object", "properties": {}})
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ToolChoice {
    Auto,
    None,
    /// The model must call some tool.
    Required,
    /// The model must call this tool.
    Tool {
        name: String,
    },
}

/// Why generation stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    #[default]
    Stop,
    Length,
    ToolCalls,
    ContentFilter,
    /// The provider failed mid-generation.
    Error,
}

/// Token counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    #[serde(default)]
    pub input_tokens: u32,
    #[serde(default)]
    pub output_tokens: u32,
    /// Input tokens served from a prompt cache, when reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cached_input_tokens: Option<u32>,
}

impl Usage {
    pub fn total(&self) -> u32 {
        self.input_tokens + self.output_tokens
    }
}

/// A complete chat answer.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ChatResponse {
    /// Upstream response id (the host makes one when empty).
    #[serde(default)]
    pub id: String,
    /// Model that answered, as the upstream reports it.
    #[serde(default)]
    pub model: String,
    /// Text, thinking and tool-call parts, in order.
    #[serde(default)]
    pub content: Vec<ContentPart>,
    #[serde(default)]
    pub finish_reason: FinishReason,
    #[serde(default)]
    pub usage: Usage,
    /// The upstream body, kept for passthrough to a native-dialect client.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw: Option<RawJson>,
}

/// JSON text carried verbatim: an upstream body kept for passthrough. It
/// crosses the plugin boundary and reaches the client as the same bytes,
/// never parsed into a tree and written out again. On the wire it is the
/// JSON value itself, so the model's schema is unchanged.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RawJson(Box<serde_json::value::RawValue>);

impl RawJson {
    /// The body as kept: `None` unless it is one well-formed JSON value
    /// (surrounding whitespace dropped).
    pub fn from_body(body: &[u8]) -> Option<Self> {
        let text = std::str::from_utf8(body).ok()?.trim_ascii();
        serde_json::value::RawValue::from_string(text.to_owned())
            .ok()
            .map(RawJson)
    }

    /// The JSON text.
    pub fn get(&self) -> &str {
        self.0.get()
    }

    pub fn is_object(&self) -> bool {
        self.get().starts_with('{')
    }

    /// The text as a tree, for the rare reader of one field.
    pub fn parse(&self) -> Option<Value> {
        serde_json::from_str(self.get()).ok()
    }

    pub fn into_string(self) -> String {
        String::from(Box::<str>::from(self.0))
    }
}

/// Same text, same value: bodies are kept byte for byte.
impl PartialEq for RawJson {
    fn eq(&self, other: &Self) -> bool {
        self.get() == other.get()
    }
}

impl ChatResponse {
    /// All text parts, concatenated.
    pub fn text(&self) -> String {
        self.content
            .iter()
            .filter_map(|part| match part {
                ContentPart::Text { text } => Some(text.as_str()),
                _ => None,
            })
            .collect()
    }
}

/// An incremental event of a streamed chat answer.
///
/// Order: one `Start`; then any number of deltas, where a tool call is a
/// `ToolCallStart` followed by `ToolCallDelta`s with the same `index`;
/// then `Finish`; `Usage` may come anywhere (providers differ) and may
/// repeat, the last one wins. (Deserialized by hand, in `tagged`.)
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum StreamEvent {
    Start {
        #[serde(default)]
        id: String,
        #[serde(default)]
        model: String,
    },
    TextDelta {
        text: String,
    },
    ThinkingDelta {
        text: String,
    },
    /// The signature that seals the thinking streamed so far (Anthropic's
    /// `signature_delta`, Bedrock's reasoning signature). A client that
    /// replays its thinking in a later turn must send it back, or the
    /// provider rejects the turn. With no thinking open, it is a signature
    /// of its own: an empty signed thinking part (Gemini's signature of the
    /// part after it). An empty signature ends the thinking streamed so far
    /// unsigned, so that the next signature starts a part of its own.
    ThinkingSignature {
        signature: String,
    },
    /// A new tool call begins; `index` counts tool calls from 0.
    ToolCallStart {
        index: u32,
        id: String,
        name: String,
    },
    /// More JSON text of the arguments of tool call `index`.
    ToolCallDelta {
        index: u32,
        arguments: String,
    },
    Usage {
        usage: Usage,
    },
    Finish {
        reason: FinishReason,
    },
    /// A raw upstream event, kept for passthrough to a native-dialect
    /// client; other dialects ignore it.
    Raw {
        data: Value,
    },
}

impl StreamEvent {
    /// The answer's text pieces among `events`, in order (thinking aside).
    pub fn text_deltas(events: &[StreamEvent]) -> impl Iterator<Item = &str> {
        events.iter().filter_map(|event| match event {
            StreamEvent::TextDelta { text } => Some(text.as_str()),
            _ => None,
        })
    }
}

/// An embeddings request.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EmbeddingsRequest {
    #[serde(default)]
    pub model: String,
    pub inputs: Vec<String>,
    /// Requested vector size, for models that can shorten.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dimensions: Option<u32>,
    /// Purpose hint (`search_document`, `search_query`, `classification`,
    /// `clustering`), needed by Cohere-style APIs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_type: Option<String>,
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub extra: Map<String, Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extra_dialect: Option<String>,
}

/// Embedding vectors, in input order.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EmbeddingsResponse {
    #[serde(default)]
    pub model: String,
    pub embeddings: Vec<Vec<f32>>,
    #[serde(default)]
    pub usage: Usage,
}

/// Rebuilds a complete [`ChatResponse`] from stream events, e.g. to store
/// or account for a streamed answer.
#[derive(Debug, Default)]
pub struct ChatResponseBuilder {
    response: ChatResponse,
    /// Position in `response.content` of each tool call, by stream index.
    tool_calls: std::collections::BTreeMap<u32, usize>,
    /// The last part is thinking ended unsigned by an empty signature.
    thinking_ended: bool,
}

impl ChatResponseBuilder {
    pub fn push(&mut self, event: &StreamEvent) {
        let content = &mut self.response.content;
        // Thinking that is signed, or ended by an empty signature, is
        // sealed: more thinking or another signature is a new part.
        let open_thinking = match content.last_mut() {
            Some(ContentPart::Thinking {
                text,
                signature: signature @ None,
            }) if !self.thinking_ended => Some((text, signature)),
            _ => None,
        };
        match event {
            StreamEvent::Start { id, model } => {
                self.response.id.clone_from(id);
                self.response.model.clone_from(model);
            }
            StreamEvent::TextDelta { text } => match content.last_mut() {
                Some(ContentPart::Text { text: last }) => last.push_str(text),
                _ => content.push(ContentPart::text(text.clone())),
            },
            StreamEvent::ThinkingDelta { text } => match open_thinking {
                Some((last, _)) => last.push_str(text),
                None => {
                    self.thinking_ended = false;
                    content.push(ContentPart::Thinking {
                        text: text.clone(),
                        signature: None,
                    });
                }
            },
            StreamEvent::ThinkingSignature { signature } if signature.is_empty() => {
                self.thinking_ended |= open_thinking.is_some();
            }
            StreamEvent::ThinkingSignature { signature } => match open_thinking {
                Some((_, last)) => *last = Some(signature.clone()),
                None => content.push(ContentPart::Thinking {
                    text: String::new(),
                    signature: Some(signature.clone()),
                }),
            },
            StreamEvent::ToolCallStart { index, id, name } => {
                self.tool_calls.insert(*index, content.len());
                content.push(ContentPart::ToolCall {
                    id: id.clone(),
                    name: name.clone(),
                    arguments: String::new(),
                });
            }
            StreamEvent::ToolCallDelta { index, arguments } => {
                if let Some(ContentPart::ToolCall {
                    arguments: args, ..
                }) = self
                    .tool_calls
                    .get(index)
                    .and_then(|&at| content.get_mut(at))
                {
                    args.push_str(arguments);
                }
            }
            StreamEvent::Usage { usage } => self.response.usage = *usage,
            StreamEvent::Finish { reason } => self.response.finish_reason = *reason,
            StreamEvent::Raw { .. } => {}
        }
    }

    pub fn finish(self) -> ChatResponse {
        self.response
    }
}

#[cfg(test)]
mod builder_tests {
    use super::*;

    fn thinking(text: &str, signature: Option<&str>) -> ContentPart {
        ContentPart::Thinking {
            text: text.into(),
            signature: signature.map(Into::into),
        }
    }

    #[test]
    fn rebuilds_text_and_tool_calls_from_events() {
        let mut builder = ChatResponseBuilder::default();
        for event in [
            StreamEvent::Start {
                id: "r1".into(),
                model: "m".into(),
            },
            StreamEvent::TextDelta { text: "Hel".into() },
            StreamEvent::TextDelta { text: "lo".into() },
            StreamEvent::ToolCallStart {
                index: 0,
                id: "c1".into(),
                name: "f".into(),
            },
            StreamEvent::ToolCallDelta {
                index: 0,
                arguments: "{\"a\":".into(),
            },
            StreamEvent::ToolCallDelta {
                index: 0,
                arguments: "1}".into(),
            },
            StreamEvent::Usage {
                usage: Usage {
                    input_tokens: 3,
                    output_tokens: 4,
                    cached_input_tokens: None,
                },
            },
            StreamEvent::Finish {
                reason: FinishReason::ToolCalls,
            },
        ] {
            builder.push(&event);
        }
        let response = builder.finish();
        assert_eq!(response.id, "r1");
        assert_eq!(response.text(), "Hello");
        assert_eq!(
            response.content[1],
            ContentPart::ToolCall {
                id: "c1".into(),
                name: "f".into(),
                arguments: "{\"a\":1}".into()
            }
        );
        assert_eq!(response.usage.total(), 7);
        assert_eq!(response.finish_reason, FinishReason::ToolCalls);
    }

    #[test]
    fn signatures_seal_thinking_parts() {
        let mut builder = ChatResponseBuilder::default();
        for event in [
            StreamEvent::ThinkingDelta {
                text: "One ".into(),
            },
            StreamEvent::ThinkingDelta {
                text: "two.".into(),
            },
            StreamEvent::ThinkingSignature {
                signature: "sig-1".into(),
            },
            StreamEvent::ThinkingDelta {
                text: "Three.".into(),
            },
            StreamEvent::ThinkingSignature {
                signature: "sig-2".into(),
            },
            StreamEvent::TextDelta {
                text: "Done".into(),
            },
            StreamEvent::ThinkingDelta {
                text: "Unsigned.".into(),
            },
        ] {
            builder.push(&event);
        }
        assert_eq!(
            builder.finish().content,
            vec![
                thinking("One two.", Some("sig-1")),
                thinking("Three.", Some("sig-2")),
                ContentPart::text("Done"),
                thinking("Unsigned.", None),
            ]
        );
    }

    #[test]
    fn an_empty_signature_ends_thinking_unsigned() {
        // Gemini: streamed thought summaries, then a call signed for itself.
        let mut builder = ChatResponseBuilder::default();
        for event in [
            StreamEvent::ThinkingDelta {
                text: "Plan.".into(),
            },
            StreamEvent::ThinkingSignature {
                signature: String::new(),
            },
            StreamEvent::ThinkingSignature {
                signature: String::new(),
            },
            StreamEvent::ThinkingSignature {
                signature: "sig-1".into(),
            },
            StreamEvent::ToolCallStart {
                index: 0,
                id: "c1".into(),
                name: "f".into(),
            },
            StreamEvent::ThinkingDelta {
                text: "More.".into(),
            },
            StreamEvent::ThinkingSignature {
                signature: String::new(),
            },
            StreamEvent::ThinkingDelta {
                text: "Again.".into(),
            },
        ] {
            builder.push(&event);
        }
        assert_eq!(
            builder.finish().content,
            vec![
                thinking("Plan.", None),
                thinking("", Some("sig-1")),
                ContentPart::ToolCall {
                    id: "c1".into(),
                    name: "f".into(),
                    arguments: String::new()
                },
                thinking("More.", None),
                thinking("Again.", None),
            ]
        );
    }

    #[test]
    fn a_second_signature_in_a_row_is_a_part_of_its_own() {
        // As the Anthropic encoder writes it: a signature closes its block.
        let mut builder = ChatResponseBuilder::default();
        for signature in ["sig-1", "sig-2"] {
            builder.push(&StreamEvent::ThinkingSignature {
                signature: signature.into(),
            });
        }
        let signed = |signature: &str| ContentPart::Thinking {
            text: String::new(),
            signature: Some(signature.into()),
        };
        assert_eq!(
            builder.finish().content,
            vec![signed("sig-1"), signed("sig-2")]
        );
    }
}
