//! Interactive messages end to end: every seed example against grammers' own
//! builders, every rule with its code and field, round trips of the stored
//! form and of the TL, fuzzing, and the `validate` command.

use std::io::Write;
use std::process::{Command, Output, Stdio};

use grammers_client::message::{Button, Key, ReplyMarkup};
use grammers_tl_types::{self as tl, Deserializable, Serializable};
use proptest::prelude::*;
use serde_json::{Value, json};
use telegate::interactive::{InteractiveRequest, Markup};
use telegate::{ApiError, ChatId, ErrorCode};

macro_rules! fixture {
    ($name:literal) => {
        include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/",
            $name
        ))
    };
}

/// Every request body in `tests/fixtures`, by file name.
const FIXTURES: &[(&str, &[u8])] = &[
    ("reply_buttons.json", fixture!("reply_buttons.json")),
    ("reply_keyboard.json", fixture!("reply_keyboard.json")),
    (
        "remove_reply_keyboard.json",
        fixture!("remove_reply_keyboard.json"),
    ),
    ("highlight_reply.json", fixture!("highlight_reply.json")),
    (
        "did_your_package_arrive.json",
        fixture!("did_your_package_arrive.json"),
    ),
    ("whatsapp_button.json", fixture!("whatsapp_button.json")),
    ("whatsapp_list.json", fixture!("whatsapp_list.json")),
    ("callback_buttons.json", fixture!("callback_buttons.json")),
    ("keyboard_options.json", fixture!("keyboard_options.json")),
];

fn load(name: &str) -> InteractiveRequest {
    let (_, body) = FIXTURES
        .iter()
        .find(|(file, _)| *file == name)
        .unwrap_or_else(|| panic!("no fixture {name}"));
    InteractiveRequest::from_json(body).unwrap_or_else(|err| panic!("{name}: {err}"))
}

// ---------------------------------------------------------------------------
// Seed examples → the TL grammers' builders produce

#[test]
fn seed_reply_buttons() {
    let request = load("reply_buttons.json");
    assert_eq!(request.destination(), ChatId::user(987654321));
    assert_eq!(
        request.text(),
        "Your order is ready. What would you like to do?"
    );
    assert_eq!(request.intercom_teammate_id(), None);
    let expected = ReplyMarkup::from_buttons(&[vec![
        Button::url("Track order", "https://example.com/orders/1234"),
        Button::switch("Suggest reply", "Reschedule please"),
    ]]);
    assert_eq!(request.reply_markup(), expected.raw);
}

#[test]
fn seed_reply_keyboard() {
    let request = load("reply_keyboard.json");
    assert_eq!(request.text(), "How can we help?");
    let expected = ReplyMarkup::from_keys(&[
        vec![Key::text("Track my order")],
        vec![Key::request_phone("Share my number")],
        vec![Key::request_geo("Share my place")],
    ])
    .single_use();
    assert_eq!(request.reply_markup(), expected.raw);
}

#[test]
fn seed_remove_reply_keyboard() {
    let request = load("remove_reply_keyboard.json");
    assert_eq!(request.text(), "Thanks — back to the standard keyboard.");
    assert_eq!(request.reply_markup(), ReplyMarkup::hide().raw);
}

#[test]
fn seed_highlight_reply() {
    let request = load("highlight_reply.json");
    assert_eq!(request.text(), "How would you rate your experience today?");
    // grammers has no builder for the placeholder: set it on the built TL.
    let mut expected = ReplyMarkup::force_reply().raw;
    let tl::enums::ReplyMarkup::ReplyKeyboardForceReply(force) = &mut expected else {
        unreachable!()
    };
    force.placeholder = Some("Type your rating (1–5)".into());
    assert_eq!(request.reply_markup(), expected);
}

#[test]
fn seed_full_example() {
    let request = load("did_your_package_arrive.json");
    assert_eq!(request.text(), "Did your package arrive?");
    let expected = ReplyMarkup::from_buttons_row(&[
        Button::switch("Yes", "Yes, thanks"),
        Button::switch("No", "Not yet"),
    ]);
    assert_eq!(request.reply_markup(), expected.raw);
}

#[test]
fn seed_whatsapp_reply_buttons() {
    let request = load("whatsapp_button.json");
    assert_eq!(request.text(), "BUTTON_TEXT");
    assert_eq!(request.intercom_teammate_id(), Some("5173352"));
    let expected = ReplyMarkup::from_buttons_col(&[
        Button::data("BUTTON_TITLE_1", "UNIQUE_BUTTON_ID_1"),
        Button::data("BUTTON_TITLE_2", "UNIQUE_BUTTON_ID_2"),
    ]);
    assert_eq!(request.reply_markup(), expected.raw);
}

#[test]
fn seed_whatsapp_list() {
    let request = load("whatsapp_list.json");
    assert_eq!(
        request.text(),
        "HEADER_TEXT\n\nBODY_TEXT\n\n\
         SECTION_1_TITLE\n\
         • SECTION_1_ROW_1_TITLE — SECTION_1_ROW_1_DESCRIPTION\n\
         • SECTION_1_ROW_2_TITLE — SECTION_1_ROW_2_DESCRIPTION\n\n\
         SECTION_2_TITLE\n\
         • SECTION_2_ROW_1_TITLE — SECTION_2_ROW_1_DESCRIPTION\n\
         • SECTION_2_ROW_2_TITLE — SECTION_2_ROW_2_DESCRIPTION\n\n\
         FOOTER_TEXT"
    );
    let expected = ReplyMarkup::from_buttons_col(&[
        Button::data("SECTION_1_ROW_1_TITLE", "SECTION_1_ROW_1_ID"),
        Button::data("SECTION_1_ROW_2_TITLE", "SECTION_1_ROW_2_ID"),
        Button::data("SECTION_2_ROW_1_TITLE", "SECTION_2_ROW_1_ID"),
        Button::data("SECTION_2_ROW_2_TITLE", "SECTION_2_ROW_2_ID"),
    ]);
    assert_eq!(request.reply_markup(), expected.raw);
}

