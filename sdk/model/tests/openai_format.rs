//! Tests of the OpenAI wire format, both directions.

use portico_model::formats::common;
use portico_model::formats::openai::{
    self, ChatBodyOptions, ChunkDecoder, ChunkEncoder, MaxTokensField,
};
use portico_model::{
    ChatRequest, ChatResponse, ContentPart, EmbeddingsRequest, EmbeddingsResponse, ErrorKind,
    FinishReason, ImageSource, Message, ProviderError, Reasoning, ReasoningEffort, Role,
    SamplingParams, StreamEvent, Tool, ToolChoice, Usage,
};
use serde_json::{Value, json};

fn parse(body: Value) -> Result<openai::ClientChatRequest, ProviderError> {
    openai::parse_chat_request(body.to_string().as_bytes())
}

fn parse_err(body: Value) -> String {
    match parse(body) {
        Ok(parsed) => panic!("expected an error, parsed {parsed:?}"),
        Err(err) => {
            assert_eq!(err.kind, ErrorKind::InvalidRequest);
            assert_eq!(err.status, 400);
            err.message
        }
    }
}

// --- client side -----------------------------------------------------------

#[test]
fn parses_simple_text_request() {
    let parsed = parse(json!({
        "model": "my-endpoint",
        "messages": [{"role": "user", "content": "Hello"}],
    }))
    .unwrap();
    assert_eq!(parsed.endpoint, "my-endpoint");
    assert!(!parsed.stream);
    assert!(!parsed.include_usage);
    let request = parsed.request;
    assert_eq!(request.model, "");
    assert_eq!(request.system, None);
    assert_eq!(request.messages, vec![Message::user("Hello")]);
    assert_eq!(request.extra_dialect.as_deref(), Some("openai"));
    assert!(request.extra.is_empty());
}

#[test]
fn parses_system_params_and_extra_fields() {
    let parsed = parse(json!({
        "model": "ep",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "developer", "content": [{"type": "text", "text": "Answer in French."}]},
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Salut"},
            {"role": "user", "content": "Again"},
        ],
        "stream": true,
        "stream_options": {"include_usage": true},
        "max_tokens": 50,
        "max_completion_tokens": 100,
        "temperature": 0.2,
        "top_p": 0.9,
        "stop": "END",
        "seed": -7,
        "presence_penalty": 0.5,
        "frequency_penalty": -0.5,
        "response_format": {"type": "json_object"},
        "n": 1,
        "user": "u-42",
        "logprobs": true,
        "parallel_tool_calls": false,
        "reasoning_effort": null,
    }))
    .unwrap();
    assert!(parsed.stream && parsed.include_usage);
    let request = parsed.request;
    assert_eq!(
        request.system.as_deref(),
        Some("Be brief.\n\nAnswer in French.")
    );
    assert_eq!(
        request.messages,
        vec![
            Message::user("Hi"),
            Message::assistant("Salut"),
            Message::user("Again")
        ]
    );
    assert_eq!(
        request.params,
        SamplingParams {
            max_tokens: Some(100),
            temperature: Some(0.2),
            top_p: Some(0.9),
            top_k: None,
            stop: vec!["END".into()],
            seed: Some(-7),
            presence_penalty: Some(0.5),
            frequency_penalty: Some(-0.5),
        }
    );
    assert_eq!(
        request.response_format,
        Some(json!({"type": "json_object"}))
    );
    let mut extra_keys: Vec<&str> = request.extra.keys().map(String::as_str).collect();
    extra_keys.sort_unstable();
    assert_eq!(
        extra_keys,
        vec![
            "logprobs",
            "parallel_tool_calls",
            "reasoning_effort",
            "user"
        ]
    );
}

#[test]
fn parses_images_including_data_urls() {
    let parsed = parse(json!({
        "model": "ep",
        "messages": [{"role": "user", "content": [
            {"type": "text", "text": "What is this?"},
            {"type": "image_url", "image_url": {"url": "https://example.com/cat.png", "detail": "high"}},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
        ]}],
    }))
    .unwrap();
    assert_eq!(
        parsed.request.messages[0].content,
        vec![
            ContentPart::text("What is this?"),
            ContentPart::Image {
                source: ImageSource::Url {
                    url: "https://example.com/cat.png".into()
                }
            },
            ContentPart::Image {
                source: ImageSource::Base64 {
                    media_type: "image/png".into(),
                    data: "iVBORw0KGgo=".into()
                }
            },
        ]
    );
}

