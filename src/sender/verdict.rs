//! What a failed send means for its job.
//!
//! Telegram's errors fall into a few families that call for different
//! actions: a flood wait pauses a chat (or the bot) without costing the job an
//! attempt; a permanent refusal fails the job with code 5 and Telegram's name
//! for it; a lost connection or a server hiccup is retried with backoff,
//! reusing the job's `random_id` so the retry cannot post twice. Keeping the
//! classification in one pure function makes the policy testable and lets the
//! sender stay a plain loop.

use std::time::Duration;

use grammers_mtsender::{InvocationError, RpcError};

/// The sender's decision about one failed attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Telegram asked to wait: not before `wait` from now. Not the job's
    /// fault: the attempt is not counted against it.
    FloodWait { wait: Duration, name: String },
    /// Telegram already has this `random_id`: the job was sent.
    AlreadySent,
    /// Telegram refused the message for good: fail the job (code 5).
    Permanent { name: String, code: i32 },
    /// Worth another try with backoff: the connection dropped, the server
    /// had trouble, or the reply was lost.
    Transient { reason: String },
    /// The session itself is unusable (a revoked or unregistered key, no
    /// home DC): stop sending; the worker signs in again (and halts the bot
    /// if Telegram refuses its token).
    Halt { reason: String },
}

/// Errors that mean the message can never be delivered as it is.
const PERMANENT: &[&str] = &[
    "USER_IS_BLOCKED",
    "PEER_ID_INVALID",
    "INPUT_USER_DEACTIVATED",
    "USER_DEACTIVATED",
    "USER_DEACTIVATED_BAN",
    "CHAT_WRITE_FORBIDDEN",
    "CHAT_ADMIN_REQUIRED",
    "CHAT_RESTRICTED",
    "CHANNEL_PRIVATE",
    "CHANNEL_INVALID",
    "USER_BANNED_IN_CHANNEL",
    "USER_IS_BOT",
    "MESSAGE_TOO_LONG",
    "MESSAGE_EMPTY",
    "MEDIA_CAPTION_TOO_LONG",
    "BUTTON_URL_INVALID",
    "BUTTON_DATA_INVALID",
    "BUTTON_TYPE_INVALID",
    "BUTTON_TEXT_INVALID",
    "REPLY_MARKUP_INVALID",
    "REPLY_MARKUP_TOO_LONG",
    "ENTITIES_TOO_LONG",
    "WEBPAGE_CURL_FAILED",
    "WEBPAGE_MEDIA_EMPTY",
    "MEDIA_EMPTY",
    "MEDIA_INVALID",
    "PHOTO_INVALID_DIMENSIONS",
    "PHOTO_EXT_INVALID",
    "FILE_PARTS_INVALID",
    "FILE_REFERENCE_EXPIRED",
    "WEBDOCUMENT_URL_INVALID",
    "WEBDOCUMENT_MIME_INVALID",
    "WEBDOCUMENT_INVALID",
    "EXTERNAL_URL_INVALID",
    "PHOTO_INVALID",
    "DOCUMENT_INVALID",
    "PHOTO_SAVE_FILE_INVALID",
];

/// Endings of error names that always mean the message as it is can never
/// go out (`WEBDOCUMENT_SIZE_TOO_BIG`, `PHOTO_TOO_BIG`, ...).
const PERMANENT_ENDINGS: &[&str] = &["_TOO_BIG", "_TOO_LONG"];

/// What Telegram's refusals of media mean, for clients who do not know
/// Telegram's error names.
const REASONS: &[(&str, &str)] = &[
    (
        "WEBPAGE_CURL_FAILED",
        "Telegram could not download the media from its URL",
    ),
    (
        "WEBPAGE_MEDIA_EMPTY",
        "the media URL holds nothing Telegram can send",
    ),
    (
        "WEBDOCUMENT_URL_INVALID",
        "Telegram does not accept the media URL",
    ),
    (
        "EXTERNAL_URL_INVALID",
        "Telegram does not accept the media URL",
    ),
    (
        "WEBDOCUMENT_MIME_INVALID",
        "Telegram does not accept the file's type for this kind of media",
    ),
    (
        "MEDIA_CAPTION_TOO_LONG",
        "the caption is longer than 1024 characters",
    ),
    (
        "PHOTO_INVALID_DIMENSIONS",
        "the image's dimensions are not allowed for a photo",
    ),
    (
        "PHOTO_EXT_INVALID",
        "the image's file type is not allowed for a photo",
    ),
    ("MEDIA_EMPTY", "the media is empty"),
    ("MEDIA_INVALID", "the media is not valid"),
    ("PHOTO_INVALID", "the image is not valid"),
    ("DOCUMENT_INVALID", "the file is not valid"),
];