#[test]
fn whatsapp_list_without_titles_or_descriptions() {
    let request = InteractiveRequest::from_value(&wa_list(json!([
        {"rows": [{"id": "a", "title": "A"}, {"id": "b", "title": "B", "description": "bee"}]},
        {"title": "", "rows": [{"id": "c", "title": "C"}]},
        {"title": "More", "rows": [{"id": "d", "title": "D"}]}
    ])))
    .unwrap();
    assert_eq!(request.text(), "Pick\n\n• A\n• B — bee\n\n• C\n\nMore\n• D");
    let expected = ReplyMarkup::from_buttons_col(&[
        Button::data("A", "a"),
        Button::data("B", "b"),
        Button::data("C", "c"),
        Button::data("D", "d"),
    ]);
    assert_eq!(request.reply_markup(), expected.raw);
}

#[test]
fn beyond_seed_inline_buttons() {
    let request = load("callback_buttons.json");
    assert_eq!(
        request.destination(),
        "-1001234567890".parse::<ChatId>().unwrap()
    );
    let copy = tl::types::KeyboardInlineButton {
        style: None,
        text: "Copy order number".into(),
        r#type: tl::types::InlineButtonTypeCopy {
            copy_text: "ORD-1234".into(),
        }
        .into(),
    };
    let expected = ReplyMarkup::from_buttons(&[
        vec![
            Button::data("👍", "rate:up"),
            Button::data("👎", "rate:down"),
        ],
        vec![Button::switch_elsewhere("Share", "my delivery")],
        vec![Button { raw: copy.into() }],
        vec![Button::url("Help", "tg://resolve?domain=examplebot")],
    ]);
    assert_eq!(request.reply_markup(), expected.raw);
}

#[test]
fn beyond_seed_keyboard_options() {
    let request = load("keyboard_options.json");
    assert_eq!(request.destination(), ChatId::new(-4567).unwrap());
    let regular = tl::types::KeyboardButton {
        style: None,
        text: "Make a poll".into(),
        r#type: tl::types::ButtonTypeRequestPoll { quiz: Some(false) }.into(),
    };
    let mut expected = ReplyMarkup::from_keys(&[
        vec![
            Key::request_quiz("Make a quiz"),
            Key {
                raw: regular.into(),
            },
        ],
        vec![Key::request_poll("Any poll")],
    ])
    .fit_size()
    .selective()
    .raw;
    let tl::enums::ReplyMarkup::ReplyKeyboardMarkup(keyboard) = &mut expected else {
        unreachable!()
    };
    keyboard.persistent = true;
    keyboard.placeholder = Some("Choose…".into());
    assert_eq!(request.reply_markup(), expected);
}

#[test]
fn callback_answers_are_found_by_data() {
    let request = load("callback_buttons.json");
    let up = request
        .callback_answer(b"rate:up")
        .expect("answer of rate:up");
    assert_eq!(up.text(), Some("Thanks!"));
    assert!(!up.alert());
    assert_eq!(up.cache_time(), 60);
    let down = request
        .callback_answer(b"rate:down")
        .expect("answer of rate:down");
    assert_eq!(down.text(), Some("Sorry to hear that."));
    assert!(down.alert());
    assert_eq!(down.url(), None);
    assert_eq!(request.callback_answer(b"rate:sideways"), None);
    assert_eq!(request.callback_answer(b""), None);
    // A callback button without an answer, and markups without callbacks.
    assert_eq!(
        load("whatsapp_button.json").callback_answer(b"UNIQUE_BUTTON_ID_1"),
        None
    );
    assert_eq!(
        load("reply_keyboard.json").callback_answer(b"Track my order"),
        None
    );
}

// ---------------------------------------------------------------------------
// Round trips: the stored JSON form, and the TL

#[test]
fn every_fixture_round_trips() {
    for (name, body) in FIXTURES {
        let request = InteractiveRequest::from_json(body).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_round_trips(&request);
    }
}

fn assert_round_trips(request: &InteractiveRequest) {
    // The stored form is itself a valid request body...
    let stored = serde_json::to_vec(request).unwrap();
    assert_eq!(InteractiveRequest::from_json(&stored).as_ref(), Ok(request));
    // ...that the queue reads back as it is (no check run again)...
    let read = InteractiveRequest::from_stored(std::str::from_utf8(&stored).unwrap()).unwrap();
    assert_eq!(&read, request);
    // ...and in normal form: writing it again changes nothing.
    assert_eq!(serde_json::to_vec(&read).unwrap(), stored);
    // The markup alone round-trips too.
    let markup = serde_json::to_value(request.markup()).unwrap();
    assert_eq!(
        Markup::from_value(&markup, "").as_ref(),
        Ok(request.markup())
    );
    // The TL: serialize → deserialize of the boxed ReplyMarkup.
    let tl = request.reply_markup();
    let bytes = tl.to_bytes();
    assert_eq!(tl::enums::ReplyMarkup::from_bytes(&bytes).unwrap(), tl);
}

#[test]
fn stored_form_is_the_normal_telegram_body() {
    let request = load("whatsapp_button.json");
    assert_eq!(
        serde_json::to_value(&request).unwrap(),
        json!({
            "destination_user_id": "987654321",
            "telegram_interactive_message": {
                "text": "BUTTON_TEXT",
                "type": "reply_buttons",
                "reply_markup": {"inline_keyboard": [
                    [{"text": "BUTTON_TITLE_1", "callback_data": "UNIQUE_BUTTON_ID_1"}],
                    [{"text": "BUTTON_TITLE_2", "callback_data": "UNIQUE_BUTTON_ID_2"}]
                ]}
            },
            "intercom_teammate_id": "5173352"
        })
    );
    // `false` flags and nulls are dropped; a numeric chat id becomes a string.
    let request = InteractiveRequest::from_value(&json!({
        "destination_user_id": -4567,
        "telegram_interactive_message": {
            "type": "reply_keyboard", "text": "Hi",
            "reply_markup": {"keyboard": [[{"text": "A", "request_contact": false}]],
                             "one_time_keyboard": false, "selective": null}
        },
        "intercom_teammate_id": null
    }))
    .unwrap();
    assert_eq!(
        serde_json::to_value(&request).unwrap(),
        json!({
            "destination_user_id": "-4567",
            "telegram_interactive_message": {
                "text": "Hi", "type": "reply_keyboard",
                "reply_markup": {"keyboard": [[{"text": "A"}]]}
            }
        })
    );
}

