//! What checking an input against an `input_schema` can cost, bounded at deploy.
//!
//! A schema's subschemas are counted as a validator would apply them, each
//! `$ref` followed where it points: `{"allOf":[{"$ref":"#/$defs/b"},{"$ref":
//! "#/$defs/b"}]}` over a chain of such definitions doubles at every step. A
//! reference already being followed is followed again at most
//! [`MAX_REF_REPEATS`] times along one path (inputs nest no deeper than that, so
//! a recursive schema for trees stays usable), and the whole count must stay
//! within [`MAX_EXPANSION`]. References are followed inside the schema only (JSON
//! pointers and anchors); dynamic and recursive references are refused, as their
//! cost cannot be bounded this way.

use std::collections::HashMap;

use serde_json::Value;

/// Most subschemas one input check may apply, counted with references expanded.
pub const MAX_EXPANSION: usize = 100_000;
/// How often one reference may be followed again inside itself.
const MAX_REF_REPEATS: usize = crate::json_text::MAX_DEPTH;

/// Keywords whose values are data, not subschemas.
const DATA_KEYWORDS: &[&str] = &[
    "const",
    "enum",
    "default",
    "examples",
    "description",
    "title",
    "$comment",
];

/// Checks that validating against `schema` stays within the budget.
pub fn check(schema: &Value) -> Result<(), String> {
    let mut anchors = HashMap::new();
    collect_anchors(schema, &mut anchors);
    let mut walk = Walk {
        root: schema,
        anchors,
        count: 0,
        stack: Vec::new(),
    };
    walk.visit(schema)
}

fn collect_anchors<'a>(v: &'a Value, anchors: &mut HashMap<String, &'a Value>) {
    match v {
        Value::Object(map) => {
            if let Some(Value::String(name)) = map.get("$anchor") {
                anchors.insert(format!("#{name}"), v);
            }
            for (k, child) in map {
                if !DATA_KEYWORDS.contains(&k.as_str()) {
                    collect_anchors(child, anchors);
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|i| collect_anchors(i, anchors)),
        _ => {}
    }
}

struct Walk<'a> {
    root: &'a Value,
    anchors: HashMap<String, &'a Value>,
    count: usize,
    /// The references being followed, outermost first.
    stack: Vec<&'a str>,
}

impl<'a> Walk<'a> {
    fn visit(&mut self, v: &'a Value) -> Result<(), String> {
        self.count += 1;
        if self.count > MAX_EXPANSION {
            return Err(format!(
                "manifest.input_schema: its references expand to more than {MAX_EXPANSION} subschemas; \
                 checking an input against it could take unbounded time"
            ));
        }
        match v {
            Value::Object(map) => {
                for (k, child) in map {
                    match k.as_str() {
                        "$ref" => {
                            if let Value::String(target) = child {
                                self.follow(target)?;
                            }
                        }
                        "$dynamicRef" | "$recursiveRef" => {
                            return Err(format!(
                                "manifest.input_schema: {k} is not supported (use $ref inside the schema)"
                            ));
                        }
                        k if DATA_KEYWORDS.contains(&k) => {}
                        _ => self.visit(child)?,
                    }
                }
            }
            Value::Array(items) => {
                for item in items {
                    self.visit(item)?;
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn follow(&mut self, target: &'a str) -> Result<(), String> {
        let found = match target {
            "#" => Some(self.root),
            t if t.starts_with("#/") => self.root.pointer(&decode(&t[1..])),
            t => self.anchors.get(t).copied(),
        };
        let Some(schema) = found else {
            return Err(format!(
                "manifest.input_schema: $ref {target:?} does not point inside the schema \
                 (use \"#/$defs/name\" or an anchor)"
            ));
        };
        if self.stack.iter().filter(|t| **t == target).count() >= MAX_REF_REPEATS {
            return Ok(());
        }
        self.stack.push(target);
        let result = self.visit(schema);
        self.stack.pop();
        result
    }
}

/// A JSON pointer from a URI fragment: `%xx` escapes decoded.
fn decode(fragment: &str) -> String {
    let bytes = fragment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (
            bytes[i],
            bytes.get(i + 1).copied().and_then(hex),
            bytes.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// `depth` definitions, each applying the next one `fan` times.
    fn chain(depth: usize, fan: usize) -> Value {
        let mut defs = serde_json::Map::new();
        for i in 0..depth {
            let next = json!({ "$ref": format!("#/$defs/d{}", i + 1) });
            defs.insert(format!("d{i}"), json!({ "allOf": vec![next; fan] }));
        }
        defs.insert(format!("d{depth}"), json!({ "type": "string" }));
        json!({ "$defs": defs, "$ref": "#/$defs/d0" })
    }

    #[test]
    fn exponential_references_are_refused_and_recursive_trees_are_not() {
        assert!(check(&chain(30, 1)).is_ok(), "a long chain is linear");
        assert!(check(&chain(10, 2)).is_ok(), "2^10 is fine");
        let e = check(&chain(30, 2)).unwrap_err();
        assert!(e.contains("expand to more than"), "{e}");
        let tree = json!({
            "$defs": { "node": { "type": "object", "properties": {
                "name": { "type": "string" },
                "children": { "type": "array", "items": { "$ref": "#/$defs/node" } }
            }}},
            "$ref": "#/$defs/node"
        });
        assert!(check(&tree).is_ok());
        let anchored = json!({ "$defs": { "a": { "$anchor": "a", "type": "integer" } }, "$ref": "#a" });
        assert!(check(&anchored).is_ok());
        assert!(check(&json!({ "$ref": "http://example.com/s.json" })).is_err());
        assert!(check(&json!({ "$dynamicRef": "#x" })).is_err());
        assert!(check(&json!({ "$defs": { "a b": { "type": "null" } }, "$ref": "#/$defs/a%20b" })).is_ok());
    }
}
