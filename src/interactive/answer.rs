//! The answer a callback button carries for when it is clicked.
//!
//! Telegram shows a spinner on a clicked button until the bot answers, and
//! gives up after a few seconds. A client may not be around to answer in time,
//! so it can attach the answer to the button when it sends the message:
//! telegate then answers the click itself (`messages.setBotCallbackAnswer`).

use grammers_tl_types as tl;
use serde::{Deserialize, Serialize};

use super::json::{self, Json, Object};
use super::path::Path;
use super::rules;
use crate::error::ApiError;

/// A button's `answer`: `text` (≤200 UTF-16 code units) shown as a toast, or
/// as an alert when `alert` is true; a `url` to open; how long (`cache_time`,
/// seconds) the client may cache the answer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct CallbackAnswer {
    #[serde(skip_serializing_if = "Option::is_none")]
    text: Option<String>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    alert: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cache_time: Option<i32>,
}

impl CallbackAnswer {
    const FIELDS: &[&str] = &["text", "alert", "url", "cache_time"];

    /// Reads and checks an `answer` object at `path`.
    pub(crate) fn from_value(value: Json<'_>, path: &Path<'_>) -> Result<Self, ApiError> {
        let object = Object::new(value, path, Self::FIELDS)?;
        let text = object.opt_str("text")?;
        if let Some(text) = text {
            rules::answer_text(text, &object.path_of("text"))?;
        }
        let url = object.opt_str("url")?;
        if let Some(url) = url {
            rules::answer_url(url, &object.path_of("url"))?;
        }
        let cache_time = object
            .get("cache_time")
            .map(|value| cache_time(value, &object.path_of("cache_time")))
            .transpose()?;
        Ok(CallbackAnswer {
            text: text.map(str::to_owned),
            alert: object.flag("alert")?,
            url: url.map(str::to_owned),
            cache_time,
        })
    }

    /// A toast of `text`.
    pub fn with_text(text: &str) -> Self {
        CallbackAnswer {
            text: Some(text.to_owned()),
            ..CallbackAnswer::default()
        }
    }

    /// Reads and checks a standalone answer body (`{text?, alert?, url?,
    /// cache_time?}`), as a consumer posts it for a click.
    pub fn from_json(body: &[u8]) -> Result<Self, ApiError> {
        let document = json::Document::parse(body)?;
        Self::from_value(document.root(), &Path::root(""))
    }

    /// The toast (or alert) text, if any.
    pub fn text(&self) -> Option<&str> {
        self.text.as_deref()
    }

    /// Whether the text is shown as an alert rather than a toast.
    pub fn alert(&self) -> bool {
        self.alert
    }

    /// The URL the client opens, if any.
    pub fn url(&self) -> Option<&str> {
        self.url.as_deref()
    }

    /// Seconds the client may cache this answer (0 when not given).
    pub fn cache_time(&self) -> i32 {
        self.cache_time.unwrap_or(0)
    }

    /// The answer to send when Telegram refused this one: without the
    /// `url`, then empty; `None` once there is nothing left to drop.
    pub(crate) fn degraded(&self) -> Option<CallbackAnswer> {
        if self.url.is_some() {
            Some(CallbackAnswer {
                url: None,
                ..self.clone()
            })
        } else if *self != CallbackAnswer::default() {
            Some(CallbackAnswer::default())
        } else {
            None
        }
    }

    /// The request that answers callback query `query_id` with this answer.
    pub fn to_tl(&self, query_id: i64) -> tl::functions::messages::SetBotCallbackAnswer {
        tl::functions::messages::SetBotCallbackAnswer {
            alert: self.alert,
            query_id,
            message: self.text.clone(),
            url: self.url.clone(),
            cache_time: self.cache_time(),
        }
    }
}

/// `cache_time`: whole seconds, 0 up to what fits Telegram's 32-bit `int`.
fn cache_time(value: Json<'_>, path: &Path<'_>) -> Result<i32, ApiError> {
    let seconds = json::as_i64(value, path)?;
    i32::try_from(seconds)
        .ok()
        .filter(|seconds| *seconds >= 0)
        .ok_or_else(|| {
            path.broken(format_args!(
                "must be 0–{} seconds, got {seconds}",
                i32::MAX
            ))
        })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::error::ErrorCode;
    use crate::interactive::Document;

    fn read(value: serde_json::Value) -> Result<CallbackAnswer, ApiError> {
        let document = Document::from_value(&value);
        CallbackAnswer::from_value(document.root(), &Path::root("answer"))
    }

    #[test]
    fn reads_every_field() {
        let answer = read(json!({
            "text": "Noted!", "alert": true, "url": "https://t.me/some_bot?start=x", "cache_time": 30
        }))
        .unwrap();
        assert_eq!(answer.text(), Some("Noted!"));
        assert!(answer.alert());
        assert_eq!(answer.url(), Some("https://t.me/some_bot?start=x"));
        assert_eq!(answer.cache_time(), 30);
        let request = answer.to_tl(77);
        assert_eq!(request.query_id, 77);
        assert_eq!(request.message.as_deref(), Some("Noted!"));
        assert!(request.alert);
        assert_eq!(request.cache_time, 30);
    }

    #[test]
    fn a_refused_answer_degrades_to_no_url_then_to_empty() {
        let answer = read(json!({"text": "Hi", "url": "https://t.me/some_bot?start=x"})).unwrap();
        let lesser = answer.degraded().unwrap();
        assert_eq!(lesser.url(), None);
        assert_eq!(lesser.text(), Some("Hi"));
        let empty = lesser.degraded().unwrap();
        assert_eq!(empty, CallbackAnswer::default());
        assert_eq!(empty.degraded(), None);
    }

    #[test]
    fn empty_answer_is_allowed() {
        let answer = read(json!({})).unwrap();
        assert_eq!(answer, CallbackAnswer::default());
        assert_eq!(serde_json::to_value(&answer).unwrap(), json!({}));
    }

    #[test]
    fn refuses_bad_fields() {
        let err = read(json!({"text": "x".repeat(201)})).unwrap_err();
        assert_eq!(err.code, ErrorCode::Rejected);
        assert!(err.message.contains("`answer.text`"), "{}", err.message);
        assert!(read(json!({"text": "x".repeat(200)})).is_ok());

        let err = read(json!({"cache_time": -1})).unwrap_err();
        assert_eq!(err.code, ErrorCode::Rejected);
        let err = read(json!({"cache_time": 1.5})).unwrap_err();
        assert_eq!(err.code, ErrorCode::Rejected);
        let err = read(json!({"cache_time": "10"})).unwrap_err();
        assert_eq!(err.code, ErrorCode::Invalid);
        for url in ["nope", "https://example.com/t"] {
            let err = read(json!({"url": url})).unwrap_err();
            assert_eq!(err.code, ErrorCode::Rejected);
            assert!(err.message.contains("`answer.url`"), "{}", err.message);
            assert!(err.message.contains("t.me"), "{}", err.message);
        }
        let err = read(json!({"allert": true})).unwrap_err();
        assert_eq!(err.code, ErrorCode::Invalid);
        assert!(err.message.contains("`answer.allert`"), "{}", err.message);
    }
}
