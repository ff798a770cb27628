//! What a click on a button with an `on_click` does to its message.
//!
//! The button says it when the message is sent (see
//! [`crate::interactive::OnClick`]); the click's recorder applies it in the
//! commit that records the click event: the click is counted (a row of
//! `button_clicks`), and the edit it implies is queued as a job in the
//! chat's line, so it goes out right after the answer and in order with
//! everything else of that chat. A `once` button's later clicks are not
//! counted: they change nothing and their events say `repeat`.
//!
//! What the message looks like after a click is a fold over the clicks that
//! counted, in order, starting from the message as telegate sent it
//! ([`decide`], a pure function); the store only keeps the clicks. Edits
//! made through the API in between are not part of that fold.

use crate::store::{Conn, OptionalExtension};
use rusqlite::params;

use crate::chat::ChatId;
use crate::formatting::Entity;
use crate::interactive::{InlineButton, InlineKeyboard, InteractiveRequest, Markup, OnClick};
use crate::operations::EditRequest;
use crate::queue::{JobEvent, JobKind, NewJob, QueueError, Timestamp};

/// What one click on a button with an `on_click` does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClickEffect {
    /// A `once` button clicked before: answered `answer_after_first`,
    /// nothing changes, the event is flagged `repeat`.
    Repeat,
    /// The click counts; `edit` is what it does to the message (`None`:
    /// nothing visible, a `once` alone).
    Counted { edit: Option<EditRequest> },
}

/// The effect of a click of the button with `data` under the message
/// `request` (telegate's id `message_id`), after the clicks `earlier` (their
/// data, in order) counted. `None` when the button has no `on_click`.
pub fn decide(
    request: &InteractiveRequest,
    message_id: i64,
    earlier: &[Vec<u8>],
    data: &[u8],
) -> Option<ClickEffect> {
    let on_click = request.on_click(data)?;
    if on_click.once() && earlier.iter().any(|clicked| clicked == data) {
        return Some(ClickEffect::Repeat);
    }
    if !on_click.edits() {
        return Some(ClickEffect::Counted { edit: None });
    }
    let mut shown = Shown::as_sent(request);
    for clicked in earlier {
        if let Some(earlier_click) = request.on_click(clicked) {
            shown.apply(earlier_click, clicked);
        }
    }
    shown.apply(on_click, data);
    Some(ClickEffect::Counted {
        edit: Some(shown.into_edit(message_id)),
    })
}

/// The message as the user's chat shows it.
struct Shown {
    text: String,
    entities: Vec<Entity>,
    keyboard: Option<Vec<Vec<InlineButton>>>,
}

impl Shown {
    fn as_sent(request: &InteractiveRequest) -> Self {
        Shown {
            text: request.text().to_owned(),
            entities: request.options().entities().to_vec(),
            keyboard: request
                .inline_keyboard()
                .map(|keyboard| keyboard.rows().to_vec()),
        }
    }

    /// What a counted click of the button with `data` does.
    fn apply(&mut self, on_click: &OnClick, data: &[u8]) {
        if let Some(text) = on_click.edit_text() {
            text.clone_into(&mut self.text);
            self.entities.clear();
        }
        if on_click.removes_keyboard() {
            self.keyboard = None;
        } else if let Some(rows) = on_click.replacement() {
            self.keyboard = Some(rows.to_vec());
        } else if let (Some(mark), Some(rows)) = (on_click.mark(), &mut self.keyboard) {
            for button in rows.iter_mut().flatten() {
                if button.callback_data() == Some(data) {
                    *button = button.marked(mark);
                }
            }
        }
    }

    fn into_edit(self, message_id: i64) -> EditRequest {
        let keyboard = self
            .keyboard
            .map(|rows| Markup::ReplyButtons(InlineKeyboard::without_on_click(rows)));
        EditRequest::new(message_id, self.text, self.entities, keyboard)
    }
}

/// A click to apply, as the recorder found it.
#[derive(Debug, Clone)]
pub struct ButtonClick {
    pub query_id: i64,
    pub chat: ChatId,
    /// Telegram's id of the clicked message.
    pub msg_id: i32,
    pub data: Vec<u8>,
    /// telegate's id of the message and the request that sent it.
    pub message_id: i64,
    pub request: InteractiveRequest,
}