#[test]
fn markup_is_validated_on_its_own_under_a_prefix() {
    let markup = json!({"type": "highlight_reply", "reply_markup": {"force_reply": true}});
    let parsed = Markup::from_value(&markup, "reply_markup").unwrap();
    assert_eq!(parsed.to_tl(), ReplyMarkup::force_reply().raw);
    assert_eq!(parsed.type_name(), "highlight_reply");

    let bad = json!({"type": "reply_buttons", "reply_markup": {"inline_keyboard": [[{"url": "https://a.example"}]]}});
    let err = Markup::from_value(&bad, "message.reply_markup").unwrap_err();
    assert_eq!(
        err,
        ApiError::missing("message.reply_markup.reply_markup.inline_keyboard[0][0].text")
    );
    // `text` belongs to the message, not to the markup.
    let extra = json!({"type": "remove_reply_keyboard", "text": "x", "reply_markup": {"remove_keyboard": true}});
    let err = Markup::from_value(&extra, "m").unwrap_err();
    assert_eq!(err.code, ErrorCode::Invalid);
    assert!(err.message.contains("`m.text`"), "{}", err.message);
}

#[test]
fn bot_api_reply_markup_tells_its_own_type() {
    for (name, body) in FIXTURES {
        let request = InteractiveRequest::from_json(body).unwrap();
        let stored = serde_json::to_value(request.markup()).unwrap();
        let markup = Markup::from_reply_markup(&stored["reply_markup"], "reply_markup")
            .unwrap_or_else(|err| panic!("{name}: {err}"));
        assert_eq!(&markup, request.markup(), "{name}");
    }
    let err = Markup::from_reply_markup(&json!({"selective": true}), "reply_markup").unwrap_err();
    assert_eq!(err.code, ErrorCode::Missing);
    assert!(
        err.message.contains("`reply_markup`") && err.message.contains("inline_keyboard"),
        "{err}"
    );
    // Two types' fields at once: the second is unknown to the first.
    let both =
        json!({"inline_keyboard": [[{"text": "A", "callback_data": "a"}]], "force_reply": true});
    let err = Markup::from_reply_markup(&both, "reply_markup").unwrap_err();
    assert_eq!(err.code, ErrorCode::Invalid);
    assert!(err.message.contains("`reply_markup.force_reply`"), "{err}");
    let err = Markup::from_reply_markup(&json!({"keyboard": [[{"text": ""}]]}), "m.reply_markup")
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::Rejected);
    assert!(
        err.message.contains("`m.reply_markup.keyboard[0][0].text`"),
        "{err}"
    );
    let err = Markup::from_reply_markup(&json!([]), "reply_markup").unwrap_err();
    assert_eq!(err.code, ErrorCode::Invalid);
}

/// A stored form today's rules refuse (written by a release with looser
/// rules): an `answer` text over the limit, an `on_click` text over it too,
/// and fields this parser does not know.
fn stored_past_todays_rules() -> String {
    let mut stored = serde_json::to_value(load("reply_buttons.json")).unwrap();
    let long = "😀".repeat(150); // 300 UTF-16 code units: over both limits
    let button = json!({"text": "Yes", "callback_data": "yes",
                        "answer": {"text": long, "retired": true},
                        "on_click": {"edit_text": "x".repeat(5000), "retired": 1}});
    stored["telegram_interactive_message"]["reply_markup"]["inline_keyboard"] = json!([[button]]);
    stored["retired_field"] = json!("written by an older release");
    stored.to_string()
}

#[test]
fn stored_form_is_read_back_without_todays_rules() {
    let stored = stored_past_todays_rules();
    let err = InteractiveRequest::from_json(stored.as_bytes()).unwrap_err();
    assert_eq!(err.code, ErrorCode::Invalid, "{err}");
    assert!(err.message.contains("retired"), "{err}");
    let request = InteractiveRequest::from_stored(&stored).unwrap();
    // Without the unknown fields, the lengths are refused today too.
    let known = serde_json::to_vec(&request).unwrap();
    let err = InteractiveRequest::from_json(&known).unwrap_err();
    assert_eq!(err.code, ErrorCode::Rejected, "{err}");
    assert!(
        err.message.contains("inline_keyboard[0][0].answer.text"),
        "{err}"
    );
    // The lookups a click makes find what was stored.
    let answer = request.callback_answer(b"yes").unwrap();
    assert_eq!(answer.text(), Some("😀".repeat(150).as_str()));
    let on_click = request.on_click(b"yes").unwrap();
    assert_eq!(on_click.edit_text(), Some("x".repeat(5000).as_str()));
    assert_eq!(request.callback_answer(b"no"), None);
}

#[test]
fn a_stored_form_of_another_shape_is_a_clear_error() {
    for payload in ["not json", "{}", r#"{"destination_user_id": "1"}"#] {
        let err = InteractiveRequest::from_stored(payload).unwrap_err();
        assert!(
            err.to_string()
                .contains("interactive request's normal form"),
            "{payload}: {err}"
        );
    }
    // A messages job's payload is not an interactive one.
    let err = InteractiveRequest::from_stored(
        r#"{"destination_user_id": "1", "messages": [{"type": "text", "text": "hi"}]}"#,
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("telegram_interactive_message"),
        "{err}"
    );
}

// ---------------------------------------------------------------------------
// One failing case (at least) per rule: the code and the named field

fn telegram(message: Value) -> Value {
    json!({"destination_user_id": "987654321", "telegram_interactive_message": message})
}

fn inline(rows: Value) -> Value {
    telegram(
        json!({"type": "reply_buttons", "text": "Hi", "reply_markup": {"inline_keyboard": rows}}),
    )
}

