//! telegate as a drop-in for the seeds' gateways, end to end through the
//! sandbox with `telegate run`: the Octopods curl example and CM.com's two
//! fact-sheet examples, sent as their clients send them with only the base
//! URL changed, answer in the gateway's own shape and reach the chat as the
//! seeds say; every refusal answers in that shape with a specific message.

mod worker_support;

use std::collections::BTreeSet;

use serde_json::{Value, json};
use telegate::api::client::Answer;
use telegate::sandbox::telegram::BOT_ID;
use telegate::sandbox::telegram::{AccountId, NewUser, UserMessage};
use worker_support::{INTERACTIVE, Pace, World};

const CM: &str = "/v1.0/message";

/// The request body of the seed's `curl` example, byte for byte.
const OCTOPODS_CURL: &str = include_str!("fixtures/octopods_curl_reply_buttons.json");
/// The header value of the seed's `curl` example.
const OCTOPODS_KEY: &str = "YOUR_TELEGRAM_CHANNEL_API_KEY";
/// CM.com's fact-sheet examples, byte for byte (`body` given twice included).
const CM_TEXT: &str = include_str!("fixtures/cm/text.json");
const CM_TEXT_AND_IMAGE: &str = include_str!("fixtures/cm/text_and_image.json");
/// The product token of the fact sheet's examples.
const CM_TOKEN: &str = "Your product token";
/// The sandbox's one bot, as `from` names it.
const BOT: &str = "default";

/// A sandbox whose bot's API keys are the seeds' own placeholders: the CM
/// product token and the Octopods key.
async fn keyed_world() -> World {
    World::start_keyed(Pace::Unlimited, "", &[CM_TOKEN, OCTOPODS_KEY]).await
}

/// A sandbox user with id `id` who has written to the bot.
fn user(world: &World, id: AccountId) -> AccountId {
    let telegram = world.sandbox.telegram();
    let user = telegram
        .create_user(NewUser {
            id: Some(id),
            first_name: format!("User {id}"),
            username: None,
            lang_code: None,
        })
        .unwrap();
    telegram
        .user_sends(user.id, BOT_ID, UserMessage::Text("/start".into()), None)
        .unwrap();
    user.id
}

/// A fact-sheet example with its two placeholders filled in: the sender
/// bot and the recipient's chat id (the only bytes that change).
fn cm_example(example: &str, from: &str, to: AccountId) -> String {
    assert!(example.contains("\"Your bot ID\"") && example.contains("\"Recipients Identifier\""));
    example
        .replace("\"Your bot ID\"", &format!("\"{from}\""))
        .replace("\"Recipients Identifier\"", &format!("\"{to}\""))
}

fn keys(body: &Value) -> BTreeSet<&str> {
    body.as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect()
}

async fn post(world: &World, path: &str, headers: &[(&str, &str)], body: String) -> Answer {
    world.client.post(path, headers, body).await.unwrap()
}

/// CM's answer: `status`, `errorCode`, `details`, and one entry per
/// recipient.
fn cm_answer(answer: &Answer, status: u16, code: u16) -> Value {
    let body = answer.json().unwrap();
    assert_eq!(answer.status, status, "{body}");
    assert_eq!(body["errorCode"], code, "{body}");
    assert!(body["details"].is_string(), "{body}");
    assert!(body["messages"].is_array(), "{body}");
    body
}

#[tokio::test]
async fn the_octopods_curl_example_answers_201_as_the_seed_once_sent() {
    let world = World::start_with(Pace::Unlimited, "[api]\nrespond = \"sent\"\n").await;
    let user = user(&world, 987654321);
    let answer = post(
        &world,
        INTERACTIVE,
        &[("X-Octopods-Auth", OCTOPODS_KEY)],
        OCTOPODS_CURL.to_owned(),
    )
    .await;
    let body = answer.json().unwrap();
    assert_eq!(answer.status, 201, "{body}");
    assert_eq!(
        keys(&body),
        BTreeSet::from(["request_id", "message_id", "channel_message_id"]),
        "exactly the seed's fields: {body}"
    );
    assert_eq!(
        Some(body["request_id"].as_str().unwrap()),
        answer.request_id()
    );
    let posts = world.bot_posts(user);
    assert_eq!(posts.len(), 1, "{posts:?}");
    assert_eq!(posts[0]["text"], "Did your package arrive?");
    assert_eq!(body["channel_message_id"], posts[0]["id"].to_string());
    assert!(body["message_id"].is_i64(), "{body}");
    let markup = &posts[0]["reply_markup"];
    assert_eq!(markup["kind"], "inline_keyboard", "{markup}");
    world.stop().await;
}

