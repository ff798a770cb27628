//! Click → answer latency as the sandbox user sees it (the sandbox measures
//! from the click to the bot's `setBotCallbackAnswer`).
//!
//! One in-process sandbox (limits off), 100 users, each with a message from
//! telegate carrying two callback buttons: `up` with a stored `answer`, and
//! `ask` without. Clicks are paced at `RATE` a second, round-robin over the
//! users, for `CLICKS` clicks per path:
//!
//! 1. baseline — a bare grammers bot on the same session that answers each
//!    `updateBotCallbackQuery` the moment it arrives (no store, no lookup):
//!    the sandbox's own round trip;
//! 2. stored — `telegate run` (the real daemon, in-process) answering with
//!    the button's stored answer at once; the whole click → answer time is
//!    measured, nothing subtracted;
//! 3. consumer — telegate with a consumer following
//!    `GET /api/v1/events?wait=` on the socket and POSTing
//!    `/api/v1/callbacks/{query_id}/answer` for every click.
//!
//! Run: `cargo bench --bench callbacks`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use grammers_tl_types as tl;
use serde_json::{Value, json};
use telegate::api::client::Client as ApiClient;
use telegate::cli::sandbox::write_worker_files;
use telegate::config::StateDir;
use telegate::sandbox::server::{Sandbox, SandboxOptions};
use telegate::sandbox::telegram::BOT_ID;
use telegate::sandbox::telegram::{FakeTelegram, NewUser, Pressed, UserClick, UserMessage};
use telegate::session::SessionStore;
use telegate::telegram::{Credentials, Telegram};
use tokio::sync::oneshot;

const USERS: usize = 100;
const RATE: u64 = 500;
const CLICKS: usize = 2500;
/// The consumer deadline telegate runs with here (the default is 1500 ms;
/// the stored path does not wait for it).
const DEADLINE_MS: u64 = 100;

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(run());
}

async fn run() {
    let sandbox = Sandbox::start(SandboxOptions::default())
        .await
        .expect("sandbox");
    let world = sandbox.telegram().clone();
    world.set_limits_enabled(false);
    let users: Vec<i64> = (0..USERS)
        .map(|i| {
            let id = world
                .create_user(NewUser {
                    first_name: format!("User {i}"),
                    ..NewUser::default()
                })
                .expect("user")
                .id;
            world
                .user_sends(id, BOT_ID, UserMessage::Text("hi".into()), None)
                .expect("hi");
            id
        })
        .collect();

    let dir = tempfile::tempdir().expect("temp dir");
    let state = StateDir::new(dir.path().join("state"));
    state.prepare().expect("state dir");
    write_worker_files(state.root(), &sandbox).expect("worker files");
    let config = state.default_config();
    let mut text = std::fs::read_to_string(&config).expect("config");
    text.push_str(&format!("\n[callbacks]\ndeadline_ms = {DEADLINE_MS}\n"));
    std::fs::write(&config, text).expect("config");

    // telegate: the daemon, in-process.
    let (stop, stopped) = oneshot::channel::<()>();
    // On a runtime of its own, as `telegate run` would be.
    let daemon = {
        let state = state.clone();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Runtime::new().expect("daemon runtime");
            runtime.block_on(async move {
                let lock = state.lock().expect("lock");
                telegate::cli::run::daemon(&state, &lock, None, async {
                    let _ = stopped.await;
                })
                .await
                .expect("daemon");
            });
        })
    };
    let api = ApiClient::new(state.socket());
    let mut messages = Vec::new();
    for user in &users {
        messages.push((*user, send_buttons(&api, *user).await));
    }

    let stored = clicks(&world, &messages, "up").await;
    let consumer_task = tokio::spawn(consume(api.clone()));
    let consumer = clicks(&world, &messages, "ask").await;
    consumer_task.abort();
    let _ = stop.send(());
    tokio::task::spawn_blocking(move || daemon.join())
        .await
        .expect("join")
        .expect("daemon stopped");

    // Baseline: a bare bot on the same session, answering at once.
    let baseline = {
        let session = Arc::new(
            SessionStore::open(&state.bot_session(&telegate::config::BotName::default_bot()))
                .expect("session"),
        );
        let bot = Telegram::start(session, 1);
        let config = telegate::config::Config::load(None, &state).expect("config");
        let telegram = config.telegram;
        bot.sign_in(&Credentials {
            api_id: 1,
            api_hash: telegram.api_hash.expect("hash").expose().into(),
            bot_token: telegram.bot_token.expect("token").expose().into(),
        })
        .await
        .expect("sign in");
        let bot = Arc::new(bot);
        let mut stream = bot.updates().await.expect("stream").expect("stream");
        let answering = {
            let bot = Arc::clone(&bot);
            tokio::spawn(async move {
                while let Ok((update, _, _)) = stream.next_raw().await {
                    if let tl::enums::Update::BotCallbackQuery(query) = update {
                        let bot = Arc::clone(&bot);
                        tokio::spawn(async move {
                            let answer = tl::functions::messages::SetBotCallbackAnswer {
                                alert: false,
                                query_id: query.query_id,
                                message: Some("Thanks!".into()),
                                url: None,
                                cache_time: 0,
                            };
                            let _ = bot.invoke(&answer).await;
                        });
                    }
                }
            })
        };
        let measured = clicks(&world, &messages, "up").await;
        answering.abort();
        bot.shutdown().await;
        measured
    };

    println!("click → answer at {RATE} clicks/s, {CLICKS} clicks per path, {USERS} users");
    let base = report("baseline (bare bot, answers at once)", &baseline);
    let over = report(
        "telegate stored answer (at once, whole click → answer time)",
        &stored,
    );
    report("telegate consumer answer via the socket", &consumer);
    let by_consumer = consumer
        .iter()
        .filter(|(_, text)| text.as_deref() == Some("Noted"))
        .count();
    println!(
        "  answered by the consumer within the {DEADLINE_MS} ms deadline: {by_consumer} of {}",
        consumer.len()
    );
    println!(
        "stored answer beyond the baseline: p50 {:+.2} ms, p99 {:+.2} ms (target: p99 ≤ +2 ms)",
        over.0 - base.0,
        over.1 - base.1
    );
    sandbox.shutdown().await.expect("sandbox shutdown");
}

