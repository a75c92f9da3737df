//! AWS event-stream framing (`application/vnd.amazon.eventstream`), the
//! binary stream of AWS streaming APIs (Bedrock `converse-stream`,
//! `invoke-with-response-stream`, …), for bytes that arrive split anywhere,
//! plus [`EventStream`], which turns a per-message handler into a complete
//! [`StreamDecoder`].
//!
//! A message is:
//!
//! ```text
//! total length (u32 BE) | headers length (u32 BE) | prelude CRC32 (u32 BE)
//! headers: (name length u8, name, type u8, value)*
//! payload
//! message CRC32 (u32 BE, of everything before it)
//! ```
//!
//! Both CRCs are checked; a mismatch or an impossible length is an upstream
//! error (502), as is a body that ends inside a message.

use portico_model::{ProviderError, StreamEvent};

use crate::StreamDecoder;

/// Prelude (two lengths and their CRC) plus the trailing message CRC.
const OVERHEAD: usize = 16;
const PRELUDE: usize = 12;
/// AWS's limits: 16 MiB per message, 128 KiB of headers.
const MAX_MESSAGE: usize = 16 * 1024 * 1024;
const MAX_HEADERS: usize = 128 * 1024;

/// A header value, by the event-stream type codes 0–9.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderValue {
    /// Types 0 (true) and 1 (false).
    Bool(bool),
    /// Type 2.
    Byte(i8),
    /// Type 3.
    Int16(i16),
    /// Type 4.
    Int32(i32),
    /// Type 5.
    Int64(i64),
    /// Type 6.
    Bytes(Vec<u8>),
    /// Type 7.
    String(String),
    /// Type 8: milliseconds since the Unix epoch.
    Timestamp(i64),
    /// Type 9.
    Uuid([u8; 16]),
}

impl HeaderValue {
    /// The value when it is a string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            HeaderValue::String(s) => Some(s),
            _ => None,
        }
    }

    fn type_code(&self) -> u8 {
        match self {
            HeaderValue::Bool(true) => 0,
            HeaderValue::Bool(false) => 1,
            HeaderValue::Byte(_) => 2,
            HeaderValue::Int16(_) => 3,
            HeaderValue::Int32(_) => 4,
            HeaderValue::Int64(_) => 5,
            HeaderValue::Bytes(_) => 6,
            HeaderValue::String(_) => 7,
            HeaderValue::Timestamp(_) => 8,
            HeaderValue::Uuid(_) => 9,
        }
    }
}

/// One event-stream message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Message {
    /// Headers in wire order (names are case-sensitive on the wire; lookups
    /// here ignore case).
    pub headers: Vec<(String, HeaderValue)>,
    pub payload: Vec<u8>,
}

impl Message {
    /// A message with `payload` and no headers.
    pub fn new(payload: impl Into<Vec<u8>>) -> Self {
        Self {
            headers: Vec::new(),
            payload: payload.into(),
        }
    }

    /// Adds a header (builder style).
    #[must_use]
    pub fn with_header(mut self, name: &str, value: HeaderValue) -> Self {
        self.headers.push((name.to_string(), value));
        self
    }

    /// Adds a string header (builder style).
    #[must_use]
    pub fn with_str_header(self, name: &str, value: &str) -> Self {
        self.with_header(name, HeaderValue::String(value.to_string()))
    }

    /// The first header called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&HeaderValue> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }

    /// A string header's value.
    pub fn header_str(&self, name: &str) -> Option<&str> {
        self.header(name).and_then(HeaderValue::as_str)
    }

    /// `:message-type`: `event`, `exception` or `error` (`event` when absent).
    pub fn message_type(&self) -> &str {
        self.header_str(":message-type").unwrap_or("event")
    }

    /// `:event-type` of an event message, e.g. `contentBlockDelta`.
    pub fn event_type(&self) -> Option<&str> {
        self.header_str(":event-type")
    }

    /// `:exception-type` of an exception message, e.g. `throttlingException`.
    pub fn exception_type(&self) -> Option<&str> {
        self.header_str(":exception-type")
    }

