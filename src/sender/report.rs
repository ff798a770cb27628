//! What an attempt means for its job, and telling the store.
//!
//! [`Report::of`] is a pure function of the attempt, the job and the time,
//! so every rule (a flood wait pauses a chat or the bot and does not count
//! against the job; a permanent refusal fails it with code 5 and Telegram's
//! name; anything else is retried with capped, jittered backoff) is unit
//! tested without a network. [`Report::apply`] then makes it durable.

use std::time::Duration;

use super::attempt::Attempt;
use super::verdict::{self, Backoff, Verdict};
use crate::error::ErrorCode;
use crate::limits::FloodScope;
use crate::queue::{Expiry, Job, JobError, Queue, QueueError, Timestamp};

/// The store change one attempt calls for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Report {
    Sent(Vec<Option<i64>>),
    Failed(JobError),
    Retry {
        at: Timestamp,
        error: JobError,
    },
    /// Hold the chat (or the whole bot) until `until`, and put the job back
    /// in line without counting the attempt — or, when the job has expired,
    /// fail it with `expired`.
    Flood {
        until: Timestamp,
        scope: FloodScope,
        name: String,
        expired: Option<JobError>,
    },
    /// The session is unusable: put the job back and stop sending.
    Halt {
        reason: String,
    },
}

impl Report {
    /// Decides what `attempt` at `job` means. `scope` is the limiter's guess
    /// of which limit a flood wait would come from, taken before the send;
    /// `jitter` is uniform in [0, 1). A job past its `expiry` is not tried
    /// again: it fails.
    pub fn of(
        attempt: Attempt,
        job: &Job,
        scope: FloodScope,
        backoff: Backoff,
        expiry: Option<Expiry>,
        jitter: f64,
        now: Timestamp,
    ) -> Report {
        let verdict = match attempt {
            Attempt::Sent(ids) => return Report::Sent(ids),
            Attempt::Unbuildable(error) => {
                let error = error.to_api_error();
                return Report::Failed(JobError {
                    code: error.code,
                    message: error.message,
                    telegram: None,
                });
            }
            Attempt::Failed(verdict) => verdict,
        };
        let expired = |last_error: &str| {
            expiry
                .filter(|expiry| expiry.has_expired(job.created_at, now))
                .map(|expiry| expiry.error(job.attempts, Some(last_error)))
        };
        match verdict {
            Verdict::FloodWait { wait, name } => Report::Flood {
                until: now.saturating_add(wait),
                scope,
                expired: expired(&name),
                name,
            },
            Verdict::Permanent { name, code } => Report::Failed(JobError::telegram(
                name.clone(),
                match verdict::reason(&name) {
                    Some(reason) => {
                        format!("Telegram refused the message: {code} {name}: {reason}")
                    }
                    None => format!("Telegram refused the message: {code} {name}"),
                },
            )),
            Verdict::Transient { reason } => match expired(&reason) {
                Some(error) => Report::Failed(error),
                None => Report::Retry {
                    at: now.saturating_add(backoff.delay(job.attempts, jitter)),
                    error: JobError {
                        code: ErrorCode::Rejected,
                        message: format!("attempt {} failed, will retry: {reason}", job.attempts),
                        telegram: None,
                    },
                },
            },
            // `attempt::send` counts a duplicate as sent; should one reach
            // here, sending again at once is safe (same random_id).
            Verdict::AlreadySent => Report::Retry {
                at: now,
                error: JobError {
                    code: ErrorCode::Rejected,
                    message: "RANDOM_ID_DUPLICATE: resending to learn the message id".into(),
                    telegram: None,
                },
            },
            Verdict::Halt { reason } => Report::Halt { reason },
        }
    }

    /// Counts the report in the metrics (`now`: when it was made).
    pub fn count(&self, job: &Job, now: Timestamp) {
        let metrics = crate::metrics::metrics();
        let bot = crate::metrics::bot_label(&job.bot);
        let outcome = |outcome: &str| [("bot", job.bot.clone()), ("outcome", outcome.to_owned())];
        let failed = |error: &JobError| {
            let name = error.telegram.clone().unwrap_or_else(|| {
                if error.message.starts_with("expired") {
                    "expired"
                } else {
                    "invalid"
                }
                .to_owned()
            });
            metrics
                .jobs_failed
                .get_or_create(&[("bot", job.bot.clone()), ("error", name)])
                .inc();
        };
        match self {
            Report::Sent(_) => {
                metrics.send_attempts.get_or_create(&outcome("sent")).inc();
                metrics.jobs_sent.get_or_create(&bot).inc();
                metrics
                    .send_latency
                    .get_or_create(&bot)
                    .observe(until(now, job.created_at).as_secs_f64());
            }
            Report::Failed(error) => {
                metrics
                    .send_attempts
                    .get_or_create(&outcome("failed"))
                    .inc();
                failed(error);
            }
            Report::Retry { .. } => {
                metrics.send_attempts.get_or_create(&outcome("retry")).inc();
            }
            Report::Flood {
                until: held,
                scope,
                expired,
                ..
            } => {
                metrics
                    .send_attempts
                    .get_or_create(&outcome("flood_wait"))
                    .inc();
                let scope = match scope {
                    FloodScope::Chat => "chat",
                    FloodScope::Bot => "bot",
                };
                metrics
                    .flood_waits
                    .get_or_create(&[("bot", job.bot.clone()), ("scope", scope.to_owned())])
                    .inc();
                metrics
                    .flood_wait_seconds
                    .get_or_create(&bot)
                    .inc_by(until(*held, now).as_secs());
                if let Some(error) = expired {
                    failed(error);
                }
            }
            Report::Halt { .. } => {
                metrics.send_attempts.get_or_create(&outcome("halt")).inc();
            }
        }
    }

