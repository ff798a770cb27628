//! The socket API through a real Unix socket with the real client: every
//! endpoint, every error path, the socket file's rules, the CLI clients, and
//! crash safety of the daemon run as a separate process.

mod worker_support;

use worker_support::{Worker, store as store_support};

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use telegate::api::client::{Answer, Client};
use telegate::api::socket::{self, BindError};
use telegate::config::{ApiConfig, Respond};
use telegate::interactive::InteractiveRequest;
use telegate::queue::{DEFAULT_BOT, JobError, JobEvent, JobId, JobState, Queue, Timestamp};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

const INTERACTIVE: &str = "/api/v1/telegram/interactive";
/// Generous: the machine may be loaded.
const PATIENCE: Duration = Duration::from_secs(30);

/// An interactive body in the seed's shape, or in the interactive stub's
/// while the model is not merged (the model decides what it accepts).
fn body(chat: &str, text: &str) -> String {
    let seed = json!({
        "destination_user_id": chat,
        "telegram_interactive_message": {
            "type": "highlight_reply",
            "text": text,
            "reply_markup": { "force_reply": true },
        },
    })
    .to_string();
    if InteractiveRequest::from_json(seed.as_bytes()).is_ok() {
        return seed;
    }
    json!({ "destination_user_id": chat, "text": text }).to_string()
}

/// The text of a stored (normalized) interactive payload.
fn payload_text(payload: &Value) -> String {
    let request: InteractiveRequest = serde_json::from_value(payload.clone()).unwrap();
    request.text().to_owned()
}

/// A server on a temporary socket, stopped on drop.
struct Server {
    dir: tempfile::TempDir,
    queue: Queue,
    client: Client,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

impl Server {
    async fn start() -> Self {
        Self::start_with(ApiConfig::default()).await
    }

    async fn start_with(config: ApiConfig) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let queue = Queue::open_at(&store_support::location(dir.path())).unwrap();
        let path = dir.path().join("telegate.sock");
        let (listener, socket_file) = socket::bind(&path).await.unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn({
            let queue = queue.clone();
            async move {
                let served = telegate::api::serve(listener, queue, &config, async {
                    let _ = stopped.await;
                })
                .await;
                drop(socket_file);
                served
            }
        });
        Server {
            dir,
            queue,
            client: Client::new(path),
            stop: Some(stop),
            task: Some(task),
        }
    }

    fn socket(&self) -> PathBuf {
        self.dir.path().join("telegate.sock")
    }

