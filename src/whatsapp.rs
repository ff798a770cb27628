//! WhatsApp interactive messages, sent as Telegram inline keyboards.
//!
//! Clients that already build WhatsApp Cloud API payloads
//! (`seeds/octopods-whatsapp-interactive.txt`) can send the same
//! `waba_interactive_message` to a Telegram chat. Both WhatsApp types become a
//! `reply_buttons` message of callback buttons, one per row, so a click
//! reports the same `id` WhatsApp would:
//!
//! - `button`: each reply button → a callback button (data = `reply.id`,
//!   label = `reply.title`); text = header, body and footer.
//! - `list`: each row → a callback button (data = row `id`, label = row
//!   `title`); text = header, body, each section's title with its rows (and
//!   their descriptions, which buttons cannot show), and footer.
//!
//! Where the two channels' limits differ, Telegram's are checked, on the
//! result, and errors name the WhatsApp field that caused them (e.g.
//! `waba_interactive_message.action.sections[1].rows[0].id`). WhatsApp's own
//! list-menu label (`action.button`) has no Telegram counterpart: it is
//! accepted and not shown.

use crate::error::ApiError;
use crate::interactive::{
    self, DistinctData, InlineButton, InlineKeyboard, InteractiveMessage, Json, Markup, Object,
    Path,
};

/// The WhatsApp interactive types that can be sent to Telegram.
const TYPES: &[&str] = &["button", "list"];

/// Translates the `waba_interactive_message` at `path` into a Telegram
/// interactive message, checking it on the way.
pub(crate) fn translate(value: Json<'_>, path: &Path<'_>) -> Result<InteractiveMessage, ApiError> {
    let message = Object::new(value, path, &["type", "header", "body", "footer", "action"])?;
    let kind = message.str("type")?;
    if !TYPES.contains(&kind) {
        return Err(message.path_of("type").unknown_value(kind, TYPES));
    }
    let header = message
        .get("header")
        .map(|header| read_header(header, &message.path_of("header")))
        .transpose()?;
    let body_path = message.path_of("body");
    let body_text_path = body_path.key("text");
    let body = read_text_object(message.required("body")?, &body_path)?;
    interactive::message_text(body, &body_text_path)?;
    let footer = message
        .get("footer")
        .map(|footer| read_text_object(footer, &message.path_of("footer")))
        .transpose()?;

    let mut text = String::with_capacity(256);
    if let Some(header) = header {
        push_paragraph(&mut text, header);
    }
    push_paragraph(&mut text, body);
    let action_path = message.path_of("action");
    let action = message.required("action")?;
    let buttons = if kind == "button" {
        read_reply_buttons(action, &action_path)?
    } else {
        read_list(action, &action_path, &mut text)?
    };
    if let Some(footer) = footer {
        push_paragraph(&mut text, footer);
    }

    check_composed_length(&text, &body_text_path)?;
    let keyboard = InlineKeyboard::from_rows(buttons.into_iter().map(|b| vec![b]).collect());
    Ok(InteractiveMessage::new(
        text,
        Markup::ReplyButtons(keyboard),
    ))
}

/// `header`: WhatsApp allows media headers; a Telegram text message can only
/// carry a text one.
fn read_header<'v>(value: Json<'v>, path: &Path<'_>) -> Result<&'v str, ApiError> {
    let header = Object::any_fields(value, path)?;
    let kind = header.str("type")?;
    if kind != "text" {
        return Err(header.path_of("type").unknown_value(kind, &["text"]));
    }
    header.deny_unknown(&["type", "text"])?;
    read_text(&header)
}

/// `body` and `footer`: `{"text": "..."}`.
fn read_text_object<'v>(value: Json<'v>, path: &Path<'_>) -> Result<&'v str, ApiError> {
    read_text(&Object::new(value, path, &["text"])?)
}

fn read_text<'v>(object: &Object<'v, '_>) -> Result<&'v str, ApiError> {
    let text = object.str("text")?;
    interactive::not_blank(text, &object.path_of("text"))?;
    Ok(text)
}