fn keyboard(reply_markup: Value) -> Value {
    telegram(json!({"type": "reply_keyboard", "text": "Hi", "reply_markup": reply_markup}))
}

fn whatsapp(message: Value) -> Value {
    json!({"destination_user_id": "987654321", "waba_interactive_message": message})
}

fn wa_list(sections: Value) -> Value {
    whatsapp(
        json!({"type": "list", "body": {"text": "Pick"}, "action": {"button": "Menu", "sections": sections}}),
    )
}

fn error_of(body: &Value) -> ApiError {
    match InteractiveRequest::from_json(&serde_json::to_vec(body).unwrap()) {
        Ok(request) => panic!("accepted {body}: {request:?}"),
        Err(err) => err,
    }
}

/// Asserts the error code and that the message names `field` (in backticks).
#[track_caller]
fn assert_error(body: Value, code: u8, field: &str) -> ApiError {
    let err = error_of(&body);
    assert_eq!(err.code.as_u8(), code, "{body}\n→ {err}");
    assert!(
        err.message.contains(&format!("`{field}`")),
        "{body}\n→ {err}\n(expected the message to name `{field}`)"
    );
    err
}

#[test]
fn code_1_names_the_missing_field_by_path() {
    let err = assert_error(
        inline(json!([[{"text": "A", "url": "https://a.example"}, {"url": "https://b.example"}]])),
        1,
        "telegram_interactive_message.reply_markup.inline_keyboard[0][1].text",
    );
    assert_eq!(
        err.message,
        "missing required field `telegram_interactive_message.reply_markup.inline_keyboard[0][1].text`"
    );
    assert_error(
        json!({"telegram_interactive_message": {"type": "reply_buttons"}}),
        1,
        "destination_user_id",
    );
    assert_error(
        telegram(
            json!({"type": "remove_reply_keyboard", "reply_markup": {"remove_keyboard": true}}),
        ),
        1,
        "telegram_interactive_message.text",
    );
    assert_error(
        telegram(json!({"text": "Hi", "reply_markup": {"remove_keyboard": true}})),
        1,
        "telegram_interactive_message.type",
    );
    assert_error(
        telegram(json!({"type": "reply_buttons", "text": "Hi"})),
        1,
        "telegram_interactive_message.reply_markup",
    );
    assert_error(
        keyboard(json!({"one_time_keyboard": true})),
        1,
        "telegram_interactive_message.reply_markup.keyboard",
    );
    assert_error(
        keyboard(json!({"keyboard": [[{"request_contact": true}]]})),
        1,
        "telegram_interactive_message.reply_markup.keyboard[0][0].text",
    );
    assert_error(
        telegram(json!({"type": "highlight_reply", "text": "Hi", "reply_markup": {}})),
        1,
        "telegram_interactive_message.reply_markup.force_reply",
    );
    assert_error(
        telegram(
            json!({"type": "remove_reply_keyboard", "text": "Hi", "reply_markup": {"selective": true}}),
        ),
        1,
        "telegram_interactive_message.reply_markup.remove_keyboard",
    );
    // `null` counts as absent.
    assert_error(
        json!({"destination_user_id": null, "telegram_interactive_message": {}}),
        1,
        "destination_user_id",
    );
}

#[test]
fn exactly_one_message_kind() {
    let neither = error_of(&json!({"destination_user_id": "1"}));
    assert_eq!(neither.code, ErrorCode::Missing);
    assert!(
        neither.message.contains("`telegram_interactive_message`"),
        "{neither}"
    );
    assert!(
        neither.message.contains("`waba_interactive_message`"),
        "{neither}"
    );

    let mut both = inline(json!([[{"text": "A", "url": "https://a.example"}]]));
    both["waba_interactive_message"] = json!({"type": "button"});
    let err = assert_error(both, 5, "telegram_interactive_message");
    assert!(err.message.contains("`waba_interactive_message`"), "{err}");
    assert!(err.message.contains("not both"), "{err}");
}

#[test]
fn code_4_unknown_type_lists_the_allowed_ones() {
    let err = assert_error(
        telegram(json!({"type": "carousel", "text": "Hi", "reply_markup": {}})),
        4,
        "telegram_interactive_message.type",
    );
    for allowed in Markup::TYPES {
        assert!(err.message.contains(allowed), "{err}");
    }
    assert!(err.message.contains("carousel"), "{err}");
    let err = assert_error(
        whatsapp(json!({"type": "product", "body": {"text": "x"}, "action": {}})),
        4,
        "waba_interactive_message.type",
    );
    assert!(err.message.contains("button, list"), "{err}");
    assert_error(
        keyboard(json!({"keyboard": [[{"text": "Poll", "request_poll": {"type": "survey"}}]]})),
        4,
        "telegram_interactive_message.reply_markup.keyboard[0][0].request_poll.type",
    );
}

#[test]
fn code_4_wrong_json_type_says_expected_and_got() {
    let err = assert_error(
        telegram(json!({"type": "reply_buttons", "text": 42, "reply_markup": {}})),
        4,
        "telegram_interactive_message.text",
    );
    assert!(
        err.message.contains("must be a string, got a number"),
        "{err}"
    );
    let err = assert_error(
        inline(json!({"row": 1})),
        4,
        "telegram_interactive_message.reply_markup.inline_keyboard",
    );
    assert!(
        err.message.contains("must be an array, got an object"),
        "{err}"
    );
    assert_error(
        inline(json!([{"text": "A"}])),
        4,
        "telegram_interactive_message.reply_markup.inline_keyboard[0]",
    );
    assert_error(
        keyboard(json!({"keyboard": [[{"text": "A"}]], "one_time_keyboard": "yes"})),
        4,
        "telegram_interactive_message.reply_markup.one_time_keyboard",
    );
    assert_error(
        json!({"destination_user_id": true, "telegram_interactive_message": {}}),
        4,
        "destination_user_id",
    );
    let err = error_of(&json!(["not", "an", "object"]));
    assert_eq!(err.code, ErrorCode::Invalid);
    assert!(
        err.message
            .contains("the request body must be a JSON object, got an array"),
        "{err}"
    );
}