    async fn shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(PATIENCE, task)
                .await
                .expect("server did not stop")
                .unwrap()
                .unwrap();
        }
    }

    async fn post(&self, path: &str, headers: &[(&str, &str)], body: String) -> Answer {
        self.client.post(path, headers, body).await.unwrap()
    }

    async fn get(&self, path: &str) -> Answer {
        self.client.get(path).await.unwrap()
    }

    async fn enqueue(&self, chat: &str, text: &str) -> JobId {
        let answer = self.post(INTERACTIVE, &[], body(chat, text)).await;
        assert_eq!(answer.status, 202, "{:?}", answer.body);
        JobId::new(answer.json().unwrap()["job_id"].as_i64().unwrap())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

/// Checks the answer is JSON carrying the same `request_id` as its header.
fn json_with_request_id(answer: &Answer) -> Value {
    let body = answer.json().unwrap();
    let in_body = body["request_id"].as_str().expect("request_id in body");
    assert!(in_body.starts_with("req_"), "{in_body}");
    assert_eq!(Some(in_body), answer.request_id(), "header and body differ");
    body
}

/// The seed's error body: 400, the code and text the model gives.
fn assert_seed_error(answer: &Answer, code: u8, mentions: &str) {
    assert_eq!(answer.status, 400, "{:?}", answer.body);
    let body = json_with_request_id(answer);
    assert_eq!(body["error_code"], code, "{body}");
    let error = body["error"].as_str().unwrap();
    assert!(
        error.contains(mentions),
        "`{error}` does not mention `{mentions}`"
    );
}

/// Marks the next due job sent with Telegram id `channel_id`, as the worker
/// would.
async fn send_next(queue: &Queue, channel_id: i64) -> JobId {
    let far = Timestamp::now().saturating_add(Duration::from_secs(3600));
    let taken = queue.claim_due(DEFAULT_BOT, far, 1).await.unwrap();
    let id = taken[0].id;
    queue
        .mark_sent(id, vec![Some(channel_id)], Timestamp::now())
        .await
        .unwrap();
    id
}

async fn next_queued(events: &mut tokio::sync::broadcast::Receiver<JobEvent>) -> JobId {
    loop {
        let event = tokio::time::timeout(PATIENCE, events.recv())
            .await
            .expect("no job was queued")
            .unwrap();
        if event.state == JobState::Queued {
            return event.id;
        }
    }
}

#[tokio::test]
async fn healthz_answers_with_a_request_id() {
    let server = Server::start().await;
    let answer = server.get("/healthz").await;
    assert_eq!(answer.status, 200);
    let body = json_with_request_id(&answer);
    assert_eq!(body["status"], "ok");
    let again = server.get("/healthz").await;
    assert_ne!(again.request_id(), answer.request_id());
}

#[tokio::test]
async fn an_interactive_post_is_stored_and_readable() {
    let server = Server::start().await;
    let answer = server
        .post(INTERACTIVE, &[], body("987654321", "Hello"))
        .await;
    assert_eq!(answer.status, 202);
    let accepted = json_with_request_id(&answer);
    assert_eq!(accepted["status"], "queued");
    let job_id = accepted["job_id"].as_i64().unwrap();

    let answer = server.get(&format!("/api/v1/jobs/{job_id}")).await;
    assert_eq!(answer.status, 200);
    let job = json_with_request_id(&answer);
    assert_eq!(job["job_id"], job_id);
    assert_eq!(job["state"], "queued");
    assert_eq!(job["attempts"], 0);
    assert_eq!(job["kind"], "interactive");
    assert_eq!(job["destination"], "987654321");
    assert_eq!(job["enqueue_request_id"], accepted["request_id"]);
    assert_eq!(payload_text(&job["payload"]), "Hello");
    let random_id = job["parts"][0]["random_id"].as_str().unwrap();
    assert!(random_id.parse::<i64>().is_ok(), "{random_id}");

    // The store holds what the model normalized, under the enqueue's id.
    let stored = server.queue.job(JobId::new(job_id)).await.unwrap().unwrap();
    assert_eq!(stored.request_id, accepted["request_id"]);
    let request: InteractiveRequest = serde_json::from_str(&stored.payload).unwrap();
    assert_eq!(request.text(), "Hello");
}

#[tokio::test]
async fn invalid_bodies_get_the_models_seed_error() {
    let server = Server::start().await;
    for bad in [
        "not json".to_owned(),
        "{}".to_owned(),
        json!({ "destination_user_id": "0", "text": "x" }).to_string(),
        json!({ "destination_user_id": 5, "text": "x" }).to_string(),
    ] {
        let expected = InteractiveRequest::from_json(bad.as_bytes()).unwrap_err();
        let answer = server.post(INTERACTIVE, &[], bad.clone()).await;
        assert_seed_error(&answer, expected.code.as_u8(), &expected.message);
    }
    assert!(
        server
            .queue
            .jobs(Default::default())
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn bodies_over_the_limit_are_413() {
    let server = Server::start_with(ApiConfig {
        max_body_bytes: 1024,
        ..ApiConfig::default()
    })
    .await;
    let text = "x".repeat(1100);
    let answer = server.post(INTERACTIVE, &[], body("1", &text)).await;
    assert_eq!(answer.status, 413);
    let error = json_with_request_id(&answer)["error"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(error.contains("1024"), "{error}");

    // Without a Content-Length (chunked), the limit holds while reading.
    let raw = format!(
        "POST {INTERACTIVE} HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\
         Connection: close\r\n\r\n{:x}\r\n{}\r\n0\r\n\r\n",
        text.len(),
        text
    );
    let reply = raw_exchange(&server.socket(), raw.as_bytes()).await;
    assert!(reply.starts_with("HTTP/1.1 413"), "{reply}");
    assert!(reply.contains("\"request_id\":\"req_"), "{reply}");

    // Just under the limit is fine.
    let answer = server.post(INTERACTIVE, &[], body("1", "short")).await;
    assert_eq!(answer.status, 202);
}

/// Writes `request` on a fresh connection and reads until the server closes.
async fn raw_exchange(socket: &Path, request: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::UnixStream::connect(socket).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut reply = Vec::new();
    tokio::time::timeout(PATIENCE, stream.read_to_end(&mut reply))
        .await
        .expect("server did not close")
        .unwrap();
    String::from_utf8_lossy(&reply).into_owned()
}

/// A raw reply's status and JSON body, checking the body's `request_id`
/// is the header's.
fn raw_contract(reply: &str) -> (u16, Value) {
    let (head, body) = reply.split_once("\r\n\r\n").expect("a whole answer");
    let status = head[9..12].parse().unwrap();
    let body: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {reply}"));
    let id = body["request_id"].as_str().expect("request_id in body");
    assert!(id.starts_with("req_"), "{reply}");
    assert!(
        head.to_ascii_lowercase()
            .contains(&format!("x-request-id: {id}")),
        "{reply}"
    );
    assert!(body["error"].is_string(), "{reply}");
    (status, body)
}

#[tokio::test]
async fn protocol_errors_answer_in_the_error_contract() {
    let server = Server::start().await;
    let many_headers: String = (0..100).map(|i| format!("X-H{i}: v\r\n")).collect();
    let long_query = format!(
        "GET /api/v1/jobs?after={} HTTP/1.1\r\n\r\n",
        "1".repeat(65536)
    );
    let cases: Vec<(String, u16, &str)> = vec![
        ("GARBAGE\r\n\r\n".into(), 400, "request line"),
        (
            format!("POST {INTERACTIVE} HTTP/1.1\r\nContent-Length: -1\r\n\r\n"),
            400,
            "got `-1`",
        ),
        (
            format!(
                "POST {INTERACTIVE} HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{{}}"
            ),
            400,
            "more than once",
        ),
        (
            format!("GET /healthz HTTP/1.1\r\nHost: x\r\n{many_headers}\r\n"),
            431,
            "more than 100 headers",
        ),
        (long_query, 414, "longer than"),
    ];
    for (request, status, mentions) in cases {
        let reply = raw_exchange(&server.socket(), request.as_bytes()).await;
        let (got, body) = raw_contract(&reply);
        assert_eq!(got, status, "{reply}");
        let error = body["error"].as_str().unwrap();
        assert!(error.contains(mentions), "`{error}` lacks `{mentions}`");
    }
    // The connection that refused nothing still serves several requests.
    let mut connection = server.client.connect().await.unwrap();
    for _ in 0..3 {
        assert_eq!(connection.get("/healthz").await.unwrap().status, 200);
    }
}

#[tokio::test]
async fn encoded_bodies_are_415_and_never_read_as_plain() {
    let server = Server::start().await;
    let answer = server
        .post(INTERACTIVE, &[("Content-Encoding", "gzip")], body("5", "x"))
        .await;
    assert_eq!(answer.status, 415);
    let error = json_with_request_id(&answer)["error"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(error.contains("Content-Encoding: gzip"), "{error}");
    let text = body("5", "x");
    let raw = format!(
        "POST {INTERACTIVE} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\
         Connection: close\r\n\r\n{:x}\r\n{text}\r\n0\r\n\r\n",
        text.len()
    );
    let reply = raw_exchange(&server.socket(), raw.as_bytes()).await;
    let (status, body) = raw_contract(&reply);
    assert_eq!(status, 415, "{reply}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("Transfer-Encoding: gzip")
    );
    assert!(
        server
            .queue
            .jobs(Default::default())
            .await
            .unwrap()
            .is_empty()
    );
}

/// Bounds small enough to reach in a test.
fn tight(header_ms: u64, body_ms: u64, max_connections: usize) -> ApiConfig {
    ApiConfig {
        header_timeout_ms: header_ms,
        body_timeout_ms: body_ms,
        max_connections,
        ..ApiConfig::default()
    }
}

#[tokio::test]
async fn a_dripped_request_head_and_an_idle_connection_are_closed() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = Server::start_with(tight(200, 30_000, 64)).await;
    // Half a head, then nothing: closed by the header timeout (no answer is
    // owed for a request that never arrived).
    let reply = raw_exchange(&server.socket(), b"GET /healthz HTTP/1.1\r\nhost: x\r\n").await;
    assert!(!reply.contains("200 OK"), "{reply}");
    // A keep-alive connection that answered one request and then sits idle
    // is closed too, after its answer.
    let mut stream = tokio::net::UnixStream::connect(server.socket())
        .await
        .unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let mut reply = Vec::new();
    tokio::time::timeout(PATIENCE, stream.read_to_end(&mut reply))
        .await
        .expect("an idle keep-alive connection was never closed")
        .unwrap();
    let reply = String::from_utf8_lossy(&reply);
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
}

#[tokio::test]
async fn a_stalled_body_is_answered_408_in_the_contract() {
    let server = Server::start_with(tight(30_000, 200, 64)).await;
    let reply = raw_exchange(
        &server.socket(),
        b"POST /api/v1/telegram/interactive HTTP/1.1\r\nhost: x\r\n\
          content-type: application/json\r\ncontent-length: 100\r\n\r\n{\"destination",
    )
    .await;
    let (status, body) = raw_contract(&reply);
    assert_eq!(status, 408, "{reply}");
    assert!(
        body["error"].as_str().unwrap().contains("stalled"),
        "{body}"
    );
    assert_eq!(
        server.queue.jobs(Default::default()).await.unwrap().len(),
        0
    );
}

#[tokio::test]
async fn connections_over_the_cap_are_answered_503_and_slots_come_back() {
    let server = Server::start_with(tight(30_000, 30_000, 3)).await;
    let mut idle = Vec::new();
    for _ in 0..3 {
        idle.push(
            tokio::net::UnixStream::connect(server.socket())
                .await
                .unwrap(),
        );
    }
    // The three idle connections hold every slot (accepted in order, so
    // once a fourth is refused they are all being served).
    let reply = raw_exchange(
        &server.socket(),
        b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n",
    )
    .await;
    let (status, body) = raw_contract(&reply);
    assert_eq!(status, 503, "{reply}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("too many open connections"),
        "{body}"
    );
    drop(idle);
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let answer = server.get("/healthz").await;
        if answer.status == 200 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "slots never came back: {}",
            answer.status
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_long_poll_outlives_the_header_timeout() {
    let server = Server::start_with(tight(200, 200, 64)).await;
    let started = tokio::time::Instant::now();
    let answer = server.get("/api/v1/events?after=0&wait=1").await;
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    assert!(started.elapsed() >= Duration::from_millis(900));
}

#[tokio::test]
async fn shared_parameters_are_judged_alike_on_every_endpoint() {
    let server = Server::start().await;
    // `wait` takes fractions on the event stream as on enqueue.
    let answer = server.get("/api/v1/events?wait=0.2").await;
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    let answer = server
        .post(&format!("{INTERACTIVE}?wait=0.2"), &[], body("5", "x"))
        .await;
    assert_eq!(answer.status, 202, "{:?}", answer.body);
    for endpoint in ["/api/v1/jobs", "/api/v1/events"] {
        for (query, code, mentions) in [
            ("after=-1", 5, "`after` must be 0 or more"),
            ("after=x", 4, "`after`"),
            ("limit=0", 5, "`limit` must be between 1 and"),
            ("limit=100000", 5, "`limit` must be between 1 and"),
            ("limit=ten", 4, "`limit`"),
            (
                "wait=61",
                if endpoint == "/api/v1/jobs" { 4 } else { 5 },
                "`wait`",
            ),
        ] {
            let answer = server.get(&format!("{endpoint}?{query}")).await;
            assert_seed_error(&answer, code, mentions);
        }
    }
    for path in [INTERACTIVE, "/api/v1/telegram/messages"] {
        let answer = server.post(path, &[], "[1]".into()).await;
        assert_seed_error(
            &answer,
            4,
            "the request body must be a JSON object, got an array",
        );
    }
}

#[tokio::test]
async fn unknown_paths_jobs_and_methods_answer_json() {
    let server = Server::start().await;
    let answer = server.get("/api/v1/nothing").await;
    assert_eq!(answer.status, 404);
    assert!(
        json_with_request_id(&answer)["error"]
            .as_str()
            .unwrap()
            .contains("/api/v1/nothing")
    );

    for missing in ["/api/v1/jobs/999", "/api/v1/jobs/abc"] {
        let answer = server.get(missing).await;
        assert_eq!(answer.status, 404, "{missing}");
        json_with_request_id(&answer);
    }

    let answer = server.get(INTERACTIVE).await;
    assert_eq!(answer.status, 405);
    json_with_request_id(&answer);
    let answer = server.post("/healthz", &[], "{}".into()).await;
    assert_eq!(answer.status, 405);
    json_with_request_id(&answer);
}

#[tokio::test]
async fn an_idempotency_key_repeat_returns_the_first_job() {
    let server = Server::start().await;
    let key = [("Idempotency-Key", "order-1234-confirmation")];
    let first = server.post(INTERACTIVE, &key, body("5", "one")).await;
    let second = server.post(INTERACTIVE, &key, body("5", "two")).await;
    assert_eq!(first.status, 202);
    assert_eq!(second.status, 202);
    assert_eq!(
        first.json().unwrap()["job_id"],
        second.json().unwrap()["job_id"]
    );
    assert_ne!(first.request_id(), second.request_id());
    assert!(first.headers.get("idempotent-replayed").is_none());
    assert_eq!(second.headers["idempotent-replayed"], "true");

    let jobs = server.queue.jobs(Default::default()).await.unwrap();
    assert_eq!(jobs.len(), 1);
    assert_eq!(
        payload_text(&serde_json::from_str(&jobs[0].payload).unwrap()),
        "one"
    );
    assert_eq!(
        jobs[0].idempotency_key.as_deref(),
        Some("order-1234-confirmation")
    );

    // Once the first job is sent, a repeat with ?wait= answers like the seed.
    send_next(&server.queue, 31).await;
    let again = server
        .post(&format!("{INTERACTIVE}?wait=5"), &key, body("5", "three"))
        .await;
    assert_eq!(again.status, 201);
    assert_eq!(again.json().unwrap()["channel_message_id"], "31");
}

#[tokio::test]
async fn bad_idempotency_keys_are_rejected() {
    let server = Server::start().await;
    let long = "k".repeat(256);
    let answer = server
        .post(INTERACTIVE, &[("Idempotency-Key", &long)], body("5", "x"))
        .await;
    assert_seed_error(&answer, 5, "Idempotency-Key");
    let answer = server
        .post(
            INTERACTIVE,
            &[("Idempotency-Key", "two words")],
            body("5", "x"),
        )
        .await;
    assert_seed_error(&answer, 4, "Idempotency-Key");
    assert!(
        server
            .queue
            .jobs(Default::default())
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn bad_query_parameters_are_rejected() {
    let server = Server::start().await;
    for (query, code, mentions) in [
        ("wait=soon", 4, "`wait`"),
        ("wait=61", 5, "60"),
        ("wait=-1", 5, "60"),
        ("wiat=3", 4, "`wiat`"),
    ] {
        let answer = server
            .post(&format!("{INTERACTIVE}?{query}"), &[], body("5", "x"))
            .await;
        assert_seed_error(&answer, code, mentions);
    }
    for (query, code, mentions) in [
        ("state=done", 4, "`done`"),
        ("limit=0", 5, "`limit`"),
        ("after=x", 4, "`after`"),
        ("order=asc", 4, "`order`"),
    ] {
        let answer = server.get(&format!("/api/v1/jobs?{query}")).await;
        assert_seed_error(&answer, code, mentions);
    }
}

#[tokio::test]
async fn wait_answers_201_once_sent() {
    let server = Server::start().await;
    let mut events = server.queue.subscribe();
    let post = post_waiting(&server, 30, "77");
    let id = next_queued(&mut events).await;
    assert_eq!(send_next(&server.queue, 4242).await, id);
    let answer = post.await.unwrap().unwrap();
    assert_eq!(answer.status, 201, "{:?}", answer.body);
    let sent = json_with_request_id(&answer);
    assert_eq!(sent["channel_message_id"], "4242");
    assert_eq!(sent["job_id"], id.get());
    let job = server.queue.job(id).await.unwrap().unwrap();
    assert_eq!(sent["message_id"], job.parts[0].message_id);

    let view = server
        .get(&format!("/api/v1/jobs/{id}"))
        .await
        .json()
        .unwrap();
    assert_eq!(view["state"], "sent");
    assert_eq!(view["attempts"], 1);
    assert_eq!(view["result"]["channel_message_id"], "4242");
}

/// Claims queued job `id` and records Telegram's `USER_IS_BLOCKED` for it.
async fn fail_as_blocked(queue: &Queue, id: JobId) {
    let far = Timestamp::now().saturating_add(Duration::from_secs(3600));
    queue.claim_due(DEFAULT_BOT, far, 1).await.unwrap();
    let error = JobError::telegram("USER_IS_BLOCKED", "Telegram: USER_IS_BLOCKED");
    queue
        .mark_failed(id, error, Timestamp::now())
        .await
        .unwrap();
}

#[tokio::test]
async fn wait_answers_the_jobs_error_once_failed() {
    let server = Server::start().await;
    let mut events = server.queue.subscribe();
    let post = post_waiting(&server, 30, "78");
    let id = next_queued(&mut events).await;
    fail_as_blocked(&server.queue, id).await;
    let answer = post.await.unwrap().unwrap();
    assert_seed_error(&answer, 5, "USER_IS_BLOCKED");
    let body = answer.json().unwrap();
    assert_eq!(body["telegram_error"], "USER_IS_BLOCKED");
    assert_eq!(body["job_id"], id.get());

    let view = server
        .get(&format!("/api/v1/jobs/{id}"))
        .await
        .json()
        .unwrap();
    assert_eq!(view["state"], "failed");
    assert_eq!(view["error"]["error_code"], 5);
}

#[tokio::test]
async fn wait_that_runs_out_answers_202_queued() {
    let server = Server::start().await;
    let answer = server
        .post(&format!("{INTERACTIVE}?wait=0.2"), &[], body("79", "hi"))
        .await;
    assert_eq!(answer.status, 202);
    assert_eq!(json_with_request_id(&answer)["status"], "queued");
}

/// `[api] respond = "sent"` with `timeout_s`.
fn respond_sent(timeout_s: u64) -> ApiConfig {
    ApiConfig {
        respond: Respond::Sent,
        respond_timeout_s: timeout_s,
        ..ApiConfig::default()
    }
}

fn field_names(body: &Value) -> Vec<&str> {
    let mut names: Vec<&str> = body
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    names.sort_unstable();
    names
}

#[tokio::test]
async fn respond_sent_answers_exactly_the_seeds_201_without_wait() {
    let server = Server::start_with(respond_sent(30)).await;
    let mut events = server.queue.subscribe();
    let client = server.client.clone();
    let post = tokio::spawn(async move { client.post(INTERACTIVE, &[], body("81", "hi")).await });
    let id = next_queued(&mut events).await;
    assert_eq!(send_next(&server.queue, 4343).await, id);
    let answer = post.await.unwrap().unwrap();
    assert_eq!(answer.status, 201, "{:?}", answer.body);
    let sent = json_with_request_id(&answer);
    assert_eq!(
        field_names(&sent),
        ["channel_message_id", "message_id", "request_id"]
    );
    assert_eq!(sent["channel_message_id"], "4343");
    let job = server.queue.job(id).await.unwrap().unwrap();
    assert_eq!(sent["message_id"], job.parts[0].message_id);
}

#[tokio::test]
async fn respond_sent_answers_exactly_the_seeds_400_once_failed() {
    let server = Server::start_with(respond_sent(30)).await;
    let mut events = server.queue.subscribe();
    let client = server.client.clone();
    let post = tokio::spawn(async move { client.post(INTERACTIVE, &[], body("82", "hi")).await });
    let id = next_queued(&mut events).await;
    fail_as_blocked(&server.queue, id).await;
    let answer = post.await.unwrap().unwrap();
    assert_seed_error(&answer, 5, "USER_IS_BLOCKED");
    let body = answer.json().unwrap();
    assert_eq!(field_names(&body), ["error", "error_code", "request_id"]);
}

#[tokio::test]
async fn respond_sent_that_runs_out_answers_202_with_the_job() {
    // Nothing sends: the job stays queued, stored, and the answer says so.
    let server = Server::start_with(respond_sent(1)).await;
    let answer = server.post(INTERACTIVE, &[], body("83", "hi")).await;
    assert_eq!(answer.status, 202, "{:?}", answer.body);
    let queued = json_with_request_id(&answer);
    assert_eq!(queued["status"], "queued");
    let id = JobId::new(queued["job_id"].as_i64().unwrap());
    let job = server.queue.job(id).await.unwrap().unwrap();
    assert_eq!(job.state, JobState::Queued);
    // `?wait=` still decides when it is given.
    let answer = server
        .post(&format!("{INTERACTIVE}?wait=0"), &[], body("83", "again"))
        .await;
    assert_eq!(answer.status, 202, "{:?}", answer.body);
    // The default answers at once.
    let server = Server::start().await;
    let answer = server.post(INTERACTIVE, &[], body("84", "hi")).await;
    assert_eq!(answer.status, 202, "{:?}", answer.body);
}

#[tokio::test]
async fn jobs_are_listed_by_state() {
    let server = Server::start().await;
    let first = server.enqueue("1", "a").await;
    let second = server.enqueue("2", "b").await;
    send_next(&server.queue, 9).await;

    let answer = server.get("/api/v1/jobs?state=queued").await;
    assert_eq!(answer.status, 200);
    let listed = json_with_request_id(&answer);
    let ids: Vec<_> = listed["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["job_id"].clone())
        .collect();
    assert_eq!(ids, vec![json!(second.get())]);

    let all = server
        .get(&format!("/api/v1/jobs?after={}&limit=5", first.get() - 1))
        .await;
    assert_eq!(all.json().unwrap()["jobs"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn a_closed_store_answers_503() {
    let server = Server::start().await;
    server.queue.close().await;
    let answer = server.post(INTERACTIVE, &[], body("5", "late")).await;
    assert_eq!(answer.status, 503);
    assert!(
        json_with_request_id(&answer)["error"]
            .as_str()
            .unwrap()
            .contains("store")
    );
    let answer = server.get("/healthz").await;
    assert_eq!(answer.status, 503);
    let error = json_with_request_id(&answer)["error"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(error.contains("the job store is closed"), "{error}");
    // Without a bot, the daemon is live but never ready.
    let answer = server.get("/readyz").await;
    assert_eq!(answer.status, 503);
    let error = json_with_request_id(&answer)["error"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(error.contains("no bot is running"), "{error}");
}

#[tokio::test]
async fn a_failing_store_answers_503_and_acknowledges_nothing() {
    let server = Server::start().await;
    let dir = server.dir.path();
    let postgres = store_support::postgres_url(dir).is_some();
    store_support::execute(
        dir,
        if postgres {
            "CREATE FUNCTION fail() RETURNS trigger LANGUAGE plpgsql
                 AS $$ BEGIN RAISE EXCEPTION 'disk on fire'; END $$;
             CREATE TRIGGER fail BEFORE INSERT ON jobs FOR EACH ROW EXECUTE FUNCTION fail();"
        } else {
            "CREATE TRIGGER fail BEFORE INSERT ON jobs BEGIN SELECT RAISE(ABORT, 'disk on fire'); END;"
        },
    );
    let answer = server.post(INTERACTIVE, &[], body("5", "doomed")).await;
    assert_eq!(answer.status, 503);
    let error = json_with_request_id(&answer)["error"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(error.contains("disk on fire"), "{error}");
    assert!(
        server
            .queue
            .jobs(Default::default())
            .await
            .unwrap()
            .is_empty()
    );

    // The store recovers once the cause is gone.
    store_support::execute(
        dir,
        if postgres {
            "DROP TRIGGER fail ON jobs"
        } else {
            "DROP TRIGGER fail"
        },
    );
    server.enqueue("5", "fine").await;
}

#[tokio::test]
async fn shutdown_answers_waiters_and_removes_the_socket() {
    let mut server = Server::start().await;
    let mut events = server.queue.subscribe();
    let post = post_waiting(&server, 60, "80");
    next_queued(&mut events).await;
    server.shutdown().await;
    let answer = tokio::time::timeout(PATIENCE, post)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(answer.status, 202);
    assert!(!server.socket().exists());
    assert!(server.client.get("/healthz").await.is_err());
}

#[tokio::test]
async fn the_socket_is_0660_and_a_stale_one_is_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("telegate.sock");

    // A socket file nobody listens on (its listener is gone).
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    assert!(path.exists());
    let (listener, file) = socket::bind(&path).await.unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o660);
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|entry| entry.unwrap().file_name())
        .collect();
    assert_eq!(names, ["telegate.sock"], "the staging name is renamed away");

    // While it listens, a second bind fails clearly and leaves it alone.
    let err = socket::bind(&path).await.unwrap_err();
    assert!(matches!(err, BindError::InUse(_)), "{err}");
    assert!(err.to_string().contains("another telegate"), "{err}");
    tokio::net::UnixStream::connect(&path).await.unwrap();

    drop(listener);
    drop(file);
    assert!(!path.exists(), "the socket file is removed with its owner");

    std::fs::write(&path, b"not a socket").unwrap();
    let err = socket::bind(&path).await.unwrap_err();
    assert!(matches!(err, BindError::NotASocket(_)), "{err}");
    assert_eq!(std::fs::read(&path).unwrap(), b"not a socket");
}

/// `run`'s settings here: its DC is a closed loopback port, so it keeps
/// retrying to sign in while the socket API serves (nothing is sent).
const OFFLINE: &[(&str, &str)] = &[
    ("TELEGATE_LOG", "warn"),
    ("TELEGATE_API_ID", "1"),
    ("TELEGATE_API_HASH", "test"),
    ("TELEGATE_BOT_TOKEN", "1:test"),
    ("TELEGATE_DC_ADDR", "127.0.0.1:1"),
];

fn telegate(state_dir: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_telegate"));
    command.arg("--state-dir").arg(state_dir);
    command.envs(store_support::env(state_dir));
    command.envs(OFFLINE.iter().copied());
    command
}

/// Runs the CLI off the async runtime (it talks to this test's server).
async fn cli(command: Command) -> std::process::Output {
    let mut command = command;
    tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap()
}

#[tokio::test]
async fn cli_send_jobs_and_job() {
    let server = Server::start().await;
    let file = server.dir.path().join("bodies.ndjson");
    let lines = [
        body("11", "first"),
        String::new(),
        body("12", "second"),
        "{broken".to_owned(),
    ];
    std::fs::write(&file, lines.join("\n")).unwrap();
    let single = server.dir.path().join("one.json");
    let pretty: Value = serde_json::from_str(&body("13", "third")).unwrap();
    std::fs::write(&single, serde_json::to_string_pretty(&pretty).unwrap()).unwrap();

    let mut send = telegate(server.dir.path());
    send.arg("send").arg(&file).arg(&single);
    let output = cli(send).await;
    let stdout = String::from_utf8(output.stdout).unwrap();
    let results: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(results.len(), 4, "{stdout}");
    let file_name = file.display().to_string();
    assert_eq!(results[0]["source"], format!("{file_name}:1"));
    assert_eq!(results[0]["status"], 202);
    assert_eq!(results[1]["source"], format!("{file_name}:3"));
    assert_eq!(results[2]["source"], format!("{file_name}:4"));
    assert_eq!(results[2]["status"], 400);
    assert_eq!(results[3]["status"], 202);
    assert_eq!(
        output.status.code(),
        Some(1),
        "a failed body fails the command"
    );
    assert_eq!(
        server.queue.jobs(Default::default()).await.unwrap().len(),
        3
    );

    let mut jobs = telegate(server.dir.path());
    jobs.args(["jobs", "--state", "queued"]);
    let output = cli(jobs).await;
    assert!(output.status.success());
    let listing = String::from_utf8(output.stdout).unwrap();
    assert_eq!(listing.lines().count(), 4, "{listing}");
    assert!(listing.contains("\t13\t"), "{listing}");

    let id = results[3]["answer"]["job_id"].to_string();
    let mut job = telegate(server.dir.path());
    job.args(["job", &id]);
    let output = cli(job).await;
    assert!(output.status.success());
    let shown: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(payload_text(&shown["payload"]), "third");

    let mut missing = telegate(server.dir.path());
    missing.args(["job", "424242"]);
    let output = cli(missing).await;
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("404"));
}

#[tokio::test]
async fn cli_clients_name_the_socket_when_nothing_listens() {
    let dir = tempfile::tempdir().unwrap();
    let mut jobs = telegate(dir.path());
    jobs.arg("jobs");
    let output = cli(jobs).await;
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("telegate.sock"), "{stderr}");
}

/// `telegate run` on `state_dir` with [`telegate`]'s settings: its DC is a
/// closed port, so it serves the socket API but never signs in.
async fn start_daemon(state_dir: &Path) -> (Worker, Client) {
    let worker = Worker::start_serving(state_dir, OFFLINE).await;
    (worker, Client::new(state_dir.join("telegate.sock")))
}

/// What a client learned from a 202 (and the read right after it).
#[derive(Debug, Clone)]
struct Acked {
    job_id: i64,
    request_id: String,
    random_id: Option<String>,
}

#[tokio::test]
async fn sigkill_mid_stream_loses_no_acknowledged_job() {
    const CLIENTS: usize = 8;
    const KILL_AFTER: usize = 300;
    let dir = tempfile::tempdir().unwrap();
    let (mut daemon, client) = start_daemon(dir.path()).await;

    let acked = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let (client, acked, stop) = (client.clone(), acked.clone(), stop.clone());
            tokio::spawn(async move {
                let mut mine = Vec::new();
                let Ok(mut conn) = client.connect().await else {
                    return mine;
                };
                for n in 0.. {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let text = format!("client {c} job {n}");
                    let chat = format!("{}", 1000 + c);
                    let Ok(answer) = conn.post(INTERACTIVE, &[], body(&chat, &text)).await else {
                        break;
                    };
                    if answer.status != 202 {
                        break;
                    }
                    let accepted = answer.json().unwrap();
                    let job_id = accepted["job_id"].as_i64().unwrap();
                    let request_id = accepted["request_id"].as_str().unwrap().to_owned();
                    acked.fetch_add(1, Ordering::Relaxed);
                    let random_id = match conn.get(&format!("/api/v1/jobs/{job_id}")).await {
                        Ok(view) => view
                            .json()
                            .ok()
                            .and_then(|v| v["parts"][0]["random_id"].as_str().map(str::to_owned)),
                        Err(_) => None,
                    };
                    let failed_read = random_id.is_none();
                    mine.push(Acked {
                        job_id,
                        request_id,
                        random_id,
                    });
                    if failed_read {
                        break;
                    }
                }
                mine
            })
        })
        .collect();

    let deadline = tokio::time::Instant::now() + PATIENCE;
    while acked.load(Ordering::Relaxed) < KILL_AFTER {
        assert!(tokio::time::Instant::now() < deadline, "enqueueing stalled");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    daemon.kill(); // SIGKILL while the clients are still sending
    stop.store(true, Ordering::Relaxed);
    let mut all = Vec::new();
    for client in clients {
        all.extend(client.await.unwrap());
    }
    assert!(all.len() >= KILL_AFTER);

    let (_daemon, client) = start_daemon(dir.path()).await;
    let mut stored = Vec::new();
    let mut after = 0;
    loop {
        let page = client
            .get(&format!("/api/v1/jobs?after={after}&limit=1000"))
            .await
            .unwrap()
            .json()
            .unwrap();
        let jobs = page["jobs"].as_array().unwrap().clone();
        let Some(last) = jobs.last() else { break };
        after = last["job_id"].as_i64().unwrap();
        stored.extend(jobs);
    }
    for ack in &all {
        let matching: Vec<&Value> = stored
            .iter()
            .filter(|job| job["enqueue_request_id"] == ack.request_id.as_str())
            .collect();
        assert_eq!(matching.len(), 1, "{ack:?} stored {} times", matching.len());
        let job = matching[0];
        assert_eq!(job["job_id"], ack.job_id, "{ack:?}");
        assert_eq!(job["state"], "queued");
        if let Some(random_id) = &ack.random_id {
            assert_eq!(job["parts"][0]["random_id"], random_id.as_str(), "{ack:?}");
        }
    }
}

#[tokio::test]
async fn sigterm_stops_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let (mut daemon, client) = start_daemon(dir.path()).await;
    let answer = client
        .post(INTERACTIVE, &[], body("5", "kept"))
        .await
        .unwrap();
    assert_eq!(answer.status, 202);
    let status = daemon.terminate();
    assert!(status.success(), "{status}");
    assert!(!dir.path().join("telegate.sock").exists());

    // Another run finds the job and serves again on the same path.
    let (_daemon, client) = start_daemon(dir.path()).await;
    let jobs = client.get("/api/v1/jobs").await.unwrap().json().unwrap();
    assert!(
        jobs["jobs"][0].get("payload").is_none(),
        "listings leave payloads out"
    );
    let job_id = &jobs["jobs"][0]["job_id"];
    let job = client
        .get(&format!("/api/v1/jobs/{job_id}"))
        .await
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(payload_text(&job["payload"]), "kept");
    // The SQLite file is owner-only (a PostgreSQL store has no file here).
    if store_support::postgres_url(dir.path()).is_none() {
        let mode = std::fs::metadata(dir.path().join("telegate.db"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}

/// Posts an interactive body for `chat` with `?wait=SECONDS` in the
/// background, so a test can act on the job while the request waits.
fn post_waiting(
    server: &Server,
    seconds: u64,
    chat: &str,
) -> JoinHandle<Result<Answer, telegate::api::client::ClientError>> {
    let client = server.client.clone();
    let path = format!("{INTERACTIVE}?wait={seconds}");
    let body = body(chat, "hi");
    tokio::spawn(async move { client.post(&path, &[], body).await })
}
