//! JSON text from outside the host (a guest's output, step details and tool
//! arguments; a client's input): checked once, when it arrives, so that what is
//! stored can always be read back, nested inside events and records, and parsed
//! again. Accepted is JSON that any reader takes: numbers that fit a double,
//! strings of valid Unicode (no lone surrogate escapes), and nesting at most
//! [`MAX_DEPTH`] deep (the host nests such values a few levels deeper in its own
//! records, and readers stop at 128). Checking allocates nothing per value.

use std::fmt;

use serde::de::{DeserializeSeed, MapAccess, SeqAccess, Visitor};

/// How deep arrays and objects may nest in JSON from outside.
pub const MAX_DEPTH: usize = 64;

/// Why a text was refused.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct JsonError(String);

/// Checks that `text` is JSON every reader of the host's records accepts.
pub fn check(text: &str) -> Result<(), JsonError> {
    let mut de = serde_json::Deserializer::from_str(text);
    Node(MAX_DEPTH)
        .deserialize(&mut de)
        .and_then(|()| de.end())
        .map_err(|e| JsonError(e.to_string()))
}

/// One value, with how many more levels it may open.
#[derive(Clone, Copy)]
struct Node(usize);

impl<'de> DeserializeSeed<'de> for Node {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl Node {
    fn open<E: serde::de::Error>(self) -> Result<Node, E> {
        self.0
            .checked_sub(1)
            .map(Node)
            .ok_or_else(|| E::custom(format!("nested deeper than {MAX_DEPTH} levels")))
    }
}

impl<'de> Visitor<'de> for Node {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }

    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }

    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }

    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<(), E> {
        if v.is_finite() {
            Ok(())
        } else {
            Err(E::custom("a number out of range"))
        }
    }

    // Strings reach here decoded: a lone surrogate escape has already failed.
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let inner = self.open()?;
        while seq.next_element_seed(inner)?.is_some() {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let inner = self.open()?;
        while map.next_key_seed(inner)?.is_some() {
            map.next_value_seed(inner)?;
        }
        Ok(())
    }
}

/// Checks and keeps JSON text as a raw value.
pub fn raw(text: String) -> Result<Box<serde_json::value::RawValue>, JsonError> {
    check(&text)?;
    serde_json::value::RawValue::from_string(text).map_err(|e| JsonError(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_every_reader_takes_passes_and_nothing_else() {
        for ok in [
            "1",
            "-0.5e10",
            "\"\\ud83d\\ude00 ok\"",
            r#"{"a":[1,{"b":null}],"c":"d"}"#,
            " [] ",
            "18446744073709551615",
        ] {
            assert!(check(ok).is_ok(), "{ok}");
        }
        let deep_ok = format!("{}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        assert!(check(&deep_ok).is_ok());
        let too_deep = format!("{}{}", "[".repeat(MAX_DEPTH + 1), "]".repeat(MAX_DEPTH + 1));
        let obj_deep = format!("{}1{}", r#"{"a":"#.repeat(MAX_DEPTH + 1), "}".repeat(MAX_DEPTH + 1));
        for bad in [
            "1e999",
            "-1e400",
            "\"\\ud800\"",
            "\"\\udc00x\"",
            "[1,]",
            "{} {}",
            "",
            too_deep.as_str(),
            obj_deep.as_str(),
        ] {
            assert!(check(bad).is_err(), "{bad}");
        }
        assert!(
            check(&"[".repeat(1_000_000)).is_err(),
            "a million opens fail fast, without recursion"
        );
    }
}
