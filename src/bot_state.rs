//! What each bot's Telegram session is doing: the answer of `/readyz`,
//! `telegate status` and the `mtproto_connected` metric.
//!
//! The daemon registers each bot it runs by name (today one, `default`)
//! and reports as the session moves: signing in (with the last error while
//! Telegram cannot be reached), ready, disconnected (an MTProto call failed
//! on the transport; it is ready again, and counted as a reconnect, when a
//! call next succeeds), halted (the session is unusable) or stopped. The
//! readiness verdict is a pure function of these states.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use grammers_mtsender::InvocationError;
use serde::Serialize;

use crate::metrics::{bot_label, metrics};

/// One bot's session, as `/readyz` shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum BotState {
    /// Registered, not yet trying to sign in.
    Starting,
    /// Signing in; `last_error` while Telegram cannot be reached.
    SigningIn {
        attempt: u32,
        #[serde(skip_serializing_if = "Option::is_none")]
        last_error: Option<String>,
    },
    /// Connected and signed in.
    Ready {
        bot_id: i64,
        #[serde(skip_serializing_if = "Option::is_none")]
        username: Option<String>,
    },
    /// The last MTProto call failed on the transport.
    Disconnected { error: String },
    /// The session is unusable; sending stopped until a restart.
    Halted { reason: String },
    /// Shut down.
    Stopped,
}

impl BotState {
    pub fn is_ready(&self) -> bool {
        matches!(self, BotState::Ready { .. })
    }
}

#[derive(Debug)]
struct Entry {
    state: BotState,
    /// The `Ready` state to go back to after a disconnection.
    ready: Option<BotState>,
}

/// Every bot's state; clones share them.
#[derive(Clone, Default)]
pub struct BotStates {
    bots: Arc<Mutex<BTreeMap<String, Entry>>>,
    /// The daemon shares its bots with others (a shared store's leases):
    /// running none of them is standing by, not failing.
    shared: Arc<std::sync::atomic::AtomicBool>,
}

impl BotStates {
    pub fn new() -> Self {
        Self::default()
    }

    /// Marks the daemon as one of several sharing the bots, in touch with
    /// the others (its leases renewed), or not.
    pub fn set_shared(&self, shared: bool) {
        self.shared
            .store(shared, std::sync::atomic::Ordering::Relaxed);
    }

    /// Whether the daemon shares its bots with others and is in touch.
    pub fn is_shared(&self) -> bool {
        self.shared.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Sets `bot`'s state (registering it if new).
    pub fn set(&self, bot: &str, state: BotState) {
        let mut bots = self.bots();
        let entry = bots.entry(bot.to_owned()).or_insert(Entry {
            state: BotState::Starting,
            ready: None,
        });
        if state.is_ready() {
            if matches!(entry.state, BotState::Disconnected { .. }) {
                metrics()
                    .mtproto_reconnects
                    .get_or_create(&bot_label(bot))
                    .inc();
            }
            entry.ready = Some(state.clone());
        }
        metrics()
            .mtproto_connected
            .get_or_create(&bot_label(bot))
            .set(i64::from(state.is_ready()));
        entry.state = state;
    }

    /// Takes in the outcome of one MTProto call of `bot`: a transport
    /// failure disconnects a ready bot, a success reconnects it.
    pub fn observe<T>(&self, bot: &str, outcome: &Result<T, InvocationError>) {
        let current = match self.bots().get(bot) {
            Some(entry) => (entry.state.clone(), entry.ready.clone()),
            None => return,
        };
        match (outcome, current) {
            (
                Err(
                    error @ (InvocationError::Io(_)
                    | InvocationError::Dropped(_)
                    | InvocationError::Transport(_)),
                ),
                (BotState::Ready { .. }, _),
            ) => {
                self.set(
                    bot,
                    BotState::Disconnected {
                        error: error.to_string(),
                    },
                );
            }
            (Ok(_), (BotState::Disconnected { .. }, Some(ready))) => self.set(bot, ready),
            _ => {}
        }
    }

    /// `bot`'s state, if it is registered.
    pub fn get(&self, bot: &str) -> Option<BotState> {
        self.bots().get(bot).map(|entry| entry.state.clone())
    }

    /// Forgets `bot` (removed or disabled: not part of readiness).
    pub fn remove(&self, bot: &str) {
        self.bots().remove(bot);
        metrics()
            .mtproto_connected
            .get_or_create(&bot_label(bot))
            .set(0);
    }

    /// Every bot and its state, by name.
    pub fn all(&self) -> Vec<(String, BotState)> {
        self.bots()
            .iter()
            .map(|(name, entry)| (name.clone(), entry.state.clone()))
            .collect()
    }

    fn bots(&self) -> MutexGuard<'_, BTreeMap<String, Entry>> {
        self.bots.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Readiness: every registered bot ready (and at least one registered).
/// `Err` lists the bots that are not, with their states.
pub fn readiness(bots: &[(String, BotState)]) -> Result<(), Vec<(String, BotState)>> {
    let unready: Vec<_> = bots
        .iter()
        .filter(|(_, s)| !s.is_ready())
        .cloned()
        .collect();
    if bots.is_empty() || !unready.is_empty() {
        return Err(unready);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ready() -> BotState {
        BotState::Ready {
            bot_id: 7,
            username: Some("b".into()),
        }
    }

    #[test]
    fn a_transport_failure_disconnects_and_a_success_reconnects() {
        let states = BotStates::new();
        let bot = "bot_state_test";
        let reconnects = || {
            metrics()
                .mtproto_reconnects
                .get_or_create(&bot_label(bot))
                .get()
        };
        states.set(
            bot,
            BotState::SigningIn {
                attempt: 1,
                last_error: None,
            },
        );
        assert!(readiness(&states.all()).is_err());
        // A failure before sign-in changes nothing.
        states.observe::<()>(bot, &Err(InvocationError::Dropped("test")));
        assert!(matches!(states.all()[0].1, BotState::SigningIn { .. }));
        states.set(bot, ready());
        assert_eq!(readiness(&states.all()), Ok(()));
        states.observe::<()>(bot, &Err(InvocationError::Dropped("test")));
        let unready = readiness(&states.all()).unwrap_err();
        assert!(
            matches!(unready[0].1, BotState::Disconnected { .. }),
            "{unready:?}"
        );
        let connected = metrics()
            .mtproto_connected
            .get_or_create(&bot_label(bot))
            .get();
        assert_eq!(connected, 0);
        assert_eq!(reconnects(), 0);
        states.observe(bot, &Ok(()));
        assert_eq!(states.all()[0].1, ready());
        assert_eq!(reconnects(), 1);
        assert_eq!(
            metrics()
                .mtproto_connected
                .get_or_create(&bot_label(bot))
                .get(),
            1
        );
    }

    #[test]
    fn no_bot_is_not_ready_and_states_serialize_with_their_reason() {
        assert_eq!(readiness(&[]), Err(vec![]));
        let json = serde_json::to_value(BotState::Halted {
            reason: "AUTH_KEY_UNREGISTERED".into(),
        })
        .unwrap();
        assert_eq!(
            json,
            serde_json::json!({"state": "halted", "reason": "AUTH_KEY_UNREGISTERED"})
        );
    }
}