#[test]
fn parses_tools_and_tool_turns() {
    let parsed = parse(json!({
        "model": "ep",
        "messages": [
            {"role": "user", "content": "Weather in Paris and Rome?"},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
                {"id": "call_2", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Rome\"}"}},
            ]},
            {"role": "tool", "tool_call_id": "call_1", "content": "18C"},
            {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "24C"}]},
        ],
        "tools": [{"type": "function", "function": {
            "name": "get_weather",
            "description": "Current weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        }}, {"type": "function", "function": {"name": "noop"}}],
        "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
    }))
    .unwrap();
    let request = parsed.request;
    assert_eq!(request.tools.len(), 2);
    assert_eq!(request.tools[0].name, "get_weather");
    assert_eq!(
        request.tools[0].description.as_deref(),
        Some("Current weather")
    );
    assert_eq!(
        request.tools[1].parameters,
        json!({"type": "object", "properties": {}})
    );
    assert_eq!(
        request.tool_choice,
        Some(ToolChoice::Tool {
            name: "get_weather".into()
        })
    );
    assert_eq!(request.messages.len(), 3);
    assert_eq!(
        request.messages[1].content,
        vec![
            ContentPart::ToolCall {
                id: "call_1".into(),
                name: "get_weather".into(),
                arguments: "{\"city\":\"Paris\"}".into()
            },
            ContentPart::ToolCall {
                id: "call_2".into(),
                name: "get_weather".into(),
                arguments: "{\"city\":\"Rome\"}".into()
            },
        ]
    );
    // Both tool messages land in one neutral tool turn, names filled in.
    assert_eq!(request.messages[2].role, Role::Tool);
    assert_eq!(
        request.messages[2].content,
        vec![
            ContentPart::ToolResult {
                tool_call_id: "call_1".into(),
                name: Some("get_weather".into()),
                content: "18C".into(),
                is_error: false
            },
            ContentPart::ToolResult {
                tool_call_id: "call_2".into(),
                name: Some("get_weather".into()),
                content: "24C".into(),
                is_error: false
            },
        ]
    );
    for (choice, expected) in [
        ("auto", ToolChoice::Auto),
        ("none", ToolChoice::None),
        ("required", ToolChoice::Required),
    ] {
        let parsed = parse(
            json!({"model": "ep", "messages": [{"role": "user", "content": "x"}], "tool_choice": choice}),
        );
        assert_eq!(parsed.unwrap().request.tool_choice, Some(expected));
    }
}

