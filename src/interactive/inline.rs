//! Inline keyboards (`reply_buttons`): buttons under the message.
//!
//! Each button does exactly one thing: open a `url`, send `callback_data` to
//! the bot, start an inline query here (`switch_inline_query_current_chat`)
//! or in another chat (`switch_inline_query`), or copy text (`copy_text`).
//! Field names are the Bot API's, so existing clients port unchanged; they
//! become `replyInlineMarkup` of `keyboardInlineButton`.

use grammers_tl_types as tl;
use serde::{Deserialize, Serialize};

use super::answer::CallbackAnswer;
use super::json::{Json, Object};
use super::markup::read_grid;
use super::on_click::OnClick;
use super::path::Path;
use super::rules::{self, DistinctData};
use crate::error::ApiError;

/// The `reply_markup` of a `reply_buttons` message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InlineKeyboard {
    inline_keyboard: Vec<Vec<InlineButton>>,
}

/// One inline button: a label and its action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InlineButton {
    text: String,
    #[serde(flatten)]
    action: InlineAction,
}

/// What an inline button does; serialized as the one Bot API field naming it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum InlineAction {
    /// Opens a URL (http(s) or `tg://`).
    Url { url: String },
    /// Sends `callback_data` to the bot; telegate answers the click with
    /// `answer` when no consumer does in time.
    Callback {
        callback_data: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        answer: Option<CallbackAnswer>,
        /// What the click does to the message (see [`OnClick`]).
        #[serde(skip_serializing_if = "Option::is_none")]
        on_click: Option<Box<OnClick>>,
    },
    /// Puts `@bot query` into this chat's input field.
    SwitchInlineQueryCurrentChat {
        switch_inline_query_current_chat: String,
    },
    /// Lets the user pick a chat, then puts `@bot query` there.
    SwitchInlineQuery { switch_inline_query: String },
    /// Copies a text to the clipboard.
    CopyText { copy_text: CopyText },
}

/// The Bot API's `CopyTextButton`: `{"text": "..."}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CopyText {
    text: String,
}

/// The fields naming an inline button's action; exactly one must be given.
const ACTIONS: &[&str] = &[
    "url",
    "callback_data",
    "switch_inline_query_current_chat",
    "switch_inline_query",
    "copy_text",
];

impl InlineKeyboard {
    const FIELDS: &[&str] = &["inline_keyboard"];

    /// Reads and checks a `reply_buttons` `reply_markup` at `path`.
    pub(crate) fn from_value(value: Json<'_>, path: &Path<'_>) -> Result<Self, ApiError> {
        let object = Object::new(value, path, Self::FIELDS)?;
        let grid = object.required("inline_keyboard")?;
        let mut distinct = DistinctData::default();
        let rows = read_grid(grid, &object.path_of("inline_keyboard"), |button, path| {
            InlineButton::from_value(button, path, &mut distinct, true)
        })?;
        Ok(InlineKeyboard {
            inline_keyboard: rows,
        })
    }

    /// A keyboard of already checked rows (the WhatsApp translation builds
    /// these and checks them against its own fields).
    pub(crate) fn from_rows(rows: Vec<Vec<InlineButton>>) -> Self {
        InlineKeyboard {
            inline_keyboard: rows,
        }
    }

    /// The rows of buttons, top to bottom.
    pub fn rows(&self) -> &[Vec<InlineButton>] {
        &self.inline_keyboard
    }

