//! Job expiry: a job still unsent some time after it was enqueued fails.
//!
//! Transient errors are retried forever otherwise, and a flood wait can
//! hold a chat for hours; a message that arrives too late may be worse than
//! none. The rule is pure (time passed in) so that the store can apply it
//! when it takes a job and when it sweeps the waiting ones, and the sender
//! when an attempt fails: a job is never tried after its deadline, and a job
//! already sent never expires.

use std::time::Duration;

use super::job::{Job, JobError, Timestamp};
use crate::error::ErrorCode;

/// How long after enqueue an unsent job fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expiry {
    after: Duration,
}

impl Expiry {
    /// `None` for a zero duration: jobs never expire.
    pub fn new(after: Duration) -> Option<Self> {
        (!after.is_zero()).then_some(Expiry { after })
    }

    pub fn after(&self) -> Duration {
        self.after
    }

    /// When a job enqueued at `created_at` expires.
    pub fn deadline(&self, created_at: Timestamp) -> Timestamp {
        created_at.saturating_add(self.after)
    }

    /// Whether a job enqueued at `created_at` has expired at `now`.
    pub fn has_expired(&self, created_at: Timestamp, now: Timestamp) -> bool {
        self.deadline(created_at) <= now
    }

    /// Jobs enqueued at or before this have expired at `now`.
    pub fn cutoff(&self, now: Timestamp) -> Timestamp {
        let after = i64::try_from(self.after.as_millis()).unwrap_or(i64::MAX);
        Timestamp::from_millis(now.as_millis().saturating_sub(after))
    }

    /// The error an expired job fails with (code 5): how long, how many
    /// attempts, and the last error, if any.
    pub fn error(&self, attempts: u32, last_error: Option<&str>) -> JobError {
        JobError {
            code: ErrorCode::Rejected,
            message: format!(
                "expired after {} s and {attempts} attempt{}; last error: {}",
                self.after.as_secs(),
                if attempts == 1 { "" } else { "s" },
                last_error.unwrap_or("none"),
            ),
            telegram: None,
        }
    }

    /// [`Expiry::error`] for `job`, as it is stored.
    pub fn error_of(&self, job: &Job) -> JobError {
        self.error(job.attempts, job.error.as_ref().map(|e| e.message.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: Duration = Duration::from_secs(60);

    #[test]
    fn zero_means_never() {
        assert_eq!(Expiry::new(Duration::ZERO), None);
        assert!(Expiry::new(MINUTE).is_some());
    }

    #[test]
    fn a_job_expires_at_its_deadline_not_before() {
        let expiry = Expiry::new(MINUTE).unwrap();
        let created = Timestamp::from_millis(1_000_000);
        assert_eq!(expiry.deadline(created), Timestamp::from_millis(1_060_000));
        assert!(!expiry.has_expired(created, Timestamp::from_millis(1_059_999)));
        assert!(expiry.has_expired(created, Timestamp::from_millis(1_060_000)));
        assert_eq!(
            expiry.cutoff(Timestamp::from_millis(1_060_000)),
            created,
            "the cutoff at the deadline is the enqueue time"
        );
        assert_eq!(
            expiry.cutoff(Timestamp::from_millis(5)),
            Timestamp::from_millis(-59_995)
        );
    }

    #[test]
    fn the_error_says_how_long_how_many_attempts_and_what_went_wrong() {
        let expiry = Expiry::new(Duration::from_secs(90)).unwrap();
        let error = expiry.error(3, Some("Telegram error 500 INTERNAL"));
        assert_eq!(error.code, ErrorCode::Rejected);
        assert_eq!(error.telegram, None);
        assert_eq!(
            error.message,
            "expired after 90 s and 3 attempts; last error: Telegram error 500 INTERNAL"
        );
        assert_eq!(
            expiry.error(1, None).message,
            "expired after 90 s and 1 attempt; last error: none"
        );
    }
}
