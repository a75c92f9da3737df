//! Deserialization of the model's tagged enums ([`ContentPart`],
//! [`StreamEvent`]) without serde's buffering.
//!
//! serde's derive for an internally tagged enum first buffers the whole
//! object (every string copied into an intermediate tree) so it can find the
//! tag, then deserializes the variant from that buffer. These enums are in
//! every payload crossing the plugin boundary (message parts, stream
//! events), so each is read instead into one flat struct holding the fields
//! of all its variants, then checked against its tag: the same accepted
//! input and the same errors for a missing field, without the copy.

use serde::de::{Deserialize, Deserializer, Error};
use serde_json::Value;

use crate::{ContentPart, FinishReason, ImageSource, StreamEvent, Usage};

fn required<T, E: Error>(value: Option<T>, field: &'static str) -> Result<T, E> {
    value.ok_or_else(|| E::missing_field(field))
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "snake_case")]
enum PartType {
    Text,
    Image,
    ToolCall,
    ToolResult,
    Thinking,
}

/// Every field of every [`ContentPart`] variant.
#[derive(serde::Deserialize)]
struct FlatPart {
    #[serde(rename = "type")]
    kind: PartType,
    text: Option<String>,
    source: Option<ImageSource>,
    id: Option<String>,
    name: Option<String>,
    arguments: Option<String>,
    tool_call_id: Option<String>,
    content: Option<String>,
    #[serde(default)]
    is_error: bool,
    signature: Option<String>,
}

impl<'de> Deserialize<'de> for ContentPart {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let part = FlatPart::deserialize(deserializer)?;
        Ok(match part.kind {
            PartType::Text => ContentPart::Text {
                text: required(part.text, "text")?,
            },
            PartType::Image => ContentPart::Image {
                source: required(part.source, "source")?,
            },
            PartType::ToolCall => ContentPart::ToolCall {
                id: required(part.id, "id")?,
                name: required(part.name, "name")?,
                arguments: required(part.arguments, "arguments")?,
            },
            PartType::ToolResult => ContentPart::ToolResult {
                tool_call_id: required(part.tool_call_id, "tool_call_id")?,
                name: part.name,
                content: required(part.content, "content")?,
                is_error: part.is_error,
            },
            PartType::Thinking => ContentPart::Thinking {
                text: required(part.text, "text")?,
                signature: part.signature,
            },
        })
    }
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "snake_case")]
enum EventType {
    Start,
    TextDelta,
    ThinkingDelta,
    ThinkingSignature,
    ToolCallStart,
    ToolCallDelta,
    Usage,
    Finish,
    Raw,
}

/// Every field of every [`StreamEvent`] variant.
#[derive(serde::Deserialize)]
struct FlatEvent {
    #[serde(rename = "type")]
    kind: EventType,
    id: Option<String>,
    model: Option<String>,
    text: Option<String>,
    index: Option<u32>,
    name: Option<String>,
    arguments: Option<String>,
    usage: Option<Usage>,
    reason: Option<FinishReason>,
    signature: Option<String>,
    /// `Option<Value>` would read `null` as `None`; a raw event's data may
    /// be any JSON value, `null` included.
    #[serde(default, deserialize_with = "present")]
    data: Option<Value>,
}

fn present<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(deserializer).map(Some)
}

