//! Bot leases: which daemon holds which bot, when several daemons share one
//! PostgreSQL store.
//!
//! A bot's session may be used by one connection at a time (Telegram
//! refuses the second with `AUTH_KEY_DUPLICATED`), so each bot is held by
//! one daemon under a row of `bot_leases`: its holder, a fencing token that
//! grows by one at every change of holder, and an expiry (the server's
//! clock) the holder pushes forward at every tick. A lease whose expiry
//! passed is free: the next daemon to tick takes it, puts the bot's jobs
//! left `sending` back in line (their `random_id`s unchanged, so Telegram
//! posts nothing twice) and starts the bot. Every daemon beats in
//! `daemons` too, so each knows how many share the bots and takes no more
//! than its share (rounded up); one that holds more hands the rest over
//! (it stops those bots first, then deletes their leases).
//!
//! Every tick is one op of the store's writer, whose batches hold the
//! store's write lock: ticks of different daemons never interleave.
//!
//! The holder's side of the safety rule is in `bots::lease`: a daemon stops a
//! bot once its last successful renewal is `ttl - margin` old, before the
//! lease can expire on the server, whether or not it can reach the store.

use std::collections::BTreeSet;

use rusqlite::params;

use super::{JobEvent, Queue, QueueError, Timestamp};
use crate::store::{Conn, OptionalExtension, StoreError};

/// The server's clock in milliseconds, as an SQL expression (a literal for
/// `concat!`): every daemon's leases are read against one clock.
macro_rules! server_now_ms {
    () => {
        "(extract(epoch from clock_timestamp()) * 1000)::BIGINT"
    };
}
pub(super) use server_now_ms;

const SERVER_NOW: &str = concat!("SELECT ", server_now_ms!());

/// Whether `holder` holds `bot`'s lease now, by the server's clock.
pub(super) fn holds(conn: &Conn, holder: &str, bot: &str) -> Result<bool, QueueError> {
    let held: Option<i64> = conn
        .query_row(
            concat!(
                "SELECT 1 FROM bot_leases WHERE bot = ?1 AND holder = ?2 AND expires_at >= ",
                server_now_ms!()
            ),
            params![bot, holder],
            |row| row.get(0),
        )
        .optional()?;
    Ok(held.is_some())
}

/// A bot's lease as its holder took it: whose, and under which fencing
/// token. What is written under it (a session's rows) is refused once the
/// lease has changed hands, however late the write reaches the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub holder: String,
    pub token: i64,
}

/// Whether `bot`'s lease is still `lease` (same holder, same token), on
/// the shared store. The lease row stays locked (`FOR SHARE`) until the
/// caller's transaction ends, so no daemon takes the bot before what the
/// caller writes next has committed.
pub(crate) fn still_held(conn: &Conn, bot: &str, lease: &Lease) -> Result<bool, StoreError> {
    let held: Option<i64> = conn
        .query_row(
            "SELECT 1 FROM bot_leases WHERE bot = ?1 AND holder = ?2 AND token = ?3 FOR SHARE",
            params![bot, lease.holder, lease.token],
            |row| row.get(0),
        )
        .optional()?;
    Ok(held.is_some())
}

/// What a tick found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LeaseTick {
    /// The bots this daemon holds now, with their fencing tokens.
    pub held: Vec<(String, i64)>,
    /// Of those, the ones taken at this tick.
    pub taken: Vec<String>,
    /// Held bots over this daemon's share, to stop and hand over.
    pub excess: Vec<String>,
    /// Daemons beating, this one included.
    pub daemons: usize,
}

/// A daemon's share of `bots` bots among `daemons`: rounded up, so that
/// every bot has a taker.
pub(crate) fn share(bots: usize, daemons: usize) -> usize {
    bots.div_ceil(daemons.max(1))
}

impl Queue {
    /// From now on, claims take only the jobs of bots `holder` holds the
    /// lease of (see `consumer::take`). Set once, by a daemon on a shared
    /// store.
    pub fn fence(&self, holder: &str) {
        let _ = self.inner.holder.set(holder.to_owned());
    }

    pub(super) fn holder(&self) -> Option<String> {
        self.inner.holder.get().cloned()
    }

    /// One lease tick for `holder`: beat, hand over `released` (bots it
    /// stopped), renew what it holds, take free leases of `bots` up to its
    /// share, and say which it holds. `ttl_ms`: how long a lease (and a
    /// beat) lasts without renewal. `restarted`: the holder's first tick,
    /// so the leases it still holds are taken over as a dead holder's.
    pub async fn lease_tick(
        &self,
        holder: &str,
        bots: Vec<String>,
        released: Vec<String>,
        ttl_ms: i64,
        restarted: bool,
    ) -> Result<LeaseTick, QueueError> {
        let holder = holder.to_owned();
        self.write(move |conn, events| {
            let mut tick = tick(conn, &holder, &bots, &released, ttl_ms, events)?;
            if restarted {
                for (bot, token) in &mut tick.held {
                    if !tick.taken.contains(bot) {
                        *token = retake(conn, &holder, bot, events)?;
                        tick.taken.push(bot.clone());
                    }
                }
            }
            Ok(tick)
        })
        .await
    }
}

