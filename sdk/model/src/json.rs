//! Compact JSON output, byte for byte what `serde_json::to_string` writes,
//! with faster string escaping.
//!
//! Every payload crossing the plugin boundary, and every upstream body a
//! plugin builds, is mostly message text. serde_json escapes strings one
//! byte at a time; here runs that need no escaping are skipped eight bytes
//! at a time (in WebAssembly too, where it matters most), which makes a
//! 2 KB chat several times cheaper to write. Numbers are formatted by the
//! same crates serde_json uses (`itoa`, `zmij`), so output is identical.

use std::fmt;

use serde::ser::{self, Serialize};

/// Why a value could not be written as JSON (a map key that is not a
/// string, or a `Serialize` impl that failed).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Error(String);

impl ser::Error for Error {
    fn custom<T: fmt::Display>(message: T) -> Self {
        Error(message.to_string())
    }
}

/// `value` as compact JSON text.
pub fn to_string<T: Serialize + ?Sized>(value: &T) -> Result<String, Error> {
    let mut out = String::with_capacity(256);
    value.serialize(&mut Writer { out: &mut out })?;
    Ok(out)
}

/// `value` as compact JSON bytes.
pub fn to_vec<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, Error> {
    to_string(value).map(String::into_bytes)
}

/// Writes `text` as a quoted JSON string.
pub fn write_str(out: &mut String, text: &str) {
    out.reserve(text.len() + 2);
    out.push('"');
    let bytes = text.as_bytes();
    // `run` starts the bytes not yet written; they need no escaping.
    let (mut run, mut at) = (0, 0);
    while at < bytes.len() {
        while let Some(word) = bytes
            .get(at..at + 8)
            .and_then(|w| <[u8; 8]>::try_from(w).ok())
        {
            if needs_escape(u64::from_le_bytes(word)) {
                break;
            }
            at += 8;
        }
        let Some(&byte) = bytes.get(at) else { break };
        let escape = ESCAPE[usize::from(byte)];
        if escape == 0 {
            at += 1;
            continue;
        }
        // `at` is an ASCII byte, so both slice ends are char boundaries.
        out.push_str(&text[run..at]);
        match escape {
            b'u' => {
                out.push_str("\\u00");
                out.push(char::from(HEX[usize::from(byte >> 4)]));
                out.push(char::from(HEX[usize::from(byte & 0xf)]));
            }
            short => {
                out.push('\\');
                out.push(char::from(short));
            }
        }
        at += 1;
        run = at;
    }
    out.push_str(&text[run..]);
    out.push('"');
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Whether any of the eight bytes is a control character, `"` or `\`.
/// Exact (no false positives): the classic "has byte less than n" and
/// "has zero byte" tests of Hacker's Delight, on one 64-bit word.
fn needs_escape(word: u64) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let control = word.wrapping_sub(ONES * 0x20) & !word;
    let quote = word ^ (ONES * u64::from(b'"'));
    let backslash = word ^ (ONES * u64::from(b'\\'));
    let zero_in = |x: u64| x.wrapping_sub(ONES) & !x;
    (control | zero_in(quote) | zero_in(backslash)) & HIGHS != 0
}

/// serde_json's escapes: 0 for none, a letter for a short escape, `u` for
/// `\u00XX`.
static ESCAPE: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut byte = 0;
    while byte < 0x20 {
        table[byte] = b'u';
        byte += 1;
    }
    table[0x08] = b'b';
    table[0x09] = b't';
    table[0x0a] = b'n';
    table[0x0c] = b'f';
    table[0x0d] = b'r';
    table[b'"' as usize] = b'"';
    table[b'\\' as usize] = b'\\';
    table
};

/// The integer methods of a `Serializer`, all alike: `$body` gets the
/// serializer and the value.
macro_rules! integers {
    (|$serializer:ident, $value:ident| $body:expr) => {
        integers!(@each |$serializer, $value| $body;
            serialize_i8: i8, serialize_i16: i16, serialize_i32: i32, serialize_i64: i64,
            serialize_i128: i128, serialize_u8: u8, serialize_u16: u16, serialize_u32: u32,
            serialize_u64: u64, serialize_u128: u128);
    };
    (@each |$serializer:ident, $value:ident| $body:expr; $($method:ident: $ty:ty),*) => {
        $(
            fn $method(self, $value: $ty) -> Result<(), Error> {
                let $serializer = self;
                $body
            }
        )*
    };
}

/// A compound whose items are comma-separated values.
macro_rules! elements {
    ($trait:ident :: $method:ident) => {
        impl ser::$trait for Compound<'_, '_> {
            type Ok = ();
            type Error = Error;
            fn $method<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
                self.element(value)
            }
            fn end(self) -> Result<(), Error> {
                Compound::end(self)
            }
        }
    };
}

/// A compound whose items are `"key":value` fields.
macro_rules! fields {
    ($trait:ident) => {
        impl ser::$trait for Compound<'_, '_> {
            type Ok = ();
            type Error = Error;
            fn serialize_field<T: Serialize + ?Sized>(
                &mut self,
                key: &'static str,
                value: &T,
            ) -> Result<(), Error> {
                self.field(key, value)
            }
            fn end(self) -> Result<(), Error> {
                Compound::end(self)
            }
        }
    };
}

struct Writer<'a> {
    out: &'a mut String,
}

impl Writer<'_> {
    fn integer(&mut self, value: impl itoa::Integer) {
        self.out.push_str(itoa::Buffer::new().format(value));
    }

    fn float(&mut self, value: impl zmij::Float, finite: bool) {
        if finite {
            self.out.push_str(zmij::Buffer::new().format_finite(value));
        } else {
            // As serde_json: NaN and infinities have no JSON form.
            self.out.push_str("null");
        }
    }
}

impl<'a, 'b> ser::Serializer for &'a mut Writer<'b> {
    type Ok = ();
    type Error = Error;
    type SerializeSeq = Compound<'a, 'b>;
    type SerializeTuple = Compound<'a, 'b>;
    type SerializeTupleStruct = Compound<'a, 'b>;
    type SerializeTupleVariant = Compound<'a, 'b>;
    type SerializeMap = Compound<'a, 'b>;
    type SerializeStruct = Compound<'a, 'b>;
    type SerializeStructVariant = Compound<'a, 'b>;

    fn serialize_bool(self, value: bool) -> Result<(), Error> {
        self.out.push_str(if value { "true" } else { "false" });
        Ok(())
    }
    integers!(|writer, value| {
        writer.integer(value);
        Ok(())
    });
    fn serialize_f32(self, value: f32) -> Result<(), Error> {
        self.float(value, value.is_finite());
        Ok(())
    }
    fn serialize_f64(self, value: f64) -> Result<(), Error> {
        self.float(value, value.is_finite());
        Ok(())
    }
    fn serialize_char(self, value: char) -> Result<(), Error> {
        write_str(self.out, value.encode_utf8(&mut [0; 4]));
        Ok(())
    }
    fn serialize_str(self, value: &str) -> Result<(), Error> {
        write_str(self.out, value);
        Ok(())
    }
    fn serialize_bytes(self, value: &[u8]) -> Result<(), Error> {
        use ser::SerializeSeq;
        let mut seq = self.serialize_seq(Some(value.len()))?;
        for byte in value {
            seq.serialize_element(byte)?;
        }
        seq.end()
    }
    fn serialize_none(self) -> Result<(), Error> {
        self.serialize_unit()
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<(), Error> {
        value.serialize(self)
    }
    fn serialize_unit(self) -> Result<(), Error> {
        self.out.push_str("null");
        Ok(())
    }
    fn serialize_unit_struct(self, _name: &'static str) -> Result<(), Error> {
        self.serialize_unit()
    }
    fn serialize_unit_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
    ) -> Result<(), Error> {
        self.serialize_str(variant)
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        value: &T,
    ) -> Result<(), Error> {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<(), Error> {
        self.out.push('{');
        write_str(self.out, variant);
        self.out.push(':');
        value.serialize(&mut *self)?;
        self.out.push('}');
        Ok(())
    }
    fn serialize_seq(self, _len: Option<usize>) -> Result<Compound<'a, 'b>, Error> {
        self.out.push('[');
        Ok(Compound::new(self, "]"))
    }
    fn serialize_tuple(self, len: usize) -> Result<Compound<'a, 'b>, Error> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_struct(
        self,
        _name: &'static str,
        len: usize,
    ) -> Result<Compound<'a, 'b>, Error> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        _len: usize,
    ) -> Result<Compound<'a, 'b>, Error> {
        self.out.push('{');
        write_str(self.out, variant);
        self.out.push_str(":[");
        Ok(Compound::new(self, "]}"))
    }
    fn serialize_map(self, _len: Option<usize>) -> Result<Compound<'a, 'b>, Error> {
        self.out.push('{');
        Ok(Compound::new(self, "}"))
    }
    fn serialize_struct(self, name: &'static str, len: usize) -> Result<Compound<'a, 'b>, Error> {
        if name == RAW_VALUE_TOKEN {
            return Ok(Compound {
                verbatim: true,
                ..Compound::new(self, "")
            });
        }
        self.serialize_map(Some(len))
    }
    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        _len: usize,
    ) -> Result<Compound<'a, 'b>, Error> {
        self.out.push('{');
        write_str(self.out, variant);
        self.out.push_str(":{");
        Ok(Compound::new(self, "}}"))
    }
}

/// serde_json's `RawValue` serializes as a struct of this name whose one
/// field is its JSON text, which serde_json writes as is; so does this
/// writer (checked by the tests against serde_json).
const RAW_VALUE_TOKEN: &str = "$serde_json::private::RawValue";

/// An array, object or variant being written; `close` ends it.
struct Compound<'a, 'b> {
    writer: &'a mut Writer<'b>,
    first: bool,
    close: &'static str,
    /// A `RawValue`: its field is JSON text, written unquoted.
    verbatim: bool,
}

impl<'a, 'b> Compound<'a, 'b> {
    fn new(writer: &'a mut Writer<'b>, close: &'static str) -> Self {
        Compound {
            writer,
            first: true,
            close,
            verbatim: false,
        }
    }

    fn comma(&mut self) {
        if !std::mem::take(&mut self.first) {
            self.writer.out.push(',');
        }
    }

    fn element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        self.comma();
        value.serialize(&mut *self.writer)
    }

    fn field<T: Serialize + ?Sized>(&mut self, key: &str, value: &T) -> Result<(), Error> {
        if self.verbatim {
            return value.serialize(MapKey {
                out: &mut *self.writer.out,
                verbatim: true,
            });
        }
        self.comma();
        write_str(self.writer.out, key);
        self.writer.out.push(':');
        value.serialize(&mut *self.writer)
    }

    fn end(self) -> Result<(), Error> {
        self.writer.out.push_str(self.close);
        Ok(())
    }
}

// Arrays, tuples and tuple variants: elements separated by commas.
elements!(SerializeSeq::serialize_element);
elements!(SerializeTuple::serialize_element);
elements!(SerializeTupleStruct::serialize_field);
elements!(SerializeTupleVariant::serialize_field);

impl ser::SerializeMap for Compound<'_, '_> {
    type Ok = ();
    type Error = Error;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), Error> {
        self.comma();
        key.serialize(MapKey {
            out: &mut *self.writer.out,
            verbatim: false,
        })?;
        self.writer.out.push(':');
        Ok(())
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        value.serialize(&mut *self.writer)
    }
    fn end(self) -> Result<(), Error> {
        Compound::end(self)
    }
}

fields!(SerializeStruct);
fields!(SerializeStructVariant);

/// Object keys: strings, and what serde_json also accepts as keys
/// (numbers, booleans and chars, written as strings). With `verbatim`, the
/// text of a `RawValue` instead, written as it is.
struct MapKey<'a> {
    out: &'a mut String,
    verbatim: bool,
}

fn key_must_be_a_string() -> Error {
    Error("key must be a string".into())
}

impl MapKey<'_> {
    fn quoted(self, text: &str) -> Result<(), Error> {
        if self.verbatim {
            self.out.push_str(text);
        } else {
            write_str(self.out, text);
        }
        Ok(())
    }
}

impl ser::Serializer for MapKey<'_> {
    type Ok = ();
    type Error = Error;
    type SerializeSeq = ser::Impossible<(), Error>;
    type SerializeTuple = ser::Impossible<(), Error>;
    type SerializeTupleStruct = ser::Impossible<(), Error>;
    type SerializeTupleVariant = ser::Impossible<(), Error>;
    type SerializeMap = ser::Impossible<(), Error>;
    type SerializeStruct = ser::Impossible<(), Error>;
    type SerializeStructVariant = ser::Impossible<(), Error>;

    fn serialize_str(self, value: &str) -> Result<(), Error> {
        self.quoted(value)
    }
    fn serialize_char(self, value: char) -> Result<(), Error> {
        self.quoted(value.encode_utf8(&mut [0; 4]))
    }
    fn serialize_bool(self, value: bool) -> Result<(), Error> {
        self.quoted(if value { "true" } else { "false" })
    }
    integers!(|key, value| key.quoted(itoa::Buffer::new().format(value)));
    fn serialize_f32(self, _value: f32) -> Result<(), Error> {
        Err(key_must_be_a_string())
    }
    fn serialize_f64(self, _value: f64) -> Result<(), Error> {
        Err(key_must_be_a_string())
    }
    fn serialize_bytes(self, _value: &[u8]) -> Result<(), Error> {
        Err(key_must_be_a_string())
    }
    fn serialize_none(self) -> Result<(), Error> {
        Err(key_must_be_a_string())
    }
    fn serialize_some<T: Serialize + ?Sized>(self, _value: &T) -> Result<(), Error> {
        Err(key_must_be_a_string())
    }
    fn serialize_unit(self) -> Result<(), Error> {
        Err(key_must_be_a_string())
    }
    fn serialize_unit_struct(self, _name: &'static str) -> Result<(), Error> {
        Err(key_must_be_a_string())
    }
    fn serialize_unit_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
    ) -> Result<(), Error> {
        self.quoted(variant)
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        value: &T,
    ) -> Result<(), Error> {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        _value: &T,
    ) -> Result<(), Error> {
        Err(key_must_be_a_string())
    }
    fn serialize_seq(self, _len: Option<usize>) -> Result<Self::SerializeSeq, Error> {
        Err(key_must_be_a_string())
    }
    fn serialize_tuple(self, _len: usize) -> Result<Self::SerializeTuple, Error> {
        Err(key_must_be_a_string())
    }
    fn serialize_tuple_struct(
        self,
        _name: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeTupleStruct, Error> {
        Err(key_must_be_a_string())
    }
    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeTupleVariant, Error> {
        Err(key_must_be_a_string())
    }
    fn serialize_map(self, _len: Option<usize>) -> Result<Self::SerializeMap, Error> {
        Err(key_must_be_a_string())
    }
    fn serialize_struct(
        self,
        _name: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeStruct, Error> {
        Err(key_must_be_a_string())
    }
    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeStructVariant, Error> {
        Err(key_must_be_a_string())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::{Value, json};

    use super::*;
    use crate::{ChatRequest, ChatResponse, ContentPart, Message, RawJson, StreamEvent, Usage};

    fn same_as_serde_json<T: Serialize + ?Sized>(value: &T) {
        assert_eq!(
            to_string(value).unwrap(),
            serde_json::to_string(value).unwrap()
        );
    }

    #[test]
    fn strings_escape_like_serde_json() {
        let mut samples: Vec<String> = vec![
            String::new(),
            "plain".into(),
            "exactly8".into(),
            "sixteen bytes!!!".into(),
            "quote \" and backslash \\ and slash /".into(),
            "\u{7f} del, é ü 日本語 🙂 and \u{2028}".into(),
        ];
        // Every ASCII byte at every offset within a word.
        for byte in 0u8..0x80 {
            for offset in 0..9 {
                let mut text = "x".repeat(offset);
                text.push(char::from(byte));
                text.push_str("tail of the run");
                samples.push(text);
            }
        }
        // Multi-byte characters straddling word boundaries, then escapes.
        for offset in 0..9 {
            samples.push(format!(
                "{}é日🙂\n\"{}",
                "a".repeat(offset),
                "b".repeat(offset)
            ));
        }
        for text in &samples {
            same_as_serde_json(text.as_str());
        }
    }

    #[test]
    fn numbers_and_structure_match_serde_json() {
        same_as_serde_json(&json!({
            "ints": [0, -1, 42, i64::MIN, u64::MAX],
            "floats": [0.0, -0.5, 1e300, 1.0e-7, 0.1, 3.0],
            "nested": {"a": [], "b": {}, "c": [null, true, false, {"d": "e"}]},
            "unicode key é": "v"
        }));
        same_as_serde_json(&vec![0.1f32, 1.5f32, -2.25e-8f32, f32::NAN, f32::INFINITY]);
        same_as_serde_json(&vec![f64::NAN, f64::NEG_INFINITY]);
        same_as_serde_json(&BTreeMap::from([(1u32, "a"), (2u32, "b")]));
        same_as_serde_json(&BTreeMap::from([(true, 1)]));
        same_as_serde_json(&('x', (), Some(3), None::<u8>, b"by".as_slice()));
        assert_eq!(
            to_string(&BTreeMap::from([(vec![1], 1)]))
                .unwrap_err()
                .to_string(),
            "key must be a string"
        );
    }

    #[test]
    fn enums_match_serde_json() {
        #[derive(serde::Serialize)]
        enum External {
            Unit,
            Newtype(u8),
            Tuple(u8, String),
            Struct { a: u8 },
        }
        for value in [
            External::Unit,
            External::Newtype(1),
            External::Tuple(2, "t".into()),
            External::Struct { a: 3 },
        ] {
            same_as_serde_json(&value);
        }
        #[derive(serde::Serialize)]
        #[serde(untagged)]
        enum Untagged {
            A { x: u8 },
            B(String),
        }
        same_as_serde_json(&[Untagged::A { x: 1 }, Untagged::B("b".into())]);
        #[derive(serde::Serialize)]
        struct Flattened {
            a: u8,
            #[serde(flatten)]
            rest: BTreeMap<String, Value>,
        }
        same_as_serde_json(&Flattened {
            a: 1,
            rest: BTreeMap::from([("b".into(), json!([1, "two"]))]),
        });
    }

    #[test]
    fn model_types_match_serde_json() {
        let mut request = ChatRequest {
            model: "m".into(),
            system: Some("Be brief.\n\tNo \"quotes\".".into()),
            messages: vec![
                Message::user("Hello, ünïcode \u{1} control"),
                Message {
                    role: crate::Role::Assistant,
                    content: vec![
                        ContentPart::Thinking {
                            text: "hm".into(),
                            signature: None,
                        },
                        ContentPart::ToolCall {
                            id: "c".into(),
                            name: "f".into(),
                            arguments: "{\"a\":1}".into(),
                        },
                    ],
                },
            ],
            response_format: Some(json!({"type": "json_object"})),
            ..Default::default()
        };
        request.params.temperature = Some(0.7);
        request.params.stop = vec!["\n\n".into()];
        request.extra.insert("user".into(), json!("u-1"));
        same_as_serde_json(&request);
        same_as_serde_json(&StreamEvent::Usage {
            usage: Usage {
                input_tokens: 1,
                output_tokens: 2,
                cached_input_tokens: None,
            },
        });
    }

    #[test]
    fn raw_json_is_written_verbatim_like_serde_json() {
        let body = br#" {"z":1, "a":[true,"\u00e9"],"n":1.50} "#;
        let response = ChatResponse {
            id: "r".into(),
            raw: RawJson::from_body(body),
            ..Default::default()
        };
        same_as_serde_json(&response);
        let text = to_string(&response).unwrap();
        assert!(
            text.ends_with(r#""raw":{"z":1, "a":[true,"\u00e9"],"n":1.50}}"#),
            "{text}"
        );
        // And it reads back as the same text.
        let back: ChatResponse = serde_json::from_str(&text).unwrap();
        assert_eq!(back, response);
        assert_eq!(RawJson::from_body(b"{\"a\":"), None);
        assert_eq!(RawJson::from_body(b"[1] [2]"), None);
    }
}
