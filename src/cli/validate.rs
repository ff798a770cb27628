//! `telegate validate [--tl-hex] [FILE|-]`: check one request body offline.
//!
//! Shows what a `POST /api/v1/telegram/interactive` body becomes without a
//! daemon or a network: the error JSON the socket API would answer with, or
//! the MTProto reply markup that would be sent.

use std::fmt::Write as _;
use std::io::{self, Read, Write};
use std::path::Path;

use grammers_tl_types::Serializable;

use super::{CliError, Outcome};
use crate::error::ApiError;
use crate::interactive::{InteractiveRequest, Summary, utf16_len};

/// Validates the body in `file` (standard input for `None` or `-`) and writes
/// the outcome to `out`:
/// - valid: a summary of the constructor tree, or with `tl_hex` only the
///   lowercase hex of the serialized boxed `ReplyMarkup`, on one line;
/// - invalid: exactly `{"error_code":N,"error":"..."}`, and [`Outcome::Failure`].
pub fn run(tl_hex: bool, file: Option<&Path>, out: &mut impl Write) -> Result<Outcome, CliError> {
    let body = read_body(file)?;
    let (report, outcome) = match InteractiveRequest::from_json(&body) {
        Ok(request) if tl_hex => (hex(&request.reply_markup().to_bytes()), Outcome::Success),
        Ok(request) => (summary(&request), Outcome::Success),
        // `Serialize`, not `to_json()`: a `Value` would sort `error` first.
        Err(err) => (error_body(&err), Outcome::Failure),
    };
    writeln!(out, "{report}").map_err(CliError::Output)?;
    Ok(outcome)
}

/// Exactly `{"error_code":N,"error":"..."}`, as the socket API answers.
fn error_body(err: &ApiError) -> String {
    serde_json::to_string(err).unwrap_or_else(|_| {
        // Serializing a number and a string cannot fail; keep the code anyway.
        format!(
            r#"{{"error_code":{},"error":"unprintable error"}}"#,
            err.code.as_u8()
        )
    })
}

fn read_body(file: Option<&Path>) -> Result<Vec<u8>, CliError> {
    let mut body = Vec::new();
    match file {
        None => read_stdin(&mut body)?,
        Some(path) if path.as_os_str() == "-" => read_stdin(&mut body)?,
        Some(path) => {
            body = std::fs::read(path).map_err(|source| CliError::Read {
                path: path.display().to_string(),
                source,
            })?;
        }
    }
    Ok(body)
}

fn read_stdin(body: &mut Vec<u8>) -> Result<(), CliError> {
    io::stdin()
        .lock()
        .read_to_end(body)
        .map(drop)
        .map_err(|source| CliError::Read {
            path: "standard input".to_owned(),
            source,
        })
}

/// Who gets what: destination, type, the text (its start, if long), then
/// the constructor tree.
fn summary(request: &InteractiveRequest) -> String {
    let markup = request.reply_markup();
    format!(
        "valid {} message to chat {}, text of {} UTF-16 code units{}\ntext {:?}\n{}",
        request.markup().type_name(),
        request.destination(),
        utf16_len(request.text()),
        request
            .intercom_teammate_id()
            .map(|id| format!(", attributed to teammate {id:?}"))
            .unwrap_or_default(),
        preview(request.text()),
        Summary(&markup)
    )
}

/// The first [`PREVIEW_CHARS`] characters of `text`, `…` marking a cut.
fn preview(text: &str) -> String {
    const PREVIEW_CHARS: usize = 80;
    match text.char_indices().nth(PREVIEW_CHARS) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut hex, byte| {
            let _ = write!(hex, "{byte:02x}");
            hex
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_is_lowercase_and_padded() {
        assert_eq!(hex(&[0x00, 0x0a, 0xff, 0xb2]), "000affb2");
        assert_eq!(hex(&[]), "");
    }

    #[test]
    fn preview_cuts_long_text_on_a_char_boundary() {
        assert_eq!(preview("short"), "short");
        let long = "é".repeat(100);
        assert_eq!(preview(&long), format!("{}…", "é".repeat(80)));
    }
}
