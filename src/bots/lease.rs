//! The daemon's side of bot leases (see `queue::lease` for the rows): on a
//! shared store, tick every fifth of the lease's life (a dead daemon's bots
//! are taken within the lease plus one tick), run exactly the bots
//! whose leases this daemon holds, and stop every one of them once the
//! last successful renewal is older than the lease minus a margin — before
//! the lease can lapse on the server and another daemon take the bot — so
//! that no two daemons ever drive one bot's session at once, even when this
//! one cannot reach the store.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use tokio::time::Instant;

use crate::config::BotName;
use crate::queue::{Lease, Queue};

/// The daemon's leases.
pub struct Leasing {
    holder: String,
    ttl: Duration,
    /// Bots stopped for handing over, whose leases the next tick deletes.
    releasing: Vec<String>,
    /// Until when the leases held are certainly this daemon's.
    valid_until: Option<Instant>,
    held: BTreeMap<BotName, Lease>,
    /// Until the first tick succeeds: the leases this holder still has
    /// from before a restart are treated as taken over (their jobs left
    /// `sending` go back in line).
    restarted: bool,
}

impl Leasing {
    /// Leases of `ttl`, held under this host's and state dir's name: a
    /// daemon restarted over the same dir (only one can run over it at a
    /// time) is the same holder, and takes its bots back at once.
    pub fn new(ttl: Duration, state: &Path) -> Leasing {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|name| name.trim().to_owned())
            .unwrap_or_else(|_| "host".into());
        let dir = std::fs::canonicalize(state).unwrap_or_else(|_| state.to_owned());
        Leasing {
            holder: format!("{host}:{}", dir.display()),
            ttl,
            releasing: Vec::new(),
            valid_until: None,
            held: BTreeMap::new(),
            restarted: true,
        }
    }

    /// The name this daemon holds leases under.
    pub fn holder(&self) -> &str {
        &self.holder
    }

    /// Whether the leases are renewed now: the last renewal is recent
    /// enough to trust (false before the first, and once cut off from the
    /// store for `ttl - ttl/4`).
    pub fn is_renewed(&self) -> bool {
        self.valid_until.is_some_and(|until| Instant::now() < until)
    }

    /// How often to tick.
    pub fn interval(&self) -> Duration {
        self.ttl / 5
    }

    /// Safety margin: a renewal is trusted for `ttl - margin`, more than a
    /// tick and its timeout short of the lease.
    fn margin(&self) -> Duration {
        self.ttl / 4
    }

    /// After the bots stopped: hands every lease over at once, so other
    /// daemons take the bots at their next tick instead of after the ttl.
    pub async fn release_all(&mut self, queue: &Queue) {
        self.releasing
            .extend(self.held.keys().map(|name| name.as_str().to_owned()));
        self.held.clear();
        let _ = self.tick(queue, &[]).await;
    }

    /// One tick; returns the bots this daemon may run now.
    pub async fn tick(&mut self, queue: &Queue, configured: &[BotName]) -> Holding {
        let mut lost = false;
        let started = Instant::now();
        let bots = configured
            .iter()
            .map(|name| name.as_str().to_owned())
            .collect();
        let released = std::mem::take(&mut self.releasing);
        let ttl_ms = i64::try_from(self.ttl.as_millis()).unwrap_or(i64::MAX);
        let ticked = tokio::time::timeout(
            self.interval(),
            queue.lease_tick(&self.holder, bots, released.clone(), ttl_ms, self.restarted),
        )
        .await;
        match ticked {
            Ok(Ok(tick)) => {
                self.restarted = false;
                self.valid_until = Some(started + self.ttl - self.margin());
                for bot in &tick.taken {
                    tracing::info!(bot, daemons = tick.daemons, "took the bot's lease");
                }
                for bot in &tick.excess {
                    tracing::info!(bot, daemons = tick.daemons, "handing the bot over");
                }
                self.held = tick
                    .held
                    .iter()
                    .filter(|(bot, _)| !tick.excess.contains(bot))
                    .filter_map(|(bot, token)| {
                        let name = configured.iter().find(|c| c.as_str() == bot)?;
                        let lease = Lease {
                            holder: self.holder.clone(),
                            token: *token,
                        };
                        Some((name.clone(), lease))
                    })
                    .collect();
                self.releasing = tick.excess;
            }
            outcome => {
                // Not handed over yet: the next tick tries again.
                self.releasing = released;
                match outcome {
                    Ok(Err(error)) => tracing::warn!(%error, "cannot renew the bots' leases"),
                    _ => tracing::warn!("renewing the bots' leases timed out"),
                }
                if self.valid_until.is_none_or(|until| Instant::now() >= until)
                    && !self.held.is_empty()
                {
                    tracing::error!(
                        bots = self.held.len(),
                        "leases not renewed in time: stopping their bots"
                    );
                    self.held.clear();
                    lost = true;
                }
            }
        }
        Holding {
            bots: self.held.clone(),
            lost,
        }
    }
}

/// What a tick leaves this daemon holding.
pub struct Holding {
    /// The bots to run, each under its lease.
    pub bots: BTreeMap<BotName, Lease>,
    /// Whether bots held before were lost (not renewed in time): they stop
    /// at once, without their drain.
    pub lost: bool,
}
