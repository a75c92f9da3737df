//! Portico provider plugin for Google Cloud Vertex AI, authenticated with a
//! service account:
//! - Gemini models (`publishers/google`): `generateContent`, streamed
//!   `streamGenerateContent?alt=sse` (text, thinking, function calls,
//!   images, usage), `countTokens`, and text embeddings through `predict`;
//! - Claude models (`publishers/anthropic`, ids such as
//!   `claude-sonnet-4-5@20250929`): the Messages API's body and SSE stream
//!   through `rawPredict` / `streamRawPredict`, with `anthropic_version` in
//!   the body instead of a header, and `count-tokens:rawPredict`;
//! - Model Garden's open models (ids `publisher/model`, such as
//!   `meta/llama-4-maverick-17b-128e-instruct-maas`): Chat Completions
//!   through the OpenAI-compatible `endpoints/openapi/chat/completions`.
//!
//! Auth: the endpoint holds a service-account key file (JSON). The plugin
//! signs an RS256 JWT assertion with its private key, exchanges it at the
//! file's `token_uri` for an OAuth access token (through the host's
//! `http-fetch`; the host allows the declared egress host
//! `oauth2.googleapis.com`, plus the hosts of `url` config values such as
//! `base_url`), and caches the token in the host cache until shortly before
//! it expires, so one exchange serves about an hour of calls.
//!
//! The wire formats are `portico_model::formats::{gemini, anthropic,
//! openai}`, with the HTTP around them from `portico_sdk::gemini` and
//! `portico_sdk::anthropic`.

use portico_sdk::anthropic::{self as claude, MessagesStreamDecoder};
use portico_sdk::formats::anthropic;
use portico_sdk::formats::gemini as wire;
use portico_sdk::formats::openai::{self, ChatBodyOptions, MaxTokensField};
use portico_sdk::gemini::{self, GeminiStreamDecoder};
use portico_sdk::jwt::{CLOUD_PLATFORM_SCOPE, ServiceAccount};
use portico_sdk::openai_compat::ChatStreamDecoder;
use portico_sdk::prelude::*;
use serde::Deserialize;
use serde_json::{Map, Value, json};

/// Region used when the endpoint names none.
const DEFAULT_LOCATION: &str = "us-central1";

/// The only host the plugin fetches from itself (the token exchange); the
/// API calls are made by the host.
const TOKEN_HOST: &str = "oauth2.googleapis.com";

/// The Messages API version Vertex AI's Claude models take, in the body.
const VERTEX_ANTHROPIC_VERSION: &str = "vertex-2023-10-16";

/// The model catalog, kept as data so it is easy to update.
const MODELS: &str = include_str!("../models.toml");

pub struct Vertex {
    models: Vec<ModelInfo>,
}

/// The API serving a model on Vertex AI, told by its id: Google's models
/// speak the Gemini API, Anthropic's Claude the Messages API (through
/// rawPredict), and Model Garden's open models, named `publisher/model`
/// (e.g. `meta/llama-4-maverick-17b-128e-instruct-maas`), the
/// OpenAI-compatible Chat Completions endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Api {
    Gemini,
    Claude,
    OpenAi,
}

/// The API of `model` and its id as that API names it: a
/// `publishers/{google|anthropic}/models/` prefix says whose it is, else
/// Claude ids are Anthropic's, `publisher/model` ids Model Garden's, and
/// the rest Google's.
fn api(model: &str) -> (Api, &str) {
    let model = model.trim();
    if let Some(id) = model.strip_prefix("publishers/google/models/") {
        (Api::Gemini, id)
    } else if let Some(id) = model.strip_prefix("publishers/anthropic/models/") {
        (Api::Claude, id)
    } else if model.starts_with("claude-") {
        (Api::Claude, model)
    } else if model.contains('/') && !model.starts_with("publishers/") {
        (Api::OpenAi, model)
    } else {
        (Api::Gemini, model)
    }
}

/// How Vertex AI's OpenAI-compatible endpoint takes a Chat Completions
/// body: `max_tokens`, usage on streams, no reasoning_effort (which most
/// of the open models refuse).
const OPENAI_BODY: ChatBodyOptions = ChatBodyOptions {
    max_tokens_field: MaxTokensField::MaxTokens,
    stream_usage: true,
    top_k: false,
    reasoning_effort: false,
};

/// The service account of an endpoint.
fn account(endpoint: &Endpoint) -> Result<ServiceAccount, ProviderError> {
    let text = endpoint.require("service_account_json")?;
    ServiceAccount::from_json(text).map_err(|e| {
        ProviderError::invalid_request(format!(
            "config 'service_account_json' of endpoint '{}': {e}",
            endpoint.name
        ))
    })
}

/// A bearer token for the endpoint's service account (cached by the host).
fn access_token(endpoint: &Endpoint) -> Result<String, ProviderError> {
    account(endpoint)?.access_token(CLOUD_PLATFORM_SCOPE)
}

/// A region (`us-central1`, `europe-west4`, `global`, …): lower-case
/// letters, digits and dashes, since it becomes part of a host name.
fn location(endpoint: &Endpoint) -> Result<&str, ProviderError> {
    let location = endpoint.get_or("location", DEFAULT_LOCATION).trim();
    let valid = !location.is_empty()
        && location
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if valid {
        Ok(location)
    } else {
        Err(ProviderError::invalid_request(format!(
            "config 'location' of endpoint '{}' must be a Google Cloud region such as us-central1",
            endpoint.name
        )))
    }
}

/// The regional API root: `https://{location}-aiplatform.googleapis.com`,
/// or the global one for `global`.
fn default_base_url(location: &str) -> String {
    if location == "global" {
        "https://aiplatform.googleapis.com".to_string()
    } else {
        format!("https://{location}-aiplatform.googleapis.com")
    }
}

/// `{base}/v1/projects/{project}/locations/{location}/publishers/{publisher}/models/{model}`
/// for a Gemini or Claude model.
fn model_url(endpoint: &Endpoint, model: &str) -> Result<String, ProviderError> {
    let (publisher, id) = publisher_model(model)?;
    Ok(format!(
        "{}/models/{id}",
        publisher_url(endpoint, publisher)?
    ))
}

/// The publisher of a Gemini or Claude model and its id as a path
/// segment; an error for any other id.
fn publisher_model(model: &str) -> Result<(&'static str, String), ProviderError> {
    let (api, id) = api(model);
    let publisher = match api {
        Api::Gemini => "google",
        Api::Claude => "anthropic",
        Api::OpenAi => return Err(not_a_model_id(model)),
    };
    if id.is_empty() || id.contains('/') {
        return Err(not_a_model_id(model));
    }
    // '@' (Claude's version separator, `claude-sonnet-4-5@20250929`) may
    // stand unescaped in a path, and Vertex's own clients send it so.
    Ok((publisher, http::encode_component(id).replace("%40", "@")))
}

/// `{base}/v1/projects/{project}/locations/{location}/publishers/{publisher}`.
fn publisher_url(endpoint: &Endpoint, publisher: &str) -> Result<String, ProviderError> {
    Ok(format!(
        "{}/publishers/{publisher}",
        location_url(endpoint)?
    ))
}

