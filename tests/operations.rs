//! What an operator sees of a running daemon: Prometheus metrics after real
//! traffic through the sandbox (parsed, not grepped), liveness and
//! readiness, on the socket and on the loopback TCP port.

mod worker_support;

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Value, json};
use telegate::sandbox::telegram::BOT_ID;
use telegate::sandbox::telegram::{ChatFault, Pressed, TgError, UserClick};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::{Instant, sleep};
use worker_support::{INTERACTIVE, PATIENCE, Pace, Worker, World, body};

/// One sample of an exposition: metric name, labels, value.
#[derive(Debug, Clone, PartialEq)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// Parses OpenMetrics / Prometheus text: `# ...` lines are skipped, each
/// other line must be `name{k="v",...} value`. Panics on anything else.
fn parse_exposition(text: &str) -> Vec<Sample> {
    let mut samples = Vec::new();
    assert!(text.trim_end().ends_with("# EOF"), "no `# EOF`: {text}");
    for line in text
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("{line}"));
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            v => v.parse().unwrap_or_else(|_| panic!("bad value in {line}")),
        };
        let (name, labels) = match series.split_once('{') {
            None => (series.to_owned(), BTreeMap::new()),
            Some((name, rest)) => {
                let inner = rest.strip_suffix('}').unwrap_or_else(|| panic!("{line}"));
                let mut labels = BTreeMap::new();
                let mut rest = inner;
                while !rest.is_empty() {
                    let (key, after) = rest.split_once("=\"").unwrap_or_else(|| panic!("{line}"));
                    let mut value = String::new();
                    let mut chars = after.char_indices();
                    let end = loop {
                        match chars.next() {
                            Some((_, '\\')) => match chars.next() {
                                Some((_, 'n')) => value.push('\n'),
                                Some((_, c)) => value.push(c),
                                None => panic!("{line}"),
                            },
                            Some((i, '"')) => break i,
                            Some((_, c)) => value.push(c),
                            None => panic!("unterminated label in {line}"),
                        }
                    };
                    labels.insert(key.to_owned(), value);
                    rest = after[end + 1..].trim_start_matches(',');
                }
                (name.to_owned(), labels)
            }
        };
        assert!(
            name.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "bad metric name in {line}"
        );
        samples.push(Sample {
            name,
            labels,
            value,
        });
    }
    samples
}

/// The value of `name` with (at least) `labels`, summed over the rest.
fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let matching: Vec<f64> = samples
        .iter()
        .filter(|s| s.name == name)
        .filter(|s| {
            labels
                .iter()
                .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|s| s.value)
        .collect();
    (!matching.is_empty()).then(|| matching.iter().sum())
}

async fn scrape(world: &World) -> Vec<Sample> {
    let answer = world.client.get("/metrics").await.unwrap();
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    let kind = answer.headers["content-type"].to_str().unwrap();
    assert!(kind.starts_with("application/openmetrics-text"), "{kind}");
    parse_exposition(std::str::from_utf8(&answer.body).unwrap())
}

/// Scrapes until `done` holds (counters of work that ends after a job is
/// settled, such as click answers, may lag a little).
async fn scrape_until(world: &World, done: impl Fn(&[Sample]) -> bool) -> Vec<Sample> {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let samples = scrape(world).await;
        if done(&samples) {
            return samples;
        }
        assert!(
            Instant::now() < deadline,
            "metrics never got there: {samples:#?}"
        );
        sleep(Duration::from_millis(50)).await;
    }
}

fn buttons(user: telegate::sandbox::telegram::AccountId) -> String {
    json!({
        "destination_user_id": user.to_string(),
        "telegram_interactive_message": {
            "type": "reply_buttons",
            "text": "Rate us",
            "reply_markup": {"inline_keyboard": [[
                {"text": "Up", "callback_data": "up", "answer": {"text": "Thanks!"}},
            ]]}
        }
    })
    .to_string()
}

