//! Text and media messages (`POST /api/v1/telegram/messages`) through a real
//! Unix socket: validation with the seed's codes and JSON paths, the parts a
//! job is stored with, and (against the sandbox, with `telegate run` as a
//! child process) what the user's chat shows — media kind, caption, order —
//! including after the daemon is SIGKILLed in the middle of a job.

mod worker_support;

use worker_support::{Worker, eventually, store as store_support};

use std::path::PathBuf;

use serde_json::{Value, json};
use telegate::api::client::{Answer, Client};
use telegate::api::socket;
use telegate::config::ApiConfig;
use telegate::queue::Queue;
use telegate::sandbox::server::{Sandbox, SandboxOptions};
use telegate::sandbox::telegram::BOT_ID;
use telegate::sandbox::telegram::{
    AccountId, ChatFault, NewUser, StoredMedia, TgError, UserMessage,
};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

const MESSAGES: &str = "/api/v1/telegram/messages";
const MB: u64 = 1024 * 1024;

/// The API alone (no worker) on a temporary socket, stopped on drop.
struct Api {
    _dir: tempfile::TempDir,
    client: Client,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<()>>,
}

impl Api {
    async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let queue = Queue::open_at(&store_support::location(dir.path())).unwrap();
        let path: PathBuf = dir.path().join("telegate.sock");
        let (listener, socket_file) = socket::bind(&path).await.unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let served = telegate::api::serve(listener, queue, &ApiConfig::default(), async {
                let _ = stopped.await;
            })
            .await;
            drop(socket_file);
            served
        });
        Api {
            _dir: dir,
            client: Client::new(path),
            stop: Some(stop),
            task,
        }
    }

    async fn post(&self, body: &Value) -> Answer {
        self.post_to(MESSAGES, &[], body).await
    }

    async fn post_to(&self, path: &str, headers: &[(&str, &str)], body: &Value) -> Answer {
        self.client
            .post(path, headers, body.to_string())
            .await
            .unwrap()
    }

    async fn job(&self, id: &Value) -> Value {
        let answer = self
            .client
            .get(&format!("/api/v1/jobs/{id}"))
            .await
            .unwrap();
        assert_eq!(answer.status, 200, "{:?}", answer.body);
        answer.json().unwrap()
    }
}

impl Drop for Api {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.task.abort();
    }
}

fn item(name: &str, mime: &str) -> Value {
    json!({
        "mediaName": name,
        "mediaUri": format!("https://cdn.example.com/files/{name}"),
        "mimeType": mime,
    })
}

/// 400 with the seed's code, and an error that mentions every `needle`.
fn assert_error(answer: &Answer, code: u8, needles: &[&str]) {
    assert_eq!(answer.status, 400, "{:?}", answer.body);
    let body = answer.json().unwrap();
    assert_eq!(body["error_code"], code, "{body}");
    let message = body["error"].as_str().unwrap();
    for needle in needles {
        assert!(message.contains(needle), "`{needle}` not in: {message}");
    }
    assert!(body["request_id"].as_str().is_some(), "{body}");
}

#[tokio::test]
async fn a_text_and_media_job_is_stored_with_one_part_per_message() {
    let api = Api::start().await;
    let answer = api
        .post(&json!({
            "destination_user_id": "4242",
            "text": "Your order",
            "media": [item("receipt.jpg", "image/jpeg"), item("invoice.pdf", "application/pdf"), item("clip.mp4", "video/mp4")],
            "reply_markup": {"inline_keyboard": [[{"text": "Track", "url": "https://example.com/t"}]]},
            "intercom_teammate_id": "tm_1",
        }))
        .await;
    assert_eq!(answer.status, 202, "{:?}", answer.body);
    let body = answer.json().unwrap();
    assert_eq!(body["status"], "queued");
    let job = api.job(&body["job_id"]).await;
    assert_eq!(job["kind"], "messages");
    assert_eq!(job["destination"], "4242");
    let parts = job["parts"].as_array().unwrap();
    assert_eq!(parts.len(), 3, "{job}");
    let mut random_ids: Vec<&str> = parts
        .iter()
        .map(|p| p["random_id"].as_str().unwrap())
        .collect();
    random_ids.dedup();
    assert_eq!(
        random_ids.len(),
        3,
        "each part has its own random_id: {job}"
    );
    let kinds: Vec<&str> = job["payload"]["media"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["image", "document", "video"]);
    assert_eq!(
        job["payload"]["reply_markup"]["inline_keyboard"][0][0]["text"],
        "Track"
    );
}