#[test]
fn code_4_unknown_fields_are_named() {
    let err = assert_error(
        inline(json!([[{"text": "A", "calback_data": "x"}]])),
        4,
        "telegram_interactive_message.reply_markup.inline_keyboard[0][0].calback_data",
    );
    assert!(err.message.contains("callback_data"), "{err}");
    assert_error(
        telegram(json!({"type": "reply_buttons", "txt": "Hi", "reply_markup": {}})),
        4,
        "telegram_interactive_message.txt",
    );
    // A field of another type's markup is unknown here.
    assert_error(
        telegram(json!({"type": "reply_buttons", "text": "Hi", "reply_markup": {"keyboard": []}})),
        4,
        "telegram_interactive_message.reply_markup.keyboard",
    );
    assert_error(
        json!({"destination_phone": "+353838000000", "waba_interactive_message": {}}),
        4,
        "destination_phone",
    );
    assert_error(
        whatsapp(json!({"type": "button", "body": {"text": "x", "emoji": true}, "action": {}})),
        4,
        "waba_interactive_message.body.emoji",
    );
}

#[test]
fn code_4_repeated_fields_are_refused() {
    // A `serde_json::Value` would keep the last `text` silently.
    let body = br#"{"destination_user_id": "1", "telegram_interactive_message": {
        "type": "remove_reply_keyboard", "text": "A", "text": "B",
        "reply_markup": {"remove_keyboard": true}}}"#;
    let err = InteractiveRequest::from_json(body).unwrap_err();
    assert_eq!(err.code, ErrorCode::Invalid);
    assert!(
        err.message.contains("`telegram_interactive_message.text`"),
        "{err}"
    );
    assert!(err.message.contains("more than once"), "{err}");
}

#[test]
fn code_4_malformed_json_gives_the_position() {
    let err = InteractiveRequest::from_json(b"{\n  \"destination_user_id\": \"1\",\n  oops\n}")
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::Invalid);
    assert!(err.message.starts_with("malformed JSON"), "{err}");
    assert!(err.message.contains("line 3 column 3"), "{err}");
    for body in [&b""[..], b"{", b"[1,]", b"\xff\xfe", b"{} {}"] {
        assert_eq!(
            InteractiveRequest::from_json(body).unwrap_err().code,
            ErrorCode::Invalid
        );
    }
    // Deep nesting is refused by the parser, not by a stack overflow.
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    assert_eq!(
        InteractiveRequest::from_json(deep.as_bytes())
            .unwrap_err()
            .code,
        ErrorCode::Invalid
    );
}

#[test]
fn code_5_text_length_in_utf16_code_units() {
    let text = |text: String| {
        telegram(
            json!({"type": "remove_reply_keyboard", "text": text, "reply_markup": {"remove_keyboard": true}}),
        )
    };
    let field = "telegram_interactive_message.text";
    // 2048 emoji are 4096 UTF-16 code units: the limit exactly.
    let emoji = "😀".repeat(2048);
    assert!(InteractiveRequest::from_value(&text(emoji.clone())).is_ok());
    let err = assert_error(text(format!("{emoji}a")), 5, field);
    assert!(err.message.contains("4097"), "{err}");
    assert!(err.message.contains("UTF-16"), "{err}");
    assert!(InteractiveRequest::from_value(&text("a".repeat(4096))).is_ok());
    assert_error(text("a".repeat(4097)), 5, field);
    // 4096 chars of which one is astral: 4097 code units.
    assert_error(text(format!("😀{}", "a".repeat(4095))), 5, field);
    assert_error(text(String::new()), 5, field);
    assert_error(text(" \n ".into()), 5, field);
}

#[test]
fn code_5_button_counts_and_rows() {
    let button = json!({"text": "A", "url": "https://a.example"});
    let field = "telegram_interactive_message.reply_markup.inline_keyboard";
    let six = json!([[button, button, button], [button, button, button]]);
    assert!(InteractiveRequest::from_value(&inline(six)).is_ok());
    let err = assert_error(
        inline(json!([
            [button, button, button, button],
            [button, button, button]
        ])),
        5,
        field,
    );
    assert!(
        err.message.contains("1–6") && err.message.contains("got 7"),
        "{err}"
    );
    assert_error(inline(json!([])), 5, field);
    assert_error(inline(json!([[button], []])), 5, &format!("{field}[1]"));
    let key = json!({"text": "A"});
    assert_error(
        keyboard(json!({"keyboard": [[key, key, key, key, key, key, key]]})),
        5,
        "telegram_interactive_message.reply_markup.keyboard",
    );
    assert_error(
        keyboard(json!({"keyboard": [[]]})),
        5,
        "telegram_interactive_message.reply_markup.keyboard[0]",
    );
}

#[test]
fn code_5_labels() {
    assert_error(
        inline(json!([[{"text": "", "url": "https://a.example"}]])),
        5,
        "telegram_interactive_message.reply_markup.inline_keyboard[0][0].text",
    );
    assert_error(
        keyboard(json!({"keyboard": [[{"text": "A"}, {"text": "  "}]]})),
        5,
        "telegram_interactive_message.reply_markup.keyboard[0][1].text",
    );
}

#[test]
fn code_5_exactly_one_action_per_inline_button() {
    let field = "telegram_interactive_message.reply_markup.inline_keyboard[0][0]";
    let err = assert_error(
        inline(json!([[{"text": "A", "url": "https://a.example", "callback_data": "a"}]])),
        5,
        field,
    );
    assert!(
        err.message.contains("exactly one action") && err.message.contains("got 2"),
        "{err}"
    );
    let err = assert_error(inline(json!([[{"text": "A"}]])), 5, field);
    assert!(err.message.contains("got 0"), "{err}");
    assert_error(
        inline(json!([[{"text": "A", "url": "https://a.example", "answer": {"text": "hi"}}]])),
        5,
        "telegram_interactive_message.reply_markup.inline_keyboard[0][0].answer",
    );
}

