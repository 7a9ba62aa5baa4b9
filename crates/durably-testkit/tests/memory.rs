//! The conformance suite against the reference store, `durably_core::MemoryStore`.

// MemoryStore's `list_steps` sorts by start time only (ties keep insertion order), while the
// Store trait promises "then by step id". Listed so the rest of the suite stays green; the test
// still runs and flags it the moment MemoryStore is fixed.
durably_testkit::store_conformance_tests!(
    durably_core::MemoryStore::new();
    expected_failures = [list_steps_breaks_ties_by_step_id]
);