#[tokio::test]
async fn a_text_too_long_for_a_caption_is_one_more_part() {
    let api = Api::start().await;
    let with = |text: String| json!({"destination_user_id": 7, "text": text, "media": item("a.gif", "image/gif")});
    for (text, parts) in [
        ("a".repeat(1024), 1),
        ("a".repeat(1025), 2),
        ("😀".repeat(513), 2),
    ] {
        let answer = api.post(&with(text)).await;
        assert_eq!(answer.status, 202, "{:?}", answer.body);
        let job = api.job(&answer.json().unwrap()["job_id"]).await;
        assert_eq!(job["parts"].as_array().unwrap().len(), parts, "{job}");
    }
}

#[tokio::test]
async fn every_rule_answers_with_the_seed_code_and_the_field() {
    let api = Api::start().await;
    let cases: Vec<(Value, u8, Vec<&str>)> = vec![
        (
            json!({"destination_user_id": 7}),
            1,
            vec!["`text`", "`media`"],
        ),
        (json!({"text": "x"}), 1, vec!["`destination_user_id`"]),
        (
            json!({"destination_user_id": 7, "text": "x", "caption": "y"}),
            4,
            vec!["`caption`"],
        ),
        (
            json!({"destination_user_id": 7, "media": [item("a.jpg", "image/jpeg"), {"mediaName": "b.jpg", "mediaUri": "https://x.example/b", "mimeType": "image/jpeg", "alt": "b"}]}),
            4,
            vec!["`media[1].alt`"],
        ),
        (
            json!({"destination_user_id": 7, "text": 5}),
            4,
            vec!["`text`"],
        ),
        (
            json!({"destination_user_id": 7, "text": "a".repeat(4097)}),
            5,
            vec!["`text`", "4096"],
        ),
        (
            json!({"destination_user_id": 7, "media": [item("photo.png", "image/jpeg")]}),
            5,
            vec!["`media[0].mediaName`", "photo.png", "image/jpeg"],
        ),
        (
            json!({"destination_user_id": 7, "media": [item("song", "audio/mpeg")]}),
            5,
            vec!["`media[0].mediaName`", "song", "audio/mpeg"],
        ),
        (
            json!({"destination_user_id": 7, "media": [{"mediaName": "a.jpg", "mediaUri": "/files/a.jpg", "mimeType": "image/jpeg"}]}),
            5,
            vec!["`media[0].mediaUri`", "http"],
        ),
        (
            json!({"destination_user_id": 7, "media": [{"mediaName": "a.jpg", "mediaUri": "ftp://x.example/a.jpg", "mimeType": "image/jpeg"}]}),
            5,
            vec!["`media[0].mediaUri`"],
        ),
        (
            json!({"destination_user_id": 7, "media": [{"mediaName": "a.jpg", "mediaUri": "https://x.example/a.jpg", "mimeType": "image/jpeg", "size": 5 * MB + 1}]}),
            5,
            vec!["`media[0].size`", "5 MB"],
        ),
        (
            json!({"destination_user_id": 7, "media": [{"mediaName": "a.mp4", "mediaUri": "https://x.example/a.mp4", "mimeType": "video/mp4", "size": 20 * MB + 1}]}),
            5,
            vec!["`media[0].size`", "20 MB"],
        ),
        (
            json!({"destination_user_id": 7, "media": [{"mediaName": "a.png", "mediaUri": "https://x.example/a.png", "mimeType": "image/png", "sticker": true}]}),
            5,
            vec!["`media[0].sticker`"],
        ),
        (
            json!({"destination_user_id": 7, "media": []}),
            5,
            vec!["`media`"],
        ),
        (
            json!({"destination_user_id": 7, "text": "x", "reply_markup": {"force_reply": false}}),
            5,
            vec!["`reply_markup.force_reply`"],
        ),
        (
            json!({"destination_user_id": 7, "text": "x", "reply_markup": {"keyboard": [[]]}}),
            5,
            vec!["`reply_markup.keyboard[0]`"],
        ),
    ];
    for (body, code, needles) in cases {
        let answer = api.post(&body).await;
        assert_error(&answer, code, &needles);
    }
    let malformed = api
        .client
        .post(MESSAGES, &[], "{".to_owned())
        .await
        .unwrap();
    assert_error(&malformed, 4, &["malformed JSON"]);
}