/// `action` of a `button` message: `{"buttons": [{"type": "reply", "reply": {id, title}}]}`.
fn read_reply_buttons(value: Json<'_>, path: &Path<'_>) -> Result<Vec<InlineButton>, ApiError> {
    let action = Object::new(value, path, &["buttons"])?;
    let buttons = action.array("buttons")?;
    let buttons_path = action.path_of("buttons");
    interactive::button_count(buttons.len(), "buttons", &buttons_path)?;
    let mut distinct = DistinctData::default();
    buttons
        .iter()
        .enumerate()
        .map(|(index, button)| {
            let path = buttons_path.index(index);
            let button = Object::new(button, &path, &["type", "reply"])?;
            let kind = button.str("type")?;
            if kind != "reply" {
                return Err(button.path_of("type").unknown_value(kind, &["reply"]));
            }
            let reply_path = button.path_of("reply");
            let reply = Object::new(button.required("reply")?, &reply_path, &["id", "title"])?;
            read_choice(&reply, &mut distinct)
        })
        .collect()
}

/// A reply button's `reply` or a list row: `id` becomes the callback data,
/// `title` the label.
fn read_choice<'v>(
    choice: &Object<'v, '_>,
    distinct: &mut DistinctData<'v>,
) -> Result<InlineButton, ApiError> {
    let id = choice.str("id")?;
    let id_path = choice.path_of("id");
    interactive::callback_data(id, &id_path)?;
    distinct.check(id, &id_path)?;
    let title = choice.str("title")?;
    interactive::label(title, &choice.path_of("title"))?;
    Ok(InlineButton::callback(title, id))
}

/// `action` of a `list` message: one button per row of every section; the
/// sections are written out into `text`, a paragraph each.
fn read_list(
    value: Json<'_>,
    path: &Path<'_>,
    text: &mut String,
) -> Result<Vec<InlineButton>, ApiError> {
    let action = Object::new(value, path, &["button", "sections"])?;
    action.opt_str("button")?;
    let sections_path = action.path_of("sections");
    let sections = action.array("sections")?;
    let mut rows_total = 0;
    for (index, section) in sections.iter().enumerate() {
        let section_path = sections_path.index(index);
        let section = Object::new(section, &section_path, &["title", "rows"])?;
        let rows = section.array("rows")?;
        if rows.is_empty() {
            return Err(section.path_of("rows").broken("must hold at least one row"));
        }
        rows_total += rows.len();
    }
    interactive::button_count(
        rows_total,
        "rows (one Telegram button each)",
        &sections_path,
    )?;

    let mut buttons = Vec::with_capacity(rows_total);
    let mut distinct = DistinctData::default();
    for (index, section) in sections.iter().enumerate() {
        let section_path = sections_path.index(index);
        let section = Object::new(section, &section_path, &["title", "rows"])?;
        let title = section.opt_str("title")?.filter(|title| !title.is_empty());
        if let Some(title) = title {
            push_paragraph(text, title);
        }
        let rows_path = section.path_of("rows");
        for (index, row) in section.array("rows")?.iter().enumerate() {
            let row_path = rows_path.index(index);
            let row = Object::new(row, &row_path, &["id", "title", "description"])?;
            let button = read_choice(&row, &mut distinct)?;
            let starts_section = title.is_none() && index == 0;
            push_separator(text, if starts_section { "\n\n" } else { "\n" });
            text.push_str("• ");
            text.push_str(button.text());
            if let Some(description) = row.opt_str("description")? {
                text.push_str(" — ");
                text.push_str(description);
            }
            buttons.push(button);
        }
    }
    Ok(buttons)
}

/// Appends `part` to the message text as a paragraph of its own.
fn push_paragraph(text: &mut String, part: &str) {
    push_separator(text, "\n\n");
    text.push_str(part);
}

/// Appends `separator`, unless `text` is still empty.
fn push_separator(text: &mut String, separator: &str) {
    if !text.is_empty() {
        text.push_str(separator);
    }
}

/// The composed text must fit Telegram's limit; the body is the field to
/// shorten, so the error names it.
fn check_composed_length(text: &str, body_text: &Path<'_>) -> Result<(), ApiError> {
    let len = interactive::utf16_len(text);
    if len > interactive::TEXT_MAX {
        return Err(body_text.broken(format_args!(
            "with the header, footer and list sections makes a Telegram text of {len} characters \
             (UTF-16 code units, as Telegram counts); at most {} are allowed",
            interactive::TEXT_MAX
        )));
    }
    Ok(())
}