/// `{base}/v1/projects/{project}/locations/{location}/endpoints/openapi/chat/completions`,
/// with the check that `model` names a Model Garden model as that endpoint
/// wants it: `publisher/model`.
fn openai_chat_url(endpoint: &Endpoint, model: &str) -> Result<String, ProviderError> {
    let valid = model.trim().split_once('/').is_some_and(|(publisher, id)| {
        [publisher, id].iter().all(|part| {
            !part.is_empty()
                && part
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'@'))
        })
    });
    if !valid {
        return Err(not_a_model_id(model));
    }
    Ok(format!(
        "{}/endpoints/openapi/chat/completions",
        location_url(endpoint)?
    ))
}

fn not_a_model_id(model: &str) -> ProviderError {
    ProviderError::invalid_request(format!(
        "'{}' is not a Vertex AI model id (a Gemini or Claude model, or a Model Garden model as publisher/model)",
        model.trim()
    ))
}

/// `{base}/v1/projects/{project}/locations/{location}`.
fn location_url(endpoint: &Endpoint) -> Result<String, ProviderError> {
    let location = location(endpoint)?;
    let project = endpoint.require("project")?.trim();
    let base = endpoint.base_url("base_url", Some(&default_base_url(location)))?;
    Ok(http::join_url(
        &base,
        &format!(
            "v1/projects/{}/locations/{}",
            http::encode_component(project),
            location
        ),
    ))
}

/// A Claude model's Messages body as Vertex AI takes it: the model is in
/// the URL, not the body, and the API version is in the body.
fn claude_body(mut body: Value, keep_model: bool) -> Value {
    if let Some(fields) = body.as_object_mut() {
        if !keep_model {
            fields.remove("model");
        }
        fields.insert(
            "anthropic_version".into(),
            Value::from(VERTEX_ANTHROPIC_VERSION),
        );
    }
    body
}

/// An API error; a 401 also drops the cached token (revoked or expired
/// early), so the next call signs in again instead of failing for an hour.
/// Claude's own errors come in Anthropic's shape; Vertex's (auth, quota,
/// unknown model, and the OpenAI-compatible endpoint's) in Google's.
fn upstream_error(endpoint: &Endpoint, response: &HttpResponse) -> ProviderError {
    if response.status == 401
        && let Ok(account) = account(endpoint)
    {
        account.forget_token(CLOUD_PLATFORM_SCOPE);
    }
    let anthropic_shaped = serde_json::from_slice::<Value>(&response.body)
        .is_ok_and(|body| body.get("type").and_then(Value::as_str) == Some("error"));
    if anthropic_shaped {
        anthropic::parse_error(response.status, &response.headers, &response.body)
    } else {
        gemini::parse_error(response)
    }
}

/// The `predict` body of a text-embedding call. The task type comes from
/// the shared Gemini translation (`input_type` or a Gemini client's
/// `taskType`), so both APIs map it the same way.
fn predict_body(request: &EmbeddingsRequest) -> Value {
    let batch = wire::batch_embed_contents_request_body(request, &request.model);
    let task_type = batch["requests"][0].get("taskType").cloned();
    let instances: Vec<Value> = request
        .inputs
        .iter()
        .map(|text| {
            let mut instance = Map::new();
            instance.insert("content".into(), json!(text));
            if let Some(task) = &task_type {
                instance.insert("task_type".into(), task.clone());
            }
            Value::Object(instance)
        })
        .collect();
    let mut body = Map::new();
    body.insert("instances".into(), Value::Array(instances));
    if let Some(dimensions) = request.dimensions {
        body.insert(
            "parameters".into(),
            json!({ "outputDimensionality": dimensions }),
        );
    }
    Value::Object(body)
}

#[derive(Deserialize)]
struct PredictResponse {
    predictions: Vec<Prediction>,
}

#[derive(Deserialize)]
struct Prediction {
    embeddings: PredictedEmbedding,
}

#[derive(Deserialize)]
struct PredictedEmbedding {
    values: Vec<f32>,
    #[serde(default)]
    statistics: Option<Statistics>,
}

#[derive(Deserialize)]
struct Statistics {
    /// A number Vertex sometimes writes as a float.
    #[serde(default)]
    token_count: f64,
}

fn parse_predict(body: &[u8]) -> Result<EmbeddingsResponse, ProviderError> {
    let parsed: PredictResponse = json::parse(body)?;
    let mut input_tokens = 0u32;
    let mut embeddings = Vec::with_capacity(parsed.predictions.len());
    for prediction in parsed.predictions {
        if let Some(stats) = &prediction.embeddings.statistics
            && stats.token_count.is_finite()
            && stats.token_count > 0.0
        {
            input_tokens = input_tokens.saturating_add(stats.token_count as u32);
        }
        embeddings.push(prediction.embeddings.values);
    }
    Ok(EmbeddingsResponse {
        model: String::new(),
        embeddings,
        usage: Usage {
            input_tokens,
            output_tokens: 0,
            cached_input_tokens: None,
        },
    })
}

impl Provider for Vertex {
    type StreamDecoder = VertexStream;

    fn new() -> Self {
        Vertex {
            models: catalog::load(MODELS),
        }
    }

    fn info(&self) -> ProviderInfo {
        ProviderInfo {
            models: self.models.clone(),
            ..Describe::new(
                "vertex",
                "Google Vertex AI",
                env!("CARGO_PKG_VERSION"),
                "Gemini, Claude, Model Garden and text-embedding models on Google Cloud Vertex AI, with service-account auth",
            )
            .embeddings()
            .native_dialect(Dialect::Gemini)
            .field(config::required(
                "service_account_json",
                "Service account key (JSON)",
                FieldKind::SecretJson,
                "The JSON key file of a service account with the Vertex AI User role \
                 (IAM → Service accounts → Keys → Add key → JSON).",
            ))
            .field(config::required(
                "project",
                "Project ID",
                FieldKind::String,
                "The Google Cloud project to bill, e.g. my-project-123456.",
            ))
            .field(config::required_default(
                "location",
                "Location",
                FieldKind::String,
                DEFAULT_LOCATION,
                "The region serving the model (us-central1, europe-west4, …), or global.",
            ))
            .field(config::base_url(
                None,
                "API root; defaults to https://{location}-aiplatform.googleapis.com \
                 (https://aiplatform.googleapis.com for global).",
            ))
            .field(config::optional(
                "max_tokens",
                "Default max tokens (Claude)",
                FieldKind::String,
                None,
                "max_tokens sent to Claude models when the client sets none (Anthropic requires it); defaults to the model's maximum output.",
            ))
            .egress_host(TOKEN_HOST)
            .build()
        }
    }

