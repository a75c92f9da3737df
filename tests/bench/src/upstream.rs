//! The fake upstream: an OpenAI- and Anthropic-compatible server answering
//! fixed small responses as fast as it can, so what is measured is the hop
//! in front of it.
//!
//! - `POST .../chat/completions`: an OpenAI chat completion, or with
//!   `"stream":true` an SSE stream of `chunks` deltas then `[DONE]`.
//! - `POST .../messages`: an Anthropic message, or its typed SSE stream.
//! - `POST .../embeddings`: an OpenAI embeddings answer.
//! - anything else: `{"ok":true}` (the test-echo plugin of the reload check).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

#[derive(Clone, Debug)]
pub struct UpstreamConfig {
    /// Deltas per streamed answer.
    pub chunks: usize,
    /// Pause between streamed deltas (zero: written back to back).
    pub chunk_interval: Duration,
}

pub const ANSWER: &str = "The gateway translates neutral requests to each provider's protocol through sandboxed plugins, and back.";

fn openai_chat() -> String {
    format!(
        r#"{{"id":"chatcmpl-bench","object":"chat.completion","created":1700000000,"model":"bench-model","choices":[{{"index":0,"message":{{"role":"assistant","content":"{ANSWER}"}},"finish_reason":"stop"}}],"usage":{{"prompt_tokens":420,"completion_tokens":21,"total_tokens":441}}}}"#
    )
}

fn anthropic_message() -> String {
    format!(
        r#"{{"id":"msg_bench","type":"message","role":"assistant","model":"bench-model","content":[{{"type":"text","text":"{ANSWER}"}}],"stop_reason":"end_turn","stop_sequence":null,"usage":{{"input_tokens":420,"output_tokens":21}}}}"#
    )
}

fn embeddings() -> String {
    let vector: Vec<String> = (0..64)
        .map(|i| format!("{:.6}", (i as f64 * 0.37).sin()))
        .collect();
    format!(
        r#"{{"object":"list","data":[{{"object":"embedding","index":0,"embedding":[{}]}}],"model":"bench-embed","usage":{{"prompt_tokens":8,"total_tokens":8}}}}"#,
        vector.join(",")
    )
}

