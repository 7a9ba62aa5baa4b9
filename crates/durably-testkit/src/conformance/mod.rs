//! The behaviours every [`Store`] must show, one public async function each, grouped by what
//! they exercise: runs, steps, signals, awkward identifiers, concurrency, leases, the
//! operating methods, queues, event logs and rate limits.
//!
//! Each function takes a fresh, empty store and panics (through `assert!`) when the store
//! deviates from the contract written on the [`Store`] trait. The behaviours are listed once,
//! in the table below; [`store_conformance_tests!`] turns every entry into a test, and [`all`]
//! hands them to a harness of its own.
//!
//! Timestamps are fixed numbers, never the clock, so records can be compared whole. Leases are
//! the exception: a store may keep their time by its own clock (Redis and PostgreSQL use the
//! server's), so the lease tests pass the real time as `now_ms`, use real TTLs, and sleep for
//! a lease to expire.
//!
//! [`store_conformance_tests!`]: crate::store_conformance_tests

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use durably_core::Store;

mod admin;
mod concurrency;
mod events;
mod ids;
mod leases;
mod queues;
mod rates;
mod runs;
mod signals;
mod steps;
mod support;

pub use admin::*;
pub use concurrency::*;
pub use events::*;
pub use ids::*;
pub use leases::*;
pub use queues::*;
pub use rates::*;
pub use runs::*;
pub use signals::*;
pub use steps::*;
pub use support::awkward_ids;