/// In words, why Telegram refused with error `name`, when that is worth
/// saying beside the name (media errors mostly).
pub fn reason(name: &str) -> Option<&'static str> {
    if let Some((_, reason)) = REASONS.iter().find(|(known, _)| *known == name) {
        return Some(reason);
    }
    name.ends_with("_TOO_BIG").then_some(
        "the media file is larger than Telegram fetches by URL (5 MB for images, 20 MB for other files)",
    )
}

/// Whether error `name` means the message can never be delivered as it is.
fn is_permanent(name: &str) -> bool {
    PERMANENT.contains(&name) || PERMANENT_ENDINGS.iter().any(|end| name.ends_with(end))
}

/// Server-side trouble that goes away by itself.
const TRANSIENT: &[&str] = &[
    "MSG_WAIT_FAILED",
    "MSG_WAIT_TIMEOUT",
    "RPC_CALL_FAIL",
    "RPC_MCGET_FAIL",
    "TIMEOUT",
    "INTERDC_CALL_ERROR",
    "INTERDC_CALL_RICH_ERROR",
    "PERSISTENT_TIMESTAMP_OUTDATED",
    "WORKER_BUSY_TOO_LONG_RETRY",
];

/// Flood errors whose value is the number of seconds to wait.
const FLOOD: &[&str] = &["FLOOD_WAIT", "FLOOD_PREMIUM_WAIT", "SLOWMODE_WAIT"];

/// Judges one failed invocation.
pub fn judge(error: &InvocationError) -> Verdict {
    match error {
        InvocationError::Rpc(rpc) => judge_rpc(rpc),
        InvocationError::Io(e) => transient(format!("connection error: {e}")),
        InvocationError::Dropped(why) => transient(format!("request dropped: {why}")),
        InvocationError::Transport(e) => transient(format!("transport error: {e}")),
        InvocationError::Deserialize(e) => transient(format!("unreadable reply: {e}")),
        InvocationError::Session(e) => transient(format!("session storage: {e}")),
        InvocationError::Authentication(e) => transient(format!("auth key exchange: {e}")),
        InvocationError::InvalidDc => Verdict::Halt {
            reason: "the session names no usable home DC".into(),
        },
    }
}

fn judge_rpc(rpc: &RpcError) -> Verdict {
    let name = rpc.name.as_str();
    if FLOOD.contains(&name) || rpc.code == 420 {
        let seconds = rpc.value.unwrap_or(1).max(1);
        return Verdict::FloodWait {
            wait: Duration::from_secs(u64::from(seconds)),
            name: name.to_owned(),
        };
    }
    if name == "RANDOM_ID_DUPLICATE" {
        return Verdict::AlreadySent;
    }
    if TRANSIENT.contains(&name) || rpc.code >= 500 || rpc.code < 0 {
        return transient(format!("Telegram error {} {}", rpc.code, full_name(rpc)));
    }
    if rpc.code == 401 {
        return Verdict::Halt {
            reason: format!("Telegram refused the session: {name}"),
        };
    }
    if is_permanent(name) || (400..500).contains(&rpc.code) {
        return Verdict::Permanent {
            name: full_name(rpc),
            code: rpc.code,
        };
    }
    transient(format!("Telegram error {} {}", rpc.code, full_name(rpc)))
}

/// The error name as Telegram wrote it (grammers moves digits to `value`).
fn full_name(rpc: &RpcError) -> String {
    match rpc.value {
        Some(value) if FLOOD.contains(&rpc.name.as_str()) => format!("{}_{value}", rpc.name),
        _ => rpc.name.clone(),
    }
}

fn transient(reason: String) -> Verdict {
    Verdict::Transient { reason }
}

/// Capped exponential backoff with full jitter.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    pub base: Duration,
    pub cap: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            base: Duration::from_millis(200),
            cap: Duration::from_secs(60),
        }
    }
}

impl Backoff {
    /// The longest wait after `attempts` failed attempts (1 = the first).
    pub fn ceiling(&self, attempts: u32) -> Duration {
        let exp = attempts.saturating_sub(1).min(30);
        self.base.saturating_mul(1 << exp).min(self.cap)
    }

