//! `on_click`: what a callback button does to its own message once it is
//! clicked, declared with the button so that the commonest follow-ups of a
//! click need no consumer round trip.
//!
//! `{"remove_keyboard": true}` takes the keyboard away, `{"replace_keyboard":
//! [[...]]}` puts another inline keyboard in its place, `{"edit_text": "..."}`
//! changes the text (plain text), `{"mark": "✓ "}` prefixes the clicked
//! button's label, and `{"once": true}` lets only the first click of the
//! button count: later ones are answered `answer_after_first` (or "already
//! answered") and change nothing. What a click then does to the message is
//! worked out by [`crate::after_click`].

use serde::{Deserialize, Serialize};

use super::answer::CallbackAnswer;
use super::inline::InlineButton;
use super::json::{Json, Object};
use super::markup::read_grid;
use super::path::Path;
use super::rules::{self, DistinctData};
use crate::error::ApiError;

/// A callback button's `on_click`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct OnClick {
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    remove_keyboard: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    replace_keyboard: Option<Vec<Vec<InlineButton>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    edit_text: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    mark: Option<String>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    once: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    answer_after_first: Option<CallbackAnswer>,
}

/// Why `on_click` is refused outside `POST /api/v1/telegram/interactive`.
pub const ON_CLICK_ONLY: &str = "is only taken on the buttons of `POST /api/v1/telegram/interactive`: \
     clicks are answered and followed up from the interactive message as first sent";

/// The answer of a click that does not count (`once`) when the button
/// gives no `answer_after_first`.
pub const ALREADY_ANSWERED: &str = "already answered";

impl OnClick {
    const FIELDS: &[&str] = &[
        "remove_keyboard",
        "replace_keyboard",
        "edit_text",
        "mark",
        "once",
        "answer_after_first",
    ];

    /// Reads and checks an `on_click` object at `path`.
    pub(crate) fn from_value(value: Json<'_>, path: &Path<'_>) -> Result<Self, ApiError> {
        let object = Object::new(value, path, Self::FIELDS)?;
        let remove_keyboard = match object.get("remove_keyboard") {
            Some(_) => {
                let value = object.bool("remove_keyboard")?;
                rules::must_be_true(value, &object.path_of("remove_keyboard"))?;
                true
            }
            None => false,
        };
        let replace_keyboard = object
            .get("replace_keyboard")
            .map(|grid| {
                let path = object.path_of("replace_keyboard");
                let mut distinct = DistinctData::default();
                read_grid(grid, &path, |button, path| {
                    InlineButton::replacement(button, path, &mut distinct)
                })
            })
            .transpose()?;
        let edit_text = object.opt_str("edit_text")?;
        if let Some(text) = edit_text {
            rules::message_text(text, &object.path_of("edit_text"))?;
        }
        let mark = object.opt_str("mark")?;
        if let Some(mark) = mark {
            let mark_path = object.path_of("mark");
            rules::mark(mark, &mark_path)?;
        }
        let once = match object.get("once") {
            Some(_) => {
                let value = object.bool("once")?;
                rules::must_be_true(value, &object.path_of("once"))?;
                true
            }
            None => false,
        };
        let answer_after_first = object
            .get("answer_after_first")
            .map(|answer| {
                let answer_path = object.path_of("answer_after_first");
                if !once {
                    return Err(answer_path
                        .broken("needs `\"once\": true`: it answers the clicks after the first"));
                }
                CallbackAnswer::from_value(answer, &answer_path)
            })
            .transpose()?;
        let keyboard_fields = [
            ("remove_keyboard", remove_keyboard),
            ("replace_keyboard", replace_keyboard.is_some()),
            ("mark", mark.is_some()),
        ];
        let given: Vec<&str> = keyboard_fields
            .iter()
            .filter(|(_, given)| *given)
            .map(|(name, _)| *name)
            .collect();
        if let [first, second, ..] = given[..] {
            return Err(object.path_of(second).broken(format_args!(
                "cannot be given with `{first}`: a click does one thing to the keyboard"
            )));
        }
        if !(remove_keyboard
            || replace_keyboard.is_some()
            || edit_text.is_some()
            || mark.is_some()
            || once)
        {
            return Err(path.broken(
                "must do something: give `remove_keyboard`, `replace_keyboard`, `edit_text`, `mark` or `once`",
            ));
        }
        Ok(OnClick {
            remove_keyboard,
            replace_keyboard,
            edit_text: edit_text.map(str::to_owned),
            mark: mark.map(str::to_owned),
            once,
            answer_after_first,
        })
    }

    /// `remove_keyboard`: the click takes the keyboard away.
    pub fn removes_keyboard(&self) -> bool {
        self.remove_keyboard
    }

    /// `replace_keyboard`: the rows put in the keyboard's place.
    pub fn replacement(&self) -> Option<&[Vec<InlineButton>]> {
        self.replace_keyboard.as_deref()
    }

    /// `edit_text`: the message's new (plain) text.
    pub fn edit_text(&self) -> Option<&str> {
        self.edit_text.as_deref()
    }

    /// `mark`: the prefix of the clicked button's label.
    pub fn mark(&self) -> Option<&str> {
        self.mark.as_deref()
    }

    /// `once`: only the button's first click counts.
    pub fn once(&self) -> bool {
        self.once
    }

    /// What a click after the first is answered (with `once`).
    pub fn answer_after_first(&self) -> CallbackAnswer {
        self.answer_after_first
            .clone()
            .unwrap_or_else(|| CallbackAnswer::with_text(ALREADY_ANSWERED))
    }

    /// Whether a counted click changes the message (not only `once`).
    pub fn edits(&self) -> bool {
        self.remove_keyboard
            || self.replace_keyboard.is_some()
            || self.edit_text.is_some()
            || self.mark.is_some()
    }
}
