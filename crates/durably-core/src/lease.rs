//! One executor per run across processes (rule 9 of docs/design.md): an execution takes the run's lease in
//! the store before it opens the run (or with it, in one write), has it renewed in the background every third of its TTL
//! while the run executes (through signal waits and sleeps too), and releases it when the
//! execution ends. A renewal that finds the lease gone marks it lost; the run then stops at its
//! next step boundary and records nothing more.
//!
//! Renewals are batched per engine: one [`Renewer`] task renews every lease the engine holds in
//! one store call ([`Store::renew_leases`](crate::store::Leases::renew_leases)) per third of the TTL, so thousands of runs waiting on
//! signals cost one round trip per period, not one each. A release first takes its lease out of
//! the renewer, then waits for a batch in flight: no renewal sent before the release can land
//! after it and take the lease back.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use crate::error::{Error, Result};
use crate::store::{LeaseOutcome, LeasedOpen, NewRun, RunHistory, Store};
use crate::sync::{TaskSlot, lock};

/// The lease TTL when the builder does not set one.
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(30);

/// The longest pause between two attempts to take a lease held by another owner.
const MAX_LEASE_POLL: Duration = Duration::from_millis(250);
/// The shortest such pause.
const MIN_LEASE_POLL: Duration = Duration::from_millis(10);

/// The owner ids of every engine built in this process.
static OWNERS_HERE: LazyLock<Mutex<HashSet<String>>> = LazyLock::new(Default::default);

/// `(owner, run_id)` of every lease an execution in this process holds right now. An
/// execution leaves it synchronously when it ends or is dropped, before its lease is released
/// in the background: a lease of a local owner that is not listed here is abandoned.
static LIVE_HERE: LazyLock<Mutex<HashSet<(String, String)>>> = LazyLock::new(Default::default);

/// An entry of [`LIVE_HERE`] for an acquire in progress: removed on drop unless kept.
struct LiveMark(Option<(String, String)>);

impl LiveMark {
    fn new(key: (String, String)) -> LiveMark {
        lock(&LIVE_HERE).insert(key.clone());
        LiveMark(Some(key))
    }

    /// The lease was acquired: the entry stays until the hold is released.
    fn keep(mut self) {
        self.0 = None;
    }
}

impl Drop for LiveMark {
    fn drop(&mut self) {
        if let Some(key) = self.0.take() {
            lock(&LIVE_HERE).remove(&key);
        }
    }
}

/// Notes that an engine of this process uses `owner`.
pub(crate) fn register_owner(owner: &str) {
    lock(&OWNERS_HERE).insert(owner.to_owned());
}

/// True when nobody executes the run under `owner`'s lease any more, although the lease is
/// live in the store: its holder is an engine of this process whose execution ended or was
/// dropped (its release is on the way), or a process of this host that died.
fn holder_is_gone(owner: &str, run_id: &str) -> bool {
    if lock(&OWNERS_HERE).contains(owner) {
        return !lock(&LIVE_HERE).contains(&(owner.to_owned(), run_id.to_owned()));
    }
    holder_is_dead(owner)
}

/// An owner id unique to one engine: `<hostname>-<pid>-<random>`. The host and pid say where
/// a lease holder runs (for operators reading `RunInProgress`); the random part tells apart
/// engines in one process and processes that reuse a pid.
pub(crate) fn new_owner_id() -> String {
    static ENGINES: AtomicU64 = AtomicU64::new(0);
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(ENGINES.fetch_add(1, Ordering::Relaxed));
    hasher.write_u64(fastrand::u64(..));
    hasher.write_u128(
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos(),
    );
    format!("{}-{}-{:08x}", hostname(), std::process::id(), hasher.finish() as u32)
}

