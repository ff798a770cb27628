//! Telegram's limits, checked before anything is queued.
//!
//! A message Telegram would refuse should be refused at the door, with the
//! field and the rule named, not fail minutes later in the sender. Every check
//! takes the [`Path`] of the value it checks, so the same rule reports a
//! Telegram field for a Telegram body and a WhatsApp field for a WhatsApp one.
//!
//! Lengths of text are counted the way Telegram counts them: in UTF-16 code
//! units (an emoji outside the Basic Multilingual Plane counts 2).

use super::path::Path;
use crate::error::ApiError;

/// Message text: 1–4096 UTF-16 code units.
pub const TEXT_MAX: usize = 4096;
/// Buttons per message, across all rows (the seed's rule).
pub const BUTTONS_MAX: usize = 6;
/// `input_field_placeholder`: at most 64 UTF-16 code units.
pub const PLACEHOLDER_MAX: usize = 64;
/// `callback_data`: 1–64 bytes.
pub const CALLBACK_DATA_MAX: usize = 64;
/// A callback answer's `text`: at most 200 UTF-16 code units.
pub const ANSWER_TEXT_MAX: usize = 200;
/// An inline query (`switch_inline_query*`): at most 256 UTF-16 code units.
pub const INLINE_QUERY_MAX: usize = 256;
/// `copy_text`: 1–256 UTF-16 code units.
pub const COPY_TEXT_MAX: usize = 256;
/// An `on_click.mark`: 1–16 UTF-16 code units.
pub const MARK_MAX: usize = 16;

/// The length of `text` as Telegram measures it: UTF-16 code units.
pub fn utf16_len(text: &str) -> usize {
    // Each char is one unit, two above the Basic Multilingual Plane.
    text.chars().map(char::len_utf16).sum()
}

/// Message text: not blank, at most [`TEXT_MAX`].
pub fn message_text(text: &str, path: &Path<'_>) -> Result<(), ApiError> {
    not_blank(text, path)?;
    at_most(text, TEXT_MAX, path)
}

/// A button label: not blank (Telegram refuses an empty label).
pub fn label(text: &str, path: &Path<'_>) -> Result<(), ApiError> {
    not_blank(text, path)
}

/// An `on_click.mark`, the prefix of a clicked button's label: not blank,
/// at most [`MARK_MAX`].
pub fn mark(text: &str, path: &Path<'_>) -> Result<(), ApiError> {
    not_blank(text, path)?;
    at_most(text, MARK_MAX, path)
}

/// `input_field_placeholder`: at most [`PLACEHOLDER_MAX`].
pub fn placeholder(text: &str, path: &Path<'_>) -> Result<(), ApiError> {
    at_most(text, PLACEHOLDER_MAX, path)
}

/// A callback answer's text: at most [`ANSWER_TEXT_MAX`].
pub fn answer_text(text: &str, path: &Path<'_>) -> Result<(), ApiError> {
    at_most(text, ANSWER_TEXT_MAX, path)
}

/// An inline query a button switches to: at most [`INLINE_QUERY_MAX`]
/// (empty is allowed: it inserts only the bot's username).
pub fn inline_query(text: &str, path: &Path<'_>) -> Result<(), ApiError> {
    at_most(text, INLINE_QUERY_MAX, path)
}

/// `copy_text`: 1–[`COPY_TEXT_MAX`].
pub fn copy_text(text: &str, path: &Path<'_>) -> Result<(), ApiError> {
    if text.is_empty() {
        return Err(path.broken("must not be empty"));
    }
    at_most(text, COPY_TEXT_MAX, path)
}

/// `callback_data`: 1–[`CALLBACK_DATA_MAX`] bytes (of UTF-8).
pub fn callback_data(data: &str, path: &Path<'_>) -> Result<(), ApiError> {
    match data.len() {
        0 => Err(path.broken("must be 1–64 bytes long, got an empty string")),
        len if len > CALLBACK_DATA_MAX => Err(path.broken(format_args!(
            "must be 1–{CALLBACK_DATA_MAX} bytes long, got {len} bytes"
        ))),
        _ => Ok(()),
    }
}

