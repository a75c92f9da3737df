//! The Gemini wire format, both directions, on the JSON the google-genai
//! SDK sends and the Gemini API answers.

use portico_model::formats::gemini::{
    self, ChunkDecoder, ChunkEncoder, ClientEmbedRequest, parse_generate_content_request,
};
use portico_model::{
    ChatRequest, ChatResponse, ContentPart, EmbeddingsRequest, EmbeddingsResponse, ErrorKind,
    FinishReason, ImageSource, Message, ProviderError, Role, SamplingParams, StreamEvent, Tool,
    ToolChoice, Usage,
};
use serde_json::{Value, json};

fn parse(body: Value) -> ChatRequest {
    parse_generate_content_request(body.to_string().as_bytes()).expect("valid request")
}

fn parse_err(body: Value) -> ProviderError {
    parse_generate_content_request(body.to_string().as_bytes()).expect_err("invalid request")
}

fn text(t: &str) -> ContentPart {
    ContentPart::text(t)
}

// ---------------------------------------------------------------------------
// Client requests
// ---------------------------------------------------------------------------

#[test]
fn sdk_hello_request() {
    // client.models.generate_content(model=..., contents={"text": "Hello!"})
    let request = parse(json!({"contents": [{"parts": [{"text": "Hello!"}], "role": "user"}]}));
    assert_eq!(request.messages, vec![Message::user("Hello!")]);
    assert_eq!(request.system, None);
    assert!(request.tools.is_empty());
    assert_eq!(request.params, SamplingParams::default());
    assert!(request.extra.is_empty());
    assert_eq!(request.extra_dialect, None);
    assert_eq!(request.model, "");
}