    /// The wire bytes of this message (for tests and fakes). Fails when a
    /// header name or value is longer than the format allows.
    pub fn encode(&self) -> Result<Vec<u8>, ProviderError> {
        let too_long = |what: &str| {
            ProviderError::internal(format!("event-stream {what} is too long to encode"))
        };
        let mut headers = Vec::new();
        for (name, value) in &self.headers {
            let name_len = u8::try_from(name.len()).map_err(|_| too_long("header name"))?;
            headers.push(name_len);
            headers.extend_from_slice(name.as_bytes());
            headers.push(value.type_code());
            match value {
                HeaderValue::Bool(_) => {}
                HeaderValue::Byte(v) => headers.extend_from_slice(&v.to_be_bytes()),
                HeaderValue::Int16(v) => headers.extend_from_slice(&v.to_be_bytes()),
                HeaderValue::Int32(v) => headers.extend_from_slice(&v.to_be_bytes()),
                HeaderValue::Int64(v) | HeaderValue::Timestamp(v) => {
                    headers.extend_from_slice(&v.to_be_bytes())
                }
                HeaderValue::Bytes(bytes) => {
                    let len = u16::try_from(bytes.len()).map_err(|_| too_long("header value"))?;
                    headers.extend_from_slice(&len.to_be_bytes());
                    headers.extend_from_slice(bytes);
                }
                HeaderValue::String(s) => {
                    let len = u16::try_from(s.len()).map_err(|_| too_long("header value"))?;
                    headers.extend_from_slice(&len.to_be_bytes());
                    headers.extend_from_slice(s.as_bytes());
                }
                HeaderValue::Uuid(bytes) => headers.extend_from_slice(bytes),
            }
        }
        let total = OVERHEAD + headers.len() + self.payload.len();
        if total > MAX_MESSAGE || headers.len() > MAX_HEADERS {
            return Err(too_long("message"));
        }
        let mut out = Vec::with_capacity(total);
        out.extend_from_slice(&(total as u32).to_be_bytes());
        out.extend_from_slice(&(headers.len() as u32).to_be_bytes());
        let prelude_crc = crc32fast::hash(&out);
        out.extend_from_slice(&prelude_crc.to_be_bytes());
        out.extend_from_slice(&headers);
        out.extend_from_slice(&self.payload);
        let message_crc = crc32fast::hash(&out);
        out.extend_from_slice(&message_crc.to_be_bytes());
        Ok(out)
    }
}

fn bad(message: impl Into<String>) -> ProviderError {
    ProviderError::bad_upstream(format!("invalid AWS event stream: {}", message.into()))
}

/// Incremental event-stream parser: feed byte chunks, get complete messages.
#[derive(Debug, Clone, Default)]
pub struct MessageDecoder {
    buffer: Vec<u8>,
    /// A framing error poisons the decoder: later bytes cannot be trusted.
    failed: bool,
}

impl MessageDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds a chunk; returns the messages it completed, or an error for a
    /// corrupt frame.
    pub fn push(&mut self, chunk: &[u8]) -> Result<Vec<Message>, ProviderError> {
        let mut messages = Vec::new();
        self.push_into(chunk, &mut messages)?;
        Ok(messages)
    }

    /// [`push`](Self::push), appending to `out`: the messages framed before
    /// a corrupt one stay there when it fails.
    pub fn push_into(&mut self, chunk: &[u8], out: &mut Vec<Message>) -> Result<(), ProviderError> {
        if self.failed {
            return Err(bad("the stream was already corrupt"));
        }
        self.buffer.extend_from_slice(chunk);
        let mut start = 0;
        let result = loop {
            match frame_at(&self.buffer[start..]) {
                Ok(Some((message, len))) => {
                    out.push(message);
                    start += len;
                }
                Ok(None) => break Ok(()),
                Err(e) => break Err(e),
            }
        };
        self.buffer.drain(..start);
        if result.is_err() {
            self.failed = true;
            self.buffer.clear();
        }
        result
    }

    /// Ends the stream: an error when it stopped inside a message.
    pub fn finish(&mut self) -> Result<(), ProviderError> {
        if self.failed {
            return Err(bad("the stream was already corrupt"));
        }
        if self.buffer.is_empty() {
            Ok(())
        } else {
            let pending = self.buffer.len();
            self.buffer.clear();
            Err(bad(format!(
                "the body ended inside a message ({pending} bytes left over)"
            )))
        }
    }
}

fn be_u32(bytes: &[u8]) -> u32 {
    u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])
}