#[test]
fn code_5_urls() {
    let field = "telegram_interactive_message.reply_markup.inline_keyboard[0][0].url";
    for bad in [
        "ftp://example.com/x",
        "example.com",
        "https://",
        "https:example.com",
        "tg://",
        "https://a b.example",
    ] {
        let err = assert_error(inline(json!([[{"text": "A", "url": bad}]])), 5, field);
        assert!(
            err.message.contains("http(s)") && err.message.contains("tg://"),
            "{err}"
        );
    }
    for good in [
        "https://example.com",
        "http://localhost:8080/x?y=1",
        "tg://resolve?domain=examplebot",
    ] {
        assert!(
            InteractiveRequest::from_value(&inline(json!([[{"text": "A", "url": good}]]))).is_ok(),
            "{good}"
        );
    }
}

#[test]
fn code_5_callback_data() {
    let field = "telegram_interactive_message.reply_markup.inline_keyboard[0][0].callback_data";
    let data = |data: String| inline(json!([[{"text": "A", "callback_data": data}]]));
    assert!(InteractiveRequest::from_value(&data("x".repeat(64))).is_ok());
    let err = assert_error(data("x".repeat(65)), 5, field);
    assert!(
        err.message.contains("1–64 bytes") && err.message.contains("65"),
        "{err}"
    );
    assert_error(data(String::new()), 5, field);
    // 16 emoji: 32 UTF-16 code units but 64 bytes — fits; 17 do not.
    assert!(InteractiveRequest::from_value(&data("😀".repeat(16))).is_ok());
    assert_error(data("😀".repeat(17)), 5, field);
    // Each callback button needs its own data.
    let err = assert_error(
        inline(
            json!([[{"text": "A", "callback_data": "x"}], [{"text": "B", "callback_data": "x"}]]),
        ),
        5,
        "telegram_interactive_message.reply_markup.inline_keyboard[1][0].callback_data",
    );
    assert!(err.message.contains("earlier button"), "{err}");
}

#[test]
fn code_5_callback_answer() {
    let answer =
        |answer: Value| inline(json!([[{"text": "A", "callback_data": "a", "answer": answer}]]));
    let field = "telegram_interactive_message.reply_markup.inline_keyboard[0][0].answer";
    assert!(InteractiveRequest::from_value(&answer(json!({"text": "😀".repeat(100)}))).is_ok());
    let err = assert_error(
        answer(json!({"text": "😀".repeat(100) + "a"})),
        5,
        &format!("{field}.text"),
    );
    assert!(err.message.contains("200"), "{err}");
    assert_error(answer(json!({"url": "nope"})), 5, &format!("{field}.url"));
    // Telegram opens only a bot's start link from a callback answer.
    let err = assert_error(
        answer(json!({"url": "https://example.com"})),
        5,
        &format!("{field}.url"),
    );
    assert!(err.message.contains("?start="), "{err}");
    assert!(
        InteractiveRequest::from_value(&answer(json!({"url": "https://t.me/a_bot?start=x"})))
            .is_ok()
    );
    assert_error(
        answer(json!({"cache_time": -5})),
        5,
        &format!("{field}.cache_time"),
    );
    assert_error(
        answer(json!({"alert": "yes"})),
        4,
        &format!("{field}.alert"),
    );
}

#[test]
fn code_5_placeholder_length() {
    let force = |placeholder: String| {
        telegram(json!({"type": "highlight_reply", "text": "Hi",
                        "reply_markup": {"force_reply": true, "input_field_placeholder": placeholder}}))
    };
    let field = "telegram_interactive_message.reply_markup.input_field_placeholder";
    assert!(InteractiveRequest::from_value(&force("😀".repeat(32))).is_ok());
    let err = assert_error(force("😀".repeat(32) + "a"), 5, field);
    assert!(
        err.message.contains("65") && err.message.contains("64"),
        "{err}"
    );
    assert_error(
        keyboard(json!({"keyboard": [[{"text": "A"}]], "input_field_placeholder": "x".repeat(65)})),
        5,
        field,
    );
}

#[test]
fn code_5_flags_that_must_be_true() {
    let err = assert_error(
        telegram(
            json!({"type": "highlight_reply", "text": "Hi", "reply_markup": {"force_reply": false}}),
        ),
        5,
        "telegram_interactive_message.reply_markup.force_reply",
    );
    assert!(err.message.contains("must be true"), "{err}");
    assert_error(
        telegram(
            json!({"type": "remove_reply_keyboard", "text": "Hi", "reply_markup": {"remove_keyboard": false}}),
        ),
        5,
        "telegram_interactive_message.reply_markup.remove_keyboard",
    );
}

#[test]
fn code_5_contact_and_location_not_both() {
    let err = assert_error(
        keyboard(
            json!({"keyboard": [[{"text": "A", "request_contact": true, "request_location": true}]]}),
        ),
        5,
        "telegram_interactive_message.reply_markup.keyboard[0][0]",
    );
    assert!(
        err.message.contains("request_contact") && err.message.contains("request_location"),
        "{err}"
    );
    assert_error(
        keyboard(
            json!({"keyboard": [[{"text": "A", "request_contact": true, "request_poll": {}}]]}),
        ),
        5,
        "telegram_interactive_message.reply_markup.keyboard[0][0]",
    );
    // false flags ask for nothing and may be combined with anything.
    let fine = keyboard(
        json!({"keyboard": [[{"text": "A", "request_contact": false, "request_location": true}]]}),
    );
    assert!(InteractiveRequest::from_value(&fine).is_ok());
}

#[test]
fn destination_user_id_forms() {
    let with = |id: Value| {
        let mut body = inline(json!([[{"text": "A", "url": "https://a.example"}]]));
        body["destination_user_id"] = id;
        body
    };
    let ok = |id: Value| {
        InteractiveRequest::from_value(&with(id))
            .unwrap()
            .destination()
    };
    assert_eq!(ok(json!("987654321")), ChatId::user(987654321));
    assert_eq!(ok(json!(987654321)), ChatId::user(987654321));
    assert_eq!(ok(json!("-1001234567890")).get(), -1001234567890);
    assert_eq!(ok(json!(-4567)).get(), -4567);
    for bad in [
        json!("12a"),
        json!(""),
        json!("0"),
        json!(0),
        json!(1.5),
        json!("+1"),
        json!(u64::MAX),
    ] {
        assert_error(with(bad), 5, "destination_user_id");
    }
}