    /// The callback button whose data is `data`: one of this keyboard's,
    /// else one of a keyboard its buttons' `on_click` put in its place.
    pub fn callback_button(&self, data: &[u8]) -> Option<&InlineButton> {
        fn find<'k>(rows: &'k [Vec<InlineButton>], data: &[u8]) -> Option<&'k InlineButton> {
            rows.iter()
                .flatten()
                .find(|button| button.callback_data() == Some(data))
        }
        find(&self.inline_keyboard, data).or_else(|| {
            self.inline_keyboard
                .iter()
                .flatten()
                .filter_map(|button| button.on_click()?.replacement())
                .find_map(|rows| find(rows, data))
        })
    }

    /// Code 5 naming the first button with an `on_click`, in a keyboard at
    /// `path` where `on_click` means nothing (`where_not`: why).
    pub(crate) fn refuse_on_click(&self, path: &Path<'_>, where_not: &str) -> Result<(), ApiError> {
        for (r, row) in self.inline_keyboard.iter().enumerate() {
            for (c, button) in row.iter().enumerate() {
                if button.on_click().is_some() {
                    let grid = path.key("inline_keyboard");
                    let row_path = grid.index(r);
                    let button_path = row_path.index(c);
                    return Err(button_path.key("on_click").broken(where_not));
                }
            }
        }
        Ok(())
    }

    /// The same keyboard without any `on_click` (what an edit shows: only
    /// the message as first sent carries them).
    pub(crate) fn without_on_click(rows: Vec<Vec<InlineButton>>) -> Self {
        let rows = rows
            .into_iter()
            .map(|row| {
                row.into_iter()
                    .map(|mut button| {
                        if let InlineAction::Callback { on_click, .. } = &mut button.action {
                            *on_click = None;
                        }
                        button
                    })
                    .collect()
            })
            .collect();
        InlineKeyboard::from_rows(rows)
    }

    /// The `answer` of the callback button whose data is `data`.
    pub fn callback_answer(&self, data: &[u8]) -> Option<&CallbackAnswer> {
        match &self.callback_button(data)?.action {
            InlineAction::Callback { answer, .. } => answer.as_ref(),
            _ => None,
        }
    }

    /// `replyInlineMarkup`.
    pub fn to_tl(&self) -> tl::enums::ReplyMarkup {
        tl::types::ReplyInlineMarkup {
            force_reply: false,
            rows: self
                .inline_keyboard
                .iter()
                .map(|row| {
                    tl::types::KeyboardInlineButtonRow {
                        buttons: row.iter().map(InlineButton::to_tl).collect(),
                    }
                    .into()
                })
                .collect(),
        }
        .into()
    }
}

impl InlineButton {
    const FIELDS: &[&str] = &[
        "text",
        "url",
        "callback_data",
        "answer",
        "on_click",
        "switch_inline_query_current_chat",
        "switch_inline_query",
        "copy_text",
    ];

    /// A callback button whose data and label have been checked.
    pub(crate) fn callback(text: &str, data: &str) -> Self {
        InlineButton {
            text: text.to_owned(),
            action: InlineAction::Callback {
                callback_data: data.to_owned(),
                answer: None,
                on_click: None,
            },
        }
    }

    /// A button of an `on_click.replace_keyboard`: any inline button, but
    /// without an `on_click` of its own.
    pub(crate) fn replacement<'v>(
        value: Json<'v>,
        path: &Path<'_>,
        distinct: &mut DistinctData<'v>,
    ) -> Result<Self, ApiError> {
        Self::from_value(value, path, distinct, false)
    }

    fn from_value<'v>(
        value: Json<'v>,
        path: &Path<'_>,
        distinct: &mut DistinctData<'v>,
        on_click_allowed: bool,
    ) -> Result<Self, ApiError> {
        let object = Object::new(value, path, Self::FIELDS)?;
        let text = object.str("text")?;
        rules::label(text, &object.path_of("text"))?;
        let action = InlineAction::from_object(&object, distinct)?;
        for field in ["answer", "on_click"] {
            if object.has(field) && !matches!(action, InlineAction::Callback { .. }) {
                return Err(object
                    .path_of(field)
                    .broken("is only allowed on a button with callback_data"));
            }
        }
        if object.has("on_click") && !on_click_allowed {
            return Err(object.path_of("on_click").broken(
                "is not allowed on a button of `replace_keyboard`: only the message's own buttons carry `on_click`",
            ));
        }
        Ok(InlineButton {
            text: text.to_owned(),
            action,
        })
    }

    /// The same button with `mark` before its label (once: a label that
    /// already starts with it is kept).
    pub fn marked(&self, mark: &str) -> InlineButton {
        let text = if self.text.starts_with(mark) {
            self.text.clone()
        } else {
            format!("{mark}{}", self.text)
        };
        InlineButton {
            text,
            action: self.action.clone(),
        }
    }

    /// The `callback_data` of a callback button.
    pub fn callback_data(&self) -> Option<&[u8]> {
        match &self.action {
            InlineAction::Callback { callback_data, .. } => Some(callback_data.as_bytes()),
            _ => None,
        }
    }

    /// The `on_click` of a callback button.
    pub fn on_click(&self) -> Option<&OnClick> {
        match &self.action {
            InlineAction::Callback { on_click, .. } => on_click.as_deref(),
            _ => None,
        }
    }

    /// The label.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// What the button does.
    pub fn action(&self) -> &InlineAction {
        &self.action
    }

    fn to_tl(&self) -> tl::enums::KeyboardInlineButton {
        tl::types::KeyboardInlineButton {
            style: None,
            text: self.text.clone(),
            r#type: self.action.to_tl(),
        }
        .into()
    }
}

