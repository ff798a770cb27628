//! Faults the control API injects and the `dc` half obeys: what production
//! Telegram does to a client on a bad day.
//!
//! Connection-level faults name the auth keys they hit (the control API
//! resolves "the bot" to its keys), so a user client beside the bot keeps
//! working. Each fault served is counted for `GET /stats`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::watch;

/// An `rpc_error` injected for one method, `remaining` more times.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InjectedError {
    pub code: i32,
    pub message: String,
    pub remaining: u32,
    /// The counter in `GET /stats` that serving it bumps.
    #[serde(skip)]
    pub label: &'static str,
    /// Only calls on these auth keys get it (`None`: every caller); a
    /// fault aimed at one bot of several names its keys.
    #[serde(skip)]
    pub keys: Option<Vec<i64>>,
}

/// One connection's NAT mapping, as the black hole sees it: once the hole
/// has swallowed the connection's traffic it stays dead for good, even after
/// the black hole ends, as a NAT that forgot the mapping does. Only a new
/// connection gets through again.
pub struct NatMapping {
    faults: Arc<Faults>,
    key: i64,
    dead: AtomicBool,
}

impl NatMapping {
    pub fn new(faults: Arc<Faults>, key: i64) -> Self {
        NatMapping {
            faults,
            key,
            dead: AtomicBool::new(false),
        }
    }

    /// Whether this connection's traffic is lost.
    pub fn is_dead(&self) -> bool {
        if self.dead.load(Ordering::Relaxed) {
            return true;
        }
        let holed = self.faults.is_blackholed(self.key);
        if holed {
            self.dead.store(true, Ordering::Relaxed);
        }
        holed
    }
}

#[derive(Default)]
struct State {
    /// Auth keys whose connections are read but never answered.
    blackhole: HashSet<i64>,
    /// Auth keys whose next reply is cut mid-frame, then the socket reset.
    reset_mid_frame: HashSet<i64>,
    /// Live connections allowed per auth key; beyond: `-429`.
    max_connections: Option<usize>,
    /// By TL method name (`messages.sendMessage`).
    rpc_errors: HashMap<String, InjectedError>,
    served: BTreeMap<&'static str, u64>,
}

/// Transport faults, shared by every DC of a sandbox.
pub struct Faults {
    latency_ms: AtomicU64,
    drops: watch::Sender<u64>,
    state: Mutex<State>,
}

impl Default for Faults {
    fn default() -> Self {
        Faults {
            latency_ms: AtomicU64::new(0),
            drops: watch::channel(0).0,
            state: Mutex::default(),
        }
    }
}

impl Faults {
    fn lock(&self) -> MutexGuard<'_, State> {
        // No update of the state can be left half-done by a panic.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Closes every live connection now (clients reconnect on their next call).
    pub fn drop_connections(&self) {
        self.drops.send_modify(|generation| *generation += 1);
        self.served("drop_connections");
    }

    /// Changes whenever [`Faults::drop_connections`] is called.
    pub fn drops(&self) -> watch::Receiver<u64> {
        self.drops.subscribe()
    }

    /// Delay added before each reply the DC sends.
    pub fn set_latency(&self, latency: Duration) {
        let ms = u64::try_from(latency.as_millis()).unwrap_or(u64::MAX);
        self.latency_ms.store(ms, Ordering::Relaxed);
    }

    pub fn latency(&self) -> Duration {
        Duration::from_millis(self.latency_ms.load(Ordering::Relaxed))
    }

    /// Black-holes the connections of these auth keys (empty: none): the
    /// DC reads what they send and never answers, like a dead NAT.
    pub fn set_blackhole(&self, keys: impl IntoIterator<Item = i64>) {
        self.lock().blackhole = keys.into_iter().collect();
    }

    pub fn is_blackholed(&self, key: i64) -> bool {
        self.lock().blackhole.contains(&key)
    }

    pub fn blackholed(&self) -> bool {
        !self.lock().blackhole.is_empty()
    }