/// True when `owner` is an id made by [`new_owner_id`] on this host whose process no longer
/// exists: its lease is abandoned (the process crashed) and need not be waited out. Linux only
/// (it looks in `/proc`); elsewhere, and for owner ids set by hand, a lease is only ever
/// abandoned by expiring. A reaped pid reused by another process reads as alive: then the lease
/// is waited out, which is safe.
fn holder_is_dead(owner: &str) -> bool {
    if !cfg!(target_os = "linux") || !std::path::Path::new("/proc/self").exists() {
        return false;
    }
    let mut parts = owner.rsplitn(3, '-');
    let (Some(random), Some(pid), Some(host)) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    let Ok(pid) = pid.parse::<u32>() else { return false };
    random.len() == 8
        && random.bytes().all(|b| b.is_ascii_hexdigit())
        && host == hostname()
        && pid != std::process::id()
        && !std::path::Path::new(&format!("/proc/{pid}")).exists()
}

fn hostname() -> String {
    let from_file = ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .find_map(|p| std::fs::read_to_string(p).ok())
        .map(|s| s.trim().to_owned());
    from_file
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .or_else(|| std::env::var("COMPUTERNAME").ok())
        .unwrap_or_else(|| "localhost".to_owned())
}

/// What the run knows about its lease: shared by the run context (checked at step boundaries)
/// and the engine's renewer.
#[derive(Debug)]
pub(crate) struct LeaseState {
    ttl: Duration,
    lost: AtomicBool,
    /// Set once the store released the lease with the run's final status
    /// ([`Leases::end_run`](crate::store::Leases::end_run)): nothing is left to release.
    released: AtomicBool,
    holder: Mutex<Option<String>>,
    /// When the last successful acquire or renewal was *sent*: the store's expiry is at least
    /// `ttl` after it.
    renewed_at: Mutex<Instant>,
}

impl LeaseState {
    fn new(ttl: Duration, acquired_at: Instant) -> Self {
        LeaseState {
            ttl,
            lost: AtomicBool::new(false),
            released: AtomicBool::new(false),
            holder: Mutex::new(None),
            renewed_at: Mutex::new(acquired_at),
        }
    }

    /// True once the lease was found taken, or went unrenewed for a whole TTL (another owner
    /// may have taken it since). Once lost, always lost.
    pub(crate) fn is_lost(&self) -> bool {
        if self.lost.load(Ordering::SeqCst) {
            return true;
        }
        if lock(&self.renewed_at).elapsed() >= self.ttl {
            self.lost.store(true, Ordering::SeqCst);
            return true;
        }
        false
    }

    /// The store released the lease with the run's final status.
    pub(crate) fn mark_released(&self) {
        self.released.store(true, Ordering::SeqCst);
    }

    fn mark_lost(&self, holder: Option<String>) {
        *lock(&self.holder) = holder;
        self.lost.store(true, Ordering::SeqCst);
    }

    /// The error of an execution that lost its lease.
    pub(crate) fn error(&self, run_id: &str) -> Error {
        Error::LeaseLost { run_id: run_id.to_owned(), holder: lock(&self.holder).clone() }
    }
}

/// Renews every lease one engine holds, in one store call every third of the TTL. Its task
/// starts with the first lease handed to it and stops when it holds none.
pub(crate) struct Renewer {
    store: Arc<dyn Store>,
    owner: String,
    ttl: Duration,
    state: Mutex<Renewing>,
    /// Held by the task from before it picks the leases of a batch until the store answered. A
    /// release takes it after taking its lease out of [`Renewing::leases`], so a renewal of that
    /// lease is either in no batch or in one that has landed: none can reach the store after
    /// the release and take the lease back.
    batch: tokio::sync::Mutex<()>,
}

#[derive(Default)]
struct Renewing {
    leases: HashMap<String, Renewed>,
    /// The renewal task, if one runs.
    task: TaskSlot,
}

/// A lease being renewed, with the run's waits to wake when it is lost.
struct Renewed {
    state: Arc<LeaseState>,
    wake: Arc<Notify>,
}

impl Renewer {
    pub(crate) fn new(store: Arc<dyn Store>, owner: String, ttl: Duration) -> Self {
        Renewer { store, owner, ttl, state: Mutex::new(Renewing::default()), batch: Default::default() }
    }

    /// Stops renewing `run_id`'s lease, if `state` is the one renewed (not a later execution's).
    fn forget(&self, run_id: &str, state: &Arc<LeaseState>) {
        let mut renewing = lock(&self.state);
        if renewing.leases.get(run_id).is_some_and(|r| Arc::ptr_eq(&r.state, state)) {
            renewing.leases.remove(run_id);
        }
    }