fn sdk_function_calling_request() -> Value {
    // What google-genai sends for a second turn of manual function calling
    // with config=GenerateContentConfig(system_instruction=..., tools=[...],
    // tool_config=..., temperature=..., thinking_config=..., ...).
    json!({
        "contents": [
            {"parts": [{"text": "What's the weather in Paris and London?"}], "role": "user"},
            {"parts": [
                {"functionCall": {"args": {"location": "Paris"}, "name": "get_weather"},
                 "thoughtSignature": "CiQBVKhc7sig=="},
                {"functionCall": {"args": {"location": "London"}, "name": "get_weather"}}
            ], "role": "model"},
            {"parts": [
                {"functionResponse": {"name": "get_weather", "response": {"result": {"temp_c": 21}}}},
                {"functionResponse": {"name": "get_weather", "response": {"error": "station offline"}}}
            ], "role": "user"}
        ],
        "systemInstruction": {"parts": [{"text": "You are terse."}, {"text": "Use metric units."}], "role": "user"},
        "tools": [
            {"functionDeclarations": [{
                "description": "Current weather for a city.",
                "name": "get_weather",
                "parameters": {
                    "type": "OBJECT",
                    "properties": {
                        "location": {"type": "STRING", "description": "City name"},
                        "unit": {"type": "STRING", "format": "enum", "enum": ["C", "F"], "nullable": true}
                    },
                    "required": ["location"],
                    "propertyOrdering": ["location", "unit"]
                }
            }]},
            {"googleSearch": {}}
        ],
        "toolConfig": {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["get_weather"]}},
        "generationConfig": {
            "temperature": 0.2,
            "topP": 0.9,
            "topK": 40.0,
            "maxOutputTokens": 256,
            "stopSequences": ["END"],
            "seed": 7,
            "presencePenalty": 0.5,
            "frequencyPenalty": 0.25,
            "responseMimeType": "application/json",
            "thinkingConfig": {"includeThoughts": true, "thinkingBudget": 1024}
        },
        "safetySettings": [{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_NONE"}]
    })
}

#[test]
fn sdk_function_calling_request_parses() {
    let request = parse(sdk_function_calling_request());
    assert_eq!(
        request.system.as_deref(),
        Some("You are terse.\nUse metric units.")
    );
    assert_eq!(
        request.messages,
        vec![
            Message::user("What's the weather in Paris and London?"),
            Message {
                role: Role::Assistant,
                content: vec![
                    ContentPart::Thinking {
                        text: String::new(),
                        signature: Some("CiQBVKhc7sig==".into())
                    },
                    ContentPart::ToolCall {
                        id: "call_0_get_weather".into(),
                        name: "get_weather".into(),
                        arguments: r#"{"location":"Paris"}"#.into(),
                    },
                    ContentPart::ToolCall {
                        id: "call_1_get_weather".into(),
                        name: "get_weather".into(),
                        arguments: r#"{"location":"London"}"#.into(),
                    },
                ],
            },
            Message {
                role: Role::Tool,
                content: vec![
                    // Matched by name, in order.
                    ContentPart::ToolResult {
                        tool_call_id: "call_0_get_weather".into(),
                        name: Some("get_weather".into()),
                        content: r#"{"temp_c":21}"#.into(),
                        is_error: false,
                    },
                    ContentPart::ToolResult {
                        tool_call_id: "call_1_get_weather".into(),
                        name: Some("get_weather".into()),
                        content: "station offline".into(),
                        is_error: true,
                    },
                ],
            },
        ]
    );
    assert_eq!(
        request.tools,
        vec![Tool {
            name: "get_weather".into(),
            description: Some("Current weather for a city.".into()),
            parameters: json!({
                "type": "object",
                "properties": {
                    "location": {"type": "string", "description": "City name"},
                    "unit": {"type": ["string", "null"], "enum": ["C", "F"]}
                },
                "required": ["location"]
            }),
        }]
    );
    assert_eq!(
        request.tool_choice,
        Some(ToolChoice::Tool {
            name: "get_weather".into()
        })
    );
    assert_eq!(
        request.params,
        SamplingParams {
            max_tokens: Some(256),
            temperature: Some(0.2),
            top_p: Some(0.9),
            top_k: Some(40),
            stop: vec!["END".into()],
            seed: Some(7),
            presence_penalty: Some(0.5),
            frequency_penalty: Some(0.25),
        }
    );
    assert_eq!(
        request.response_format,
        Some(json!({"type": "json_object"}))
    );
    assert_eq!(request.extra_dialect.as_deref(), Some("gemini"));
    assert_eq!(
        Value::Object(request.extra.clone()),
        json!({
            "safetySettings": [{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_NONE"}],
            "tools": [{"googleSearch": {}}],
            "generationConfig": {"thinkingConfig": {"includeThoughts": true, "thinkingBudget": 1024}}
        })
    );
}

#[test]
fn function_responses_match_by_id_when_given() {
    let request = parse(json!({"contents": [
        {"role": "user", "parts": [{"text": "go"}]},
        {"role": "model", "parts": [
            {"functionCall": {"id": "a1", "name": "f", "args": {}}},
            {"functionCall": {"id": "b2", "name": "f"}}
        ]},
        {"role": "user", "parts": [
            {"functionResponse": {"id": "b2", "name": "f", "response": {"output": "second"}}},
            {"functionResponse": {"name": "f", "response": {"output": "first"}}}
        ]}
    ]}));
    let results: Vec<(String, String)> = request.messages[2]
        .content
        .iter()
        .map(|p| match p {
            ContentPart::ToolResult {
                tool_call_id,
                content,
                ..
            } => (tool_call_id.clone(), content.clone()),
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    // The id-less response takes the call b2 did not answer.
    assert_eq!(
        results,
        vec![
            ("b2".into(), "second".into()),
            ("a1".into(), "first".into())
        ]
    );
    assert!(matches!(
        &request.messages[1].content[1],
        ContentPart::ToolCall { arguments, .. } if arguments == "{}"
    ));
}

#[test]
fn images_thoughts_and_mixed_user_turns() {
    let request = parse(json!({"contents": [
        {"role": "user", "parts": [
            {"text": "Compare these"},
            {"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}},
            {"fileData": {"fileUri": "https://example.com/cat.jpg", "mimeType": "image/jpeg"}}
        ]},
        {"role": "model", "parts": [
            {"text": "Looking at both...", "thought": true},
            {"text": "The first is a chart."}
        ]},
        {"role": "user", "parts": [{"text": "And the second?"}]}
    ]}));
    assert_eq!(
        request.messages[0].content,
        vec![
            text("Compare these"),
            ContentPart::Image {
                source: ImageSource::Base64 {
                    media_type: "image/png".into(),
                    data: "iVBORw0KGgo=".into()
                }
            },
            ContentPart::Image {
                source: ImageSource::Url {
                    url: "https://example.com/cat.jpg".into()
                }
            },
        ]
    );
    assert_eq!(
        request.messages[1].content,
        vec![
            ContentPart::Thinking {
                text: "Looking at both...".into(),
                signature: None
            },
            text("The first is a chart."),
        ]
    );
    assert_eq!(request.messages[2], Message::user("And the second?"));
}

#[test]
fn function_response_and_text_in_one_user_turn_split_roles() {
    let request = parse(json!({"contents": [
        {"role": "model", "parts": [{"functionCall": {"name": "now", "args": {}}}]},
        {"role": "user", "parts": [
            {"functionResponse": {"name": "now", "response": {"time": "12:00"}}},
            {"text": "Also, be brief."}
        ]},
        {"role": "user", "parts": [{"text": "Thanks"}]}
    ]}));
    let roles: Vec<Role> = request.messages.iter().map(|m| m.role).collect();
    assert_eq!(roles, vec![Role::Assistant, Role::Tool, Role::User]);
    // Consecutive user turns merge.
    assert_eq!(
        request.messages[2].content,
        vec![text("Also, be brief."), text("Thanks")]
    );
    assert!(matches!(
        &request.messages[1].content[0],
        ContentPart::ToolResult { content, tool_call_id, .. }
            if content == r#"{"time":"12:00"}"# && tool_call_id == "call_0_now"
    ));
}

#[test]
fn snake_case_fields_and_json_schema_declarations() {
    let request = parse(json!({
        "contents": [{"role": "user", "parts": [{"text": "hi"}]}],
        "system_instruction": {"parts": [{"text": "sys"}]},
        "tools": [{"function_declarations": [{
            "name": "lookup",
            "parameters_json_schema": {"type": "object", "properties": {"q": {"type": "string"}}, "additionalProperties": false}
        }]}],
        "tool_config": {"function_calling_config": {"mode": "NONE"}},
        "generation_config": {
            "max_output_tokens": "64",
            "response_mime_type": "application/json",
            "response_schema": {"type": "OBJECT", "properties": {"answer": {"type": "STRING"}}}
        }
    }));
    assert_eq!(request.system.as_deref(), Some("sys"));
    assert_eq!(request.params.max_tokens, Some(64));
    assert_eq!(request.tool_choice, Some(ToolChoice::None));
    // parametersJsonSchema is JSON Schema already: kept as sent.
    assert_eq!(
        request.tools[0].parameters,
        json!({"type": "object", "properties": {"q": {"type": "string"}}, "additionalProperties": false})
    );
    assert_eq!(
        request.response_format,
        Some(json!({"type": "json_schema", "json_schema": {
            "name": "response",
            "schema": {"type": "object", "properties": {"answer": {"type": "string"}}}
        }}))
    );
    assert!(request.extra.is_empty());
}

#[test]
fn tool_config_modes() {
    let with_mode = |fcc: Value| {
        parse(json!({
            "contents": [{"parts": [{"text": "x"}]}],
            "toolConfig": {"functionCallingConfig": fcc}
        }))
        .tool_choice
    };
    assert_eq!(with_mode(json!({"mode": "AUTO"})), Some(ToolChoice::Auto));
    assert_eq!(
        with_mode(json!({"mode": "ANY"})),
        Some(ToolChoice::Required)
    );
    assert_eq!(
        with_mode(json!({"mode": "ANY", "allowedFunctionNames": ["a", "b"]})),
        Some(ToolChoice::Required)
    );
    assert_eq!(with_mode(json!({"mode": "NONE"})), Some(ToolChoice::None));
    assert_eq!(with_mode(json!({})), None);
    let err = parse_err(json!({
        "contents": [{"parts": [{"text": "x"}]}],
        "toolConfig": {"functionCallingConfig": {"mode": "SOMETIMES"}}
    }));
    assert!(
        err.message
            .contains("toolConfig.functionCallingConfig.mode"),
        "{}",
        err.message
    );
}

#[test]
fn invalid_requests_name_the_field() {
    let cases = [
        (json!({}), "contents"),
        (json!({"contents": []}), "contents"),
        (json!({"contents": [{"role": "user"}]}), "contents[0].parts"),
        (
            json!({"contents": [{"role": "user", "parts": [{}]}]}),
            "contents[0].parts[0]",
        ),
        (
            json!({"contents": [{"role": "bot", "parts": [{"text": "x"}]}]}),
            "contents[0].role",
        ),
        (
            json!({"contents": [{"parts": [{"inlineData": {"data": "AAAA"}}]}]}),
            "contents[0].parts[0].inlineData.mimeType",
        ),
        (
            json!({"contents": [{"parts": [{"functionCall": {"name": "f"}}]}]}),
            "contents[0].parts[0].functionCall",
        ),
        (
            json!({"contents": [{"role": "model", "parts": [{"functionResponse": {"name": "f", "response": {}}}]}]}),
            "contents[0].parts[0].functionResponse",
        ),
        (
            json!({"contents": [{"parts": [{"text": "x"}]}], "generationConfig": {"temperature": "hot"}}),
            "generationConfig.temperature",
        ),
        (
            json!({"contents": [{"parts": [{"text": "x"}]}], "generationConfig": {"maxOutputTokens": -1}}),
            "generationConfig.maxOutputTokens",
        ),
        (
            json!({"contents": [{"parts": [{"text": "x"}]}], "tools": [{"functionDeclarations": [{"description": "d"}]}]}),
            "tools[0].functionDeclarations[0].name",
        ),
    ];
    for (body, field) in cases {
        let err = parse_err(body.clone());
        assert_eq!(err.kind, ErrorKind::InvalidRequest, "{body}");
        assert_eq!(err.status, 400);
        assert!(
            err.message.contains(field),
            "{body}: {:?} should name {field}",
            err.message
        );
    }
    let err = parse_generate_content_request(b"{not json").unwrap_err();
    assert_eq!(err.status, 400);
    assert!(err.message.starts_with("Invalid JSON payload received"));
}

#[test]
fn count_tokens_request_forms() {
    let plain =
        gemini::parse_count_tokens_request(br#"{"contents":[{"parts":[{"text":"count me"}]}]}"#)
            .unwrap();
    assert_eq!(plain.messages, vec![Message::user("count me")]);
    let wrapped = gemini::parse_count_tokens_request(
        br#"{"generateContentRequest":{"model":"models/x","contents":[{"parts":[{"text":"hi"}]}],"systemInstruction":{"parts":[{"text":"s"}]}}}"#,
    )
    .unwrap();
    assert_eq!(wrapped.system.as_deref(), Some("s"));
    assert_eq!(gemini::count_tokens_body(12), json!({"totalTokens": 12}));
}

// ---------------------------------------------------------------------------
// Client responses
// ---------------------------------------------------------------------------

#[test]
fn generate_content_body_shape() {
    let response = ChatResponse {
        id: "resp-1".into(),
        model: "upstream-model".into(),
        content: vec![
            ContentPart::Thinking {
                text: "Let me check.".into(),
                signature: None,
            },
            text("Checking the weather."),
            ContentPart::Thinking {
                text: String::new(),
                signature: Some("sig-1".into()),
            },
            ContentPart::ToolCall {
                id: "call_abc".into(),
                name: "get_weather".into(),
                arguments: r#"{"location":"Paris"}"#.into(),
            },
        ],
        finish_reason: FinishReason::ToolCalls,
        usage: Usage {
            input_tokens: 10,
            output_tokens: 5,
            cached_input_tokens: Some(4),
        },
        raw: None,
    };
    assert_eq!(
        gemini::generate_content_body(&response, "my-endpoint"),
        json!({
            "candidates": [{
                "content": {"role": "model", "parts": [
                    {"text": "Let me check.", "thought": true},
                    {"text": "Checking the weather."},
                    {"functionCall": {"id": "call_abc", "name": "get_weather", "args": {"location": "Paris"}},
                     "thoughtSignature": "sig-1"}
                ]},
                "finishReason": "STOP",
                "index": 0
            }],
            "usageMetadata": {
                "promptTokenCount": 10,
                "candidatesTokenCount": 5,
                "totalTokenCount": 15,
                "cachedContentTokenCount": 4
            },
            "modelVersion": "my-endpoint",
            "responseId": "resp-1"
        })
    );
}

#[test]
fn finish_reasons_in_bodies() {
    let body = |reason| {
        let response = ChatResponse {
            finish_reason: reason,
            ..Default::default()
        };
        gemini::generate_content_body(&response, "m")["candidates"][0]["finishReason"].clone()
    };
    assert_eq!(body(FinishReason::Stop), "STOP");
    assert_eq!(body(FinishReason::Length), "MAX_TOKENS");
    assert_eq!(body(FinishReason::ContentFilter), "SAFETY");
    assert_eq!(body(FinishReason::Error), "OTHER");
}

#[test]
fn chunk_encoder_text_stream() {
    let mut encoder = ChunkEncoder::new("r1".into(), "ep".into());
    let mut chunks = Vec::new();
    for event in [
        StreamEvent::Start {
            id: "up".into(),
            model: "up-model".into(),
        },
        StreamEvent::ThinkingDelta { text: "hmm".into() },
        StreamEvent::TextDelta { text: "Hel".into() },
        StreamEvent::TextDelta {
            text: String::new(),
        },
        StreamEvent::TextDelta { text: "lo".into() },
        StreamEvent::Finish {
            reason: FinishReason::Stop,
        },
        StreamEvent::Usage {
            usage: Usage {
                input_tokens: 3,
                output_tokens: 2,
                cached_input_tokens: None,
            },
        },
    ] {
        chunks.extend(encoder.encode(&event));
    }
    chunks.extend(encoder.finish());
    assert!(encoder.finish().is_empty());
    assert_eq!(
        chunks,
        vec![
            json!({"candidates": [{"content": {"role": "model", "parts": [{"text": "hmm", "thought": true}]}, "index": 0}],
                   "modelVersion": "ep", "responseId": "r1"}),
            json!({"candidates": [{"content": {"role": "model", "parts": [{"text": "Hel"}]}, "index": 0}],
                   "modelVersion": "ep", "responseId": "r1"}),
            json!({"candidates": [{"content": {"role": "model", "parts": [{"text": "lo"}]}, "index": 0}],
                   "modelVersion": "ep", "responseId": "r1"}),
            json!({"candidates": [{"content": {"role": "model", "parts": [{"text": ""}]}, "finishReason": "STOP", "index": 0}],
                   "usageMetadata": {"promptTokenCount": 3, "candidatesTokenCount": 2, "totalTokenCount": 5},
                   "modelVersion": "ep", "responseId": "r1"}),
        ]
    );
}

#[test]
fn chunk_encoder_buffers_tool_calls() {
    let mut encoder = ChunkEncoder::new("r2".into(), "ep".into());
    let mut emitted = Vec::new();
    let events = [
        StreamEvent::Start {
            id: String::new(),
            model: String::new(),
        },
        StreamEvent::TextDelta {
            text: "Checking.".into(),
        },
        StreamEvent::ToolCallStart {
            index: 0,
            id: "call_a".into(),
            name: "get_weather".into(),
        },
        StreamEvent::ToolCallDelta {
            index: 0,
            arguments: r#"{"loc"#.into(),
        },
        StreamEvent::ToolCallDelta {
            index: 0,
            arguments: r#"ation":"Paris"}"#.into(),
        },
        StreamEvent::ToolCallStart {
            index: 1,
            id: "call_b".into(),
            name: "get_time".into(),
        },
        StreamEvent::ToolCallDelta {
            index: 1,
            arguments: r#"{"tz":"CET"}"#.into(),
        },
        StreamEvent::Finish {
            reason: FinishReason::ToolCalls,
        },
    ];
    for event in &events {
        emitted.push(encoder.encode(event).len());
    }
    // Nothing for start and deltas; the first call comes out when the
    // second one starts.
    assert_eq!(emitted, vec![0, 1, 0, 0, 0, 1, 0, 0]);
    let mut encoder = ChunkEncoder::new("r2".into(), "ep".into());
    let mut chunks: Vec<Value> = events.iter().flat_map(|e| encoder.encode(e)).collect();
    chunks.extend(encoder.finish());
    assert_eq!(chunks.len(), 3);
    assert_eq!(
        chunks[1]["candidates"][0]["content"]["parts"],
        json!([{"functionCall": {"id": "call_a", "name": "get_weather", "args": {"location": "Paris"}}}])
    );
    assert_eq!(
        chunks[2]["candidates"][0],
        json!({
            "content": {"role": "model", "parts": [{"functionCall": {"id": "call_b", "name": "get_time", "args": {"tz": "CET"}}}]},
            "finishReason": "STOP",
            "index": 0
        })
    );
    // No usage event: no usageMetadata invented.
    assert!(chunks[2].get("usageMetadata").is_none());
}

#[test]
fn error_body_shapes() {
    let mut error = ProviderError::new(ErrorKind::RateLimited, "slow down");
    error.retry_after_ms = Some(30_000);
    assert_eq!(
        gemini::error_body(&error),
        json!({"error": {
            "code": 429,
            "message": "slow down",
            "status": "RESOURCE_EXHAUSTED",
            "details": [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "30s"}]
        }})
    );
    let statuses = [
        (ErrorKind::InvalidRequest, 400, "INVALID_ARGUMENT"),
        (ErrorKind::Authentication, 401, "UNAUTHENTICATED"),
        (ErrorKind::Permission, 403, "PERMISSION_DENIED"),
        (ErrorKind::NotFound, 404, "NOT_FOUND"),
        (ErrorKind::Overloaded, 503, "UNAVAILABLE"),
        (ErrorKind::Internal, 500, "INTERNAL"),
    ];
    for (kind, code, status) in statuses {
        let body = gemini::error_body(&ProviderError::new(kind, "x"));
        assert_eq!(body["error"]["code"], code);
        assert_eq!(body["error"]["status"], status);
        assert!(body["error"].get("details").is_none());
    }
    let mut partial = ProviderError::new(ErrorKind::Overloaded, "busy");
    partial.retry_after_ms = Some(1500);
    assert_eq!(
        gemini::error_body(&partial)["error"]["details"][0]["retryDelay"],
        "1.500s"
    );
}

// ---------------------------------------------------------------------------
// Client embeddings
// ---------------------------------------------------------------------------

#[test]
fn embed_content_requests() {
    let single = gemini::parse_embed_content_request(
        br#"{"model":"models/text-embedding-004","content":{"parts":[{"text":"Hello"},{"text":"world"}]},"taskType":"RETRIEVAL_QUERY","outputDimensionality":256}"#,
    )
    .unwrap();
    assert_eq!(
        single,
        EmbeddingsRequest {
            inputs: vec!["Hello\nworld".into()],
            dimensions: Some(256),
            input_type: Some("search_query".into()),
            ..Default::default()
        }
    );

    // google-genai's embed_content(contents=[...]) goes to batchEmbedContents.
    let batch = gemini::parse_batch_embed_contents_request(
        br#"{"requests":[
            {"model":"models/gemini-embedding-001","content":{"parts":[{"text":"a"}],"role":"user"},"taskType":"SEMANTIC_SIMILARITY"},
            {"model":"models/gemini-embedding-001","content":{"parts":[{"text":"b"}],"role":"user"},"taskType":"SEMANTIC_SIMILARITY"}
        ]}"#,
    )
    .unwrap();
    assert_eq!(batch.inputs, vec!["a", "b"]);
    assert_eq!(batch.input_type, None);
    assert_eq!(
        batch.extra.get("taskType"),
        Some(&json!("SEMANTIC_SIMILARITY"))
    );
    assert_eq!(batch.extra_dialect.as_deref(), Some("gemini"));

    let mixed = gemini::parse_batch_embed_contents_request(
        br#"{"requests":[{"content":{"parts":[{"text":"a"}]},"taskType":"CLUSTERING"},{"content":{"parts":[{"text":"b"}]}}]}"#,
    )
    .unwrap_err();
    assert!(
        mixed.message.contains("requests[1].taskType"),
        "{}",
        mixed.message
    );
    let image = gemini::parse_embed_content_request(
        br#"{"content":{"parts":[{"inlineData":{"mimeType":"image/png","data":"AA=="}}]}}"#,
    )
    .unwrap_err();
    assert!(
        image.message.contains("content.parts[0]"),
        "{}",
        image.message
    );
    assert!(gemini::parse_batch_embed_contents_request(br#"{"requests":[]}"#).is_err());

    let client =
        ClientEmbedRequest::parse(br#"{"content":{"parts":[{"text":"x"}]}}"#, false).unwrap();
    assert!(!client.batch);
    let response = EmbeddingsResponse {
        embeddings: vec![vec![0.5]],
        ..Default::default()
    };
    assert_eq!(
        client.response_body(&response),
        json!({"embedding": {"values": [0.5]}})
    );
}

#[test]
fn embed_bodies() {
    let response = EmbeddingsResponse {
        model: "m".into(),
        embeddings: vec![vec![0.1, -0.25], vec![1.0, 0.0]],
        usage: Usage::default(),
    };
    // f32 values keep their short form.
    assert_eq!(
        gemini::embed_content_body(&response).to_string(),
        r#"{"embedding":{"values":[0.1,-0.25]}}"#
    );
    assert_eq!(
        gemini::batch_embed_contents_body(&response),
        json!({"embeddings": [{"values": [0.1, -0.25]}, {"values": [1.0, 0.0]}]})
    );
}

// ---------------------------------------------------------------------------
// Provider requests
// ---------------------------------------------------------------------------

#[test]
fn provider_body_from_openai_style_history() {
    let request = ChatRequest {
        model: "gemini-2.5-flash".into(),
        system: Some("Be helpful.".into()),
        messages: vec![
            Message::user("Weather in Paris?"),
            Message {
                role: Role::Assistant,
                content: vec![
                    text("Let me check."),
                    ContentPart::ToolCall {
                        id: "call_XyZ".into(),
                        name: "get_weather".into(),
                        arguments: r#"{"location":"Paris"}"#.into(),
                    },
                ],
            },
            Message {
                role: Role::Tool,
                content: vec![ContentPart::ToolResult {
                    tool_call_id: "call_XyZ".into(),
                    name: None,
                    content: r#"{"temp_c": 21}"#.into(),
                    is_error: false,
                }],
            },
            Message {
                role: Role::User,
                content: vec![
                    text("And this photo?"),
                    ContentPart::Image {
                        source: ImageSource::from_url("data:image/png;base64,iVBORw0KGgo="),
                    },
                    ContentPart::Image {
                        source: ImageSource::Url {
                            url: "https://example.com/a.webp?x=1".into(),
                        },
                    },
                ],
            },
        ],
        tools: vec![Tool {
            name: "get_weather".into(),
            description: Some("Weather".into()),
            parameters: json!({
                "$schema": "http://json-schema.org/draft-07/schema#",
                "type": "object",
                "properties": {"location": {"type": "string", "format": "uri"}},
                "required": ["location", "ghost"],
                "additionalProperties": false
            }),
        }],
        tool_choice: Some(ToolChoice::Required),
        params: SamplingParams {
            max_tokens: Some(100),
            temperature: Some(0.5),
            stop: vec!["STOP!".into()],
            ..Default::default()
        },
        ..Default::default()
    };
    assert_eq!(
        gemini::generate_content_request_body(&request),
        json!({
            "contents": [
                {"role": "user", "parts": [{"text": "Weather in Paris?"}]},
                {"role": "model", "parts": [
                    {"text": "Let me check."},
                    {"functionCall": {"name": "get_weather", "args": {"location": "Paris"}},
                     "thoughtSignature": "skip_thought_signature_validator"}
                ]},
                // The tool result and the next user turn merge into one user turn.
                {"role": "user", "parts": [
                    {"functionResponse": {"name": "get_weather", "response": {"result": {"temp_c": 21}}}},
                    {"text": "And this photo?"},
                    {"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}},
                    {"fileData": {"mimeType": "image/webp", "fileUri": "https://example.com/a.webp?x=1"}}
                ]}
            ],
            "systemInstruction": {"parts": [{"text": "Be helpful."}]},
            "tools": [{"functionDeclarations": [{
                "name": "get_weather",
                "description": "Weather",
                "parameters": {
                    "type": "OBJECT",
                    "properties": {"location": {"type": "STRING"}},
                    "required": ["location"]
                }
            }]}],
            "toolConfig": {"functionCallingConfig": {"mode": "ANY"}},
            "generationConfig": {"temperature": 0.5, "maxOutputTokens": 100, "stopSequences": ["STOP!"]}
        })
    );
}

#[test]
fn provider_tool_result_names_and_errors() {
    let request = ChatRequest {
        messages: vec![Message {
            role: Role::User,
            content: vec![
                // Anthropic-style: tool results inside a user turn, no
                // name; one refers to a call not in history.
                ContentPart::ToolResult {
                    tool_call_id: "call_3_search_docs".into(),
                    name: None,
                    content: "not json".into(),
                    is_error: true,
                },
                ContentPart::ToolResult {
                    tool_call_id: "toolu_1".into(),
                    name: Some("explicit".into()),
                    content: "42".into(),
                    is_error: false,
                },
            ],
        }],
        tool_choice: Some(ToolChoice::Tool { name: "x".into() }),
        ..Default::default()
    };
    let body = gemini::generate_content_request_body(&request);
    assert_eq!(
        body["contents"],
        json!([{"role": "user", "parts": [
            {"functionResponse": {"name": "search_docs", "response": {"error": "not json"}}},
            {"functionResponse": {"name": "explicit", "response": {"result": 42}}}
        ]}])
    );
    // No tools: no toolConfig, no generationConfig.
    assert!(body.get("toolConfig").is_none());
    assert!(body.get("generationConfig").is_none());
    assert!(body.get("systemInstruction").is_none());
}

#[test]
fn provider_schema_cleanup() {
    let pydantic_like = json!({
        "$defs": {
            "Unit": {"enum": ["C", "F"], "title": "Unit", "type": "string"},
            "Place": {
                "type": "object",
                "properties": {"city": {"type": "string"}, "near": {"$ref": "#/$defs/Place"}},
                "required": ["city"]
            }
        },
        "type": "object",
        "title": "Args",
        "properties": {
            "unit": {"$ref": "#/$defs/Unit", "description": "Unit to use"},
            "place": {"$ref": "#/$defs/Place"},
            "days": {"anyOf": [{"type": "integer", "exclusiveMinimum": 0}, {"type": "null"}], "default": null},
            "tags": {"type": ["array", "null"], "items": {"type": "string", "format": "email", "minLength": 1}},
            "mode": {"const": "fast"},
            "value": {"type": ["string", "number"]},
            "when": {"type": "string", "format": "date-time"},
            "count": {"type": "integer", "format": "int64", "enum": [1, 2]},
            "both": {"allOf": [
                {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]},
                {"properties": {"b": {"type": "boolean"}}, "required": ["b"]}
            ]},
            "empty": {"type": "object", "properties": {}}
        },
        "required": ["unit"],
        "additionalProperties": false
    });
    let request = ChatRequest {
        tools: vec![
            Tool {
                name: "plan".into(),
                description: None,
                parameters: pydantic_like,
            },
            Tool {
                name: "ping".into(),
                description: None,
                parameters: json!({"type": "object", "properties": {}}),
            },
        ],
        ..Default::default()
    };
    let body = gemini::generate_content_request_body(&request);
    let decls = &body["tools"][0]["functionDeclarations"];
    // A tool without arguments carries no schema.
    assert_eq!(decls[1], json!({"name": "ping"}));
    let params = &decls[0]["parameters"];
    assert_eq!(params["type"], "OBJECT");
    assert_eq!(params["title"], "Args");
    assert!(params.get("$defs").is_none());
    assert!(params.get("additionalProperties").is_none());
    let props = &params["properties"];
    assert_eq!(
        props["unit"],
        json!({"type": "STRING", "enum": ["C", "F"], "format": "enum", "title": "Unit", "description": "Unit to use"})
    );
    assert_eq!(
        props["place"]["properties"]["city"],
        json!({"type": "STRING"})
    );
    // Recursion is cut at the first repeat of a `$ref`.
    assert_eq!(
        props["place"]["properties"]["near"],
        json!({"type": "OBJECT"})
    );
    assert_eq!(props["place"]["required"], json!(["city"]));
    assert_eq!(
        props["days"],
        json!({"type": "INTEGER", "nullable": true, "default": null})
    );
    assert_eq!(
        props["tags"],
        json!({"type": "ARRAY", "nullable": true, "items": {"type": "STRING", "minLength": 1}})
    );
    assert_eq!(
        props["mode"],
        json!({"type": "STRING", "enum": ["fast"], "format": "enum"})
    );
    assert_eq!(
        props["value"],
        json!({"anyOf": [{"type": "STRING"}, {"type": "NUMBER"}]})
    );
    assert_eq!(
        props["when"],
        json!({"type": "STRING", "format": "date-time"})
    );
    assert_eq!(
        props["count"],
        json!({"type": "INTEGER", "format": "int64"})
    );
    assert_eq!(
        props["both"],
        json!({"type": "OBJECT", "properties": {"a": {"type": "STRING"}, "b": {"type": "BOOLEAN"}}, "required": ["a", "b"]})
    );
    assert_eq!(props["empty"], json!({"type": "OBJECT"}));
    assert_eq!(params["required"], json!(["unit"]));
    // Nothing Gemini rejects anywhere in the tree.
    let text = params.to_string();
    for banned in [
        "$ref",
        "$defs",
        "additionalProperties",
        "exclusiveMinimum",
        "anyOf\":[{\"type\":\"null",
        "const",
    ] {
        assert!(!text.contains(banned), "{banned} left in {text}");
    }
}

#[test]
fn provider_response_format_and_params() {
    let request = ChatRequest {
        messages: vec![Message::user("json please")],
        params: SamplingParams {
            top_p: Some(0.8),
            top_k: Some(20),
            seed: Some(-3),
            presence_penalty: Some(0.1),
            frequency_penalty: Some(0.2),
            ..Default::default()
        },
        response_format: Some(json!({"type": "json_schema", "json_schema": {
            "name": "answer", "strict": true,
            "schema": {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"], "additionalProperties": false}
        }})),
        ..Default::default()
    };
    assert_eq!(
        gemini::generate_content_request_body(&request)["generationConfig"],
        json!({
            "topP": 0.8, "topK": 20, "seed": -3, "presencePenalty": 0.1, "frequencyPenalty": 0.2,
            "responseMimeType": "application/json",
            "responseSchema": {"type": "OBJECT", "properties": {"a": {"type": "STRING"}}, "required": ["a"]}
        })
    );
    let json_object = ChatRequest {
        messages: vec![Message::user("x")],
        response_format: Some(json!({"type": "json_object"})),
        ..Default::default()
    };
    assert_eq!(
        gemini::generate_content_request_body(&json_object)["generationConfig"],
        json!({"responseMimeType": "application/json"})
    );
}

#[test]
fn provider_tool_choice_mapping() {
    let config = |choice| {
        let request = ChatRequest {
            messages: vec![Message::user("x")],
            tools: vec![Tool {
                name: "f".into(),
                description: None,
                parameters: json!({"type": "object"}),
            }],
            tool_choice: Some(choice),
            ..Default::default()
        };
        gemini::generate_content_request_body(&request)["toolConfig"]["functionCallingConfig"]
            .clone()
    };
    assert_eq!(config(ToolChoice::Auto), json!({"mode": "AUTO"}));
    assert_eq!(config(ToolChoice::None), json!({"mode": "NONE"}));
    assert_eq!(config(ToolChoice::Required), json!({"mode": "ANY"}));
    assert_eq!(
        config(ToolChoice::Tool { name: "f".into() }),
        json!({"mode": "ANY", "allowedFunctionNames": ["f"]})
    );
}

#[test]
fn gemini_client_to_gemini_provider_round_trip() {
    // A Gemini-dialect client on a Gemini endpoint: signatures, built-in
    // tools, thinking and safety settings survive the neutral model.
    let request = parse(sdk_function_calling_request());
    let body = gemini::generate_content_request_body(&request);
    assert_eq!(
        body["contents"],
        json!([
            {"role": "user", "parts": [{"text": "What's the weather in Paris and London?"}]},
            {"role": "model", "parts": [
                {"functionCall": {"name": "get_weather", "args": {"location": "Paris"}}, "thoughtSignature": "CiQBVKhc7sig=="},
                {"functionCall": {"name": "get_weather", "args": {"location": "London"}}}
            ]},
            {"role": "user", "parts": [
                {"functionResponse": {"name": "get_weather", "response": {"result": {"temp_c": 21}}}},
                {"functionResponse": {"name": "get_weather", "response": {"error": "station offline"}}}
            ]}
        ])
    );
    assert_eq!(
        body["tools"],
        json!([
            {"functionDeclarations": [{
                "name": "get_weather",
                "description": "Current weather for a city.",
                "parameters": {
                    "type": "OBJECT",
                    "properties": {
                        "location": {"type": "STRING", "description": "City name"},
                        "unit": {"type": "STRING", "enum": ["C", "F"], "format": "enum", "nullable": true}
                    },
                    "required": ["location"]
                }
            }]},
            {"googleSearch": {}}
        ])
    );
    assert_eq!(
        body["generationConfig"],
        json!({
            "temperature": 0.2, "topP": 0.9, "topK": 40, "maxOutputTokens": 256, "stopSequences": ["END"],
            "seed": 7, "presencePenalty": 0.5, "frequencyPenalty": 0.25,
            "responseMimeType": "application/json",
            "thinkingConfig": {"includeThoughts": true, "thinkingBudget": 1024}
        })
    );
    assert_eq!(body["safetySettings"][0]["threshold"], "BLOCK_NONE");
    assert_eq!(
        body["toolConfig"],
        json!({"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["get_weather"]}})
    );

    // The same extras are ignored when they came from another dialect.
    let mut foreign = request.clone();
    foreign.extra_dialect = Some("openai".into());
    let body = gemini::generate_content_request_body(&foreign);
    assert!(body.get("safetySettings").is_none());
    assert_eq!(body["tools"].as_array().map(Vec::len), Some(1));
}

// ---------------------------------------------------------------------------
// Provider responses
// ---------------------------------------------------------------------------

#[test]
fn parse_generate_content_response() {
    let body = json!({
        "candidates": [{
            "content": {"parts": [
                {"text": "**Checking** the forecast", "thought": true},
                {"text": "I'll look that up."},
                {"functionCall": {"name": "get_weather", "args": {"location": "Paris"}}, "thoughtSignature": "Cs0CAVSoXO4="},
                {"functionCall": {"name": "get_time", "args": {}}}
            ], "role": "model"},
            "finishReason": "STOP",
            "index": 0,
            "safetyRatings": []
        }],
        "usageMetadata": {
            "promptTokenCount": 42, "candidatesTokenCount": 18, "totalTokenCount": 120,
            "thoughtsTokenCount": 60, "cachedContentTokenCount": 8,
            "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 42}]
        },
        "modelVersion": "gemini-2.5-flash",
        "responseId": "mDdGaL3lEPqN"
    });
    let response = gemini::parse_generate_content(body.to_string().as_bytes()).unwrap();
    assert_eq!(response.id, "mDdGaL3lEPqN");
    assert_eq!(response.model, "gemini-2.5-flash");
    assert_eq!(response.finish_reason, FinishReason::ToolCalls);
    assert_eq!(
        response.usage,
        Usage {
            input_tokens: 42,
            output_tokens: 78,
            cached_input_tokens: Some(8)
        }
    );
    assert_eq!(
        response.content,
        vec![
            ContentPart::Thinking {
                text: "**Checking** the forecast".into(),
                signature: None
            },
            text("I'll look that up."),
            ContentPart::Thinking {
                text: String::new(),
                signature: Some("Cs0CAVSoXO4=".into())
            },
            ContentPart::ToolCall {
                id: "call_mDdGaL3lEPqN_0".into(),
                name: "get_weather".into(),
                arguments: r#"{"location":"Paris"}"#.into(),
            },
            ContentPart::ToolCall {
                id: "call_mDdGaL3lEPqN_1".into(),
                name: "get_time".into(),
                arguments: "{}".into()
            },
        ]
    );
    assert_eq!(response.raw, Some(body));
    assert_eq!(response.text(), "I'll look that up.");

    // Feeding the answer back (an OpenAI client replaying history) puts the
    // signature back on its call and finds names for the results.
    let mut history = vec![
        Message::user("weather?"),
        Message {
            role: Role::Assistant,
            content: response.content.clone(),
        },
    ];
    history.push(Message {
        role: Role::Tool,
        content: ["call_mDdGaL3lEPqN_0", "call_mDdGaL3lEPqN_1"]
            .iter()
            .map(|id| ContentPart::ToolResult {
                tool_call_id: (*id).into(),
                name: None,
                content: "ok".into(),
                is_error: false,
            })
            .collect(),
    });
    let body = gemini::generate_content_request_body(&ChatRequest {
        messages: history,
        ..Default::default()
    });
    assert_eq!(
        body["contents"][1]["parts"],
        json!([
            {"text": "I'll look that up."},
            {"functionCall": {"name": "get_weather", "args": {"location": "Paris"}}, "thoughtSignature": "Cs0CAVSoXO4="},
            {"functionCall": {"name": "get_time", "args": {}}}
        ])
    );
    assert_eq!(
        body["contents"][2]["parts"],
        json!([
            {"functionResponse": {"name": "get_weather", "response": {"result": "ok"}}},
            {"functionResponse": {"name": "get_time", "response": {"result": "ok"}}}
        ])
    );
}

#[test]
fn parse_generate_content_blocked_and_limits() {
    let blocked = br#"{"promptFeedback":{"blockReason":"SAFETY","safetyRatings":[]},"usageMetadata":{"promptTokenCount":9,"totalTokenCount":9},"modelVersion":"gemini-2.0-flash"}"#;
    let response = gemini::parse_generate_content(blocked).unwrap();
    assert_eq!(response.finish_reason, FinishReason::ContentFilter);
    assert!(response.content.is_empty());
    assert_eq!(response.usage.input_tokens, 9);

    let cut = br#"{"candidates":[{"content":{"parts":[{"text":"Once upon"}],"role":"model"},"finishReason":"MAX_TOKENS","index":0}]}"#;
    let response = gemini::parse_generate_content(cut).unwrap();
    assert_eq!(response.finish_reason, FinishReason::Length);
    assert_eq!(response.text(), "Once upon");

    let recitation = br#"{"candidates":[{"finishReason":"RECITATION","index":0}]}"#;
    assert_eq!(
        gemini::parse_generate_content(recitation)
            .unwrap()
            .finish_reason,
        FinishReason::ContentFilter
    );

    let error =
        br#"{"error":{"code":503,"message":"The model is overloaded.","status":"UNAVAILABLE"}}"#;
    let err = gemini::parse_generate_content(error).unwrap_err();
    assert_eq!(err.kind, ErrorKind::Overloaded);
    assert!(gemini::parse_generate_content(b"<html>").is_err());
}

/// `streamGenerateContent?alt=sse` data payloads as gemini-2.5-flash sends
/// them: thoughts, text pieces, a function call, and a final chunk.
const RECORDED_STREAM: &[&str] = &[
    r#"{"candidates": [{"content": {"parts": [{"text": "**Planning the answer**\n\nThe user wants Paris weather.","thought": true}],"role": "model"},"index": 0}],"usageMetadata": {"promptTokenCount": 61,"totalTokenCount": 61,"promptTokensDetails": [{"modality": "TEXT","tokenCount": 61}]},"modelVersion": "gemini-2.5-flash","responseId": "TPhGaJq8Ie"}"#,
    r#"{"candidates": [{"content": {"parts": [{"text": "Sure"}],"role": "model"},"index": 0}],"usageMetadata": {"promptTokenCount": 61,"candidatesTokenCount": 1,"totalTokenCount": 140,"thoughtsTokenCount": 78},"modelVersion": "gemini-2.5-flash","responseId": "TPhGaJq8Ie"}"#,
    r#"{"candidates": [{"content": {"parts": [{"text": ", let me check the weather in Paris."}],"role": "model"},"index": 0}],"usageMetadata": {"promptTokenCount": 61,"candidatesTokenCount": 10,"totalTokenCount": 149,"thoughtsTokenCount": 78},"modelVersion": "gemini-2.5-flash","responseId": "TPhGaJq8Ie"}"#,
    r#"{"candidates": [{"content": {"parts": [{"functionCall": {"name": "get_weather","args": {"location": "Paris, FR","unit": "celsius"}},"thoughtSignature": "CiIBVKhc7oDFQw=="}],"role": "model"},"index": 0}],"usageMetadata": {"promptTokenCount": 61,"candidatesTokenCount": 30,"totalTokenCount": 169,"thoughtsTokenCount": 78},"modelVersion": "gemini-2.5-flash","responseId": "TPhGaJq8Ie"}"#,
    r#"{"candidates": [{"content": {"parts": [{"text": ""}],"role": "model"},"finishReason": "STOP","index": 0}],"usageMetadata": {"promptTokenCount": 61,"candidatesTokenCount": 30,"totalTokenCount": 169,"thoughtsTokenCount": 78,"promptTokensDetails": [{"modality": "TEXT","tokenCount": 61}]},"modelVersion": "gemini-2.5-flash","responseId": "TPhGaJq8Ie"}"#,
];

#[test]
fn chunk_decoder_recorded_stream() {
    let mut decoder = ChunkDecoder::new();
    let mut events = Vec::new();
    for data in RECORDED_STREAM {
        events.extend(decoder.decode(data).unwrap());
    }
    let usage = |output| StreamEvent::Usage {
        usage: Usage {
            input_tokens: 61,
            output_tokens: output,
            cached_input_tokens: None,
        },
    };
    assert_eq!(
        events,
        vec![
            StreamEvent::Start {
                id: "TPhGaJq8Ie".into(),
                model: "gemini-2.5-flash".into()
            },
            StreamEvent::ThinkingDelta {
                text: "**Planning the answer**\n\nThe user wants Paris weather.".into()
            },
            usage(0),
            StreamEvent::TextDelta {
                text: "Sure".into()
            },
            usage(79),
            StreamEvent::TextDelta {
                text: ", let me check the weather in Paris.".into()
            },
            usage(88),
            StreamEvent::ToolCallStart {
                index: 0,
                id: "call_TPhGaJq8Ie_0".into(),
                name: "get_weather".into()
            },
            StreamEvent::ToolCallDelta {
                index: 0,
                arguments: r#"{"location":"Paris, FR","unit":"celsius"}"#.into()
            },
            usage(108),
            // Same usage again: not repeated.
            StreamEvent::Finish {
                reason: FinishReason::ToolCalls
            },
        ]
    );
    // Blank keep-alive payloads decode to nothing.
    assert_eq!(decoder.decode("  ").unwrap(), vec![]);
}

#[test]
fn chunk_decoder_re_encodes_for_gemini_clients() {
    // Provider stream -> neutral events -> client chunks: text passes
    // through, the call arrives whole, the last chunk finishes with usage.
    let mut decoder = ChunkDecoder::new();
    let mut encoder = ChunkEncoder::new("gw-1".into(), "my-endpoint".into());
    let mut chunks = Vec::new();
    for data in RECORDED_STREAM {
        for event in decoder.decode(data).unwrap() {
            chunks.extend(encoder.encode(&event));
        }
    }
    chunks.extend(encoder.finish());
    let parts: Vec<Value> = chunks
        .iter()
        .map(|c| c["candidates"][0]["content"]["parts"][0].clone())
        .collect();
    assert_eq!(parts[0]["thought"], true);
    assert_eq!(parts[1], json!({"text": "Sure"}));
    assert_eq!(
        parts[2],
        json!({"text": ", let me check the weather in Paris."})
    );
    assert_eq!(
        parts[3]["functionCall"]["args"],
        json!({"location": "Paris, FR", "unit": "celsius"})
    );
    assert_eq!(chunks.len(), 4);
    assert_eq!(chunks[3]["candidates"][0]["finishReason"], "STOP");
    assert_eq!(chunks[3]["usageMetadata"]["candidatesTokenCount"], 108);
}

#[test]
fn chunk_decoder_errors_blocks_and_arrays() {
    let mut decoder = ChunkDecoder::new();
    let err = decoder
        .decode(r#"{"error":{"code":429,"message":"Resource has been exhausted","status":"RESOURCE_EXHAUSTED"}}"#)
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::RateLimited);
    assert_eq!(err.status, 429);
    assert!(ChunkDecoder::new().decode("{oops").is_err());

    let mut decoder = ChunkDecoder::new();
    let events = decoder
        .decode(r#"{"promptFeedback":{"blockReason":"PROHIBITED_CONTENT"},"modelVersion":"gemini-2.0-flash","responseId":"x"}"#)
        .unwrap();
    assert_eq!(
        events.last(),
        Some(&StreamEvent::Finish {
            reason: FinishReason::ContentFilter
        })
    );

    // Without alt=sse the stream is a JSON array of responses.
    let mut decoder = ChunkDecoder::new();
    let events = decoder
        .decode(r#"[{"candidates":[{"content":{"parts":[{"text":"a"}],"role":"model"}}]},{"candidates":[{"content":{"parts":[{"text":"b"}],"role":"model"},"finishReason":"MAX_TOKENS"}]}]"#)
        .unwrap();
    assert_eq!(
        events,
        vec![
            StreamEvent::Start {
                id: String::new(),
                model: String::new()
            },
            StreamEvent::TextDelta { text: "a".into() },
            StreamEvent::TextDelta { text: "b".into() },
            StreamEvent::Finish {
                reason: FinishReason::Length
            },
        ]
    );
    // Call ids without a response id still differ per call.
    let mut decoder = ChunkDecoder::new();
    let events = decoder
        .decode(r#"{"candidates":[{"content":{"parts":[{"functionCall":{"name":"a","args":{}}},{"functionCall":{"name":"b","id":"given"}}],"role":"model"},"finishReason":"STOP"}]}"#)
        .unwrap();
    let ids: Vec<&str> = events
        .iter()
        .filter_map(|e| match e {
            StreamEvent::ToolCallStart { id, .. } => Some(id.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(ids, vec!["call_0_a", "given"]);
}

// ---------------------------------------------------------------------------
// Provider embeddings and errors
// ---------------------------------------------------------------------------

#[test]
fn batch_embed_request_and_response() {
    let request = EmbeddingsRequest {
        model: "ignored".into(),
        inputs: vec!["doc one".into(), "doc two".into()],
        dimensions: Some(768),
        input_type: Some("search_document".into()),
        ..Default::default()
    };
    assert_eq!(
        gemini::batch_embed_contents_request_body(&request, "gemini-embedding-001"),
        json!({"requests": [
            {"model": "models/gemini-embedding-001", "content": {"parts": [{"text": "doc one"}]},
             "taskType": "RETRIEVAL_DOCUMENT", "outputDimensionality": 768},
            {"model": "models/gemini-embedding-001", "content": {"parts": [{"text": "doc two"}]},
             "taskType": "RETRIEVAL_DOCUMENT", "outputDimensionality": 768}
        ]})
    );
    let mapped = |input_type: &str| {
        let request = EmbeddingsRequest {
            inputs: vec!["x".into()],
            input_type: Some(input_type.into()),
            ..Default::default()
        };
        gemini::batch_embed_contents_request_body(&request, "models/m")["requests"][0].clone()
    };
    assert_eq!(mapped("search_query")["taskType"], "RETRIEVAL_QUERY");
    assert_eq!(mapped("classification")["taskType"], "CLASSIFICATION");
    assert_eq!(mapped("clustering")["taskType"], "CLUSTERING");
    assert!(mapped("something_else").get("taskType").is_none());
    assert_eq!(mapped("clustering")["model"], "models/m");

    // A Gemini client's task type reaches a Gemini provider unchanged.
    let client = gemini::parse_batch_embed_contents_request(
        br#"{"requests":[{"content":{"parts":[{"text":"q"}]},"taskType":"QUESTION_ANSWERING"}]}"#,
    )
    .unwrap();
    assert_eq!(
        gemini::batch_embed_contents_request_body(&client, "m")["requests"][0]["taskType"],
        "QUESTION_ANSWERING"
    );

    let response = gemini::parse_batch_embed_contents(
        br#"{"embeddings":[{"values":[0.013168523,-0.008711934,1]},{"values":[0.5,0.25,-1e-3]}]}"#,
    )
    .unwrap();
    assert_eq!(
        response.embeddings,
        vec![
            vec![0.013168523f32, -0.008711934, 1.0],
            vec![0.5, 0.25, -0.001]
        ]
    );
    let single = gemini::parse_batch_embed_contents(br#"{"embedding":{"values":[1,2]}}"#).unwrap();
    assert_eq!(single.embeddings, vec![vec![1.0, 2.0]]);
    assert!(gemini::parse_batch_embed_contents(br#"{"embeddings":[{"values":["x"]}]}"#).is_err());
    assert!(gemini::parse_batch_embed_contents(br#"{}"#).is_err());
}

#[test]
fn parse_error_with_retry_delay() {
    let body = br#"{
      "error": {
        "code": 429,
        "message": "You exceeded your current quota, please check your plan and billing details.",
        "status": "RESOURCE_EXHAUSTED",
        "details": [
          {"@type": "type.googleapis.com/google.rpc.QuotaFailure",
           "violations": [{"quotaMetric": "generativelanguage.googleapis.com/generate_content_free_tier_requests", "quotaId": "GenerateRequestsPerMinutePerProjectPerModel-FreeTier"}]},
          {"@type": "type.googleapis.com/google.rpc.Help", "links": [{"description": "Learn more", "url": "https://ai.google.dev/gemini-api/docs/rate-limits"}]},
          {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "30s"}
        ]
      }
    }"#;
    let error = gemini::parse_error(429, &[], body);
    assert_eq!(error.kind, ErrorKind::RateLimited);
    assert_eq!(error.status, 429);
    assert_eq!(error.retry_after_ms, Some(30_000));
    assert!(error.message.starts_with("You exceeded your current quota"));

    // A Retry-After header wins; fractional delays are kept.
    let headers = vec![("Retry-After".to_string(), "7".to_string())];
    assert_eq!(
        gemini::parse_error(429, &headers, body).retry_after_ms,
        Some(7_000)
    );
    let fractional = br#"{"error":{"code":429,"message":"m","status":"RESOURCE_EXHAUSTED","details":[{"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"1.25s"}]}}"#;
    assert_eq!(
        gemini::parse_error(429, &[], fractional).retry_after_ms,
        Some(1_250)
    );
}

#[test]
fn parse_error_kinds() {
    let bad_key = br#"{"error":{"code":400,"message":"API key not valid. Please pass a valid API key.","status":"INVALID_ARGUMENT","details":[{"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":"API_KEY_INVALID","domain":"googleapis.com","metadata":{"service":"generativelanguage.googleapis.com"}}]}}"#;
    let error = gemini::parse_error(400, &[], bad_key);
    assert_eq!((error.kind, error.status), (ErrorKind::Authentication, 401));

    let invalid = br#"{"error":{"code":400,"message":"* GenerateContentRequest.contents: contents is not specified\n","status":"INVALID_ARGUMENT"}}"#;
    let error = gemini::parse_error(400, &[], invalid);
    assert_eq!((error.kind, error.status), (ErrorKind::InvalidRequest, 400));
    assert!(error.message.contains("contents is not specified"));

    let not_found = br#"{"error":{"code":404,"message":"models/gemini-9 is not found for API version v1beta","status":"NOT_FOUND"}}"#;
    assert_eq!(
        gemini::parse_error(404, &[], not_found).kind,
        ErrorKind::NotFound
    );

    // Non-SSE streams wrap the error in an array.
    let wrapped = br#"[{"error":{"code":503,"message":"The model is overloaded. Please try again later.","status":"UNAVAILABLE"}}]"#;
    let error = gemini::parse_error(503, &[], wrapped);
    assert_eq!(error.kind, ErrorKind::Overloaded);
    assert_eq!(
        error.message,
        "The model is overloaded. Please try again later."
    );

    let html = gemini::parse_error(502, &[], b"<html>Bad Gateway</html>");
    assert_eq!((html.kind, html.status), (ErrorKind::Upstream, 502));
    assert_eq!(html.message, "<html>Bad Gateway</html>");
    assert_eq!(
        gemini::parse_error(500, &[], b"").message,
        "Gemini API error (HTTP 500)"
    );
}

#[test]
fn signatures_that_are_not_base64_stay_out_of_client_bodies() {
    // The google-genai SDKs decode thoughtSignature as base64 bytes.
    let response = ChatResponse {
        content: vec![
            ContentPart::Thinking {
                text: "why".into(),
                signature: Some("not base64!".into()),
            },
            ContentPart::Thinking {
                text: String::new(),
                signature: Some("{json}".into()),
            },
            text("answer"),
        ],
        ..Default::default()
    };
    assert_eq!(
        gemini::generate_content_body(&response, "m")["candidates"][0]["content"]["parts"],
        json!([{"text": "why", "thought": true}, {"text": "answer"}])
    );
}
