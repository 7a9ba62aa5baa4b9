//! Test tools for [durably](https://docs.rs/durably): the store conformance suite.
//!
//! Every [`Store`] implementation, ours and third-party ones, must pass the same suite. One
//! macro call in a test file expands to one `#[tokio::test]` per behaviour of the trait, so a
//! failure names the behaviour that broke:
//!
//! ```ignore
//! // tests/conformance.rs of a store crate
//! durably_testkit::store_conformance_tests!(durably_core::MemoryStore::new());
//! ```
//!
//! The expression is evaluated once per test, inside the test's async body (so it may use
//! `.await`), and must give either a store or a [`Fixture`]: a store together with values that
//! must live as long as it, such as the temporary directory of a database file:
//!
//! ```ignore
//! durably_testkit::store_conformance_tests!({
//!     let dir = tempfile::tempdir().unwrap();
//!     let store = MyStore::open(dir.path().join("db")).await.unwrap();
//!     durably_testkit::Fixture::new(store).guard(dir)
//! });
//! ```
//!
//! A store that knowingly deviates from one behaviour can list it after the expression:
//! `store_conformance_tests!(make(); expected_failures = [list_steps_breaks_ties_by_step_id])`.
//! Such a test still runs and passes only while it *fails*, so the list cannot go stale
//! silently.
//!
//! The behaviours are also public async functions in [`conformance`], for stores that need a
//! harness of their own.

use std::any::Any;
use std::sync::Arc;

pub use durably_core::Store;

pub mod conformance;
pub mod conformance_admin;
pub mod faults;
#[cfg(feature = "mock-openai")]
pub mod mock_openai;

/// A store under test, with values that must outlive it (a temporary directory, a server
/// handle). The store is dropped first, then the guards in the order they were added.
pub struct Fixture<S: Store> {
    // Declared first so that it drops before the guards.
    store: Arc<S>,
    guards: Vec<Box<dyn Any + Send>>,
}

impl<S: Store> Fixture<S> {
    /// A fixture holding `store`.
    pub fn new(store: S) -> Self {
        Fixture { store: Arc::new(store), guards: Vec::new() }
    }

    /// Keeps `guard` alive until the store has been dropped.
    pub fn guard(mut self, guard: impl Send + 'static) -> Self {
        self.guards.push(Box::new(guard));
        self
    }

    /// The store, shared so that a test can hand it to spawned tasks.
    pub fn store(&self) -> Arc<S> {
        Arc::clone(&self.store)
    }
}

/// What [`store_conformance_tests!`] accepts from its expression: a store, or a [`Fixture`].
pub trait IntoFixture {
    /// The store under test.
    type Store: Store;
    /// Wraps the value as a fixture.
    fn into_fixture(self) -> Fixture<Self::Store>;
}

impl<S: Store> IntoFixture for S {
    type Store = S;
    fn into_fixture(self) -> Fixture<S> {
        Fixture::new(self)
    }
}

impl<S: Store> IntoFixture for Fixture<S> {
    type Store = S;
    fn into_fixture(self) -> Fixture<S> {
        self
    }
}