    /// Waits until no renewal batch is in flight.
    async fn settle(&self) {
        drop(self.batch.lock().await);
    }

    /// The task: one [`Store::renew_leases`](crate::store::Leases::renew_leases) call per period for every lease held, until none
    /// is left. A lease found taken, released, or unrenewed for a whole TTL is marked lost, its
    /// run woken, and it is renewed no more.
    async fn run(self: Arc<Self>, task: u64) {
        let _end = TaskEnd { renewer: self.clone(), task };
        let every = (self.ttl / 3).max(Duration::from_millis(1));
        loop {
            tokio::time::sleep(every).await;
            // Never cancelled mid-call (see `batch`): a renewal sent after a release would take
            // the lease back.
            let batch = self.batch.lock().await;
            let leases: Vec<(String, Arc<LeaseState>, Arc<Notify>)> = {
                let mut renewing = lock(&self.state);
                if renewing.leases.is_empty() {
                    renewing.task.free(task);
                    return;
                }
                renewing.leases.iter().map(|(id, r)| (id.clone(), r.state.clone(), r.wake.clone())).collect()
            };
            let run_ids: Vec<String> = leases.iter().map(|(id, _, _)| id.clone()).collect();
            let sent = Instant::now();
            let outcome = self.store.renew_leases(&run_ids, &self.owner, self.ttl, self.store.now_ms()).await;
            drop(batch);
            match outcome {
                Ok(lost) => {
                    let lost: HashMap<String, Option<String>> = lost.into_iter().collect();
                    for (run_id, state, wake) in leases {
                        match lost.get(&run_id) {
                            Some(holder) => {
                                match holder {
                                    Some(holder) => tracing::warn!(
                                        target: "durably", run_id = %run_id, holder = %holder,
                                        "lease lost to another owner; the run stops at its next step boundary"
                                    ),
                                    None => tracing::warn!(
                                        target: "durably", run_id = %run_id,
                                        "lease released or lapsed in the store; the run stops at its next step boundary"
                                    ),
                                }
                                state.mark_lost(holder.clone());
                                self.stop(&run_id, &state, &wake);
                            }
                            None if state.is_lost() => self.stop(&run_id, &state, &wake),
                            None => *lock(&state.renewed_at) = sent,
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(
                        target: "durably", owner = %self.owner, leases = run_ids.len(), error = %e,
                        "could not renew the leases"
                    );
                    for (run_id, state, wake) in leases {
                        if state.is_lost() {
                            tracing::warn!(
                                target: "durably", run_id = %run_id,
                                "lease unrenewed for a whole TTL; the run stops at its next step boundary"
                            );
                            self.stop(&run_id, &state, &wake);
                        }
                    }
                }
            }
        }
    }

    /// Renews a lost lease no more, and wakes its run's waits so that they stop.
    fn stop(&self, run_id: &str, state: &Arc<LeaseState>, wake: &Notify) {
        self.forget(run_id, state);
        wake.notify_waiters();
    }
}

/// Marks the renewer task `task` as ended when it is dropped: it returned, or its runtime shut
/// down (the next lease handed to the renewer then starts a new one).
struct TaskEnd {
    renewer: Arc<Renewer>,
    task: u64,
}

impl Drop for TaskEnd {
    fn drop(&mut self) {
        lock(&self.renewer.state).task.free(self.task);
    }
}

/// The lease an execution holds: renewed by the engine's [`Renewer`] once the run context
/// exists, released by [`LeaseHold::release`], or on drop (a cancelled future) by a spawned
/// task.
pub(crate) struct LeaseHold {
    store: Arc<dyn Store>,
    run_id: String,
    owner: String,
    pub(crate) state: Arc<LeaseState>,
    /// The renewer renewing it, once [`LeaseHold::start_renewal`] handed it over.
    renewer: Option<Arc<Renewer>>,
    released: bool,
}

impl std::fmt::Debug for LeaseHold {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeaseHold")
            .field("run_id", &self.run_id)
            .field("owner", &self.owner)
            .finish_non_exhaustive()
    }
}

/// Takes the lease on `run_id` for `owner`. When another owner holds it: `RunInProgress`, or,
/// with `wait`, tries again until it is free.
pub(crate) async fn acquire(
    store: &Arc<dyn Store>,
    run_id: &str,
    owner: &str,
    ttl: Duration,
    wait: bool,
) -> Result<LeaseHold> {
    let mut logged = false;
    let key = (owner.to_owned(), run_id.to_owned());
    loop {
        // Listed as live *before* the store call: another engine of this process that finds
        // this owner's lease in the store meanwhile must not take it for abandoned. Unlisted
        // again unless the lease was acquired (also if this future is dropped mid-call).
        let mark = LiveMark::new(key.clone());
        let sent = Instant::now();
        match store.acquire_lease(run_id, owner, ttl, store.now_ms()).await? {
            LeaseOutcome::Acquired => return Ok(LeaseHold::taken(store, run_id, owner, ttl, sent, mark)),
            LeaseOutcome::HeldBy(lease) if holder_is_gone(&lease.owner, run_id) => {
                // Its execution is over (dropped in this process, or its process died on this
                // host): end its lease now instead of waiting for the TTL, then race for it
                // like anyone else.
                tracing::info!(target: "durably", holder = %lease.owner, "lease holder is gone; taking over");
                store.release_lease(run_id, &lease.owner).await?;
            }
            LeaseOutcome::HeldBy(lease) if !wait => {
                tracing::info!(target: "durably", holder = %lease.owner, "run is executing elsewhere");
                return Err(Error::RunInProgress { run_id: run_id.to_owned(), owner: lease.owner });
            }
            LeaseOutcome::HeldBy(lease) => {
                if !logged {
                    tracing::info!(target: "durably", holder = %lease.owner, "run is executing elsewhere; waiting for its lease");
                    logged = true;
                }
                // Try again when it would expire, or sooner (it is released when its execution
                // ends), by the store's clock as reported.
                let left = u64::try_from(lease.expires_at_ms.saturating_sub(store.now_ms())).unwrap_or(0);
                tokio::time::sleep(Duration::from_millis(left).clamp(MIN_LEASE_POLL, MAX_LEASE_POLL)).await;
            }
        }
    }
}

/// Takes the lease on `new.run_id` for `owner` and opens the run: in one store write where the
/// store can ([`Leases::open_run_leased`](crate::store::Leases::open_run_leased)), with the
/// history it opened; else (or when another owner holds the lease) as [`acquire`] does, and the
/// caller opens the run (`None`).
pub(crate) async fn acquire_and_open(
    store: &Arc<dyn Store>,
    new: &NewRun,
    owner: &str,
    ttl: Duration,
    wait: bool,
) -> Result<(LeaseHold, Option<RunHistory>)> {
    let mark = LiveMark::new((owner.to_owned(), new.run_id.clone()));
    let sent = Instant::now();
    match store.open_run_leased(new, owner, ttl, store.now_ms()).await {
        Some(Ok(LeasedOpen::Opened(history))) => {
            return Ok((LeaseHold::taken(store, &new.run_id, owner, ttl, sent, mark), Some(*history)));
        }
        Some(Err(e)) => return Err(e),
        // Held by another owner: `acquire` waits for it, or takes over from a holder that is gone.
        Some(Ok(_)) | None => drop(mark),
    }
    Ok((acquire(store, &new.run_id, owner, ttl, wait).await?, None))
}

impl LeaseHold {
    /// The lease just taken, by the store call sent at `sent`; `mark` lists it as live here.
    fn taken(
        store: &Arc<dyn Store>,
        run_id: &str,
        owner: &str,
        ttl: Duration,
        sent: Instant,
        mark: LiveMark,
    ) -> Self {
        mark.keep();
        tracing::debug!(target: "durably", owner, ttl_ms = ttl.as_millis() as u64, "lease acquired");
        LeaseHold {
            store: store.clone(),
            run_id: run_id.to_owned(),
            owner: owner.to_owned(),
            state: Arc::new(LeaseState::new(ttl, sent)),
            renewer: None,
            released: false,
        }
    }