/// A free loopback port (bound and let go; nothing else here takes ports).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `GET path` over TCP, the whole answer as text.
async fn tcp_get(port: u16, path: &str) -> String {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut reply = Vec::new();
    tokio::time::timeout(PATIENCE, stream.read_to_end(&mut reply))
        .await
        .unwrap()
        .unwrap();
    String::from_utf8(reply).unwrap()
}

#[test]
fn the_parser_reads_labels_escapes_and_refuses_garbage() {
    let samples = parse_exposition(
        "# HELP x y\nx_total{a=\"1\",b=\"q\\\"uo\\\\te\"} 3\ny 1.5\nh_bucket{le=\"+Inf\"} 2\n# EOF\n",
    );
    assert_eq!(value(&samples, "x_total", &[("b", "q\"uo\\te")]), Some(3.0));
    assert_eq!(value(&samples, "y", &[]), Some(1.5));
    assert_eq!(value(&samples, "h_bucket", &[("le", "+Inf")]), Some(2.0));
    assert_eq!(value(&samples, "z", &[]), None);
    assert!(std::panic::catch_unwind(|| parse_exposition("x{a=\"1} 3\n# EOF\n")).is_err());
    assert!(std::panic::catch_unwind(|| parse_exposition("x 3\n")).is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_real_traffic_through_the_sandbox() {
    let port = free_port();
    let config =
        format!("[callbacks]\ndeadline_ms = 100\n[metrics]\nlisten = \"127.0.0.1:{port}\"\n");
    let world = World::start_with(Pace::Unlimited, &config).await;
    let users = world.users(3);
    let telegram = world.sandbox.telegram();
    let blocked = users[2];
    telegram
        .set_chat_fault(
            Some(blocked),
            Some(ChatFault {
                error: TgError::bad_request("USER_IS_BLOCKED"),
                remaining: None,
            }),
        )
        .unwrap();
    let jobs: Vec<_> = (0..6).map(|i| (users[i % 2], format!("m{i}"))).collect();
    let ids = world.enqueue_all(&jobs).await;
    for id in &ids {
        assert_eq!(world.settled(*id).await["state"], "sent");
    }
    let doomed = world
        .client
        .post(&format!("{INTERACTIVE}?wait=30"), &[], body(blocked, "no"))
        .await
        .unwrap();
    assert_eq!(doomed.status, 400, "{:?}", doomed.body);
    // A click, answered with the button's stored answer at the deadline.
    let sent = world
        .client
        .post(&format!("{INTERACTIVE}?wait=30"), &[], buttons(users[0]))
        .await
        .unwrap();
    assert_eq!(sent.status, 201, "{:?}", sent.body);
    let message_id: i32 = sent.json().unwrap()["channel_message_id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let click = UserClick::Callback {
        message_id,
        data: b"up".to_vec(),
    };
    let Pressed::Answered(outcome) = telegram.click(users[0], click).await.unwrap() else {
        panic!("not a callback button");
    };
    assert_eq!(outcome.result.unwrap().message.as_deref(), Some("Thanks!"));

    let bot = [("bot", "default")];
    // The answer can go out before the click's event commits (a stored
    // answer does not wait for the store): wait for both.
    let samples = scrape_until(&world, |s| {
        value(
            s,
            "telegate_callback_answers_total",
            &[("source", "stored")],
        ) == Some(1.0)
            && value(s, "telegate_events_written_total", &[("type", "clicked")]).is_some()
    })
    .await;
    let get = |name: &str, labels: &[(&str, &str)]| {
        value(&samples, name, labels)
            .unwrap_or_else(|| panic!("no {name} {labels:?} in {samples:#?}"))
    };
    assert_eq!(get("telegate_jobs_enqueued_total", &bot), 8.0);
    assert_eq!(get("telegate_jobs_sent_total", &bot), 7.0);
    assert_eq!(
        get(
            "telegate_jobs_failed_total",
            &[("bot", "default"), ("error", "USER_IS_BLOCKED")]
        ),
        1.0
    );
    assert_eq!(
        get(
            "telegate_send_attempts_total",
            &[("bot", "default"), ("outcome", "sent")]
        ),
        7.0
    );
    assert_eq!(get("telegate_send_latency_seconds_count", &bot), 7.0);
    assert!(get("telegate_send_latency_seconds_sum", &bot) > 0.0);
    assert_eq!(
        get(
            "telegate_send_latency_seconds_bucket",
            &[("bot", "default"), ("le", "+Inf")]
        ),
        7.0
    );
    assert!(
        get(
            "telegate_rpc_duration_seconds_count",
            &[("method", "messages.sendMessage")]
        ) >= 8.0
    );
    assert_eq!(get("telegate_mtproto_connected", &bot), 1.0);
    assert_eq!(
        get(
            "telegate_callback_answer_latency_seconds_count",
            &[("source", "stored")]
        ),
        1.0
    );
    // A stored answer goes out at once, not after the 100 ms deadline.
    let stored = get(
        "telegate_callback_answer_latency_seconds_sum",
        &[("source", "stored")],
    );
    assert!(stored > 0.0 && stored < 0.1, "{stored}");
    assert_eq!(
        get("telegate_events_written_total", &[("type", "job.sent")]),
        7.0
    );
    assert_eq!(
        get("telegate_events_written_total", &[("type", "job.failed")]),
        1.0
    );
    assert_eq!(
        get("telegate_events_written_total", &[("type", "clicked")]),
        1.0
    );
    // Nothing waits: no depth series, or zero.
    assert_eq!(
        value(&samples, "telegate_queue_depth", &bot).unwrap_or(0.0),
        0.0
    );
    assert_eq!(get("telegate_webhook_backlog", &[]), 0.0);

    // `telegate status`: one screen for a person.
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_telegate"))
        .arg("--state-dir")
        .arg(world.dir.path())
        .arg("status")
        .env_remove("TELEGATE_SOCKET")
        .output()
        .unwrap();
    let screen = String::from_utf8_lossy(&status.stdout);
    assert!(
        status.status.success(),
        "{screen} {}",
        String::from_utf8_lossy(&status.stderr)
    );
    for expected in [
        "bot default",
        "ready",
        "queue:          empty",
        "7 sent in the last minute",
        "USER_IS_BLOCKED",
    ] {
        assert!(screen.contains(expected), "{expected:?} not in\n{screen}");
    }

    // The same exposition over the loopback TCP port, with liveness and
    // readiness beside it and nothing else.
    let reply = tcp_get(port, "/metrics").await;
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    let (_, text) = reply.split_once("\r\n\r\n").unwrap();
    let over_tcp = parse_exposition(text);
    assert_eq!(
        value(&over_tcp, "telegate_jobs_sent_total", &bot),
        Some(7.0)
    );
    assert!(tcp_get(port, "/readyz").await.starts_with("HTTP/1.1 200"));
    let refused = tcp_get(port, INTERACTIVE).await;
    assert!(refused.starts_with("HTTP/1.1 404"), "{refused}");
    world.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_depth_and_oldest_age_show_waiting_jobs() {
    let world = World::start(Pace::Unlimited).await;
    let users = world.users(1);
    // A chat held by a flood wait keeps its jobs queued.
    world
        .sandbox
        .telegram()
        .set_chat_fault(
            Some(users[0]),
            Some(ChatFault {
                error: TgError::flood_wait(3600),
                remaining: None,
            }),
        )
        .unwrap();
    let ids = world
        .enqueue_all(&[(users[0], "a".into()), (users[0], "b".into())])
        .await;
    let samples = scrape_until(&world, |s| {
        value(s, "telegate_flood_waits_total", &[("bot", "default")]) >= Some(1.0)
    })
    .await;
    let bot = [("bot", "default")];
    assert_eq!(value(&samples, "telegate_queue_depth", &bot), Some(2.0));
    assert!(value(&samples, "telegate_queue_oldest_age_seconds", &bot).unwrap() >= 0.0);
    assert!(value(&samples, "telegate_flood_wait_seconds_total", &bot).unwrap() >= 3500.0);
    assert_eq!(value(&samples, "telegate_jobs_sent_total", &bot), None);
    let state = world.job(ids[0]).await["state"].clone();
    assert!(state == "queued" || state == "sending", "{state}");
    world.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_names_the_bot_that_is_not_ready_and_why() {
    let world = World::start(Pace::Unlimited).await;
    let answer = world.client.get("/readyz").await.unwrap();
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    let body: Value = answer.json().unwrap();
    assert_eq!(body["bots"][0]["name"], "default");
    assert_eq!(body["bots"][0]["state"], "ready");
    assert!(body["bots"][0]["bot_id"].is_i64(), "{body}");
    let health = world.client.get("/healthz").await.unwrap();
    assert_eq!(health.status, 200);
    world.stop().await;

    // A worker whose DC does not answer: live, not ready, and says why.
    let dir = tempfile::tempdir().unwrap();
    let dead_dc = format!("127.0.0.1:{}", free_port());
    std::fs::write(
        dir.path().join("telegate.toml"),
        format!("[telegram]\napi_id = 1\napi_hash = \"h\"\nbot_token = \"1:t\"\ndc_addr = \"{dead_dc}\"\n"),
    )
    .unwrap();
    let worker = Worker::spawn(dir.path(), &[]);
    let client = telegate::api::client::Client::new(dir.path().join("telegate.sock"));
    let deadline = Instant::now() + PATIENCE;
    let body = loop {
        if let Ok(answer) = client.get("/readyz").await {
            assert_eq!(answer.status, 503, "{:?}", answer.body);
            let body: Value = answer.json().unwrap();
            if body["not_ready"][0]["last_error"].is_string() {
                break body;
            }
        }
        assert!(
            Instant::now() < deadline,
            "no sign-in error:\n{}",
            worker.log()
        );
        sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(body["status"], "not_ready");
    assert!(body["request_id"].as_str().unwrap().starts_with("req_"));
    assert_eq!(body["not_ready"][0]["name"], "default");
    assert_eq!(body["not_ready"][0]["state"], "signing_in");
    let error = body["error"].as_str().unwrap();
    assert!(error.contains("`default` is signing in"), "{error}");
    let health = client.get("/healthz").await.unwrap();
    assert_eq!(health.status, 200, "{:?}", health.body);
    drop(worker);
}

/// Every way a secret of the sandbox's bot could be written into a log.
fn secrets(world: &World) -> Vec<String> {
    let config: toml::Table = std::fs::read_to_string(world.dir.path().join("telegate.toml"))
        .unwrap()
        .parse()
        .unwrap();
    let telegram = &config["telegram"];
    let key = world.sandbox.telegram().bot_auth_key(BOT_ID).unwrap();
    let decimal: Vec<String> = key[..12].iter().map(u8::to_string).collect();
    let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
    let token = telegram["bot_token"].as_str().unwrap().to_owned();
    let token_secret = token.split_once(':').unwrap().1.to_owned();
    vec![
        token,
        token_secret,
        telegram["api_hash"].as_str().unwrap().to_owned(),
        hex[..32].to_owned(),
        hex[hex.len() - 32..].to_owned(),
        decimal.join(", "),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_at_trace_level_parse_and_hold_no_secret() {
    let env = [("TELEGATE_LOG", "trace"), ("TELEGATE_LOG_FORMAT", "json")];
    let mut world = World::start_with_env(Pace::Unlimited, "", &env).await;
    let users = world.users(1);
    let ids = world.enqueue_all(&[(users[0], "hello".into())]).await;
    assert_eq!(world.settled(ids[0]).await["state"], "sent");
    let chat = users[0].to_string();
    let refused = world.client.post(INTERACTIVE, &[], "[1]").await.unwrap();
    assert_eq!(refused.status, 400);
    let request_id = refused.request_id().unwrap().to_owned();
    let status = world.worker().terminate();
    assert!(status.success(), "{status}");
    let log = world.worker().log();
    let secrets = secrets(&world);
    world.worker = None;

    let mut lines = 0;
    let mut with_request = false;
    let mut with_job = false;
    for line in log.lines() {
        let entry: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(
            entry["level"].is_string() && entry["timestamp"].is_string(),
            "{line}"
        );
        lines += 1;
        let spans = entry["spans"].as_array().cloned().unwrap_or_default();
        with_request |= spans.iter().any(|s| s["request_id"] == request_id.as_str());
        with_job |= spans
            .iter()
            .any(|s| s["job_id"] == ids[0] && s["bot"] == "default" && s["chat"] == chat.as_str());
    }
    assert!(lines > 50, "only {lines} lines at trace level");
    assert!(with_request, "no line carries request_id {request_id}");
    assert!(with_job, "no line carries the job's job_id, bot and chat");
    for secret in &secrets {
        assert!(
            !log.contains(secret.as_str()),
            "the trace log shows a secret ({} chars)",
            secret.len()
        );
    }
    world.stop().await;
}

fn two_media(user: telegate::sandbox::telegram::AccountId) -> String {
    let item = |name: &str, mime: &str| json!({"mediaName": name, "mediaUri": format!("https://cdn.example.com/{name}"), "mimeType": mime});
    json!({
        "destination_user_id": user.to_string(),
        "media": [item("a.jpg", "image/jpeg"), item("b.pdf", "application/pdf")],
    })
    .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_job_keeps_its_random_ids_and_posts_nothing_twice() {
    let world = World::start(Pace::Unlimited).await;
    let users = world.users(2);
    let telegram = world.sandbox.telegram();

    // A refusal fails the job; once the cause is gone, a retry sends it.
    telegram
        .set_chat_fault(
            Some(users[1]),
            Some(ChatFault {
                error: TgError::bad_request("USER_IS_BLOCKED"),
                remaining: Some(1),
            }),
        )
        .unwrap();
    let failed = world
        .client
        .post(
            &format!("{INTERACTIVE}?wait=30"),
            &[],
            body(users[1], "again"),
        )
        .await
        .unwrap();
    assert_eq!(failed.status, 400, "{:?}", failed.body);
    let id = failed.json().unwrap()["job_id"].as_i64().unwrap();
    let random_ids = |job: &Value| -> Vec<Value> {
        job["parts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["random_id"].clone())
            .collect()
    };
    let before = random_ids(&world.job(id).await);
    let retried = world
        .client
        .post(&format!("/api/v1/jobs/{id}/retry?wait=30"), &[], "")
        .await
        .unwrap();
    assert_eq!(retried.status, 201, "{:?}", retried.body);
    let job = world.job(id).await;
    assert_eq!(job["state"], "sent");
    assert_eq!(random_ids(&job), before);
    assert_eq!(world.bot_texts(users[1]), ["again"]);

    // A two-part job that reached Telegram whole, but whose second part
    // telegate recorded as lost and the job as failed: the retry sends that
    // part again with its random_id, and Telegram does not post it twice.
    let sent = world
        .client
        .post(
            "/api/v1/telegram/messages?wait=30",
            &[],
            two_media(users[0]),
        )
        .await
        .unwrap();
    assert_eq!(sent.status, 201, "{:?}", sent.body);
    let id = sent.json().unwrap()["job_id"].as_i64().unwrap();
    assert_eq!(world.bot_posts(users[0]).len(), 2);
    let first = world.job(id).await;
    worker_support::store::execute(
        world.dir.path(),
        &format!(
        "UPDATE parts SET channel_message_id = NULL WHERE job_id = {id} AND seq = 1;
         UPDATE jobs SET state = 'failed', error_code = 5, error_text = 'the answer was lost' WHERE id = {id};"
        ),
    );
    let duplicates = telegram.stats().duplicates_suppressed;
    let retried = world
        .client
        .post(&format!("/api/v1/jobs/{id}/retry?wait=30"), &[], "")
        .await
        .unwrap();
    assert_eq!(retried.status, 201, "{:?}", retried.body);
    let job = world.job(id).await;
    assert_eq!(job["state"], "sent");
    assert_eq!(random_ids(&job), random_ids(&first));
    assert_eq!(
        job["parts"], first["parts"],
        "the same messages, found again by random_id"
    );
    assert_eq!(
        world.bot_posts(users[0]).len(),
        2,
        "a part was posted twice"
    );
    assert_eq!(telegram.stats().duplicates_suppressed, duplicates + 1);

    // Only a failed job can be retried; an unknown one is 404.
    let again = world
        .client
        .post(&format!("/api/v1/jobs/{id}/retry"), &[], "")
        .await
        .unwrap();
    assert_eq!(again.status, 409, "{:?}", again.body);
    assert!(
        again.json().unwrap()["error"]
            .as_str()
            .unwrap()
            .contains("only a failed job")
    );
    let unknown = world
        .client
        .post("/api/v1/jobs/99999/retry", &[], "")
        .await
        .unwrap();
    assert_eq!(unknown.status, 404);
    world.stop().await;
}

#[test]
fn the_unit_file_passes_systemd_analyze_verify() {
    let Ok(found) = std::process::Command::new("systemd-analyze")
        .arg("--version")
        .output()
    else {
        eprintln!("systemd-analyze is not installed: nothing to check the unit with");
        return;
    };
    assert!(found.status.success());
    let unit = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/contrib/telegate.service"
    ))
    .unwrap();
    for line in [
        "Type=notify",
        "WatchdogSec=",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "StateDirectory=",
        "RuntimeDirectory=",
        "UMask=0007",
    ] {
        assert!(unit.contains(line), "the unit lacks {line}");
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("telegate.service");
    std::fs::write(
        &path,
        unit.replace("/usr/local/bin/telegate", env!("CARGO_BIN_EXE_telegate")),
    )
    .unwrap();
    let verified = std::process::Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&verified.stderr);
    assert!(
        verified.status.success() && said.trim().is_empty(),
        "systemd-analyze verify: {said}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn systemd_hears_ready_watchdog_pings_and_stopping() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify.sock");
    let socket = tokio::net::UnixDatagram::bind(&path).unwrap();
    // Read from the start, so the daemon never finds the (small) datagram
    // queue full while the test waits for it to get ready.
    let (tx, mut heard) = tokio::sync::mpsc::unbounded_channel::<String>();
    tokio::spawn(async move {
        let mut buf = [0u8; 512];
        while let Ok(n) = socket.recv(&mut buf).await {
            if tx
                .send(String::from_utf8_lossy(&buf[..n]).into_owned())
                .is_err()
            {
                return;
            }
        }
    });
    let env = [
        ("NOTIFY_SOCKET", path.to_str().unwrap()),
        ("WATCHDOG_USEC", "200000"),
    ];
    let mut world = World::start_with_env(Pace::Unlimited, "", &env).await;
    let deadline = Instant::now() + PATIENCE;
    let mut next = async || {
        tokio::time::timeout_at(deadline, heard.recv())
            .await
            .expect("a notification in time")
            .expect("the reader runs")
    };
    let first = next().await;
    assert!(first.contains("READY=1"), "{first}");
    let mut pings = 0;
    while pings < 2 {
        pings += usize::from(next().await.contains("WATCHDOG=1"));
    }
    let status = world.worker().terminate();
    assert!(status.success(), "{status}");
    world.worker = None;
    while !next().await.contains("STOPPING=1") {}
    world.stop().await;
}
