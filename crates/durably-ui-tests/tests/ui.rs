//! The attribute macros' compile errors (each `tests/ui/*.rs` next to the `.stderr` it must
//! produce) and one expansion using every attribute argument, compiled and run. Regenerate the
//! `.stderr` files with `TRYBUILD=overwrite cargo test --test ui` and read them: each must show
//! the readable message.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*_fail.rs");
    t.pass("tests/ui/*_pass.rs");
}
