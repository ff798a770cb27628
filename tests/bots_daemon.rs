//! Many bots in one `telegate run`: a bot Telegram refuses, or one that
//! cannot reach Telegram, is halted or retrying on its own while the others
//! send and answer clicks; a reload applies the config's difference and
//! leaves unchanged bots alone.

mod worker_support;

use std::fs;
use std::path::Path;
use std::time::Duration;

use axum::http::Method;
use bytes::Bytes;
use serde_json::{Value, json};
use telegate::api::client::{Answer, Client};
use telegate::config::{BotName, Secret, StateDir};
use telegate::sandbox::server::Sandbox;
use telegate::sandbox::telegram::BOT_ID;
use telegate::sandbox::telegram::{DC_ID, Pressed, UserClick};
use telegate::session::SessionStore;
use tokio::time::{Instant, sleep};
use worker_support::{PATIENCE, Pace, World, body};

const OPERATOR: &str = "op-sekrit";

/// Beside the sandbox's own bot (`default`, from `[telegram]`): `refused`,
/// whose token Telegram rejects, and `unreachable`, whose session has a key
/// the DC does not know (its connection is refused at once).
fn config(unreachable_key: &str, unreachable_enabled: bool, with_refused: bool) -> String {
    let mut text = format!(
        "[api]\nadmin_keys = [\"{OPERATOR}\"]\n\
         [[bots]]\nname = \"unreachable\"\nbot_token = \"998:unreachable-sekrit\"\n\
         api_keys = [\"{unreachable_key}\"]\nenabled = {unreachable_enabled}\n"
    );
    if with_refused {
        text.push_str(
            "[[bots]]\nname = \"refused\"\nbot_token = \"999:refused-sekrit\"\n\
             api_keys = [\"refused-key\"]\n",
        );
    }
    text
}

fn provision(dir: &Path, sandbox: &Sandbox) {
    let state = StateDir::new(dir);
    let name = |n: &str| BotName::new(n).unwrap();
    // A key the DC knows: it connects, and then the token is refused. Not
    // the default bot's, which is live on another connection (that would
    // be AUTH_KEY_DUPLICATED): a second sandbox bot's.
    let telegram = sandbox.telegram();
    let other = telegram.ensure_bots(2)[1];
    SessionStore::provision(
        &state.bot_session(&name("refused")),
        DC_ID,
        sandbox.dc_addr(),
        telegram.bot_auth_key(other).unwrap(),
    )
    .unwrap();
    SessionStore::provision(
        &state.bot_session(&name("unreachable")),
        DC_ID,
        sandbox.dc_addr(),
        [7; 256],
    )
    .unwrap();
}

/// Replaces the `[api]` and `[[bots]]` of the config file with `bots`,
/// keeping what the sandbox wrote (`[telegram]`, `[limits]`).
fn rewrite(file: &Path, bots: &str) {
    let mut table: toml::Table = fs::read_to_string(file).unwrap().parse().unwrap();
    table.remove("api");
    table.remove("bots");
    fs::write(
        file,
        format!("{}\n{bots}", toml::to_string(&table).unwrap()),
    )
    .unwrap();
}

async fn call(client: &Client, method: Method, path: &str, key: &str, body: String) -> Answer {
    let mut connection = client.connect().await.unwrap();
    connection
        .send(method, path, &[("x-octopods-auth", key)], Bytes::from(body))
        .await
        .unwrap()
}

/// The bots as the operator sees them, by name.
async fn bots(client: &Client) -> Value {
    let answer = call(client, Method::GET, "/api/v1/bots", OPERATOR, String::new()).await;
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    let mut by_name = serde_json::Map::new();
    for bot in answer.json().unwrap()["bots"].as_array().unwrap() {
        by_name.insert(bot["name"].as_str().unwrap().to_owned(), bot.clone());
    }
    Value::Object(by_name)
}