/// A button URL: absolute `http`/`https` with a host, or a `tg://` link.
/// The URL is sent as written, so it must not contain whitespace (which the
/// URL parser would quietly strip or escape).
pub fn url(text: &str, path: &Path<'_>) -> Result<(), ApiError> {
    const RULE: &str = "must be an absolute http(s) URL with a host, or a tg:// link";
    url_of(text, path, &["http", "https", "tg"], RULE)
}

/// A callback answer's `url`: Telegram opens only a link that starts a bot
/// with a parameter here, `https://t.me/<bot username>?start=<parameter>`
/// (or a game's URL, which needs a game button, and telegate sends none).
/// The bot's own username is Telegram's to check: an answer it refuses is
/// sent again without the `url` (see `callbacks`).
pub fn answer_url(text: &str, path: &Path<'_>) -> Result<(), ApiError> {
    const RULE: &str = "must be a link that opens a bot with a start parameter, \
                        `https://t.me/<bot username>?start=<parameter>` (Telegram opens no \
                        other URL from a callback answer)";
    url_of(text, path, &["http", "https"], RULE)?;
    let parsed =
        url::Url::parse(text).map_err(|err| path.broken(format_args!("{RULE} ({err})")))?;
    let host = parsed.host_str().unwrap_or_default();
    if !["t.me", "telegram.me", "telegram.dog"].contains(&host) {
        return Err(path.broken(format_args!("{RULE}; `{host}` is not t.me")));
    }
    let username = parsed.path().strip_prefix('/').unwrap_or_default();
    if !is_bot_username(username) {
        return Err(path.broken(format_args!(
            "{RULE}; `{username}` is not a bot username (5–32 letters, digits or `_`, \
             ending in `bot`)"
        )));
    }
    let pairs: Vec<_> = parsed.query_pairs().collect();
    let start_ok = match pairs.as_slice() {
        [(key, value)] => key == "start" && is_start_parameter(value),
        _ => false,
    };
    if !start_ok || parsed.fragment().is_some() {
        return Err(path.broken(format_args!(
            "{RULE}; the query must be exactly `start=` and 1–64 letters, digits, `_` or `-`"
        )));
    }
    Ok(())
}

/// A bot's username: 5–32 of `[A-Za-z0-9_]`, starting with a letter, ending
/// in `bot`.
fn is_bot_username(name: &str) -> bool {
    (5..=32).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && name.to_ascii_lowercase().ends_with("bot")
}

/// A `start` parameter: 1–64 of `[A-Za-z0-9_-]`.
fn is_start_parameter(value: &str) -> bool {
    (1..=64).contains(&value.len())
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// A URL Telegram fetches (media by URL): absolute `http`/`https` with a
/// host, written without whitespace.
pub fn http_url(text: &str, path: &Path<'_>) -> Result<(), ApiError> {
    const RULE: &str = "must be an absolute http(s) URL with a host";
    url_of(text, path, &["http", "https"], RULE)
}

/// `text` as an absolute URL of one of `schemes`, written with its `//host`
/// (`http` and `https` ones need a non-empty host); `rule` says so.
fn url_of(text: &str, path: &Path<'_>, schemes: &[&str], rule: &str) -> Result<(), ApiError> {
    if text.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(path.broken(format_args!("{rule}; it must not contain whitespace")));
    }
    let parsed =
        url::Url::parse(text).map_err(|err| path.broken(format_args!("{rule} ({err})")))?;
    // The URL parser forgives `https:example.com` and `http:///host`; the
    // URL is sent as written, so the written form must have its `//host`.
    let scheme = parsed.scheme();
    let written_host = text
        .get(scheme.len()..)
        .and_then(|rest| rest.strip_prefix("://"))
        .is_some_and(|rest| !rest.is_empty() && !rest.starts_with(['/', '\\']));
    let ok = written_host
        && schemes.contains(&scheme)
        && match scheme {
            "http" | "https" => parsed.host_str().is_some_and(|host| !host.is_empty()),
            _ => true,
        };
    if ok { Ok(()) } else { Err(path.broken(rule)) }
}

