//! Reply markups: Telegram's checks on what a bot attaches, and the JSON
//! view of a keyboard that the control API shows as the user would see it.

use grammers_tl_types as tl;
use grammers_tl_types::Serializable;
use serde_json::{Value, json};

pub use crate::telegram::tl_name;

/// Telegram's cap on buttons in one markup.
const MAX_BUTTONS: usize = 100;
/// Telegram's cap on buttons in one row.
const MAX_ROW: usize = 8;
/// A markup bigger than this (serialized) is refused as too long.
const MAX_MARKUP_BYTES: usize = 10 * 1024;
const MAX_CALLBACK_DATA: usize = 64;
const MAX_PLACEHOLDER: usize = 64;

/// Checks a markup as Telegram does; the error is Telegram's name for it.
pub fn validate(markup: &tl::enums::ReplyMarkup) -> Result<(), &'static str> {
    if markup.to_bytes().len() > MAX_MARKUP_BYTES {
        return Err("REPLY_MARKUP_TOO_LONG");
    }
    match markup {
        tl::enums::ReplyMarkup::ReplyInlineMarkup(inline) => {
            let rows: Vec<Vec<&tl::types::KeyboardInlineButton>> = inline
                .rows
                .iter()
                .map(|tl::enums::KeyboardInlineButtonRow::Row(row)| {
                    row.buttons
                        .iter()
                        .map(|tl::enums::KeyboardInlineButton::Button(b)| b)
                        .collect()
                })
                .collect();
            check_shape(rows.iter().map(Vec::len))?;
            rows.iter().flatten().try_for_each(|b| check_inline(b))
        }
        tl::enums::ReplyMarkup::ReplyKeyboardMarkup(keyboard) => {
            if keyboard.rows.is_empty() {
                return Err("REPLY_MARKUP_INVALID");
            }
            check_placeholder(keyboard.placeholder.as_deref())?;
            let buttons: Vec<Vec<&tl::types::KeyboardButton>> = keyboard
                .rows
                .iter()
                .map(|tl::enums::KeyboardButtonRow::Row(row)| {
                    row.buttons
                        .iter()
                        .map(|tl::enums::KeyboardButton::Button(b)| b)
                        .collect()
                })
                .collect();
            check_shape(buttons.iter().map(Vec::len))?;
            buttons
                .iter()
                .flatten()
                .try_for_each(|b| check_text(&b.text))
        }
        tl::enums::ReplyMarkup::ReplyKeyboardForceReply(force) => {
            check_placeholder(force.placeholder.as_deref())
        }
        tl::enums::ReplyMarkup::ReplyKeyboardHide(_) => Ok(()),
    }
}

fn check_shape(rows: impl Iterator<Item = usize>) -> Result<(), &'static str> {
    let mut total = 0;
    for len in rows {
        if len == 0 || len > MAX_ROW {
            return Err("REPLY_MARKUP_INVALID");
        }
        total += len;
    }
    if total > MAX_BUTTONS {
        return Err("REPLY_MARKUP_TOO_LONG");
    }
    Ok(())
}

fn check_text(text: &str) -> Result<(), &'static str> {
    if text.trim().is_empty() {
        Err("BUTTON_TEXT_INVALID")
    } else {
        Ok(())
    }
}

fn check_placeholder(placeholder: Option<&str>) -> Result<(), &'static str> {
    match placeholder {
        Some(text) if text.chars().count() > MAX_PLACEHOLDER => Err("REPLY_MARKUP_INVALID"),
        _ => Ok(()),
    }
}

fn check_inline(button: &tl::types::KeyboardInlineButton) -> Result<(), &'static str> {
    check_text(&button.text)?;
    match &button.r#type {
        tl::enums::InlineButtonType::Callback(callback)
            if callback.data.is_empty() || callback.data.len() > MAX_CALLBACK_DATA =>
        {
            Err("BUTTON_DATA_INVALID")
        }
        tl::enums::InlineButtonType::Url(url) => check_url(&url.url),
        tl::enums::InlineButtonType::WebView(view) => check_url(&view.url),
        tl::enums::InlineButtonType::Copy(copy)
            if copy.copy_text.is_empty() || copy.copy_text.chars().count() > 256 =>
        {
            Err("BUTTON_COPY_TEXT_INVALID")
        }
        _ => Ok(()),
    }
}

/// A button URL must be http(s) with a host, or a `tg://` link.
fn check_url(text: &str) -> Result<(), &'static str> {
    let url = url::Url::parse(text).map_err(|_| "BUTTON_URL_INVALID")?;
    match url.scheme() {
        "http" | "https" if url.host_str().is_some_and(|h| !h.is_empty()) => Ok(()),
        "tg" => Ok(()),
        _ => Err("BUTTON_URL_INVALID"),
    }
}

