//! Wire formats of the public LLM APIs, translated to and from the neutral
//! model. Each format module holds both directions, so the host (serving a
//! client dialect) and a plugin (speaking to a provider) share one
//! implementation.

pub mod anthropic;
pub mod bedrock;
pub mod cohere;
pub mod common;
pub mod gemini;
pub mod ollama;
pub mod openai;
pub mod openai_responses;