/// The message at the start of `buf` and its length, `None` when more bytes
/// are needed.
fn frame_at(buf: &[u8]) -> Result<Option<(Message, usize)>, ProviderError> {
    if buf.len() < PRELUDE {
        return Ok(None);
    }
    let total = be_u32(&buf[0..4]) as usize;
    let headers_len = be_u32(&buf[4..8]) as usize;
    // Check the prelude before trusting its lengths, so a body that is not
    // an event stream at all (an HTML error page, JSON) fails at once.
    let prelude_crc = be_u32(&buf[8..12]);
    if crc32fast::hash(&buf[..8]) != prelude_crc {
        return Err(bad(
            "prelude checksum mismatch (the body is not an event stream, or it is corrupt)",
        ));
    }
    if !(OVERHEAD..=MAX_MESSAGE).contains(&total) {
        return Err(bad(format!("impossible message length {total}")));
    }
    if headers_len > MAX_HEADERS || headers_len > total - OVERHEAD {
        return Err(bad(format!(
            "impossible headers length {headers_len} in a message of {total} bytes"
        )));
    }
    if buf.len() < total {
        return Ok(None);
    }
    let message_crc = be_u32(&buf[total - 4..total]);
    if crc32fast::hash(&buf[..total - 4]) != message_crc {
        return Err(bad("message checksum mismatch"));
    }
    let headers = parse_headers(&buf[PRELUDE..PRELUDE + headers_len])?;
    let payload = buf[PRELUDE + headers_len..total - 4].to_vec();
    Ok(Some((Message { headers, payload }, total)))
}

fn parse_headers(mut bytes: &[u8]) -> Result<Vec<(String, HeaderValue)>, ProviderError> {
    fn take<'a>(bytes: &mut &'a [u8], n: usize) -> Result<&'a [u8], ProviderError> {
        if bytes.len() < n {
            return Err(bad("a header runs past the headers section"));
        }
        let (head, rest) = bytes.split_at(n);
        *bytes = rest;
        Ok(head)
    }
    fn array<const N: usize>(bytes: &mut &[u8]) -> Result<[u8; N], ProviderError> {
        let mut out = [0u8; N];
        out.copy_from_slice(take(bytes, N)?);
        Ok(out)
    }
    let mut headers = Vec::new();
    while !bytes.is_empty() {
        let name_len = usize::from(take(&mut bytes, 1)?[0]);
        if name_len == 0 {
            return Err(bad("a header has an empty name"));
        }
        let name = std::str::from_utf8(take(&mut bytes, name_len)?)
            .map_err(|_| bad("a header name is not UTF-8"))?
            .to_string();
        let value = match take(&mut bytes, 1)?[0] {
            0 => HeaderValue::Bool(true),
            1 => HeaderValue::Bool(false),
            2 => HeaderValue::Byte(i8::from_be_bytes(array(&mut bytes)?)),
            3 => HeaderValue::Int16(i16::from_be_bytes(array(&mut bytes)?)),
            4 => HeaderValue::Int32(i32::from_be_bytes(array(&mut bytes)?)),
            5 => HeaderValue::Int64(i64::from_be_bytes(array(&mut bytes)?)),
            6 => {
                let len = usize::from(u16::from_be_bytes(array(&mut bytes)?));
                HeaderValue::Bytes(take(&mut bytes, len)?.to_vec())
            }
            7 => {
                let len = usize::from(u16::from_be_bytes(array(&mut bytes)?));
                let value = std::str::from_utf8(take(&mut bytes, len)?)
                    .map_err(|_| bad(format!("header '{name}' is not UTF-8")))?;
                HeaderValue::String(value.to_string())
            }
            8 => HeaderValue::Timestamp(i64::from_be_bytes(array(&mut bytes)?)),
            9 => HeaderValue::Uuid(array(&mut bytes)?),
            other => return Err(bad(format!("header '{name}' has unknown type {other}"))),
        };
        headers.push((name, value));
    }
    Ok(headers)
}

/// Turns the messages of one provider's event stream into neutral events.
pub trait MessageHandler: 'static {
    /// The neutral events of one message (errors for exception messages).
    fn decode(&mut self, message: &Message) -> Result<Vec<StreamEvent>, ProviderError>;

    /// Called once the body ended cleanly: final events, or an error when
    /// the answer is incomplete.
    fn end(&mut self) -> Result<Vec<StreamEvent>, ProviderError> {
        Ok(Vec::new())
    }
}

/// A [`StreamDecoder`] for event-stream bodies: framing plus a
/// [`MessageHandler`].
#[derive(Debug, Clone, Default)]
pub struct EventStream<H> {
    framing: MessageDecoder,
    handler: H,
}

impl<H: MessageHandler> EventStream<H> {
    pub fn new(handler: H) -> Self {
        Self {
            framing: MessageDecoder::new(),
            handler,
        }
    }

    /// The inner handler.
    pub fn handler(&self) -> &H {
        &self.handler
    }
}