impl InlineAction {
    /// Reads the one action field of a button object.
    fn from_object<'v>(
        object: &Object<'v, '_>,
        distinct: &mut DistinctData<'v>,
    ) -> Result<Self, ApiError> {
        let mut given = ACTIONS.iter().copied().filter(|field| object.has(field));
        let (Some(field), None) = (given.next(), given.next()) else {
            let count = ACTIONS.iter().filter(|field| object.has(field)).count();
            return Err(object.path().broken(format_args!(
                "must have exactly one action field ({}), got {count}",
                ACTIONS.join(", ")
            )));
        };
        let path = object.path_of(field);
        let action = match field {
            "url" => {
                let url = object.str(field)?;
                rules::url(url, &path)?;
                InlineAction::Url {
                    url: url.to_owned(),
                }
            }
            "callback_data" => {
                let data = object.str(field)?;
                rules::callback_data(data, &path)?;
                distinct.check(data, &path)?;
                let answer = object
                    .get("answer")
                    .map(|answer| CallbackAnswer::from_value(answer, &object.path_of("answer")))
                    .transpose()?;
                let on_click = object
                    .get("on_click")
                    .map(|on_click| OnClick::from_value(on_click, &object.path_of("on_click")))
                    .transpose()?
                    .map(Box::new);
                InlineAction::Callback {
                    callback_data: data.to_owned(),
                    answer,
                    on_click,
                }
            }
            "switch_inline_query_current_chat" => {
                let query = object.str(field)?;
                rules::inline_query(query, &path)?;
                InlineAction::SwitchInlineQueryCurrentChat {
                    switch_inline_query_current_chat: query.to_owned(),
                }
            }
            "switch_inline_query" => {
                let query = object.str(field)?;
                rules::inline_query(query, &path)?;
                InlineAction::SwitchInlineQuery {
                    switch_inline_query: query.to_owned(),
                }
            }
            _ => InlineAction::CopyText {
                copy_text: CopyText::from_value(object.required(field)?, &path)?,
            },
        };
        Ok(action)
    }

    fn to_tl(&self) -> tl::enums::InlineButtonType {
        match self {
            InlineAction::Url { url } => tl::types::InlineButtonTypeUrl { url: url.clone() }.into(),
            InlineAction::Callback { callback_data, .. } => tl::types::InlineButtonTypeCallback {
                requires_password: false,
                data: callback_data.as_bytes().to_vec(),
            }
            .into(),
            InlineAction::SwitchInlineQueryCurrentChat {
                switch_inline_query_current_chat: query,
            } => switch_inline(query, true),
            InlineAction::SwitchInlineQuery {
                switch_inline_query: query,
            } => switch_inline(query, false),
            InlineAction::CopyText { copy_text } => tl::types::InlineButtonTypeCopy {
                copy_text: copy_text.text.clone(),
            }
            .into(),
        }
    }
}

fn switch_inline(query: &str, same_peer: bool) -> tl::enums::InlineButtonType {
    tl::types::InlineButtonTypeSwitchInline {
        same_peer,
        query: query.to_owned(),
        peer_types: None,
    }
    .into()
}

impl CopyText {
    fn from_value(value: Json<'_>, path: &Path<'_>) -> Result<Self, ApiError> {
        let object = Object::new(value, path, &["text"])?;
        let text = object.str("text")?;
        rules::copy_text(text, &object.path_of("text"))?;
        Ok(CopyText {
            text: text.to_owned(),
        })
    }

    /// The text copied to the clipboard.
    pub fn text(&self) -> &str {
        &self.text
    }
}
