//! What a support desk needs from users, end to end: each kind of user
//! action played through the sandbox's control API (`sandbox.sock`) and
//! read back as a Bird-shaped event from `telegate run`'s stream.

mod worker_support;

use serde_json::{Value, json};
use telegate::api::client::Client;
use worker_support::{Pace, World};

/// A worker on a sandbox, with the control API's client and a cursor into
/// the event stream.
struct Desk {
    world: World,
    control: Client,
    cursor: i64,
}

impl Desk {
    async fn start() -> Desk {
        let world = World::start(Pace::Unlimited).await;
        let control = Client::new(world.sandbox.control_socket().unwrap());
        Desk {
            world,
            control,
            cursor: 0,
        }
    }

    fn bot(&self) -> i64 {
        self.world.sandbox.telegram().bot_id()
    }

    /// `POST path` on the control API; the answer's JSON (a 2xx).
    async fn play(&self, path: &str, body: Value) -> Value {
        let answer = self
            .control
            .post(path, &[], body.to_string())
            .await
            .unwrap();
        let json = answer.json().unwrap_or(Value::Null);
        assert!(
            answer.status.is_success(),
            "{path} {body}: {} {json}",
            answer.status
        );
        json
    }

    /// A user (`profile` as `POST /users` takes it) who wrote `/start`.
    async fn user(&self, profile: Value) -> i64 {
        let id = self.play("/users", profile).await["id"].as_i64().unwrap();
        self.say(id, json!({"text": "/start"})).await;
        id
    }

    /// `user` sends `message` to the bot; its id.
    async fn say(&self, user: i64, message: Value) -> i32 {
        let path = format!("/users/{user}/messages");
        let id = self.play(&path, message).await["message_id"].as_i64();
        i32::try_from(id.unwrap()).unwrap()
    }

    /// The first event from the cursor on that `wanted` picks (the cursor
    /// moves past every event read).
    async fn event(&mut self, wanted: impl Fn(&Value) -> bool) -> Value {
        let mut found = None;
        let mut cursor = self.cursor;
        let read = self
            .world
            .read_events_until(&mut cursor, |read| read.iter().any(&wanted))
            .await;
        self.cursor = cursor;
        for event in read {
            if found.is_none() && wanted(&event) {
                found = Some(event);
            }
        }
        found.unwrap()
    }

    /// The event of message `id` of `chat`.
    async fn message(&mut self, chat: i64, id: i32) -> Value {
        let wanted = format!("telegram:{}:{chat}:{id}", self.bot());
        self.event(move |e| e["id"] == wanted.as_str()).await
    }

    /// The first interaction (`results[0]`) of type `kind`.
    async fn interaction(&mut self, kind: &str) -> Value {
        let event = self.event(|e| e["results"][0]["type"] == kind).await;
        event["results"][0].clone()
    }

    /// Enqueues `body` (a messages body) for `user` and waits until sent;
    /// the job's answer (`message_id`, `channel_message_id`).
    async fn send(&self, user: i64, mut body: Value) -> Value {
        body["destination_user_id"] = json!(user.to_string());
        let answer = self
            .world
            .client
            .post("/api/v1/telegram/messages?wait=30", &[], body.to_string())
            .await
            .unwrap();
        let json = answer.json().unwrap();
        assert_eq!(answer.status, 201, "{json}");
        json
    }

    /// Enqueues a text for `user`; the job's id (not waiting).
    async fn enqueue(&self, user: i64, text: &str) -> i64 {
        let body = json!({"destination_user_id": user.to_string(), "text": text});
        let answer = self
            .world
            .client
            .post("/api/v1/telegram/messages", &[], body.to_string())
            .await
            .unwrap();
        assert_eq!(answer.status, 202, "{:?}", answer.json());
        answer.json().unwrap()["job_id"].as_i64().unwrap()
    }
}