    /// The next reply to any of these keys is cut mid-frame and the
    /// connection reset.
    pub fn arm_reset_mid_frame(&self, keys: impl IntoIterator<Item = i64>) {
        self.lock().reset_mid_frame = keys.into_iter().collect();
    }

    /// Whether the reply about to go to `key` must be cut; disarms it.
    pub fn take_reset_mid_frame(&self, key: i64) -> bool {
        let mut state = self.lock();
        if !state.reset_mid_frame.contains(&key) {
            return false;
        }
        state.reset_mid_frame.clear();
        *state.served.entry("reset_mid_frame").or_default() += 1;
        true
    }

    /// Live connections allowed per auth key (`None`: no limit).
    pub fn set_max_connections(&self, max: Option<usize>) {
        self.lock().max_connections = max;
    }

    pub fn max_connections(&self) -> Option<usize> {
        self.lock().max_connections
    }

    /// Makes the next `error.remaining` calls of `method` (a TL name such
    /// as `messages.sendMessage`) fail with `error`; `None` clears it.
    pub fn set_rpc_error(&self, method: &str, error: Option<InjectedError>) {
        let mut state = self.lock();
        match error {
            Some(error) => state.rpc_errors.insert(method.to_owned(), error),
            None => state.rpc_errors.remove(method),
        };
    }

    /// The error the call of `method` on auth key `key` about to run gets,
    /// if one is injected for it.
    pub fn take_rpc_error(&self, method: &str, key: i64) -> Option<(i32, String)> {
        let mut state = self.lock();
        let error = state
            .rpc_errors
            .get_mut(method)
            .filter(|e| e.keys.as_ref().is_none_or(|keys| keys.contains(&key)))?;
        error.remaining -= 1;
        let (answer, label) = ((error.code, error.message.clone()), error.label);
        if error.remaining == 0 {
            state.rpc_errors.remove(method);
        }
        *state.served.entry(label).or_default() += 1;
        Some(answer)
    }

    /// The injected errors still pending, by method.
    pub fn rpc_errors(&self) -> BTreeMap<String, InjectedError> {
        self.lock()
            .rpc_errors
            .iter()
            .map(|(method, error)| (method.clone(), error.clone()))
            .collect()
    }

    /// Counts one serving of the fault `name`.
    pub fn served(&self, name: &'static str) {
        *self.lock().served.entry(name).or_default() += 1;
    }

    /// How often each fault was served.
    pub fn served_counts(&self) -> BTreeMap<&'static str, u64> {
        self.lock().served.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn injected_errors_run_out_and_are_counted() {
        let faults = Faults::default();
        let error = InjectedError {
            code: 500,
            message: "INTERNAL_SERVER_ERROR".into(),
            remaining: 2,
            label: "rpc_error",
            keys: None,
        };
        faults.set_rpc_error("messages.sendMessage", Some(error));
        assert_eq!(faults.take_rpc_error("help.getConfig", 1), None);
        for _ in 0..2 {
            assert_eq!(
                faults.take_rpc_error("messages.sendMessage", 1),
                Some((500, "INTERNAL_SERVER_ERROR".into()))
            );
        }
        assert_eq!(faults.take_rpc_error("messages.sendMessage", 1), None);
        assert_eq!(faults.served_counts()["rpc_error"], 2);
        let aimed = InjectedError {
            code: 420,
            message: "FLOOD_WAIT_3".into(),
            remaining: 1,
            label: "sign_in_flood_wait",
            keys: Some(vec![9]),
        };
        faults.set_rpc_error("auth.importBotAuthorization", Some(aimed));
        assert_eq!(
            faults.take_rpc_error("auth.importBotAuthorization", 1),
            None
        );
        assert_eq!(
            faults.take_rpc_error("auth.importBotAuthorization", 9),
            Some((420, "FLOOD_WAIT_3".into()))
        );
    }

    #[test]
    fn reset_mid_frame_fires_once_for_its_keys() {
        let faults = Faults::default();
        faults.arm_reset_mid_frame([7]);
        assert!(!faults.take_reset_mid_frame(8));
        assert!(faults.take_reset_mid_frame(7));
        assert!(!faults.take_reset_mid_frame(7));
    }
}
