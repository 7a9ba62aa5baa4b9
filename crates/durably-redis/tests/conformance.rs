//! The store conformance suite against `RedisStore` on the shared server: each test under a
//! fresh key prefix, deleted afterwards.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

durably_testkit::store_conformance_tests!(match crate::common::fixture().await {
    Some(fixture) => fixture,
    None => return,
});

/// The operating methods (export, purge, guarded status writes), whose behaviours the macro
/// does not list yet.
mod admin {
    use durably_testkit::conformance_admin as suite;

    macro_rules! admin_tests {
        ($($name:ident)*) => {$(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let Some(fixture) = crate::common::fixture().await else { return };
                suite::$name(fixture.store()).await;
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
}
