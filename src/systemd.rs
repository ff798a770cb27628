//! systemd's notify protocol, for `Type=notify` units
//! (`contrib/telegate.service`): `READY=1` once the socket API serves,
//! `STOPPING=1` when shutdown begins, and `WATCHDOG=1` every half
//! `WatchdogSec` while the store still answers — a wedged store stops the
//! pings and systemd restarts the daemon. Without `$NOTIFY_SOCKET` (not run
//! by systemd) every call does nothing.

use std::time::Duration;

use sd_notify::NotifyState;
use tokio::sync::watch;

use crate::queue::Queue;

fn notify(state: NotifyState<'_>) {
    if let Err(error) = sd_notify::notify(&[state]) {
        tracing::warn!(%error, "cannot notify systemd");
    }
}

/// `READY=1`: the daemon serves.
pub fn ready() {
    notify(NotifyState::Ready);
}

/// `STOPPING=1`: the daemon drains and stops.
pub fn stopping() {
    notify(NotifyState::Stopping);
}

/// How often to ping a watchdog of `timeout`: half of it.
pub fn ping_every(timeout: Duration) -> Duration {
    (timeout / 2).max(Duration::from_millis(1))
}

/// Pings the watchdog (when `$WATCHDOG_USEC` asks for one) while `queue`
/// answers, until `stop` turns true.
pub async fn watchdog(queue: Queue, mut stop: watch::Receiver<bool>) {
    let Some(timeout) = sd_notify::watchdog_enabled() else {
        return;
    };
    let mut ticks = tokio::time::interval(ping_every(timeout));
    let stopped = async move {
        let _ = stop.wait_for(|stop| *stop).await;
    };
    tokio::pin!(stopped);
    loop {
        tokio::select! {
            _ = ticks.tick() => match queue.check().await {
                Ok(()) => notify(NotifyState::Watchdog),
                Err(error) => tracing::error!(%error, "store check failed: not pinging the watchdog"),
            },
            () = &mut stopped => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_watchdog_is_pinged_at_half_its_timeout() {
        assert_eq!(ping_every(Duration::from_secs(30)), Duration::from_secs(15));
        assert_eq!(ping_every(Duration::ZERO), Duration::from_millis(1));
    }
}
