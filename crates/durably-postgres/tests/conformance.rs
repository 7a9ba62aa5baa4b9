//! The store conformance suite against `PostgresStore`: each test on a fresh schema of the real
//! server, dropped afterwards.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

durably_testkit::store_conformance_tests!(match crate::common::fixture().await {
    Some(fixture) => fixture,
    None => return,
};
    expected_failures = [
        enqueue_creates_an_enqueued_run_in_its_queue, enqueue_of_an_existing_run_id_changes_nothing,
        claim_takes_runs_by_priority_then_age, claim_takes_at_most_max_runs_of_its_own_queue,
        claim_keeps_the_concurrency_limit_across_owners, claim_keeps_the_per_key_limit,
        claim_keeps_the_rate_limit, a_run_whose_lease_lapsed_is_claimed_again,
        racing_claims_keep_the_limit_and_never_share_a_run, park_run_releases_the_lease_and_hides_the_run,
        delivering_the_awaited_signal_wakes_a_parked_run, a_signal_delivered_before_parking_leaves_the_run_claimable,
        a_parked_run_is_claimable_when_its_timer_is_due, park_run_of_a_cancelled_run_changes_nothing,
        open_run_of_an_enqueued_run_sets_running, queue_stats_counts_enqueued_executing_and_parked,
        list_runs_filters_by_queue_and_parent, wait_for_work_returns_when_a_run_is_enqueued,
        append_events_assigns_dense_offsets_from_zero, read_events_starts_at_the_offset_and_keeps_the_limit,
        event_logs_of_different_runs_are_separate, concurrent_appends_never_share_an_offset,
        event_texts_round_trip_verbatim, wait_for_events_returns_when_an_event_is_appended,
        delete_run_removes_its_events,
    ]
);
