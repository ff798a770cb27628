//! Interactive messages: the seed's JSON request bodies, validated, and turned
//! into Telegram's reply-markup constructors.
//!
//! STUB: the interactive-model issue replaces this with the real model. The
//! public surface below is the contract the queue and API build on.

use grammers_tl_types as tl;
use serde::{Deserialize, Serialize};

use crate::chat::ChatId;
use crate::error::ApiError;

/// A validated `POST /api/v1/telegram/interactive` body, WhatsApp shapes
/// already translated into Telegram's. Serializes to the normalized JSON that
/// the queue stores, and deserializes back from it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InteractiveRequest {
    pub destination_user_id: ChatId,
    pub text: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intercom_teammate_id: Option<String>,
}

impl InteractiveRequest {
    /// Parses and validates a request body (seed error codes 1, 4, 5).
    pub fn from_json(body: &[u8]) -> Result<Self, ApiError> {
        serde_json::from_slice(body).map_err(|e| ApiError::invalid(e.to_string()))
    }

    /// The chat the message goes to.
    pub fn destination(&self) -> ChatId {
        self.destination_user_id
    }

    /// The message text (1–4096 characters).
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The reply markup to send with the text.
    pub fn reply_markup(&self) -> Option<tl::enums::ReplyMarkup> {
        None
    }
}