#[tokio::test]
async fn respond_sent_answers_the_seeds_400_when_telegram_refuses() {
    let world = World::start_with(Pace::Unlimited, "[api]\nrespond = \"sent\"\n").await;
    // Nobody with this id ever wrote to the bot: Telegram refuses the peer.
    let answer = post(&world, INTERACTIVE, &[], OCTOPODS_CURL.to_owned()).await;
    let body = answer.json().unwrap();
    assert_eq!(answer.status, 400, "{body}");
    assert_eq!(
        keys(&body),
        BTreeSet::from(["request_id", "error_code", "error"]),
        "exactly the seed's fields: {body}"
    );
    assert_eq!(body["error_code"], 5);
    assert!(
        body["error"].as_str().unwrap().contains("PEER_ID_INVALID"),
        "{body}"
    );
    // `?wait=` keeps its own answer (with the job) whatever the mode.
    let answer = post(
        &world,
        &format!("{INTERACTIVE}?wait=30"),
        &[],
        OCTOPODS_CURL.to_owned(),
    )
    .await;
    let body = answer.json().unwrap();
    assert_eq!(answer.status, 400, "{body}");
    assert!(body["job_id"].is_i64(), "{body}");
    world.stop().await;
}

#[tokio::test]
async fn cm_fact_sheet_examples_are_accepted_and_reach_the_chat() {
    let world = keyed_world().await;
    let user = user(&world, 4_100_001);

    let answer = post(&world, CM, &[], cm_example(CM_TEXT, BOT, user)).await;
    let body = cm_answer(&answer, 200, 0);
    assert_eq!(body["details"], "Created 1 message(s)");
    let entry = &body["messages"][0];
    assert_eq!(
        (
            &entry["to"],
            &entry["status"],
            &entry["reference"],
            &entry["parts"]
        ),
        (
            &json!(user.to_string()),
            &json!("Accepted"),
            &Value::Null,
            &json!(1)
        ),
        "{body}"
    );
    assert_eq!(entry["messageErrorCode"], 0);
    assert_eq!(entry["messageDetails"], Value::Null);
    let job = world.settled(entry["job_id"].as_i64().unwrap()).await;
    assert_eq!(job["state"], "sent", "{job}");
    assert_eq!(world.bot_texts(user), ["CM.com - Be part of it."]);

    let answer = post(&world, CM, &[], cm_example(CM_TEXT_AND_IMAGE, BOT, user)).await;
    let body = cm_answer(&answer, 200, 0);
    let entry = &body["messages"][0];
    assert_eq!(entry["status"], "Accepted", "{body}");
    assert_eq!(entry["parts"], 1, "text and image are one Telegram message");
    let job = world.settled(entry["job_id"].as_i64().unwrap()).await;
    assert_eq!(job["state"], "sent", "{job}");
    let posts = world.bot_posts(user);
    assert_eq!(posts.len(), 2, "one message for text + image: {posts:?}");
    let image = &posts[1];
    assert_eq!(image["text"], "CM.com - Be part of it.", "the caption");
    assert_eq!(image["media"]["kind"], "photo", "{image}");
    assert_eq!(
        image["media"]["url"],
        "https://www.cm.com/cdn/web/nl-nl/blog/conversational-commerce.jpg"
    );

    // `from` may name the bot by its Telegram bot id (CM's "Bot ID") too.
    let bot_id = world.sandbox.telegram().bot_id().to_string();
    let answer = post(&world, CM, &[], cm_example(CM_TEXT, &bot_id, user)).await;
    let body = cm_answer(&answer, 200, 0);
    assert_eq!(body["messages"][0]["status"], "Accepted", "{body}");
    world.stop().await;
}

