//! A readable rendering of a `ReplyMarkup` constructor tree.
//!
//! What telegate sends is TL, not JSON; `telegate validate` and logs show the
//! constructors by their TL names (`replyInlineMarkup`, `keyboardInlineButton`,
//! `inlineButtonTypeUrl`, ...) so that what a person reads is what Telegram
//! receives, one constructor per line, indented by depth.

use std::fmt::{self, Display, Formatter};

use grammers_tl_types as tl;

/// Displays a reply markup as an indented constructor tree.
pub struct Summary<'a>(pub &'a tl::enums::ReplyMarkup);

impl Display for Summary<'_> {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        use tl::enums::ReplyMarkup as RM;
        match self.0 {
            RM::ReplyInlineMarkup(markup) => {
                f.write_str("replyInlineMarkup")?;
                flag(f, "force_reply", markup.force_reply)?;
                for row in &markup.rows {
                    let tl::enums::KeyboardInlineButtonRow::Row(row) = row;
                    f.write_str("\n  keyboardInlineButtonRow")?;
                    for button in &row.buttons {
                        let tl::enums::KeyboardInlineButton::Button(button) = button;
                        write!(f, "\n    keyboardInlineButton text={:?} ", button.text)?;
                        inline_type(f, &button.r#type)?;
                    }
                }
                Ok(())
            }
            RM::ReplyKeyboardMarkup(markup) => {
                f.write_str("replyKeyboardMarkup")?;
                flag(f, "resize", markup.resize)?;
                flag(f, "single_use", markup.single_use)?;
                flag(f, "selective", markup.selective)?;
                flag(f, "persistent", markup.persistent)?;
                placeholder(f, markup.placeholder.as_deref())?;
                for row in &markup.rows {
                    let tl::enums::KeyboardButtonRow::Row(row) = row;
                    f.write_str("\n  keyboardButtonRow")?;
                    for button in &row.buttons {
                        let tl::enums::KeyboardButton::Button(button) = button;
                        write!(f, "\n    keyboardButton text={:?} ", button.text)?;
                        key_type(f, &button.r#type)?;
                    }
                }
                Ok(())
            }
            RM::ReplyKeyboardHide(hide) => {
                f.write_str("replyKeyboardHide")?;
                flag(f, "selective", hide.selective)
            }
            RM::ReplyKeyboardForceReply(force) => {
                f.write_str("replyKeyboardForceReply")?;
                flag(f, "single_use", force.single_use)?;
                flag(f, "selective", force.selective)?;
                placeholder(f, force.placeholder.as_deref())
            }
        }
    }
}

fn flag(f: &mut Formatter<'_>, name: &str, set: bool) -> fmt::Result {
    if set { write!(f, " {name}") } else { Ok(()) }
}

fn placeholder(f: &mut Formatter<'_>, placeholder: Option<&str>) -> fmt::Result {
    match placeholder {
        Some(text) => write!(f, " placeholder={text:?}"),
        None => Ok(()),
    }
}

fn inline_type(f: &mut Formatter<'_>, r#type: &tl::enums::InlineButtonType) -> fmt::Result {
    use tl::enums::InlineButtonType as T;
    match r#type {
        T::Url(url) => write!(f, "inlineButtonTypeUrl url={:?}", url.url),
        T::Callback(callback) => write!(
            f,
            "inlineButtonTypeCallback data={:?}",
            String::from_utf8_lossy(&callback.data)
        ),
        T::SwitchInline(switch) => {
            f.write_str("inlineButtonTypeSwitchInline")?;
            flag(f, "same_peer", switch.same_peer)?;
            write!(f, " query={:?}", switch.query)
        }
        T::Copy(copy) => write!(f, "inlineButtonTypeCopy copy_text={:?}", copy.copy_text),
        other => write!(f, "{other:?}"),
    }
}

fn key_type(f: &mut Formatter<'_>, r#type: &tl::enums::ButtonType) -> fmt::Result {
    use tl::enums::ButtonType as T;
    match r#type {
        T::Default => f.write_str("buttonTypeDefault"),
        T::RequestPhone => f.write_str("buttonTypeRequestPhone"),
        T::RequestGeoLocation => f.write_str("buttonTypeRequestGeoLocation"),
        T::RequestPoll(poll) => match poll.quiz {
            None => f.write_str("buttonTypeRequestPoll"),
            Some(quiz) => write!(f, "buttonTypeRequestPoll quiz={quiz}"),
        },
        other => write!(f, "{other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_constructor_names_and_values() {
        let markup: tl::enums::ReplyMarkup = tl::types::ReplyInlineMarkup {
            force_reply: false,
            rows: vec![
                tl::types::KeyboardInlineButtonRow {
                    buttons: vec![
                        tl::types::KeyboardInlineButton {
                            style: None,
                            text: "Track".into(),
                            r#type: tl::types::InlineButtonTypeUrl {
                                url: "https://example.com".into(),
                            }
                            .into(),
                        }
                        .into(),
                    ],
                }
                .into(),
            ],
        }
        .into();
        assert_eq!(
            Summary(&markup).to_string(),
            "replyInlineMarkup\n  keyboardInlineButtonRow\n    keyboardInlineButton text=\"Track\" inlineButtonTypeUrl url=\"https://example.com\""
        );
        let hide: tl::enums::ReplyMarkup = tl::types::ReplyKeyboardHide { selective: true }.into();
        assert_eq!(Summary(&hide).to_string(), "replyKeyboardHide selective");
    }
}