impl<H: MessageHandler> StreamDecoder for EventStream<H> {
    fn push_into(&mut self, chunk: &[u8], out: &mut Vec<StreamEvent>) -> Result<(), ProviderError> {
        let mut messages = Vec::new();
        let framed = self.framing.push_into(chunk, &mut messages);
        for message in &messages {
            out.extend(self.handler.decode(message)?);
        }
        framed
    }

    fn finish_into(&mut self, out: &mut Vec<StreamEvent>) -> Result<(), ProviderError> {
        self.framing.finish()?;
        out.extend(self.handler.end()?);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A message captured from the AWS event-stream test suite
    /// (`encoded/positive/all_headers`'s simpler sibling, `int32_header`):
    /// one int32 header `event-type` = 0x0000A00C, payload `{'foo':'bar'}`.
    const INT32_HEADER: &[u8] = &[
        0x00, 0x00, 0x00, 0x2d, 0x00, 0x00, 0x00, 0x10, 0x41, 0xc4, 0x24, 0xb8, 0x0a, 0x65, 0x76,
        0x65, 0x6e, 0x74, 0x2d, 0x74, 0x79, 0x70, 0x65, 0x04, 0x00, 0x00, 0xa0, 0x0c, 0x7b, 0x27,
        0x66, 0x6f, 0x6f, 0x27, 0x3a, 0x27, 0x62, 0x61, 0x72, 0x27, 0x7d, 0x36, 0xf4, 0x80, 0xa0,
    ];

    fn sample_messages() -> Vec<Message> {
        vec![
            Message::new(br#"{"role":"assistant","p":"abcd"}"#.to_vec())
                .with_str_header(":event-type", "messageStart")
                .with_str_header(":content-type", "application/json")
                .with_str_header(":message-type", "event"),
            Message::new("héllo 👋".as_bytes().to_vec())
                .with_header("flag", HeaderValue::Bool(true))
                .with_header("off", HeaderValue::Bool(false))
                .with_header("b", HeaderValue::Byte(-2))
                .with_header("s", HeaderValue::Int16(-300))
                .with_header("i", HeaderValue::Int32(70_000))
                .with_header("l", HeaderValue::Int64(-5_000_000_000))
                .with_header("bytes", HeaderValue::Bytes(vec![0, 1, 2, 255]))
                .with_header("t", HeaderValue::Timestamp(1_700_000_000_000))
                .with_header("u", HeaderValue::Uuid([7; 16])),
            Message::new(Vec::new()),
        ]
    }

    #[test]
    fn decodes_the_aws_test_suite_message() {
        let mut decoder = MessageDecoder::new();
        let messages = decoder.push(INT32_HEADER).unwrap();
        assert_eq!(
            messages,
            vec![
                Message::new(b"{'foo':'bar'}".to_vec())
                    .with_header("event-type", HeaderValue::Int32(0xa00c))
            ]
        );
        decoder.finish().unwrap();
        // And the encoder reproduces it byte for byte.
        assert_eq!(messages[0].encode().unwrap(), INT32_HEADER);
    }

    #[test]
    fn round_trips_split_at_every_byte() {
        let messages = sample_messages();
        let bytes: Vec<u8> = messages.iter().flat_map(|m| m.encode().unwrap()).collect();
        for cut in 0..=bytes.len() {
            let mut decoder = MessageDecoder::new();
            let mut got = decoder.push(&bytes[..cut]).unwrap();
            got.extend(decoder.push(&bytes[cut..]).unwrap());
            decoder.finish().unwrap();
            assert_eq!(got, messages, "cut at {cut}");
        }
        let mut decoder = MessageDecoder::new();
        let mut got = Vec::new();
        for byte in &bytes {
            got.extend(decoder.push(std::slice::from_ref(byte)).unwrap());
        }
        assert_eq!(got, messages, "byte by byte");
        assert_eq!(got[0].message_type(), "event");
        assert_eq!(got[0].event_type(), Some("messageStart"));
        assert_eq!(got[2].message_type(), "event");
        assert_eq!(got[1].header("FLAG"), Some(&HeaderValue::Bool(true)));
    }

    #[test]
    fn corrupt_and_truncated_streams_fail() {
        let bytes = sample_messages()[0].encode().unwrap();

        // A flipped payload byte: message CRC mismatch.
        let mut corrupt = bytes.clone();
        let last_payload = corrupt.len() - 5;
        corrupt[last_payload] ^= 0x01;
        let mut decoder = MessageDecoder::new();
        let err = decoder.push(&corrupt).unwrap_err();
        assert_eq!(err.status, 502);
        assert!(err.message.contains("message checksum"), "{}", err.message);
        assert!(
            decoder.push(&bytes).is_err(),
            "a failed decoder stays failed"
        );

        // A flipped length: prelude CRC mismatch, detected before the rest.
        let mut corrupt = bytes.clone();
        corrupt[3] ^= 0x01;
        let err = MessageDecoder::new().push(&corrupt[..12]).unwrap_err();
        assert!(err.message.contains("prelude checksum"), "{}", err.message);

        // Not an event stream at all.
        let err = MessageDecoder::new()
            .push(br#"{"message":"The security token included in the request is invalid."}"#)
            .unwrap_err();
        assert_eq!(err.kind, portico_model::ErrorKind::Upstream);

        // Ends mid-message.
        let mut decoder = MessageDecoder::new();
        assert!(decoder.push(&bytes[..bytes.len() - 1]).unwrap().is_empty());
        let err = decoder.finish().unwrap_err();
        assert!(
            err.message.contains("ended inside a message"),
            "{}",
            err.message
        );

        // A valid prelude announcing a length below the minimum.
        let mut tiny = Vec::new();
        tiny.extend_from_slice(&8u32.to_be_bytes());
        tiny.extend_from_slice(&0u32.to_be_bytes());
        let crc = crc32fast::hash(&tiny);
        tiny.extend_from_slice(&crc.to_be_bytes());
        let err = MessageDecoder::new().push(&tiny).unwrap_err();
        assert!(
            err.message.contains("impossible message length"),
            "{}",
            err.message
        );

        // Headers that run past their section.
        let mut message = Message::new(b"x".to_vec())
            .with_str_header("name", "value")
            .encode()
            .unwrap();
        // Claim the string is longer than it is, then fix both CRCs.
        let len_at = PRELUDE + 1 + 4 + 1;
        message[len_at + 1] = 0xff;
        let end = message.len() - 4;
        let crc = crc32fast::hash(&message[..end]);
        message[end..].copy_from_slice(&crc.to_be_bytes());
        let err = MessageDecoder::new().push(&message).unwrap_err();
        assert!(err.message.contains("runs past"), "{}", err.message);
    }

    /// Counts messages; fails on exceptions; requires a `done` event.
    #[derive(Default)]
    struct Counter {
        seen: usize,
        done: bool,
    }

    impl MessageHandler for Counter {
        fn decode(&mut self, message: &Message) -> Result<Vec<StreamEvent>, ProviderError> {
            if message.message_type() == "exception" {
                return Err(ProviderError::bad_upstream("exception"));
            }
            self.seen += 1;
            self.done |= message.event_type() == Some("done");
            Ok(vec![StreamEvent::TextDelta {
                text: String::from_utf8_lossy(&message.payload).into_owned(),
            }])
        }

        fn end(&mut self) -> Result<Vec<StreamEvent>, ProviderError> {
            if self.done {
                Ok(Vec::new())
            } else {
                Err(ProviderError::bad_upstream("no done event"))
            }
        }
    }

    #[test]
    fn event_stream_drives_a_handler() {
        let a = Message::new(b"a".to_vec()).with_str_header(":event-type", "x");
        let done = Message::new(b"b".to_vec()).with_str_header(":event-type", "done");
        let mut bytes = a.encode().unwrap();
        bytes.extend(done.encode().unwrap());
        let mut stream = EventStream::new(Counter::default());
        let mut events = stream.push(&bytes[..20]).unwrap();
        events.extend(stream.push(&bytes[20..]).unwrap());
        events.extend(stream.finish().unwrap());
        assert_eq!(events.len(), 2);
        assert_eq!(stream.handler().seen, 2);

        let mut stream = EventStream::new(Counter::default());
        stream.push(&a.encode().unwrap()).unwrap();
        assert!(stream.finish().is_err(), "the handler's end check runs");

        let exception = Message::new(br#"{"message":"slow"}"#.to_vec())
            .with_str_header(":message-type", "exception")
            .with_str_header(":exception-type", "throttlingException");
        let mut stream = EventStream::new(Counter::default());
        assert!(stream.push(&exception.encode().unwrap()).is_err());
        assert_eq!(exception.exception_type(), Some("throttlingException"));
    }

    #[test]
    fn oversized_headers_are_refused_by_the_encoder() {
        let long = "x".repeat(300);
        assert!(
            Message::new(Vec::new())
                .with_str_header(&long, "v")
                .encode()
                .is_err()
        );
        let huge = "y".repeat(70_000);
        assert!(
            Message::new(Vec::new())
                .with_str_header("n", &huge)
                .encode()
                .is_err()
        );
    }
}
