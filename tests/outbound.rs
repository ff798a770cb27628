//! What a support desk does with a message after it is queued, end to end
//! against the sandbox with `telegate run` as a child process: send options
//! (formatting, reply, flags, correlation, schedule), edit, delete and
//! cancel through the durable queue, each checked in what the user's chat
//! shows.

mod worker_support;

use std::time::Duration;

use serde_json::{Value, json};
use telegate::sandbox::telegram::BOT_ID;
use telegate::sandbox::telegram::{AccountId, Pressed, UserClick};
use tokio::time::{Instant, sleep};
use worker_support::{PATIENCE, Pace, World};

const MESSAGES: &str = "/api/v1/telegram/messages";
const INTERACTIVE: &str = "/api/v1/telegram/interactive";

/// A text job held by `send_at` until `secs` from now: its id and that time.
async fn post_held(
    world: &World,
    user: AccountId,
    text: &str,
    secs: i64,
) -> (i64, jiff::Timestamp) {
    let at = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(secs);
    let (status, queued) = post(
        world,
        MESSAGES,
        json!({"destination_user_id": user, "text": text, "send_at": at.to_string()}),
    )
    .await;
    assert_eq!(status, 202, "{queued}");
    (queued["job_id"].as_i64().unwrap(), at)
}

async fn post(world: &World, path: &str, body: Value) -> (u16, Value) {
    let answer = world
        .client
        .post(path, &[], body.to_string())
        .await
        .unwrap();
    (answer.status.as_u16(), answer.json().unwrap_or(Value::Null))
}

async fn delete(world: &World, path: &str) -> (u16, Value) {
    let mut connection = world.client.connect().await.unwrap();
    let answer = connection
        .send(hyper::Method::DELETE, path, &[], Default::default())
        .await
        .unwrap();
    (answer.status.as_u16(), answer.json().unwrap_or(Value::Null))
}

/// The user's chat as the sandbox shows it.
fn chat(world: &World, user: AccountId) -> Value {
    world.sandbox.telegram().chat(user, BOT_ID).unwrap()
}

/// The chat's message with Telegram id `id`, if it is there.
fn message(world: &World, user: AccountId, id: i64) -> Option<Value> {
    chat(world, user)["messages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"].as_i64() == Some(id))
        .cloned()
}

/// Polls until `done` holds for the user's chat.
async fn chat_until(world: &World, user: AccountId, what: &str, done: impl Fn(&Value) -> bool) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let chat = chat(world, user);
        if done(&chat) {
            return;
        }
        assert!(Instant::now() < deadline, "{what} never happened: {chat}");
        sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until job `id` is final (`sent`, `failed` or `cancelled`).
async fn settled(world: &World, id: i64) -> Value {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let job = world.job(id).await;
        if ["sent", "failed", "cancelled"].contains(&job["state"].as_str().unwrap_or("")) {
            return job;
        }
        assert!(Instant::now() < deadline, "job {id} never settled: {job}");
        sleep(Duration::from_millis(20)).await;
    }
}

