//! Text and media messages (`POST /api/v1/telegram/messages`) through a real
//! Unix socket: validation with the seed's codes and JSON paths, the parts a
//! job is stored with, and (against the sandbox, with `telegate run` as a
//! child process) what the user's chat shows — media kind, caption, order —
//! including after the daemon is SIGKILLed in the middle of a job.

use std::path::PathBuf;

use serde_json::{Value, json};
use telegate::api::client::{Answer, Client};
use telegate::api::socket;
use telegate::config::ApiConfig;
use telegate::queue::Queue;
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
        let queue = Queue::open(&dir.path().join("telegate.db")).unwrap();
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