/// The callback data of the inline button carrying exactly `data`, if any.
pub fn has_callback(markup: &tl::enums::ReplyMarkup, data: &[u8]) -> bool {
    let tl::enums::ReplyMarkup::ReplyInlineMarkup(inline) = markup else {
        return false;
    };
    inline
        .rows
        .iter()
        .flat_map(|tl::enums::KeyboardInlineButtonRow::Row(row)| &row.buttons)
        .any(|tl::enums::KeyboardInlineButton::Button(b)| {
            matches!(&b.r#type, tl::enums::InlineButtonType::Callback(c) if c.data == data)
        })
}

/// The reply-keyboard button labelled `text`, if `markup` has one.
pub fn keyboard_button<'a>(
    markup: &'a tl::enums::ReplyMarkup,
    text: &str,
) -> Option<&'a tl::enums::ButtonType> {
    let tl::enums::ReplyMarkup::ReplyKeyboardMarkup(keyboard) = markup else {
        return None;
    };
    keyboard
        .rows
        .iter()
        .flat_map(|tl::enums::KeyboardButtonRow::Row(row)| &row.buttons)
        .map(|tl::enums::KeyboardButton::Button(b)| b)
        .find(|b| b.text == text)
        .map(|b| &b.r#type)
}

/// A message entity as JSON: its TL `type`, `offset`, `length` and what
/// else it carries (`url`, `user_id`, `language`).
pub fn entity_json(entity: &tl::enums::MessageEntity) -> Value {
    use tl::enums::MessageEntity as E;
    let (offset, length, extra) = match entity {
        E::Bold(e) => (e.offset, e.length, json!({})),
        E::Italic(e) => (e.offset, e.length, json!({})),
        E::Underline(e) => (e.offset, e.length, json!({})),
        E::Strike(e) => (e.offset, e.length, json!({})),
        E::Spoiler(e) => (e.offset, e.length, json!({})),
        E::Code(e) => (e.offset, e.length, json!({})),
        E::Pre(e) => (e.offset, e.length, json!({"language": e.language})),
        E::TextUrl(e) => (e.offset, e.length, json!({"url": e.url})),
        E::Url(e) => (e.offset, e.length, json!({})),
        E::Mention(e) => (e.offset, e.length, json!({})),
        E::MentionName(e) => (e.offset, e.length, json!({"user_id": e.user_id})),
        E::BotCommand(e) => (e.offset, e.length, json!({})),
        E::Hashtag(e) => (e.offset, e.length, json!({})),
        E::Email(e) => (e.offset, e.length, json!({})),
        E::Phone(e) => (e.offset, e.length, json!({})),
        E::Blockquote(e) => (e.offset, e.length, json!({"collapsed": e.collapsed})),
        other => return json!({"type": tl_name(other)}),
    };
    let mut value = json!({"type": tl_name(entity), "offset": offset, "length": length});
    if let (Some(map), Value::Object(extra)) = (value.as_object_mut(), extra) {
        map.extend(extra);
    }
    value
}

/// The markup as JSON: `kind`, and `rows` of buttons with `type` and data.
pub fn to_json(markup: &tl::enums::ReplyMarkup) -> Value {
    match markup {
        tl::enums::ReplyMarkup::ReplyInlineMarkup(inline) => json!({
            "kind": "inline_keyboard",
            "rows": inline.rows.iter().map(|tl::enums::KeyboardInlineButtonRow::Row(row)| {
                row.buttons.iter().map(|tl::enums::KeyboardInlineButton::Button(b)| inline_button(b)).collect::<Vec<_>>()
            }).collect::<Vec<_>>(),
        }),
        tl::enums::ReplyMarkup::ReplyKeyboardMarkup(keyboard) => json!({
            "kind": "reply_keyboard",
            "rows": keyboard.rows.iter().map(|tl::enums::KeyboardButtonRow::Row(row)| {
                row.buttons.iter().map(|tl::enums::KeyboardButton::Button(b)| keyboard_button_json(b)).collect::<Vec<_>>()
            }).collect::<Vec<_>>(),
            "single_use": keyboard.single_use,
            "resize": keyboard.resize,
            "persistent": keyboard.persistent,
            "selective": keyboard.selective,
            "placeholder": keyboard.placeholder,
        }),
        tl::enums::ReplyMarkup::ReplyKeyboardHide(hide) => json!({
            "kind": "remove_keyboard",
            "selective": hide.selective,
        }),
        tl::enums::ReplyMarkup::ReplyKeyboardForceReply(force) => json!({
            "kind": "force_reply",
            "single_use": force.single_use,
            "selective": force.selective,
            "placeholder": force.placeholder,
        }),
    }
}

