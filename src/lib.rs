//! telegate: a Telegram bot worker that speaks MTProto.
//!
//! Local services hand it JSON jobs over a Unix socket; it stores them durably
//! and delivers them through one grammers bot session within Telegram's
//! limits. What users send back becomes durable JSON events, and every button
//! click is answered in time. See `README.md` for the pipeline.

pub(crate) mod after_click;
pub mod api;
pub mod bot_state;
pub mod bots;
pub mod callbacks;
pub mod chat;
pub mod chat_action;
pub mod cli;
pub mod cm;
pub mod config;
pub mod download;
pub mod error;
pub mod events;
pub mod formatting;
pub mod inbound;
pub mod interactive;
pub mod limits;
pub mod media;
pub mod memory;
pub mod messages;
pub mod metrics;
pub mod operations;
pub mod outgoing;
pub mod private_file;
pub mod queue;
pub mod sandbox;
pub mod send_options;
pub mod sender;
pub mod session;
pub mod store;
pub mod systemd;
pub mod telegram;
pub mod whatsapp;

pub use chat::ChatId;
pub use error::{ApiError, ErrorCode};
