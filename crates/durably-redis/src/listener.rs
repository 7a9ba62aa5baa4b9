//! Wake-ups across processes: one pub/sub connection per store, shared by every waiting run.
//!
//! `deliver_signal` publishes on the run's channel in the same script that records the signal.
//! A waiter registers its interest, has the connection subscribe to the run's channel and waits
//! for the server's confirmation, and only then checks whether the signal is already there:
//! whatever is delivered after the check is announced to an active subscription, so no wake-up
//! is lost.
//!
//! One task owns the connection. Subscribing and unsubscribing go through it in order (with a
//! count per channel, so several waiters of one run share one subscription), and it routes each
//! message to the waiters of its channel. When the connection drops, the task wakes every
//! waiter (a wake-up may be spurious; the engine checks the store again) and the next wait
//! opens a new connection.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use durably_core::store::{WaitRegistry, Waiting};

use futures::StreamExt;
use redis::aio::{PubSubSink, PubSubStream};
use tokio::sync::{mpsc, oneshot};

/// What waiters ask of the connection's task.
enum Command {
    /// Subscribe to the channel (if no one is yet) and say whether it is active.
    Join { channel: String, done: oneshot::Sender<bool> },
    /// One waiter less on the channel; unsubscribe after the last.
    Leave { channel: String },
}

/// A pub/sub connection and its task.
pub(crate) struct Listener {
    commands: mpsc::UnboundedSender<Command>,
    /// The waiters, by channel.
    routes: WaitRegistry<String>,
    alive: Arc<AtomicBool>,
}

impl Listener {
    /// Opens a pub/sub connection and starts its task.
    pub(crate) async fn connect(client: &redis::Client) -> redis::RedisResult<Arc<Listener>> {
        let (sink, stream) = client.get_async_pubsub().await?.split();
        let (commands, receiver) = mpsc::unbounded_channel();
        let routes = WaitRegistry::new();
        let alive = Arc::new(AtomicBool::new(true));
        tokio::spawn(run(sink, stream, receiver, routes.clone(), Arc::clone(&alive)));
        Ok(Arc::new(Listener { commands, routes, alive }))
    }

    /// False once the connection has dropped.
    pub(crate) fn is_alive(&self) -> bool {
        self.alive.load(Ordering::Acquire)
    }

    /// Registers a waiter on `channel`; [`Waiter::subscribe`] it inside the look of its
    /// [`Waiting::wait_unless`], before reading the store.
    pub(crate) fn waiter(self: &Arc<Self>, channel: String) -> Waiter {
        let waiting = self.routes.register(channel);
        Waiter { listener: Arc::clone(self), waiting, joined: AtomicBool::new(false) }
    }
}

/// One waiting call. Dropping it (also when the wait is cancelled) gives up its interest.
pub(crate) struct Waiter {
    listener: Arc<Listener>,
    waiting: Waiting<String>,
    /// Whether the subscription was confirmed (and must be left).
    joined: AtomicBool,
}

impl Waiter {
    /// Woken when a message arrives on the channel, or when the connection drops.
    pub(crate) fn waiting(&self) -> &Waiting<String> {
        &self.waiting
    }

    /// Resolves once the server has confirmed the subscription; false if it failed.
    pub(crate) async fn subscribe(&self) -> bool {
        let (done, confirmed) = oneshot::channel();
        let channel = self.waiting.key().clone();
        if self.listener.commands.send(Command::Join { channel, done }).is_err() {
            return false;
        }
        let joined = confirmed.await.unwrap_or(false);
        self.joined.store(joined, Ordering::Release);
        joined
    }
}

impl Drop for Waiter {
    fn drop(&mut self) {
        if self.joined.load(Ordering::Acquire) {
            // The task may be gone with its connection: then there is nothing to leave.
            let _ = self.listener.commands.send(Command::Leave { channel: self.waiting.key().clone() });
        }
    }
}

/// The connection's task: carries out commands in order and routes messages, until the
/// connection drops or the store (every sender) is gone.
async fn run(
    mut sink: PubSubSink,
    mut stream: PubSubStream,
    mut commands: mpsc::UnboundedReceiver<Command>,
    routes: WaitRegistry<String>,
    alive: Arc<AtomicBool>,
) {
    let mut subscribed: HashMap<String, usize> = HashMap::new();
    loop {
        tokio::select! {
            command = commands.recv() => match command {
                None => break,
                Some(Command::Join { channel, done }) => {
                    let count = subscribed.get(&channel).copied().unwrap_or(0);
                    let ok = count > 0 || sink.subscribe(&channel).await.is_ok();
                    if !ok {
                        let _ = done.send(false);
                        tracing::warn!(target: "durably", "Redis pub/sub subscription failed; signal waits fall back to polling");
                        break;
                    }
                    subscribed.insert(channel.clone(), count + 1);
                    // A waiter cancelled while subscribing never leaves: leave for it.
                    if done.send(true).is_err() && !leave(&mut sink, &mut subscribed, channel).await {
                        break;
                    }
                }
                Some(Command::Leave { channel }) => {
                    if !leave(&mut sink, &mut subscribed, channel).await {
                        break;
                    }
                }
            },
            message = stream.next() => match message {
                None => {
                    tracing::debug!(target: "durably", "Redis pub/sub connection closed");
                    break;
                }
                Some(message) => {
                    routes.wake(message.get_channel_name());
                }
            },
        }
    }
    alive.store(false, Ordering::Release);
    // Waiters re-check the store and wait again on a new connection.
    routes.wake_all();
}

/// One waiter less on `channel`; unsubscribes after the last. False when the connection failed.
async fn leave(sink: &mut PubSubSink, subscribed: &mut HashMap<String, usize>, channel: String) -> bool {
    match subscribed.get(&channel).copied().unwrap_or(0) {
        0 | 1 => {
            subscribed.remove(&channel);
            sink.unsubscribe(&channel).await.is_ok()
        }
        count => {
            subscribed.insert(channel, count - 1);
            true
        }
    }
}
