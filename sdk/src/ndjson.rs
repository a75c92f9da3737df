//! Newline-delimited JSON framing (Ollama-style streams) for bytes that
//! arrive split anywhere, plus [`NdjsonStream`], which turns a per-object
//! decoder into a complete [`StreamDecoder`].

use portico_model::formats::common::truncate;
use portico_model::{ProviderError, StreamEvent};
use serde_json::Value;

use crate::StreamDecoder;

/// Incremental NDJSON parser: one JSON value per line (LF or CRLF); blank
/// lines are skipped.
#[derive(Debug, Clone, Default)]
pub struct NdjsonDecoder {
    buffer: Vec<u8>,
}

impl NdjsonDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds a chunk; returns the values of the lines it completed.
    pub fn push(&mut self, chunk: &[u8]) -> Result<Vec<Value>, ProviderError> {
        let mut values = Vec::new();
        self.push_into(chunk, &mut values)?;
        Ok(values)
    }

    /// [`push`](Self::push), appending to `out`: the values of the lines
    /// before one that is not JSON stay there when it fails.
    pub fn push_into(&mut self, chunk: &[u8], out: &mut Vec<Value>) -> Result<(), ProviderError> {
        let scan_from = self.buffer.len();
        self.buffer.extend_from_slice(chunk);
        let Some(last_newline) = self.buffer[scan_from..].iter().rposition(|b| *b == b'\n') else {
            return Ok(());
        };
        let complete: Vec<u8> = self.buffer.drain(..=scan_from + last_newline).collect();
        for line in complete.split(|b| *b == b'\n') {
            out.extend(parse_line(line)?);
        }
        Ok(())
    }

    /// Ends the stream: parses a final line without a trailing newline.
    pub fn finish(&mut self) -> Result<Vec<Value>, ProviderError> {
        let rest = std::mem::take(&mut self.buffer);
        Ok(parse_line(&rest)?.into_iter().collect())
    }
}

fn parse_line(line: &[u8]) -> Result<Option<Value>, ProviderError> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if line.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    serde_json::from_slice(line).map(Some).map_err(|e| {
        ProviderError::bad_upstream(format!(
            "upstream stream line is not valid JSON ({e}): {}",
            truncate(&String::from_utf8_lossy(line), 200)
        ))
    })
}

/// Turns the JSON lines of one provider into neutral stream events.
pub trait LineDecoder: 'static {
    /// The neutral events of one JSON line.
    fn decode(&mut self, line: Value) -> Result<Vec<StreamEvent>, ProviderError>;

    /// Called once the body ended: final events, or an error when the
    /// stream is incomplete.
    fn end(&mut self) -> Result<Vec<StreamEvent>, ProviderError> {
        Ok(Vec::new())
    }
}

/// A [`StreamDecoder`] for NDJSON bodies.
#[derive(Debug, Clone, Default)]
pub struct NdjsonStream<D> {
    lines: NdjsonDecoder,
    decoder: D,
}

impl<D: LineDecoder> NdjsonStream<D> {
    pub fn new(decoder: D) -> Self {
        Self {
            lines: NdjsonDecoder::new(),
            decoder,
        }
    }
}

impl<D: LineDecoder> StreamDecoder for NdjsonStream<D> {
    fn push_into(&mut self, chunk: &[u8], out: &mut Vec<StreamEvent>) -> Result<(), ProviderError> {
        let mut lines = Vec::new();
        let framed = self.lines.push_into(chunk, &mut lines);
        for line in lines {
            out.extend(self.decoder.decode(line)?);
        }
        framed
    }

    fn finish_into(&mut self, out: &mut Vec<StreamEvent>) -> Result<(), ProviderError> {
        for line in self.lines.finish()? {
            out.extend(self.decoder.decode(line)?);
        }
        out.extend(self.decoder.end()?);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn splits_anywhere() {
        let input = "{\"a\":1}\n\n{\"b\":\"é😀\"}\r\n{\"c\":[1,2]}".as_bytes();
        let expected = vec![json!({"a": 1}), json!({"b": "é😀"}), json!({"c": [1, 2]})];
        for cut in 0..=input.len() {
            let mut decoder = NdjsonDecoder::new();
            let mut values = decoder.push(&input[..cut]).unwrap();
            values.extend(decoder.push(&input[cut..]).unwrap());
            values.extend(decoder.finish().unwrap());
            assert_eq!(values, expected, "cut at {cut}");
        }
        let mut decoder = NdjsonDecoder::new();
        let mut values = Vec::new();
        for byte in input {
            values.extend(decoder.push(std::slice::from_ref(byte)).unwrap());
        }
        values.extend(decoder.finish().unwrap());
        assert_eq!(values, expected);
    }

    #[test]
    fn bad_lines_are_upstream_errors() {
        let mut decoder = NdjsonDecoder::new();
        let err = decoder.push(b"{\"ok\":true}\nnot json\n").unwrap_err();
        assert_eq!(err.kind, portico_model::ErrorKind::Upstream);
        assert!(err.message.contains("not json"));
        let mut decoder = NdjsonDecoder::new();
        assert!(decoder.push(b"{\"a\":").unwrap().is_empty());
        assert!(decoder.finish().is_err());
    }
}