#[tokio::test]
async fn cm_recipients_are_one_job_each_with_their_own_result_and_the_reference() {
    let world = World::start(Pace::Unlimited).await;
    let (first, second) = (user(&world, 4_200_001), user(&world, 4_200_002));
    let body = json!({"messages": {
        "authentication": {"producttoken": CM_TOKEN},
        "msg": [{
            "from": BOT,
            "to": [{"number": first.to_string()}, {"number": "not-a-chat"}, {"number": second}],
            "body": {"type": "auto", "content": "Your parcel is on its way"},
            "reference": "order-1234",
        }],
    }});
    let answer = post(&world, CM, &[], body.to_string()).await;
    let body = cm_answer(&answer, 200, 201);
    assert_eq!(body["details"], "Created 2 message(s)");
    let entries = body["messages"].as_array().unwrap();
    let statuses: Vec<(&Value, &Value, &Value)> = entries
        .iter()
        .map(|e| (&e["to"], &e["status"], &e["messageErrorCode"]))
        .collect();
    assert_eq!(
        statuses,
        [
            (&json!(first.to_string()), &json!("Accepted"), &json!(0)),
            (&json!("not-a-chat"), &json!("Rejected"), &json!(303)),
            (&json!(second.to_string()), &json!("Accepted"), &json!(0)),
        ]
    );
    assert!(
        entries[1]["messageDetails"]
            .as_str()
            .unwrap()
            .contains("messages.msg[0].to[1].number"),
        "{body}"
    );
    assert!(entries.iter().all(|e| e["reference"] == "order-1234"));
    let ids: Vec<i64> = [&entries[0], &entries[2]]
        .iter()
        .map(|e| e["job_id"].as_i64().unwrap())
        .collect();
    assert_ne!(ids[0], ids[1], "one job per recipient");
    for (id, user) in ids.into_iter().zip([first, second]) {
        let job = world.settled(id).await;
        assert_eq!(job["state"], "sent", "{job}");
        assert_eq!(job["payload"]["reference"], "order-1234");
        assert_eq!(world.bot_texts(user), ["Your parcel is on its way"]);
    }
    // The result events carry the client's reference.
    let events = world.client.get("/api/v1/events?after=0").await.unwrap();
    let text = String::from_utf8_lossy(&events.body).into_owned();
    let results: Vec<Value> = text
        .lines()
        .map(|line| serde_json::from_str::<Value>(line).unwrap())
        .filter(|line| line["event"]["status"] == "sent")
        .collect();
    assert_eq!(results.len(), 2, "{text}");
    assert!(
        results
            .iter()
            .all(|r| r["event"]["reference"] == "order-1234")
    );
    world.stop().await;
}

/// One CM `msg` for `to`, valid unless a case changes it.
fn cm_msg(to: AccountId) -> Value {
    json!({
        "from": BOT,
        "to": [{"number": to.to_string()}],
        "allowedChannels": ["Telegram Messenger"],
        "body": {"type": "auto", "content": ""},
        "richContent": {"conversation": [{
            "text": "Hello",
            "media": {"mediaName": "a.jpg", "mediaUri": "https://cdn.example.com/a.jpg", "mimeType": "image/jpeg"}
        }]},
    })
}

fn envelope(msg: Value) -> Value {
    json!({"messages": {"authentication": {"producttoken": CM_TOKEN}, "msg": [msg]}})
}