    /// Hands the lease to the engine's renewer, which renews it every third of the TTL (and
    /// starts its task if it was idle). A renewal that finds another owner (or that fails for a
    /// whole TTL) marks the lease lost and wakes the run's waits.
    pub(crate) fn start_renewal(&mut self, renewer: &Arc<Renewer>, wake: Arc<Notify>) {
        let renewer = renewer.clone();
        let start = {
            let mut renewing = lock(&renewer.state);
            renewing.leases.insert(self.run_id.clone(), Renewed { state: self.state.clone(), wake });
            renewing.task.claim()
        };
        if let Some(task) = start {
            tokio::spawn(renewer.clone().run(task));
        }
        self.renewer = Some(renewer);
    }

    /// Stops renewing and waits for a renewal in flight: done before the run's final status is
    /// written with the lease's release ([`Leases::end_run`](crate::store::Leases::end_run)),
    /// so that no renewal finds the lease gone and reports it lost.
    pub(crate) async fn stop_renewal(&mut self) {
        if let Some(renewer) = self.renewer.take() {
            renewer.forget(&self.run_id, &self.state);
            renewer.settle().await;
        }
    }

    /// Stops renewing, waits for a renewal in flight, and releases the lease (unless the store
    /// released it with the run's final status).
    pub(crate) async fn release(mut self) {
        self.released = true;
        self.leave_live();
        self.stop_renewal().await;
        if self.state.released.load(Ordering::SeqCst) {
            tracing::debug!(target: "durably", run_id = %self.run_id, "lease released with the final status");
            return;
        }
        if let Err(e) = self.store.release_lease(&self.run_id, &self.owner).await {
            // The lease lapses after its TTL anyway.
            tracing::warn!(target: "durably", run_id = %self.run_id, error = %e, "could not release the lease");
        } else {
            tracing::debug!(target: "durably", run_id = %self.run_id, "lease released");
        }
    }
}

impl LeaseHold {
    fn leave_live(&self) {
        lock(&LIVE_HERE).remove(&(self.owner.clone(), self.run_id.clone()));
    }
}

impl Drop for LeaseHold {
    /// An execution dropped mid-way (its caller gave up, a worker shut down): stop renewing
    /// and release in the background, so another executor need not wait for the TTL.
    fn drop(&mut self) {
        if self.released {
            return;
        }
        self.leave_live();
        let renewer = self.renewer.take();
        if let Some(renewer) = &renewer {
            renewer.forget(&self.run_id, &self.state);
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let (store, run_id, owner) =
            (self.store.clone(), std::mem::take(&mut self.run_id), std::mem::take(&mut self.owner));
        runtime.spawn(async move {
            if let Some(renewer) = renewer {
                renewer.settle().await;
            }
            if let Err(e) = store.release_lease(&run_id, &owner).await {
                tracing::warn!(target: "durably", run_id = %run_id, error = %e, "could not release the lease");
            }
        });
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn owner_ids_name_host_and_pid_and_differ_per_engine() {
        let (a, b) = (new_owner_id(), new_owner_id());
        assert_ne!(a, b);
        assert!(a.starts_with(&format!("{}-{}-", hostname(), std::process::id())), "{a}");
        let random = a.rsplit('-').next().unwrap();
        assert!(random.len() == 8 && random.bytes().all(|b| b.is_ascii_hexdigit()), "{a}");
    }

    #[test]
    fn only_a_local_owner_whose_process_is_gone_is_dead() {
        // This process is alive.
        assert!(!holder_is_dead(&new_owner_id()));
        // Far above any pid_max: no such process.
        let gone = format!("{}-4000000000-0123abcd", hostname());
        assert_eq!(holder_is_dead(&gone), cfg!(target_os = "linux"));
        // Another host, or an id not made by `new_owner_id`: never presumed dead.
        assert!(!holder_is_dead("some-other-host.example-4000000000-0123abcd"));
        assert!(!holder_is_dead("worker-1"));
        assert!(!holder_is_dead(&format!("{}-4000000000-custom", hostname())));
    }
}
