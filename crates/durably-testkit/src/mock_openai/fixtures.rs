//! Fixture files: parsing a scripted conversation and finding the file from any crate's tests.

use std::io;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::MockReply;

/// Parses a fixture document: `{"replies": [...]}` or `[...]`.
pub fn parse_fixture(doc: &Value) -> io::Result<Vec<MockReply>> {
    let entries = match doc {
        Value::Array(entries) => entries,
        Value::Object(map) => map.get("replies").and_then(Value::as_array).ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidData, "fixture object without a `replies` array")
        })?,
        _ => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "a fixture is an array of replies or an object with `replies`",
            ));
        }
    };
    entries.iter().map(MockReply::from_json).collect()
}

/// The workspace's `fixtures/` directory.
pub fn fixtures_dir() -> PathBuf {
    workspace_root().join("fixtures")
}

fn workspace_root() -> PathBuf {
    // crates/durably-testkit -> the workspace root.
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("..")
}

pub(super) fn resolve_fixture(path: &Path) -> PathBuf {
    if path.is_relative() && !path.exists() {
        for candidate in [workspace_root().join(path), fixtures_dir().join(path)] {
            if candidate.exists() {
                return candidate;
            }
        }
    }
    path.to_path_buf()
}
