//! Runtime test plugin: a component that matches the 0.2.0 contract but
//! describes itself with an empty id, which the host must reject at load
//! (reaching that check proves a 0.2.0 component still type-checks,
//! instantiates and runs against the host's 0.2.0 binding; test-echo does
//! the same for 0.1.0). Built as `test-describe-trap` (same source),
//! `describe` traps instead.

wit_bindgen::generate!({
    path: "../../../wit",
    world: "gateway:provider/plugin@0.2.0",
    // 0.2.0's world uses 0.1.0's `types` (and imports its `host`).
    generate_all,
});

use exports::gateway::provider0_2_0::provider::{Decoded, Guest, GuestStreamDecoder};
use gateway::provider0_1_0::types::{
    Endpoint, ErrorKind, HttpRequest, HttpResponse, ProviderError, ProviderInfo,
};

struct BadDescribe;

fn unsupported() -> ProviderError {
    ProviderError {
        kind: ErrorKind::Internal,
        status: 500,
        message: "unsupported".into(),
        retry_after_ms: None,
    }
}

impl Guest for BadDescribe {
    type StreamDecoder = Decoder;

    fn describe() -> ProviderInfo {
        if env!("CARGO_PKG_NAME") == "test-describe-trap" {
            panic!("describe was asked to trap");
        }
        ProviderInfo {
            id: String::new(),
            display_name: "Bad Describe".into(),
            version: "0.1.0".into(),
            description: String::new(),
            operations: Vec::new(),
            native_dialect: None,
            config_fields: Vec::new(),
            egress_hosts: Vec::new(),
            models: Vec::new(),
        }
    }

    fn build_chat_request(_: Endpoint, _: String, _: bool) -> Result<HttpRequest, ProviderError> {
        Err(unsupported())
    }

    fn parse_chat_response(_: Endpoint, _: HttpResponse) -> Result<String, ProviderError> {
        Err(unsupported())
    }

    fn build_embeddings_request(_: Endpoint, _: String) -> Result<HttpRequest, ProviderError> {
        Err(unsupported())
    }

    fn parse_embeddings_response(_: Endpoint, _: HttpResponse) -> Result<String, ProviderError> {
        Err(unsupported())
    }

    fn parse_error(_: Endpoint, _: HttpResponse) -> ProviderError {
        unsupported()
    }
}

pub struct Decoder;

impl GuestStreamDecoder for Decoder {
    fn new(_: Endpoint) -> Self {
        Decoder
    }

    fn push(&self, _: Vec<u8>) -> Decoded {
        Decoded {
            events: Vec::new(),
            error: Some(unsupported()),
        }
    }

    fn finish(&self) -> Decoded {
        self.push(Vec::new())
    }
}

export!(BadDescribe);