#[test]
fn rejects_invalid_chat_requests_with_clear_messages() {
    let user = json!([{"role": "user", "content": "x"}]);
    assert!(
        openai::parse_chat_request(b"{not json")
            .unwrap_err()
            .message
            .contains("not valid JSON")
    );
    assert!(parse_err(json!([1, 2])).contains("JSON object"));
    assert_eq!(parse_err(json!({"messages": user})), "'model' is required");
    assert_eq!(
        parse_err(json!({"model": 3, "messages": user})),
        "'model' must be a non-empty string"
    );
    assert_eq!(parse_err(json!({"model": "ep"})), "'messages' is required");
    assert_eq!(
        parse_err(json!({"model": "ep", "messages": []})),
        "'messages' must contain at least one message"
    );
    assert!(
        parse_err(json!({"model": "ep", "messages": [{"role": "robot", "content": "x"}]}))
            .contains("messages[0].role")
    );
    assert!(
        parse_err(json!({"model": "ep", "messages": [{"content": "x"}]}))
            .contains("'messages[0].role' is required")
    );
    let audio = json!({"model": "ep", "messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}]});
    assert_eq!(
        parse_err(audio),
        "'messages[0].content[0].type' audio input is not supported"
    );
    let weird =
        json!({"model": "ep", "messages": [{"role": "user", "content": [{"type": "hologram"}]}]});
    assert!(parse_err(weird).contains("'hologram' is not supported"));
    let no_url = json!({"model": "ep", "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]});
    assert!(parse_err(no_url).contains("messages[0].content[0].image_url.url"));
    let no_id = json!({"model": "ep", "messages": [{"role": "tool", "content": "x"}]});
    assert!(parse_err(no_id).contains("messages[0].tool_call_id"));
    assert!(parse_err(json!({"model": "ep", "messages": user, "n": 2})).contains("'n'"));
    assert!(
        parse_err(json!({"model": "ep", "messages": user, "temperature": "hot"}))
            .contains("'temperature' must be a number")
    );
    assert!(
        parse_err(json!({"model": "ep", "messages": user, "tools": [{"type": "web_search"}]}))
            .contains("tools[0].type")
    );
    assert!(
        parse_err(json!({"model": "ep", "messages": user, "tool_choice": "sometimes"}))
            .contains("tool_choice")
    );
    assert!(parse_err(json!({"model": "ep", "messages": user, "stop": [1]})).contains("'stop'"));
    assert!(
        parse_err(json!({"model": "ep", "messages": [{"role": "function", "content": "x"}]}))
            .contains("use 'tool'")
    );
}

#[test]
fn encodes_chat_completion_body() {
    let response = ChatResponse {
        id: "resp-1".into(),
        model: "gpt-4o-2024-08-06".into(),
        content: vec![
            ContentPart::Thinking {
                text: "hmm".into(),
                signature: None,
            },
            ContentPart::text("Hello"),
            ContentPart::text(" world"),
        ],
        finish_reason: FinishReason::Length,
        usage: Usage {
            input_tokens: 10,
            output_tokens: 5,
            cached_input_tokens: Some(4),
        },
        raw: None,
    };
    let typed = openai::chat_completion_body(&response, "ep", 1_700_000_000);
    let body = serde_json::to_value(&typed).unwrap();
    // Written straight from the typed form, the bytes are those of the
    // `Value` form (keys in alphabetical order).
    assert_eq!(
        portico_model::json::to_string(&typed).unwrap(),
        serde_json::to_string(&body).unwrap()
    );
    assert_eq!(
        body,
        json!({
            "id": "resp-1",
            "object": "chat.completion",
            "created": 1_700_000_000u64,
            "model": "ep",
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": "Hello world", "refusal": null, "reasoning_content": "hmm"},
                "logprobs": null,
                "finish_reason": "length",
            }],
            "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15, "prompt_tokens_details": {"cached_tokens": 4}},
        })
    );

    let tool_response = ChatResponse {
        content: vec![ContentPart::ToolCall {
            id: "call_9".into(),
            name: "f".into(),
            arguments: "{}".into(),
        }],
        finish_reason: FinishReason::ToolCalls,
        ..ChatResponse::default()
    };
    let typed = openai::chat_completion_body(&tool_response, "ep", 1);
    let body = serde_json::to_value(&typed).unwrap();
    assert_eq!(
        portico_model::json::to_string(&typed).unwrap(),
        serde_json::to_string(&body).unwrap()
    );
    assert!(body["id"].as_str().unwrap().starts_with("chatcmpl-"));
    let message = &body["choices"][0]["message"];
    assert_eq!(message["content"], Value::Null);
    assert_eq!(
        message["tool_calls"],
        json!([{"id": "call_9", "type": "function", "function": {"name": "f", "arguments": "{}"}}])
    );
    assert_eq!(body["choices"][0]["finish_reason"], "tool_calls");
}

#[test]
fn encodes_stream_chunks() {
    let mut encoder = ChunkEncoder::new("chatcmpl-x".into(), "ep".into(), 7, true);
    let events = [
        StreamEvent::Start {
            id: "up".into(),
            model: "gpt".into(),
        },
        StreamEvent::TextDelta { text: "Hi".into() },
        StreamEvent::ToolCallStart {
            index: 0,
            id: "call_a".into(),
            name: "f".into(),
        },
        StreamEvent::ToolCallDelta {
            index: 0,
            arguments: "{\"a\":1}".into(),
        },
        StreamEvent::Usage {
            usage: Usage {
                input_tokens: 3,
                output_tokens: 2,
                cached_input_tokens: None,
            },
        },
        StreamEvent::Finish {
            reason: FinishReason::ToolCalls,
        },
    ];
    let chunks: Vec<Value> = events
        .iter()
        .flat_map(|e| encoded(&mut encoder, e))
        .collect();
    let deltas: Vec<&Value> = chunks.iter().map(|c| &c["choices"][0]["delta"]).collect();
    assert_eq!(chunks.len(), 5);
    for chunk in &chunks {
        assert_eq!(chunk["object"], "chat.completion.chunk");
        assert_eq!(chunk["id"], "chatcmpl-x");
        assert_eq!(chunk["model"], "ep");
        assert_eq!(chunk["created"], 7);
    }
    assert_eq!(*deltas[0], json!({"role": "assistant", "content": ""}));
    assert_eq!(*deltas[1], json!({"content": "Hi"}));
    assert_eq!(
        *deltas[2],
        json!({"tool_calls": [{"index": 0, "id": "call_a", "type": "function", "function": {"name": "f", "arguments": ""}}]})
    );
    assert_eq!(
        *deltas[3],
        json!({"tool_calls": [{"index": 0, "function": {"arguments": "{\"a\":1}"}}]})
    );
    assert_eq!(chunks[4]["choices"][0]["finish_reason"], "tool_calls");
    assert_eq!(chunks[1]["choices"][0]["finish_reason"], Value::Null);
    let last = encoder.finish();
    assert_eq!(last.len(), 1);
    assert_eq!(last[0]["choices"], json!([]));
    assert_eq!(
        last[0]["usage"],
        json!({"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5})
    );

    // Without include_usage, nothing trails; a delta before Start still
    // opens with the role chunk.
    let mut encoder = ChunkEncoder::new("id".into(), "ep".into(), 0, false);
    let chunks = encoded(&mut encoder, &StreamEvent::TextDelta { text: "a".into() });
    assert_eq!(chunks.len(), 2);
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    assert!(encoder.finish().is_empty());
}

#[test]
fn parses_embeddings_requests() {
    let parse = |v: Value| openai::parse_embeddings_request(v.to_string().as_bytes());
    let one = parse(json!({"model": "emb", "input": "hello"})).unwrap();
    assert_eq!(one.endpoint, "emb");
    assert!(!one.base64);
    assert_eq!(one.request.inputs, vec!["hello"]);
    let many = parse(json!({"model": "emb", "input": ["a", "b"], "dimensions": 256, "encoding_format": "base64", "user": "u"}))
        .unwrap();
    assert!(many.base64);
    assert_eq!(many.request.inputs, vec!["a", "b"]);
    assert_eq!(many.request.dimensions, Some(256));
    assert_eq!(many.request.extra.get("user"), Some(&json!("u")));
    assert_eq!(many.request.extra_dialect.as_deref(), Some("openai"));
    let message = |v: Value| parse(v).unwrap_err().message;
    assert!(message(json!({"model": "emb", "input": [1, 2, 3]})).contains("token-id arrays"));
    assert!(message(json!({"model": "emb", "input": [[1, 2]]})).contains("token-id arrays"));
    assert!(message(json!({"model": "emb", "input": []})).contains("must not be empty"));
    assert!(message(json!({"model": "emb"})).contains("'input' is required"));
    assert!(
        message(json!({"model": "emb", "input": "x", "encoding_format": "int8"}))
            .contains("encoding_format")
    );
    assert!(message(json!({"model": "emb", "input": "x", "dimensions": 0})).contains("dimensions"));
}

#[test]
fn embeddings_base64_round_trip() {
    let response = EmbeddingsResponse {
        model: "text-embedding-3-small".into(),
        embeddings: vec![vec![0.25, -1.5, 3.0e-7], vec![1.0, 0.1, -0.006929283]],
        usage: Usage {
            input_tokens: 8,
            output_tokens: 0,
            cached_input_tokens: None,
        },
    };
    let body = openai::embeddings_body(&response, "emb", true);
    assert_eq!(body["object"], "list");
    assert_eq!(body["model"], "emb");
    assert_eq!(
        body["usage"],
        json!({"prompt_tokens": 8, "total_tokens": 8})
    );
    assert_eq!(body["data"][1]["index"], 1);
    assert_eq!(body["data"][1]["object"], "embedding");
    // What the official SDK does: base64-decode, read little-endian f32.
    let decoded = openai::parse_embeddings(body.to_string().as_bytes()).unwrap();
    assert_eq!(decoded.embeddings, response.embeddings);

    let floats = openai::embeddings_body(&response, "emb", false);
    assert_eq!(floats["data"][0]["embedding"], json!([0.25, -1.5, 3.0e-7]));
    let decoded = openai::parse_embeddings(floats.to_string().as_bytes()).unwrap();
    assert_eq!(decoded.embeddings, response.embeddings);
}

#[test]
fn error_bodies_use_openai_types() {
    let cases = [
        (ErrorKind::InvalidRequest, "invalid_request_error"),
        (ErrorKind::Authentication, "authentication_error"),
        (ErrorKind::Permission, "permission_error"),
        (ErrorKind::NotFound, "not_found_error"),
        (ErrorKind::RateLimited, "rate_limit_error"),
        (ErrorKind::Overloaded, "server_error"),
        (ErrorKind::Upstream, "server_error"),
        (ErrorKind::Internal, "server_error"),
    ];
    for (kind, expected) in cases {
        let body = openai::error_body(&ProviderError::new(kind, "boom"));
        assert_eq!(body["error"]["type"], expected);
        assert_eq!(body["error"]["message"], "boom");
        assert_eq!(body["error"]["param"], Value::Null);
        assert!(body["error"]["code"].is_string());
    }
}

// --- provider side ---------------------------------------------------------

fn full_request() -> ChatRequest {
    ChatRequest {
        model: "gpt-4o".into(),
        system: Some("Be brief.".into()),
        messages: vec![
            Message {
                role: Role::User,
                content: vec![
                    ContentPart::text("Look"),
                    ContentPart::Image {
                        source: ImageSource::Base64 {
                            media_type: "image/jpeg".into(),
                            data: "AAAA".into(),
                        },
                    },
                ],
            },
            Message {
                role: Role::Assistant,
                content: vec![
                    ContentPart::Thinking {
                        text: "private".into(),
                        signature: None,
                    },
                    ContentPart::text("Checking."),
                    ContentPart::ToolCall {
                        id: "call_1".into(),
                        name: "lookup".into(),
                        arguments: "{\"q\":1}".into(),
                    },
                ],
            },
            Message {
                role: Role::Tool,
                content: vec![ContentPart::ToolResult {
                    tool_call_id: "call_1".into(),
                    name: Some("lookup".into()),
                    content: "42".into(),
                    is_error: false,
                }],
            },
            Message::user("Thanks"),
        ],
        tools: vec![Tool {
            name: "lookup".into(),
            description: Some("Look up".into()),
            parameters: json!({"type": "object"}),
        }],
        tool_choice: Some(ToolChoice::Required),
        params: SamplingParams {
            max_tokens: Some(256),
            temperature: Some(0.5),
            top_p: None,
            top_k: Some(40),
            stop: vec!["\n\n".into()],
            seed: Some(1),
            presence_penalty: None,
            frequency_penalty: Some(0.1),
        },
        response_format: Some(json!({"type": "text"})),
        extra: serde_json::from_value(
            json!({"user": "u-1", "temperature": 2.0, "logit_bias": {"50256": -100}}),
        )
        .unwrap(),
        reasoning: None,
        extra_dialect: Some("openai".into()),
    }
}

#[test]
fn builds_upstream_chat_body() {
    let body = openai::chat_request_body(&full_request(), false);
    assert_eq!(
        body,
        json!({
            "model": "gpt-4o",
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": [
                    {"type": "text", "text": "Look"},
                    {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,AAAA"}},
                ]},
                {"role": "assistant", "content": "Checking.", "tool_calls": [
                    {"id": "call_1", "type": "function", "function": {"name": "lookup", "arguments": "{\"q\":1}"}},
                ]},
                {"role": "tool", "tool_call_id": "call_1", "content": "42"},
                {"role": "user", "content": "Thanks"},
            ],
            "tools": [{"type": "function", "function": {"name": "lookup", "description": "Look up", "parameters": {"type": "object"}}}],
            "tool_choice": "required",
            "max_completion_tokens": 256,
            "temperature": 0.5,
            "stop": ["\n\n"],
            "seed": 1,
            "frequency_penalty": 0.1,
            "response_format": {"type": "text"},
            // Extra fields pass through; the neutral temperature wins.
            "user": "u-1",
            "logit_bias": {"50256": -100},
        })
    );

    let stream = openai::chat_request_body(&full_request(), true);
    assert_eq!(stream["stream"], true);
    assert_eq!(stream["stream_options"], json!({"include_usage": true}));

    // Extra fields from another dialect are not forwarded.
    let mut foreign = full_request();
    foreign.extra_dialect = Some("anthropic".into());
    let body = openai::chat_request_body(&foreign, false);
    assert!(body.get("user").is_none() && body.get("logit_bias").is_none());

    let options = ChatBodyOptions {
        max_tokens_field: MaxTokensField::MaxTokens,
        stream_usage: false,
        top_k: true,
        reasoning_effort: false,
    };
    let body = openai::chat_request_body_with(&full_request(), true, &options);
    assert_eq!(body["max_tokens"], 256);
    assert!(body.get("max_completion_tokens").is_none());
    assert!(body.get("stream_options").is_none());
    assert_eq!(body["top_k"], 40);
}

/// The typed body writes what its `Value` form writes, byte for byte (the
/// `Value` form is what hooks edit and what the tests above inspect).
#[test]
fn typed_chat_body_writes_its_value_form() {
    let mut requests = vec![full_request()];
    let mut odd = full_request();
    odd.params.temperature = Some(f64::NAN);
    odd.params.top_k = Some(3);
    odd.tool_choice = Some(ToolChoice::Tool {
        name: "lookup".into(),
    });
    odd.tools[0].description = None;
    odd.extra.insert("model".into(), json!("from-extra"));
    odd.extra
        .insert("aaa_first".into(), json!([1, {"z": 1, "a": 2}]));
    odd.messages.push(Message {
        role: Role::Assistant,
        content: vec![ContentPart::ToolCall {
            id: "call_2".into(),
            name: "lookup".into(),
            arguments: "{}".into(),
        }],
    });
    odd.messages.push(Message {
        role: Role::User,
        content: vec![],
    });
    odd.messages.push(Message {
        role: Role::User,
        content: vec![ContentPart::Image {
            source: ImageSource::Url {
                url: "https://example.com/a.png".into(),
            },
        }],
    });
    odd.messages.push(Message::assistant(""));
    odd.reasoning = Some(Reasoning::with_budget(3000));
    requests.push(odd);
    requests.push(ChatRequest {
        model: "m".into(),
        messages: vec![Message::user("line\n\"quoted\" \u{7f} é")],
        ..Default::default()
    });
    let options = [
        ChatBodyOptions::default(),
        ChatBodyOptions {
            max_tokens_field: MaxTokensField::MaxTokens,
            stream_usage: false,
            top_k: true,
            reasoning_effort: false,
        },
    ];
    for request in &requests {
        for options in &options {
            for stream in [false, true] {
                let typed = openai::chat_body(request, stream, options);
                let value = openai::chat_request_body_with(request, stream, options);
                assert_eq!(
                    portico_model::json::to_string(&typed).ok(),
                    serde_json::to_string(&value).ok(),
                    "{request:?}"
                );
                let mut without_model = openai::chat_body(request, stream, options);
                without_model.remove("model");
                assert!(without_model.to_value().get("model").is_none());
            }
        }
    }
}

/// A client's reasoning request, in any dialect, reaches an
/// OpenAI-compatible upstream as `reasoning_effort`.
#[test]
fn reasoning_requests_become_reasoning_effort() {
    let client = openai::parse_chat_request(
        br#"{"model":"ep","messages":[{"role":"user","content":"hi"}],"reasoning_effort":"high"}"#,
    )
    .unwrap();
    assert_eq!(
        client.request.reasoning,
        Some(Reasoning::with_effort(ReasoningEffort::High))
    );
    let body = openai::chat_request_body(&client.request, false);
    assert_eq!(body["reasoning_effort"], "high");

    // A value this gateway does not know still reaches an OpenAI upstream.
    let client = openai::parse_chat_request(
        br#"{"model":"ep","messages":[{"role":"user","content":"hi"}],"reasoning_effort":"extreme"}"#,
    )
    .unwrap();
    assert_eq!(client.request.reasoning, None);
    assert_eq!(
        openai::chat_request_body(&client.request, false)["reasoning_effort"],
        "extreme"
    );
    let error = openai::parse_chat_request(
        br#"{"model":"ep","messages":[{"role":"user","content":"hi"}],"reasoning_effort":3}"#,
    )
    .unwrap_err();
    assert_eq!(error.status, 400);
    assert!(
        error.message.contains("reasoning_effort"),
        "{}",
        error.message
    );

    // From another dialect: a budget becomes the level that covers it.
    let foreign = |reasoning: Reasoning| ChatRequest {
        model: "gpt-5".into(),
        messages: vec![Message::user("hi")],
        reasoning: Some(reasoning),
        extra_dialect: Some("anthropic".into()),
        ..Default::default()
    };
    for (budget, effort) in [
        (1024, "low"),
        (2048, "low"),
        (5000, "medium"),
        (16384, "high"),
        (31999, "high"),
    ] {
        let request = foreign(Reasoning::with_budget(budget));
        assert_eq!(
            openai::chat_request_body(&request, false)["reasoning_effort"],
            effort,
            "budget {budget}"
        );
    }
    // "Off" and "on, model's default" send nothing: models without
    // reasoning reject the field.
    for reasoning in [Reasoning::off(), Reasoning::default()] {
        let body = openai::chat_request_body(&foreign(reasoning), false);
        assert!(body.get("reasoning_effort").is_none(), "{body}");
    }
    // Upstreams that reject the field (Mistral) do not get it.
    let options = ChatBodyOptions {
        reasoning_effort: false,
        ..Default::default()
    };
    let request = foreign(Reasoning::with_effort(ReasoningEffort::High));
    let body = openai::chat_request_body_with(&request, false, &options);
    assert!(body.get("reasoning_effort").is_none(), "{body}");
}

#[test]
fn tool_results_in_user_turns_become_tool_messages_first() {
    let request = ChatRequest {
        model: "m".into(),
        messages: vec![
            Message {
                role: Role::Assistant,
                content: vec![ContentPart::ToolCall {
                    id: "t1".into(),
                    name: "f".into(),
                    arguments: "{}".into(),
                }],
            },
            Message {
                role: Role::User,
                content: vec![
                    ContentPart::text("and also"),
                    ContentPart::ToolResult {
                        tool_call_id: "t1".into(),
                        name: None,
                        content: "ok".into(),
                        is_error: true,
                    },
                ],
            },
        ],
        ..ChatRequest::default()
    };
    let body = openai::chat_request_body(&request, false);
    assert_eq!(
        body["messages"],
        json!([
            {"role": "assistant", "content": null, "tool_calls": [{"id": "t1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "t1", "content": "ok"},
            {"role": "user", "content": "and also"},
        ])
    );
}

#[test]
fn client_request_survives_round_trip_to_upstream_body() {
    let client = json!({
        "model": "ep",
        "messages": [
            {"role": "system", "content": "sys"},
            {"role": "user", "content": "q"},
        ],
        "temperature": 0.3,
        "max_tokens": 10,
        "metadata": {"k": "v"},
    });
    let mut parsed = openai::parse_chat_request(client.to_string().as_bytes()).unwrap();
    parsed.request.model = "gpt-4.1".into();
    let body = openai::chat_request_body(&parsed.request, false);
    assert_eq!(
        body,
        json!({
            "model": "gpt-4.1",
            "messages": [{"role": "system", "content": "sys"}, {"role": "user", "content": "q"}],
            "temperature": 0.3,
            "max_completion_tokens": 10,
            "metadata": {"k": "v"},
        })
    );
}

#[test]
fn parses_chat_completion() {
    let body = json!({
        "id": "chatcmpl-abc",
        "object": "chat.completion",
        "created": 1,
        "model": "gpt-4o-2024-08-06",
        "choices": [{
            "index": 0,
            "message": {
                "role": "assistant",
                "content": "Let me check.",
                "tool_calls": [
                    {"id": "call_1", "type": "function", "function": {"name": "a", "arguments": "{\"x\":1}"}},
                    {"id": "call_2", "type": "function", "function": {"name": "b", "arguments": "{}"}},
                ],
            },
            "finish_reason": "tool_calls",
        }],
        "usage": {"prompt_tokens": 20, "completion_tokens": 7, "total_tokens": 27, "prompt_tokens_details": {"cached_tokens": 0}},
    });
    let response = openai::parse_chat_completion(body.to_string().as_bytes()).unwrap();
    assert_eq!(response.id, "chatcmpl-abc");
    assert_eq!(response.model, "gpt-4o-2024-08-06");
    assert_eq!(response.finish_reason, FinishReason::ToolCalls);
    assert_eq!(
        response.usage,
        Usage {
            input_tokens: 20,
            output_tokens: 7,
            cached_input_tokens: Some(0)
        }
    );
    assert_eq!(
        response.content,
        vec![
            ContentPart::text("Let me check."),
            ContentPart::ToolCall {
                id: "call_1".into(),
                name: "a".into(),
                arguments: "{\"x\":1}".into()
            },
            ContentPart::ToolCall {
                id: "call_2".into(),
                name: "b".into(),
                arguments: "{}".into()
            },
        ]
    );
    assert_eq!(
        response
            .raw
            .as_ref()
            .and_then(portico_model::RawJson::parse),
        Some(body)
    );

    let refusal = json!({"choices": [{"message": {"content": null, "refusal": "I can't."}, "finish_reason": "stop"}]});
    let response = openai::parse_chat_completion(refusal.to_string().as_bytes()).unwrap();
    assert_eq!(response.text(), "I can't.");

    assert_eq!(
        openai::parse_chat_completion(b"{}").unwrap_err().kind,
        ErrorKind::Upstream
    );
    assert_eq!(
        openai::parse_chat_completion(b"<html>").unwrap_err().kind,
        ErrorKind::Upstream
    );
    let in_body = json!({"error": {"message": "quota", "type": "rate_limit_error"}});
    let err = openai::parse_chat_completion(in_body.to_string().as_bytes()).unwrap_err();
    assert_eq!(
        (err.kind, err.message.as_str()),
        (ErrorKind::RateLimited, "quota")
    );
}

fn decode_all(decoder: &mut ChunkDecoder, payloads: &[Value]) -> Vec<StreamEvent> {
    payloads
        .iter()
        .flat_map(|p| decoder.decode(&p.to_string()).unwrap())
        .collect()
}

#[test]
fn decodes_parallel_tool_call_stream_with_usage() {
    let chunk = |delta: Value, finish: Value| {
        json!({"id": "chatcmpl-s", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o",
               "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
    };
    let payloads = [
        chunk(json!({"role": "assistant", "content": null}), Value::Null),
        chunk(
            json!({"tool_calls": [{"index": 0, "id": "call_a", "type": "function", "function": {"name": "get_weather", "arguments": ""}}]}),
            Value::Null,
        ),
        chunk(
            json!({"tool_calls": [{"index": 0, "function": {"arguments": "{\"city\":"}}]}),
            Value::Null,
        ),
        chunk(
            json!({"tool_calls": [{"index": 1, "id": "call_b", "type": "function", "function": {"name": "get_time", "arguments": ""}}]}),
            Value::Null,
        ),
        chunk(
            json!({"tool_calls": [{"index": 0, "function": {"arguments": "\"Paris\"}"}}]}),
            Value::Null,
        ),
        chunk(
            json!({"tool_calls": [{"index": 1, "function": {"arguments": "{}"}}]}),
            Value::Null,
        ),
        chunk(json!({}), json!("tool_calls")),
        json!({"id": "chatcmpl-s", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o", "choices": [],
               "usage": {"prompt_tokens": 30, "completion_tokens": 12, "total_tokens": 42}}),
    ];
    let mut decoder = ChunkDecoder::new();
    let mut events = decode_all(&mut decoder, &payloads);
    events.extend(decoder.decode("[DONE]").unwrap());
    assert!(decoder.is_done() && decoder.is_finished());
    assert_eq!(
        events,
        vec![
            StreamEvent::Start {
                id: "chatcmpl-s".into(),
                model: "gpt-4o".into()
            },
            StreamEvent::ToolCallStart {
                index: 0,
                id: "call_a".into(),
                name: "get_weather".into()
            },
            StreamEvent::ToolCallDelta {
                index: 0,
                arguments: "{\"city\":".into()
            },
            StreamEvent::ToolCallStart {
                index: 1,
                id: "call_b".into(),
                name: "get_time".into()
            },
            StreamEvent::ToolCallDelta {
                index: 0,
                arguments: "\"Paris\"}".into()
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
                    input_tokens: 30,
                    output_tokens: 12,
                    cached_input_tokens: None
                }
            },
        ]
    );
}

#[test]
fn decodes_text_stream_and_odd_tool_call_shapes() {
    let mut decoder = ChunkDecoder::new();
    let events = decode_all(
        &mut decoder,
        &[
            json!({"id": "x", "model": "m", "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]}),
            json!({"choices": [{"index": 0, "delta": {"reasoning_content": "think"}}]}),
            json!({"choices": [{"index": 0, "delta": {"content": "Hel"}}]}),
            json!({"choices": [{"index": 0, "delta": {"content": "lo"}}]}),
            // Upstreams without `index`: each delta is a whole call.
            json!({"choices": [{"delta": {"tool_calls": [{"id": "c1", "function": {"name": "f", "arguments": "{}"}}]}}]}),
            json!({"choices": [{"delta": {"tool_calls": [{"id": "c2", "function": {"name": "g", "arguments": "{\"a\":2}"}}]}}]}),
            json!({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}], "usage": {"prompt_tokens": 1, "completion_tokens": 2}}),
        ],
    );
    assert_eq!(
        events,
        vec![
            StreamEvent::Start {
                id: "x".into(),
                model: "m".into()
            },
            StreamEvent::ThinkingDelta {
                text: "think".into()
            },
            StreamEvent::TextDelta { text: "Hel".into() },
            StreamEvent::TextDelta { text: "lo".into() },
            StreamEvent::ToolCallStart {
                index: 0,
                id: "c1".into(),
                name: "f".into()
            },
            StreamEvent::ToolCallDelta {
                index: 0,
                arguments: "{}".into()
            },
            StreamEvent::ToolCallStart {
                index: 1,
                id: "c2".into(),
                name: "g".into()
            },
            StreamEvent::ToolCallDelta {
                index: 1,
                arguments: "{\"a\":2}".into()
            },
            StreamEvent::Finish {
                reason: FinishReason::Stop
            },
            StreamEvent::Usage {
                usage: Usage {
                    input_tokens: 1,
                    output_tokens: 2,
                    cached_input_tokens: None
                }
            },
        ]
    );
    assert!(!decoder.is_done());
    assert_eq!(decoder.decode("").unwrap(), vec![]);
    assert_eq!(decoder.decode(" [DONE] ").unwrap(), vec![]);
    assert_eq!(
        decoder.decode("{oops").unwrap_err().kind,
        ErrorKind::Upstream
    );
    let err = decoder
        .decode(r#"{"error": {"message": "overloaded", "type": "server_error"}}"#)
        .unwrap_err();
    assert_eq!(err.message, "overloaded");
}

#[test]
fn stream_encoder_and_decoder_agree() {
    let events = vec![
        StreamEvent::TextDelta { text: "a".into() },
        StreamEvent::ToolCallStart {
            index: 0,
            id: "c".into(),
            name: "f".into(),
        },
        StreamEvent::ToolCallDelta {
            index: 0,
            arguments: "{}".into(),
        },
        StreamEvent::Finish {
            reason: FinishReason::ToolCalls,
        },
        StreamEvent::Usage {
            usage: Usage {
                input_tokens: 1,
                output_tokens: 1,
                cached_input_tokens: None,
            },
        },
    ];
    let mut encoder = ChunkEncoder::new("id".into(), "ep".into(), 0, true);
    let mut chunks: Vec<Value> = events
        .iter()
        .flat_map(|e| encoded(&mut encoder, e))
        .collect();
    chunks.extend(encoder.finish());
    let mut decoder = ChunkDecoder::new();
    let decoded = decode_all(&mut decoder, &chunks);
    let mut expected = vec![StreamEvent::Start {
        id: "id".into(),
        model: "ep".into(),
    }];
    expected.extend(events);
    assert_eq!(decoded, expected);
}

#[test]
fn builds_and_parses_upstream_embeddings() {
    let request = EmbeddingsRequest {
        model: "text-embedding-3-small".into(),
        inputs: vec!["a".into(), "b".into()],
        dimensions: Some(512),
        input_type: Some("search_query".into()),
        extra: serde_json::from_value(json!({"user": "u", "encoding_format": "base64"})).unwrap(),
        extra_dialect: Some("openai".into()),
    };
    assert_eq!(
        openai::embeddings_request_body(&request),
        json!({"model": "text-embedding-3-small", "input": ["a", "b"], "encoding_format": "float", "dimensions": 512, "user": "u"})
    );
    let body = json!({
        "object": "list",
        "data": [
            {"object": "embedding", "index": 1, "embedding": [0.5, 0.25]},
            {"object": "embedding", "index": 0, "embedding": [-0.5, 1.0]},
        ],
        "model": "text-embedding-3-small",
        "usage": {"prompt_tokens": 2, "total_tokens": 2},
    });
    let response = openai::parse_embeddings(body.to_string().as_bytes()).unwrap();
    assert_eq!(response.embeddings, vec![vec![-0.5, 1.0], vec![0.5, 0.25]]);
    assert_eq!(response.usage.input_tokens, 2);
    assert_eq!(response.model, "text-embedding-3-small");
    assert!(openai::parse_embeddings(br#"{"data": [{"embedding": ["x"]}]}"#).is_err());
    assert!(openai::parse_embeddings(b"[]").is_err());
}

#[test]
fn parses_upstream_errors_with_retry_after() {
    let headers = vec![("retry-after".to_string(), "20".to_string())];
    let body = br#"{"error": {"message": "Rate limit reached for gpt-4o", "type": "requests", "param": null, "code": "rate_limit_exceeded"}}"#;
    let err = openai::parse_error(429, &headers, body);
    assert_eq!(err.kind, ErrorKind::RateLimited);
    assert_eq!(err.status, 429);
    assert_eq!(err.message, "Rate limit reached for gpt-4o");
    assert_eq!(err.retry_after_ms, Some(20_000));

    let headers = vec![("retry-after-ms".to_string(), "1500".to_string())];
    assert_eq!(
        openai::parse_error(429, &headers, b"{}").retry_after_ms,
        Some(1500)
    );

    // An HTTP date in the future yields a positive delay.
    let in_a_minute = std::time::SystemTime::now() + std::time::Duration::from_secs(60);
    let headers = vec![("Retry-After".to_string(), httpdate_fmt(in_a_minute))];
    let delay = openai::parse_error(503, &headers, b"")
        .retry_after_ms
        .unwrap();
    assert!((55_000..=61_000).contains(&delay), "{delay}");

    let err = openai::parse_error(
        401,
        &[],
        br#"{"error": {"message": "Incorrect API key provided", "type": "invalid_request_error"}}"#,
    );
    assert_eq!((err.kind, err.status), (ErrorKind::Authentication, 401));
    assert_eq!(
        openai::parse_error(404, &[], b"{}").kind,
        ErrorKind::NotFound
    );
    let err = openai::parse_error(500, &[], &[b'x'; 5000]);
    assert_eq!(err.kind, ErrorKind::Upstream);
    assert!(err.message.starts_with("upstream returned HTTP 500: xxx") && err.message.len() < 400);
    assert_eq!(
        openai::parse_error(529, &[], b"").kind,
        ErrorKind::Overloaded
    );
}

fn httpdate_fmt(time: std::time::SystemTime) -> String {
    // Format by hand (IMF-fixdate) so the test does not trust the parser it
    // checks to also be the formatter.
    let secs = time
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 1;
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (h, m, s) = (rem / 3600, rem % 3600 / 60, rem % 60);
    let weekday = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"][(days % 7) as usize];
    // Civil-from-days (Howard Hinnant).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let month_name = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ][(month - 1) as usize];
    format!("{weekday}, {day:02} {month_name} {year} {h:02}:{m:02}:{s:02} GMT")
}

#[test]
fn common_helpers_are_reachable() {
    assert_eq!(common::truncate("abc", 1), "a…");
}

/// The chunks of one event as JSON values; also checks each is written
/// with its keys in the order a `Value` object has them (alphabetical), so
/// typed chunks are byte for byte what a `json!` chunk was.
fn encoded(encoder: &mut ChunkEncoder, event: &StreamEvent) -> Vec<Value> {
    encoder
        .encode(event)
        .iter()
        .map(|chunk| {
            let text = portico_model::json::to_string(chunk).unwrap();
            let value: Value = serde_json::from_str(&text).unwrap();
            assert_eq!(text, value.to_string(), "keys out of order");
            value
        })
        .collect()
}