/// The table of behaviours: hands every name, once, to the macro `[$then]` (a path), after the
/// tokens `$args`. Both the registry ([`all`]) and [`store_conformance_tests!`] are generated
/// from it, so a behaviour added here is tested everywhere. Not public API.
///
/// [`store_conformance_tests!`]: crate::store_conformance_tests
#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_table {
    ([$($then:tt)*] { $($args:tt)* }) => {
        $($then)*! { $($args)*
            // runs
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
            update_run_sets_completed_with_output
            update_run_sets_failed_with_error
            update_run_sets_waiting_with_waiting_on
            update_run_sets_cancelled
            update_run_with_none_clears_output_error_and_waiting_on
            update_run_keeps_workflow_input_and_created_at
            update_run_of_an_unknown_run_is_run_not_found
            update_run_changes_only_its_own_run
            get_run_of_an_unknown_run_is_none
            list_runs_of_an_empty_store_is_empty
            list_runs_returns_newest_first
            list_runs_breaks_ties_by_run_id_descending
            list_runs_returns_full_records
            list_runs_filters_by_status
            list_runs_filters_by_workflow
            list_runs_combines_filters
            list_runs_filters_by_run_id_prefix
            list_runs_applies_the_limit_after_ordering
            run_texts_round_trip_verbatim
            // steps
            save_step_round_trips_every_field
            save_step_round_trips_absent_fields
            save_step_round_trips_each_status
            save_step_round_trips_extreme_numbers
            save_step_replaces_the_record_with_the_same_id
            save_step_keeps_equal_step_ids_of_different_runs_apart
            step_texts_round_trip_verbatim
            one_megabyte_step_value_round_trips
            list_steps_orders_by_start_time
            list_steps_breaks_ties_by_step_id
            list_steps_of_an_unknown_run_is_empty
            // signals
            deliver_signal_first_write_wins
            deliver_signal_works_before_the_run_exists
            get_signal_of_an_undelivered_signal_is_none
            signals_of_the_same_name_in_different_runs_are_separate
            signal_payloads_round_trip_verbatim
            concurrent_deliveries_of_one_signal_have_one_winner
            // ids
            awkward_run_ids_are_stored_verbatim_and_kept_apart
            key_separators_in_ids_do_not_collide
            awkward_step_ids_and_names_are_stored_verbatim
            awkward_signal_names_are_stored_verbatim
            awkward_workflow_names_filter_exactly
            // concurrency
            concurrent_writes_of_many_runs_all_land
            concurrent_saves_to_one_run_all_land
            wait_for_signal_returns_within_max_wait
            store_works_as_arc_dyn_store
            // leases
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
            open_run_leased_takes_the_lease_then_opens_or_changes_nothing
            // admin
            list_signals_returns_every_signal_oldest_first
            list_signals_of_a_run_without_signals_is_empty_and_changes_nothing
            list_signals_includes_signals_delivered_before_the_run
            delete_run_removes_the_run_steps_signals_and_lease
            delete_run_of_an_unknown_run_is_false_and_leaves_others
            update_run_unless_cancelled_updates_an_active_run
            update_run_unless_cancelled_keeps_a_cancelled_run
            update_run_unless_cancelled_of_an_unknown_run_is_run_not_found
            // queues
            enqueue_creates_an_enqueued_run_in_its_queue
            enqueue_of_an_existing_run_id_changes_nothing
            claim_takes_runs_by_priority_then_age
            claim_takes_at_most_max_runs_of_its_own_queue
            claim_keeps_the_concurrency_limit_across_owners
            claim_keeps_the_per_key_limit
            claim_keeps_the_rate_limit
            a_claim_records_its_time_on_the_run
            a_versioned_claim_takes_new_runs_and_runs_of_its_own_version
            a_run_whose_lease_lapsed_is_claimed_again
            racing_claims_keep_the_limit_and_never_share_a_run
            park_run_releases_the_lease_and_hides_the_run
            delivering_the_awaited_signal_wakes_a_parked_run
            a_signal_delivered_before_parking_leaves_the_run_claimable
            a_parked_run_is_claimable_when_its_timer_is_due
            park_run_of_a_cancelled_run_changes_nothing
            open_run_of_an_enqueued_run_sets_running
            queue_stats_counts_enqueued_executing_and_parked
            queue_names_lists_each_queue_holding_a_run
            recoverable_runs_leave_queued_runs_to_their_workers
            list_runs_filters_by_queue_and_parent
            wait_for_work_returns_when_a_run_is_enqueued
            // events
            append_events_assigns_dense_offsets_from_zero
            read_events_starts_at_the_offset_and_keeps_the_limit
            event_logs_of_different_runs_are_separate
            concurrent_appends_never_share_an_offset
            event_texts_round_trip_verbatim
            wait_for_events_returns_when_an_event_is_appended
            delete_run_removes_its_events
            append_events_keeps_the_newest_and_never_gives_an_offset_twice
            a_read_below_the_oldest_event_kept_starts_there
            concurrent_appends_under_retention_stay_dense
            wait_for_events_below_the_oldest_kept_returns_and_appends_that_drop_wake
            delete_run_of_a_trimmed_log_starts_again_at_zero
            a_checkpoint_with_events_writes_both_or_neither
            a_status_with_events_writes_both_or_neither
            end_run_writes_the_status_and_releases_the_lease
            // rate limits
            rate_limit_grants_up_to_the_limit_then_refuses_with_a_retry_time
            rate_limit_counts_tokens
            settling_a_grant_counts_its_actual_tokens
            block_rate_refuses_until_the_block_ends
            a_refused_request_fits_once_the_window_passed
            rate_limit_keys_are_independent
            racing_acquires_never_exceed_the_limit
            invalid_rate_limits_are_refused
        }
    };
}

/// One behaviour, boxed for a harness: takes a fresh store, panics when the store deviates.
pub type Behaviour<S> = fn(Arc<S>) -> Pin<Box<dyn Future<Output = ()> + Send>>;

macro_rules! registry {
    ($($name:ident)*) => {
        /// The name of every behaviour, in the table's order.
        pub const NAMES: &[&str] = &[$(stringify!($name)),*];

        /// Every behaviour with its name, in the table's order, for a harness of its own.
        pub fn all<S: Store>() -> Vec<(&'static str, Behaviour<S>)> {
            vec![$((stringify!($name), (|store| Box::pin($name(store))) as Behaviour<S>)),*]
        }
    };
}

crate::__conformance_table!([registry] {});
