//! The Gemini `generateContent` flow shared by the providers that speak it
//! (the Gemini API and Vertex AI): request building below a model's
//! resource URL, answer and error parsing, and the SSE stream decoder. The
//! wire translation itself is [`portico_model::formats::gemini`]; this
//! module only adds the HTTP around it. Callers add their own auth header.

use portico_model::formats::gemini;
use portico_model::plugin::HttpResponse;
use portico_model::{ChatRequest, ChatResponse, ProviderError, StreamEvent};

use crate::http::{self, RequestBuilder};
use crate::sse::{EventDecoder, SseEvent, SseStream};

/// The `generateContent` request (or `streamGenerateContent?alt=sse` when
/// `stream`) for the model at `model_url`, e.g.
/// `https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash`.
/// Add the auth header, then `build()`.
pub fn generate_content_request(
    model_url: &str,
    request: &ChatRequest,
    stream: bool,
) -> RequestBuilder {
    let url = if stream {
        format!("{model_url}:streamGenerateContent?alt=sse")
    } else {
        format!("{model_url}:generateContent")
    };
    RequestBuilder::post(url)
        .header("accept", http::accept(stream, http::SSE))
        .json(&gemini::generate_content_request_body(request))
}

/// The `countTokens` request counting `request` for the model at
/// `model_url`; `model` is the model resource the Gemini API wants in the
/// body (Vertex AI: None). See [`gemini::count_tokens_request_body`]. Add
/// the auth header, then `build()`.
pub fn count_tokens_request(
    model_url: &str,
    request: &ChatRequest,
    model: Option<&str>,
) -> RequestBuilder {
    RequestBuilder::post(format!("{model_url}:countTokens"))
        .header("accept", "application/json")
        .json(&gemini::count_tokens_request_body(request, model))
}

/// A successful `countTokens` answer's token count.
pub fn parse_count_tokens(response: &HttpResponse) -> Result<u64, ProviderError> {
    gemini::parse_count_tokens(&response.body)
}

/// A successful `generateContent` answer as a neutral response (the export
/// bridge sends other statuses to the provider's `parse_error`).
pub fn parse_chat_response(response: &HttpResponse) -> Result<ChatResponse, ProviderError> {
    gemini::parse_generate_content(&response.body)
}

/// A Google API error response (`{"error": {code, message, status,
/// details}}`) as a typed error: `RetryInfo` / `Retry-After` honoured, a bad
/// API key is an authentication error.
pub fn parse_error(response: &HttpResponse) -> ProviderError {
    gemini::parse_error(response.status, &response.headers, &response.body)
}

/// Decoder of `streamGenerateContent?alt=sse` bodies.
pub type GeminiStreamDecoder = SseStream<GeminiEvents>;

/// A fresh [`GeminiStreamDecoder`].
pub fn stream_decoder() -> GeminiStreamDecoder {
    SseStream::new(GeminiEvents::default())
}

/// The SSE events of a Gemini stream (each `data` a whole
/// `GenerateContentResponse`) as neutral events.
#[derive(Debug, Default)]
pub struct GeminiEvents {
    chunks: gemini::ChunkDecoder,
    finished: bool,
}

impl EventDecoder for GeminiEvents {
    fn decode(&mut self, event: &SseEvent) -> Result<Vec<StreamEvent>, ProviderError> {
        let events = self.chunks.decode(&event.data)?;
        if events
            .iter()
            .any(|e| matches!(e, StreamEvent::Finish { .. }))
        {
            self.finished = true;
        }
        Ok(events)
    }