/// Applies `click` of `bot` in the commit under way on `conn`: counts it
/// and queues its edit. Returns whether it is a repeat. A click already
/// counted (the same query recorded again after a restart) changes nothing.
pub(crate) fn apply(
    conn: &Conn,
    bot: &str,
    click: &ButtonClick,
    now: Timestamp,
    events: &mut Vec<JobEvent>,
) -> Result<bool, QueueError> {
    let chat = click.chat.get();
    let recorded: Option<i64> = conn
        .prepare_cached(
            "SELECT 1 FROM button_clicks
             WHERE bot = ?1 AND chat = ?2 AND msg_id = ?3 AND query_id = ?4",
        )?
        .query_row(params![bot, chat, click.msg_id, click.query_id], |row| {
            row.get(0)
        })
        .optional()?;
    if recorded.is_some() {
        return Ok(false);
    }
    let earlier: Vec<Vec<u8>> = conn
        .prepare_cached(
            "SELECT data FROM button_clicks WHERE bot = ?1 AND chat = ?2 AND msg_id = ?3
             ORDER BY rowid",
        )?
        .query_map(params![bot, chat, click.msg_id], |row| row.get(0))?
        .collect::<Result<_, _>>()?;
    let Some(effect) = decide(&click.request, click.message_id, &earlier, &click.data) else {
        return Ok(false);
    };
    let ClickEffect::Counted { edit } = effect else {
        return Ok(true);
    };
    conn.prepare_cached(
        "INSERT INTO button_clicks (bot, chat, msg_id, query_id, data) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![bot, chat, click.msg_id, click.query_id, click.data])?;
    if let Some(edit) = edit {
        let payload = serde_json::to_string(&edit)
            .map_err(|err| QueueError::Commit(format!("cannot store an on_click edit: {err}")))?;
        let job = NewJob {
            bot: bot.to_owned(),
            follows: Some(click.message_id),
            ..NewJob::new(
                format!("click:{}", click.query_id),
                click.chat,
                JobKind::Edit,
                payload,
            )
        };
        crate::queue::insert_job(conn, &job, now, events)?;
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::error::ErrorCode;

    fn request(buttons: serde_json::Value) -> InteractiveRequest {
        InteractiveRequest::from_value(&json!({
            "destination_user_id": "7",
            "telegram_interactive_message": {"type": "reply_buttons", "text": "Pick",
                "reply_markup": {"inline_keyboard": buttons}},
        }))
        .unwrap()
    }

    fn edit_of(effect: Option<ClickEffect>) -> serde_json::Value {
        match effect {
            Some(ClickEffect::Counted { edit: Some(edit) }) => serde_json::to_value(edit).unwrap(),
            other => panic!("no edit: {other:?}"),
        }
    }

    #[test]
    fn marks_fold_over_the_clicks_that_counted() {
        let sent = request(json!([[
            {"text": "A", "callback_data": "a", "on_click": {"mark": "✓ "}},
            {"text": "B", "callback_data": "b", "on_click": {"mark": "✓ "}},
            {"text": "C", "callback_data": "c"}
        ]]));
        let edit = edit_of(decide(&sent, 9, &[b"a".to_vec()], b"b"));
        let labels: Vec<&str> = edit["reply_markup"]["inline_keyboard"][0]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["text"].as_str().unwrap())
            .collect();
        assert_eq!(labels, ["✓ A", "✓ B", "C"]);
        assert_eq!(edit["text"], "Pick");
        assert_eq!(edit["message_id"], 9);
        // Clicking a marked button again keeps one mark; a plain button
        // does nothing.
        let again = edit_of(decide(&sent, 9, &[b"a".to_vec()], b"a"));
        assert_eq!(
            again["reply_markup"]["inline_keyboard"][0][0]["text"],
            "✓ A"
        );
        assert_eq!(decide(&sent, 9, &[], b"c"), None);
    }

    #[test]
    fn remove_replace_and_edit_text_change_the_message_so() {
        let sent = request(json!([[
            {"text": "Yes", "callback_data": "yes",
             "on_click": {"remove_keyboard": true, "edit_text": "Thanks!"}},
            {"text": "No", "callback_data": "no",
             "on_click": {"replace_keyboard": [[{"text": "Undo", "callback_data": "undo",
                                                  "answer": {"text": "Undone"}}]]}}
        ]]));
        let removed = edit_of(decide(&sent, 1, &[], b"yes"));
        assert_eq!(removed["text"], "Thanks!");
        assert!(removed.get("reply_markup").is_none(), "{removed}");
        let replaced = edit_of(decide(&sent, 1, &[], b"no"));
        assert_eq!(
            replaced["reply_markup"]["inline_keyboard"][0][0]["text"],
            "Undo"
        );
        assert_eq!(replaced["text"], "Pick");
        // A replacement's stored answer is found for its clicks.
        assert_eq!(
            sent.callback_answer(b"undo").and_then(|a| a.text()),
            Some("Undone")
        );
    }

    #[test]
    fn once_counts_the_first_click_only() {
        let sent = request(json!([[
            {"text": "Vote", "callback_data": "v",
             "on_click": {"once": true, "answer_after_first": {"text": "You voted already"}}},
            {"text": "Other", "callback_data": "o", "on_click": {"once": true}}
        ]]));
        assert_eq!(
            decide(&sent, 1, &[], b"v"),
            Some(ClickEffect::Counted { edit: None })
        );
        assert_eq!(
            decide(&sent, 1, &[b"v".to_vec()], b"v"),
            Some(ClickEffect::Repeat)
        );
        // Per button: another button's first click still counts.
        assert_eq!(
            decide(&sent, 1, &[b"v".to_vec()], b"o"),
            Some(ClickEffect::Counted { edit: None })
        );
        let on_click = sent.on_click(b"v").unwrap();
        assert_eq!(
            on_click.answer_after_first().text(),
            Some("You voted already")
        );
        assert_eq!(
            sent.on_click(b"o").unwrap().answer_after_first().text(),
            Some(crate::interactive::ALREADY_ANSWERED)
        );
    }

    #[test]
    fn bad_on_clicks_are_refused_naming_the_field_and_rule() {
        let cases = [
            (json!({}), ErrorCode::Rejected, "must do something"),
            (
                json!({"remove_keyboard": false}),
                ErrorCode::Rejected,
                "on_click.remove_keyboard",
            ),
            (
                json!({"remove_keyboard": true, "mark": "✓"}),
                ErrorCode::Rejected,
                "cannot be given with `remove_keyboard`",
            ),
            (json!({"mark": "  "}), ErrorCode::Rejected, "on_click.mark"),
            (
                json!({"mark": "x".repeat(17)}),
                ErrorCode::Rejected,
                "at most 16",
            ),
            (
                json!({"edit_text": ""}),
                ErrorCode::Rejected,
                "on_click.edit_text",
            ),
            (
                json!({"answer_after_first": {"text": "x"}}),
                ErrorCode::Rejected,
                "needs `\"once\": true`",
            ),
            (json!({"once": "yes"}), ErrorCode::Invalid, "on_click.once"),
            (json!({"colour": 1}), ErrorCode::Invalid, "on_click.colour"),
            (
                json!({"replace_keyboard": []}),
                ErrorCode::Rejected,
                "on_click.replace_keyboard",
            ),
            (
                json!({"replace_keyboard": [[{"text": "U", "callback_data": "u", "on_click": {"once": true}}]]}),
                ErrorCode::Rejected,
                "replace_keyboard[0][0].on_click",
            ),
        ];
        for (on_click, code, needle) in cases {
            let body = json!({
                "destination_user_id": "7",
                "telegram_interactive_message": {"type": "reply_buttons", "text": "Pick",
                    "reply_markup": {"inline_keyboard": [[
                        {"text": "A", "callback_data": "a", "on_click": on_click}]]}},
            });
            let err = InteractiveRequest::from_value(&body).unwrap_err();
            assert_eq!(err.code, code, "{on_click}: {}", err.message);
            assert!(err.message.contains(needle), "{on_click}: {}", err.message);
        }
        let url = json!({
            "destination_user_id": "7",
            "telegram_interactive_message": {"type": "reply_buttons", "text": "Pick",
                "reply_markup": {"inline_keyboard": [[
                    {"text": "A", "url": "https://example.com", "on_click": {"once": true}}]]}},
        });
        let err = InteractiveRequest::from_value(&url).unwrap_err();
        assert!(err.message.contains("callback_data"), "{}", err.message);
        // Where clicks are not followed up, `on_click` is refused, not dropped.
        let keyboard = json!({"inline_keyboard": [[{"text": "A", "callback_data": "a"},
            {"text": "B", "callback_data": "b", "on_click": {"once": true}}]]});
        let message = json!({"destination_user_id": 7, "text": "x", "reply_markup": keyboard});
        let err = crate::messages::MessagesRequest::from_json(message.to_string().as_bytes())
            .unwrap_err();
        assert!(
            err.message
                .contains("reply_markup.inline_keyboard[0][1].on_click")
                && err.message.contains("/api/v1/telegram/interactive"),
            "{}",
            err.message
        );
        let edit = json!({"text": "x", "reply_markup": keyboard});
        let err = EditRequest::from_json(3, edit.to_string().as_bytes()).unwrap_err();
        assert!(err.message.contains("[0][1].on_click"), "{}", err.message);
    }

    #[test]
    fn an_on_click_edit_reads_back_from_its_stored_form() {
        let sent = request(json!([[
            {"text": "A", "callback_data": "a", "on_click": {"mark": "✓ "}},
            {"text": "B", "callback_data": "b", "on_click": {"once": true}}
        ]]));
        let Some(ClickEffect::Counted { edit: Some(edit) }) = decide(&sent, 4, &[], b"a") else {
            panic!("no edit");
        };
        let stored = serde_json::to_string(&edit).unwrap();
        assert!(!stored.contains("on_click"), "{stored}");
        let back: EditRequest = serde_json::from_str(&stored).unwrap();
        assert_eq!(back, edit);
    }
}
