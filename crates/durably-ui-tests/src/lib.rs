//! Nothing here: the tests are in `tests/ui.rs`.