/// Sends `body` to `path` and waits until it is sent: (telegate id,
/// Telegram id).
async fn sent(world: &World, path: &str, body: Value) -> (i64, i64) {
    let (status, answer) = post(world, &format!("{path}?wait=30"), body).await;
    assert_eq!(status, 201, "{answer}");
    let channel: i64 = answer["channel_message_id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    (answer["message_id"].as_i64().unwrap(), channel)
}

/// Telegram's id of a sent job's first message (a string, like the seed's).
fn channel_id(job: &Value) -> i64 {
    let id = &job["parts"][0]["channel_message_id"];
    id.as_i64()
        .or_else(|| id.as_str().and_then(|id| id.parse().ok()))
        .unwrap_or_else(|| panic!("no channel_message_id in {job}"))
}

/// The event whose `id` is `event_id`, waited for.
async fn event(world: &World, event_id: &str) -> Value {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let answer = world
            .client
            .get("/api/v1/events?after=0&limit=1000")
            .await
            .unwrap();
        let body = String::from_utf8(answer.body.to_vec()).unwrap();
        for line in body.lines() {
            let line: Value = serde_json::from_str(line).unwrap();
            if line["event"]["id"] == event_id {
                return line["event"].clone();
            }
        }
        assert!(Instant::now() < deadline, "no event {event_id}: {body}");
        sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn formatting_and_replies_reach_the_users_chat() {
    let world = World::start(Pace::Unlimited).await;
    let user = world.users(1)[0];
    let users_message = chat(&world, user)["messages"][0]["id"].as_i64().unwrap();

    // HTML, a reply to the user's own message by Telegram's id.
    let (first, first_channel) = sent(
        &world,
        MESSAGES,
        json!({"destination_user_id": user, "parse_mode": "HTML",
               "text": "<b>Order 42</b> is on its way &amp; <i>insured</i>",
               "reply_to_channel_message_id": users_message, "quote": "where"}),
    )
    .await;
    let shown = message(&world, user, first_channel).unwrap();
    assert_eq!(shown["text"], "Order 42 is on its way & insured");
    assert_eq!(shown["reply_to"], users_message);

    // MarkdownV2 on an interactive body, replying to telegate's own message
    // by telegate's id.
    let (_, second_channel) = sent(
        &world,
        INTERACTIVE,
        json!({"destination_user_id": user.to_string(), "parse_mode": "MarkdownV2",
               "reply_to_message_id": first,
               "telegram_interactive_message": {"type": "reply_buttons",
                   "text": "Rate the *delivery*\\!",
                   "reply_markup": {"inline_keyboard": [[{"text": "👍", "callback_data": "up"}]]}}}),
    )
    .await;
    let shown = message(&world, user, second_channel).unwrap();
    assert_eq!(shown["text"], "Rate the delivery!");
    assert_eq!(shown["reply_to"], first_channel);

    // Markup Telegram would refuse is refused at enqueue, naming offset
    // and rule; lengths count after parsing.
    let (status, error) = post(
        &world,
        MESSAGES,
        json!({"destination_user_id": user, "parse_mode": "MarkdownV2", "text": "Done."}),
    )
    .await;
    assert_eq!(status, 400, "{error}");
    assert_eq!(error["error_code"], 5);
    let text = error["error"].as_str().unwrap();
    assert!(
        text.contains("character 4") && text.contains("reserved"),
        "{text}"
    );
    let long = format!("<b>{}</b>", "x".repeat(4096));
    let (status, error) = post(
        &world,
        MESSAGES,
        json!({"destination_user_id": user, "parse_mode": "HTML", "text": long}),
    )
    .await;
    assert_eq!(status, 202, "4096 units after parsing fit: {error}");
    world.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reference_and_metadata_come_back_with_the_job_its_result_and_its_clicks() {
    let world = World::start(Pace::Unlimited).await;
    let user = world.users(1)[0];
    let (status, queued) = post(
        &world,
        INTERACTIVE,
        json!({"destination_user_id": user.to_string(),
               "reference": "ticket-981", "metadata": {"crm": {"case": 981}, "agent": "ann"},
               "telegram_interactive_message": {"type": "reply_buttons", "text": "Solved?",
                   "reply_markup": {"inline_keyboard": [[
                       {"text": "Yes", "callback_data": "yes", "answer": {"text": "Thanks!"}}]]}}}),
    )
    .await;
    assert_eq!(status, 202, "{queued}");
    let job_id = queued["job_id"].as_i64().unwrap();
    let job = settled(&world, job_id).await;
    assert_eq!(job["state"], "sent", "{job}");
    assert_eq!(job["reference"], "ticket-981");
    assert_eq!(job["metadata"]["crm"]["case"], 981);

    let result = event(&world, &format!("job:{job_id}:sent")).await;
    assert_eq!(result["reference"], "ticket-981");
    assert_eq!(result["metadata"]["agent"], "ann");

    let channel = i32::try_from(channel_id(&job)).unwrap();
    let pressed = world
        .sandbox
        .telegram()
        .click(
            user,
            UserClick::Callback {
                message_id: channel,
                data: b"yes".to_vec(),
            },
        )
        .await
        .unwrap();
    let Pressed::Answered(outcome) = pressed else {
        panic!("not answered");
    };
    assert_eq!(outcome.result.unwrap().message.as_deref(), Some("Thanks!"));
    let deadline = Instant::now() + PATIENCE;
    let clicked = loop {
        let answer = world
            .client
            .get("/api/v1/events?after=0&limit=1000")
            .await
            .unwrap();
        let body = String::from_utf8(answer.body.to_vec()).unwrap();
        let found = body
            .lines()
            .map(|line| serde_json::from_str::<Value>(line).unwrap())
            .find(|line| line["event"]["results"][0]["type"] == "clicked");
        if let Some(line) = found {
            break line["event"]["results"][0].clone();
        }
        assert!(Instant::now() < deadline, "no click event: {body}");
        sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(clicked["reference"], "ticket-981");
    assert_eq!(clicked["metadata"]["job"]["crm"]["case"], 981);
    assert_eq!(clicked["metadata"]["button"]["payload"], "yes");
    world.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edit_goes_out_after_its_message_even_when_queued_before_it_was_sent() {
    let world = World::start(Pace::Unlimited).await;
    let user = world.users(1)[0];
    // The send and its edit are queued back to back: the edit waits for
    // the send, in the chat's line.
    let (status, queued) = post(
        &world,
        INTERACTIVE,
        json!({"destination_user_id": user.to_string(),
               "telegram_interactive_message": {"type": "reply_buttons", "text": "Pick a slot",
                   "reply_markup": {"inline_keyboard": [[{"text": "9:00", "callback_data": "9"}]]}}}),
    )
    .await;
    assert_eq!(status, 202, "{queued}");
    let send_job = world.job(queued["job_id"].as_i64().unwrap()).await;
    let message_id = send_job["parts"][0]["message_id"].as_i64().unwrap();
    let (status, edit) = post(
        &world,
        &format!("/api/v1/telegram/messages/{message_id}/edit"),
        json!({"text": "Booked for <b>9:00</b>", "parse_mode": "HTML",
               "reply_markup": {"inline_keyboard": [[{"text": "Cancel", "callback_data": "x"}]]}}),
    )
    .await;
    assert_eq!(status, 202, "{edit}");
    let edit_job = settled(&world, edit["job_id"].as_i64().unwrap()).await;
    assert_eq!(edit_job["state"], "sent", "{edit_job}");
    let sent_job = settled(&world, send_job["job_id"].as_i64().unwrap()).await;
    let channel = channel_id(&sent_job);
    let shown = message(&world, user, channel).unwrap();
    assert_eq!(shown["text"], "Booked for 9:00");
    assert!(shown["edit_date"].is_i64(), "{shown}");
    assert_eq!(
        shown["reply_markup"]["rows"][0][0]["text"], "Cancel",
        "{shown}"
    );

    // The same edit again changes nothing: Telegram's MESSAGE_NOT_MODIFIED
    // counts as done.
    let path = format!("/api/v1/telegram/messages/{message_id}/edit?wait=30");
    let (status, again) = post(
        &world,
        &path,
        json!({"text": "Booked for <b>9:00</b>", "parse_mode": "HTML",
               "reply_markup": {"inline_keyboard": [[{"text": "Cancel", "callback_data": "x"}]]}}),
    )
    .await;
    assert_eq!(status, 201, "{again}");

    // An unknown message, a bad body, a keyboard Telegram cannot edit in.
    let (status, _) = post(
        &world,
        "/api/v1/telegram/messages/999999/edit",
        json!({"text": "x"}),
    )
    .await;
    assert_eq!(status, 404);
    let (status, error) = post(
        &world,
        &path,
        json!({"reply_markup": {"remove_keyboard": true}}),
    )
    .await;
    assert_eq!(
        (status, error["error_code"].as_i64()),
        (400, Some(5)),
        "{error}"
    );
    world.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edit_of_a_message_that_was_never_sent_fails_with_code_5() {
    let world = World::start(Pace::Unlimited).await;
    let user = world.users(1)[0];
    // A send held for a minute, cancelled; its edit then has nothing to edit.
    let (job_id, _) = post_held(&world, user, "Later", 60).await;
    let message_id = world.job(job_id).await["parts"][0]["message_id"]
        .as_i64()
        .unwrap();
    let (status, cancelled) = delete(&world, &format!("/api/v1/jobs/{job_id}")).await;
    assert_eq!(
        (status, &cancelled["state"]),
        (200, &json!("cancelled")),
        "{cancelled}"
    );
    let (status, edit) = post(
        &world,
        &format!("/api/v1/telegram/messages/{message_id}/edit?wait=30"),
        json!({"text": "Sooner"}),
    )
    .await;
    assert_eq!(status, 400, "{edit}");
    assert_eq!(edit["error_code"], 5);
    assert!(
        edit["error"].as_str().unwrap().contains("never sent"),
        "{edit}"
    );
    assert!(
        chat(&world, user)["messages"]
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["from"] != "bot")
    );
    world.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_is_held_until_send_at_and_can_be_cancelled_until_it_goes_out() {
    let world = World::start(Pace::Unlimited).await;
    let user = world.users(1)[0];
    let (held, at) = post_held(&world, user, "Your appointment is now", 2).await;
    let job = settled(&world, held).await;
    assert_eq!(job["state"], "sent", "{job}");
    let sent_at: jiff::Timestamp = job["updated_at"].as_str().unwrap().parse().unwrap();
    assert!(sent_at >= at, "sent at {sent_at}, held until {at}");
    chat_until(&world, user, "the held message", |chat| {
        chat["messages"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["text"] == "Your appointment is now")
    })
    .await;

    // Cancelled while held: never sent, `cancelled` in the stream, and a
    // second cancel (or one of a sent job) is 409 naming the state.
    let (cancelled, _) = post_held(&world, user, "Never", 3600).await;
    let (status, answer) = delete(&world, &format!("/api/v1/jobs/{cancelled}")).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["state"], "cancelled");
    let (status, answer) = delete(&world, &format!("/api/v1/jobs/{cancelled}")).await;
    assert_eq!(status, 409, "{answer}");
    assert!(
        answer["error"].as_str().unwrap().contains("is cancelled"),
        "{answer}"
    );
    let (status, answer) = delete(&world, &format!("/api/v1/jobs/{held}")).await;
    assert_eq!(
        (status, &answer["state"]),
        (409, &json!("sent")),
        "{answer}"
    );
    let (status, _) = delete(&world, "/api/v1/jobs/987654").await;
    assert_eq!(status, 404);
    let result = event(&world, &format!("job:{cancelled}:cancelled")).await;
    assert_eq!(result["status"], "cancelled");
    assert!(
        chat(&world, user)["messages"]
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["text"] != "Never")
    );

    // More than 30 days ahead is refused.
    let far = jiff::Timestamp::now() + jiff::SignedDuration::from_hours(24 * 31);
    let (status, error) = post(
        &world,
        MESSAGES,
        json!({"destination_user_id": user, "text": "x", "send_at": far.to_string()}),
    )
    .await;
    assert_eq!(
        (status, error["error_code"].as_i64()),
        (400, Some(5)),
        "{error}"
    );
    world.stop().await;
}

/// The user clicks the button with `data` under message `channel`; the
/// answer's text.
async fn click(world: &World, user: AccountId, channel: i64, data: &str) -> Option<String> {
    let pressed = world
        .sandbox
        .telegram()
        .click(
            user,
            UserClick::Callback {
                message_id: i32::try_from(channel).unwrap(),
                data: data.as_bytes().to_vec(),
            },
        )
        .await
        .unwrap();
    let Pressed::Answered(outcome) = pressed else {
        panic!("the click on `{data}` was not answered");
    };
    outcome.result.unwrap().message
}

/// The labels of the inline keyboard under message `channel` (`None`:
/// no keyboard).
fn labels(world: &World, user: AccountId, channel: i64) -> Option<Vec<String>> {
    let shown = message(world, user, channel).unwrap();
    let markup = shown["reply_markup"].as_object()?;
    Some(
        markup["rows"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|row| row.as_array().unwrap())
            .map(|button| button["text"].as_str().unwrap().to_owned())
            .collect(),
    )
}

/// Sends an interactive message with `buttons` to `user`; its Telegram id.
async fn buttons(world: &World, user: AccountId, text: &str, buttons: Value) -> i64 {
    let (_, channel) = sent(
        world,
        INTERACTIVE,
        json!({"destination_user_id": user.to_string(),
               "telegram_interactive_message": {"type": "reply_buttons", "text": text,
                   "reply_markup": {"inline_keyboard": buttons}}}),
    )
    .await;
    channel
}

/// The click events so far, in order: (button payload, repeat flag).
async fn clicks(world: &World) -> Vec<(String, bool)> {
    let answer = world
        .client
        .get("/api/v1/events?after=0&limit=1000")
        .await
        .unwrap();
    String::from_utf8(answer.body.to_vec())
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str::<Value>(line).unwrap())
        .filter(|line| line["event"]["results"][0]["type"] == "clicked")
        .map(|line| {
            let result = &line["event"]["results"][0];
            (
                result["metadata"]["button"]["payload"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
                result["repeat"] == true,
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_click_changes_the_message_right_after_the_answer() {
    let mut world = World::start(Pace::Unlimited).await;
    let user = world.users(1)[0];

    // remove_keyboard + edit_text: the answer, then the text changes and
    // the keyboard is gone.
    let first = buttons(
        &world,
        user,
        "Did your package arrive?",
        json!([[{"text": "Yes", "callback_data": "yes", "answer": {"text": "Great!"},
                 "on_click": {"remove_keyboard": true, "edit_text": "Thanks for telling us."}},
                {"text": "No", "callback_data": "no"}]]),
    )
    .await;
    assert_eq!(
        click(&world, user, first, "yes").await.as_deref(),
        Some("Great!")
    );
    chat_until(&world, user, "the keyboard removed", |_| {
        let shown = message(&world, user, first).unwrap();
        shown["text"] == "Thanks for telling us." && shown["reply_markup"].is_null()
    })
    .await;

    // replace_keyboard: another keyboard in its place, whose stored answer
    // is used for its clicks.
    let second = buttons(
        &world,
        user,
        "Rate us",
        json!([[{"text": "👍", "callback_data": "up", "answer": {"text": "Noted"},
                 "on_click": {"replace_keyboard": [[{"text": "Undo", "callback_data": "undo",
                                                     "answer": {"text": "Undone"}}]]}}]]),
    )
    .await;
    assert_eq!(
        click(&world, user, second, "up").await.as_deref(),
        Some("Noted")
    );
    chat_until(&world, user, "the keyboard replaced", |_| {
        labels(&world, user, second) == Some(vec!["Undo".to_owned()])
    })
    .await;
    assert_eq!(
        click(&world, user, second, "undo").await.as_deref(),
        Some("Undone")
    );
    assert_eq!(message(&world, user, second).unwrap()["text"], "Rate us");

    // mark: the clicked labels get the prefix, click after click.
    let third = buttons(
        &world,
        user,
        "Toppings?",
        json!([[{"text": "Cheese", "callback_data": "cheese", "answer": {"text": "ok"},
                 "on_click": {"mark": "✓ "}},
                {"text": "Olives", "callback_data": "olives", "answer": {"text": "ok"},
                 "on_click": {"mark": "✓ "}}]]),
    )
    .await;
    click(&world, user, third, "cheese").await;
    chat_until(&world, user, "one mark", |_| {
        labels(&world, user, third) == Some(vec!["✓ Cheese".to_owned(), "Olives".to_owned()])
    })
    .await;
    click(&world, user, third, "olives").await;
    chat_until(&world, user, "two marks", |_| {
        labels(&world, user, third) == Some(vec!["✓ Cheese".to_owned(), "✓ Olives".to_owned()])
    })
    .await;

    // once: the first click counts; later ones get answer_after_first (or
    // the default) and are events flagged `repeat`.
    let fourth = buttons(
        &world,
        user,
        "Confirm the order?",
        json!([[{"text": "Confirm", "callback_data": "confirm", "answer": {"text": "Confirmed"},
                 "on_click": {"once": true, "answer_after_first": {"text": "Already confirmed"},
                              "mark": "✓ "}},
                {"text": "Later", "callback_data": "later", "on_click": {"once": true}}]]),
    )
    .await;
    assert_eq!(
        click(&world, user, fourth, "confirm").await.as_deref(),
        Some("Confirmed")
    );
    assert_eq!(
        click(&world, user, fourth, "confirm").await.as_deref(),
        Some("Already confirmed")
    );
    click(&world, user, fourth, "later").await;
    assert_eq!(
        click(&world, user, fourth, "later").await.as_deref(),
        Some("already answered")
    );
    chat_until(&world, user, "the once mark", |_| {
        labels(&world, user, fourth) == Some(vec!["✓ Confirm".to_owned(), "Later".to_owned()])
    })
    .await;
    // The first click stays the first across a restart of the worker.
    world.worker().kill();
    world.start_worker().await;
    assert_eq!(
        click(&world, user, fourth, "confirm").await.as_deref(),
        Some("Already confirmed")
    );
    let deadline = Instant::now() + PATIENCE;
    let want = [
        ("yes", false),
        ("up", false),
        ("undo", false),
        ("cheese", false),
        ("olives", false),
        ("confirm", false),
        ("confirm", true),
        ("later", false),
        ("later", true),
        ("confirm", true),
    ];
    loop {
        let seen = clicks(&world).await;
        let seen: Vec<(&str, bool)> = seen.iter().map(|(d, r)| (d.as_str(), *r)).collect();
        if seen == want {
            break;
        }
        assert!(Instant::now() < deadline, "click events: {seen:?}");
        sleep(Duration::from_millis(20)).await;
    }
    // The edits are jobs of the chat like any other; the repeats made none.
    let jobs = world
        .client
        .get("/api/v1/jobs")
        .await
        .unwrap()
        .json()
        .unwrap();
    let edits = jobs["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|job| job["kind"] == "edit")
        .count();
    assert_eq!(edits, 5, "{jobs}");

    // A bad on_click is refused naming its field and rule.
    let (status, error) = post(
        &world,
        INTERACTIVE,
        json!({"destination_user_id": user.to_string(),
               "telegram_interactive_message": {"type": "reply_buttons", "text": "x",
                   "reply_markup": {"inline_keyboard": [[{"text": "A", "callback_data": "a",
                       "on_click": {"remove_keyboard": true, "mark": "✓"}}]]}}}),
    )
    .await;
    assert_eq!(
        (status, error["error_code"].as_i64()),
        (400, Some(5)),
        "{error}"
    );
    let text = error["error"].as_str().unwrap();
    assert!(
        text.contains("inline_keyboard[0][0].on_click.mark") && text.contains("remove_keyboard"),
        "{text}"
    );
    world.stop().await;
}

/// A job's stored form is what its clicks are answered and followed up
/// from, even when today's rules would refuse it (as after an upgrade that
/// tightened one): here an `answer` text over the limit and fields this
/// build does not know, written into the store directly while the worker
/// is down (it keeps recent sends in memory).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clicks_are_answered_from_a_stored_form_todays_rules_refuse() {
    let mut world = World::start(Pace::Unlimited).await;
    let user = world.users(1)[0];
    let (status, sent) = post(
        &world,
        &format!("{INTERACTIVE}?wait=30"),
        json!({"destination_user_id": user.to_string(),
               "telegram_interactive_message": {"type": "reply_buttons", "text": "Arrived?",
                   "reply_markup": {"inline_keyboard": [[
                       {"text": "Yes", "callback_data": "yes", "answer": {"text": "ok"},
                        "on_click": {"edit_text": "Thanks."}}]]}}}),
    )
    .await;
    assert_eq!(status, 201, "{sent}");
    let job = sent["job_id"].as_i64().unwrap();
    let channel = channel_id(&world.job(job).await);

    // 150 emoji: 300 UTF-16 code units, over the 200 the rules allow (and
    // within the 200 characters the sandbox's Telegram takes).
    let long = "😀".repeat(150);
    world.worker().kill();
    let payload = worker_support::store::query_text(
        world.dir.path(),
        &format!("SELECT payload FROM jobs WHERE id = {job}"),
    );
    let mut stored: Value = serde_json::from_str(&payload).unwrap();
    let button =
        &mut stored["telegram_interactive_message"]["reply_markup"]["inline_keyboard"][0][0];
    button["answer"] = json!({"text": long, "retired": true});
    button["on_click"]["retired"] = json!(1);
    stored["retired_field"] = json!("written by an older release");
    let stored = stored.to_string();
    assert!(
        telegate::interactive::InteractiveRequest::from_json(stored.as_bytes()).is_err(),
        "today's rules must refuse {stored}"
    );
    let quoted = stored.replace('\'', "''");
    worker_support::store::execute(
        world.dir.path(),
        &format!("UPDATE jobs SET payload = '{quoted}' WHERE id = {job}"),
    );
    world.start_worker().await;

    assert_eq!(
        click(&world, user, channel, "yes").await.as_deref(),
        Some(long.as_str())
    );
    chat_until(&world, user, "the stored on_click", |_| {
        message(&world, user, channel).unwrap()["text"] == "Thanks."
    })
    .await;
    world.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_typing_entities_and_flags_as_the_users_chat_shows_them() {
    let world = World::start(Pace::Unlimited).await;
    let user = world.users(1)[0];
    // Entities given directly, and every flag.
    let (id, channel) = sent(
        &world,
        MESSAGES,
        json!({"destination_user_id": user, "text": "Track order 42 here",
               "entities": [{"type": "bold", "offset": 12, "length": 2},
                            {"type": "text_link", "offset": 15, "length": 4,
                             "url": "https://example.com/t/42"}],
               "disable_notification": true, "protect_content": true, "link_preview": false}),
    )
    .await;
    let shown = message(&world, user, channel).unwrap();
    assert_eq!(shown["text"], "Track order 42 here");
    let entities = shown["entities"].as_array().unwrap();
    assert_eq!(entities.len(), 2, "{shown}");
    assert!(
        entities[0]["type"].as_str().unwrap().contains("Bold"),
        "{shown}"
    );
    assert_eq!(
        (&entities[0]["offset"], &entities[0]["length"]),
        (&json!(12), &json!(2))
    );
    assert_eq!(entities[1]["url"], "https://example.com/t/42", "{shown}");
    assert_eq!(
        (&shown["silent"], &shown["noforwards"], &shown["no_webpage"]),
        (&json!(true), &json!(true), &json!(true)),
        "{shown}"
    );
    // Without the flags, none is set.
    let (_, plain) = sent(
        &world,
        MESSAGES,
        json!({"destination_user_id": user, "text": "plain"}),
    )
    .await;
    let shown = message(&world, user, plain).unwrap();
    assert_eq!(
        (&shown["silent"], &shown["noforwards"], &shown["no_webpage"]),
        (&json!(false), &json!(false), &json!(false)),
        "{shown}"
    );

    // Typing: the chat shows the action.
    let (status, taken) = post(
        &world,
        "/api/v1/telegram/chat_action",
        json!({"destination_user_id": user, "action": "typing", "duration_s": 5}),
    )
    .await;
    assert_eq!(status, 200, "{taken}");
    chat_until(&world, user, "typing", |chat| {
        chat["typing"]["action"]
            .as_str()
            .is_some_and(|action| action.contains("Typing"))
    })
    .await;

    // Delete: gone from the chat; a second delete of it fails.
    let (status, deleted) =
        delete(&world, &format!("/api/v1/telegram/messages/{id}?wait=30")).await;
    assert_eq!(status, 201, "{deleted}");
    chat_until(&world, user, "the deletion", |_| {
        message(&world, user, channel).is_none()
    })
    .await;
    assert!(message(&world, user, plain).is_some());
    let (status, _) = delete(&world, "/api/v1/telegram/messages/987654").await;
    assert_eq!(status, 404);
    world.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_held_by_send_at_does_not_hold_its_chats_later_jobs() {
    let world = World::start(Pace::Unlimited).await;
    let user = world.users(1)[0];
    let (held, at) = post_held(&world, user, "Reminder", 3).await;
    let held_message = world.job(held).await["parts"][0]["message_id"]
        .as_i64()
        .unwrap();
    // An edit of the held message waits for it; a later send does not.
    let (status, edit) = post(
        &world,
        &format!("/api/v1/telegram/messages/{held_message}/edit"),
        json!({"text": "Reminder (edited)"}),
    )
    .await;
    assert_eq!(status, 202, "{edit}");
    let (status, later) = post(
        &world,
        &format!("{MESSAGES}?wait=30"),
        json!({"destination_user_id": user, "text": "Right now"}),
    )
    .await;
    assert_eq!(
        status, 201,
        "the later send went out while the first was held: {later}"
    );
    assert!(jiff::Timestamp::now() < at, "sent before the hold ended");
    assert_eq!(world.bot_texts(user), ["Right now"]);
    let held_job = settled(&world, held).await;
    assert_eq!(held_job["state"], "sent", "{held_job}");
    let sent_at: jiff::Timestamp = held_job["updated_at"].as_str().unwrap().parse().unwrap();
    assert!(sent_at >= at, "sent at {sent_at}, held until {at}");
    let edit_job = settled(&world, edit["job_id"].as_i64().unwrap()).await;
    assert_eq!(edit_job["state"], "sent", "{edit_job}");
    assert_eq!(world.bot_texts(user), ["Right now", "Reminder (edited)"]);
    world.stop().await;
}

/// One step of a chat's sequence in the property test.
#[derive(Debug, Clone)]
enum Step {
    /// A send; `cancel`: held an hour and cancelled right after enqueue.
    Send { text: String, cancel: bool },
    /// An edit of the chat's `target`-th send (modulo the sends so far).
    Edit { target: usize, text: String },
    /// A delete of the chat's `target`-th send.
    Delete { target: usize },
}

fn step() -> impl proptest::strategy::Strategy<Value = Step> {
    use proptest::prelude::*;
    prop_oneof![
        3 => ("[a-z]{1,6}", proptest::bool::weighted(0.25))
            .prop_map(|(text, cancel)| Step::Send { text, cancel }),
        2 => (0usize..8, "[a-z]{1,6}").prop_map(|(target, text)| Step::Edit { target, text }),
        1 => (0usize..8).prop_map(|target| Step::Delete { target }),
    ]
}

/// What a chat's sequence implies: each send's final text, `None` for a
/// cancelled or deleted one.
struct Expected {
    texts: Vec<Option<String>>,
    /// Whether each send goes out (is not cancelled): its delete then
    /// succeeds, even a second one (Telegram deletes what is there).
    sent: Vec<bool>,
}

impl Expected {
    fn new() -> Self {
        Expected {
            texts: Vec::new(),
            sent: Vec::new(),
        }
    }
}

/// Runs `steps` for `user`: enqueues them in order (cancelling as told);
/// returns every job with whether it must end `sent`.
async fn run_steps(
    world: &World,
    user: AccountId,
    steps: &[Step],
    expected: &mut Expected,
    sends: &mut Vec<i64>,
) -> Vec<(i64, bool)> {
    let mut jobs = Vec::new();
    for step in steps {
        match step {
            Step::Send { text, cancel } => {
                let mut body = json!({"destination_user_id": user, "text": text});
                if *cancel {
                    let later = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(3600);
                    body["send_at"] = json!(later.to_string());
                }
                let (status, queued) = post(world, MESSAGES, body).await;
                assert_eq!(status, 202, "{queued}");
                let id = queued["job_id"].as_i64().unwrap();
                let message_id = world.job(id).await["parts"][0]["message_id"]
                    .as_i64()
                    .unwrap();
                if *cancel {
                    let (status, answer) = delete(world, &format!("/api/v1/jobs/{id}")).await;
                    assert_eq!(status, 200, "{answer}");
                    expected.texts.push(None);
                } else {
                    jobs.push((id, true));
                    expected.texts.push(Some(text.clone()));
                }
                expected.sent.push(!cancel);
                sends.push(message_id);
            }
            Step::Edit { target, text } => {
                if sends.is_empty() {
                    continue;
                }
                let target = target % sends.len();
                let (status, queued) = post(
                    world,
                    &format!("/api/v1/telegram/messages/{}/edit", sends[target]),
                    json!({"text": text}),
                )
                .await;
                assert_eq!(status, 202, "{queued}");
                let alive = expected.texts[target].is_some();
                if alive {
                    expected.texts[target] = Some(text.clone());
                }
                jobs.push((queued["job_id"].as_i64().unwrap(), alive));
            }
            Step::Delete { target } => {
                if sends.is_empty() {
                    continue;
                }
                let target = target % sends.len();
                let (status, queued) = delete(
                    world,
                    &format!("/api/v1/telegram/messages/{}", sends[target]),
                )
                .await;
                assert_eq!(status, 202, "{queued}");
                // Gone from the chat; a later edit of it fails, a later
                // delete finds nothing to do and succeeds; a delete of a
                // message never sent fails.
                expected.texts[target] = None;
                jobs.push((queued["job_id"].as_i64().unwrap(), expected.sent[target]));
            }
        }
    }
    jobs
}

#[test]
fn random_sends_edits_deletes_and_cancels_end_as_the_sequence_implies_across_a_sigkill() {
    use proptest::prelude::*;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let config = ProptestConfig {
        cases: 8,
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    let chats = proptest::collection::vec(proptest::collection::vec(step(), 1..10), 2..4);
    proptest!(config, |(sequences in chats)| {
        runtime.block_on(async {
            let mut world = World::start(Pace::Unlimited).await;
            let users = world.users(sequences.len());
            let mut expected: Vec<Expected> = users.iter().map(|_| Expected::new()).collect();
            let mut sends: Vec<Vec<i64>> = users.iter().map(|_| Vec::new()).collect();
            let mut jobs = Vec::new();
            // The first half of every chat's steps, then a SIGKILL while
            // they go out, a restart, and the rest.
            for (index, steps) in sequences.iter().enumerate() {
                let half = &steps[..steps.len() / 2];
                jobs.extend(run_steps(&world, users[index], half, &mut expected[index], &mut sends[index]).await);
            }
            world.worker().kill();
            world.worker = Some(worker_support::Worker::start(world.dir.path()).await);
            for (index, steps) in sequences.iter().enumerate() {
                let rest = &steps[steps.len() / 2..];
                jobs.extend(run_steps(&world, users[index], rest, &mut expected[index], &mut sends[index]).await);
            }
            for (id, must_send) in &jobs {
                let job = settled(&world, *id).await;
                let want = if *must_send { "sent" } else { "failed" };
                assert_eq!(job["state"], want, "{job}");
            }
            for (index, user) in users.iter().enumerate() {
                let seen: Vec<String> = world.bot_texts(*user);
                let implied: Vec<String> = expected[index].texts.iter().flatten().cloned().collect();
                assert_eq!(seen, implied, "chat {index}: {:?}", sequences[index]);
            }
            world.stop().await;
        });
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chat_action_is_taken_and_bad_ones_are_refused_by_field() {
    let world = World::start(Pace::Unlimited).await;
    let user = world.users(1)[0];
    let path = "/api/v1/telegram/chat_action";
    let (status, taken) = post(
        &world,
        path,
        json!({"destination_user_id": user, "action": "typing", "duration_s": 10}),
    )
    .await;
    assert_eq!(status, 200, "{taken}");
    assert_eq!(taken["duration_s"], 10);
    let cases = [
        (
            json!({"destination_user_id": user, "action": "dancing"}),
            4,
            "`action`",
        ),
        (
            json!({"destination_user_id": user, "action": "typing", "duration_s": 61}),
            5,
            "1–60",
        ),
        (
            json!({"destination_user_id": user, "action": "typing", "duration_s": 0}),
            5,
            "1–60",
        ),
        (json!({"action": "typing"}), 1, "destination_user_id"),
        (
            json!({"destination_user_id": user, "action": "typing", "for": 3}),
            4,
            "`for`",
        ),
    ];
    for (body, code, needle) in cases {
        let (status, error) = post(&world, path, body.clone()).await;
        assert_eq!(status, 400, "{body}: {error}");
        assert_eq!(error["error_code"], code, "{body}: {error}");
        assert!(
            error["error"].as_str().unwrap().contains(needle),
            "{body}: {error}"
        );
    }
    // Ephemeral: nothing is queued for it.
    let jobs = world
        .client
        .get("/api/v1/jobs")
        .await
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(jobs["jobs"].as_array().unwrap().len(), 0, "{jobs}");
    world.stop().await;
}