fn inline_button(button: &tl::types::KeyboardInlineButton) -> Value {
    let text = &button.text;
    match &button.r#type {
        tl::enums::InlineButtonType::Callback(c) => json!({
            "text": text,
            "type": "callback",
            "data": String::from_utf8_lossy(&c.data),
        }),
        tl::enums::InlineButtonType::Url(u) => json!({"text": text, "type": "url", "url": u.url}),
        tl::enums::InlineButtonType::SwitchInline(s) => json!({
            "text": text,
            "type": "switch_inline",
            "query": s.query,
            "same_peer": s.same_peer,
        }),
        tl::enums::InlineButtonType::Copy(c) => {
            json!({"text": text, "type": "copy", "copy_text": c.copy_text})
        }
        tl::enums::InlineButtonType::WebView(w) => {
            json!({"text": text, "type": "web_view", "url": w.url})
        }
        other => json!({"text": text, "type": tl_name(other)}),
    }
}

fn keyboard_button_json(button: &tl::types::KeyboardButton) -> Value {
    let kind = match &button.r#type {
        tl::enums::ButtonType::Default => "text",
        tl::enums::ButtonType::RequestPhone => "request_contact",
        tl::enums::ButtonType::RequestGeoLocation => "request_location",
        tl::enums::ButtonType::RequestPoll(_) => "request_poll",
        _ => "other",
    };
    json!({"text": button.text, "type": kind})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inline(buttons: Vec<Vec<tl::enums::InlineButtonType>>) -> tl::enums::ReplyMarkup {
        tl::types::ReplyInlineMarkup {
            force_reply: false,
            rows: buttons
                .into_iter()
                .map(|row| {
                    tl::types::KeyboardInlineButtonRow {
                        buttons: row
                            .into_iter()
                            .map(|r#type| {
                                tl::types::KeyboardInlineButton {
                                    style: None,
                                    text: "b".into(),
                                    r#type,
                                }
                                .into()
                            })
                            .collect(),
                    }
                    .into()
                })
                .collect(),
        }
        .into()
    }

    fn callback(data: &[u8]) -> tl::enums::InlineButtonType {
        tl::types::InlineButtonTypeCallback {
            requires_password: false,
            data: data.to_vec(),
        }
        .into()
    }

    fn url(url: &str) -> tl::enums::InlineButtonType {
        tl::types::InlineButtonTypeUrl { url: url.into() }.into()
    }

    #[test]
    fn callback_data_must_be_1_to_64_bytes() {
        assert_eq!(validate(&inline(vec![vec![callback(&[7; 64])]])), Ok(()));
        assert_eq!(
            validate(&inline(vec![vec![callback(&[7; 65])]])),
            Err("BUTTON_DATA_INVALID")
        );
        assert_eq!(
            validate(&inline(vec![vec![callback(b"")]])),
            Err("BUTTON_DATA_INVALID")
        );
    }

    #[test]
    fn urls_must_be_http_with_host_or_tg() {
        for good in [
            "https://example.com/x",
            "http://a.b",
            "tg://resolve?domain=x",
        ] {
            assert_eq!(validate(&inline(vec![vec![url(good)]])), Ok(()), "{good}");
        }
        for bad in [
            "example.com",
            "ftp://example.com",
            "javascript:alert(1)",
            "https://",
        ] {
            assert_eq!(
                validate(&inline(vec![vec![url(bad)]])),
                Err("BUTTON_URL_INVALID"),
                "{bad}"
            );
        }
    }

    #[test]
    fn shape_rules() {
        assert_eq!(validate(&inline(vec![vec![]])), Err("REPLY_MARKUP_INVALID"));
        let row = || (0..8).map(|_| callback(b"x")).collect::<Vec<_>>();
        assert_eq!(validate(&inline((0..12).map(|_| row()).collect())), Ok(()));
        assert_eq!(
            validate(&inline((0..13).map(|_| row()).collect())),
            Err("REPLY_MARKUP_TOO_LONG")
        );
        let mut wide = row();
        wide.push(callback(b"x"));
        assert_eq!(validate(&inline(vec![wide])), Err("REPLY_MARKUP_INVALID"));
    }

    #[test]
    fn json_view_names_button_types() {
        let markup = inline(vec![vec![callback(b"yes"), url("https://e.com")]]);
        let view = to_json(&markup);
        assert_eq!(view["kind"], "inline_keyboard");
        assert_eq!(view["rows"][0][0]["type"], "callback");
        assert_eq!(view["rows"][0][0]["data"], "yes");
        assert_eq!(view["rows"][0][1]["url"], "https://e.com");
        assert!(has_callback(&markup, b"yes"));
        assert!(!has_callback(&markup, b"no"));
    }
}
