//! Values in and out of their stored JSON text, with errors that name the run, the step and
//! the Rust type (rule 15 of docs/design.md).

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, Result};

/// Reads a stored value (`null` when absent) as a `T`.
pub(crate) fn decode<T: DeserializeOwned>(
    run_id: &str,
    step_id: &str,
    what: &'static str,
    json: Option<&str>,
) -> Result<T> {
    serde_json::from_str(json.unwrap_or("null")).map_err(|source| Error::Deserialize {
        run_id: run_id.to_owned(),
        step_id: step_id.to_owned(),
        what,
        type_name: std::any::type_name::<T>(),
        source,
    })
}

/// Writes a value as JSON text, before anything about it is recorded.
pub(crate) fn encode<T: Serialize + ?Sized>(
    run_id: &str,
    step_id: &str,
    what: &'static str,
    value: &T,
) -> Result<String> {
    serde_json::to_string(value).map_err(|source| Error::Serialize {
        run_id: run_id.to_owned(),
        step_id: step_id.to_owned(),
        what,
        type_name: std::any::type_name::<T>(),
        source,
    })
}
