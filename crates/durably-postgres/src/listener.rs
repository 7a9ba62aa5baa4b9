//! Cross-process wake-ups: one dedicated connection per store that `LISTEN`s on the store's
//! channels and wakes the waiters named in each notification: the `wait_for_signal` callers of
//! a run (signal channel), the `wait_for_work` callers of a queue (work channel), the
//! `wait_for_events` callers of a run's log (events channel).
//!
//! `deliver_signal` sends `pg_notify(channel, run_id)` in the statement that records the
//! signal, so the notification goes out when (and only when) the delivery commits; `enqueue`,
//! a delivery that unparks a run and `append_events` do the same on their channels. The listener
//! reconnects with a capped backoff when its connection drops; after every (re)connection it
//! wakes every waiter, since notifications sent while it was away are lost, and waiters re-read
//! the store when woken.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use durably_core::store::WaitRegistry;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_postgres::{AsyncMessage, NoTls};

use crate::sql::quote_ident;

/// The first pause before reconnecting; it doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// The notification channels of one store.
#[derive(Debug, Clone)]
pub(crate) struct Channels {
    pub(crate) signals: String,
    pub(crate) work: String,
    pub(crate) events: String,
}

/// The waiters of one store, and whether notifications are being received.
#[derive(Debug, Default)]
pub(crate) struct Waiters {
    /// `wait_for_signal` callers, by run id.
    pub(crate) registry: WaitRegistry<String>,
    /// `wait_for_work` callers, by queue.
    pub(crate) work: WaitRegistry<String>,
    /// `wait_for_events` callers, by run id.
    pub(crate) events: WaitRegistry<String>,
    /// True while the listener's `LISTEN` is in force.
    connected: AtomicBool,
}

impl Waiters {
    /// Whether the listener is connected (notifications are being received).
    pub(crate) fn is_connected(&self) -> bool {
        self.connected.load(Ordering::Acquire)
    }

    fn wake_all(&self) {
        self.registry.wake_all();
        self.work.wake_all();
        self.events.wake_all();
    }

    /// Wakes the waiters a notification on `channel` names ('': all of that channel's).
    fn wake(&self, channels: &Channels, channel: &str, payload: &str) {
        let registry = if channel == channels.work {
            &self.work
        } else if channel == channels.events {
            &self.events
        } else {
            &self.registry
        };
        if payload.is_empty() {
            registry.wake_all();
        } else {
            registry.wake(payload);
        }
    }
}

/// One live `LISTEN` session: the client (dropping it closes the connection) and the
/// notifications its connection receives.
struct Session {
    _client: tokio_postgres::Client,
    /// Each notification's channel and payload.
    payloads: mpsc::UnboundedReceiver<(String, String)>,
}

/// Opens a connection and starts listening on every channel.
async fn listen(
    config: &tokio_postgres::Config,
    channels: &Channels,
) -> Result<Session, tokio_postgres::Error> {
    let (client, mut connection) = config.connect(NoTls).await?;
    let (tx, payloads) = mpsc::unbounded_channel();
    // Drives the connection; ends (dropping `tx`) when the connection does.
    tokio::spawn(async move {
        loop {
            match std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                Some(Ok(AsyncMessage::Notification(n))) => {
                    if tx.send((n.channel().to_owned(), n.payload().to_owned())).is_err() {
                        return;
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    tracing::warn!(target: "durably", error = %crate::error::describe(&e), "PostgreSQL listener connection lost");
                    return;
                }
                None => return,
            }
        }
    });
    client
        .batch_execute(&format!(
            "LISTEN {}; LISTEN {}; LISTEN {}",
            quote_ident(&channels.signals),
            quote_ident(&channels.work),
            quote_ident(&channels.events)
        ))
        .await?;
    Ok(Session { _client: client, payloads })
}

/// The listener of one store: a task that ends when this is dropped.
#[derive(Debug)]
pub(crate) struct Listener {
    task: JoinHandle<()>,
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Listener {
    /// Connects the first session (so a store that cannot listen fails to connect), then keeps
    /// listening in a task for as long as the returned value lives.
    pub(crate) async fn start(
        config: tokio_postgres::Config,
        channels: Channels,
        waiters: Arc<Waiters>,
    ) -> Result<Self, tokio_postgres::Error> {
        let first = listen(&config, &channels).await?;
        waiters.connected.store(true, Ordering::Release);
        let task = tokio::spawn(run(config, channels, waiters, first));
        Ok(Listener { task })
    }
}

async fn run(config: tokio_postgres::Config, channels: Channels, waiters: Arc<Waiters>, first: Session) {
    let channel = &channels.signals;
    let mut session = Some(first);
    let mut backoff = FIRST_BACKOFF;
    loop {
        if let Some(mut live) = session.take() {
            waiters.connected.store(true, Ordering::Release);
            // Anything sent while no session listened is lost: let every waiter look again.
            waiters.wake_all();
            backoff = FIRST_BACKOFF;
            while let Some((from, payload)) = live.payloads.recv().await {
                waiters.wake(&channels, &from, &payload);
            }
            waiters.connected.store(false, Ordering::Release);
            tracing::debug!(target: "durably", channel = %channel, "PostgreSQL listener reconnecting");
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
        match listen(&config, &channels).await {
            Ok(live) => session = Some(live),
            Err(e) => {
                tracing::warn!(target: "durably", channel = %channel, error = %crate::error::describe(&e), "PostgreSQL listener cannot reconnect");
            }
        }
    }
}