    fn end(&mut self) -> Result<Vec<StreamEvent>, ProviderError> {
        // The last chunk always carries a finishReason (or a block reason);
        // without one the answer was cut off.
        if self.finished {
            Ok(Vec::new())
        } else {
            Err(ProviderError::bad_upstream(
                "Gemini stream ended before the answer was complete",
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::StreamDecoder;
    use portico_model::{ErrorKind, FinishReason, Message};
    use serde_json::{Value, json};

    #[test]
    fn builds_requests() {
        let request = ChatRequest {
            model: "gemini-2.5-flash".into(),
            system: Some("Be brief.".into()),
            messages: vec![Message::user("Hi")],
            ..Default::default()
        };
        let plain = generate_content_request("https://h/v1beta/models/m", &request, false)
            .header("x-goog-api-key", "k")
            .build();
        assert_eq!(plain.url, "https://h/v1beta/models/m:generateContent");
        assert!(
            plain
                .headers
                .contains(&("accept".into(), "application/json".into()))
        );
        let body: Value = serde_json::from_slice(&plain.body).unwrap();
        assert_eq!(
            body,
            json!({
                "contents": [{"role": "user", "parts": [{"text": "Hi"}]}],
                "systemInstruction": {"parts": [{"text": "Be brief."}]},
            })
        );
        let streamed =
            generate_content_request("https://h/v1beta/models/m", &request, true).build();
        assert_eq!(
            streamed.url,
            "https://h/v1beta/models/m:streamGenerateContent?alt=sse"
        );
        assert!(
            streamed
                .headers
                .contains(&("accept".into(), "text/event-stream".into()))
        );
        assert_eq!(streamed.body, plain.body);
    }

    #[test]
    fn parses_answers_and_errors() {
        let ok = HttpResponse {
            status: 200,
            headers: vec![],
            body: br#"{"candidates":[{"content":{"parts":[{"text":"Hello"}],"role":"model"},"finishReason":"STOP"}],"usageMetadata":{"promptTokenCount":3,"candidatesTokenCount":1,"totalTokenCount":4},"modelVersion":"gemini-2.5-flash","responseId":"r1"}"#.to_vec(),
        };
        let answer = parse_chat_response(&ok).unwrap();
        assert_eq!(answer.text(), "Hello");
        assert_eq!(answer.usage.input_tokens, 3);
        let limited = HttpResponse {
            status: 429,
            headers: vec![],
            body: br#"{"error":{"code":429,"message":"Resource exhausted","status":"RESOURCE_EXHAUSTED","details":[{"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"12s"}]}}"#.to_vec(),
        };
        let err = parse_error(&limited);
        assert_eq!(
            (err.kind, err.status, err.retry_after_ms),
            (ErrorKind::RateLimited, 429, Some(12_000))
        );
    }

    const STREAM: &str = "data: {\"candidates\": [{\"content\": {\"parts\": [{\"text\": \"Hel\"}],\"role\": \"model\"},\"index\": 0}],\"modelVersion\": \"gemini-2.5-flash\",\"responseId\": \"abc\"}\r\n\r\n\
data: {\"candidates\": [{\"content\": {\"parts\": [{\"text\": \"lo \u{e9}\"}],\"role\": \"model\"},\"finishReason\": \"STOP\",\"index\": 0}],\"usageMetadata\": {\"promptTokenCount\": 4,\"candidatesTokenCount\": 2,\"totalTokenCount\": 6},\"modelVersion\": \"gemini-2.5-flash\",\"responseId\": \"abc\"}\r\n\r\n";

    fn decode(chunks: &[&[u8]]) -> Result<Vec<StreamEvent>, ProviderError> {
        let mut decoder = stream_decoder();
        let mut events = Vec::new();
        for chunk in chunks {
            events.extend(decoder.push(chunk)?);
        }
        events.extend(decoder.finish()?);
        Ok(events)
    }

    #[test]
    fn stream_split_anywhere() {
        let bytes = STREAM.as_bytes();
        let whole = decode(&[bytes]).unwrap();
        assert_eq!(
            whole.last(),
            Some(&StreamEvent::Finish {
                reason: FinishReason::Stop
            })
        );
        let text: String = StreamEvent::text_deltas(&whole).collect();
        assert_eq!(text, "Hello é");
        for cut in 0..=bytes.len() {
            assert_eq!(
                decode(&[&bytes[..cut], &bytes[cut..]]).unwrap(),
                whole,
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn truncated_stream_is_an_error() {
        let first_event = STREAM.split("\r\n\r\n").next().unwrap().to_string() + "\r\n\r\n";
        let err = decode(&[first_event.as_bytes()]).unwrap_err();
        assert_eq!(err.kind, ErrorKind::Upstream);
        let error_event = "data: {\"error\": {\"code\": 503, \"message\": \"The model is overloaded.\", \"status\": \"UNAVAILABLE\"}}\n\n";
        let err = decode(&[error_event.as_bytes()]).unwrap_err();
        assert_eq!(err.kind, ErrorKind::Overloaded);
    }
}
