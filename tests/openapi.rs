//! The OpenAPI document is kept true: every route the router serves is
//! described (and nothing else), and every response code it describes is
//! produced by a request here, against the sandbox with a worker (and a
//! store-less server for the 503s). Every answer's code must be described
//! for its operation, and a JSON answer must carry its `request_id`.

mod worker_support;

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::{Value, json};
use telegate::api::client::{Answer, Client};
use telegate::config::ApiConfig;
use telegate::queue::Queue;
use telegate::sandbox::telegram::BOT_ID;
use telegate::sandbox::telegram::{AccountId, ChatFault, TgError, UserClick, UserMessage};
use tokio::time::{Instant, sleep};
use worker_support::{INTERACTIVE, PATIENCE, Pace, World, body};

const MESSAGES: &str = "/api/v1/telegram/messages";

fn document() -> Value {
    serde_json::from_str(telegate::api::OPENAPI).expect("openapi.json is JSON")
}

/// The described path template `path` (without its query) falls under.
fn template(doc: &Value, path: &str) -> String {
    let path = path.split('?').next().unwrap();
    let segments: Vec<&str> = path.split('/').collect();
    doc["paths"]
        .as_object()
        .unwrap()
        .keys()
        .find(|t| {
            let parts: Vec<&str> = t.split('/').collect();
            parts.len() == segments.len()
                && parts
                    .iter()
                    .zip(&segments)
                    .all(|(p, s)| p == s || (p.starts_with('{') && p.ends_with('}')))
        })
        .unwrap_or_else(|| panic!("`{path}` is not described"))
        .clone()
}

/// The `(method, template, code)` triples the document describes.
fn described(doc: &Value) -> BTreeSet<(String, String, u16)> {
    let mut all = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            for code in operation["responses"].as_object().unwrap().keys() {
                all.insert((method.clone(), path.clone(), code.parse().unwrap()));
            }
        }
    }
    all
}

/// Requests and what they produced, checked against the document.
struct Coverage {
    doc: Value,
    produced: BTreeSet<(String, String, u16)>,
}

impl Coverage {
    async fn send(
        &mut self,
        client: &Client,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: String,
    ) -> Answer {
        let mut connection = client.connect().await.unwrap();
        let answer = connection
            .send(method.parse().unwrap(), path, headers, body.into())
            .await
            .unwrap();
        let key = (
            method.to_lowercase(),
            template(&self.doc, path),
            answer.status.as_u16(),
        );
        let operation = &self.doc["paths"][&key.1][&key.0];
        assert!(operation.is_object(), "{method} {} is not described", key.1);
        assert!(
            operation["responses"][key.2.to_string()].is_object(),
            "{method} {path} answered {}, which is not described: {:?}",
            key.2,
            answer.body
        );
        let is_json = answer
            .headers
            .get("content-type")
            .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
        if is_json && key.1 != "/api/v1/openapi.json" {
            let body = answer.json().unwrap();
            assert_eq!(body["request_id"].as_str(), answer.request_id(), "{body}");
            if key.2 >= 400 {
                assert!(body["error"].is_string(), "{method} {path}: {body}");
            }
        }
        self.produced.insert(key);
        answer
    }

    async fn get(&mut self, client: &Client, path: &str) -> Answer {
        self.send(client, "GET", path, &[], String::new()).await
    }

    async fn post(&mut self, client: &Client, path: &str, body: impl Into<String>) -> Answer {
        self.send(client, "POST", path, &[], body.into()).await
    }
}

fn media_body(user: AccountId) -> String {
    json!({"destination_user_id": user.to_string(), "text": "see", "media":
        {"mediaName": "a.jpg", "mediaUri": "https://cdn.example.com/a.jpg", "mimeType": "image/jpeg"}})
    .to_string()
}

fn buttons(user: AccountId) -> String {
    json!({
        "destination_user_id": user.to_string(),
        "telegram_interactive_message": {"type": "reply_buttons", "text": "Rate us",
            "reply_markup": {"inline_keyboard": [[{"text": "Up", "callback_data": "up"}]]}}
    })
    .to_string()
}

fn blocked_once(world: &World, user: AccountId, times: u32) {
    world
        .sandbox
        .telegram()
        .set_chat_fault(
            Some(user),
            Some(ChatFault {
                error: TgError::bad_request("USER_IS_BLOCKED"),
                remaining: Some(times),
            }),
        )
        .unwrap();
}