/// The number of buttons of one message: 1–[`BUTTONS_MAX`] in all. `what`
/// names the things counted, as the client wrote them ("buttons", "rows").
pub fn button_count(count: usize, what: &str, path: &Path<'_>) -> Result<(), ApiError> {
    if (1..=BUTTONS_MAX).contains(&count) {
        Ok(())
    } else {
        Err(path.broken(format_args!(
            "must hold 1–{BUTTONS_MAX} {what} in all, got {count}"
        )))
    }
}

/// A row of buttons: not empty.
pub fn row_len(len: usize, path: &Path<'_>) -> Result<(), ApiError> {
    if len == 0 {
        Err(path.broken("is an empty row; every row needs at least one button"))
    } else {
        Ok(())
    }
}

/// The callback data seen so far in one keyboard. Each callback button needs
/// its own: a click is told apart only by its data, and so is the `answer`
/// telegate gives for it. Holds up to [`BUTTONS_MAX`] without allocating;
/// callers check the button count first, so no keyboard has more.
#[derive(Debug, Default)]
pub struct DistinctData<'v> {
    seen: [&'v str; BUTTONS_MAX],
    len: usize,
}

impl<'v> DistinctData<'v> {
    /// Code 5 if another button of the keyboard already has `data`.
    pub fn check(&mut self, data: &'v str, path: &Path<'_>) -> Result<(), ApiError> {
        if self.seen[..self.len].contains(&data) {
            return Err(path.broken(format_args!(
                "repeats `{data}`, the callback data of an earlier button; each button needs its own so that clicks can be told apart"
            )));
        }
        if let Some(slot) = self.seen.get_mut(self.len) {
            *slot = data;
            self.len += 1;
        }
        Ok(())
    }
}

/// Fields that only mean anything when `true` (`force_reply`, `remove_keyboard`).
pub fn must_be_true(value: bool, path: &Path<'_>) -> Result<(), ApiError> {
    if value {
        Ok(())
    } else {
        Err(path.broken("must be true"))
    }
}

/// Any text that must say something: not empty, not only whitespace.
pub fn not_blank(text: &str, path: &Path<'_>) -> Result<(), ApiError> {
    if text.trim().is_empty() {
        Err(path.broken("must not be empty or only whitespace"))
    } else {
        Ok(())
    }
}

