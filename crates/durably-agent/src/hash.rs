//! Canonical request hashes: the same request hashes the same whatever the key order of the
//! JSON maps in it (serde_json's map order depends on features enabled elsewhere in a build).

use std::fmt::Write as _;
use std::io::Write;

use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

/// `value` as JSON with every object's keys sorted, no whitespace.
pub fn canonical_json(value: &Value) -> String {
    let mut out = Vec::new();
    // Writing to a `Vec` cannot fail, and serde_json writes UTF-8.
    let _ = write_canonical(value, &mut out);
    String::from_utf8(out).unwrap_or_default()
}

/// Writes `value`'s canonical JSON to `out`: keys and scalars are written by serde_json itself
/// (so escaping is exactly its own), straight into `out`, with no intermediate strings.
fn write_canonical<W: Write>(value: &Value, out: &mut W) -> std::io::Result<()> {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            if !entries.is_sorted_by(|a, b| a.0 <= b.0) {
                entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
            }
            out.write_all(b"{")?;
            for (i, (key, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.write_all(b",")?;
                }
                serde_json::to_writer(&mut *out, key.as_str())?;
                out.write_all(b":")?;
                write_canonical(v, out)?;
            }
            out.write_all(b"}")
        }
        Value::Array(items) => {
            out.write_all(b"[")?;
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.write_all(b",")?;
                }
                write_canonical(v, out)?;
            }
            out.write_all(b"]")
        }
        other => Ok(serde_json::to_writer(&mut *out, other)?),
    }
}

/// Feeds what is written to a SHA-256 digest.
struct Hashing(Sha256);

impl Write for Hashing {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The SHA-256 (hex, first 16 bytes) of `request`'s canonical JSON.
pub fn request_hash<T: Serialize + ?Sized>(request: &T) -> Result<String, serde_json::Error> {
    let value = serde_json::to_value(request)?;
    // Buffered, so that the digest takes blocks rather than a call per key and scalar.
    let mut sink = std::io::BufWriter::with_capacity(8 * 1024, Hashing(Sha256::new()));
    write_canonical(&value, &mut sink).map_err(serde_json::Error::io)?;
    let hashing = sink.into_inner().map_err(|e| serde_json::Error::io(e.into_error()))?;
    let digest = hashing.0.finalize();
    let mut hex = String::with_capacity(32);
    for b in digest.iter().take(16) {
        let _ = write!(hex, "{b:02x}");
    }
    Ok(hex)
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
        // Hashes recorded by earlier versions stay valid: SHA-256 of the canonical text.
        let text = r#"{"a":{"x":null,"y":[1,{"p":3,"q":2}]},"b":1}"#;
        let hex: String =
            Sha256::digest(text.as_bytes()).iter().take(16).map(|b| format!("{b:02x}")).collect();
        assert_eq!(request_hash(&b).ok(), Some(hex));
        let escaped = json!({"k\"ey\u{1}é": ["tab\t", 1.5, -2, true, null]});
        assert_eq!(canonical_json(&escaped), r#"{"k\"ey\u0001é":["tab\t",1.5,-2,true,null]}"#);
    }

    /// Found by the `canonical_json` fuzz target: the canonical text of a float parses back to
    /// the same float, so a request rebuilt from stored JSON hashes the same.
    #[test]
    fn canonical_floats_are_stable() {
        for text in ["444444444441200007867", "0.30000000000000004", "-1e-320"] {
            let value: Value = serde_json::from_str(text).unwrap_or_default();
            let canonical = canonical_json(&value);
            let reparsed: Value = serde_json::from_str(&canonical).unwrap_or_default();
            assert_eq!(canonical_json(&reparsed), canonical, "{text}");
            assert_eq!(request_hash(&reparsed).ok(), request_hash(&value).ok(), "{text}");
        }
    }
}