#[tokio::test]
async fn sizes_within_the_limits_and_every_kind_are_accepted() {
    let api = Api::start().await;
    let sized = |name: &str, mime: &str, size: u64| {
        let mut media = item(name, mime);
        media["size"] = json!(size);
        media
    };
    let answer = api
        .post(&json!({"destination_user_id": 7, "media": [
            sized("a.jpg", "image/jpeg", 5 * MB),
            sized("a.gif", "image/gif", 20 * MB),
            item("a.mpeg", "video/mpeg"),
            item("a.mp3", "audio/mpeg"),
            item("a.mov", "video/quicktime"),
            {"mediaName": "s.webp", "mediaUri": "https://x.example/s.webp", "mimeType": "image/webp", "sticker": true},
            item("s.tgs", "application/x-tgsticker"),
            item("a.webp", "image/webp"),
        ]}))
        .await;
    assert_eq!(answer.status, 202, "{:?}", answer.body);
    let job = api.job(&answer.json().unwrap()["job_id"]).await;
    let kinds: Vec<&str> = job["payload"]["media"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "image",
            "animation",
            "animation",
            "audio",
            "document",
            "sticker",
            "sticker",
            "image"
        ]
    );
}

#[tokio::test]
async fn messages_share_the_enqueue_path_idempotency_and_wait() {
    let api = Api::start().await;
    let body = json!({"destination_user_id": 9, "text": "once"});
    let first = api
        .post_to(MESSAGES, &[("Idempotency-Key", "k-1")], &body)
        .await;
    let again = api
        .post_to(MESSAGES, &[("Idempotency-Key", "k-1")], &body)
        .await;
    assert_eq!(first.status, 202);
    assert_eq!(again.status, 202);
    assert_eq!(
        first.json().unwrap()["job_id"],
        again.json().unwrap()["job_id"]
    );
    assert_eq!(
        again
            .headers
            .get("idempotent-replayed")
            .map(|v| v.as_bytes()),
        Some(&b"true"[..])
    );
    // No worker here: a wait that runs out answers 202 as the job stands.
    let waited = api
        .post_to(&format!("{MESSAGES}?wait=0.05"), &[], &body)
        .await;
    assert_eq!(waited.status, 202, "{:?}", waited.body);
    assert_eq!(waited.json().unwrap()["status"], "queued");
    let bad = api.post_to(&format!("{MESSAGES}?wiat=1"), &[], &body).await;
    assert_error(&bad, 4, &["`wiat`"]);
}

// ---------------------------------------------------------------------------
// End to end: the sandbox DC in this process, `telegate run` as a child.

/// A message of the sandbox chat as the user sees it.
#[derive(Debug, Clone, PartialEq)]
struct Seen {
    from_bot: bool,
    text: String,
    media: Option<StoredMedia>,
    has_markup: bool,
}

impl Seen {
    /// `photo url` or `document url mime`, or `text`.
    fn kind(&self) -> String {
        match &self.media {
            Some(StoredMedia::Photo { url, .. }) => {
                format!("photo {}", url.as_deref().unwrap_or(""))
            }
            Some(StoredMedia::Document { url, mime_type, .. }) => {
                format!("document {} {mime_type}", url.as_deref().unwrap_or(""))
            }
            Some(other) => format!("{other:?}"),
            None => "text".to_owned(),
        }
    }
}

/// The sandbox DC with one started user, and `telegate run` wired to it.
struct Stack {
    dir: tempfile::TempDir,
    sandbox: Sandbox,
    daemon: Option<Worker>,
    client: Client,
    user: AccountId,
}

impl Stack {
    async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let sandbox = Sandbox::start(SandboxOptions::default()).await.unwrap();
        telegate::cli::sandbox::write_worker_files(dir.path(), &sandbox).unwrap();
        let telegram = sandbox.telegram();
        let user = telegram
            .create_user(NewUser {
                first_name: "Ada".into(),
                ..NewUser::default()
            })
            .unwrap()
            .id;
        telegram
            .user_sends(user, BOT_ID, UserMessage::Text("hello".into()), None)
            .unwrap();
        let daemon = Worker::start(dir.path()).await;
        Stack {
            client: Client::new(dir.path().join("telegate.sock")),
            dir,
            sandbox,
            daemon: Some(daemon),
            user,
        }
    }

    async fn post(&self, query: &str, body: &Value) -> Answer {
        self.client
            .post(&format!("{MESSAGES}{query}"), &[], body.to_string())
            .await
            .unwrap()
    }

    /// What the bot has sent to the user, oldest first.
    fn bot_messages(&self) -> Vec<Seen> {
        self.sandbox
            .telegram()
            .snapshot()
            .chat_messages(self.user, BOT_ID)
            .map(|m| Seen {
                from_bot: m.from != self.user,
                text: m.text.clone(),
                media: m.media.clone(),
                has_markup: m.reply_markup.is_some(),
            })
            .filter(|seen| seen.from_bot)
            .collect()
    }

    async fn job(&self, id: &Value) -> Value {
        let answer = self
            .client
            .get(&format!("/api/v1/jobs/{id}"))
            .await
            .unwrap();
        assert_eq!(answer.status, 200, "{:?}", answer.body);
        answer.json().unwrap()
    }
}

