//! A provider for the (fictional) Acme API:
//!   POST {base_url}/v1/generate, header `x-api-key`,
//!   body {"model", "system", "messages": [{"role", "text"}], "max_tokens", "stream"}
//!   answer {"id", "output", "stop": "end" | "max_tokens", "usage": {"in", "out"}}
//!   stream: SSE `event: delta` {"text"} ... then `event: done` {"stop", "usage"}
use portico_sdk::prelude::*;
use portico_sdk::sse::{EventDecoder, SseEvent, SseStream};
use serde::Deserialize;
use serde_json::json;

const MODELS: &str = include_str!("../models.toml");

pub struct Acme;

impl Provider for Acme {
    type StreamDecoder = SseStream<AcmeEvents>;

    fn new() -> Self {
        Acme
    }

    fn info(&self) -> ProviderInfo {
        ProviderInfo {
            id: "acme".into(),
            display_name: "Acme".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "Acme text generation".into(),
            operations: vec![Operation::Chat, Operation::ChatStream],
            native_dialect: None,
            config_fields: vec![
                config::required("api_key", "API key", FieldKind::Secret, "Your Acme key."),
                config::optional(
                    "base_url",
                    "Base URL",
                    FieldKind::Url,
                    Some("https://api.acme.test"),
                    "API root.",
                ),
            ],
            egress_hosts: Vec::new(),
            models: catalog::load(MODELS),
        }
    }

    fn build_chat_request(
        &self,
        endpoint: &Endpoint,
        request: ChatRequest,
        stream: bool,
    ) -> Result<HttpRequest, ProviderError> {
        let mut messages = Vec::new();
        for message in &request.messages {
            if message
                .content
                .iter()
                .any(|p| !matches!(p, ContentPart::Text { .. }))
            {
                return Err(ProviderError::invalid_request("Acme only accepts text"));
            }
            let role = if message.role == Role::Assistant {
                "assistant"
            } else {
                "user"
            };
            messages.push(json!({"role": role, "text": message.text()}));
        }
        let body = json!({
            "model": request.model,
            "system": request.system,
            "messages": messages,
            "max_tokens": request.params.max_tokens,
            "stream": stream,
        });
        let base = endpoint.base_url("base_url", Some("https://api.acme.test"))?;
        Ok(
            http::RequestBuilder::post(http::join_url(&base, "/v1/generate"))
                .header("x-api-key", endpoint.require("api_key")?)
                .json(&body)
                .build(),
        )
    }

    fn parse_chat_response(
        &self,
        _endpoint: &Endpoint,
        response: HttpResponse,
    ) -> Result<ChatResponse, ProviderError> {
        if response.status != 200 {
            return Err(errors::from_response(&response));
        }
        let answer: Answer = json::parse(&response.body)?;
        Ok(ChatResponse {
            id: answer.id,
            content: vec![ContentPart::text(answer.output)],
            finish_reason: finish_reason(&answer.stop),
            usage: answer.usage.into(),
            ..Default::default()
        })
    }

    fn stream_decoder(&self, _endpoint: &Endpoint) -> Self::StreamDecoder {
        SseStream::new(AcmeEvents::default())
    }
}

#[derive(Deserialize)]
struct Answer {
    id: String,
    output: String,
    stop: String,
    usage: AcmeUsage,
}

#[derive(Deserialize)]
struct AcmeUsage {
    #[serde(rename = "in")]
    input: u32,
    #[serde(rename = "out")]
    output: u32,
}

impl From<AcmeUsage> for Usage {
    fn from(u: AcmeUsage) -> Self {
        Usage {
            input_tokens: u.input,
            output_tokens: u.output,
            cached_input_tokens: None,
        }
    }
}

fn finish_reason(stop: &str) -> FinishReason {
    if stop == "max_tokens" {
        FinishReason::Length
    } else {
        FinishReason::Stop
    }
}

/// Acme's SSE events to neutral stream events.
#[derive(Default)]
pub struct AcmeEvents {
    started: bool,
    done: bool,
}

impl EventDecoder for AcmeEvents {
    fn decode(&mut self, event: &SseEvent) -> Result<Vec<StreamEvent>, ProviderError> {
        let mut events = Vec::new();
        if !self.started {
            self.started = true;
            events.push(StreamEvent::Start {
                id: String::new(),
                model: String::new(),
            });
        }
        match event.event.as_str() {
            "delta" => {
                #[derive(Deserialize)]
                struct Delta {
                    text: String,
                }
                let delta: Delta = json::parse(event.data.as_bytes())?;
                events.push(StreamEvent::TextDelta { text: delta.text });
            }
            "done" => {
                #[derive(Deserialize)]
                struct Done {
                    stop: String,
                    usage: AcmeUsage,
                }
                let done: Done = json::parse(event.data.as_bytes())?;
                self.done = true;
                events.push(StreamEvent::Finish {
                    reason: finish_reason(&done.stop),
                });
                events.push(StreamEvent::Usage {
                    usage: done.usage.into(),
                });
            }
            _ => {} // ignore keep-alives and future event types
        }
        Ok(events)
    }

    fn end(&mut self) -> Result<Vec<StreamEvent>, ProviderError> {
        if self.done {
            Ok(Vec::new())
        } else {
            Err(ProviderError::bad_upstream("Acme stream ended early"))
        }
    }
}

portico_sdk::export_provider!(Acme);