#[test]
fn every_served_route_is_described_and_nothing_else() {
    let doc = document();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1."));
    let served: BTreeSet<(String, String)> = telegate::api::ROUTES
        .iter()
        .map(|(method, path)| (method.to_string(), path.to_string()))
        .collect();
    let documented: BTreeSet<(String, String)> = described(&doc)
        .into_iter()
        .map(|(method, path, _)| (method, path))
        .collect();
    assert_eq!(served, documented);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_described_response_is_produced() {
    let doc = document();
    let mut seen = Coverage {
        doc: doc.clone(),
        produced: BTreeSet::new(),
    };
    // A webhook nobody listens on: every event dies at its first attempt.
    let dead_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = format!(
        "[api]\nmax_body_bytes = 4096\n[callbacks]\ndeadline_ms = 5000\n[webhook]\nurl = \"http://127.0.0.1:{dead_port}/\"\n\
         secret = \"s\"\ndead_after_attempts = 1\n"
    );
    let world = World::start_with(Pace::Unlimited, &config).await;
    let client = world.client.clone();
    let users = world.users(3);
    let (ann, bob, cy) = (users[0], users[1], users[2]);
    // Over the limit, yet small enough to be written whole before the 413.
    let big = format!("{{\"text\": \"{}\"}}", "x".repeat(8 * 1024));
    let gzip = [("Content-Encoding", "gzip")];

    // The bots and a reload that changes nothing.
    assert_eq!(seen.get(&client, "/api/v1/bots").await.status, 200);
    assert_eq!(
        seen.post(&client, "/api/v1/reload", String::new())
            .await
            .status,
        200
    );

    // CM.com's envelope: stored, and refused for a bad body.
    let cm = json!({"messages": {"authentication": {"producttoken": "t"}, "msg": [{
        "from": "default", "to": [{"number": ann.to_string()}],
        "body": {"type": "auto", "content": "hello"}}]}});
    assert_eq!(
        seen.post(&client, "/v1.0/message", cm.to_string())
            .await
            .status,
        200
    );
    assert_eq!(seen.post(&client, "/v1.0/message", "[1]").await.status, 400);

    for (path, valid) in [(INTERACTIVE, body(ann, "hi")), (MESSAGES, media_body(ann))] {
        assert_eq!(seen.post(&client, path, valid.clone()).await.status, 202);
        let waited = seen
            .post(&client, &format!("{path}?wait=30"), valid.clone())
            .await;
        assert_eq!(waited.status, 201);
        assert_eq!(seen.post(&client, path, "[1]").await.status, 400);
        assert_eq!(seen.post(&client, path, big.clone()).await.status, 413);
        assert_eq!(
            seen.send(&client, "POST", path, &gzip, valid).await.status,
            415
        );
    }

    assert_eq!(seen.get(&client, "/api/v1/jobs").await.status, 200);
    assert_eq!(seen.get(&client, "/api/v1/jobs?limit=0").await.status, 400);
    assert_eq!(seen.get(&client, "/api/v1/jobs/1").await.status, 200);
    assert_eq!(seen.get(&client, "/api/v1/jobs/99999").await.status, 404);

    // Two failed jobs to retry: one waited for, one not.
    blocked_once(&world, bob, 2);
    let mut failed = Vec::new();
    for text in ["one", "two"] {
        let answer = seen
            .post(&client, &format!("{INTERACTIVE}?wait=30"), body(bob, text))
            .await;
        assert_eq!(answer.status, 400, "{:?}", answer.body);
        failed.push(answer.json().unwrap()["job_id"].as_i64().unwrap());
    }
    let retry = |id: i64, query: &str| format!("/api/v1/jobs/{id}/retry{query}");
    assert_eq!(
        seen.post(&client, &retry(failed[0], "?wait=x"), "")
            .await
            .status,
        400
    );
    assert_eq!(
        seen.post(&client, &retry(failed[0], "?wait=30"), "")
            .await
            .status,
        201
    );
    assert_eq!(
        seen.post(&client, &retry(failed[1], ""), "").await.status,
        202
    );
    assert_eq!(
        seen.post(&client, &retry(failed[0], ""), "").await.status,
        409
    );
    assert_eq!(seen.post(&client, &retry(99999, ""), "").await.status, 404);

    assert_eq!(
        seen.get(&client, "/api/v1/events?after=0").await.status,
        200
    );
    assert_eq!(
        seen.get(&client, "/api/v1/events?after=-1").await.status,
        400
    );
    assert_eq!(seen.get(&client, "/api/v1/webhook").await.status, 200);
    let deadline = Instant::now() + PATIENCE;
    loop {
        let dead = seen.get(&client, "/api/v1/webhook/dead").await;
        assert_eq!(dead.status, 200);
        if !dead.json().unwrap()["dead"].as_array().unwrap().is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "no dead letter");
        sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        seen.get(&client, "/api/v1/webhook/dead?limit=0")
            .await
            .status,
        400
    );
    let replay = seen
        .post(
            &client,
            "/api/v1/webhook/replay",
            r#"{"from":0,"to":1000000}"#,
        )
        .await;
    assert_eq!(replay.status, 200);
    assert!(replay.json().unwrap()["replayed"].as_u64().unwrap() >= 1);
    assert_eq!(
        seen.post(&client, "/api/v1/webhook/replay", "{}")
            .await
            .status,
        400
    );
    assert_eq!(seen.get(&client, "/api/v1/openapi.json").await.status, 200);
    assert_eq!(seen.get(&client, "/healthz").await.status, 200);
    assert_eq!(seen.get(&client, "/readyz").await.status, 200);
    assert_eq!(seen.get(&client, "/metrics").await.status, 200);
    assert_eq!(seen.get(&client, "/api/v1/status").await.status, 200);

    // Media of an inbound photo; of a message without media; a bad id.
    let telegram = world.sandbox.telegram();
    let photo = telegram
        .user_sends(
            cy,
            BOT_ID,
            UserMessage::Photo {
                mime_type: "image/jpeg".into(),
                size: 2048,
                dc_id: telegate::sandbox::telegram::DC_ID,
                content: None,
            },
            None,
        )
        .unwrap();
    let media = format!("/api/v1/media/{cy}:{photo}");
    let deadline = Instant::now() + PATIENCE;
    while seen.get(&client, &media).await.status != 200 {
        assert!(
            Instant::now() < deadline,
            "the photo never became fetchable"
        );
        sleep(Duration::from_millis(50)).await;
    }
    // A part of it, and a part it does not have.
    for (range, status, len) in [("bytes=10-19", 206, Some(10)), ("bytes=4096-", 416, None)] {
        let answer = seen
            .send(&client, "GET", &media, &[("range", range)], String::new())
            .await;
        assert_eq!(answer.status, status, "{range}");
        if let Some(len) = len {
            assert_eq!(answer.body.len(), len);
        }
    }
    let text = telegram
        .user_sends(cy, BOT_ID, UserMessage::Text("no media".into()), None)
        .unwrap();
    assert_eq!(
        seen.get(&client, &format!("/api/v1/media/{cy}:{text}"))
            .await
            .status,
        404
    );
    assert_eq!(seen.get(&client, "/api/v1/media/garbage").await.status, 400);

    // A click a consumer answers in time, then once too often.
    let sent = seen
        .post(&client, &format!("{INTERACTIVE}?wait=30"), buttons(ann))
        .await;
    let message_id: i32 = sent.json().unwrap()["channel_message_id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let clicking = {
        let telegram = telegram.clone();
        tokio::spawn(async move {
            telegram
                .click(
                    ann,
                    UserClick::Callback {
                        message_id,
                        data: b"up".to_vec(),
                    },
                )
                .await
        })
    };
    let deadline = Instant::now() + PATIENCE;
    let query_id = loop {
        let events = client
            .get("/api/v1/events?after=0&limit=1000")
            .await
            .unwrap();
        let clicked = std::str::from_utf8(&events.body)
            .unwrap()
            .lines()
            .find_map(|line| {
                let line: Value = serde_json::from_str(line).ok()?;
                line["event"]["results"][0]["query_id"]
                    .as_str()
                    .map(str::to_owned)
            });
        if let Some(id) = clicked {
            break id;
        }
        assert!(Instant::now() < deadline, "no click event");
        sleep(Duration::from_millis(20)).await;
    };
    let answer = format!("/api/v1/callbacks/{query_id}/answer");
    assert_eq!(
        seen.post(&client, &answer, r#"{"text":"ok"}"#).await.status,
        200
    );
    assert_eq!(
        seen.post(&client, &answer, r#"{"text":"again"}"#)
            .await
            .status,
        409
    );
    assert_eq!(
        seen.post(&client, &answer, r#"{"txt":1}"#).await.status,
        400
    );
    assert_eq!(
        seen.post(&client, "/api/v1/callbacks/12345/answer", "{}")
            .await
            .status,
        404
    );
    clicking.await.unwrap().unwrap();
    // Operations on a sent message, cancelling a held job, chat actions.
    let sent = seen
        .post(
            &client,
            &format!("{MESSAGES}?wait=30"),
            json!({"destination_user_id": bob, "text": "v1"}).to_string(),
        )
        .await;
    assert_eq!(sent.status, 201, "{:?}", sent.body);
    let message_id = sent.json().unwrap()["message_id"].as_i64().unwrap();
    let edit = format!("/api/v1/telegram/messages/{message_id}/edit");
    assert_eq!(
        seen.post(&client, &edit, r#"{"text":"v2"}"#).await.status,
        202
    );
    let waited = seen
        .post(&client, &format!("{edit}?wait=30"), r#"{"text":"v3"}"#)
        .await;
    assert_eq!(waited.status, 201, "{:?}", waited.body);
    assert_eq!(
        seen.post(&client, &edit, r#"{"txt":"v4"}"#).await.status,
        400
    );
    let unknown = "/api/v1/telegram/messages/987654";
    assert_eq!(
        seen.post(&client, &format!("{unknown}/edit"), r#"{"text":"x"}"#)
            .await
            .status,
        404
    );
    let message = format!("/api/v1/telegram/messages/{message_id}");
    assert_eq!(
        seen.send(&client, "DELETE", &message, &[], "{\"x\":1}".into())
            .await
            .status,
        400
    );
    assert_eq!(
        seen.send(&client, "DELETE", unknown, &[], String::new())
            .await
            .status,
        404
    );
    assert_eq!(
        seen.send(&client, "DELETE", &message, &[], String::new())
            .await
            .status,
        202
    );
    let held = seen
        .post(
            &client,
            MESSAGES,
            json!({"destination_user_id": cy, "text": "later",
            "send_at": "2099-01-01T00:00:00Z"})
            .to_string(),
        )
        .await;
    // More than 30 days ahead: refused; an hour ahead is held.
    assert_eq!(held.status, 400);
    let later = (jiff::Timestamp::now() + jiff::SignedDuration::from_secs(3600)).to_string();
    let held = seen
        .post(
            &client,
            MESSAGES,
            json!({"destination_user_id": cy, "text": "later", "send_at": later}).to_string(),
        )
        .await;
    assert_eq!(held.status, 202);
    let job = format!("/api/v1/jobs/{}", held.json().unwrap()["job_id"]);
    assert_eq!(
        seen.send(&client, "DELETE", &job, &[], String::new())
            .await
            .status,
        200
    );
    assert_eq!(
        seen.send(&client, "DELETE", &job, &[], String::new())
            .await
            .status,
        409
    );
    assert_eq!(
        seen.send(&client, "DELETE", "/api/v1/jobs/987654", &[], String::new())
            .await
            .status,
        404
    );
    let action = "/api/v1/telegram/chat_action";
    let typing = json!({"destination_user_id": cy, "action": "typing"}).to_string();
    assert_eq!(seen.post(&client, action, typing.clone()).await.status, 200);
    assert_eq!(
        seen.post(&client, action, r#"{"action":"typing"}"#)
            .await
            .status,
        400
    );
    world.stop().await;

    // A server whose store is closed and unreadable, with no bot: the 503s.
    let dir = tempfile::tempdir().unwrap();
    let queue = Queue::open(&dir.path().join("telegate.db")).unwrap();
    let socket = dir.path().join("telegate.sock");
    let (listener, _file) = telegate::api::socket::bind(&socket).await.unwrap();
    queue.close().await;
    // Reads fail too: the tables are gone from under the store.
    rusqlite::Connection::open(dir.path().join("telegate.db"))
        .unwrap()
        .execute_batch(
            "ALTER TABLE jobs RENAME TO jobs_gone; ALTER TABLE events RENAME TO events_gone;",
        )
        .unwrap();
    tokio::spawn(async move {
        let config = ApiConfig::default();
        telegate::api::serve(listener, queue, &config, std::future::pending()).await
    });
    let closed = Client::new(socket);
    for (path, valid) in [
        (INTERACTIVE, body(ann, "late")),
        (MESSAGES, media_body(ann)),
    ] {
        assert_eq!(seen.post(&closed, path, valid).await.status, 503, "{path}");
    }
    for path in [
        "/api/v1/jobs",
        "/api/v1/jobs/1",
        "/api/v1/events",
        "/api/v1/media/1:1",
        "/healthz",
        "/readyz",
        "/metrics",
        "/api/v1/status",
    ] {
        assert_eq!(seen.get(&closed, path).await.status, 503, "{path}");
    }
    assert_eq!(seen.post(&closed, &retry(1, ""), "").await.status, 503);
    let typing = json!({"destination_user_id": 1, "action": "typing"}).to_string();
    assert_eq!(
        seen.post(&closed, "/api/v1/telegram/chat_action", typing)
            .await
            .status,
        503
    );
    assert_eq!(seen.get(&closed, "/api/v1/webhook/dead").await.status, 404);
    let replay = seen
        .post(&closed, "/api/v1/webhook/replay", r#"{"from":0,"to":1}"#)
        .await;
    assert_eq!(replay.status, 404);

    let missing: Vec<_> = described(&doc)
        .difference(&seen.produced)
        .cloned()
        .collect();
    assert!(
        missing.is_empty(),
        "described but never produced: {missing:?}"
    );
}