fn url(name: &str) -> String {
    format!("https://cdn.example.com/files/{name}")
}

#[tokio::test]
async fn every_media_kind_reaches_the_chat_in_order_with_caption_and_markup() {
    let stack = Stack::start().await;
    let sticker = json!({"mediaName": "hi.webp", "mediaUri": url("hi.webp"), "mimeType": "image/webp", "sticker": true});
    let answer = stack
        .post(
            "?wait=60",
            &json!({
                "destination_user_id": stack.user,
                "text": "Everything we have",
                "media": [
                    item("photo.jpg", "image/jpeg"),
                    item("dance.gif", "image/gif"),
                    item("clip.mp4", "video/mp4"),
                    item("song.mp3", "audio/mpeg"),
                    item("terms.pdf", "application/pdf"),
                    sticker,
                    item("duck.tgs", "application/x-tgsticker"),
                ],
                "reply_markup": {"inline_keyboard": [[{"text": "More", "callback_data": "more"}]]},
            }),
        )
        .await;
    assert_eq!(answer.status, 201, "{:?}", answer.body);
    let body = answer.json().unwrap();
    let parts = body["messages"].as_array().expect("every part's ids");
    assert_eq!(parts.len(), 7, "{body}");
    assert_eq!(body["message_id"], parts[0]["message_id"]);
    assert_eq!(body["channel_message_id"], parts[0]["channel_message_id"]);

    let seen = stack.bot_messages();
    let kinds: Vec<String> = seen.iter().map(Seen::kind).collect();
    assert_eq!(
        kinds,
        [
            format!("photo {}", url("photo.jpg")),
            format!("document {} image/gif", url("dance.gif")),
            format!("document {} video/mp4", url("clip.mp4")),
            format!("document {} audio/mpeg", url("song.mp3")),
            format!("document {} application/pdf", url("terms.pdf")),
            format!("document {} image/webp", url("hi.webp")),
            format!("document {} application/x-tgsticker", url("duck.tgs")),
        ]
    );
    let captions: Vec<&str> = seen.iter().map(|s| s.text.as_str()).collect();
    assert_eq!(captions, ["Everything we have", "", "", "", "", "", ""]);
    let markups: Vec<bool> = seen.iter().map(|s| s.has_markup).collect();
    assert_eq!(markups, [false, false, false, false, false, false, true]);
    // Telegram's ids in the answer are the chat's, in order.
    let channel_ids: Vec<String> = parts
        .iter()
        .map(|p| p["channel_message_id"].as_str().unwrap().to_owned())
        .collect();
    let mut sorted = channel_ids.clone();
    sorted.sort_by_key(|id| id.parse::<i64>().unwrap());
    assert_eq!(channel_ids, sorted);
}

#[tokio::test]
async fn a_long_text_follows_its_media_and_text_alone_is_a_text_message() {
    let stack = Stack::start().await;
    let long = "x".repeat(1500);
    let answer = stack
        .post(
            "?wait=60",
            &json!({"destination_user_id": stack.user, "text": long,
                    "media": [item("a.jpg", "image/jpeg"), item("b.png", "image/png")]}),
        )
        .await;
    assert_eq!(answer.status, 201, "{:?}", answer.body);
    let answer = stack
        .post(
            "?wait=60",
            &json!({"destination_user_id": stack.user, "text": "Reply please",
                    "reply_markup": {"force_reply": true, "input_field_placeholder": "Your answer"}}),
        )
        .await;
    assert_eq!(answer.status, 201, "{:?}", answer.body);
    let body = answer.json().unwrap();
    assert!(body.get("messages").is_none(), "one part, one id: {body}");

    let seen = stack.bot_messages();
    let shape: Vec<(String, usize, bool)> = seen
        .iter()
        .map(|s| (s.kind(), s.text.len(), s.has_markup))
        .collect();
    assert_eq!(
        shape,
        [
            (format!("photo {}", url("a.jpg")), 0, false),
            ("text".to_owned(), 1500, false),
            (format!("photo {}", url("b.png")), 0, false),
            ("text".to_owned(), "Reply please".len(), true),
        ]
    );
}