#[test]
fn whatsapp_errors_name_the_whatsapp_field() {
    let row = |id: &str| json!({"id": id, "title": "T"});
    let err = assert_error(
        wa_list(
            json!([{"title": "S1", "rows": [row("a")]}, {"title": "S2", "rows": [row(&"x".repeat(65))]}]),
        ),
        5,
        "waba_interactive_message.action.sections[1].rows[0].id",
    );
    assert!(err.message.contains("1–64 bytes"), "{err}");
    assert_error(
        wa_list(
            json!([{"rows": [row("a"), row("b"), row("c"), row("d")]}, {"rows": [row("e"), row("f"), row("g")]}]),
        ),
        5,
        "waba_interactive_message.action.sections",
    );
    assert_error(
        wa_list(json!([{"rows": [row("a")]}, {"rows": [row("a")]}])),
        5,
        "waba_interactive_message.action.sections[1].rows[0].id",
    );
    assert_error(
        wa_list(json!([{"rows": [{"id": "a", "title": ""}]}])),
        5,
        "waba_interactive_message.action.sections[0].rows[0].title",
    );
    assert_error(
        wa_list(json!([{"title": "S", "rows": []}])),
        5,
        "waba_interactive_message.action.sections[0].rows",
    );
    assert_error(
        wa_list(json!([{"rows": [{"title": "T"}]}])),
        1,
        "waba_interactive_message.action.sections[0].rows[0].id",
    );
    let buttons = |buttons: Value| {
        whatsapp(json!({"type": "button", "body": {"text": "Hi"}, "action": {"buttons": buttons}}))
    };
    let reply =
        |id: &str, title: &str| json!({"type": "reply", "reply": {"id": id, "title": title}});
    assert_error(
        buttons(json!([reply("a", "A"), reply("", "B")])),
        5,
        "waba_interactive_message.action.buttons[1].reply.id",
    );
    assert_error(
        buttons(json!([])),
        5,
        "waba_interactive_message.action.buttons",
    );
    assert_error(
        buttons(json!([{"type": "url", "reply": {"id": "a", "title": "A"}}])),
        4,
        "waba_interactive_message.action.buttons[0].type",
    );
    assert_error(
        buttons(json!([{"type": "reply", "reply": {"id": "a"}}])),
        1,
        "waba_interactive_message.action.buttons[0].reply.title",
    );
    assert_error(
        whatsapp(json!({"type": "button", "action": {"buttons": [reply("a", "A")]}})),
        1,
        "waba_interactive_message.body",
    );
    assert_error(
        whatsapp(
            json!({"type": "button", "header": {"type": "image", "image": {"link": "https://a.example/x.png"}},
                        "body": {"text": "Hi"}, "action": {"buttons": [reply("a", "A")]}}),
        ),
        4,
        "waba_interactive_message.header.type",
    );
    // Telegram's text limit applies to the composed text; the body is named.
    let long = whatsapp(
        json!({"type": "button", "header": {"type": "text", "text": "H".repeat(100)},
                               "body": {"text": "B".repeat(4000)}, "action": {"buttons": [reply("a", "A")]}}),
    );
    let err = assert_error(long, 5, "waba_interactive_message.body.text");
    assert!(
        err.message.contains("4102") && err.message.contains("4096"),
        "{err}"
    );
    assert!(err.message.contains("with the header"), "{err}");
    // The body alone too long: said of the body alone.
    let long = whatsapp(
        json!({"type": "button", "body": {"text": "😀".repeat(2049)},
                               "action": {"buttons": [reply("a", "A")]}}),
    );
    let err = assert_error(long, 5, "waba_interactive_message.body.text");
    assert!(
        err.message.contains("is 4098 characters long (UTF-16"),
        "{err}"
    );
}

// ---------------------------------------------------------------------------
// Fuzzing: nothing panics, every error is code 1, 4 or 5

/// Field names of both shapes, so that random objects reach deep code.
const KEYS: &[&str] = &[
    "destination_user_id",
    "telegram_interactive_message",
    "waba_interactive_message",
    "intercom_teammate_id",
    "type",
    "text",
    "reply_markup",
    "inline_keyboard",
    "keyboard",
    "url",
    "callback_data",
    "answer",
    "switch_inline_query_current_chat",
    "switch_inline_query",
    "copy_text",
    "request_contact",
    "request_location",
    "request_poll",
    "one_time_keyboard",
    "remove_keyboard",
    "force_reply",
    "input_field_placeholder",
    "selective",
    "header",
    "body",
    "footer",
    "action",
    "buttons",
    "reply",
    "id",
    "title",
    "sections",
    "rows",
    "description",
];

/// Values of both shapes' closed sets.
const WORDS: &[&str] = &[
    "reply_buttons",
    "reply_keyboard",
    "remove_reply_keyboard",
    "highlight_reply",
    "button",
    "list",
    "reply",
    "text",
    "quiz",
    "regular",
    "987654321",
    "-1001234567890",
    "https://example.com",
    "tg://resolve?domain=x",
    "😀",
];

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_filter_map("finite", |f| serde_json::Number::from_f64(f)
            .map(Value::Number)),
        ".{0,12}".prop_map(Value::String),
        prop::sample::select(WORDS).prop_map(Value::from),
    ];
    let key = prop_oneof![
        prop::sample::select(KEYS).prop_map(str::to_owned),
        "[a-z_]{1,8}"
    ];
    leaf.prop_recursive(5, 48, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..7).prop_map(Value::Array),
            prop::collection::btree_map(key.clone(), inner, 0..6)
                .prop_map(|map| Value::Object(map.into_iter().collect())),
        ]
    })
}

/// How to damage a valid body at a chosen place.
#[derive(Debug, Clone)]
enum Damage {
    Replace(Value),
    Remove,
    Insert(String, Value),
}

