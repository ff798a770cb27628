//! Inbound events and click answers against the sandbox, through real
//! sockets: the sandbox's MTProto DC on 127.0.0.1 and telegate's socket API.

#[path = "worker_support/store.rs"]
mod store_support;

use std::sync::Arc;
use std::time::Duration;

use grammers_tl_types as tl;
use serde_json::{Value, json};
use telegate::api::Services;
use telegate::api::client::Client as ApiClient;
use telegate::callbacks::CallbackAnswerer;
use telegate::chat::ChatId;
use telegate::cli::sandbox::write_worker_files;
use telegate::config::{BotName, Config, Secret, StateDir, WebhookConfig};
use telegate::events::EventStore;
use telegate::events::webhook::Webhook;
use telegate::inbound::{self, Inbound};
use telegate::queue::{JobId, Queue, Timestamp};
use telegate::sandbox::server::{Sandbox, SandboxOptions};
use telegate::sandbox::telegram::BOT_ID;
use telegate::sandbox::telegram::{
    ClickOutcome, DC_ID, GroupKind, NewGroup, NewUser, Pressed, Role, UserClick, UserMessage,
};
use telegate::session::SessionStore;
use telegate::telegram::{Credentials, Telegram};
use tempfile::TempDir;
use tokio::task::JoinHandle;

/// Generous: the machine may be loaded; nothing waits this long when it works.
const PATIENCE: Duration = Duration::from_secs(30);

/// telegate's inbound half, in-process, on a sandbox.
struct Daemon {
    sandbox: Sandbox,
    _dir: TempDir,
    queue: Queue,
    events: EventStore,
    telegram: Arc<Telegram>,
    api: ApiClient,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
        self.telegram.client().disconnect();
    }
}

impl Daemon {
    async fn start(deadline: Duration) -> Daemon {
        Daemon::start_with(deadline, None).await
    }

    async fn start_with(deadline: Duration, webhook: Option<WebhookConfig>) -> Daemon {
        let dir = tempfile::tempdir().unwrap();
        let sandbox = Sandbox::start(SandboxOptions::default()).await.unwrap();
        sandbox.telegram().set_limits_enabled(false);
        let state = StateDir::new(dir.path().join("state"));
        state.prepare().unwrap();
        write_worker_files(state.root(), &sandbox).unwrap();
        let config = Config::load_with_env(None, &state, |_| None).unwrap();
        let telegram_config = &config.telegram;
        let credentials = Credentials {
            api_id: telegram_config.api_id.unwrap(),
            api_hash: telegram_config.api_hash.as_ref().unwrap().expose().into(),
            bot_token: telegram_config.bot_token.as_ref().unwrap().expose().into(),
        };
        let session =
            Arc::new(SessionStore::open(&state.bot_session(&BotName::default_bot())).unwrap());
        let telegram = Telegram::start(Arc::clone(&session), credentials.api_id);
        let bot = telegram.sign_in(&credentials).await.unwrap();
        let stream = telegram.updates().await.unwrap().unwrap();
        let telegram = Arc::new(telegram);

        let queue = Queue::open_at(&store_support::location(state.root())).unwrap();
        let events = EventStore::new(queue.clone());
        let callbacks = CallbackAnswerer::new(telegram.client().clone(), queue.clone(), deadline);
        let inbound = Inbound {
            bot_id: bot.id,
            events: events.clone(),
            queue: queue.clone(),
            session,
            callbacks: callbacks.clone(),
        };
        let pipeline = tokio::spawn(async move {
            let stop = tokio_util::sync::CancellationToken::new();
            if let Err(error) = inbound::run(stream, inbound, stop).await {
                panic!("inbound stopped: {error}");
            }
        });
        let mut tasks = vec![pipeline];
        let webhook = webhook.map(|config| {
            Webhook::from_config(&config, events.clone(), queue.clone())
                .unwrap()
                .unwrap()
        });
        let monitor = webhook.as_ref().map(Webhook::monitor);
        if let Some(webhook) = webhook {
            let forever = tokio_util::sync::CancellationToken::new();
            tasks.push(tokio::spawn(
                async move { webhook.run(forever).await.unwrap() },
            ));
        }
        let (listener, socket) = telegate::api::socket::bind(&state.socket()).await.unwrap();
        let services = Services::new(queue.clone());
        let bot = services.bots.get(BotName::DEFAULT).unwrap();
        bot.attach(
            Some(callbacks),
            Some(telegate::download::Downloads::new(
                telegram.client().clone(),
            )),
            monitor,
            None,
        );
        let services = Services {
            events: events.clone(),
            ..services
        };
        let api_config = config.api.clone();
        tasks.push(tokio::spawn(async move {
            let _socket = socket;
            telegate::api::serve_services(listener, services, &api_config, std::future::pending())
                .await
                .unwrap();
        }));
        Daemon {
            sandbox,
            _dir: dir,
            queue,
            events,
            telegram,
            api: ApiClient::new(state.socket()),
            tasks,
        }
    }

    fn user(&self, name: &str) -> i64 {
        let telegram = self.sandbox.telegram();
        let id = telegram
            .create_user(NewUser {
                first_name: name.into(),
                ..NewUser::default()
            })
            .unwrap()
            .id;
        telegram
            .user_sends(id, BOT_ID, UserMessage::Text("/start".into()), None)
            .unwrap();
        id
    }

