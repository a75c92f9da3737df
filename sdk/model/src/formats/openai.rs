//! OpenAI Chat Completions / Embeddings wire format (to be written).
