//! Test tools for [durably](https://docs.rs/durably): the store conformance suite, and (feature
//! `engine`) the engine suite that every store runs too.
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
//! The behaviours are also public async functions in [`conformance`], listed once in its table
//! ([`conformance::all`] gives them with their names), for stores that need a harness of their
//! own.

use std::any::Any;
use std::sync::Arc;

pub use durably_core::Store;

pub mod conformance;
#[cfg(feature = "engine")]
pub mod engine;
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
        $crate::__conformance_table!([$crate::__suite_tests] { (conformance, conformance_input) ($make) [$($xfail)*] });
    };
}

/// Generates the tests of a suite's table: `$suite` is the module of its behaviours (and of its
/// `NAMES`), `$prepare` a function of [`__private`] turning the store expression and the
/// test's name into the behaviour's argument and what must outlive it. Not public API.
#[doc(hidden)]
#[macro_export]
macro_rules! __suite_tests {
    (($suite:ident, $prepare:ident) ($make:expr) $xfail:tt $($name:ident)*) => {
        $(
            #[::durably_testkit::__private::tokio::test(
                crate = "::durably_testkit::__private::tokio",
                flavor = "multi_thread",
                worker_threads = 2
            )]
            async fn $name() {
                let outcome = ::durably_testkit::__private::tokio::spawn(async move {
                    let (input, _keep) = ::durably_testkit::__private::$prepare($make, ::core::stringify!($name));
                    ::durably_testkit::$suite::$name(input).await;
                })
                .await;
                ::durably_testkit::__private::conclude(
                    ::core::stringify!($name),
                    ::core::stringify!($xfail),
                    ::durably_testkit::$suite::NAMES,
                    outcome,
                );
            }
        )*
    };
}

/// Expands to one `#[tokio::test]` per engine behaviour (feature `engine`), each run against
/// a fresh store made by the given expression, as [`store_conformance_tests!`] does for the
/// store's own behaviours: the same engine suite runs on every store.
///
/// ```ignore
/// // tests/engine.rs of a store crate
/// durably_testkit::engine_suite!(MyStore::open_fresh().await.unwrap());
/// ```
///
/// A store that knowingly breaks an engine behaviour lists it after the expression:
/// `engine_suite!(make(); expected_failures = [signal_timeout_returns_none_at_the_deadline_and_replays_it])`;
/// such a test passes only while it fails.
#[cfg(feature = "engine")]
#[macro_export]
macro_rules! engine_suite {
    ($make:expr $(;)?) => {
        $crate::engine_suite!($make; expected_failures = []);
    };
    ($make:expr; expected_failures = [$($xfail:ident),* $(,)?] $(;)?) => {
        $crate::__engine_table!([$crate::__suite_tests] { (engine, engine_input) ($make) [$($xfail)*] });
    };
}

/// Support for the macros. Not public API.
#[doc(hidden)]
pub mod __private {
    use std::sync::Arc;

    use crate::{Fixture, IntoFixture};

    pub use tokio;

    /// A conformance behaviour's argument: the store, with its fixture kept alive beside it.
    pub fn conformance_input<F: IntoFixture>(make: F, _name: &str) -> (Arc<F::Store>, Fixture<F::Store>) {
        let fixture = make.into_fixture();
        (fixture.store(), fixture)
    }

    /// An engine behaviour's argument: a harness on the store, tagged with the test's name.
    #[cfg(feature = "engine")]
    pub fn engine_input<F: IntoFixture>(make: F, name: &str) -> (crate::engine::Harness, ()) {
        (crate::engine::Harness::new(make, name), ())
    }

    /// Turns the outcome of a spawned conformance test into the test's verdict.
    /// `expected_failures` is the stringified `[name name …]` list given to the macro, `known`
    /// the names of the suite's table: a listed name that is not in it fails every test, so a
    /// typo cannot leave a failure unlisted.
    #[allow(clippy::panic)] // a test reports failure by panicking
    pub fn conclude(
        name: &str,
        expected_failures: &str,
        known: &[&str],
        outcome: Result<(), tokio::task::JoinError>,
    ) {
        let listed: Vec<&str> = expected_failures
            .split(|c: char| c.is_whitespace() || matches!(c, '[' | ']' | ','))
            .filter(|listed| !listed.is_empty())
            .collect();
        if let Some(unknown) = listed.iter().find(|listed| !known.contains(listed)) {
            panic!("`{unknown}` is listed in expected_failures but is no test of the suite")
        }
        let expected_to_fail = listed.contains(&name);
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
