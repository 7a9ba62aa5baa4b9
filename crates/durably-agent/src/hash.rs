//! Canonical request hashes: the same request hashes the same whatever the key order of the
//! JSON maps in it (serde_json's map order depends on features enabled elsewhere in a build).

use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

/// `value` as JSON with every object's keys sorted, no whitespace.
pub fn canonical_json(value: &Value) -> String {
    let mut out = String::new();
    write_canonical(value, &mut out);
    out
}

fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                if let Some(v) = map.get(key) {
                    write_canonical(v, out);
                }
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(v, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// The SHA-256 (hex, first 16 bytes) of `request`'s canonical JSON.
pub fn request_hash<T: Serialize + ?Sized>(request: &T) -> Result<String, serde_json::Error> {
    let value = serde_json::to_value(request)?;
    let digest = Sha256::digest(canonical_json(&value).as_bytes());
    Ok(digest.iter().take(16).map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn key_order_does_not_change_the_hash() {
        let a: Value =
            serde_json::from_str(r#"{"b":1,"a":{"y":[1,{"q":2,"p":3}],"x":null}}"#).unwrap_or_default();
        let b: Value =
            serde_json::from_str(r#"{"a":{"x":null,"y":[1,{"p":3,"q":2}]},"b":1}"#).unwrap_or_default();
        assert_eq!(canonical_json(&a), r#"{"a":{"x":null,"y":[1,{"p":3,"q":2}]},"b":1}"#);
        assert_eq!(request_hash(&a).ok(), request_hash(&b).ok());
        assert_ne!(request_hash(&json!({"a": 1})).ok(), request_hash(&json!({"a": 2})).ok());
        assert_eq!(request_hash(&json!({"a": 1})).map(|h| h.len()).ok(), Some(32));
    }
}
