//! The running bots, and applying a config to them.
//!
//! [`Fleet::apply`] compares the bots a config asks for with those running
//! and does the difference: a new or re-enabled bot starts, a removed or
//! disabled one stops (its in-flight sends finish), a bot whose token,
//! limits or webhook changed restarts, and every other bot is left alone —
//! its connection stays up and none of its jobs waits. Keys and
//! `interactive` only change the registry. Every worker runs under a child
//! of the fleet's cancellation token, in its own task tracker.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::Bots;
use super::worker::{self, BotSpec, Shared};
use crate::config::{BotName, Config, TokenError};
use crate::queue::Lease;

/// What [`Fleet::apply`] did, by bot.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Applied {
    pub started: Vec<BotName>,
    pub stopped: Vec<BotName>,
    pub restarted: Vec<BotName>,
    pub unchanged: Vec<BotName>,
}

struct Running {
    spec: BotSpec,
    cancel: CancellationToken,
    /// Cancelled to stop without the drain (a lease lost).
    hurry: CancellationToken,
    tracker: TaskTracker,
}

/// How long a hurried stop waits for the bot's tasks once its connection
/// is closed; tasks still waiting on a store out of reach are left to end
/// when it answers (or with the process).
const HURRIED_STOP: Duration = Duration::from_secs(1);

impl Running {
    async fn stop(self) {
        self.cancel.cancel();
        self.tracker.close();
        if !self.hurry.is_cancelled() {
            self.tracker.wait().await;
        } else if tokio::time::timeout(HURRIED_STOP, self.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                bot = %self.spec.name,
                tasks = self.tracker.len(),
                "the bot's connection is closed; tasks still waiting on the store are left behind"
            );
        }
    }
}

/// The workers of the configured, enabled bots.
pub struct Fleet {
    shared: Arc<Shared>,
    bots: Bots,
    root: CancellationToken,
    running: BTreeMap<BotName, Running>,
    /// The bots this daemon may run, under their leases (on a shared
    /// store); `None`: every configured bot.
    held: Option<BTreeMap<BotName, Lease>>,
    /// The config last applied, for [`Fleet::hold`].
    config: Option<Config>,
}

impl Fleet {
    /// No bot runs until [`Fleet::apply`]; every worker stops with `root`.
    pub fn new(shared: Shared, bots: Bots, root: CancellationToken) -> Self {
        Fleet {
            shared: Arc::new(shared),
            bots,
            root,
            running: BTreeMap::new(),
            held: None,
            config: None,
        }
    }

    /// Runs only the configured bots of `held` from now on (`None`: every
    /// configured bot), applying the last config again. With `lost`, the
    /// bots no longer held are stopped at once, without their drain: their
    /// leases were lost, and another daemon may take them soon. A bot whose
    /// lease has a new fencing token restarts under it.
    pub async fn hold(
        &mut self,
        held: Option<BTreeMap<BotName, Lease>>,
        lost: bool,
    ) -> Result<Applied, TokenError> {
        if self.held == held {
            return Ok(Applied::default());
        }
        if lost {
            for (name, running) in &self.running {
                if held.as_ref().is_some_and(|held| !held.contains_key(name)) {
                    running.hurry.cancel();
                }
            }
        }
        self.held = held;
        match self.config.clone() {
            Some(config) => self.apply(&config).await,
            None => Ok(Applied::default()),
        }
    }

    /// The enabled bots of the last config applied.
    pub fn configured(&self) -> Vec<BotName> {
        self.config
            .iter()
            .flat_map(|config| config.bots.iter())
            .filter(|bot| bot.enabled)
            .map(|bot| bot.name.clone())
            .collect()
    }

    /// Makes the running bots those `config` asks for. A bot whose token
    /// cannot be had is an error and nothing changes.
    pub async fn apply(&mut self, config: &Config) -> Result<Applied, TokenError> {
        let mut wanted = BTreeMap::new();
        for bot in config.bots.iter().filter(|bot| bot.enabled) {
            let lease = match &self.held {
                None => None,
                Some(held) => match held.get(&bot.name) {
                    Some(lease) => Some(lease.clone()),
                    None => continue,
                },
            };
            wanted.insert(bot.name.clone(), BotSpec::of(bot, config, lease)?);
        }
        self.bots.update(config);
        self.config = Some(config.clone());
        let mut applied = Applied::default();
        let names: Vec<BotName> = self.running.keys().cloned().collect();
        for name in names {
            let keep = wanted
                .get(&name)
                .is_some_and(|spec| self.running.get(&name).is_some_and(|r| r.spec == *spec));
            if keep {
                wanted.remove(&name);
                applied.unchanged.push(name);
                continue;
            }
            if let Some(running) = self.running.remove(&name) {
                tracing::info!(bot = %name, "stopping bot");
                running.stop().await;
            }
            if wanted.contains_key(&name) {
                applied.restarted.push(name);
            } else {
                // Whatever its worker reported last is no part of readiness.
                self.bots.states().remove(name.as_str());
                applied.stopped.push(name);
            }
        }
        for (name, spec) in wanted {
            if !applied.restarted.contains(&name) {
                applied.started.push(name.clone());
            }
            self.start(spec);
        }
        Ok(applied)
    }

    fn start(&mut self, spec: BotSpec) {
        let Some(entry) = self.bots.get(spec.name.as_str()) else {
            return; // not in the registry: not configured
        };
        let cancel = self.root.child_token();
        let hurry = CancellationToken::new();
        let tracker = TaskTracker::new();
        tracker.spawn(worker::run(
            Arc::clone(&self.shared),
            spec.clone(),
            entry,
            cancel.clone(),
            hurry.clone(),
            tracker.clone(),
        ));
        self.running.insert(
            spec.name.clone(),
            Running {
                spec,
                cancel,
                hurry,
                tracker,
            },
        );
    }

    /// Stops every bot and waits for their workers.
    pub async fn stop(mut self) {
        self.root.cancel();
        for (_, running) in std::mem::take(&mut self.running) {
            running.stop().await;
        }
    }
}
