//! Wake-ups from other daemons. On a shared PostgreSQL store, a commit that
//! gives a bot work (a job queued or returned, a line freed) also sends
//! `NOTIFY telegate_jobs, 'BOT'` (see `writer.rs`); every daemon listens on a
//! connection of its own and tells its senders, so work enqueued at one
//! daemon's socket goes out at once from the daemon that holds the bot,
//! without polling.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

use super::JobEvent;
use super::announce::Announcer;
use crate::store::PgUrl;

/// The channel the store's commits notify.
pub(super) const CHANNEL: &str = "telegate_jobs";

/// The listening thread; it ends (within a second) when dropped.
pub(super) struct Listener {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Listener {
    pub(super) fn spawn(url: PgUrl, events: Arc<Announcer>) -> std::io::Result<Listener> {
        let stop = Arc::new(AtomicBool::new(false));
        let thread = std::thread::Builder::new()
            .name("telegate-store-listen".into())
            .spawn({
                let stop = Arc::clone(&stop);
                move || {
                    crate::store::listen(&url, CHANNEL, &stop, |bot| {
                        events.announce(JobEvent::wake(bot));
                    });
                }
            })?;
        Ok(Listener {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        // The thread sees the flag within a second; it is not waited for
        // here (a drop may run on a runtime thread).
        drop(self.thread.take());
    }
}