    /// The wait after `attempts` failures, given a uniform `jitter` in
    /// [0, 1): half the ceiling fixed, half random, so retries of many jobs
    /// spread out but never come back at once.
    pub fn delay(&self, attempts: u32, jitter: f64) -> Duration {
        let ceiling = self.ceiling(attempts);
        let jitter = jitter.clamp(0.0, 1.0);
        ceiling / 2 + ceiling.mul_f64(jitter / 2.0)
    }
}

#[cfg(test)]
mod tests {
    use grammers_tl_types as tl;

    use super::*;

    fn rpc(code: i32, message: &str) -> InvocationError {
        InvocationError::Rpc(RpcError::from(tl::types::RpcError {
            error_code: code,
            error_message: message.to_owned(),
        }))
    }

    #[test]
    fn flood_wait_carries_its_seconds() {
        assert_eq!(
            judge(&rpc(420, "FLOOD_WAIT_31")),
            Verdict::FloodWait {
                wait: Duration::from_secs(31),
                name: "FLOOD_WAIT".into()
            }
        );
        assert!(matches!(
            judge(&rpc(420, "SLOWMODE_WAIT_5")),
            Verdict::FloodWait { wait, .. } if wait == Duration::from_secs(5)
        ));
    }

    #[test]
    fn telegram_refusals_are_permanent_with_their_name() {
        for (code, name) in [
            (403, "USER_IS_BLOCKED"),
            (400, "PEER_ID_INVALID"),
            (400, "BUTTON_URL_INVALID"),
            (400, "MESSAGE_TOO_LONG"),
            (403, "CHAT_WRITE_FORBIDDEN"),
            (400, "SOMETHING_NEW_INVALID"),
        ] {
            assert_eq!(
                judge(&rpc(code, name)),
                Verdict::Permanent {
                    name: name.into(),
                    code
                },
                "{name}"
            );
        }
    }

    #[test]
    fn media_refusals_are_permanent_and_explained() {
        for (code, name) in [
            (400, "WEBPAGE_CURL_FAILED"),
            (400, "WEBDOCUMENT_SIZE_TOO_BIG"),
            (400, "WEBDOCUMENT_MIME_INVALID"),
            (303, "PHOTO_TOO_BIG"),
            (400, "MEDIA_CAPTION_TOO_LONG"),
        ] {
            assert_eq!(
                judge(&rpc(code, name)),
                Verdict::Permanent {
                    name: name.into(),
                    code
                },
                "{name}"
            );
            assert!(reason(name).is_some(), "{name} has no reason");
        }
        assert!(reason("WEBPAGE_CURL_FAILED").unwrap().contains("download"));
        assert!(reason("FILE_TOO_BIG").unwrap().contains("20 MB"));
        assert_eq!(reason("USER_IS_BLOCKED"), None);
    }

    #[test]
    fn server_trouble_and_lost_connections_are_transient() {
        for error in [
            rpc(500, "MSG_WAIT_FAILED"),
            rpc(400, "MSG_WAIT_FAILED"),
            rpc(500, "INTERDC_2_CALL_ERROR"),
            rpc(-503, "Timeout"),
            InvocationError::Dropped("connection closed"),
            InvocationError::Io(std::io::ErrorKind::ConnectionReset.into()),
        ] {
            assert!(
                matches!(judge(&error), Verdict::Transient { .. }),
                "{error:?}"
            );
        }
    }

    #[test]
    fn duplicate_random_id_means_sent() {
        assert_eq!(
            judge(&rpc(400, "RANDOM_ID_DUPLICATE")),
            Verdict::AlreadySent
        );
    }

    #[test]
    fn revoked_session_stops_the_sender() {
        assert!(matches!(
            judge(&rpc(401, "AUTH_KEY_UNREGISTERED")),
            Verdict::Halt { .. }
        ));
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_and_jitters_within_it() {
        let backoff = Backoff {
            base: Duration::from_millis(100),
            cap: Duration::from_secs(2),
        };
        assert_eq!(backoff.ceiling(1), Duration::from_millis(100));
        assert_eq!(backoff.ceiling(2), Duration::from_millis(200));
        assert_eq!(backoff.ceiling(5), Duration::from_millis(1600));
        assert_eq!(backoff.ceiling(6), Duration::from_secs(2));
        assert_eq!(backoff.ceiling(u32::MAX), Duration::from_secs(2));
        assert_eq!(backoff.delay(3, 0.0), Duration::from_millis(200));
        assert_eq!(backoff.delay(3, 1.0), Duration::from_millis(400));
        let mid = backoff.delay(3, 0.5);
        assert!(mid > Duration::from_millis(200) && mid < Duration::from_millis(400));
    }
}
