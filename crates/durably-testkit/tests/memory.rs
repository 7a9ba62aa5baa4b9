//! The conformance suite against the reference store, `durably_core::MemoryStore`.

durably_testkit::store_conformance_tests!(durably_core::MemoryStore::new());
