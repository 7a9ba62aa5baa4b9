//! The engine behaviours that must hold on every store, one public async function each:
//! checkpoint and replay, step ids, non-determinism, retries, signals and durable sleep, one
//! executor per run across engines, recovery, at-most-once tasks, store faults and bad stored
//! data.
//!
//! Each function takes a [`Harness`]: a fresh store that outlives the engines a test opens on
//! it, so that a new engine on the same store stands for a restarted (or another) process.
//! The behaviours are listed once, in the table below; [`engine_suite!`] turns every entry
//! into a test for one store, and [`all`] hands them to a harness of its own.
//!
//! Timings are short (leases of a few hundred milliseconds, poll intervals of tens), so that
//! the suite takes seconds per store; they still hold for stores on a server clock.
//!
//! [`engine_suite!`]: crate::engine_suite

// A test suite reports failure by panicking: the workspace's library lints do not apply here.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::any::Any;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use durably::{Store, Workflow};

use crate::IntoFixture;

mod bad_input;
mod events;
mod executors;
mod faults;
mod leases;
mod queues;
mod recover;
mod replay;
mod retries;
mod schedules;
mod signals;

pub use bad_input::*;
pub use events::*;
pub use executors::*;
pub use faults::*;
pub use leases::*;
pub use queues::*;
pub use recover::*;
pub use replay::*;
pub use retries::*;
pub use schedules::*;
pub use signals::*;

