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
#[cfg(feature = "engine")]
pub mod multiprocess;
#[cfg(feature = "raw-http")]
pub mod raw_http;

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

/// Expands to one `#[tokio::test]` per multi-process scenario (feature `engine`; see
/// [`multiprocess`]), each on a fresh namespace of the caller's store, and to the ignored test
/// `multiprocess_child` that the scenarios start again, in child processes, as their workers.
///
/// `fresh = …` gives a [`multiprocess::Namespace`] per test (it may `.await`, and may
/// `return` to skip the test); `open(name) = …` opens the store on the namespace called
/// `name` (a `&str`; it may `.await`), in the test and in every child:
///
/// ```ignore
/// // tests/multiprocess.rs of a store crate
/// durably_testkit::multiprocess_suite! {
///     fresh = {
///         let dir = tempfile::tempdir().unwrap();
///         Namespace::new(dir.path().join("db").display().to_string()).guard(dir)
///     },
///     open(path) = MyStore::open(path).await.unwrap(),
/// }
/// ```
///
/// A store that knowingly breaks a scenario lists it after the arguments:
/// `multiprocess_suite! { fresh = …, open(name) = …; expected_failures = [a_signal_from_another_process_wakes_the_waiting_run] }`;
/// such a test passes only while it fails. Each call generates its own `multiprocess_child`,
/// so it is called at most once per module.
#[cfg(feature = "engine")]
#[macro_export]
macro_rules! multiprocess_suite {
    (fresh = $fresh:expr, open($name:ident) = $open:expr $(,)?) => {
        $crate::multiprocess_suite!(fresh = $fresh, open($name) = $open; expected_failures = []);
    };
    (fresh = $fresh:expr, open($name:ident) = $open:expr; expected_failures = [$($xfail:ident),* $(,)?] $(;)?) => {
        fn __durably_multiprocess_open(namespace: ::std::string::String) -> $crate::multiprocess::StoreFuture {
            ::std::boxed::Box::pin(async move {
                let $name: &str = &namespace;
                $crate::__private::shared_store($open)
            })
        }

        /// The child processes' entry: runs the role its parent test set, or nothing.
        #[test]
        #[ignore = "the child process of the multi-process scenarios, started by them"]
        fn multiprocess_child() {
            $crate::multiprocess::child_main(__durably_multiprocess_open);
        }

        $crate::__multiprocess_table!([$crate::__suite_tests] {
            (multiprocess, multiprocess_input)
            (($fresh, __durably_multiprocess_open as $crate::multiprocess::OpenStore, ::core::module_path!()))
            [$($xfail)*]
        });
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

    /// A multi-process scenario's argument: the parent side of the test on its namespace.
    #[cfg(feature = "engine")]
    pub fn multiprocess_input(
        (namespace, open, module_path): (
            crate::multiprocess::Namespace,
            crate::multiprocess::OpenStore,
            &str,
        ),
        name: &str,
    ) -> (crate::multiprocess::Processes, ()) {
        (crate::multiprocess::Processes::new(namespace, open, module_path, name), ())
    }

    /// The store a multi-process suite's `open` gave, shared.
    #[cfg(feature = "engine")]
    pub fn shared_store<S: crate::Store>(store: S) -> Arc<dyn crate::Store> {
        Arc::new(store)
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