    /// Records the report for `job` in the store.
    pub async fn apply(self, queue: &Queue, job: &Job, now: Timestamp) -> Result<(), QueueError> {
        let id = job.id;
        match self {
            Report::Sent(ids) => {
                queue.mark_sent(id, ids, now).await?;
                tracing::debug!(job = %id, chat = %job.chat, "sent");
            }
            Report::Failed(error) => {
                tracing::warn!(job = %id, chat = %job.chat, error = %error.message, "failed");
                queue.mark_failed(id, error, now).await?;
            }
            Report::Retry { at, error } => {
                tracing::info!(job = %id, chat = %job.chat, retry_at = %at, error = %error.message, "will retry");
                queue.retry_at(id, at, Some(error), now).await?;
            }
            Report::Flood {
                until,
                scope,
                name,
                expired,
            } => {
                match scope {
                    FloodScope::Chat => queue.defer_chat(&job.bot, job.chat, until).await?,
                    FloodScope::Bot => queue.defer_all(&job.bot, until).await?,
                }
                tracing::warn!(job = %id, chat = %job.chat, %name, ?scope, until = %until, "flood wait");
                match expired {
                    Some(error) => {
                        tracing::warn!(job = %id, chat = %job.chat, error = %error.message, "expired");
                        queue.mark_failed(id, error, now).await?;
                    }
                    None => queue.release(id, now).await?,
                }
            }
            Report::Halt { reason } => {
                tracing::error!(job = %id, %reason, "the session is unusable: sending stops until telegate is restarted");
                queue.release(id, now).await?;
            }
        }
        Ok(())
    }
}

