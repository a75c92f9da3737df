//! Server-sent events framing (the WHATWG `text/event-stream` rules) for
//! bytes that arrive split anywhere, plus [`SseStream`], which turns a
//! per-event decoder into a complete [`StreamDecoder`].

use portico_model::{ProviderError, StreamEvent};

use crate::StreamDecoder;

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event:` field; `"message"` when absent.
    pub event: String,
    /// The `data:` lines joined with `\n`.
    pub data: String,
    /// The last event id seen so far (`id:` persists across events).
    pub id: Option<String>,
    /// A `retry:` reconnection time sent with this event, in ms.
    pub retry: Option<u64>,
}

/// Incremental SSE parser: feed byte chunks, get complete events.
///
/// Lines end with LF, CRLF or CR (a CRLF split across chunks counts once);
/// a leading BOM is skipped; `:` lines are comments; unknown fields are
/// ignored; an event is dispatched at a blank line if it has data. Lines
/// are decoded as UTF-8 only once complete, so multi-byte characters split
/// between chunks survive; invalid bytes become U+FFFD, as the spec says.
#[derive(Debug, Clone, Default)]
pub struct SseDecoder {
    buffer: Vec<u8>,
    /// Bytes of `buffer` already scanned for a line end.
    scanned: usize,
    /// The previous chunk ended with CR: skip one LF at the next start.
    skip_lf: bool,
    started: bool,
    event: String,
    data: String,
    has_data: bool,
    last_id: Option<String>,
    retry: Option<u64>,
}

impl SseDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds a chunk; returns the events it completed.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<SseEvent> {
        let mut chunk = chunk;
        if self.skip_lf && !chunk.is_empty() {
            self.skip_lf = false;
            if chunk[0] == b'\n' {
                chunk = &chunk[1..];
            }
        }
        self.buffer.extend_from_slice(chunk);
        let mut events = Vec::new();
        // The buffer is taken out while its lines are handled (they borrow
        // it), which spares a copy of every line.
        let mut buffer = std::mem::take(&mut self.buffer);
        let mut start = 0;
        let mut from = self.scanned;
        while let Some(offset) = memchr::memchr2(b'\n', b'\r', &buffer[from..]) {
            let end = from + offset;
            self.line(&buffer[start..end], &mut events);
            let mut next = end + 1;
            if buffer[end] == b'\r' {
                match buffer.get(next) {
                    Some(b'\n') => next += 1,
                    Some(_) => {}
                    None => self.skip_lf = true,
                }
            }
            start = next;
            from = next;
        }
        buffer.drain(..start);
        self.buffer = buffer;
        self.scanned = self.buffer.len();
        events
    }

    /// Ends the stream: a final unterminated line is processed and a
    /// pending event with data is dispatched. (The spec discards an event
    /// missing its closing blank line; real servers sometimes omit it, and
    /// losing the last event is worse.)
    pub fn finish(&mut self) -> Vec<SseEvent> {
        let mut events = Vec::new();
        if !self.buffer.is_empty() {
            let line = std::mem::take(&mut self.buffer);
            self.line(&line, &mut events);
        }
        self.scanned = 0;
        self.skip_lf = false;
        self.dispatch(&mut events);
        events
    }

    fn line(&mut self, raw: &[u8], events: &mut Vec<SseEvent>) {
        let mut raw = raw;
        if !self.started {
            self.started = true;
            raw = raw.strip_prefix("\u{feff}".as_bytes()).unwrap_or(raw);
        }
        if raw.is_empty() {
            self.dispatch(events);
            return;
        }
        // Valid UTF-8 is the rule: checking it first is much cheaper than
        // the lossy decoder's scan.
        let line = match std::str::from_utf8(raw) {
            Ok(line) => std::borrow::Cow::Borrowed(line),
            Err(_) => String::from_utf8_lossy(raw),
        };
        if line.starts_with(':') {
            return;
        }
        let (name, value) = match line.split_once(':') {
            Some((name, value)) => (name, value.strip_prefix(' ').unwrap_or(value)),
            None => (line.as_ref(), ""),
        };
        match name {
            "event" => self.event = value.to_string(),
            "data" => {
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(value);
                self.has_data = true;
            }
            "id" if !value.contains('\0') => self.last_id = Some(value.to_string()),
            "retry" if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) => {
                self.retry = value.parse().ok();
            }
            _ => {}
        }
    }

    fn dispatch(&mut self, events: &mut Vec<SseEvent>) {
        let event = std::mem::take(&mut self.event);
        let retry = self.retry.take();
        if !self.has_data {
            self.data.clear();
            return;
        }
        self.has_data = false;
        events.push(SseEvent {
            event: if event.is_empty() {
                "message".to_string()
            } else {
                event
            },
            data: std::mem::take(&mut self.data),
            id: self.last_id.clone(),
            retry,
        });
    }
}

/// Turns the SSE events of one provider into neutral stream events.
pub trait EventDecoder: 'static {
    /// The neutral events of one SSE event.
    fn decode(&mut self, event: &SseEvent) -> Result<Vec<StreamEvent>, ProviderError>;

    /// Called once the body ended (after the last `decode`): final events,
    /// or an error when the stream is incomplete.
    fn end(&mut self) -> Result<Vec<StreamEvent>, ProviderError> {
        Ok(Vec::new())
    }
}

/// A [`StreamDecoder`] for SSE bodies: SSE framing plus an [`EventDecoder`].
#[derive(Debug, Clone, Default)]
pub struct SseStream<D> {
    sse: SseDecoder,
    decoder: D,
}

impl<D: EventDecoder> SseStream<D> {
    pub fn new(decoder: D) -> Self {
        Self {
            sse: SseDecoder::new(),
            decoder,
        }
    }

    /// The inner event decoder.
    pub fn decoder(&self) -> &D {
        &self.decoder
    }
}

impl<D: EventDecoder> StreamDecoder for SseStream<D> {
    fn push_into(&mut self, chunk: &[u8], out: &mut Vec<StreamEvent>) -> Result<(), ProviderError> {
        for event in self.sse.push(chunk) {
            out.extend(self.decoder.decode(&event)?);
        }
        Ok(())
    }

    fn finish_into(&mut self, out: &mut Vec<StreamEvent>) -> Result<(), ProviderError> {
        for event in self.sse.finish() {
            out.extend(self.decoder.decode(&event)?);
        }
        out.extend(self.decoder.end()?);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(event: &str, data: &str, id: Option<&str>) -> SseEvent {
        SseEvent {
            event: event.into(),
            data: data.into(),
            id: id.map(Into::into),
            retry: None,
        }
    }

    fn decode_whole(input: &[u8]) -> Vec<SseEvent> {
        let mut decoder = SseDecoder::new();
        let mut events = decoder.push(input);
        events.extend(decoder.finish());
        events
    }

    /// Every way of cutting `input` in two, plus byte-by-byte, must decode
    /// like the whole.
    fn assert_split_invariant(input: &[u8]) -> Vec<SseEvent> {
        let whole = decode_whole(input);
        for cut in 0..=input.len() {
            let mut decoder = SseDecoder::new();
            let mut events = decoder.push(&input[..cut]);
            events.extend(decoder.push(&input[cut..]));
            events.extend(decoder.finish());
            assert_eq!(events, whole, "cut at {cut}");
        }
        let mut decoder = SseDecoder::new();
        let mut events: Vec<SseEvent> = input
            .iter()
            .flat_map(|b| decoder.push(std::slice::from_ref(b)))
            .collect();
        events.extend(decoder.finish());
        assert_eq!(events, whole, "byte by byte");
        whole
    }

    #[test]
    fn parses_fields_comments_and_multiline_data() {
        let input = "\u{feff}: keep-alive\n\
                     event: ping\n\
                     id: 7\n\
                     retry: 3000\n\
                     data: first\n\
                     data:second\n\
                     data\n\
                     unknown: x\n\
                     \n\
                     data: next\n\n\
                     event: lonely\n\n\
                     id\n\
                     data: {\"a\": \"é 😀\"}\n\n";
        let events = assert_split_invariant(input.as_bytes());
        assert_eq!(
            events,
            vec![
                SseEvent {
                    event: "ping".into(),
                    data: "first\nsecond\n".into(),
                    id: Some("7".into()),
                    retry: Some(3000)
                },
                event("message", "next", Some("7")),
                event("message", "{\"a\": \"é 😀\"}", Some("")),
            ]
        );
    }

    #[test]
    fn handles_crlf_and_cr_line_endings() {
        let crlf = assert_split_invariant(b"data: a\r\n\r\ndata: b\r\n\r\n");
        assert_eq!(
            crlf,
            vec![event("message", "a", None), event("message", "b", None)]
        );
        let cr = assert_split_invariant(b"data: a\r\rdata: b\r\r");
        assert_eq!(cr, crlf);
        let mixed = assert_split_invariant(b"data: a\r\ndata: b\n\rdata: c\r\n\n");
        assert_eq!(
            mixed,
            vec![event("message", "a\nb", None), event("message", "c", None)]
        );
    }

    #[test]
    fn finish_flushes_an_unterminated_event() {
        let events = assert_split_invariant(b"data: one\n\ndata: tw");
        assert_eq!(
            events,
            vec![event("message", "one", None), event("message", "tw", None)]
        );
        let mut decoder = SseDecoder::new();
        assert_eq!(decoder.push(b"data: x\n"), vec![]);
        assert_eq!(decoder.finish(), vec![event("message", "x", None)]);
    }

    #[test]
    fn invalid_utf8_is_replaced() {
        let events = decode_whole(b"data: a\xffb\n\n");
        assert_eq!(events[0].data, "a\u{fffd}b");
    }

    #[test]
    fn empty_data_field_still_dispatches() {
        assert_eq!(decode_whole(b"data:\n\n"), vec![event("message", "", None)]);
        assert_eq!(decode_whole(b"event: x\n\n"), vec![]);
    }
}