fn arb_damage() -> impl Strategy<Value = Damage> {
    prop_oneof![
        arb_json().prop_map(Damage::Replace),
        Just(Damage::Remove),
        (
            prop::sample::select(KEYS).prop_map(str::to_owned),
            arb_json()
        )
            .prop_map(|(key, value)| Damage::Insert(key, value)),
    ]
}

/// Walks `choices` down into `value` and damages what it reaches.
fn damage(value: &mut Value, choices: &[usize], damage: Damage) {
    let (child, rest) = match (value, choices.split_first()) {
        (Value::Object(map), Some((choice, rest))) if !map.is_empty() => {
            let key = map.keys().nth(choice % map.len()).cloned().unwrap();
            if rest.is_empty() && matches!(damage, Damage::Remove) {
                map.remove(&key);
                return;
            }
            (map.get_mut(&key).unwrap(), rest)
        }
        (Value::Array(items), Some((choice, rest))) if !items.is_empty() => {
            let index = choice % items.len();
            if rest.is_empty() && matches!(damage, Damage::Remove) {
                items.remove(index);
                return;
            }
            (&mut items[index], rest)
        }
        (value, _) => {
            match damage {
                Damage::Replace(new) => *value = new,
                Damage::Insert(key, new) => {
                    if let Value::Object(map) = value {
                        map.insert(key, new);
                    }
                }
                Damage::Remove => *value = Value::Null,
            }
            return;
        }
    };
    self::damage(child, rest, damage)
}

#[track_caller]
fn assert_sound(result: Result<InteractiveRequest, ApiError>) {
    match result {
        Ok(request) => assert_round_trips(&request),
        Err(err) => assert!(
            matches!(
                err.code,
                ErrorCode::Missing | ErrorCode::Invalid | ErrorCode::Rejected
            ),
            "unexpected code in {err}"
        ),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(body in prop::collection::vec(any::<u8>(), 0..256)) {
        assert_sound(InteractiveRequest::from_json(&body));
    }

    #[test]
    fn arbitrary_json_never_panics(value in arb_json()) {
        assert_sound(InteractiveRequest::from_value(&value));
        assert_sound(InteractiveRequest::from_json(&serde_json::to_vec(&value).unwrap()));
        for result in [
            Markup::from_value(&value, "reply_markup"),
            Markup::from_reply_markup(&value, "reply_markup"),
        ] {
            if let Err(err) = result {
                prop_assert!(matches!(err.code, ErrorCode::Missing | ErrorCode::Invalid | ErrorCode::Rejected));
            }
        }
    }

    #[test]
    fn damaged_fixtures_never_panic(
        fixture in 0..FIXTURES.len(),
        choices in prop::collection::vec(any::<usize>(), 0..7),
        harm in arb_damage(),
    ) {
        let mut value: Value = serde_json::from_slice(FIXTURES[fixture].1).unwrap();
        damage(&mut value, &choices, harm);
        assert_sound(InteractiveRequest::from_value(&value));
    }
}

// ---------------------------------------------------------------------------
// `telegate validate`

fn validate(args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_telegate"))
        .arg("validate")
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run telegate");
    if let Some(input) = stdin {
        child.stdin.take().unwrap().write_all(input).unwrap();
    }
    child.wait_with_output().unwrap()
}

fn stdout(output: &Output) -> &str {
    std::str::from_utf8(&output.stdout).unwrap()
}

#[test]
fn validate_prints_a_summary_of_a_valid_body() {
    let output = validate(&["tests/fixtures/reply_buttons.json"], None);
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    let out = stdout(&output);
    assert!(
        out.starts_with("valid reply_buttons message to chat 987654321"),
        "{out}"
    );
    assert!(out.contains("replyInlineMarkup"), "{out}");
    assert!(
        out.contains("inlineButtonTypeUrl url=\"https://example.com/orders/1234\""),
        "{out}"
    );
    assert!(
        out.contains("inlineButtonTypeSwitchInline same_peer query=\"Reschedule please\""),
        "{out}"
    );
}

#[test]
fn validate_prints_the_tl_as_hex() {
    for (name, body) in FIXTURES {
        let output = validate(&["--tl-hex", &format!("tests/fixtures/{name}")], None);
        assert_eq!(output.status.code(), Some(0), "{name}: {output:?}");
        let expected: String = InteractiveRequest::from_json(body)
            .unwrap()
            .reply_markup()
            .to_bytes()
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect();
        assert_eq!(stdout(&output), format!("{expected}\n"), "{name}");
    }
    // replyKeyboardHide#a03e5b85 with no flags: the id little-endian, then 0.
    let output = validate(
        &["--tl-hex", "tests/fixtures/remove_reply_keyboard.json"],
        None,
    );
    assert_eq!(stdout(&output), "855b3ea000000000\n");
}

#[test]
fn validate_prints_the_api_error_of_an_invalid_body() {
    let body = br#"{"destination_user_id": "1", "telegram_interactive_message": {"type": "poll", "text": "x", "reply_markup": {}}}"#;
    let output = validate(&["-"], Some(body));
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let err = InteractiveRequest::from_json(body).unwrap_err();
    assert_eq!(
        stdout(&output),
        format!("{}\n", serde_json::to_string(&err).unwrap())
    );
    let printed: Value = serde_json::from_str(stdout(&output)).unwrap();
    assert_eq!(printed["error_code"], 4);

    let output = validate(&["--tl-hex"], Some(b"{ nope"));
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    assert!(
        stdout(&output).starts_with(r#"{"error_code":4,"error":"malformed JSON: "#),
        "{}",
        stdout(&output)
    );
}

#[test]
fn validate_reads_standard_input() {
    let output = validate(&[], Some(fixture!("whatsapp_list.json")));
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    assert!(
        stdout(&output).contains("data=\"SECTION_2_ROW_2_ID\""),
        "{}",
        stdout(&output)
    );
}

#[test]
fn validate_reports_an_unreadable_file() {
    let output = validate(&["tests/fixtures/no_such_file.json"], None);
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    assert!(output.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("cannot read tests/fixtures/no_such_file.json"),
        "{stderr}"
    );
}