/// The table of behaviours: hands every name, once, to the macro `[$then]` (a path), after the
/// tokens `$args`. Both the registry ([`all`]) and [`engine_suite!`] are generated from it, so
/// a behaviour added here runs on every store. Not public API.
///
/// [`engine_suite!`]: crate::engine_suite
#[doc(hidden)]
#[macro_export]
macro_rules! __engine_table {
    ([$($then:tt)*] { $($args:tt)* }) => {
        $($then)*! { $($args)*
            // replay
            steps_are_checkpointed_and_not_reexecuted
            failed_workflow_resumes_with_only_the_failed_step
            concurrent_calls_get_ids_by_call_order_not_completion
            loop_step_ids_checkpoint_each_iteration
            tasks_outside_a_run_are_plain_functions
            same_task_in_two_runs_stays_isolated
            unit_and_none_results_survive_a_round_trip
            a_step_id_claimed_by_another_task_is_nondeterminism
            a_changed_request_hash_under_the_same_step_is_nondeterminism
            a_sleep_or_signal_deadline_over_another_tasks_record_is_nondeterminism
            added_and_removed_calls_do_not_break_a_run_in_flight
            a_completed_run_returns_its_stored_output
            a_run_id_of_another_workflow_is_refused
            // retries
            retries_until_success_and_records_the_attempts
            exhausted_retries_fail_the_run_with_the_error_text
            permanent_errors_are_not_retried
            a_retryable_impl_decides
            call_site_options_override_the_task
            the_closure_form_retries_with_the_workflow_default
            // executors
            concurrent_executions_of_one_run_execute_each_step_once
            a_concurrent_caller_gets_the_same_failure
            the_idempotency_key_is_stable_across_attempts_and_distinct_per_step
            at_most_once_refuses_to_run_an_ambiguous_step_again
            at_most_once_records_its_intent_before_the_body
            // faults
            a_failed_checkpoint_write_fails_the_run_and_a_rerun_resumes
            a_lost_reply_after_the_write_replays_the_step
            a_failed_open_run_creates_nothing
            a_failed_completion_write_leaves_a_resumable_run
            a_connection_down_mid_run_then_back
            slow_store_calls_delay_but_do_not_break_a_run
            transient_store_failures_are_retried_by_the_engine
            only_transient_failures_are_retried_and_only_as_often_as_the_policy_says
            // bad_input
            a_stored_value_of_the_wrong_type_is_an_error_not_a_panic
            a_corrupted_stored_value_is_an_error_naming_the_step
            an_unserializable_value_is_an_error_before_anything_is_recorded
            an_unserializable_output_fails_the_run_with_a_clear_error
            a_signal_payload_of_the_wrong_type_names_the_signal
            // signals
            watching_many_runs_for_cancellation_takes_one_store_call_per_poll
            wait_then_deliver
            deliver_then_wait
            duplicate_delivery_returns_false_and_keeps_the_first
            two_signals_in_order
            a_delivered_signal_replays_after_a_restart
            signal_timeout_returns_none_at_the_deadline_and_replays_it
            signal_timeout_returns_the_payload_when_delivered_in_time
            the_signal_deadline_survives_a_restart
            durable_sleep_waits_only_for_what_is_left
            signals_outside_a_run_are_an_error
            cancel_stops_a_waiting_run
            a_signal_from_another_engine_wakes_the_waiter
            // leases
            renewing_many_leases_takes_one_store_call_per_period
            engines_racing_for_one_run_execute_each_step_once
            a_second_engine_gets_run_in_progress_naming_the_owner
            with_wait_for_lease_a_second_engine_gets_the_result
            renewal_keeps_a_run_longer_than_its_ttl_owned
            renewal_keeps_a_run_waiting_on_a_signal_owned
            an_engine_that_lost_its_lease_stops_and_records_nothing_more
            a_lost_lease_wakes_a_waiting_run
            a_dropped_execution_frees_the_run_for_another_engine
            // recover
            a_crashed_run_is_recovered_without_re_executing_completed_steps
            unregistered_workflows_are_skipped_and_reported
            finished_and_live_runs_are_left_alone
            a_closure_workflow_registered_with_register_fn_is_recovered
            an_argument_that_cannot_be_deserialized_is_reported_not_executed
            a_run_that_was_waiting_on_a_signal_is_recovered_and_waits_again
            a_worker_recovers_runs_until_shut_down
            run_worker_stops_when_its_shutdown_future_resolves
            // queues, parked runs, children, patches
            an_enqueued_run_is_executed_by_a_worker_and_awaited_from_another_engine
            enqueueing_a_run_id_twice_executes_it_once
            enqueue_refuses_bad_input_and_stores_nothing
            workers_keep_the_queue_concurrency_and_per_key_limits
            a_waiting_run_is_parked_and_resumed_by_replay_when_its_signal_arrives
            a_parked_sleep_resumes_when_its_timer_is_due
            a_parked_run_resumes_only_on_a_worker_of_its_version
            a_delivery_wakes_a_waiting_worker_without_its_poll
            a_child_run_returns_its_output_and_is_started_once
            a_fan_out_of_children_joins_every_output
            a_failed_child_fails_the_parents_await
            cancelling_a_parent_cancels_its_children
            patched_keeps_runs_started_before_a_change_on_the_old_code
            a_stopped_worker_hands_its_runs_to_another
            recover_leaves_a_queued_run_to_the_queue_workers
            // schedules
            each_tick_of_a_schedule_runs_once_across_two_workers
            missed_ticks_are_all_enqueued_with_run_all
            only_the_latest_missed_tick_is_enqueued_with_run_once
            missed_ticks_are_skipped_with_skip
            a_schedule_without_runs_in_the_store_has_missed_nothing
            run_all_enqueues_at_most_the_latest_thousand_missed_ticks
            add_schedule_refuses_bad_schedules_naming_them
            // events
            a_runs_events_are_dense_in_order_and_replayed_steps_are_not_emitted_again
            a_follower_gets_a_waiting_runs_events_live_and_ends_with_it
            a_follower_behind_the_retention_limit_is_told_the_gap_then_gets_the_rest
        }
    };
}

/// One behaviour, boxed for a harness of its own.
pub type Behaviour = fn(Harness) -> Pin<Box<dyn Future<Output = ()> + Send>>;