    fn build_chat_request(
        &self,
        endpoint: &Endpoint,
        request: ChatRequest,
        stream: bool,
    ) -> Result<HttpRequest, ProviderError> {
        // Config problems surface before any token exchange.
        let builder = match api(&request.model) {
            (Api::Gemini, _) => {
                let url = model_url(endpoint, &request.model)?;
                gemini::generate_content_request(&url, &request, stream)
            }
            (Api::Claude, id) => {
                let url = model_url(endpoint, &request.model)?;
                let max_tokens = claude::default_max_tokens(endpoint, &self.models, id)?;
                let body = anthropic::messages_request_body(&request, stream, max_tokens);
                let method = if stream {
                    "streamRawPredict"
                } else {
                    "rawPredict"
                };
                let builder = http::RequestBuilder::post(format!("{url}:{method}"))
                    .header("accept", http::accept(stream, http::SSE))
                    .json(&claude_body(body, false));
                claude::with_betas(builder, &request)
            }
            (Api::OpenAi, id) => {
                let url = openai_chat_url(endpoint, id)?;
                let id = id.to_string();
                let mut request = request;
                request.model = id;
                http::RequestBuilder::post(url)
                    .header("accept", http::accept(stream, http::SSE))
                    .json(&openai::chat_body(&request, stream, &OPENAI_BODY))
            }
        };
        let token = access_token(endpoint)?;
        Ok(builder.bearer_auth(&token).build())
    }

    fn parse_chat_response(
        &self,
        endpoint: &Endpoint,
        response: HttpResponse,
    ) -> Result<ChatResponse, ProviderError> {
        let mut answer = match api(&endpoint.model).0 {
            Api::Gemini => return gemini::parse_chat_response(&response),
            Api::Claude => anthropic::parse_message(&response.body)?,
            Api::OpenAi => openai::parse_chat_completion(&response.body)?,
        };
        // The upstream body goes only to clients of the plugin's native
        // dialect, Gemini, and this one is not Gemini's.
        answer.raw = None;
        Ok(answer)
    }

    /// `countTokens` on a Google model, with the request's contents, system
    /// instruction and tools; Anthropic's `count-tokens:rawPredict`, with
    /// the model in the body, for Claude. Model Garden's open models have
    /// no counter.
    fn build_count_tokens_request(
        &self,
        endpoint: &Endpoint,
        mut request: ChatRequest,
    ) -> Result<HttpRequest, ProviderError> {
        let builder = match api(&request.model) {
            (Api::Gemini, _) => {
                let url = model_url(endpoint, &request.model)?;
                gemini::count_tokens_request(&url, &request, None)
            }
            (Api::Claude, id) => {
                // The id is checked as a chat would; it goes in the body.
                publisher_model(&request.model)?;
                request.model = id.to_string();
                let url = format!(
                    "{}/models/count-tokens:rawPredict",
                    publisher_url(endpoint, "anthropic")?
                );
                let body = anthropic::count_tokens_request_body(&request);
                let builder = http::RequestBuilder::post(url)
                    .header("accept", "application/json")
                    .json(&claude_body(body, true));
                claude::with_betas(builder, &request)
            }
            (Api::OpenAi, _) => {
                return Err(errors::not_supported(
                    endpoint,
                    "token counting for Model Garden models",
                ));
            }
        };
        let token = access_token(endpoint)?;
        Ok(builder.bearer_auth(&token).build())
    }

    fn parse_count_tokens_response(
        &self,
        endpoint: &Endpoint,
        response: HttpResponse,
    ) -> Result<u64, ProviderError> {
        match api(&endpoint.model).0 {
            Api::Gemini => gemini::parse_count_tokens(&response),
            Api::Claude => anthropic::parse_count_tokens(&response.body),
            Api::OpenAi => Err(errors::not_supported(endpoint, "token counting")),
        }
    }

    fn build_embeddings_request(
        &self,
        endpoint: &Endpoint,
        request: EmbeddingsRequest,
    ) -> Result<HttpRequest, ProviderError> {
        if request.inputs.is_empty() {
            return Err(ProviderError::invalid_request(
                "embeddings need at least one input",
            ));
        }
        let maker = match api(&request.model).0 {
            Api::Gemini => None,
            Api::Claude => Some("a Claude model"),
            Api::OpenAi => Some("a Model Garden chat model"),
        };
        if let Some(maker) = maker {
            return Err(ProviderError::invalid_request(format!(
                "'{}' is {maker}, which makes no embeddings",
                request.model.trim()
            )));
        }
        let url = format!("{}:predict", model_url(endpoint, &request.model)?);
        let token = access_token(endpoint)?;
        Ok(http::RequestBuilder::post(url)
            .bearer_auth(&token)
            .json(&predict_body(&request))
            .build())
    }

    fn parse_embeddings_response(
        &self,
        endpoint: &Endpoint,
        response: HttpResponse,
    ) -> Result<EmbeddingsResponse, ProviderError> {
        let mut parsed = parse_predict(&response.body)?;
        parsed.model = endpoint.model.clone();
        Ok(parsed)
    }

    fn parse_error(&self, endpoint: &Endpoint, response: &HttpResponse) -> ProviderError {
        upstream_error(endpoint, response)
    }

    fn stream_decoder(&self, endpoint: &Endpoint) -> Self::StreamDecoder {
        match api(&endpoint.model).0 {
            Api::Gemini => VertexStream::Gemini(gemini::stream_decoder()),
            Api::Claude => VertexStream::Claude(claude::stream_decoder()),
            Api::OpenAi => {
                VertexStream::OpenAi(ChatStreamDecoder::new(openai::ChunkDecoder::new()))
            }
        }
    }
}

/// The stream of the endpoint's model: Gemini's SSE chunks, Claude's
/// Messages events, or Chat Completions chunks.
pub enum VertexStream {
    Gemini(GeminiStreamDecoder),
    Claude(MessagesStreamDecoder),
    OpenAi(ChatStreamDecoder),
}

impl StreamDecoder for VertexStream {
    fn push_into(&mut self, chunk: &[u8], out: &mut Vec<StreamEvent>) -> Result<(), ProviderError> {
        match self {
            VertexStream::Gemini(decoder) => decoder.push_into(chunk, out),
            VertexStream::Claude(decoder) => decoder.push_into(chunk, out),
            VertexStream::OpenAi(decoder) => decoder.push_into(chunk, out),
        }
    }

    fn finish_into(&mut self, out: &mut Vec<StreamEvent>) -> Result<(), ProviderError> {
        match self {
            VertexStream::Gemini(decoder) => decoder.finish_into(out),
            VertexStream::Claude(decoder) => decoder.finish_into(out),
            VertexStream::OpenAi(decoder) => decoder.finish_into(out),
        }
    }
}

portico_sdk::export_provider!(Vertex);

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use portico_sdk::host;
    use portico_sdk::model::{Reasoning, ReasoningEffort};
    use portico_sdk::testing::{self, *};

    // A throwaway 2048-bit key made for these tests with
    // `openssl genpkey -algorithm RSA`; it protects nothing.
    const TEST_KEY: &str = "-----BEGIN PRIVATE KEY-----