/// An id as the events write it (a string), from a number or a string.
fn id_text(id: &Value) -> String {
    id.as_str().map_or_else(|| id.to_string(), str::to_owned)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_names_the_message_it_answers_and_the_job_that_sent_it() {
    let mut desk = Desk::start().await;
    let user = desk.user(json!({"first_name": "Ria"})).await;
    let question = desk
        .send(
            user,
            json!({"text": "Which order?", "reference": "case-17", "metadata": {"crm": 981},
                   "reply_markup": {"force_reply": true}}),
        )
        .await;
    let asked = question["channel_message_id"].as_str().unwrap();
    // A force-reply answer replies to the question by itself.
    let answer = desk.say(user, json!({"text": "order 42"})).await;
    let event = desk.message(user, answer).await;
    let replied = &event["context"]["replyTo"];
    let bot = desk.bot();
    assert_eq!(
        replied["platformReference"],
        format!("telegram:{bot}:{user}:{asked}")
    );
    assert_eq!(replied["reference"], "case-17");
    assert_eq!(replied["metadata"], json!({"crm": 981}));
    assert_eq!(replied["messageId"], id_text(&question["message_id"]));
    assert!(replied["jobId"].as_str().is_some(), "{event}");

    // A reply to the user's own message names that message's event.
    let again = desk
        .say(user, json!({"text": "I mean this", "reply_to": answer}))
        .await;
    let event = desk.message(user, again).await;
    let replied = &event["context"]["replyTo"];
    assert_eq!(
        replied["eventId"],
        format!("telegram:{bot}:{user}:{answer}")
    );
    assert!(replied.get("jobId").is_none(), "{event}");
    desk.world.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deep_link_start_carries_its_payload() {
    let mut desk = Desk::start().await;
    let user = desk.play("/users", json!({"first_name": "Lin"})).await["id"]
        .as_i64()
        .unwrap();
    let start = desk.say(user, json!({"start": "promo-2026"})).await;
    let event = desk.message(user, start).await;
    assert_eq!(event["body"]["type"], "text");
    assert_eq!(event["body"]["text"]["text"], "/start promo-2026");
    assert_eq!(event["context"]["startPayload"], "promo-2026");
    // A plain /start has none.
    let plain = desk.say(user, json!({"text": "/start"})).await;
    let event = desk.message(user, plain).await;
    assert!(event["context"].get("startPayload").is_none(), "{event}");
    desk.world.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edit_is_an_edited_interaction_with_the_new_content() {
    let mut desk = Desk::start().await;
    let user = desk.user(json!({"first_name": "Eda"})).await;
    let id = desk
        .say(user, json!({"text": "my adress is Main St 1"}))
        .await;
    desk.message(user, id).await;
    for text in ["my address is Main St 1", "my address is Main St 10"] {
        desk.play(
            &format!("/users/{user}/messages/{id}/edit"),
            json!({ "text": text }),
        )
        .await;
        let edited = desk.interaction("edited").await;
        let bot = desk.bot();
        assert_eq!(edited["eventId"], format!("telegram:{bot}:{user}:{id}"));
        assert_eq!(
            edited["messageReference"],
            format!("telegram:{bot}:{user}:{id}")
        );
        assert_eq!(edited["body"]["text"]["text"], text);
        assert_eq!(
            edited["sender"]["contact"]["identifierValue"],
            user.to_string()
        );
    }
    desk.world.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletes_in_a_supergroup_are_seen_and_the_stream_says_which() {
    let mut desk = Desk::start().await;
    let member = desk.user(json!({"first_name": "Del"})).await;
    desk.play("/bot", json!({"privacy": false})).await;
    let group = desk
        .play(
            "/groups",
            json!({"title": "Help", "kind": "supergroup", "members": [member], "bot": "member"}),
        )
        .await["id"]
        .as_i64()
        .unwrap();
    let path = format!("/groups/{group}/messages");
    let id = desk
        .play(
            &path,
            json!({"from": member, "text": "oops, my card number"}),
        )
        .await["message_id"]
        .as_i64()
        .unwrap();
    desk.message(group, i32::try_from(id).unwrap()).await;
    desk.play(
        &format!("/groups/{group}/messages/{id}/delete"),
        json!({ "from": member }),
    )
    .await;
    let deleted = desk.interaction("deleted").await;
    let bot = desk.bot();
    assert_eq!(deleted["messageIds"], json!([id.to_string()]));
    assert_eq!(
        deleted["eventIds"],
        json!([format!("telegram:{bot}:{group}:{id}")])
    );
    assert_eq!(
        deleted["meta"]["extraInformation"]["ChatID"],
        group.to_string()
    );
    desk.world.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocked_users_jobs_fail_at_once_across_a_restart_and_go_out_when_unblocked() {
    let mut desk = Desk::start().await;
    let user = desk.user(json!({"first_name": "Bo"})).await;
    desk.play(&format!("/users/{user}/block"), json!({})).await;
    let blocked = desk.interaction("blocked").await;
    assert_eq!(blocked["sender"]["platformAddress"], user.to_string());

    let telegram = desk.world.sandbox.telegram().clone();
    let sends_before = telegram
        .stats()
        .rpc_counts
        .get("messages.sendMessage")
        .copied();
    let job = desk.enqueue(user, "are you there?").await;
    let failed = desk.world.settled(job).await;
    assert_eq!(failed["state"], "failed", "{failed}");
    assert_eq!(failed["error"]["error_code"], 5, "{failed}");
    assert_eq!(
        failed["error"]["telegram_error"], "USER_IS_BLOCKED",
        "{failed}"
    );
    assert!(
        failed["error"]["error"]
            .as_str()
            .unwrap()
            .contains("has blocked the bot"),
        "{failed}"
    );
    // Refused by telegate: Telegram was never asked.
    let stats = telegram.stats();
    assert_eq!(
        stats.rpc_counts.get("messages.sendMessage").copied(),
        sends_before
    );
    assert!(
        !stats.rpc_errors.contains_key("USER_IS_BLOCKED"),
        "{stats:?}"
    );

    // The state is durable: after a SIGKILL and a restart still refused.
    desk.world.worker().kill();
    desk.world.start_worker().await;
    let job = desk.enqueue(user, "still there?").await;
    let failed = desk.world.settled(job).await;
    assert_eq!(
        failed["error"]["telegram_error"], "USER_IS_BLOCKED",
        "{failed}"
    );
    assert!(
        !telegram.stats().rpc_errors.contains_key("USER_IS_BLOCKED"),
        "sent to Telegram after the restart"
    );

    desk.play(&format!("/users/{user}/unblock"), json!({}))
        .await;
    let unblocked = desk.interaction("unblocked").await;
    assert_eq!(unblocked["sender"]["platformAddress"], user.to_string());
    let job = desk.enqueue(user, "welcome back").await;
    let sent = desk.world.settled(job).await;
    assert_eq!(sent["state"], "sent", "{sent}");
    assert_eq!(desk.world.bot_texts(user).last().unwrap(), "welcome back");
    desk.world.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_media_kind_is_its_bird_kind_and_downloadable() {
    let mut desk = Desk::start().await;
    let user = desk.user(json!({"first_name": "Mia"})).await;
    let kinds = [
        (
            json!({"voice": {"duration": 3, "size": 3000}}),
            "file",
            "voice",
        ),
        (
            json!({"audio": {"duration": 200, "size": 5000, "title": "Song", "performer": "Band"}}),
            "file",
            "audio",
        ),
        (
            json!({"video": {"duration": 5.5, "width": 640, "height": 360, "size": 7000}}),
            "file",
            "video",
        ),
        (
            json!({"video_note": {"duration": 4.0, "length": 240, "size": 4000}}),
            "file",
            "video_note",
        ),
        (
            json!({"animation": {"duration": 2.0, "width": 320, "height": 240, "size": 2500}}),
            "file",
            "animation",
        ),
        (json!({"sticker": {"emoji": "👍"}}), "image", "sticker"),
        (
            json!({"venue": {"latitude": 52.37, "longitude": 4.89, "title": "Office",
                             "address": "Dam 1"}}),
            "location",
            "venue",
        ),
        (
            json!({"poll": {"question": "Rate us?", "options": ["good", "bad"]}}),
            "text",
            "poll",
        ),
        (json!({"dice": {"emoji": "🎲", "value": 4}}), "text", "dice"),
    ];
    for (message, bird_kind, media_kind) in kinds {
        let id = desk.say(user, message.clone()).await;
        let event = desk.message(user, id).await;
        let body = &event["body"];
        assert_eq!(body["type"], bird_kind, "{message}: {event}");
        assert_eq!(
            event["meta"]["extraInformation"]["MediaKind"], media_kind,
            "{event}"
        );
        let media_url = match bird_kind {
            "file" => body["file"]["files"][0]["mediaUrl"].as_str(),
            "image" => body["image"]["images"][0]["mediaUrl"].as_str(),
            _ => None,
        };
        let download = desk
            .world
            .client
            .get(&format!("/api/v1/media/{user}:{id}"))
            .await
            .unwrap();
        match media_url {
            Some(url) => {
                assert_eq!(url, format!("/api/v1/media/{user}:{id}"));
                assert_eq!(download.status, 200, "{media_kind}: {:?}", download.json());
                let size = message
                    .as_object()
                    .and_then(|m| m.values().next())
                    .and_then(|m| m["size"].as_u64());
                if let Some(size) = size {
                    assert_eq!(download.body.len() as u64, size, "{media_kind}");
                }
            }
            None => assert_eq!(download.status, 404, "{media_kind} has no file"),
        }
        match media_kind {
            "voice" => {
                assert_eq!(body["file"]["files"][0]["contentType"], "audio/ogg");
                assert_eq!(event["meta"]["extraInformation"]["Duration"], "3");
            }
            "audio" => assert_eq!(body["file"]["files"][0]["contentType"], "audio/mpeg"),
            "sticker" => assert_eq!(body["image"]["images"][0]["altText"], "👍"),
            "venue" => {
                assert_eq!(body["location"]["location"]["label"], "Office");
                assert_eq!(body["location"]["location"]["address"], "Dam 1");
                assert_eq!(body["location"]["coordinates"]["latitude"], 52.37);
            }
            "poll" => {
                assert_eq!(body["text"]["text"], "Rate us?");
                assert_eq!(body["text"]["poll"]["options"], json!(["good", "bad"]));
            }
            "dice" => assert_eq!(body["text"]["dice"], json!({"emoji": "🎲", "value": 4})),
            _ => {}
        }
    }
    desk.world.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_and_supergroup_members_write_in_their_group_and_the_bot_sees_its_standing() {
    let mut desk = Desk::start().await;
    let (ann, ben) = (
        desk.user(json!({"first_name": "Ann"})).await,
        desk.user(json!({"first_name": "Ben"})).await,
    );
    desk.play("/bot", json!({"privacy": false})).await;
    let bot = desk.bot();
    for (kind, prefix) in [("group", "-"), ("supergroup", "-100")] {
        let group = desk
            .play(
                "/groups",
                json!({"title": format!("Desk {kind}"), "kind": kind, "members": [ann, ben],
                       "bot": "none"}),
            )
            .await["id"]
            .as_i64()
            .unwrap();
        assert!(group.to_string().starts_with(prefix), "{group}");
        let bot_path = format!("/groups/{group}/bot");
        desk.play(&bot_path, json!({"action": "add"})).await;
        let added = desk.interaction("bot-added").await;
        assert_eq!(
            added["meta"]["extraInformation"]["ChatID"],
            group.to_string()
        );
        assert_eq!(added["metadata"]["role"], "member");
        assert_eq!(
            added["sender"]["platformAddress"],
            ann.to_string(),
            "the creator added it"
        );

        let path = format!("/groups/{group}/messages");
        let id = desk
            .play(&path, json!({"from": ben, "text": format!("hello {kind}")}))
            .await["message_id"]
            .as_i64()
            .unwrap();
        let event = desk.message(group, i32::try_from(id).unwrap()).await;
        assert_eq!(event["body"]["text"]["text"], format!("hello {kind}"));
        assert_eq!(
            event["sender"]["contact"]["identifierValue"],
            ben.to_string(),
            "the member is the sender"
        );
        assert_eq!(event["sender"]["contact"]["annotations"]["name"], "Ben");
        let extra = &event["meta"]["extraInformation"];
        assert_eq!(
            extra["ChatID"],
            group.to_string(),
            "the group is the conversation"
        );
        assert_eq!(extra["ChatType"], kind);
        assert_eq!(
            event["parts"][0]["platformReference"],
            format!("telegram:{bot}:{group}:{id}")
        );

        desk.play(&bot_path, json!({"action": "promote"})).await;
        let promoted = desk.interaction("bot-promoted").await;
        assert_eq!(promoted["metadata"]["role"], "admin");
        assert_eq!(promoted["metadata"]["previousRole"], "member");
        desk.play(&bot_path, json!({"action": "remove"})).await;
        let removed = desk.interaction("bot-removed").await;
        assert_eq!(
            removed["meta"]["extraInformation"]["ChatID"],
            group.to_string()
        );
    }
    // A service message telegate has no shape for stays `unsupported`,
    // by TL name, and is counted in /metrics.
    let all = desk.world.events(0, 0).await;
    let unsupported = all
        .iter()
        .find(|line| line["event"]["body"]["unsupported"]["tl"] == "messageActionChatAddUser")
        .expect("the group's creation in the stream");
    assert_eq!(unsupported["event"]["body"]["type"], "unsupported");
    let metrics = desk.world.client.get("/metrics").await.unwrap();
    let text = String::from_utf8(metrics.body.to_vec()).unwrap();
    let line = text
        .lines()
        .find(|l| {
            l.starts_with("telegate_unsupported_updates_total{tl=\"messageActionChatAddUser\"}")
        })
        .unwrap_or_else(|| panic!("no counter for the unsupported update:\n{text}"));
    assert!(!line.ends_with(" 0"), "{line}");
    desk.world.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_senders_profile_is_in_the_annotations() {
    let mut desk = Desk::start().await;
    let user = desk
        .user(
            json!({"first_name": "Ada", "last_name": "Lovelace", "username": "ada_l",
                     "lang_code": "pt-br", "premium": true}),
        )
        .await;
    let plain = desk.user(json!({"first_name": "Bob"})).await;
    let id = desk.say(user, json!({"text": "hi"})).await;
    let event = desk.message(user, id).await;
    let annotations = &event["sender"]["contact"]["annotations"];
    assert_eq!(annotations["name"], "Ada Lovelace");
    assert_eq!(annotations["first_name"], "Ada");
    assert_eq!(annotations["last_name"], "Lovelace");
    assert_eq!(annotations["username"], "ada_l");
    assert_eq!(annotations["lang_code"], "pt-br");
    assert_eq!(annotations["is_premium"], true);
    let id = desk.say(plain, json!({"text": "hi"})).await;
    let event = desk.message(plain, id).await;
    let annotations = &event["sender"]["contact"]["annotations"];
    assert_eq!(annotations["is_premium"], false);
    assert!(annotations.get("last_name").is_none(), "{annotations}");
    desk.world.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reaction_is_a_reacted_interaction_on_its_message() {
    let mut desk = Desk::start().await;
    let user = desk.user(json!({"first_name": "Rex"})).await;
    let sent = desk
        .send(user, json!({"text": "Your ticket is closed"}))
        .await;
    let id: i64 = sent["channel_message_id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let path = format!("/users/{user}/messages/{id}/react");
    desk.play(&path, json!({"emoji": "👍"})).await;
    let reacted = desk.interaction("reacted").await;
    let bot = desk.bot();
    assert_eq!(
        reacted["messageReference"],
        format!("telegram:{bot}:{user}:{id}")
    );
    assert_eq!(reacted["metadata"]["reactions"], json!(["👍"]));
    assert_eq!(reacted["sender"]["platformAddress"], user.to_string());
    desk.play(&path, json!({"emoji": null})).await;
    let taken_back = desk
        .event(|e| e["results"][0]["details"] == "reaction_removed")
        .await;
    assert_eq!(
        taken_back["results"][0]["metadata"]["previous"],
        json!(["👍"])
    );
    desk.world.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interactions_missed_while_down_each_arrive_through_sliced_differences() {
    let mut desk = Desk::start().await;
    let user = desk.user(json!({"first_name": "Cat"})).await;
    let id = desk.say(user, json!({"text": "first"})).await;
    desk.message(user, id).await;
    // Two events per difference answer: a slice gives each of its updates
    // the slice's final state, so ids must come from the updates.
    desk.play("/faults", json!({"difference_slice": 2})).await;
    let status = desk.world.worker().terminate();
    assert!(status.success());

    for text in ["second", "third", "fourth"] {
        let path = format!("/users/{user}/messages/{id}/edit");
        desk.play(&path, json!({ "text": text })).await;
    }
    let react = format!("/users/{user}/messages/{id}/react");
    for emoji in ["👍", "🔥"] {
        desk.play(&react, json!({ "emoji": emoji })).await;
    }
    for action in ["block", "unblock", "block", "unblock"] {
        desk.play(&format!("/users/{user}/{action}"), json!({}))
            .await;
    }
    desk.world.start_worker().await;
    let count = |read: &[Value], kind: &str| {
        read.iter()
            .filter(|e| e["results"][0]["type"] == kind)
            .count()
    };
    let mut cursor = desk.cursor;
    let read = desk
        .world
        .read_events_until(&mut cursor, |read| {
            count(read, "edited") >= 3
                && count(read, "reacted") >= 2
                && count(read, "blocked") >= 2
                && count(read, "unblocked") >= 2
        })
        .await;
    let ids: std::collections::BTreeSet<&str> =
        read.iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), read.len(), "each once: {ids:?}");
    for (kind, n) in [
        ("edited", 3),
        ("reacted", 2),
        ("blocked", 2),
        ("unblocked", 2),
    ] {
        assert_eq!(count(&read, kind), n, "{kind}: {ids:?}");
    }
    // The last word was an unblock: jobs go out.
    let job = desk.enqueue(user, "back again").await;
    assert_eq!(desk.world.settled(job).await["state"], "sent");
    desk.world.stop().await;
}