macro_rules! registry {
    ($($name:ident)*) => {
        /// The name of every behaviour, in the table's order.
        pub const NAMES: &[&str] = &[$(stringify!($name)),*];

        /// Every behaviour with its name, in the table's order.
        pub fn all() -> Vec<(&'static str, Behaviour)> {
            vec![$((stringify!($name), (|h| Box::pin($name(h))) as Behaviour)),*]
        }
    };
}

crate::__engine_table!([registry] {});

/// A store that outlives engines, so a test can simulate a restart by opening a new engine on
/// it, or another process by opening a second one.
pub struct Harness {
    /// A tag no other harness of this process has: tests put it in run ids and log entries
    /// that a process-wide table would otherwise mix up between stores.
    pub kind: String,
    store: Arc<dyn Store>,
    // Dropped after the store handle above: the fixture's guards (a directory, a schema). In a
    // mutex only so that the harness is `Sync`; nothing locks it.
    _fixture: Mutex<Box<dyn Any + Send>>,
}

impl Harness {
    /// A harness on the store (or [`Fixture`](crate::Fixture)) `make`, tagged `label`.
    pub fn new<F: IntoFixture>(make: F, label: &str) -> Harness {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let fixture = make.into_fixture();
        let store: Arc<dyn Store> = fixture.store();
        let kind = format!("{label}-{}", NEXT.fetch_add(1, Ordering::Relaxed));
        Harness { kind, store, _fixture: Mutex::new(Box::new(fixture)) }
    }

    /// A fresh engine on the harness's store (a "restarted process"), with no backoff waits.
    pub fn wf(&self) -> Workflow {
        self.wf_named("test-app")
    }

    /// Like [`wf`](Self::wf), under another application name.
    pub fn wf_named(&self, app: &str) -> Workflow {
        Workflow::builder(app)
            .shared_store(self.store.clone())
            .default_backoff(durably::backoff::constant(0.0))
            .build()
    }

    /// The store the engines share.
    pub fn store(&self) -> Arc<dyn Store> {
        self.store.clone()
    }
}

/// A shared execution counter for task bodies.
#[derive(Clone, Default, Debug)]
pub struct Counter(Arc<AtomicU32>);

impl Counter {
    /// A counter at zero.
    pub fn new() -> Self {
        Self::default()
    }
    /// Counts one execution; returns the count after it.
    pub fn hit(&self) -> u32 {
        self.0.fetch_add(1, Ordering::SeqCst) + 1
    }
    /// The count.
    pub fn get(&self) -> u32 {
        self.0.load(Ordering::SeqCst)
    }
    /// Back to zero.
    pub fn reset(&self) {
        self.0.store(0, Ordering::SeqCst)
    }
}

/// A plain error type for task bodies.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Boom(pub String);

/// A [`Boom`] with `msg`.
pub fn boom(msg: &str) -> Boom {
    Boom(msg.to_owned())
}

/// A workflow body that gives up: `return crash("why")`.
pub fn crash<T>(msg: &str) -> Result<T, durably::Error> {
    Err(durably::Error::permanent(boom(msg)))
}

/// Starts `n` runs `<prefix>-<i>` on `wf`, each waiting on signal `go` (and returning its
/// payload), and returns once the harness's store records all of them as waiting.
pub async fn start_waiting_runs(
    h: &Harness,
    wf: &Workflow,
    prefix: &str,
    n: u32,
) -> Vec<tokio::task::JoinHandle<durably::Result<u32>>> {
    let runners: Vec<_> = (0..n)
        .map(|i| {
            let wf = wf.clone();
            let run_id = format!("{prefix}-{i}");
            tokio::spawn(async move { wf.run(run_id, |_| durably::signal::<u32>("go")).await })
        })
        .collect();
    let waiting = durably::RunFilter::new().status(durably::RunStatus::Waiting);
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    while h.wf().list_runs(&waiting).await.unwrap().len() < n as usize {
        assert!(tokio::time::Instant::now() < deadline, "the runs never all waited");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    runners
}