/// Waits until `check` holds for the bots' view.
async fn until_bots(client: &Client, what: &str, check: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let seen = bots(client).await;
        if check(&seen) {
            return seen;
        }
        assert!(Instant::now() < deadline, "never {what}: {seen}");
        sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_or_unreachable_bot_does_not_stop_the_others_and_reload_applies_the_difference() {
    let mut world = World::start_prepared(
        Pace::Unlimited,
        &config("unreachable-key", true, true),
        &[],
        provision,
    )
    .await;
    // Requests below name their key themselves; the harness's own reads go
    // as the operator.
    let keyless = Client::new(world.dir.path().join("telegate.sock"));
    let client = &keyless;
    world.client = keyless.clone().with_key(Some(Secret::new(OPERATOR)));

    let seen = until_bots(client, "refused halted and unreachable failing", |bots| {
        bots["refused"]["state"]
            .as_str()
            .is_some_and(|s| s.starts_with("halted:") && s.contains("ACCESS_TOKEN_INVALID"))
            && bots["unreachable"]["state"] == "connecting"
            && bots["unreachable"]["last_error"].is_string()
    })
    .await;
    assert_eq!(seen["default"]["state"], "ready", "{seen}");

    // The sandbox's bot sends, in order, while the others fail.
    let users = world.users(3);
    let path = "/api/v1/telegram/interactive?bot=default";
    let mut last = 0;
    for round in 0..5 {
        for user in &users {
            let text = format!("round {round}");
            let answer = call(client, Method::POST, path, OPERATOR, body(*user, &text)).await;
            assert_eq!(answer.status, 202, "{:?}", answer.body);
            last = answer.json().unwrap()["job_id"].as_i64().unwrap();
        }
    }
    let job = world.settled(last).await;
    assert_eq!(job["state"], "sent", "{job}");
    for user in &users {
        let texts: Vec<String> = (0..5).map(|round| format!("round {round}")).collect();
        assert_eq!(world.bot_texts(*user), texts);
    }

    // ... and answers a click with the button's stored answer.
    let user = users[0];
    let buttons = json!({
        "destination_user_id": user.to_string(),
        "telegram_interactive_message": {"type": "reply_buttons", "text": "ok?",
            "reply_markup": {"inline_keyboard": [[
                {"text": "Yes", "callback_data": "yes", "answer": {"text": "Noted"}}]]}}
    });
    let answer = call(
        client,
        Method::POST,
        &format!("{path}&wait=30"),
        OPERATOR,
        buttons.to_string(),
    )
    .await;
    assert_eq!(answer.status, 201, "{:?}", answer.body);
    let message_id: i32 = answer.json().unwrap()["channel_message_id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let pressed = world
        .sandbox
        .telegram()
        .click(
            user,
            UserClick::Callback {
                message_id,
                data: b"yes".to_vec(),
            },
        )
        .await
        .unwrap();
    let Pressed::Answered(outcome) = pressed else {
        panic!("a callback press: {pressed:?}");
    };
    assert!(format!("{outcome:?}").contains("Noted"), "{outcome:?}");

    // The refused (halted) bot takes no new work and says why; nothing
    // else is held up.
    let refused = call(
        client,
        Method::POST,
        "/api/v1/telegram/messages",
        "refused-key",
        json!({"destination_user_id": user.to_string(), "text": "later"}).to_string(),
    )
    .await;
    assert_eq!(refused.status, 503, "{:?}", refused.body);
    let error = refused.json().unwrap()["error"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        error.contains("`refused` is halted") && error.contains("ACCESS_TOKEN_INVALID"),
        "{error}"
    );
    let seen = bots(client).await;
    assert_eq!(seen["refused"]["queue_depth"], 0, "{seen}");

    // Reload: `refused` removed, `unreachable` re-keyed (not restarted).
    let file = world.dir.path().join("telegate.toml");
    rewrite(&file, &config("new-key", true, false));
    let answer = call(
        client,
        Method::POST,
        "/api/v1/reload",
        OPERATOR,
        String::new(),
    )
    .await;
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    let applied = answer.json().unwrap();
    assert_eq!(applied["stopped"], json!(["refused"]), "{applied}");
    assert_eq!(
        applied["unchanged"],
        json!(["default", "unreachable"]),
        "{applied}"
    );
    let probe = |key: &'static str| call(client, Method::GET, "/api/v1/jobs", key, String::new());
    assert_eq!(probe("unreachable-key").await.status, 401);
    assert_eq!(probe("new-key").await.status, 200);
    assert_eq!(probe("refused-key").await.status, 401);
    let seen = bots(client).await;
    assert!(seen.get("refused").is_none(), "{seen}");
    assert_eq!(seen["default"]["state"], "ready", "{seen}");

    // Disable `unreachable` with SIGHUP: it stops, its key is refused 403.
    rewrite(&file, &config("new-key", false, false));
    let pid = i32::try_from(world.worker.as_ref().unwrap().child.id()).unwrap();
    // SAFETY: kill(2) on our own child's pid.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGHUP) }, 0);
    until_bots(client, "unreachable disabled", |bots| {
        bots["unreachable"]["state"] == "disabled"
    })
    .await;
    assert_eq!(probe("new-key").await.status, 403);

    // The sandbox's bot was never restarted and still sends.
    let answer = call(
        client,
        Method::POST,
        &format!("{path}&wait=30"),
        OPERATOR,
        body(user, "after"),
    )
    .await;
    assert_eq!(answer.status, 201, "{:?}", answer.body);
    let log = world.worker.as_ref().unwrap().log();
    let stopping = |bot: &str| {
        log.lines()
            .any(|line| line.contains("stopping bot") && line.contains(&format!("bot={bot}")))
    };
    assert!(stopping("refused") && stopping("unreachable"), "{log}");
    assert!(!stopping("default"), "{log}");
    assert_eq!(log.matches("ready: connected").count(), 1, "{log}");
    for secret in ["sekrit", "new-key", "refused-key"] {
        assert!(!log.contains(secret), "the log shows {secret}");
    }
    world.stop().await;
}

/// `telegate sandbox --bots 3`'s files (one sandbox whose model holds three
/// bots, a key each) under `telegate run`: one user talks to all three;
/// each bot's key reaches its own chat, jobs, clicks and events only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sandbox_bots_each_reach_only_their_own_chats_clicks_and_events() {
    use telegate::cli::sandbox::write_fleet_files;
    use telegate::sandbox::server::SandboxOptions;
    use telegate::sandbox::telegram::{NewUser, UserMessage};

    let dir = tempfile::tempdir().unwrap();
    StateDir::new(dir.path()).prepare().unwrap();
    let sandbox = Sandbox::start(SandboxOptions {
        state_dir: Some(dir.path().to_owned()),
        ..SandboxOptions::default()
    })
    .await
    .unwrap();
    sandbox.telegram().set_limits_enabled(false);
    let bots = sandbox.telegram().ensure_bots(3);
    assert_eq!(bots.len(), 3);
    assert_eq!(bots[0], BOT_ID);
    let keys = write_fleet_files(dir.path(), &sandbox, &bots).unwrap();
    let names: Vec<&str> = keys.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(names, ["bot1", "bot2", "bot3"]);
    // The keys are kept when the files are written again (a restart).
    assert_eq!(
        write_fleet_files(dir.path(), &sandbox, &bots).unwrap(),
        keys
    );
    let mut worker = worker_support::Worker::start(dir.path()).await;
    let client = Client::new(dir.path().join("telegate.sock"));
    let key = |bot: usize| keys[bot - 1].1.as_str();

    // Every bot gets ready; its key sees itself only.
    for bot in 1..=3 {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let answer = call(
                &client,
                Method::GET,
                "/api/v1/bots",
                key(bot),
                String::new(),
            )
            .await;
            let seen = answer.json().unwrap()["bots"].clone();
            assert_eq!(seen.as_array().map(Vec::len), Some(1), "{seen}");
            if seen[0]["state"] == "ready" {
                assert_eq!(seen[0]["name"], format!("bot{bot}"));
                break;
            }
            assert!(Instant::now() < deadline, "bot{bot} never ready: {seen}");
            sleep(Duration::from_millis(50)).await;
        }
    }

    // One user writes to bots 1 and 2 (not 3), and each of those writes
    // back in its own chat with that user.
    let telegram = sandbox.telegram();
    let user = telegram
        .create_user(NewUser {
            id: None,
            first_name: "Ann".into(),
            username: None,
            lang_code: None,
        })
        .unwrap()
        .id;
    for &bot in &bots[..2] {
        telegram
            .user_sends(user, bot, UserMessage::Text("/start".into()), None)
            .unwrap();
    }
    for bot in 1..=2 {
        let text = format!("hello from bot{bot}");
        let path = "/api/v1/telegram/interactive?wait=30";
        let answer = call(&client, Method::POST, path, key(bot), body(user, &text)).await;
        assert_eq!(answer.status, 201, "{:?}", answer.body);
    }
    // bot3 was never written to: Telegram refuses it the chat.
    let path = "/api/v1/telegram/interactive?wait=30";
    let refused = call(&client, Method::POST, path, key(3), body(user, "hi")).await;
    assert_ne!(refused.status, 201, "{:?}", refused.body);
    for bot in 1..=2 {
        let chat = telegram.chat(user, bots[bot - 1]).unwrap();
        let texts: Vec<&str> = chat["messages"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|m| m["text"].as_str())
            .collect();
        assert_eq!(
            texts,
            ["/start", &format!("hello from bot{bot}")],
            "bot{bot}'s chat"
        );
    }
    // Each /start is an event of its own bot only.
    let starts = |bot: usize| {
        let (client, key) = (client.clone(), key(bot).to_owned());
        async move {
            let path = "/api/v1/events?after=0";
            let answer = call(&client, Method::GET, path, &key, String::new()).await;
            let body = String::from_utf8(answer.body.to_vec()).unwrap();
            body.matches("/start").count()
        }
    };
    let deadline = Instant::now() + PATIENCE;
    while starts(1).await == 0 || starts(2).await == 0 {
        assert!(Instant::now() < deadline, "the /starts never became events");
        sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        (starts(1).await, starts(2).await, starts(3).await),
        (1, 1, 0)
    );

    // The user clicks bot2's button; the click is bot2's event, answerable
    // by bot2 only.
    let users = [user, user];
    let buttons = json!({
        "destination_user_id": users[1].to_string(),
        "telegram_interactive_message": {"type": "reply_buttons", "text": "ok?",
            "reply_markup": {"inline_keyboard": [[
                {"text": "Yes", "callback_data": "yes", "answer": {"text": "Noted"}}]]}}
    });
    let path = "/api/v1/telegram/interactive?wait=30";
    let answer = call(&client, Method::POST, path, key(2), buttons.to_string()).await;
    assert_eq!(answer.status, 201, "{:?}", answer.body);
    let job_id = answer.json().unwrap()["job_id"].as_i64().unwrap();
    let message_id: i32 = answer.json().unwrap()["channel_message_id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let pressed = telegram
        .click(
            users[1],
            UserClick::Callback {
                message_id,
                data: b"yes".to_vec(),
            },
        )
        .await
        .unwrap();
    assert!(format!("{pressed:?}").contains("Noted"), "{pressed:?}");
    let clicked = |bot: usize| {
        let client = client.clone();
        let key = key(bot).to_owned();
        async move {
            let answer = call(
                &client,
                Method::GET,
                "/api/v1/events?after=0",
                &key,
                String::new(),
            )
            .await;
            String::from_utf8(answer.body.to_vec())
                .unwrap()
                .lines()
                .map(|line| serde_json::from_str::<Value>(line).unwrap()["event"].clone())
                .filter(|event| {
                    event["body"]["type"] == "clicked" || event.to_string().contains("query_id")
                })
                .collect::<Vec<Value>>()
        }
    };
    let deadline = Instant::now() + PATIENCE;
    let click_event = loop {
        if let Some(event) = clicked(2).await.pop() {
            break event;
        }
        assert!(
            Instant::now() < deadline,
            "bot2's click never became an event"
        );
        sleep(Duration::from_millis(50)).await;
    };
    assert!(clicked(3).await.is_empty());
    assert!(clicked(1).await.is_empty());
    let text = click_event.to_string();
    let query_id = text
        .split("\"query_id\":")
        .nth(1)
        .map(|rest| {
            rest.trim_start_matches('"')
                .chars()
                .take_while(|c| c.is_ascii_digit() || *c == '-')
                .collect::<String>()
        })
        .expect("the click event names its query");
    let answer_path = format!("/api/v1/callbacks/{query_id}/answer");
    let answer = call(&client, Method::POST, &answer_path, key(3), "{}".into()).await;
    assert_eq!(
        answer.status, 404,
        "bot3 answered bot2's click: {:?}",
        answer.body
    );
    let answer = call(&client, Method::POST, &answer_path, key(2), "{}".into()).await;
    assert_eq!(answer.status, 409, "{:?}", answer.body);
    // One bot's job is nobody else's.
    let path = format!("/api/v1/jobs/{job_id}");
    assert_eq!(
        call(&client, Method::GET, &path, key(3), String::new())
            .await
            .status,
        404
    );
    assert_eq!(
        call(&client, Method::GET, &path, key(2), String::new())
            .await
            .status,
        200
    );

    let status = worker.terminate();
    assert!(status.success(), "{status}");
    let log = worker.log();
    for (_, key) in &keys {
        assert!(!log.contains(key.as_str()), "the log shows an API key");
    }
    sandbox.shutdown().await.unwrap();
}

/// `POST /faults?bot=NAME` on the sandbox's control socket.
async fn fault(dir: &Path, bot: &str, body: Value) {
    let control = Client::new(dir.join("sandbox.sock"));
    let mut connection = control.connect().await.unwrap();
    let answer = connection
        .send(
            Method::POST,
            &format!("/faults?bot={bot}"),
            &[],
            Bytes::from(body.to_string()),
        )
        .await
        .unwrap();
    assert_eq!(answer.status, 200, "{:?}", answer.body);
}

/// Four bots in one sandbox and one daemon: bot2's token is revoked, bot3's
/// sign-in hits FLOOD_WAIT, bot4's connection is a black hole — and bot1
/// sends every job and answers a click all the while; bot3 then signs in on
/// its own and sends what waited for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_flooded_or_dead_bot_leaves_the_others_sending_and_answering_clicks() {
    use telegate::cli::sandbox::write_fleet_files;
    use telegate::sandbox::server::SandboxOptions;
    use telegate::sandbox::telegram::{NewUser, UserMessage};

    let dir = tempfile::tempdir().unwrap();
    StateDir::new(dir.path()).prepare().unwrap();
    let sandbox = Sandbox::start(SandboxOptions {
        state_dir: Some(dir.path().to_owned()),
        ..SandboxOptions::default()
    })
    .await
    .unwrap();
    let telegram = sandbox.telegram().clone();
    telegram.set_limits_enabled(false);
    let bots = telegram.ensure_bots(4);
    let keys = write_fleet_files(dir.path(), &sandbox, &bots).unwrap();
    let key = |bot: usize| keys[bot - 1].1.clone();
    // bot3 starts signed out: the daemon signs it in with its token, and
    // that sign-in gets FLOOD_WAIT_5.
    let bot3_session = StateDir::new(dir.path()).bot_session(&BotName::new("bot3").unwrap());
    fs::remove_file(&bot3_session).unwrap();
    SessionStore::provision(
        &bot3_session,
        DC_ID,
        sandbox.dc_addr(),
        telegram.bot_auth_key(bots[2]).unwrap(),
    )
    .unwrap();
    fault(dir.path(), "bot3", json!({"sign_in_flood_wait_s": 5})).await;
    let users: Vec<_> = (0..3)
        .map(|n| {
            let user = telegram
                .create_user(NewUser {
                    first_name: format!("U{n}"),
                    ..NewUser::default()
                })
                .unwrap()
                .id;
            for &bot in &bots {
                telegram
                    .user_sends(user, bot, UserMessage::Text("/start".into()), None)
                    .unwrap();
            }
            user
        })
        .collect();

    let mut worker = worker_support::Worker::start(dir.path()).await;
    let client = Client::new(dir.path().join("telegate.sock"));
    let state = |bot: usize| {
        let (client, key) = (client.clone(), key(bot));
        async move {
            let answer = call(&client, Method::GET, "/api/v1/bots", &key, String::new()).await;
            answer.json().unwrap()["bots"][0].clone()
        }
    };
    let until = |bot: usize, what: &'static str, check: fn(&Value) -> bool| {
        let state = &state;
        async move {
            let deadline = Instant::now() + PATIENCE;
            loop {
                let seen = state(bot).await;
                if check(&seen) {
                    return seen;
                }
                assert!(Instant::now() < deadline, "bot{bot} never {what}: {seen}");
                sleep(Duration::from_millis(50)).await;
            }
        }
    };
    // A job of `bot`'s once it is sent or failed.
    let settled = |bot: usize, job: i64| {
        let (client, key) = (client.clone(), key(bot));
        async move {
            let deadline = Instant::now() + PATIENCE;
            loop {
                let path = format!("/api/v1/jobs/{job}");
                let answer = call(&client, Method::GET, &path, &key, String::new()).await;
                let job = answer.json().unwrap();
                if job["state"] == "sent" || job["state"] == "failed" {
                    return job;
                }
                assert!(
                    Instant::now() < deadline,
                    "bot{bot}'s job never settled: {job}"
                );
                sleep(Duration::from_millis(50)).await;
            }
        }
    };
    // (Its wait lasts 5 s: the error stays as its last one after.)
    until(3, "flood-waited at sign-in", |s| {
        s["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("FLOOD_WAIT_5 at sign-in: signing in again at"))
    })
    .await;
    for bot in [1, 2, 4] {
        until(bot, "ready", |s| s["state"] == "ready").await;
    }

    // bot2's token is revoked; bot4's connections get no answer.
    fault(dir.path(), "bot2", json!({"revoke_bot_token": true})).await;
    fault(dir.path(), "bot4", json!({"blackhole": true})).await;
    let path = "/api/v1/telegram/interactive";
    let mut waiting = Vec::new();
    for bot in [2, 3, 4] {
        let text = format!("from bot{bot}");
        let answer = call(
            &client,
            Method::POST,
            path,
            &key(bot),
            body(users[0], &text),
        )
        .await;
        assert_eq!(answer.status, 202, "{:?}", answer.body);
        waiting.push((bot, answer.json().unwrap()["job_id"].as_i64().unwrap()));
    }
    until(2, "halted by the revoked token", |s| {
        s["state"].as_str().is_some_and(|s| s.starts_with("halted"))
    })
    .await;

    // bot1 sends everything, in order, to every user ...
    let mut last = 0;
    for round in 0..5 {
        for user in &users {
            let text = format!("round {round}");
            let answer = call(&client, Method::POST, path, &key(1), body(*user, &text)).await;
            assert_eq!(answer.status, 202, "{:?}", answer.body);
            last = answer.json().unwrap()["job_id"].as_i64().unwrap();
        }
    }
    assert_eq!(settled(1, last).await["state"], "sent");
    for &user in &users {
        let texts: Vec<String> = telegram.chat(user, bots[0]).unwrap()["messages"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["from"] == "bot")
            .filter_map(|m| m["text"].as_str().map(str::to_owned))
            .collect();
        let expected: Vec<String> = (0..5).map(|round| format!("round {round}")).collect();
        assert_eq!(texts, expected);
    }

    // ... and answers a click with the button's stored answer.
    let buttons = json!({
        "destination_user_id": users[1].to_string(),
        "telegram_interactive_message": {"type": "reply_buttons", "text": "ok?",
            "reply_markup": {"inline_keyboard": [[
                {"text": "Yes", "callback_data": "yes", "answer": {"text": "Noted"}}]]}}
    });
    let sent = call(
        &client,
        Method::POST,
        &format!("{path}?wait=30"),
        &key(1),
        buttons.to_string(),
    )
    .await;
    assert_eq!(sent.status, 201, "{:?}", sent.body);
    let message_id: i32 = sent.json().unwrap()["channel_message_id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let pressed = telegram
        .click(
            users[1],
            UserClick::Callback {
                message_id,
                data: b"yes".to_vec(),
            },
        )
        .await
        .unwrap();
    let Pressed::Answered(outcome) = pressed else {
        panic!("a callback press: {pressed:?}");
    };
    assert!(format!("{outcome:?}").contains("Noted"), "{outcome:?}");

    // The broken bots sent nothing meanwhile: their chats hold only /start.
    for (bot, _) in &waiting {
        if *bot == 3 {
            continue;
        }
        let chat = telegram.chat(users[0], bots[bot - 1]).unwrap();
        let from_bot = chat["messages"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["from"] == "bot")
            .count();
        assert_eq!(from_bot, 0, "bot{bot} sent: {chat}");
    }
    // bot3's flood wait ran out: it signed in by itself and sent its job.
    until(3, "ready after its flood wait", |s| s["state"] == "ready").await;
    let (_, bot3_job) = waiting[1];
    assert_eq!(settled(3, bot3_job).await["state"], "sent");
    assert_eq!(
        state(2).await["state"]
            .as_str()
            .map(|s| s.starts_with("halted")),
        Some(true)
    );
    assert_ne!(state(4).await["state"], "halted");

    let status = worker.terminate();
    assert!(status.success(), "{status}");
    let log = worker.log();
    for (_, key) in &keys {
        assert!(!log.contains(key.as_str()), "the log shows an API key");
    }
    sandbox.shutdown().await.unwrap();
}