    /// Enqueues `message` for `user` over the socket and sends it the way
    /// the sender does (raw invoke with the stored random_id); returns
    /// Telegram's message id.
    async fn send(&self, user: i64, message: Value) -> i32 {
        let body = json!({"destination_user_id": user.to_string(),
                          "telegram_interactive_message": message});
        let answer = self
            .api
            .post("/api/v1/telegram/interactive", &[], body.to_string())
            .await
            .unwrap();
        assert_eq!(answer.status, 202, "{:?}", answer.json());
        let id = JobId::new(answer.json().unwrap()["job_id"].as_i64().unwrap());
        let job = self
            .queue
            .claim(vec![id], Timestamp::now(), None)
            .await
            .unwrap()
            .pop()
            .unwrap();
        let requests = telegate::outgoing::requests(
            &job,
            self.telegram.input_peer(ChatId::user(user)).await,
            &Default::default(),
        )
        .unwrap();
        let mut ids = Vec::new();
        for request in requests {
            let updates = match request {
                telegate::outgoing::Outgoing::Message(m) => self.telegram.invoke(&m).await,
                telegate::outgoing::Outgoing::Media(m) => self.telegram.invoke(&m).await,
                other => panic!("a send job made {other:?}"),
            }
            .unwrap();
            ids.push(Some(i64::from(sent_id(&updates))));
        }
        let sent = ids[0].unwrap() as i32;
        self.queue
            .mark_sent(id, ids, Timestamp::now())
            .await
            .unwrap();
        sent
    }

    async fn click(&self, user: i64, message_id: i32, data: &str) -> ClickOutcome {
        let pressed = tokio::time::timeout(
            PATIENCE,
            self.sandbox.telegram().click(
                user,
                UserClick::Callback {
                    message_id,
                    data: data.as_bytes().to_vec(),
                },
            ),
        )
        .await
        .expect("the click to end")
        .unwrap();
        match pressed {
            Pressed::Answered(outcome) => outcome,
            other => panic!("not a callback outcome: {other:?}"),
        }
    }

    /// Events after `cursor` over the socket, waiting up to `wait` seconds.
    async fn stream(&self, cursor: i64, wait: u32) -> Vec<Value> {
        let answer = self
            .api
            .get(&format!(
                "/api/v1/events?after={cursor}&wait={wait}&limit=1000"
            ))
            .await
            .unwrap();
        assert_eq!(answer.status, 200, "{:?}", answer.body);
        assert_eq!(answer.headers["content-type"], "application/x-ndjson");
        std::str::from_utf8(&answer.body)
            .unwrap()
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect()
    }

    /// Reads the stream until `found` returns true for an event; returns
    /// that line.
    async fn find(&self, found: impl Fn(&Value) -> bool) -> Value {
        tokio::time::timeout(PATIENCE, async {
            let mut cursor = 0;
            loop {
                for line in self.stream(cursor, 5).await {
                    cursor = line["cursor"].as_i64().unwrap();
                    if found(&line["event"]) {
                        return line;
                    }
                }
            }
        })
        .await
        .expect("the event to arrive")
    }
}

/// Telegram's id of the message a send created.
fn sent_id(updates: &tl::enums::Updates) -> i32 {
    match updates {
        tl::enums::Updates::UpdateShortSentMessage(sent) => sent.id,
        tl::enums::Updates::Updates(updates) => updates
            .updates
            .iter()
            .find_map(|u| match u {
                tl::enums::Update::MessageId(m) => Some(m.id),
                _ => None,
            })
            .expect("an updateMessageID"),
        other => panic!("unexpected send result {other:?}"),
    }
}

fn buttons() -> Value {
    json!({
        "type": "reply_buttons",
        "text": "Rate us",
        "reply_markup": {"inline_keyboard": [[
            {"text": "Up", "callback_data": "up", "answer": {"text": "Thanks!", "url": "https://t.me/telegate_sandbox_bot?start=up"}},
            {"text": "Down", "callback_data": "down"},
            {"text": "Ask", "callback_data": "ask"}
        ]]}
    })
}