MIIEvAIBADANBgkqhkiG9w0BAQEFAASCBKYwggSiAgEAAoIBAQCtZTpTbIxOI6o5
j3fYLgmEC73W8sbkZ/+U4uU97kOADAuuuwMWmkHdvnF5dMF5D6JyMRIesEyf0VZp
VYascZqH45Yx+P8qlI7KWS6YN8R4JnYsq9R2FzclrAiQaqGQxItF5HoOtacD8AbL
LqFlMe+sgqU6mHKyBal+INtgWh1ADGWpBmmnDqPyYBwNjWEy0N9sO9aINFfmPMpy
JbkIXb2OBXy6LKIGVu7Gk7cJdcLcYSZyM2Myu7+HHgkuHrl+g4vyOoVVOBC6FYHE
Tu3dHIgH+roH47Ai9LAKuQsHHUkynh93Kf6apVZByuxWGeVgAecVXG1DjaOpgcph
V3wYDvh5AgMBAAECggEACKPxdNxFHpSw5Bbl3DApGbsjDd3BsvqKth7bWQtxMiWH
hIC9refobdYSXgDHLlLs359Z3Y0f+FvMYEnagOfVUT2yS5Gyl2rZNbSdeYjX4bva
6i1y1CKihR5OO/IQVIAyx3wT5/090hipIgFUGhCTtqc4+BNGLeBR2p7lB6dd60XN
p2rVIaa/5bIB4sf0/OsEYT9nzJHJ+Uqav2JFKbgSPJzdEfrHvtEub9L5CBy3+A5f
12u5vAxnGrQHSXZycgCZe5dIYZrJS1qcjDqzngA+irBkBtNmsT1sMgPmct9DlvNY
mLbISGC1CmINWrdWzB2FcWWCvVwwGXjB2zt+b35NgQKBgQDzwaa+eBSJJb9U58g/
0vxagZ9J33d39rHiawKpBAF55t2N30O0bbgzQDLaaPdTNSEAULstHPN1O/zkwNOo
u0i+HmR7jdRyHcBafZgu7dBoOODXf4ViHFr+kTJhBdP0rfFRlYE1EjpzWb4twLfi
kSnAIHOy2aA1JXEafk2GN9hWwQKBgQC2GtZdrWOc6Q05JGkZi5ItsANBY0IiHA/F
8vNH1MJ8yMv3zcWTk/Ys7ywi/oqejDz2bWJoJ4bcwXKg9/wdcjDynckRIv5ZNJx+
1HskjPgCVv6Mnt8s6jHfJDEV2PA+YESpCKXeE/OLg81ZG2nZTe19NgPcHJogaHG1
FLraOZkHuQKBgDNAwKLD9O1xdm2P3tcsscsF/kw2JJSg1n5ZKdIH+Zd8J5GxJDdH
6rc8BHVQJNDmFu5OC01NDRPVbTNcKCUOXBk9orsn80ebYdqlFd6oOm3vp7coJQ+g
DrIALaug4hRMjrUszmIuVwPyFr7gCsok47Z2HF26zKjgGowLiplyHJcBAoGAbt8G
FsDDPjxR9bFqX8gvNqvMP5pMIHJPVCin39r0kn66WGQq38AdCJyRlbi98uvVDf/p
AxrVrEAHJ2P0VoU4se5JBar1iqBSi5GYa9d8BAitMDZmEHWB6aaiT/flxURdaUC/
o+cnx5B2jML4/fnJFwu06+VqHUMZv7MgVE7vEdkCgYBk5qsErZkKKCuqKxRrW4IT
71eAWE4GF4DCc5wiub5Z4qr6chvy+gs+rr8ZzxHzeGA4l4/jBnkUiwkgWBGhM7sW
87tvii8VYWmHrmY/Mg9+oB4hxn3N9u8UHVwH1v8rIxgZUZnXlh8vSGtAcCyydbAc
DdRvFRf0VcAOncEy0IqnJw==
-----END PRIVATE KEY-----
";

    const CLIENT_EMAIL: &str = "gateway@portico-test.iam.gserviceaccount.com";

    /// A key file shaped like the ones IAM hands out.
    fn key_file() -> String {
        json!({
            "type": "service_account",
            "project_id": "portico-test",
            "private_key_id": "5f0c9a1b2d3e4f5061728394a5b6c7d8e9f00112",
            "private_key": TEST_KEY,
            "client_email": CLIENT_EMAIL,
            "client_id": "109876543210987654321",
            "auth_uri": "https://accounts.google.com/o/oauth2/auth",
            "token_uri": "https://oauth2.googleapis.com/token",
            "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
            "universe_domain": "googleapis.com",
        })
        .to_string()
    }

    /// An endpoint with a key file and a project unless `pairs` set them.
    fn endpoint(pairs: &[(&str, &str)]) -> Endpoint {
        let key = key_file();
        let mut config = pairs.to_vec();
        for (name, default) in [
            ("service_account_json", key.as_str()),
            ("project", "portico-test"),
        ] {
            if !config.iter().any(|(k, _)| *k == name) {
                config.push((name, default));
            }
        }
        testing::endpoint("vx", "gemini-2.5-flash", &config)
    }

    /// Puts a token in the (native, per-thread) host cache as a previous
    /// exchange would have; natively there is no network to exchange with.
    fn with_cached_token(ep: &Endpoint, token: &str) {
        let account = account(ep).unwrap();
        host::cache_set(
            &account.cache_key(CLOUD_PLATFORM_SCOPE),
            token.as_bytes(),
            60_000,
        );
    }

    fn chat(model: &str) -> ChatRequest {
        ChatRequest {
            model: model.into(),
            messages: vec![Message::user("Hi")],
            ..Default::default()
        }
    }

    #[test]
    fn describes_itself() {
        let info = Vertex::new().info();
        assert_eq!(info.id, "vertex");
        assert_eq!(info.native_dialect, Some(Dialect::Gemini));
        for op in [
            Operation::Chat,
            Operation::ChatStream,
            Operation::Embeddings,
        ] {
            assert!(info.supports(op), "{op:?}");
        }
        assert_eq!(
            fields(&info),
            vec![
                ("service_account_json", FieldKind::SecretJson, true, None),
                ("project", FieldKind::String, true, None),
                ("location", FieldKind::String, true, Some("us-central1")),
                ("base_url", FieldKind::Url, false, None),
                ("max_tokens", FieldKind::String, false, None),
            ]
        );
        assert_eq!(info.egress_hosts, vec!["oauth2.googleapis.com".to_string()]);
    }

    #[test]
    fn catalog_is_valid_and_complete() {
        let models = assert_catalog_rules(
            MODELS,
            &[
                "gemini-2.5-pro",
                "gemini-2.5-flash",
                "gemini-2.5-flash-lite",
                "gemini-2.0-flash",
                "gemini-embedding-001",
                "text-embedding-005",
                "claude-sonnet-4-5@20250929",
                "claude-haiku-4-5@20251001",
                "meta/llama-4-maverick-17b-128e-instruct-maas",
            ],
        );
        for model in models.iter().filter(|m| !m.capabilities.embeddings) {
            // Every catalog id names the API that serves it.
            let expected = if model.id.starts_with("claude-") {
                Api::Claude
            } else if model.id.contains('/') {
                Api::OpenAi
            } else {
                Api::Gemini
            };
            assert_eq!(api(&model.id), (expected, model.id.as_str()));
            let vision = model.capabilities.vision || expected == Api::OpenAi;
            assert!(model.capabilities.tools && vision, "{}", model.id);
            assert!(model.max_output_tokens < model.context_window);
            assert!(model.output_price_per_mtok >= model.input_price_per_mtok);
        }
    }

    #[test]
    fn counts_tokens_with_count_tokens() {
        let provider = Vertex::new();
        let ep = endpoint(&[("location", "europe-west4")]);
        with_cached_token(&ep, "ya29.cached");
        let http = provider
            .build_count_tokens_request(&ep, chat("gemini-2.5-flash"))
            .unwrap();
        assert_eq!(
            http.url,
            "https://europe-west4-aiplatform.googleapis.com/v1/projects/portico-test/locations/europe-west4/publishers/google/models/gemini-2.5-flash:countTokens"
        );
        assert_eq!(header(&http, "authorization"), Some("Bearer ya29.cached"));
        assert_eq!(
            json_body(&http)["contents"][0]["parts"],
            json!([{"text": "Hi"}])
        );
        let counted = portico_sdk::parse_count_tokens(
            &provider,
            &ep,
            response(
                200,
                &[],
                r#"{"totalTokens": 3, "totalBillableCharacters": 2}"#,
            ),
        );
        assert_eq!(counted, Ok(3));
    }

    #[test]
    fn builds_chat_request_with_a_bearer_token() {
        let provider = Vertex::new();
        let ep = endpoint(&[("location", "europe-west4")]);
        with_cached_token(&ep, "ya29.cached");
        let request = ChatRequest {
            model: "gemini-2.5-flash".into(),
            system: Some("Be brief.".into()),
            messages: vec![
                Message::user("Weather in Paris?"),
                Message {
                    role: Role::Assistant,
                    content: vec![ContentPart::ToolCall {
                        id: "call_1".into(),
                        name: "get_weather".into(),
                        arguments: r#"{"city":"Paris"}"#.into(),
                    }],
                },
                Message {
                    role: Role::Tool,
                    content: vec![ContentPart::ToolResult {
                        tool_call_id: "call_1".into(),
                        name: None,
                        content: "18 C".into(),
                        is_error: false,
                    }],
                },
            ],
            params: SamplingParams {
                max_tokens: Some(64),
                ..Default::default()
            },
            ..Default::default()
        };
        let http = provider.build_chat_request(&ep, request, false).unwrap();
        assert_eq!(http.method, "POST");
        assert_eq!(
            http.url,
            "https://europe-west4-aiplatform.googleapis.com/v1/projects/portico-test/locations/europe-west4/publishers/google/models/gemini-2.5-flash:generateContent"
        );
        assert_eq!(header(&http, "authorization"), Some("Bearer ya29.cached"));
        assert_eq!(header(&http, "x-goog-api-key"), None);
        let sent = json_body(&http);
        assert_eq!(
            sent["systemInstruction"],
            json!({"parts": [{"text": "Be brief."}]})
        );
        assert_eq!(sent["generationConfig"], json!({"maxOutputTokens": 64}));
        let contents = sent["contents"].as_array().unwrap();
        assert_eq!(contents.len(), 3);
        assert_eq!(contents[1]["role"], "model");
        assert_eq!(
            contents[1]["parts"][0]["functionCall"],
            json!({"name": "get_weather", "args": {"city": "Paris"}})
        );
        assert_eq!(contents[2]["role"], "user");
        assert_eq!(
            contents[2]["parts"][0]["functionResponse"]["name"],
            "get_weather"
        );

        let http = provider
            .build_chat_request(&ep, chat("publishers/google/models/gemini-2.0-flash"), true)
            .unwrap();
        assert!(
            http.url.ends_with(
                "/publishers/google/models/gemini-2.0-flash:streamGenerateContent?alt=sse"
            )
        );
        assert_eq!(header(&http, "accept"), Some("text/event-stream"));
    }

    #[test]
    fn base_urls_per_location() {
        let provider = Vertex::new();
        let global = endpoint(&[("location", "global")]);
        with_cached_token(&global, "t");
        let http = provider
            .build_chat_request(&global, chat("gemini-3-pro-preview"), false)
            .unwrap();
        assert_eq!(
            http.url,
            "https://aiplatform.googleapis.com/v1/projects/portico-test/locations/global/publishers/google/models/gemini-3-pro-preview:generateContent"
        );

        let defaulted = endpoint(&[]);
        with_cached_token(&defaulted, "t");
        let http = provider
            .build_chat_request(&defaulted, chat("gemini-2.5-pro"), false)
            .unwrap();
        assert!(
            http.url
                .starts_with("https://us-central1-aiplatform.googleapis.com/v1/projects/portico-test/locations/us-central1/")
        );

        let proxied = endpoint(&[("base_url", "http://127.0.0.1:9000/vertex/")]);
        with_cached_token(&proxied, "t");
        let http = provider
            .build_chat_request(&proxied, chat("gemini-2.5-pro"), false)
            .unwrap();
        assert_eq!(
            http.url,
            "http://127.0.0.1:9000/vertex/v1/projects/portico-test/locations/us-central1/publishers/google/models/gemini-2.5-pro:generateContent"
        );
    }

    #[test]
    fn config_problems_are_clear_and_secret_free() {
        let provider = Vertex::new();
        let check = |ep: Endpoint, model: &str, needle: &str| {
            let err = provider
                .build_chat_request(&ep, chat(model), false)
                .unwrap_err();
            assert_eq!(err.kind, ErrorKind::InvalidRequest, "{}", err.message);
            assert!(err.message.contains(needle), "{}", err.message);
            assert!(!err.message.contains("MIIE"), "{}", err.message);
        };
        check(
            endpoint(&[("location", "us-central1.evil.com/")]),
            "gemini-2.5-flash",
            "'location'",
        );
        check(endpoint(&[]), "../../other", "model id");
        let mut no_project = endpoint(&[]);
        no_project.config.remove("project");
        check(no_project, "gemini-2.5-flash", "missing config 'project'");
        check(
            endpoint(&[("service_account_json", "{\"type\": \"service_account\"}")]),
            "gemini-2.5-flash",
            "'client_email' is missing",
        );
        check(
            endpoint(&[("service_account_json", "not json at all")]),
            "gemini-2.5-flash",
            "service_account_json",
        );
        let bad_key = json!({"type": "service_account", "client_email": CLIENT_EMAIL,
                             "private_key": "-----BEGIN PRIVATE KEY-----\nMIIEsecret\n-----END PRIVATE KEY-----\n"});
        let err = provider
            .build_chat_request(
                &endpoint(&[("service_account_json", &bad_key.to_string())]),
                chat("gemini-2.5-flash"),
                false,
            )
            .unwrap_err();
        assert_eq!(err.kind, ErrorKind::InvalidRequest);
        assert!(!err.message.contains("MIIEsecret"));
    }

    #[test]
    fn without_a_cached_token_the_exchange_is_attempted() {
        // Natively http_fetch always fails: reaching it proves the plugin
        // went for a fresh token with a signed assertion.
        let ep = endpoint(&[("project", "fresh-project")]);
        let err = Vertex::new()
            .build_chat_request(&ep, chat("gemini-2.5-flash"), false)
            .unwrap_err();
        assert_eq!((err.kind, err.status), (ErrorKind::Upstream, 502));
        assert!(err.message.contains("token endpoint"), "{}", err.message);

        // The assertion it would send: claims Google requires, signed by
        // the key file's key.
        let account = account(&ep).unwrap();
        let jwt = account
            .assertion(CLOUD_PLATFORM_SCOPE, 1_700_000_000)
            .unwrap();
        let payload = jwt.split('.').nth(1).unwrap();
        let claims: Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
        assert_eq!(
            claims,
            json!({
                "iss": CLIENT_EMAIL,
                "scope": "https://www.googleapis.com/auth/cloud-platform",
                "aud": "https://oauth2.googleapis.com/token",
                "iat": 1_700_000_000u64,
                "exp": 1_700_003_600u64,
            })
        );
        let token_request = account.token_request(&jwt);
        assert_eq!(token_request.url, "https://oauth2.googleapis.com/token");
        // The token host is declared egress, so the host lets the exchange
        // through in production.
        assert!(
            Vertex::new()
                .info()
                .egress_hosts
                .contains(&"oauth2.googleapis.com".to_string())
        );
    }

    #[test]
    fn unauthorized_answers_drop_the_cached_token() {
        let provider = Vertex::new();
        let ep = endpoint(&[]);
        with_cached_token(&ep, "ya29.revoked");
        let key = account(&ep).unwrap().cache_key(CLOUD_PLATFORM_SCOPE);
        assert!(host::cache_get(&key).is_some());
        let denied = json_response(
            403,
            &[],
            r#"{"error": {"code": 403, "message": "Permission 'aiplatform.endpoints.predict' denied on resource.", "status": "PERMISSION_DENIED"}}"#,
        );
        assert_eq!(
            provider.parse_error(&ep, &denied).kind,
            ErrorKind::Permission
        );
        assert!(host::cache_get(&key).is_some(), "403 keeps the token");
        let unauthorized = json_response(
            401,
            &[],
            r#"{"error": {"code": 401, "message": "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential.", "status": "UNAUTHENTICATED"}}"#,
        );
        let err = portico_sdk::parse_chat(&provider, &ep, unauthorized).unwrap_err();
        assert_eq!((err.kind, err.status), (ErrorKind::Authentication, 401));
        assert!(host::cache_get(&key).is_none(), "401 drops the token");
    }

    #[test]
    fn maps_upstream_errors() {
        let provider = Vertex::new();
        let ep = endpoint(&[]);
        let mut limited = json_response(
            429,
            &[],
            r#"{"error": {"code": 429, "message": "Resource exhausted. Please try again later.", "status": "RESOURCE_EXHAUSTED"}}"#,
        );
        limited.headers.push(("retry-after".into(), "4".into()));
        let err = provider.parse_error(&ep, &limited);
        assert_eq!(
            (err.kind, err.status, err.retry_after_ms),
            (ErrorKind::RateLimited, 429, Some(4000))
        );
        let not_found = json_response(
            404,
            &[],
            r#"{"error": {"code": 404, "message": "Publisher Model `projects/p/locations/us-central1/publishers/google/models/gemini-9` was not found or your project does not have access to it.", "status": "NOT_FOUND"}}"#,
        );
        assert_eq!(
            portico_sdk::parse_embeddings(&provider, &ep, not_found)
                .unwrap_err()
                .kind,
            ErrorKind::NotFound
        );
        let internal = json_response(
            500,
            &[],
            r#"{"error": {"code": 500, "message": "Internal error encountered.", "status": "INTERNAL"}}"#,
        );
        assert_eq!(provider.parse_error(&ep, &internal).status, 502);
    }

    #[test]
    fn parses_chat_response() {
        let provider = Vertex::new();
        let ep = endpoint(&[]);
        let body = r#"{
          "candidates": [{
            "content": {"role": "model", "parts": [{"text": "Bonjour !"}]},
            "finishReason": "MAX_TOKENS",
            "avgLogprobs": -0.08
          }],
          "usageMetadata": {"promptTokenCount": 7, "candidatesTokenCount": 3, "totalTokenCount": 10, "trafficType": "ON_DEMAND",
                            "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 7}]},
          "modelVersion": "gemini-2.5-flash",
          "createTime": "2025-06-09T12:00:00.123456Z",
          "responseId": "vx-1"
        }"#;
        let parsed =
            portico_sdk::parse_chat(&provider, &ep, json_response(200, &[], body)).unwrap();
        assert_eq!(parsed.text(), "Bonjour !");
        assert_eq!(parsed.finish_reason, FinishReason::Length);
        assert_eq!(
            (parsed.usage.input_tokens, parsed.usage.output_tokens),
            (7, 3)
        );
        assert_eq!(parsed.id, "vx-1");
    }

    #[test]
    fn embeddings_through_predict() {
        let provider = Vertex::new();
        let ep = endpoint(&[("location", "us-east4")]);
        with_cached_token(&ep, "ya29.embed");
        let request = EmbeddingsRequest {
            model: "text-embedding-005".into(),
            inputs: vec!["first doc".into(), "second".into()],
            dimensions: Some(256),
            input_type: Some("search_document".into()),
            ..Default::default()
        };
        let http = provider.build_embeddings_request(&ep, request).unwrap();
        assert_eq!(
            http.url,
            "https://us-east4-aiplatform.googleapis.com/v1/projects/portico-test/locations/us-east4/publishers/google/models/text-embedding-005:predict"
        );
        assert_eq!(header(&http, "authorization"), Some("Bearer ya29.embed"));
        assert_eq!(
            json_body(&http),
            json!({
                "instances": [
                    {"content": "first doc", "task_type": "RETRIEVAL_DOCUMENT"},
                    {"content": "second", "task_type": "RETRIEVAL_DOCUMENT"},
                ],
                "parameters": {"outputDimensionality": 256},
            })
        );
        let plain = EmbeddingsRequest {
            model: "gemini-embedding-001".into(),
            inputs: vec!["x".into()],
            ..Default::default()
        };
        assert_eq!(
            json_body(&provider.build_embeddings_request(&ep, plain).unwrap()),
            json!({"instances": [{"content": "x"}]})
        );
        let empty = EmbeddingsRequest {
            model: "gemini-embedding-001".into(),
            ..Default::default()
        };
        assert!(provider.build_embeddings_request(&ep, empty).is_err());

        let answer = r#"{
          "predictions": [
            {"embeddings": {"statistics": {"truncated": false, "token_count": 4}, "values": [0.5, -0.25, 0.125]}},
            {"embeddings": {"statistics": {"truncated": false, "token_count": 2.0}, "values": [1, 0, -1]}}
          ],
          "metadata": {"billableCharacterCount": 15}
        }"#;
        let parsed =
            portico_sdk::parse_embeddings(&provider, &ep, json_response(200, &[], answer)).unwrap();
        assert_eq!(
            parsed.embeddings,
            vec![vec![0.5, -0.25, 0.125], vec![1.0, 0.0, -1.0]]
        );
        assert_eq!(parsed.usage.input_tokens, 6);
        assert_eq!(parsed.model, "gemini-2.5-flash");
        for bad in [
            r#"{}"#,
            r#"{"predictions": [{"embeddings": {}}]}"#,
            "<html>",
        ] {
            assert_eq!(
                portico_sdk::parse_embeddings(&provider, &ep, json_response(200, &[], bad))
                    .unwrap_err()
                    .kind,
                ErrorKind::Upstream,
                "{bad}"
            );
        }
    }

    #[test]
    fn decodes_streams_split_at_every_byte() {
        let stream = concat!(
            "data: {\"candidates\": [{\"content\": {\"role\": \"model\",\"parts\": [{\"text\": \"Bon\"}]}}],\"usageMetadata\": {\"trafficType\": \"ON_DEMAND\"},\"modelVersion\": \"gemini-2.5-flash\",\"createTime\": \"2025-06-09T12:00:00Z\",\"responseId\": \"vx-2\"}\r\n\r\n",
            "data: {\"candidates\": [{\"content\": {\"role\": \"model\",\"parts\": [{\"text\": \"jour \u{2600}\"}]},\"finishReason\": \"STOP\"}],\"usageMetadata\": {\"promptTokenCount\": 5,\"candidatesTokenCount\": 2,\"totalTokenCount\": 7,\"trafficType\": \"ON_DEMAND\"},\"modelVersion\": \"gemini-2.5-flash\",\"createTime\": \"2025-06-09T12:00:00Z\",\"responseId\": \"vx-2\"}\r\n\r\n",
        );
        let provider = Vertex::new();
        let whole = decode_split_everywhere(
            || provider.stream_decoder(&endpoint(&[])),
            stream.as_bytes(),
        )
        .unwrap();
        let text: String = StreamEvent::text_deltas(&whole).collect();
        assert_eq!(text, "Bonjour \u{2600}");
        assert_eq!(
            whole.last(),
            Some(&StreamEvent::Finish {
                reason: FinishReason::Stop
            })
        );
        assert!(whole.contains(&StreamEvent::Usage {
            usage: Usage {
                input_tokens: 5,
                output_tokens: 2,
                cached_input_tokens: None
            }
        }));
    }

    /// An endpoint serving `model` (a Claude model), signed in.
    fn claude_endpoint(model: &str, pairs: &[(&str, &str)]) -> Endpoint {
        let mut ep = endpoint(pairs);
        ep.model = model.into();
        with_cached_token(&ep, "ya29.claude");
        ep
    }

    const CLAUDE: &str = "claude-sonnet-4-5@20250929";
    const CLAUDE_PATH: &str = "https://europe-west4-aiplatform.googleapis.com/v1/projects/portico-test/locations/europe-west4/publishers/anthropic/models";

    #[test]
    fn claude_models_take_the_messages_body_through_raw_predict() {
        let provider = Vertex::new();
        let ep = claude_endpoint(CLAUDE, &[("location", "europe-west4")]);
        let mut request = chat(CLAUDE);
        request.system = Some("Be brief.".into());
        request.params.temperature = Some(0.5);
        let http = provider.build_chat_request(&ep, request, false).unwrap();
        assert_eq!(http.url, format!("{CLAUDE_PATH}/{CLAUDE}:rawPredict"));
        assert_eq!(header(&http, "authorization"), Some("Bearer ya29.claude"));
        assert_eq!(header(&http, "x-api-key"), None);
        assert_eq!(header(&http, "anthropic-version"), None);
        // No model in the body (it is in the URL); the version is; the
        // catalog's maximum output is the max_tokens Anthropic requires.
        assert_eq!(
            json_body(&http),
            json!({
                "anthropic_version": "vertex-2023-10-16",
                "max_tokens": 64000,
                "system": "Be brief.",
                "messages": [{"role": "user", "content": "Hi"}],
                "temperature": 0.5,
            })
        );

        let http = provider
            .build_chat_request(&ep, chat(CLAUDE), true)
            .unwrap();
        assert_eq!(http.url, format!("{CLAUDE_PATH}/{CLAUDE}:streamRawPredict"));
        assert_eq!(header(&http, "accept"), Some("text/event-stream"));
        assert_eq!(json_body(&http)["stream"], json!(true));

        // The publisher may be spelled out; the endpoint's max_tokens
        // applies to models the catalog does not know.
        let named = "publishers/anthropic/models/claude-future@20990101";
        let ep = claude_endpoint(
            named,
            &[("location", "europe-west4"), ("max_tokens", "900")],
        );
        let http = provider
            .build_chat_request(&ep, chat(named), false)
            .unwrap();
        assert_eq!(
            http.url,
            format!("{CLAUDE_PATH}/claude-future@20990101:rawPredict")
        );
        assert_eq!(json_body(&http)["max_tokens"], json!(900));
        let bad = claude_endpoint(CLAUDE, &[("max_tokens", "many")]);
        let err = provider
            .build_chat_request(&bad, chat(CLAUDE), false)
            .unwrap_err();
        assert_eq!(err.status, 400);
        assert!(err.message.contains("'max_tokens'"), "{}", err.message);
    }

    #[test]
    fn claude_token_counts_go_to_count_tokens_with_the_model_in_the_body() {
        let provider = Vertex::new();
        let ep = claude_endpoint(CLAUDE, &[("location", "europe-west4")]);
        let mut request = chat(CLAUDE);
        request.extra_dialect = Some("anthropic".into());
        anthropic::set_betas(&mut request, ["token-efficient-tools-2025-02-19"]).unwrap();
        let http = provider
            .build_chat_request(&ep, request.clone(), true)
            .unwrap();
        assert_eq!(
            header(&http, "anthropic-beta"),
            Some("token-efficient-tools-2025-02-19")
        );
        assert!(json_body(&http).get("anthropic_beta").is_none());

        let http = provider.build_count_tokens_request(&ep, request).unwrap();
        assert_eq!(
            header(&http, "anthropic-beta"),
            Some("token-efficient-tools-2025-02-19")
        );
        assert_eq!(http.url, format!("{CLAUDE_PATH}/count-tokens:rawPredict"));
        assert_eq!(header(&http, "authorization"), Some("Bearer ya29.claude"));
        assert_eq!(
            json_body(&http),
            json!({
                "anthropic_version": "vertex-2023-10-16",
                "model": CLAUDE,
                "messages": [{"role": "user", "content": "Hi"}],
            })
        );
        let counted = portico_sdk::parse_count_tokens(
            &provider,
            &ep,
            response(200, &[], r#"{"input_tokens": 9}"#),
        );
        assert_eq!(counted, Ok(9));
    }

    #[test]
    fn claude_answers_errors_and_streams() {
        let provider = Vertex::new();
        let ep = claude_endpoint(CLAUDE, &[]);
        let answer = r#"{"id":"msg_vrtx_01","type":"message","role":"assistant","model":"claude-sonnet-4-5-20250929",
            "content":[{"type":"text","text":"Hello from Claude"}],"stop_reason":"end_turn","stop_sequence":null,
            "usage":{"input_tokens":7,"output_tokens":4}}"#;
        let parsed =
            portico_sdk::parse_chat(&provider, &ep, json_response(200, &[], answer)).unwrap();
        assert_eq!(parsed.text(), "Hello from Claude");
        assert_eq!(parsed.finish_reason, FinishReason::Stop);
        assert_eq!(
            (parsed.usage.input_tokens, parsed.usage.output_tokens),
            (7, 4)
        );
        // Gemini clients (the plugin's native dialect) must not get
        // Anthropic's body as if it were Gemini's.
        assert_eq!(parsed.raw, None);

        // Claude's own errors are Anthropic-shaped; Vertex's are Google's.
        let overloaded = json_response(
            529,
            &[],
            r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
        );
        let err = provider.parse_error(&ep, &overloaded);
        assert_eq!(
            (err.kind, err.message.as_str()),
            (ErrorKind::Overloaded, "Overloaded")
        );
        let quota = json_response(
            429,
            &[],
            r#"{"error":{"code":429,"message":"Quota exceeded for aiplatform.googleapis.com/online_prediction_requests_per_base_model","status":"RESOURCE_EXHAUSTED"}}"#,
        );
        let err = provider.parse_error(&ep, &quota);
        assert_eq!((err.kind, err.status), (ErrorKind::RateLimited, 429));
        assert!(err.message.contains("Quota exceeded"), "{}", err.message);

        let stream = concat!(
            "event: message_start\n",
            "data: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_vrtx_02\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude-sonnet-4-5-20250929\",\"content\":[],\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":7,\"output_tokens\":1}}}\n\n",
            "event: content_block_start\n",
            "data: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n",
            "event: content_block_delta\n",
            "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Servus \u{2600}\"}}\n\n",
            "event: content_block_stop\n",
            "data: {\"type\":\"content_block_stop\",\"index\":0}\n\n",
            "event: message_delta\n",
            "data: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":3}}\n\n",
            "event: message_stop\n",
            "data: {\"type\":\"message_stop\"}\n\n",
        );
        let events =
            decode_split_everywhere(|| provider.stream_decoder(&ep), stream.as_bytes()).unwrap();
        assert!(events.contains(&StreamEvent::TextDelta {
            text: "Servus \u{2600}".into()
        }));
        assert_eq!(
            events.last(),
            Some(&StreamEvent::Finish {
                reason: FinishReason::Stop
            })
        );
        // A stream cut before message_stop is an incomplete answer.
        let cut = stream.find("event: message_stop").unwrap();
        let mut decoder = provider.stream_decoder(&ep);
        decoder.push(&stream.as_bytes()[..cut]).unwrap();
        assert_eq!(decoder.finish().unwrap_err().kind, ErrorKind::Upstream);
    }

    #[test]
    fn claude_models_make_no_embeddings() {
        let provider = Vertex::new();
        let ep = claude_endpoint(CLAUDE, &[]);
        let request = EmbeddingsRequest {
            model: CLAUDE.into(),
            inputs: vec!["x".into()],
            ..Default::default()
        };
        let err = provider.build_embeddings_request(&ep, request).unwrap_err();
        assert_eq!(err.status, 400);
        assert!(err.message.contains("Claude"), "{}", err.message);
    }

    const LLAMA: &str = "meta/llama-4-maverick-17b-128e-instruct-maas";

    #[test]
    fn model_garden_models_go_to_the_openai_compatible_endpoint() {
        let provider = Vertex::new();
        let mut ep = endpoint(&[("location", "europe-west4")]);
        ep.model = LLAMA.into();
        with_cached_token(&ep, "ya29.maas");
        let mut request = chat(LLAMA);
        request.system = Some("Be brief.".into());
        request.params.max_tokens = Some(100);
        request.reasoning = Some(Reasoning {
            effort: Some(ReasoningEffort::High),
            budget_tokens: None,
        });
        let http = provider
            .build_chat_request(&ep, request.clone(), false)
            .unwrap();
        assert_eq!(
            http.url,
            "https://europe-west4-aiplatform.googleapis.com/v1/projects/portico-test/locations/europe-west4/endpoints/openapi/chat/completions"
        );
        assert_eq!(header(&http, "authorization"), Some("Bearer ya29.maas"));
        // The model stays in the body, as publisher/model; max_tokens by
        // that name; no reasoning_effort, which most open models refuse.
        assert_eq!(
            json_body(&http),
            json!({
                "model": LLAMA,
                "messages": [
                    {"role": "system", "content": "Be brief."},
                    {"role": "user", "content": "Hi"},
                ],
                "max_tokens": 100,
            })
        );
        let http = provider.build_chat_request(&ep, request, true).unwrap();
        let body = json_body(&http);
        assert_eq!(
            (&body["stream"], &body["stream_options"]),
            (&json!(true), &json!({"include_usage": true}))
        );
        assert_eq!(header(&http, "accept"), Some("text/event-stream"));

        let answer = r#"{"id":"chatcmpl-vx","object":"chat.completion","created":1,"model":"meta/llama-4-maverick-17b-128e-instruct-maas",
            "choices":[{"index":0,"message":{"role":"assistant","content":"Hello from Llama"},"finish_reason":"stop"}],
            "usage":{"prompt_tokens":6,"completion_tokens":3,"total_tokens":9}}"#;
        let parsed =
            portico_sdk::parse_chat(&provider, &ep, json_response(200, &[], answer)).unwrap();
        assert_eq!(parsed.text(), "Hello from Llama");
        assert_eq!(parsed.raw, None);

        let stream = concat!(
            "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"Hol\"}}]}\n\n",
            "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"a \u{2600}\"},\"finish_reason\":\"stop\"}]}\n\n",
            "data: [DONE]\n\n",
        );
        let events =
            decode_split_everywhere(|| provider.stream_decoder(&ep), stream.as_bytes()).unwrap();
        let text: String = StreamEvent::text_deltas(&events).collect();
        assert_eq!(text, "Hola \u{2600}");

        // No counter, no embeddings; a malformed id is named.
        let err = provider
            .build_count_tokens_request(&ep, chat(LLAMA))
            .unwrap_err();
        assert_eq!(err.status, 400);
        let embed = EmbeddingsRequest {
            model: LLAMA.into(),
            inputs: vec!["x".into()],
            ..Default::default()
        };
        let err = provider.build_embeddings_request(&ep, embed).unwrap_err();
        assert!(
            err.message.contains("makes no embeddings"),
            "{}",
            err.message
        );
        for bad in ["meta/", "/llama", "meta/llama/extra", "meta/llama 4"] {
            let err = provider
                .build_chat_request(&ep, chat(bad), false)
                .unwrap_err();
            assert!(
                err.message.contains("publisher/model"),
                "{bad}: {}",
                err.message
            );
        }
    }
}
