//! The sender: drains the queue into Telegram within its limits.
//!
//! Jobs leave the queue one per chat at a time, in order, paced by
//! [`crate::limits`], and every attempt reuses the job's stored `random_id`
//! so a resend after a lost reply cannot post twice.

pub mod verdict;

pub use verdict::{Backoff, Verdict, judge};