fn clicked_query_id(event: &Value) -> Option<i64> {
    event["results"][0]["query_id"].as_str()?.parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clicks_are_answered_by_consumer_stored_answer_or_empty() {
    let deadline = Duration::from_millis(1500);
    let daemon = Daemon::start(deadline).await;
    let user = daemon.user("Ann");
    let message = daemon.send(user, buttons()).await;
    let timeout = daemon.sandbox.telegram().callback_timeout();

    // Nobody answers "up": its stored answer, url included, in time.
    let outcome = daemon.click(user, message, "up").await;
    let answer = outcome
        .result
        .expect("answered before BOT_RESPONSE_TIMEOUT");
    assert_eq!(answer.message.as_deref(), Some("Thanks!"));
    assert_eq!(
        answer.url.as_deref(),
        Some("https://t.me/telegate_sandbox_bot?start=up")
    );
    assert!(outcome.elapsed < timeout, "{:?}", outcome.elapsed);
    // A stored answer goes out at once, not at the consumer deadline.
    assert!(outcome.elapsed < deadline, "{:?}", outcome.elapsed);

    // "down" has no stored answer: an empty one.
    let outcome = daemon.click(user, message, "down").await;
    let answer = outcome
        .result
        .expect("answered before BOT_RESPONSE_TIMEOUT");
    assert_eq!(answer.message, None);

    // A consumer follows the stream and answers "ask".
    let clicking = {
        let telegram = daemon.sandbox.telegram().clone();
        tokio::spawn(async move {
            telegram
                .click(
                    user,
                    UserClick::Callback {
                        message_id: message,
                        data: b"ask".to_vec(),
                    },
                )
                .await
        })
    };
    let line = daemon
        .find(|e| e["results"][0]["metadata"]["button"]["payload"] == "ask")
        .await;
    let event = &line["event"];
    assert_eq!(event["results"][0]["type"], "clicked");
    let query_id = clicked_query_id(event).unwrap();
    let path = format!("/api/v1/callbacks/{query_id}/answer");
    let taken = daemon
        .api
        .post(
            &path,
            &[],
            json!({"text": "Noted", "alert": true}).to_string(),
        )
        .await
        .unwrap();
    assert_eq!(taken.status, 200, "{:?}", taken.json());
    let Pressed::Answered(outcome) = clicking.await.unwrap().unwrap() else {
        panic!("not answered");
    };
    let answer = outcome.result.unwrap();
    assert_eq!(answer.message.as_deref(), Some("Noted"));
    assert!(answer.alert);

    // A second answer to the same query, and one to an unknown query.
    let again = daemon.api.post(&path, &[], "{}").await.unwrap();
    assert_eq!(again.status, 409, "{:?}", again.json());
    let unknown = daemon
        .api
        .post("/api/v1/callbacks/12345/answer", &[], "{}")
        .await
        .unwrap();
    assert_eq!(unknown.status, 404);
    let bad = daemon.api.post(&path, &[], r#"{"txt": 1}"#).await.unwrap();
    assert_eq!(bad.status, 400);
    assert!(
        bad.json().unwrap()["error"]
            .as_str()
            .unwrap()
            .contains("txt")
    );

    // The "up" click's query is settled: a consumer answer now is late.
    let up = daemon
        .find(|e| e["results"][0]["metadata"]["button"]["payload"] == "up")
        .await;
    let late_path = format!(
        "/api/v1/callbacks/{}/answer",
        clicked_query_id(&up["event"]).unwrap()
    );
    let late = daemon.api.post(&late_path, &[], "{}").await.unwrap();
    assert_eq!(late.status, 409);
    let error = late.json().unwrap()["error"].as_str().unwrap().to_owned();
    assert!(error.contains("deadline"), "{error}");
    assert!(error.contains("stored"), "{error}");
}

/// A click on `data` under `message` that a consumer answers with `body`
/// (posted as soon as the click is an event); returns the post's answer
/// and what the user saw.
async fn click_answered_with(
    daemon: &Daemon,
    user: i64,
    message: i32,
    data: &str,
    body: Value,
) -> (telegate::api::client::Answer, ClickOutcome) {
    let clicking = {
        let telegram = daemon.sandbox.telegram().clone();
        let data = data.as_bytes().to_vec();
        tokio::spawn(async move {
            telegram
                .click(
                    user,
                    UserClick::Callback {
                        message_id: message,
                        data,
                    },
                )
                .await
        })
    };
    let line = daemon
        .find(|e| {
            e["results"][0]["metadata"]["button"]["payload"] == data
                && e["results"][0]["type"] == "clicked"
        })
        .await;
    let query_id = clicked_query_id(&line["event"]).unwrap();
    let path = format!("/api/v1/callbacks/{query_id}/answer");
    let posted = daemon.api.post(&path, &[], body.to_string()).await.unwrap();
    let pressed = tokio::time::timeout(PATIENCE, clicking)
        .await
        .expect("the click to end")
        .unwrap()
        .unwrap();
    let Pressed::Answered(outcome) = pressed else {
        panic!("not a callback outcome: {pressed:?}");
    };
    (posted, outcome)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answer_urls_are_checked_and_a_refused_answer_is_sent_again_without_it() {
    let daemon = Daemon::start(Duration::from_millis(2000)).await;
    let user = daemon.user("Ann");
    let timeout = daemon.sandbox.telegram().callback_timeout();
    let with_answer = |url: &str| {
        json!({
            "type": "reply_buttons",
            "text": "Pick",
            "reply_markup": {"inline_keyboard": [[
                {"text": "A", "callback_data": "a", "answer": {"text": "Hi", "url": url}},
                {"text": "B", "callback_data": "b"},
                {"text": "C", "callback_data": "c"}
            ]]}
        })
    };

    // At enqueue: a URL Telegram never opens from an answer is code 5.
    let body = json!({"destination_user_id": user.to_string(),
                      "telegram_interactive_message": with_answer("https://example.com/t")});
    let refused = daemon
        .api
        .post("/api/v1/telegram/interactive", &[], body.to_string())
        .await
        .unwrap();
    assert_eq!(refused.status, 400, "{:?}", refused.json());
    let refused = refused.json().unwrap();
    assert_eq!(refused["error_code"], 5, "{refused}");
    let error = refused["error"].as_str().unwrap();
    assert!(
        error.contains("inline_keyboard[0][0].answer.url"),
        "{error}"
    );
    assert!(error.contains("t.me/<bot username>?start="), "{error}");

    // Another bot's start link has the right shape, but Telegram refuses it
    // for this bot (URL_INVALID): the stored answer goes again without it.
    let message = daemon
        .send(user, with_answer("https://t.me/some_other_bot?start=a"))
        .await;
    let outcome = daemon.click(user, message, "a").await;
    let answer = outcome.result.expect("answered, not BOT_RESPONSE_TIMEOUT");
    assert_eq!(answer.message.as_deref(), Some("Hi"));
    assert_eq!(answer.url, None);
    assert!(outcome.elapsed < timeout, "{:?}", outcome.elapsed);

    // A consumer's answer: a bad URL is code 5 naming `url` (and the click
    // falls back to the empty answer at the deadline) ...
    let (posted, outcome) = click_answered_with(
        &daemon,
        user,
        message,
        "b",
        json!({"url": "https://example.com"}),
    )
    .await;
    assert_eq!(posted.status, 400, "{:?}", posted.json());
    let posted = posted.json().unwrap();
    assert_eq!(posted["error_code"], 5, "{posted}");
    assert!(
        posted["error"].as_str().unwrap().contains("`url`"),
        "{posted}"
    );
    assert_eq!(outcome.result.expect("answered empty").message, None);
    // ... and one Telegram refuses is sent again without its URL.
    let (posted, outcome) = click_answered_with(
        &daemon,
        user,
        message,
        "c",
        json!({"text": "Open", "url": "https://t.me/some_other_bot?start=c"}),
    )
    .await;
    assert_eq!(posted.status, 200, "{:?}", posted.json());
    let answer = outcome.result.expect("answered without the url");
    assert_eq!(answer.message.as_deref(), Some("Open"));
    assert_eq!(answer.url, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_wait_on_an_answer_is_waited_out_and_query_id_invalid_is_final() {
    use telegate::sandbox::InjectedError;
    const METHOD: &str = "messages.setBotCallbackAnswer";
    let daemon = Daemon::start(Duration::from_millis(200)).await;
    let user = daemon.user("Ann");
    let message = daemon.send(user, buttons()).await;
    daemon
        .sandbox
        .telegram()
        .set_callback_timeout(Duration::from_secs(5));
    let faults = daemon.sandbox.faults();
    let inject = |message: &str, remaining| {
        faults.set_rpc_error(
            METHOD,
            Some(InjectedError {
                code: if message.starts_with("FLOOD") {
                    420
                } else {
                    400
                },
                message: message.into(),
                remaining,
                label: "test_answer_error",
                keys: None,
            }),
        );
    };

    inject("FLOOD_WAIT_1", 1);
    let outcome = daemon.click(user, message, "up").await;
    let answer = outcome.result.expect("answered after the flood wait");
    assert_eq!(answer.message.as_deref(), Some("Thanks!"));
    assert!(
        outcome.elapsed >= Duration::from_secs(1),
        "{:?}",
        outcome.elapsed
    );
    assert!(faults.rpc_errors().is_empty());

    // QUERY_ID_INVALID: no retry, no lesser answer (the second injected
    // error is never drawn), so the user's app times out.
    inject("QUERY_ID_INVALID", 2);
    let outcome = daemon.click(user, message, "up").await;
    assert!(outcome.result.is_err(), "{:?}", outcome.result);
    assert_eq!(faults.rpc_errors()[METHOD].remaining, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_clicks_across_a_hundred_users_are_all_answered() {
    let daemon = Daemon::start(Duration::from_millis(200)).await;
    let mut targets = Vec::new();
    for n in 0..100 {
        let user = daemon.user(&format!("user{n}"));
        targets.push((user, daemon.send(user, buttons()).await));
    }
    let mut clicks = Vec::new();
    for (user, message) in &targets {
        for n in 0..10 {
            let telegram = daemon.sandbox.telegram().clone();
            let (user, message) = (*user, *message);
            let data = if n % 2 == 0 { "up" } else { "down" };
            clicks.push(tokio::spawn(async move {
                telegram
                    .click(
                        user,
                        UserClick::Callback {
                            message_id: message,
                            data: data.into(),
                        },
                    )
                    .await
            }));
        }
    }
    let mut answered = 0;
    for click in clicks {
        let pressed = tokio::time::timeout(PATIENCE, click)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        let Pressed::Answered(outcome) = pressed else {
            panic!("not a callback")
        };
        assert!(outcome.result.is_ok(), "{:?}", outcome.result);
        answered += 1;
    }
    assert_eq!(answered, 1000);
    // Each click is also one event.
    let clicked = tokio::time::timeout(PATIENCE, async {
        loop {
            let all = daemon.events.after(0, 1000).await.unwrap();
            let mut all_events = all;
            let mut cursor = all_events.last().map_or(0, |e| e.cursor);
            loop {
                let more = daemon.events.after(cursor, 1000).await.unwrap();
                let Some(last) = more.last() else { break };
                cursor = last.cursor;
                all_events.extend(more);
            }
            let clicks = all_events
                .iter()
                .filter(|e| e.id.starts_with("callback:"))
                .count();
            if clicks >= 1000 {
                return clicks;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("every click to become an event");
    assert_eq!(clicked, 1000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_inbound_kind_becomes_its_event() {
    let daemon = Daemon::start(Duration::from_millis(1500)).await;
    let telegram = daemon.sandbox.telegram();
    let user = daemon.user("Bea");
    let bot = telegram.bot_id();
    let say = |message| telegram.user_sends(user, BOT_ID, message, None).unwrap();
    let text = say(UserMessage::Text("hi there".into()));
    let photo = say(UserMessage::Photo {
        mime_type: "image/jpeg".into(),
        size: 2048,
        dc_id: DC_ID,
        content: None,
    });
    let file = say(UserMessage::Document {
        file_name: "Ticket.pdf".into(),
        mime_type: "application/pdf".into(),
        size: 4096,
        dc_id: DC_ID,
        content: None,
    });
    let place = say(UserMessage::Location {
        latitude: 52.377486,
        longitude: 4.901026,
    });
    let card = say(UserMessage::Contact {
        phone_number: "+31600000000".into(),
        first_name: "Bea".into(),
    });
    // A reply typed on a force-reply prompt, and a reply-keyboard press.
    daemon
        .send(
            user,
            json!({"type": "highlight_reply", "text": "Rate 1-5",
                           "reply_markup": {"force_reply": true}}),
        )
        .await;
    let reply = say(UserMessage::Text("5".into()));
    let keyboard = daemon
        .send(
            user,
            json!({"type": "reply_keyboard", "text": "Pick",
                           "reply_markup": {"keyboard": [[{"text": "Track my order"}]]}}),
        )
        .await;
    let Pressed::Sent {
        message_id: pressed,
    } = telegram
        .click(
            user,
            UserClick::Keyboard {
                message_id: keyboard,
                text: "Track my order".into(),
                location: None,
            },
        )
        .await
        .unwrap()
    else {
        panic!("a keyboard press sends a message")
    };

    let reference = |id: i32| format!("telegram:{bot}:{user}:{id}");
    let by_id = |id: i32| {
        let wanted = reference(id);
        move |e: &Value| e["id"] == wanted
    };
    let event = daemon.find(by_id(text)).await["event"].clone();
    assert_eq!(event["body"]["type"], "text");
    assert_eq!(event["body"]["text"]["text"], "hi there");
    assert_eq!(
        event["sender"]["contact"]["identifierValue"],
        user.to_string()
    );
    assert_eq!(event["sender"]["contact"]["annotations"]["name"], "Bea");
    assert_eq!(
        event["receiver"]["connector"]["identifierValue"],
        bot.to_string()
    );
    assert_eq!(event["parts"][0]["platformReference"], reference(text));
    assert_eq!(event["direction"], "incoming");
    assert!(event["createdAt"].as_str().unwrap().ends_with('Z'));

    let event = daemon.find(by_id(photo)).await["event"].clone();
    assert_eq!(event["body"]["type"], "image");
    assert_eq!(
        event["body"]["image"]["images"][0]["mediaUrl"],
        format!("/api/v1/media/{user}:{photo}")
    );
    // The media URLs serve the files from Telegram (upload.getFile).
    let chat = telegram.chat(user, BOT_ID).unwrap();
    let media_of = |id: i32| {
        let message = chat["messages"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["id"] == id)
            .unwrap();
        message["media"].clone()
    };
    for (id, size, content_type) in [(photo, 2048, "image/jpeg"), (file, 4096, "application/pdf")] {
        let answer = daemon
            .api
            .get(&format!("/api/v1/media/{user}:{id}"))
            .await
            .unwrap();
        assert_eq!(answer.status, 200, "{:?}", answer.body);
        assert_eq!(answer.headers["content-type"], content_type);
        let media_id = media_of(id)["id"].as_i64().unwrap();
        assert_eq!(answer.body.len(), size);
        assert_eq!(
            &answer.body[..],
            &telegate::sandbox::telegram::file_content(media_id, 0, size)[..]
        );
    }
    let none = daemon
        .api
        .get(&format!("/api/v1/media/{user}:{text}"))
        .await
        .unwrap();
    assert_eq!(none.status, 404);
    let bad = daemon.api.get("/api/v1/media/oops").await.unwrap();
    assert_eq!(bad.status, 400);

    let event = daemon.find(by_id(file)).await["event"].clone();
    assert_eq!(event["body"]["type"], "file");
    let attachment = &event["body"]["file"]["files"][0];
    assert_eq!(attachment["contentType"], "application/pdf");
    assert_eq!(attachment["filename"], "Ticket.pdf");
    let event = daemon.find(by_id(place)).await["event"].clone();
    assert_eq!(event["body"]["type"], "location");
    let location = &event["body"]["location"];
    assert_eq!(location["coordinates"]["latitude"], 52.377486);
    assert_eq!(
        location["location"]["label"],
        "52° 22' 38.95\" N, 4° 54' 3.69\" E"
    );
    let event = daemon.find(by_id(card)).await["event"].clone();
    assert_eq!(event["body"]["type"], "contact");
    assert_eq!(event["body"]["contact"]["phoneNumber"], "+31600000000");
    let event = daemon.find(by_id(reply)).await["event"].clone();
    assert_eq!(event["body"]["text"]["text"], "5");
    let event = daemon.find(by_id(pressed)).await["event"].clone();
    assert_eq!(event["body"]["text"]["text"], "Track my order");

    // Job results are events too; the bot's own messages are not.
    let sent = daemon.find(|e| e["status"] == "sent").await["event"].clone();
    assert_eq!(sent["direction"], "outgoing");
    assert_eq!(
        sent["receiver"]["contacts"][0]["identifierValue"],
        user.to_string()
    );
    let all = daemon.stream(0, 0).await;
    assert!(
        !all.iter().any(|l| l["event"]["id"] == reference(keyboard)),
        "the bot's own message became an event"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stream_resumes_from_a_cursor_and_long_polls() {
    let daemon = Daemon::start(Duration::from_millis(1500)).await;
    let telegram = daemon.sandbox.telegram();
    let user = daemon.user("Cy");
    let first = daemon.find(|e| e["body"]["text"]["text"] == "/start").await;
    let cursor = first["cursor"].as_i64().unwrap();

    // A long poll after the newest event is woken by the next one.
    let polling = {
        let api = daemon.api.clone();
        tokio::spawn(async move {
            api.get(&format!("/api/v1/events?after={cursor}&wait=30"))
                .await
                .unwrap()
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    telegram
        .user_sends(user, BOT_ID, UserMessage::Text("one".into()), None)
        .unwrap();
    let answer = tokio::time::timeout(PATIENCE, polling)
        .await
        .unwrap()
        .unwrap();
    let lines: Vec<Value> = std::str::from_utf8(&answer.body)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["event"]["body"]["text"]["text"], "one");
    let next = lines[0]["cursor"].as_i64().unwrap();
    assert!(next > cursor);
    assert_eq!(
        answer.headers["x-telegate-cursor"],
        next.to_string().as_str()
    );

    telegram
        .user_sends(user, BOT_ID, UserMessage::Text("two".into()), None)
        .unwrap();
    let line = daemon.find(|e| e["body"]["text"]["text"] == "two").await;
    // Resuming from the first cursor again yields both, in order.
    let again = daemon.stream(cursor, 0).await;
    let texts: Vec<&str> = again
        .iter()
        .map(|l| l["event"]["body"]["text"]["text"].as_str().unwrap())
        .collect();
    assert_eq!(texts, ["one", "two"]);
    assert_eq!(again[1]["cursor"], line["cursor"]);

    // Bad parameters name themselves.
    for (query, name) in [
        ("after=-1", "after"),
        ("wait=61", "wait"),
        ("limit=0", "limit"),
        ("since=3", "since"),
    ] {
        let answer = daemon
            .api
            .get(&format!("/api/v1/events?{query}"))
            .await
            .unwrap();
        assert_eq!(answer.status, 400, "{query}");
        let error = answer.json().unwrap()["error"].as_str().unwrap().to_owned();
        assert!(error.contains(name), "{query}: {error}");
    }
}

/// `telegate run` as a child process; SIGKILLed on drop.
struct Worker {
    child: std::process::Child,
}

impl Worker {
    fn spawn(state: &std::path::Path) -> Worker {
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_telegate"))
            .arg("--state-dir")
            .arg(state)
            .arg("run")
            .envs(store_support::env(state))
            .env("TELEGATE_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        Worker { child }
    }

    fn kill(&mut self) {
        let _ = self.child.kill(); // SIGKILL
        let _ = self.child.wait();
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Every event id in the stream after `cursor`, read over the socket
/// (an unreachable socket reads as nothing new).
async fn read_all(api: &ApiClient, cursor: &mut i64, seen: &mut Vec<String>) {
    let Ok(answer) = api
        .get(&format!("/api/v1/events?after={cursor}&wait=1&limit=1000"))
        .await
    else {
        return;
    };
    for line in std::str::from_utf8(&answer.body).unwrap().lines() {
        let line: Value = serde_json::from_str(line).unwrap();
        *cursor = line["cursor"].as_i64().unwrap();
        seen.push(line["event"]["id"].as_str().unwrap().to_owned());
    }
}

/// An event a user's action must become: its id, or the start of it when
/// the rest is the update's place in its box (edits, reactions, blocks).
#[derive(Debug, Clone, PartialEq)]
enum Expected {
    Id(String),
    Prefix(String),
}

/// The expected events `sent` has no match for in `seen` (a prefix
/// expected k times needs k events).
fn missing(sent: &[Expected], seen: &[String]) -> Vec<Expected> {
    let seen_ids: std::collections::HashSet<&str> = seen.iter().map(String::as_str).collect();
    let mut wanted: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    let mut missing = Vec::new();
    for expected in sent {
        match expected {
            Expected::Id(id) if !seen_ids.contains(id.as_str()) => missing.push(expected.clone()),
            Expected::Id(_) => {}
            Expected::Prefix(prefix) => *wanted.entry(prefix).or_default() += 1,
        }
    }
    for (prefix, count) in wanted {
        if seen.iter().filter(|id| id.starts_with(prefix)).count() < count {
            missing.push(Expected::Prefix(prefix.to_owned()));
        }
    }
    missing
}

/// The `n`th thing users do in the SIGKILL test, by `user` (`last`: each
/// user's latest message); what it must become.
fn act(
    telegram: &telegate::sandbox::telegram::FakeTelegram,
    bot: i64,
    user: i64,
    group: i64,
    n: usize,
    last: &mut std::collections::HashMap<i64, i32>,
) -> Vec<Expected> {
    let media = match n % 14 {
        0 => UserMessage::Text(format!("message {n}")),
        1 => UserMessage::Voice {
            duration: 2,
            size: 100,
        },
        2 => UserMessage::Audio {
            duration: 60,
            title: None,
            performer: None,
            size: 100,
        },
        3 => UserMessage::Video {
            duration: 1.5,
            width: 64,
            height: 48,
            size: 100,
        },
        4 => UserMessage::VideoNote {
            duration: 1.0,
            length: 64,
            size: 100,
        },
        5 => UserMessage::Animation {
            duration: 1.0,
            width: 64,
            height: 48,
            size: 100,
        },
        6 => UserMessage::Sticker {
            emoji: "👍".into()
        },
        7 => UserMessage::Venue {
            latitude: 1.0,
            longitude: 2.0,
            title: "Here".into(),
            address: "Street 1".into(),
        },
        8 => UserMessage::Poll {
            question: "Which?".into(),
            options: vec!["a".into(), "b".into()],
        },
        9 => UserMessage::Dice {
            emoji: "🎲".into(),
            value: 3,
        },
        kind @ (10 | 11) => {
            let Some(&id) = last.get(&user) else {
                return Vec::new();
            };
            let done = if kind == 10 {
                telegram
                    .user_edits(user, BOT_ID, id, format!("edited {n}"))
                    .unwrap();
                "edited"
            } else {
                telegram
                    .react(user, BOT_ID, None, id, Some("🔥".into()))
                    .unwrap();
                "reacted"
            };
            return vec![Expected::Prefix(format!(
                "telegram:{bot}:{user}:{id}:{done}:"
            ))];
        }
        12 => {
            telegram.set_blocked(user, BOT_ID, true).unwrap();
            telegram.set_blocked(user, BOT_ID, false).unwrap();
            return ["blocked", "unblocked"]
                .map(|kind| Expected::Prefix(format!("telegram:{bot}:{user}:{kind}:")))
                .to_vec();
        }
        _ => {
            let text = UserMessage::Text(format!("group message {n}"));
            let id = telegram.group_sends(group, user, text, None).unwrap();
            return vec![Expected::Id(format!("telegram:{bot}:{group}:{id}"))];
        }
    };
    let id = telegram.user_sends(user, BOT_ID, media, None).unwrap();
    last.insert(user, id);
    vec![Expected::Id(format!("telegram:{bot}:{user}:{id}"))]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigkilled_worker_loses_no_inbound_message() {
    let dir = tempfile::tempdir().unwrap();
    let sandbox = Sandbox::start(SandboxOptions::default()).await.unwrap();
    let telegram = sandbox.telegram().clone();
    let state = dir.path().join("state");
    std::fs::create_dir_all(state.join("sessions")).unwrap();
    write_worker_files(&state, &sandbox).unwrap();
    let api = ApiClient::new(state.join("telegate.sock"));
    let bot = telegram.bot_id();
    let users: Vec<i64> = (0..10)
        .map(|n| {
            telegram
                .create_user(NewUser {
                    first_name: format!("u{n}"),
                    ..NewUser::default()
                })
                .unwrap()
                .id
        })
        .collect();

    let mut worker = Worker::spawn(&state);
    // Ready: signed in and recording (what users wrote before the bot's
    // first sign-in is not the bot's to receive).
    let (mut cursor, mut seen) = (0, Vec::new());
    tokio::time::timeout(PATIENCE, async {
        let mut knocks = 0;
        while seen.is_empty() {
            telegram
                .user_sends(
                    users[0],
                    BOT_ID,
                    UserMessage::Text(format!("knock {knocks}")),
                    None,
                )
                .unwrap();
            knocks += 1;
            read_all(&api, &mut cursor, &mut seen).await;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the worker to start recording");
    // Users write all along, through the kill and the restart: every kind
    // of message, edits, reactions, blocks and unblocks, and supergroup
    // messages (their own box).
    telegram.set_privacy(BOT_ID, false).unwrap();
    let group = telegram
        .create_group(NewGroup {
            title: "Desk".into(),
            kind: GroupKind::Supergroup,
            members: users.clone(),
            bot: Some(Role::Member),
            bot_id: BOT_ID,
        })
        .unwrap();
    let sent = Arc::new(std::sync::Mutex::new(Vec::new()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writing = {
        let (telegram, sent, stop, users) =
            (telegram.clone(), sent.clone(), stop.clone(), users.clone());
        tokio::spawn(async move {
            let mut last = std::collections::HashMap::new();
            for n in 0.. {
                if stop.load(std::sync::atomic::Ordering::Relaxed) {
                    break;
                }
                let user = users[n % users.len()];
                for expected in act(&telegram, bot, user, group, n, &mut last) {
                    sent.lock().unwrap().push(expected);
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
    };

    // Kill while it is recording.
    let recorded = seen.len();
    tokio::time::timeout(PATIENCE, async {
        while seen.len() < recorded + 100 {
            read_all(&api, &mut cursor, &mut seen).await;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the worker to record events");
    worker.kill();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut worker = Worker::spawn(&state);
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    writing.await.unwrap();

    let sent = sent.lock().unwrap().clone();
    assert!(sent.len() > seen.len(), "users kept writing past the kill");
    let result = tokio::time::timeout(PATIENCE, async {
        loop {
            read_all(&api, &mut cursor, &mut seen).await;
            if missing(&sent, &seen).is_empty() {
                return;
            }
        }
    })
    .await;
    let missing = missing(&sent, &seen);
    assert!(
        result.is_ok() && missing.is_empty(),
        "{} of {} messages never became events: {:?}",
        missing.len(),
        sent.len(),
        missing.iter().take(5).collect::<Vec<_>>()
    );
    // Replays after the crash were recognised: each id once in the stream.
    let mut unique = seen.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), seen.len(), "an event id appeared twice");

    // `telegate events` prints the same stream, and resumes after a cursor.
    let events_cli = |after: i64| {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_telegate"))
            .arg("--state-dir")
            .arg(&state)
            .args(["events", "--after", &after.to_string()])
            .output()
            .unwrap();
        assert!(output.status.success(), "{output:?}");
        let lines: Vec<Value> = String::from_utf8(output.stdout)
            .unwrap()
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect();
        lines
    };
    let printed = events_cli(0);
    let ids: Vec<&str> = printed
        .iter()
        .map(|l| l["event"]["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, seen);
    let tail = events_cli(printed[9]["cursor"].as_i64().unwrap());
    assert_eq!(tail.len(), printed.len() - 10);
    assert_eq!(tail[0], printed[10]);
    worker.kill();
}

/// What the test webhook server saw: one entry per attempt.
#[derive(Debug, Clone)]
struct Attempt {
    event_id: String,
    chat: String,
    text: Option<String>,
    signed: bool,
    accepted: bool,
}

#[derive(Clone, Default)]
struct Hook {
    attempts: Arc<std::sync::Mutex<Vec<Attempt>>>,
    /// Chat whose deliveries are refused with a 500 while set.
    refuse: Arc<std::sync::Mutex<Option<String>>>,
}

const SECRET: &str = "webhook-test-secret";

/// Stripe's check, by hand: `t=T,v1=HEX` with HEX the HMAC-SHA256 of
/// `T.body`, and T within five minutes of now.
fn signed(header: &str, body: &[u8]) -> bool {
    use hmac::{KeyInit, Mac};
    let Some((t, v1)) = header
        .strip_prefix("t=")
        .and_then(|rest| rest.split_once(",v1="))
    else {
        return false;
    };
    let mut mac = <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(format!("{t}.").as_bytes());
    mac.update(body);
    let expected: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let fresh = t.parse::<i64>().is_ok_and(|t| (now - t).abs() <= 300);
    fresh && v1 == expected
}

async fn hook(
    axum::extract::State(hook): axum::extract::State<Hook>,
    headers: axum::http::HeaderMap,
    body: bytes::Bytes,
) -> axum::http::StatusCode {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    let event: Value = serde_json::from_slice(&body).unwrap();
    let chat = event["meta"]["extraInformation"]["ChatID"]
        .as_str()
        .unwrap_or("")
        .to_owned();
    let accepted = hook.refuse.lock().unwrap().as_deref() != Some(chat.as_str());
    hook.attempts.lock().unwrap().push(Attempt {
        event_id: header("x-telegate-event-id"),
        signed: signed(&header("x-telegate-signature"), &body)
            && event["id"] == header("x-telegate-event-id").as_str(),
        text: event["body"]["text"]["text"].as_str().map(str::to_owned),
        chat,
        accepted,
    });
    if accepted {
        axum::http::StatusCode::NO_CONTENT
    } else {
        axum::http::StatusCode::INTERNAL_SERVER_ERROR
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_webhook_gets_signed_retried_per_chat_ordered_deliveries() {
    let server = Hook::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let app = axum::Router::new()
        .route("/hook", axum::routing::post(hook))
        .with_state(server.clone());
    let serving = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let config = WebhookConfig {
        url: Some(format!("http://{address}/hook")),
        secret: Some(Secret::new(SECRET)),
        timeout_ms: 5000,
        max_backoff_ms: 200,
        ..WebhookConfig::default()
    };
    let daemon = Daemon::start_with(Duration::from_millis(1500), Some(config)).await;
    let telegram = daemon.sandbox.telegram();
    let new_user = |name: &str| {
        telegram
            .create_user(NewUser {
                first_name: name.into(),
                ..NewUser::default()
            })
            .unwrap()
            .id
    };
    let (blocked, free) = (new_user("Blocked"), new_user("Free"));
    *server.refuse.lock().unwrap() = Some(blocked.to_string());
    for n in 0..5 {
        telegram
            .user_sends(blocked, BOT_ID, UserMessage::Text(format!("b{n}")), None)
            .unwrap();
        telegram
            .user_sends(free, BOT_ID, UserMessage::Text(format!("f{n}")), None)
            .unwrap();
    }
    let texts_accepted = |chat: i64| -> Vec<String> {
        server
            .attempts
            .lock()
            .unwrap()
            .iter()
            .filter(|a| a.accepted && a.chat == chat.to_string())
            .filter_map(|a| a.text.clone())
            .collect()
    };
    // The free chat goes through while the blocked one keeps failing.
    tokio::time::timeout(PATIENCE, async {
        while texts_accepted(free).len() < 5 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the free chat's deliveries");
    assert_eq!(texts_accepted(free), ["f0", "f1", "f2", "f3", "f4"]);
    let refusals = tokio::time::timeout(PATIENCE, async {
        loop {
            let attempts = server.attempts.lock().unwrap().clone();
            let refused: Vec<_> = attempts.into_iter().filter(|a| !a.accepted).collect();
            if refused.len() >= 3 {
                return refused;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("retries of the blocked chat");
    // Retries repeat the head of the line, not later events.
    assert!(
        refusals.iter().all(|a| a.event_id == refusals[0].event_id),
        "{refusals:?}"
    );
    assert!(texts_accepted(blocked).is_empty());
    let status = daemon
        .api
        .get("/api/v1/webhook")
        .await
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(status["configured"], true);
    assert!(status["failed_attempts"].as_u64().unwrap() >= 3, "{status}");
    assert_eq!(status["retrying"][0]["chat"], blocked, "{status}");
    assert!(
        status["retrying"][0]["error"]
            .as_str()
            .unwrap()
            .contains("500"),
        "{status}"
    );

    *server.refuse.lock().unwrap() = None;
    tokio::time::timeout(PATIENCE, async {
        while texts_accepted(blocked).len() < 5 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the blocked chat's deliveries after it recovers");
    assert_eq!(texts_accepted(blocked), ["b0", "b1", "b2", "b3", "b4"]);
    let attempts = server.attempts.lock().unwrap().clone();
    assert!(attempts.iter().all(|a| a.signed), "{attempts:?}");
    let status = daemon
        .api
        .get("/api/v1/webhook")
        .await
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(status["retrying"], json!([]), "{status}");
    assert!(status["delivered"].as_u64().unwrap() >= 10, "{status}");
    serving.abort();
}
