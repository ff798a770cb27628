//! Recording what already happened, through a full disk.
//!
//! Some writes cannot be refused the way an enqueue is (with a 503): a send
//! Telegram already took, an inbound update grammers already handed over.
//! Dropping such a write would leave a job `sending` (its chat stalled) or
//! an update unrecorded, so these writes are retried until the store takes
//! them again — a full disk is something an operator fixes, and everything
//! should flow again, by itself, once they have. Errors that are not the
//! storage's (a job that does not exist, a closed store) end at once.

use std::future::Future;
use std::time::Duration;

use super::QueueError;
use crate::store::{StoreError, is_storage_postgres};

/// The first wait after a refused write; it doubles up to [`MAX_PAUSE`].
const FIRST_PAUSE: Duration = Duration::from_millis(100);
const MAX_PAUSE: Duration = Duration::from_secs(2);

/// An error that may say the storage refused a write.
pub trait StorageRefusal: std::fmt::Display {
    /// Whether the storage refused the write (full disk, I/O error, a
    /// failed commit), so the same write may succeed later.
    fn is_storage(&self) -> bool;
}

impl StorageRefusal for QueueError {
    fn is_storage(&self) -> bool {
        match self {
            QueueError::Commit(_) => true,
            QueueError::Store(error) => is_storage(error),
            _ => false,
        }
    }
}

/// Whether the store's `error` is the storage's (rather than the data's).
pub fn is_storage(error: &StoreError) -> bool {
    match error {
        StoreError::Sqlite(error) => is_storage_sqlite(error),
        StoreError::Postgres(error) => is_storage_postgres(error),
        StoreError::Open { .. } | StoreError::Lost => true,
        StoreError::NoWal(_) | StoreError::Url(_) | StoreError::NoRow => false,
    }
}

/// Whether SQLite's `error` is the storage's (rather than the data's).
pub fn is_storage_sqlite(error: &rusqlite::Error) -> bool {
    use rusqlite::ErrorCode as C;
    matches!(
        error.sqlite_error_code(),
        Some(
            C::DiskFull
                | C::SystemIoFailure
                | C::ReadOnly
                | C::CannotOpen
                | C::OutOfMemory
                | C::DatabaseBusy
                | C::DatabaseLocked
        )
    )
}

/// Runs `write` until it succeeds or fails for a reason other than the
/// storage; `what` names it in the log (once when it starts failing, once
/// when it goes through).
pub async fn until_stored<T, E, F, Fut>(what: &str, mut write: F) -> Result<T, E>
where
    E: StorageRefusal,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let mut pause = FIRST_PAUSE;
    let mut failures = 0u32;
    loop {
        match write().await {
            Ok(value) => {
                if failures > 0 {
                    tracing::info!(what, failures, "recorded after the store refused it");
                }
                return Ok(value);
            }
            Err(error) if error.is_storage() => {
                if failures == 0 {
                    tracing::warn!(what, %error, "the store refuses a write; retrying until it takes it");
                }
                failures = failures.saturating_add(1);
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(MAX_PAUSE);
            }
            Err(error) => return Err(error),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn retries_storage_errors_and_gives_up_on_others() {
        let tries = AtomicU32::new(0);
        let stored: Result<_, QueueError> = until_stored("test", || async {
            match tries.fetch_add(1, Ordering::Relaxed) {
                0..=4 => Err(QueueError::Commit("database or disk is full".into())),
                _ => Ok(7),
            }
        })
        .await;
        assert_eq!(stored.unwrap(), 7);
        assert_eq!(tries.load(Ordering::Relaxed), 6);

        let tries = AtomicU32::new(0);
        let closed: Result<(), QueueError> = until_stored("test", || async {
            tries.fetch_add(1, Ordering::Relaxed);
            Err(QueueError::Closed)
        })
        .await;
        assert!(matches!(closed, Err(QueueError::Closed)));
        assert_eq!(tries.load(Ordering::Relaxed), 1);
    }
}