fn tick(
    conn: &Conn,
    holder: &str,
    bots: &[String],
    released: &[String],
    ttl_ms: i64,
    events: &mut Vec<JobEvent>,
) -> Result<LeaseTick, QueueError> {
    let now: i64 = conn.query_row(SERVER_NOW, params![], |row| row.get(0))?;
    conn.execute(
        "INSERT INTO daemons (holder, seen_at) VALUES (?1, ?2)
         ON CONFLICT (holder) DO UPDATE SET seen_at = excluded.seen_at",
        params![holder, now],
    )?;
    // A daemon beats every fifth of a lease: one silent for half a lease
    // is gone, and no longer counted before its leases lapse (so the
    // others' shares already cover its bots when they come free).
    conn.execute(
        "DELETE FROM daemons WHERE seen_at < ?1",
        params![now - ttl_ms / 2],
    )?;
    let daemons: i64 =
        conn.query_row("SELECT count(*) FROM daemons", params![], |row| row.get(0))?;
    for bot in released {
        conn.execute(
            "DELETE FROM bot_leases WHERE bot = ?1 AND holder = ?2",
            params![bot, holder],
        )?;
    }
    conn.execute(
        "UPDATE bot_leases SET expires_at = ?2 WHERE holder = ?1 AND expires_at >= ?3",
        params![holder, now + ttl_ms, now],
    )?;
    let configured: BTreeSet<&str> = bots.iter().map(String::as_str).collect();
    let mut held: Vec<(String, i64)> = conn
        .query_map(
            "SELECT bot, token FROM bot_leases WHERE holder = ?1 AND expires_at >= ?2
             ORDER BY bot",
            params![holder, now],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )?
        .collect::<Result<_, _>>()?;
    // A bot no longer configured here is handed over at once.
    let mut excess: Vec<String> = held
        .iter()
        .filter(|(bot, _)| !configured.contains(bot.as_str()))
        .map(|(bot, _)| bot.clone())
        .collect();
    let share = share(bots.len(), usize::try_from(daemons).unwrap_or(1));
    let mut taken = Vec::new();
    for bot in bots {
        if held.len() - excess.len() >= share {
            break;
        }
        if held.iter().any(|(b, _)| b == bot) {
            continue;
        }
        if let Some(token) = take(conn, holder, bot, now, ttl_ms, events)? {
            held.push((bot.clone(), token));
            taken.push(bot.clone());
        }
    }
    let mut keeping = held.len() - excess.len();
    for (bot, _) in held.iter().rev() {
        if keeping <= share {
            break;
        }
        if !excess.contains(bot) {
            excess.push(bot.clone());
            keeping -= 1;
        }
    }
    Ok(LeaseTick {
        held,
        taken,
        excess,
        daemons: usize::try_from(daemons).unwrap_or(1),
    })
}

/// A lease this holder had before it restarted: the next fencing token,
/// and the jobs the dead process left `sending` back in line.
fn retake(
    conn: &Conn,
    holder: &str,
    bot: &str,
    events: &mut Vec<JobEvent>,
) -> Result<i64, QueueError> {
    let token: i64 = conn.query_row(
        "UPDATE bot_leases SET token = token + 1 WHERE bot = ?1 AND holder = ?2 RETURNING token",
        params![bot, holder],
        |row| row.get(0),
    )?;
    let now: i64 = conn.query_row(SERVER_NOW, params![], |row| row.get(0))?;
    super::consumer::return_sending(conn, bot, None, Timestamp::from_millis(now), events)?;
    Ok(token)
}

/// Takes `bot`'s lease if it is free (never held, or expired), with the
/// next fencing token, and puts the jobs its last holder left `sending`
/// back in line.
fn take(
    conn: &Conn,
    holder: &str,
    bot: &str,
    now: i64,
    ttl_ms: i64,
    events: &mut Vec<JobEvent>,
) -> Result<Option<i64>, QueueError> {
    let token: Option<i64> = conn
        .query_row(
            "INSERT INTO bot_leases (bot, holder, token, expires_at) VALUES (?1, ?2, 1, ?3)
             ON CONFLICT (bot) DO UPDATE
                 SET holder = excluded.holder, token = bot_leases.token + 1,
                     expires_at = excluded.expires_at
                 WHERE bot_leases.expires_at < ?4
             RETURNING token",
            params![bot, holder, now + ttl_ms, now],
            |row| row.get(0),
        )
        .optional()?;
    if token.is_some() {
        super::consumer::return_sending(conn, bot, None, Timestamp::from_millis(now), events)?;
    }
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_bot_has_a_taker_and_no_daemon_takes_more_than_its_share() {
        assert_eq!(share(20, 3), 7);
        assert_eq!(share(20, 2), 10);
        assert_eq!(share(20, 1), 20);
        assert_eq!(share(20, 0), 20);
        assert_eq!(share(0, 3), 0);
        for daemons in 1..=25 {
            assert!(share(20, daemons) * daemons >= 20, "{daemons}");
        }
    }
}
