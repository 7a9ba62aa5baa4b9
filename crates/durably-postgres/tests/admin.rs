//! The store operations for operators' tools (`list_signals`, `delete_run`,
//! `update_run_unless_cancelled`), checked with the testkit's conformance functions on a fresh
//! schema each.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

macro_rules! admin_tests {
    ($($name:ident)*) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            let Some(fixture) = common::fixture().await else { return };
            durably_testkit::conformance::$name(fixture.store()).await;
        }
    )*};
}

admin_tests! {
    list_signals_returns_every_signal_oldest_first
    list_signals_of_a_run_without_signals_is_empty_and_changes_nothing
    list_signals_includes_signals_delivered_before_the_run
    delete_run_removes_the_run_steps_signals_and_lease
    delete_run_of_an_unknown_run_is_false_and_leaves_others
    update_run_unless_cancelled_updates_an_active_run
    update_run_unless_cancelled_keeps_a_cancelled_run
    update_run_unless_cancelled_of_an_unknown_run_is_run_not_found
}
