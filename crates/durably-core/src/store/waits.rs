//! [`WaitRegistry`]: the `wait_for_signal` callers of one store, by what they wait for, so that
//! whatever learns of a delivery (the store's own write, a poll, a notification from another
//! process) wakes exactly them.
//!
//! Every store follows the same sequence, which [`Waiting::wait_unless`] carries out: register,
//! arm the wake-up, *then* look whether the awaited thing already happened, and sleep only if it
//! did not. A delivery that lands after the look wakes the armed waiter; one that landed before
//! is seen by the look. Nothing is lost in between.
//!
//! ```
//! use std::time::Duration;
//! use durably_core::store::WaitRegistry;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let waits: WaitRegistry<String> = WaitRegistry::new();
//! let waiting = waits.register("run-1".to_owned());
//! assert_eq!(waits.len(), 1);
//!
//! let wake = {
//!     let waits = waits.clone();
//!     async move { waits.wake("run-1"); }
//! };
//! // Not delivered yet when we look; the wake-up ends the wait long before a minute.
//! let (_, ()) = tokio::join!(waiting.wait_unless(async { false }, Duration::from_secs(60)), wake);
//! drop(waiting);
//! assert!(waits.is_empty(), "a wait leaves the registry when dropped");
//! # }
//! ```

use std::borrow::Borrow;
use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::hash::Hash;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::Notify;

/// The waiters of one key.
struct Entry {
    notify: Arc<Notify>,
    waiters: usize,
}

/// Who waits for what, in one process: a map from a key (a run id, a `(run id, signal)` pair, a
/// pub/sub channel) to the waiters of that key. Cloning shares the registry.
pub struct WaitRegistry<K> {
    waits: Arc<Mutex<HashMap<K, Entry>>>,
}

impl<K> Clone for WaitRegistry<K> {
    fn clone(&self) -> Self {
        WaitRegistry { waits: Arc::clone(&self.waits) }
    }
}

impl<K> Default for WaitRegistry<K> {
    fn default() -> Self {
        WaitRegistry { waits: Arc::default() }
    }
}

impl<K> fmt::Debug for WaitRegistry<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WaitRegistry").field("keys", &lock(&self.waits).len()).finish()
    }
}

fn lock<K>(waits: &Mutex<HashMap<K, Entry>>) -> MutexGuard<'_, HashMap<K, Entry>> {
    // Every critical section leaves the map consistent, so a poisoned lock is still usable.
    waits.lock().unwrap_or_else(|e| e.into_inner())
}

impl<K: Hash + Eq + Clone> WaitRegistry<K> {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers one waiter of `key`; it stays registered until the returned [`Waiting`] is
    /// dropped (also when its wait is cancelled).
    pub fn register(&self, key: K) -> Waiting<K> {
        let notify = {
            let mut waits = lock(&self.waits);
            let entry =
                waits.entry(key.clone()).or_insert_with(|| Entry { notify: Arc::default(), waiters: 0 });
            entry.waiters += 1;
            Arc::clone(&entry.notify)
        };
        Waiting { registry: self.clone(), key, notify }
    }

    /// Wakes every waiter of `key`. Returns whether there was one.
    pub fn wake<Q>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        match lock(&self.waits).get(key) {
            Some(entry) => {
                entry.notify.notify_waiters();
                true
            }
            None => false,
        }
    }

    /// Wakes every waiter, for when wake-ups may have been missed (a notification connection
    /// dropped): each looks again.
    pub fn wake_all(&self) {
        for entry in lock(&self.waits).values() {
            entry.notify.notify_waiters();
        }
    }

    /// The keys waited on right now.
    pub fn keys(&self) -> Vec<K> {
        lock(&self.waits).keys().cloned().collect()
    }

    /// How many distinct keys are waited on.
    pub fn len(&self) -> usize {
        lock(&self.waits).len()
    }

    /// Whether nobody waits.
    pub fn is_empty(&self) -> bool {
        lock(&self.waits).is_empty()
    }
}

