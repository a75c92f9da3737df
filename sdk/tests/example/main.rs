//! The README's minimal plugin, compiled and exercised natively; also
//! checks that the README shows exactly this code.

mod plugin;

use plugin::Acme;
use portico_sdk::prelude::*;

#[path = "../common/readme.rs"]
mod readme;

fn endpoint() -> Endpoint {
    Endpoint {
        name: "acme-ep".into(),
        model: "acme-small".into(),
        config: [("api_key".to_string(), "k-123".to_string())].into(),
    }
}

#[test]
fn readme_shows_this_example() {
    readme::assert_block_matches("example/plugin.rs", include_str!("plugin.rs"));
    readme::assert_block_matches("models.toml", include_str!("../models.toml"));
}

#[test]
fn describes_with_catalog() {
    let info = Acme::new().info();
    assert_eq!(info.id, "acme");
    assert_eq!(info.models.len(), 2);
    assert!(info.models[0].capabilities.reasoning);
}

#[test]
fn builds_and_parses() {
    let acme = Acme::new();
    let request = ChatRequest {
        model: "acme-small".into(),
        system: Some("terse".into()),
        messages: vec![Message::user("hi")],
        ..Default::default()
    };
    let http = acme
        .build_chat_request(&endpoint(), request, false)
        .unwrap();
    assert_eq!(http.url, "https://api.acme.test/v1/generate");
    assert!(
        http.headers
            .contains(&("x-api-key".to_string(), "k-123".to_string()))
    );
    let body: serde_json::Value = serde_json::from_slice(&http.body).unwrap();
    assert_eq!(
        body["messages"][0],
        serde_json::json!({"role": "user", "text": "hi"})
    );

    let image = ChatRequest {
        messages: vec![Message {
            role: Role::User,
            content: vec![ContentPart::Image {
                source: ImageSource::from_url("https://x/y.png"),
            }],
        }],
        ..Default::default()
    };
    assert_eq!(
        acme.build_chat_request(&endpoint(), image, false)
            .unwrap_err()
            .status,
        400
    );

    let response = HttpResponse {
        status: 200,
        headers: vec![],
        body: br#"{"id":"a1","output":"Hello","stop":"max_tokens","usage":{"in":3,"out":1}}"#
            .to_vec(),
    };
    let answer = acme.parse_chat_response(&endpoint(), response).unwrap();
    assert_eq!(answer.text(), "Hello");
    assert_eq!(answer.finish_reason, FinishReason::Length);
    assert_eq!(answer.usage.total(), 4);

    let failure = HttpResponse {
        status: 401,
        headers: vec![],
        body: br#"{"message":"bad key"}"#.to_vec(),
    };
    let err = acme.parse_chat_response(&endpoint(), failure).unwrap_err();
    assert_eq!(
        (err.kind, err.message.as_str()),
        (ErrorKind::Authentication, "bad key")
    );

    let err = acme
        .build_embeddings_request(&endpoint(), EmbeddingsRequest::default())
        .unwrap_err();
    assert!(err.message.contains("does not support embeddings"));
}

#[test]
fn decodes_stream() {
    let body = b"event: delta\ndata: {\"text\":\"Hel\"}\n\n: ping\n\nevent: delta\ndata: {\"text\":\"lo\"}\n\nevent: done\ndata: {\"stop\":\"end\",\"usage\":{\"in\":2,\"out\":2}}\n\n";
    let acme = Acme::new();
    for cut in 0..=body.len() {
        let mut decoder = acme.stream_decoder(&endpoint());
        let mut events = decoder.push(&body[..cut]).unwrap();
        events.extend(decoder.push(&body[cut..]).unwrap());
        events.extend(decoder.finish().unwrap());
        assert_eq!(
            events,
            vec![
                StreamEvent::Start {
                    id: String::new(),
                    model: String::new()
                },
                StreamEvent::TextDelta { text: "Hel".into() },
                StreamEvent::TextDelta { text: "lo".into() },
                StreamEvent::Finish {
                    reason: FinishReason::Stop
                },
                StreamEvent::Usage {
                    usage: Usage {
                        input_tokens: 2,
                        output_tokens: 2,
                        cached_input_tokens: None
                    }
                },
            ]
        );
    }
    let mut decoder = acme.stream_decoder(&endpoint());
    decoder
        .push(b"event: delta\ndata: {\"text\":\"x\"}\n\n")
        .unwrap();
    assert!(decoder.finish().is_err());
}