/// Sends the two-button message to `user` through telegate and waits until
/// it is sent; Telegram's message id.
async fn send_buttons(api: &ApiClient, user: i64) -> i32 {
    let body = json!({
        "destination_user_id": user.to_string(),
        "telegram_interactive_message": {
            "type": "reply_buttons",
            "text": "Rate us",
            "reply_markup": {"inline_keyboard": [[
                {"text": "Up", "callback_data": "up", "answer": {"text": "Thanks!"}},
                {"text": "Ask", "callback_data": "ask"}
            ]]}
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match api
            .post(
                "/api/v1/telegram/interactive?wait=30",
                &[],
                body.to_string(),
            )
            .await
        {
            Ok(answer) if answer.status == 201 => {
                let sent = answer.json().expect("json");
                return sent["channel_message_id"]
                    .as_str()
                    .and_then(|id| id.parse().ok())
                    .or_else(|| sent["channel_message_id"].as_i64().map(|id| id as i32))
                    .expect("channel_message_id");
            }
            _ if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(100)).await,
            other => panic!("cannot send: {other:?}"),
        }
    }
}

/// Clicks `data` at `RATE` a second; each click's latency and answer text.
async fn clicks(
    world: &FakeTelegram,
    messages: &[(i64, i32)],
    data: &str,
) -> Vec<(Duration, Option<String>)> {
    let mut every = tokio::time::interval(Duration::from_micros(1_000_000 / RATE));
    let mut pending = Vec::with_capacity(CLICKS);
    for n in 0..CLICKS {
        every.tick().await;
        let (user, message_id) = messages[n % messages.len()];
        let world = world.clone();
        let data = data.as_bytes().to_vec();
        pending.push(tokio::spawn(async move {
            world
                .click(user, UserClick::Callback { message_id, data })
                .await
        }));
    }
    let mut latencies = Vec::with_capacity(CLICKS);
    let mut failed = 0;
    for click in pending {
        match click.await {
            Ok(Ok(Pressed::Answered(outcome))) => match outcome.result {
                Ok(answer) => latencies.push((outcome.elapsed, answer.message)),
                Err(_) => failed += 1,
            },
            _ => failed += 1,
        }
    }
    if failed > 0 {
        println!("  {failed} clicks not answered");
    }
    latencies
}

/// A consumer: follows the stream and answers every `ask` click.
async fn consume(api: ApiClient) {
    let mut connection = api.connect().await.expect("connect");
    let mut cursor = 0;
    loop {
        let Ok(answer) = connection
            .get(&format!("/api/v1/events?after={cursor}&wait=30&limit=1000"))
            .await
        else {
            return;
        };
        for line in std::str::from_utf8(&answer.body).unwrap_or("").lines() {
            let Ok(line) = serde_json::from_str::<Value>(line) else {
                continue;
            };
            cursor = line["cursor"].as_i64().unwrap_or(cursor);
            let result = &line["event"]["results"][0];
            if result["metadata"]["button"]["payload"] != "ask" {
                continue;
            }
            let Some(query_id) = result["query_id"].as_str().map(str::to_owned) else {
                continue;
            };
            let api = api.clone();
            tokio::spawn(async move {
                let path = format!("/api/v1/callbacks/{query_id}/answer");
                let _ = api.post(&path, &[], r#"{"text":"Noted"}"#).await;
            });
        }
    }
}

/// Prints p50/p99/max of `latencies`; returns p50, p99 in ms.
fn report(name: &str, latencies: &[(Duration, Option<String>)]) -> (f64, f64) {
    let mut ms: Vec<f64> = latencies
        .iter()
        .map(|(l, _)| l.as_secs_f64() * 1000.0)
        .collect();
    ms.sort_by(f64::total_cmp);
    let at = |q: f64| ms[((ms.len() as f64 * q) as usize).min(ms.len() - 1)];
    let (p50, p99) = (at(0.50), at(0.99));
    println!(
        "{name}: n={} p50 {p50:.2} ms, p99 {p99:.2} ms, max {:.2} ms",
        ms.len(),
        ms[ms.len() - 1]
    );
    (p50, p99)
}