/// The SSE events of one streamed answer: head, `chunks` deltas, tail.
fn openai_stream(chunks: usize) -> Vec<Bytes> {
    let chunk = |delta: &str, finish: &str| {
        Bytes::from(format!(
            "data: {{\"id\":\"chatcmpl-bench\",\"object\":\"chat.completion.chunk\",\"created\":1700000000,\"model\":\"bench-model\",\"choices\":[{{\"index\":0,\"delta\":{delta},\"finish_reason\":{finish}}}]}}\n\n"
        ))
    };
    let mut events = vec![chunk(r#"{"role":"assistant","content":""}"#, "null")];
    for i in 0..chunks {
        events.push(chunk(&format!(r#"{{"content":"token{i} "}}"#), "null"));
    }
    events.push(chunk("{}", r#""stop""#));
    events.push(Bytes::from_static(b"data: [DONE]\n\n"));
    events
}

fn anthropic_stream(chunks: usize) -> Vec<Bytes> {
    let event = |name: &str, data: String| Bytes::from(format!("event: {name}\ndata: {data}\n\n"));
    let mut events = vec![
        event(
            "message_start",
            r#"{"type":"message_start","message":{"id":"msg_bench","type":"message","role":"assistant","model":"bench-model","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":420,"output_tokens":1}}}"#.into(),
        ),
        event(
            "content_block_start",
            r#"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#.into(),
        ),
    ];
    for i in 0..chunks {
        events.push(event(
            "content_block_delta",
            format!(
                r#"{{"type":"content_block_delta","index":0,"delta":{{"type":"text_delta","text":"token{i} "}}}}"#
            ),
        ));
    }
    events.push(event(
        "content_block_stop",
        r#"{"type":"content_block_stop","index":0}"#.into(),
    ));
    events.push(event(
        "message_delta",
        r#"{"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":21}}"#.into(),
    ));
    events.push(event("message_stop", r#"{"type":"message_stop"}"#.into()));
    events
}

struct Canned {
    openai_chat: Bytes,
    anthropic_message: Bytes,
    embeddings: Bytes,
    openai_stream: Vec<Bytes>,
    anthropic_stream: Vec<Bytes>,
    interval: Duration,
}

type Body = BoxBody<Bytes, Infallible>;

fn full(content_type: &'static str, body: Bytes) -> Response<Body> {
    let mut response = Response::new(Full::new(body).boxed());
    response.headers_mut().insert(
        "content-type",
        hyper::header::HeaderValue::from_static(content_type),
    );
    response
}

fn sse(events: Vec<Bytes>, interval: Duration) -> Response<Body> {
    let stream = futures::stream::unfold(events.into_iter(), move |mut events| async move {
        let event = events.next()?;
        if !interval.is_zero() {
            tokio::time::sleep(interval).await;
        }
        Some((Ok::<_, Infallible>(Frame::data(event)), events))
    });
    let mut response = Response::new(BodyExt::boxed(StreamBody::new(stream)));
    response.headers_mut().insert(
        "content-type",
        hyper::header::HeaderValue::from_static("text/event-stream"),
    );
    response
}

fn wants_stream(body: &[u8]) -> bool {
    let find = |needle: &[u8]| body.windows(needle.len()).any(|w| w == needle);
    find(br#""stream":true"#) || find(br#""stream": true"#)
}

async fn handle(
    request: Request<Incoming>,
    canned: Arc<Canned>,
) -> Result<Response<Body>, Infallible> {
    let path = request.uri().path().to_string();
    // Read the whole request, as a real upstream would.
    let body = match request.into_body().collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => Bytes::new(),
    };
    let json = "application/json";
    Ok(if path.ends_with("/chat/completions") {
        if wants_stream(&body) {
            sse(canned.openai_stream.clone(), canned.interval)
        } else {
            full(json, canned.openai_chat.clone())
        }
    } else if path.ends_with("/messages") {
        if wants_stream(&body) {
            sse(canned.anthropic_stream.clone(), canned.interval)
        } else {
            full(json, canned.anthropic_message.clone())
        }
    } else if path.ends_with("/embeddings") {
        full(json, canned.embeddings.clone())
    } else {
        full(json, Bytes::from_static(b"{\"ok\":true}"))
    })
}

/// Serves until the process is killed.
pub async fn serve(addr: SocketAddr, config: UpstreamConfig) -> anyhow::Result<()> {
    let canned = Arc::new(Canned {
        openai_chat: Bytes::from(openai_chat()),
        anthropic_message: Bytes::from(anthropic_message()),
        embeddings: Bytes::from(embeddings()),
        openai_stream: openai_stream(config.chunks),
        anthropic_stream: anthropic_stream(config.chunks),
        interval: config.chunk_interval,
    });
    let listener = TcpListener::bind(addr).await?;
    eprintln!("fake upstream listening on {}", listener.local_addr()?);
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                eprintln!("accept failed: {error}");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let canned = canned.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| handle(request, canned.clone()));
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canned_answers_are_json() {
        for body in [openai_chat(), anthropic_message(), embeddings()] {
            serde_json::from_str::<serde_json::Value>(&body).unwrap();
        }
        for event in openai_stream(3).iter().chain(&anthropic_stream(3)) {
            let text = std::str::from_utf8(event).unwrap();
            let data = text.lines().find_map(|l| l.strip_prefix("data: ")).unwrap();
            if data != "[DONE]" {
                serde_json::from_str::<serde_json::Value>(data).unwrap();
            }
        }
        assert!(wants_stream(br#"{"a":1,"stream":true}"#));
        assert!(!wants_stream(br#"{"stream":false}"#));
    }
}