/// One registered waiter, from [`WaitRegistry::register`]. Dropping it unregisters it.
pub struct Waiting<K: Hash + Eq + Clone> {
    registry: WaitRegistry<K>,
    key: K,
    notify: Arc<Notify>,
}

impl<K: Hash + Eq + Clone> fmt::Debug for Waiting<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Waiting").finish_non_exhaustive()
    }
}

impl<K: Hash + Eq + Clone> Waiting<K> {
    /// What this waiter waits for.
    pub fn key(&self) -> &K {
        &self.key
    }

    /// Waits until this key is woken or `max_wait` has passed since the call, unless `look` resolves to
    /// `true` ("no need to wait": already delivered, or the store cannot tell). The wake-up is
    /// armed before `look` runs, so a wake between the look and the wait is not lost. `look`
    /// may also prepare what wakes it (subscribe to a channel) before looking.
    pub async fn wait_unless(&self, look: impl Future<Output = bool>, max_wait: Duration) {
        let deadline = tokio::time::Instant::now() + max_wait;
        let notified = self.notify.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if look.await {
            return;
        }
        let _ = tokio::time::timeout_at(deadline, notified).await;
    }
}

impl<K: Hash + Eq + Clone> Drop for Waiting<K> {
    fn drop(&mut self) {
        let mut waits = lock(&self.registry.waits);
        if let Some(entry) = waits.get_mut(&self.key) {
            entry.waiters = entry.waiters.saturating_sub(1);
            if entry.waiters == 0 {
                waits.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_key_stays_registered_until_its_last_waiter_leaves() {
        let waits: WaitRegistry<(String, String)> = WaitRegistry::new();
        let key = ("r".to_owned(), "approve".to_owned());
        let first = waits.register(key.clone());
        let second = waits.register(key.clone());
        assert_eq!(waits.keys(), vec![key.clone()]);
        drop(first);
        assert_eq!(waits.len(), 1, "the second waiter still waits");
        assert!(waits.wake(&key));
        drop(second);
        assert!(waits.is_empty());
        assert!(!waits.wake(&key), "nobody left to wake");
    }

    #[tokio::test(start_paused = true)]
    async fn a_wake_during_the_look_is_not_lost() {
        let waits: WaitRegistry<String> = WaitRegistry::new();
        let waiting = waits.register("r".to_owned());
        let start = tokio::time::Instant::now();
        // The delivery lands while the waiter looks (and the look misses it).
        let look = async {
            waits.wake("r");
            false
        };
        waiting.wait_unless(look, Duration::from_secs(60)).await;
        assert!(start.elapsed() < Duration::from_secs(1), "woken, not timed out");
    }

    #[tokio::test(start_paused = true)]
    async fn a_look_that_finds_it_ends_the_wait_and_an_unwoken_wait_times_out() {
        let waits: WaitRegistry<String> = WaitRegistry::new();
        let waiting = waits.register("r".to_owned());
        let start = tokio::time::Instant::now();
        waiting.wait_unless(async { true }, Duration::from_secs(60)).await;
        assert!(start.elapsed() < Duration::from_secs(1));
        waiting.wait_unless(async { false }, Duration::from_secs(5)).await;
        assert!(start.elapsed() >= Duration::from_secs(5));
    }

    #[tokio::test]
    async fn wake_all_wakes_every_key() {
        let waits: WaitRegistry<String> = WaitRegistry::new();
        let (a, b) = (waits.register("a".to_owned()), waits.register("b".to_owned()));
        let wake = {
            let waits = waits.clone();
            async move {
                tokio::task::yield_now().await;
                waits.wake_all();
            }
        };
        let long = Duration::from_secs(3600);
        let both = tokio::time::timeout(Duration::from_secs(10), async {
            tokio::join!(a.wait_unless(async { false }, long), b.wait_unless(async { false }, long), wake)
        })
        .await;
        assert!(both.is_ok(), "both waiters were woken");
    }
}
