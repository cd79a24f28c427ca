//! Stopping: one waiter for SIGINT and SIGTERM ([`wait_for_signal`]) used by every
//! long-running command, and a [`Shutdown`] token that the node's tasks watch so that each
//! drains its in-flight work and flushes its state before the process exits.

use std::time::Duration;

use tokio::sync::watch;

/// The signal that asked the process to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// Ctrl-C.
    Interrupt,
    /// `kill`, systemd, `ganglion localnet` stopping its children.
    Terminate,
}

impl std::fmt::Display for Signal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Signal::Interrupt => "SIGINT",
            Signal::Terminate => "SIGTERM",
        })
    }
}

/// Waits for SIGINT or SIGTERM (on non-Unix systems, Ctrl-C only).
pub async fn wait_for_signal() -> Signal {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => tokio::select! {
                _ = tokio::signal::ctrl_c() => Signal::Interrupt,
                _ = term.recv() => Signal::Terminate,
            },
            Err(e) => {
                tracing::warn!(target: "ganglion::neuron", "cannot listen for SIGTERM ({e}); only Ctrl-C stops this process cleanly");
                let _ = tokio::signal::ctrl_c().await;
                Signal::Interrupt
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
        Signal::Interrupt
    }
}

/// The sending side of a [`Shutdown`].
#[derive(Debug, Clone)]
pub struct ShutdownTrigger(watch::Sender<bool>);

impl ShutdownTrigger {
    /// Asks every holder of the token to stop.
    pub fn trigger(&self) {
        self.0.send_replace(true);
    }

    /// A token watching this trigger.
    pub fn token(&self) -> Shutdown {
        Shutdown(self.0.subscribe())
    }
}

/// A cloneable stop token.
#[derive(Debug, Clone)]
pub struct Shutdown(watch::Receiver<bool>);

impl Shutdown {
    /// A trigger and its first token.
    pub fn new() -> (ShutdownTrigger, Shutdown) {
        let (tx, rx) = watch::channel(false);
        (ShutdownTrigger(tx), Shutdown(rx))
    }

    /// A trigger of its own that also fires when `outer` (if any) does: a component that can
    /// be stopped alone (its handle's `shutdown()`) or with the whole process.
    pub fn linked(outer: Option<Shutdown>) -> (ShutdownTrigger, Shutdown) {
        let (trigger, token) = Shutdown::new();
        if let Some(mut outer) = outer {
            let trigger = trigger.clone();
            tokio::spawn(async move {
                outer.wait().await;
                trigger.trigger();
            });
        }
        (trigger, token)
    }

    /// A token that stops on SIGINT or SIGTERM (logging which one). A second signal while
    /// draining exits at once (status 130), as operators expect of a second Ctrl-C.
    pub fn on_signal() -> Shutdown {
        let (trigger, token) = Shutdown::new();
        tokio::spawn(async move {
            let signal = wait_for_signal().await;
            tracing::info!(target: "ganglion::neuron", %signal, "stopping: draining in-flight work and saving state (a second signal exits at once)");
            trigger.trigger();
            let again = wait_for_signal().await;
            tracing::warn!(target: "ganglion::neuron", signal = %again, "second signal: exiting without waiting for the drain");
            std::process::exit(130);
        });
        token
    }

    /// Whether a stop was asked for.
    pub fn is_set(&self) -> bool {
        *self.0.borrow()
    }

    /// Resolves once a stop is asked for (or the trigger is gone).
    pub async fn wait(&mut self) {
        let _ = self.0.wait_for(|stop| *stop).await;
    }

    /// Sleeps for `d` unless a stop comes first; returns true when stopping.
    pub async fn sleep(&mut self, d: Duration) -> bool {
        if self.is_set() {
            return true;
        }
        tokio::select! {
            () = self.wait() => true,
            () = tokio::time::sleep(d) => self.is_set(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn tokens_see_the_trigger() {
        let (trigger, mut token) = Shutdown::new();
        let mut other = trigger.token();
        assert!(!token.is_set());
        assert!(!token.sleep(Duration::from_millis(5)).await);
        let waiter = tokio::spawn(async move { other.sleep(Duration::from_secs(60)).await });
        trigger.trigger();
        assert!(tokio::time::timeout(Duration::from_secs(5), waiter).await.is_ok_and(|r| r.is_ok_and(|stopped| stopped)));
        assert!(token.is_set());
        tokio::time::timeout(Duration::from_secs(1), token.wait()).await.unwrap_or_else(|_| panic!("wait did not return"));
    }
}
