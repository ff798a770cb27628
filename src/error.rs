//! The error every request can end in, with the seed's numeric codes.
//!
//! A client of telegate sees exactly one error shape, whether the request was
//! rejected by validation, by the queue or by Telegram:
//! `{"request_id": "...", "error_code": N, "error": "..."}`. The codes are those
//! of the Octopods business API (`seeds/octopods-telegram-interactive.txt`), so
//! existing clients port unchanged.

use std::fmt;

use serde::Serialize;
use serde::ser::SerializeStruct;

/// The seed's error codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// `1`: a required field is missing; the message names it by JSON path.
    Missing,
    /// `4`: an unknown `type`, a field of the wrong JSON type, an unknown field
    /// or malformed JSON.
    Invalid,
    /// `5`: a rule is broken, or Telegram rejected the message.
    Rejected,
    /// `6`: a deprecated API key.
    DeprecatedKey,
}

impl ErrorCode {
    /// The number clients see in `error_code`.
    pub fn as_u8(self) -> u8 {
        match self {
            ErrorCode::Missing => 1,
            ErrorCode::Invalid => 4,
            ErrorCode::Rejected => 5,
            ErrorCode::DeprecatedKey => 6,
        }
    }

    /// The inverse of [`ErrorCode::as_u8`].
    pub fn from_u8(code: u8) -> Option<Self> {
        match code {
            1 => Some(ErrorCode::Missing),
            4 => Some(ErrorCode::Invalid),
            5 => Some(ErrorCode::Rejected),
            6 => Some(ErrorCode::DeprecatedKey),
            _ => None,
        }
    }
}

/// A request that cannot be carried out, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
}

impl ApiError {
    /// Code 1: `path` names the missing field, e.g.
    /// `telegram_interactive_message.reply_markup.inline_keyboard[0][1].text`.
    pub fn missing(path: impl fmt::Display) -> Self {
        ApiError {
            code: ErrorCode::Missing,
            message: format!("missing required field `{path}`"),
        }
    }

    /// Code 4: wrong type, unknown type or field, malformed JSON.
    pub fn invalid(message: impl Into<String>) -> Self {
        ApiError {
            code: ErrorCode::Invalid,
            message: message.into(),
        }
    }

    /// Code 5: a broken rule, or Telegram's refusal.
    pub fn rejected(message: impl Into<String>) -> Self {
        ApiError {
            code: ErrorCode::Rejected,
            message: message.into(),
        }
    }

    /// The body clients receive, without `request_id` (the API adds it).
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({ "error_code": self.code.as_u8(), "error": self.message })
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "error {}: {}", self.code.as_u8(), self.message)
    }
}

impl Serialize for ApiError {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut s = serializer.serialize_struct("ApiError", 2)?;
        s.serialize_field("error_code", &self.code.as_u8())?;
        s.serialize_field("error", &self.message)?;
        s.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serializes_as_the_seed_error_body() {
        let err = ApiError::missing("telegram_interactive_message.text");
        assert_eq!(
            serde_json::to_string(&err).unwrap(),
            r#"{"error_code":1,"error":"missing required field `telegram_interactive_message.text`"}"#
        );
        assert_eq!(err.to_json(), serde_json::to_value(&err).unwrap());
    }

    #[test]
    fn codes_round_trip() {
        for code in [
            ErrorCode::Missing,
            ErrorCode::Invalid,
            ErrorCode::Rejected,
            ErrorCode::DeprecatedKey,
        ] {
            assert_eq!(ErrorCode::from_u8(code.as_u8()), Some(code));
        }
        assert_eq!(ErrorCode::from_u8(2), None);
    }
}