#[tokio::test]
async fn a_media_refusal_fails_the_job_with_code_5_and_the_reason() {
    let stack = Stack::start().await;
    stack
        .sandbox
        .telegram()
        .set_chat_fault(
            Some(stack.user),
            Some(ChatFault {
                error: TgError::bad_request("WEBPAGE_CURL_FAILED"),
                remaining: Some(1),
            }),
        )
        .unwrap();
    let answer = stack
        .post(
            "?wait=60",
            &json!({"destination_user_id": stack.user, "media": [item("gone.jpg", "image/jpeg")]}),
        )
        .await;
    assert_eq!(answer.status, 400, "{:?}", answer.body);
    let body = answer.json().unwrap();
    assert_eq!(body["error_code"], 5, "{body}");
    let error = body["error"].as_str().unwrap();
    assert!(error.contains("WEBPAGE_CURL_FAILED"), "{error}");
    assert!(error.contains("could not download"), "{error}");
    assert!(stack.bot_messages().is_empty());
}

#[tokio::test]
async fn interactive_and_messages_jobs_keep_their_order_in_a_chat() {
    let stack = Stack::start().await;
    let interactive = |text: &str| {
        json!({"destination_user_id": stack.user.to_string(),
               "telegram_interactive_message": {"type": "highlight_reply", "text": text,
                                                 "reply_markup": {"force_reply": true}}})
    };
    let mut ids = Vec::new();
    for (path, body) in [
        ("/api/v1/telegram/interactive", interactive("one")),
        (
            MESSAGES,
            json!({"destination_user_id": stack.user, "text": "two", "media": [item("2a.jpg", "image/jpeg"), item("2b.pdf", "application/pdf")]}),
        ),
        ("/api/v1/telegram/interactive", interactive("three")),
        (
            MESSAGES,
            json!({"destination_user_id": stack.user, "text": "four"}),
        ),
    ] {
        let answer = stack
            .client
            .post(path, &[], body.to_string())
            .await
            .unwrap();
        assert_eq!(answer.status, 202, "{:?}", answer.body);
        ids.push(answer.json().unwrap()["job_id"].clone());
    }
    eventually("every job to be sent", async || {
        let mut all = true;
        for id in &ids {
            all &= stack.job(id).await["state"] == "sent";
        }
        all.then_some(())
    })
    .await;
    let texts: Vec<String> = stack
        .bot_messages()
        .iter()
        .map(|s| format!("{}:{}", s.kind().split(' ').next().unwrap_or(""), s.text))
        .collect();
    assert_eq!(
        texts,
        [
            "text:one",
            "photo:two",
            "document:",
            "text:three",
            "text:four"
        ]
    );
}

#[tokio::test]
async fn sigkill_in_the_middle_of_a_multi_part_job_loses_and_repeats_nothing() {
    const PARTS: usize = 6;
    let mut stack = Stack::start().await;
    let media: Vec<Value> = (0..PARTS)
        .map(|i| item(&format!("p{i}.jpg"), "image/jpeg"))
        .collect();
    let answer = stack
        .post(
            "",
            &json!({"destination_user_id": stack.user, "text": "album", "media": media}),
        )
        .await;
    assert_eq!(answer.status, 202, "{:?}", answer.body);
    let job_id = answer.json().unwrap()["job_id"].clone();
    // The chat's pace (about one message a second) leaves time to strike
    // between the first part and the last.
    eventually("the first part to arrive", async || {
        (!stack.bot_messages().is_empty()).then_some(())
    })
    .await;
    stack.daemon.take().unwrap().kill();
    let at_kill = stack.bot_messages().len();
    assert!(at_kill < PARTS, "the whole job went out before the kill");

    stack.daemon = Some(Worker::start(stack.dir.path()).await);
    eventually("the job to be sent after the restart", async || {
        (stack.job(&job_id).await["state"] == "sent").then_some(())
    })
    .await;
    let urls: Vec<String> = stack
        .bot_messages()
        .iter()
        .map(|seen| match &seen.media {
            Some(StoredMedia::Photo { url, .. }) => url.clone().unwrap_or_default(),
            other => panic!("not a photo: {other:?}"),
        })
        .collect();
    let expected: Vec<String> = (0..PARTS).map(|i| url(&format!("p{i}.jpg"))).collect();
    assert_eq!(urls, expected, "every part exactly once, in order");
    let job = stack.job(&job_id).await;
    let channel_ids: Vec<&Value> = job["parts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| &p["channel_message_id"])
        .collect();
    assert!(channel_ids.iter().all(|id| id.is_string()), "{job}");
    // The parts went at the chat's pace, one a second, not back to back
    // (the sandbox's chat limit takes a burst of 3): no flood wait.
    let stats = stack.sandbox.telegram().stats();
    assert_eq!(stats.flood_waits, 0, "{stats:?}");
}