impl<'de> Deserialize<'de> for StreamEvent {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let event = FlatEvent::deserialize(deserializer)?;
        Ok(match event.kind {
            EventType::Start => StreamEvent::Start {
                id: event.id.unwrap_or_default(),
                model: event.model.unwrap_or_default(),
            },
            EventType::TextDelta => StreamEvent::TextDelta {
                text: required(event.text, "text")?,
            },
            EventType::ThinkingDelta => StreamEvent::ThinkingDelta {
                text: required(event.text, "text")?,
            },
            EventType::ThinkingSignature => StreamEvent::ThinkingSignature {
                signature: required(event.signature, "signature")?,
            },
            EventType::ToolCallStart => StreamEvent::ToolCallStart {
                index: required(event.index, "index")?,
                id: required(event.id, "id")?,
                name: required(event.name, "name")?,
            },
            EventType::ToolCallDelta => StreamEvent::ToolCallDelta {
                index: required(event.index, "index")?,
                arguments: required(event.arguments, "arguments")?,
            },
            EventType::Usage => StreamEvent::Usage {
                usage: required(event.usage, "usage")?,
            },
            EventType::Finish => StreamEvent::Finish {
                reason: required(event.reason, "reason")?,
            },
            EventType::Raw => StreamEvent::Raw {
                data: required(event.data, "data")?,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// What serde's derive would have produced for the same input.
    #[derive(Debug, PartialEq, serde::Deserialize)]
    #[serde(tag = "type", rename_all = "snake_case")]
    enum DerivedPart {
        Text {
            text: String,
        },
        Image {
            source: ImageSource,
        },
        ToolCall {
            id: String,
            name: String,
            arguments: String,
        },
        ToolResult {
            tool_call_id: String,
            #[serde(default)]
            name: Option<String>,
            content: String,
            #[serde(default)]
            is_error: bool,
        },
        Thinking {
            text: String,
            #[serde(default)]
            signature: Option<String>,
        },
    }

    fn round_trip(part: ContentPart) {
        let json = serde_json::to_string(&part).unwrap();
        assert_eq!(
            serde_json::from_str::<ContentPart>(&json).unwrap(),
            part,
            "{json}"
        );
        // Any field order, unknown fields ignored.
        let mut value: serde_json::Map<String, Value> = serde_json::from_str(&json).unwrap();
        value.insert("zz_unknown".into(), json!(1));
        let reordered: Value = value
            .into_iter()
            .rev()
            .collect::<serde_json::Map<_, _>>()
            .into();
        assert_eq!(
            serde_json::from_value::<ContentPart>(reordered).unwrap(),
            part
        );
    }

    #[test]
    fn content_parts_round_trip() {
        round_trip(ContentPart::text("hi \"there\"\n"));
        round_trip(ContentPart::Image {
            source: ImageSource::Url {
                url: "https://example.com/a.png".into(),
            },
        });
        round_trip(ContentPart::ToolCall {
            id: "c1".into(),
            name: "f".into(),
            arguments: "{\"a\":1}".into(),
        });
        round_trip(ContentPart::ToolResult {
            tool_call_id: "c1".into(),
            name: Some("f".into()),
            content: "42".into(),
            is_error: true,
        });
        round_trip(ContentPart::ToolResult {
            tool_call_id: "c1".into(),
            name: None,
            content: "42".into(),
            is_error: false,
        });
        round_trip(ContentPart::Thinking {
            text: "hmm".into(),
            signature: Some("sig".into()),
        });
    }

    #[test]
    fn content_part_errors_match_the_derive() {
        for input in [
            json!({"type": "text"}),
            json!({"type": "tool_call", "id": "c", "name": "f"}),
            json!({"type": "tool_result", "tool_call_id": "c"}),
            json!({"type": "video", "text": "x"}),
            json!({"text": "x"}),
            json!({"type": "text", "text": 5}),
            json!("text"),
        ] {
            let ours = serde_json::from_value::<ContentPart>(input.clone());
            let derived = serde_json::from_value::<DerivedPart>(input.clone());
            assert!(ours.is_err() && derived.is_err(), "{input}");
        }
        let missing = serde_json::from_value::<ContentPart>(json!({"type": "text"}))
            .unwrap_err()
            .to_string();
        assert_eq!(missing, "missing field `text`");
    }

    #[test]
    fn stream_events_round_trip() {
        for event in [
            StreamEvent::Start {
                id: "r".into(),
                model: "m".into(),
            },
            StreamEvent::TextDelta { text: "a".into() },
            StreamEvent::ThinkingDelta { text: "b".into() },
            StreamEvent::ThinkingSignature {
                signature: "EqQBCkYIBRgCIkB".into(),
            },
            StreamEvent::ToolCallStart {
                index: 1,
                id: "c".into(),
                name: "f".into(),
            },
            StreamEvent::ToolCallDelta {
                index: 1,
                arguments: "{".into(),
            },
            StreamEvent::Usage {
                usage: Usage {
                    input_tokens: 3,
                    output_tokens: 4,
                    cached_input_tokens: Some(1),
                },
            },
            StreamEvent::Finish {
                reason: FinishReason::ToolCalls,
            },
            StreamEvent::Raw {
                data: json!({"choices": [{"delta": {"content": "a"}}]}),
            },
            StreamEvent::Raw { data: Value::Null },
        ] {
            let json = serde_json::to_string(&event).unwrap();
            assert_eq!(
                serde_json::from_str::<StreamEvent>(&json).unwrap(),
                event,
                "{json}"
            );
        }
        // `start` fields default; others are required.
        assert_eq!(
            serde_json::from_value::<StreamEvent>(json!({"type": "start"})).unwrap(),
            StreamEvent::Start {
                id: String::new(),
                model: String::new()
            }
        );
        for input in [
            json!({"type": "raw"}),
            json!({"type": "finish"}),
            json!({"type": "tool_call_delta", "index": 0}),
            json!({"type": "nope"}),
        ] {
            assert!(
                serde_json::from_value::<StreamEvent>(input.clone()).is_err(),
                "{input}"
            );
        }
    }
}