fn at_most(text: &str, max: usize, path: &Path<'_>) -> Result<(), ApiError> {
    // Cheap bound first: UTF-16 units never exceed UTF-8 bytes.
    if text.len() <= max {
        return Ok(());
    }
    match utf16_len(text) {
        len if len > max => Err(path.broken(format_args!(
            "is {len} characters long (UTF-16 code units, as Telegram counts); at most {max} are allowed"
        ))),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorCode;

    fn check(rule: fn(&str, &Path<'_>) -> Result<(), ApiError>, text: &str) -> bool {
        let path = Path::root("f");
        match rule(text, &path) {
            Ok(()) => true,
            Err(err) => {
                assert_eq!(err.code, ErrorCode::Rejected);
                assert!(err.message.starts_with("`f` "), "{}", err.message);
                false
            }
        }
    }

    #[test]
    fn counts_utf16_code_units() {
        assert_eq!(utf16_len("abc"), 3);
        assert_eq!(utf16_len("é"), 1);
        assert_eq!(utf16_len("😀"), 2);
        assert_eq!(utf16_len(""), 0);
    }

    #[test]
    fn text_limit_counts_astral_characters_twice() {
        let fits = "😀".repeat(TEXT_MAX / 2);
        assert!(check(message_text, &fits));
        let over = format!("{fits}a");
        assert!(!check(message_text, &over));
        assert!(check(message_text, &"a".repeat(TEXT_MAX)));
        assert!(!check(message_text, &"a".repeat(TEXT_MAX + 1)));
        assert!(!check(message_text, ""));
        assert!(!check(message_text, " \n\t"));
    }

    #[test]
    fn urls() {
        for good in [
            "https://example.com/orders/1234",
            "http://example.com",
            "https://例え.jp/x",
            "tg://resolve?domain=telegram",
            "TG://user?id=1",
        ] {
            assert!(check(url, good), "{good} refused");
        }
        for bad in [
            "",
            "example.com",
            "/orders/1",
            "ftp://example.com",
            "mailto:a@example.com",
            "https://",
            "http:///path",
            "https:example.com",
            "https:/example.com",
            "https:\\\\example.com",
            "tg://",
            "tg:resolve",
            "tg:/é/x",
            "https://example.com/a b",
            " https://example.com",
            "javascript:alert(1)",
        ] {
            assert!(!check(url, bad), "{bad} accepted");
        }
    }

    #[test]
    fn answer_urls_only_start_a_bot() {
        for good in [
            "https://t.me/telegate_sandbox_bot?start=up",
            "http://telegram.me/SomeBot?start=a-b_C9",
        ] {
            assert!(check(answer_url, good), "{good} refused");
        }
        for bad in [
            "https://example.com/t",
            "tg://resolve?domain=some_bot&start=x",
            "https://t.me/some_bot",
            "https://t.me/some_bot?start=",
            "https://t.me/some_bot?start=a&x=1",
            "https://t.me/some_bot?start=a b",
            "https://t.me/some_bot?start=a#frag",
            "https://t.me/some_user?start=x",
            "https://t.me/bot?start=x",
            "https://t.me/a/some_bot?start=x",
            "https://t.me.example.com/some_bot?start=x",
        ] {
            assert!(!check(answer_url, bad), "{bad} accepted");
        }
        let long = format!("https://t.me/some_bot?start={}", "a".repeat(65));
        assert!(!check(answer_url, &long));
    }

    #[test]
    fn media_urls_are_http_only() {
        assert!(check(http_url, "https://cdn.example.com/a.jpg"));
        assert!(check(http_url, "http://127.0.0.1:8080/a.gif?x=1"));
        for bad in [
            "tg://resolve?domain=x",
            "ftp://example.com/a.jpg",
            "https:example.com",
            "a.jpg",
        ] {
            assert!(!check(http_url, bad), "{bad} accepted");
        }
    }

    #[test]
    fn callback_data_is_counted_in_bytes() {
        assert!(check(callback_data, "a"));
        assert!(check(callback_data, &"a".repeat(64)));
        assert!(!check(callback_data, &"a".repeat(65)));
        assert!(!check(callback_data, ""));
        // 22 three-byte characters: 22 UTF-16 units but 66 bytes.
        assert!(!check(callback_data, &"€".repeat(22)));
    }

    #[test]
    fn counts_and_flags() {
        let path = Path::root("k");
        assert!(button_count(0, "buttons", &path).is_err());
        assert!(button_count(1, "buttons", &path).is_ok());
        assert!(button_count(6, "buttons", &path).is_ok());
        assert!(button_count(7, "buttons", &path).is_err());
        assert!(row_len(0, &path).is_err());
        assert!(must_be_true(false, &path).is_err());
        assert!(must_be_true(true, &path).is_ok());
        let mut distinct = DistinctData::default();
        assert!(distinct.check("a", &path).is_ok());
        assert!(distinct.check("b", &path).is_ok());
        assert!(distinct.check("a", &path).is_err());
    }
}