/// Expands to one `#[tokio::test]` per behaviour of the [`Store`] trait, each run against a
/// fresh store made by the given expression. See the [crate docs](crate) for the forms.
///
/// The generated code names only `::durably_testkit`, so a crate using it needs
/// `durably-testkit` (and the store under test) as dev-dependencies, nothing else.
#[macro_export]
macro_rules! store_conformance_tests {
    ($make:expr $(;)?) => {
        $crate::store_conformance_tests!($make; expected_failures = []);
    };
    ($make:expr; expected_failures = [$($xfail:ident),* $(,)?] $(;)?) => {
        $crate::__conformance_tests! {
            ($make) [$($xfail)*]
            open_run_creates_a_running_run_with_its_input
            open_run_creates_a_run_without_input
            reopening_a_running_run_keeps_input_and_created_at
            reopening_a_waiting_run_sets_running_and_clears_waiting_on
            reopening_a_failed_run_sets_running_and_clears_error
            reopening_a_completed_run_returns_it_unchanged
            reopening_a_cancelled_run_returns_it_unchanged
            reopening_with_another_workflow_leaves_the_run_unchanged
            open_run_returns_every_step_and_signal_of_the_run
            open_run_returns_signals_delivered_before_the_run_existed
            concurrent_open_run_creates_the_run_once
            save_step_round_trips_every_field
            save_step_round_trips_absent_fields
            save_step_round_trips_each_status
            save_step_round_trips_extreme_numbers
            save_step_replaces_the_record_with_the_same_id
            save_step_keeps_equal_step_ids_of_different_runs_apart
            step_texts_round_trip_verbatim
            one_megabyte_step_value_round_trips
            run_texts_round_trip_verbatim
            update_run_sets_completed_with_output
            update_run_sets_failed_with_error
            update_run_sets_waiting_with_waiting_on
            update_run_sets_cancelled
            update_run_with_none_clears_output_error_and_waiting_on
            update_run_keeps_workflow_input_and_created_at
            update_run_of_an_unknown_run_is_run_not_found
            update_run_changes_only_its_own_run
            deliver_signal_first_write_wins
            deliver_signal_works_before_the_run_exists
            get_signal_of_an_undelivered_signal_is_none
            signals_of_the_same_name_in_different_runs_are_separate
            signal_payloads_round_trip_verbatim
            concurrent_deliveries_of_one_signal_have_one_winner
            get_run_of_an_unknown_run_is_none
            list_runs_of_an_empty_store_is_empty
            list_runs_returns_newest_first
            list_runs_breaks_ties_by_run_id_descending
            list_runs_returns_full_records
            list_runs_filters_by_status
            list_runs_filters_by_workflow
            list_runs_combines_filters
            list_runs_applies_the_limit_after_ordering
            list_steps_orders_by_start_time
            list_steps_breaks_ties_by_step_id
            list_steps_of_an_unknown_run_is_empty
            awkward_run_ids_are_stored_verbatim_and_kept_apart
            key_separators_in_ids_do_not_collide
            awkward_step_ids_and_names_are_stored_verbatim
            awkward_signal_names_are_stored_verbatim
            awkward_workflow_names_filter_exactly
            concurrent_writes_of_many_runs_all_land
            concurrent_saves_to_one_run_all_land
            wait_for_signal_returns_within_max_wait
            store_works_as_arc_dyn_store
            acquire_lease_of_a_free_run_succeeds
            a_second_owner_gets_held_by_with_owner_and_expiry
            the_same_owner_renews_and_extends_the_expiry
            renewing_a_short_lease_keeps_it
            an_expired_lease_can_be_taken_by_another_owner
            release_by_a_non_owner_does_nothing
            release_by_the_owner_frees_the_lease
            leases_of_different_runs_are_independent
            racing_acquires_have_exactly_one_winner
            recoverable_runs_lists_unfinished_runs_without_a_live_lease
            recoverable_runs_include_expired_and_released_leases
            recoverable_runs_respects_the_limit
            cancelled_runs_names_exactly_the_cancelled_ones
            renew_leases_extends_the_owners_leases_and_names_other_holders
            renew_leases_names_free_leases_without_taking_them
            list_signals_returns_every_signal_oldest_first
            list_signals_of_a_run_without_signals_is_empty_and_changes_nothing
            list_signals_includes_signals_delivered_before_the_run
            delete_run_removes_the_run_steps_signals_and_lease
            delete_run_of_an_unknown_run_is_false_and_leaves_others
            update_run_unless_cancelled_updates_an_active_run
            update_run_unless_cancelled_keeps_a_cancelled_run
            update_run_unless_cancelled_of_an_unknown_run_is_run_not_found
        }
    };
}

/// Generates the tests listed by [`store_conformance_tests!`]. Not public API.
#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_tests {
    (($make:expr) $xfail:tt $($name:ident)*) => {
        $(
            #[::durably_testkit::__private::tokio::test(
                crate = "::durably_testkit::__private::tokio",
                flavor = "multi_thread",
                worker_threads = 2
            )]
            async fn $name() {
                let outcome = ::durably_testkit::__private::tokio::spawn(async move {
                    let fixture = ::durably_testkit::IntoFixture::into_fixture($make);
                    ::durably_testkit::conformance::$name(fixture.store()).await;
                })
                .await;
                ::durably_testkit::__private::conclude(
                    ::core::stringify!($name),
                    ::core::stringify!($xfail),
                    outcome,
                );
            }
        )*
    };
}

/// Support for the macros. Not public API.
#[doc(hidden)]
pub mod __private {
    pub use tokio;

    /// Turns the outcome of a spawned conformance test into the test's verdict.
    /// `expected_failures` is the stringified `[name name …]` list given to the macro.
    #[allow(clippy::panic)] // a test reports failure by panicking
    pub fn conclude(name: &str, expected_failures: &str, outcome: Result<(), tokio::task::JoinError>) {
        let expected_to_fail = expected_failures
            .split(|c: char| c.is_whitespace() || matches!(c, '[' | ']' | ','))
            .any(|listed| listed == name);
        match outcome {
            Ok(()) if expected_to_fail => {
                panic!("`{name}` is listed in expected_failures but passed: remove it from the list")
            }
            Ok(()) => {}
            Err(e) if e.is_panic() && expected_to_fail => {}
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => panic!("`{name}` did not finish: {e}"),
        }
    }
}