/// How long until `at`, seen from `now` (zero if past).
pub fn until(at: Timestamp, now: Timestamp) -> Duration {
    let ms = at.as_millis().saturating_sub(now.as_millis());
    Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat::ChatId;
    use crate::outgoing::OutgoingError;
    use crate::queue::{JobId, JobKind, JobState, Part};

    fn job(attempts: u32) -> Job {
        Job {
            id: JobId::new(3),
            request_id: "r".into(),
            bot: "default".into(),
            chat: ChatId::user(10),
            kind: JobKind::Interactive,
            payload: "{}".into(),
            state: JobState::Sending,
            attempts,
            not_before: Timestamp::from_millis(0),
            parts: vec![Part {
                seq: 0,
                random_id: 1,
                message_id: 1,
                channel_message_id: None,
            }],
            error: None,
            idempotency_key: None,
            created_at: Timestamp::from_millis(0),
            updated_at: Timestamp::from_millis(0),
            wire: None,
        }
    }

    const NOW: Timestamp = Timestamp::from_millis(1_000_000);
    const BACKOFF: Backoff = Backoff {
        base: Duration::from_millis(200),
        cap: Duration::from_secs(60),
    };

    fn report(verdict: Verdict, attempts: u32, scope: FloodScope) -> Report {
        Report::of(
            Attempt::Failed(verdict),
            &job(attempts),
            scope,
            BACKOFF,
            None,
            0.5,
            NOW,
        )
    }

    #[test]
    fn a_flood_wait_holds_the_scope_the_limiter_guessed() {
        let verdict = Verdict::FloodWait {
            wait: Duration::from_secs(7),
            name: "FLOOD_WAIT_7".into(),
        };
        for scope in [FloodScope::Chat, FloodScope::Bot] {
            assert_eq!(
                report(verdict.clone(), 4, scope),
                Report::Flood {
                    until: Timestamp::from_millis(1_007_000),
                    scope,
                    name: "FLOOD_WAIT_7".into(),
                    expired: None,
                }
            );
        }
    }

    /// `report` for a job enqueued at 0 with a 1000 s expiry, at `now`.
    fn report_expiring(verdict: Verdict, now: Timestamp) -> Report {
        let expiry = Expiry::new(Duration::from_secs(1000));
        Report::of(
            Attempt::Failed(verdict),
            &job(2),
            FloodScope::Chat,
            BACKOFF,
            expiry,
            0.5,
            now,
        )
    }

    #[test]
    fn an_expired_job_fails_instead_of_retrying_with_its_last_error() {
        let transient = Verdict::Transient {
            reason: "Telegram error 500 INTERNAL".into(),
        };
        let before = Timestamp::from_millis(999_999);
        assert!(matches!(
            report_expiring(transient.clone(), before),
            Report::Retry { .. }
        ));
        let Report::Failed(error) = report_expiring(transient, NOW) else {
            panic!("an expired job is retried");
        };
        assert_eq!(error.code, ErrorCode::Rejected);
        assert_eq!(
            error.message,
            "expired after 1000 s and 2 attempts; last error: Telegram error 500 INTERNAL"
        );
    }

    #[test]
    fn an_expired_job_held_by_a_flood_wait_fails_but_the_hold_stays() {
        let flood = Verdict::FloodWait {
            wait: Duration::from_secs(7),
            name: "FLOOD_WAIT_7".into(),
        };
        let Report::Flood {
            expired: None,
            until,
            ..
        } = report_expiring(flood.clone(), Timestamp::from_millis(5))
        else {
            panic!("a fresh job expired");
        };
        assert_eq!(until, Timestamp::from_millis(7005));
        let Report::Flood {
            expired: Some(error),
            until,
            ..
        } = report_expiring(flood, NOW)
        else {
            panic!("an expired job is put back in line");
        };
        assert_eq!(until, Timestamp::from_millis(1_007_000));
        assert!(error.message.contains("FLOOD_WAIT_7"), "{}", error.message);
    }

    #[test]
    fn a_sent_job_never_expires() {
        let report = Report::of(
            Attempt::Sent(vec![Some(4)]),
            &job(9),
            FloodScope::Chat,
            BACKOFF,
            Expiry::new(Duration::from_secs(1)),
            0.0,
            NOW,
        );
        assert_eq!(report, Report::Sent(vec![Some(4)]));
    }

    #[test]
    fn a_permanent_refusal_fails_with_code_5_and_telegrams_name() {
        let Report::Failed(error) = report(
            Verdict::Permanent {
                name: "USER_IS_BLOCKED".into(),
                code: 400,
            },
            1,
            FloodScope::Chat,
        ) else {
            panic!("not a failure");
        };
        assert_eq!(error.code, ErrorCode::Rejected);
        assert_eq!(error.telegram.as_deref(), Some("USER_IS_BLOCKED"));
        assert!(
            error.message.contains("USER_IS_BLOCKED"),
            "{}",
            error.message
        );
    }

    #[test]
    fn transient_errors_back_off_more_with_each_attempt_up_to_the_cap() {
        let at = |attempts| match report(
            Verdict::Transient {
                reason: "request dropped".into(),
            },
            attempts,
            FloodScope::Chat,
        ) {
            Report::Retry { at, error } => {
                assert!(error.message.contains("request dropped"));
                assert_eq!(error.telegram, None);
                until(at, NOW)
            }
            other => panic!("not a retry: {other:?}"),
        };
        // Jitter 0.5: three quarters of the ceiling.
        assert_eq!(at(1), Duration::from_millis(150));
        assert_eq!(at(2), Duration::from_millis(300));
        assert!(at(3) > at(2));
        assert_eq!(at(40), Duration::from_secs(45));
    }

    #[test]
    fn a_halt_stops_sending_and_a_sent_attempt_keeps_its_ids() {
        assert_eq!(
            report(
                Verdict::Halt {
                    reason: "AUTH_KEY_UNREGISTERED".into()
                },
                1,
                FloodScope::Bot
            ),
            Report::Halt {
                reason: "AUTH_KEY_UNREGISTERED".into()
            }
        );
        let sent = Report::of(
            Attempt::Sent(vec![Some(9), None]),
            &job(1),
            FloodScope::Chat,
            BACKOFF,
            None,
            0.0,
            NOW,
        );
        assert_eq!(sent, Report::Sent(vec![Some(9), None]));
    }

    #[test]
    fn an_unbuildable_job_fails_with_code_5() {
        let report = Report::of(
            Attempt::Unbuildable(OutgoingError::Payload {
                job: 3,
                reason: "bad".into(),
            }),
            &job(1),
            FloodScope::Chat,
            BACKOFF,
            None,
            0.0,
            NOW,
        );
        let Report::Failed(error) = report else {
            panic!("not a failure");
        };
        assert_eq!(error.code, ErrorCode::Rejected);
        assert!(error.message.contains("unreadable"), "{}", error.message);
    }
}
