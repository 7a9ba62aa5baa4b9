//! Cross-process wake-ups: one dedicated connection per store that `LISTEN`s on the store's
//! channel and wakes the `wait_for_signal` callers of the run named in each notification.
//!
//! `deliver_signal` sends `pg_notify(channel, run_id)` in the statement that records the
//! signal, so the notification goes out when (and only when) the delivery commits. The listener
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

/// The waiters of one store, by run id, and whether notifications are being received.
#[derive(Debug, Default)]
pub(crate) struct Waiters {
    pub(crate) registry: WaitRegistry<String>,
    /// True while the listener's `LISTEN` is in force.
    connected: AtomicBool,
}

impl Waiters {
    /// Whether the listener is connected (notifications are being received).
    pub(crate) fn is_connected(&self) -> bool {
        self.connected.load(Ordering::Acquire)
    }
}

/// One live `LISTEN` session: the client (dropping it closes the connection) and the
/// notifications its connection receives.
struct Session {
    _client: tokio_postgres::Client,
    payloads: mpsc::UnboundedReceiver<String>,
}

/// Opens a connection and starts listening on `channel`.
async fn listen(config: &tokio_postgres::Config, channel: &str) -> Result<Session, tokio_postgres::Error> {
    let (client, mut connection) = config.connect(NoTls).await?;
    let (tx, payloads) = mpsc::unbounded_channel();
    // Drives the connection; ends (dropping `tx`) when the connection does.
    tokio::spawn(async move {
        loop {
            match std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                Some(Ok(AsyncMessage::Notification(n))) => {
                    if tx.send(n.payload().to_owned()).is_err() {
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
    client.batch_execute(&format!("LISTEN {}", quote_ident(channel))).await?;
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
        channel: String,
        waiters: Arc<Waiters>,
    ) -> Result<Self, tokio_postgres::Error> {
        let first = listen(&config, &channel).await?;
        waiters.connected.store(true, Ordering::Release);
        let task = tokio::spawn(run(config, channel, waiters, first));
        Ok(Listener { task })
    }
}

async fn run(config: tokio_postgres::Config, channel: String, waiters: Arc<Waiters>, first: Session) {
    let mut session = Some(first);
    let mut backoff = FIRST_BACKOFF;
    loop {
        if let Some(mut live) = session.take() {
            waiters.connected.store(true, Ordering::Release);
            // Anything sent while no session listened is lost: let every waiter look again.
            waiters.registry.wake_all();
            backoff = FIRST_BACKOFF;
            while let Some(payload) = live.payloads.recv().await {
                if payload.is_empty() {
                    waiters.registry.wake_all();
                } else {
                    waiters.registry.wake(payload.as_str());
                }
            }
            waiters.connected.store(false, Ordering::Release);
            tracing::debug!(target: "durably", channel = %channel, "PostgreSQL listener reconnecting");
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
        match listen(&config, &channel).await {
            Ok(live) => session = Some(live),
            Err(e) => {
                tracing::warn!(target: "durably", channel = %channel, error = %crate::error::describe(&e), "PostgreSQL listener cannot reconnect");
            }
        }
    }
}