#[tokio::test]
async fn cm_refusals_answer_in_cms_shape_with_a_specific_message() {
    let world = keyed_world().await;
    let user = user(&world, 4_300_001);

    // The whole request: 400, CM's request-level code, no messages.
    let whole: Vec<(String, u16, &str)> = vec![
        ("{\"messages\": ".to_owned(), 202, "malformed JSON"),
        (json!({"msgs": []}).to_string(), 202, "`msgs`"),
        (
            json!({"messages": {"authentication": {"producttoken": CM_TOKEN}}}).to_string(),
            203,
            "`messages.msg`",
        ),
        (
            json!({"messages": {"authentication": {"producttoken": CM_TOKEN}, "msg": []}})
                .to_string(),
            203,
            "empty",
        ),
        (
            json!({"messages": {"msg": [cm_msg(user)]}}).to_string(),
            103,
            "product token",
        ),
        (
            json!({"messages": {"authentication": {"producttoken": "not-a-key"}, "msg": [cm_msg(user)]}})
                .to_string(),
            101,
            "no account found",
        ),
        (
            json!({"messages": {"authentication": {"producttoken": " "}, "msg": [cm_msg(user)]}})
                .to_string(),
            103,
            "product token",
        ),
        // A bot's key that is not a product token of this request's bot
        // is still a key: only unknown keys are 101.
        (
            json!({"messages": {"authentication": {"producttoken": "YOUR_TELEGRAM_CHANNEL_API_KEYS"}, "msg": [cm_msg(user)]}})
                .to_string(),
            101,
            "not an API key",
        ),
    ];
    for (body, code, needle) in whole {
        let answer = post(&world, CM, &[], body.clone()).await;
        let answered = cm_answer(&answer, 400, code);
        assert_eq!(answered["messages"], json!([]), "{body}: {answered}");
        let details = answered["details"].as_str().unwrap();
        assert!(
            details.contains(needle),
            "{body}: `{needle}` not in {details}"
        );
        assert!(answered["request_id"].is_string(), "{answered}");
    }

    // One message: 400 (nothing accepted) with errorCode 201, the message
    // Rejected with CM's code for the field, and details naming it.
    type Change = fn(&mut Value);
    let cases: Vec<(&str, Change, u16, &str)> = vec![
        (
            "from of another bot",
            |m| m["from"] = json!("other_bot"),
            301,
            "`from` is `other_bot`",
        ),
        (
            "no from",
            |m| drop(m.as_object_mut().unwrap().remove("from")),
            301,
            "`messages.msg[0].from`",
        ),
        (
            "empty to",
            |m| m["to"] = json!([]),
            302,
            "`messages.msg[0].to` is empty",
        ),
        (
            "no to",
            |m| drop(m.as_object_mut().unwrap().remove("to")),
            302,
            "`messages.msg[0].to`",
        ),
        (
            "to of a phone number",
            |m| m["to"] = json!([{"number": "+31 6 1234"}]),
            303,
            "`messages.msg[0].to[0].number`",
        ),
        (
            "SMS only",
            |m| m["allowedChannels"] = json!(["SMS"]),
            305,
            "does not allow \"Telegram Messenger\"",
        ),
        (
            "no channel",
            |m| m["allowedChannels"] = json!([]),
            305,
            "`messages.msg[0].allowedChannels`",
        ),
        (
            "a long reference",
            |m| m["reference"] = json!("r".repeat(33)),
            305,
            "`messages.msg[0].reference`",
        ),
        (
            "an unknown field",
            |m| m["colour"] = json!("red"),
            305,
            "`messages.msg[0].colour`",
        ),
        (
            "no body",
            |m| drop(m.as_object_mut().unwrap().remove("body")),
            304,
            "`messages.msg[0].body`",
        ),
        (
            "a body type",
            |m| m["body"]["type"] = json!("html"),
            304,
            "`messages.msg[0].body.type`",
        ),
        (
            "a body of a number",
            |m| m["body"]["content"] = json!(7),
            304,
            "`messages.msg[0].body.content`",
        ),
        (
            "an empty body",
            |m| drop(m.as_object_mut().unwrap().remove("richContent")),
            304,
            "a body without content",
        ),
        (
            "a body too long",
            |m| {
                m.as_object_mut().unwrap().remove("richContent");
                m["body"]["content"] = json!("x".repeat(4097));
            },
            304,
            "`messages.msg[0].body.content`",
        ),
        (
            "an empty conversation",
            |m| m["richContent"]["conversation"] = json!([]),
            304,
            "`messages.msg[0].richContent.conversation` is empty",
        ),
        (
            "an empty item",
            |m| m["richContent"]["conversation"] = json!([{}]),
            304,
            "`messages.msg[0].richContent.conversation[0]` has neither",
        ),
        (
            "a template item",
            |m| m["richContent"]["conversation"][0]["template"] = json!({}),
            304,
            "`messages.msg[0].richContent.conversation[0].template`",
        ),
        (
            "suggestions",
            |m| m["richContent"]["suggestions"] = json!([]),
            304,
            "`messages.msg[0].richContent.suggestions`",
        ),
        (
            "a media name",
            |m| m["richContent"]["conversation"][0]["media"]["mediaName"] = json!("a.png"),
            304,
            "`messages.msg[0].richContent.conversation[0].media.mediaName`",
        ),
        (
            "a media URI",
            |m| m["richContent"]["conversation"][0]["media"]["mediaUri"] = json!("ftp://x/a.jpg"),
            304,
            "`messages.msg[0].richContent.conversation[0].media.mediaUri`",
        ),
        (
            "a media type",
            |m| m["richContent"]["conversation"][0]["media"]["mimeType"] = json!("jpeg"),
            304,
            "`messages.msg[0].richContent.conversation[0].media.mimeType`",
        ),
        (
            "eleven media",
            |m| {
                let item = m["richContent"]["conversation"][0].clone();
                m["richContent"]["conversation"] = Value::Array(vec![item; 11]);
            },
            304,
            "at most 10",
        ),
        (
            "a text too long",
            |m| m["richContent"]["conversation"][0]["text"] = json!("x".repeat(4097)),
            304,
            "`messages.msg[0].richContent.conversation[0].text`",
        ),
    ];
    for (name, change, code, needle) in cases {
        let mut msg = cm_msg(user);
        change(&mut msg);
        let answer = post(&world, CM, &[], envelope(msg).to_string()).await;
        let answered = cm_answer(&answer, 400, 201);
        assert_eq!(answered["details"], "Created 0 message(s)", "{name}");
        let entries = answered["messages"].as_array().unwrap();
        assert_eq!(entries.len(), 1, "{name}: {answered}");
        let entry = &entries[0];
        assert_eq!(entry["status"], "Rejected", "{name}: {answered}");
        assert_eq!(entry["messageErrorCode"], code, "{name}: {answered}");
        assert_eq!(entry["parts"], 0, "{name}");
        let details = entry["messageDetails"].as_str().unwrap();
        assert!(
            details.contains(needle),
            "{name}: `{needle}` not in {details}"
        );
    }
    // Nothing of it was stored or sent.
    let jobs = world
        .client
        .get("/api/v1/jobs")
        .await
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(jobs["jobs"], json!([]), "{jobs}");
    assert!(world.bot_posts(user).is_empty());
    world.stop().await;
}
