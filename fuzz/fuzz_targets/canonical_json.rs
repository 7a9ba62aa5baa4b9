//! Arbitrary bytes parsed as JSON: `canonical_json` of the value must be stable (parsing the
//! canonical form and canonicalizing again gives the same string) and `request_hash` must give
//! a hash or an error, never a panic.
#![no_main]

use durably::agent::{canonical_json, request_hash};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) else { return };
    let canonical = canonical_json(&value);
    let reparsed: serde_json::Value = match serde_json::from_str(&canonical) {
        Ok(v) => v,
        Err(err) => panic!("canonical form is not JSON ({err}): {canonical}"),
    };
    assert_eq!(canonical_json(&reparsed), canonical, "canonical form is not stable");
    let first = request_hash(&value);
    let second = request_hash(&reparsed);
    if let (Ok(a), Ok(b)) = (&first, &second) {
        assert_eq!(a, b, "equal values hash differently");
    }
});
