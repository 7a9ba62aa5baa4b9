//! Arbitrary strings as run-id templates (`#[durably::workflow(id = "…")]`). The parser lives in
//! the proc-macro crate, which a normal crate cannot call, so its source file is compiled in
//! here. A template either is refused with a message or parses into pieces that print back to
//! a template parsing to the same pieces; never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[allow(dead_code, unreachable_pub)]
#[path = "../../crates/durably-macros/src/template.rs"]
mod template;

use template::{format_string, parse, unparse};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(pieces) = parse(text) else { return };
    let _ = format_string(&pieces);
    let again = parse(&unparse(&pieces));
    assert_eq!(again.as_ref().ok(), Some(&pieces), "template {text:?} does not round-trip");
});
