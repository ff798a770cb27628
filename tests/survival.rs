//! The worker against what production Telegram does to it, end to end
//! (`telegate run` as a child process, the sandbox in this one): groups,
//! supergroups and channels with their limits and refusals; a session
//! signed out, a token revoked and reinstated, grammers' runner dying; a
//! `FLOOD_WAIT` and a refused `api_id` at sign-in; and a SIGTERM with clicks
//! pending.

mod worker_support;

use std::path::Path;
use std::time::Duration;

use grammers_session::Session;
use grammers_session::types::PeerId;
use serde_json::{Value, json};
use telegate::config::{BotName, StateDir};
use telegate::sandbox::telegram::{
    AccountId, BOT_ID, BotAction, GroupKind, NewGroup, Pressed, Role, UserClick, UserMessage,
};
use telegate::session::Sessions;
use tokio::time::Instant;
use worker_support::{INTERACTIVE, Pace, World, body};

/// Posts one job; its id.
async fn enqueue(world: &World, chat: i64, text: &str) -> i64 {
    let answer = world
        .client
        .post(INTERACTIVE, &[], body(chat, text))
        .await
        .unwrap();
    assert_eq!(answer.status, 202, "{:?}", answer.json());
    answer.json().unwrap()["job_id"].as_i64().unwrap()
}

/// A worker (limits off) whose job `text` to its one user is sent.
async fn world_with_a_sent_job(text: &str) -> (World, AccountId) {
    let world = World::start(Pace::Unlimited).await;
    let user = world.users(1)[0];
    let first = enqueue(&world, user, text).await;
    assert_eq!(world.settled(first).await["state"], "sent");
    (world, user)
}

/// `user` writes `text` to the bot; waits for its event.
async fn user_writes_and_it_is_an_event(world: &World, user: AccountId, text: &str) {
    let mut cursor = 0;
    let message = UserMessage::Text(text.into());
    world
        .sandbox
        .telegram()
        .user_sends(user, BOT_ID, message, None)
        .unwrap();
    world
        .read_events_until(&mut cursor, |events| {
            events.iter().any(|e| e.to_string().contains(text))
        })
        .await;
}

/// The bot's entry in `GET /api/v1/bots`.
async fn bot_status(world: &World) -> Value {
    let answer = world.client.get("/api/v1/bots").await.unwrap();
    assert_eq!(answer.status, 200);
    answer.json().unwrap()["bots"][0].clone()
}

/// Waits until the bot's state in `GET /api/v1/bots` satisfies `wanted`.
async fn bot_state_until(world: &World, what: &str, wanted: impl Fn(&str) -> bool) -> Value {
    world
        .eventually(what, async || {
            let status = bot_status(world).await;
            wanted(status["state"].as_str().unwrap_or_default()).then_some(status)
        })
        .await
}

/// The bot's entry once its state is `halted: ...`.
async fn halted(world: &World) -> Value {
    bot_state_until(world, "the bot halted", |state| state.starts_with("halted")).await
}

/// The access hash the worker's session holds for the chat `chat_id`
/// (Bot API form), once it holds one: read from its session, a file or
/// the shared store's rows.
async fn cached_access_hash(world: &World, chat_id: i64) -> i64 {
    let dir = world.dir.path();
    world
        .eventually(
            &format!("the access hash of {chat_id} cached"),
            async || read_access_hash(dir, chat_id).await,
        )
        .await
}

async fn read_access_hash(dir: &Path, chat_id: i64) -> Option<i64> {
    let sessions = Sessions::new(&StateDir::new(dir), &worker_support::store::location(dir));
    let session = sessions.open(&BotName::default_bot(), None).await.ok()?;
    let peer = PeerId::from_bot_api_dialog_id(chat_id)?;
    let info = session.peer(peer).await.ok()??;
    info.auth().map(|auth| auth.hash())
}

fn served(stats: &Value, fault: &str) -> u64 {
    stats["faults_served"][fault].as_u64().unwrap_or(0)
}

fn stats(world: &World) -> Value {
    world.sandbox.control().stats().unwrap()
}

/// The bot's texts in a group, as its members see them.
fn group_texts(world: &World, group: i64) -> Vec<String> {
    let chat = world.sandbox.telegram().group_chat(group, BOT_ID).unwrap();
    chat["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["from"] == "bot" && m["service"].is_null())
        .filter_map(|m| m["text"].as_str().map(str::to_owned))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_supergroups_and_channels_are_sent_to_within_20_a_minute_and_refusals_fail_the_job()
{
    let world = World::start(Pace::Limited).await;
    // Two messages back to back, then one per 3 s: a worker that paced a
    // group like a private chat (1/s) would draw a FLOOD_WAIT by its third.
    world.faults(json!({"group_burst": 2})).await;
    let telegram = world.sandbox.telegram();
    let members = world.users(2);
    let group = |title: &str, kind, bot| {
        telegram
            .create_group(NewGroup {
                bot_id: BOT_ID,
                title: title.into(),
                kind,
                members: members.clone(),
                bot,
            })
            .unwrap()
    };
    let basic = group("basic", GroupKind::Group, Some(Role::Member));
    let supergroup = group("super", GroupKind::Supergroup, Some(Role::Member));
    let channel = group("channel", GroupKind::Channel, Some(Role::Admin));
    let without_bot = group("without the bot", GroupKind::Group, None);
    let banned = group("banned", GroupKind::Supergroup, Some(Role::Member));
    let not_admin = group("not admin", GroupKind::Channel, Some(Role::Member));
    // No update ever showed the bot this one: no access hash is known.
    let never_shown = group("never shown", GroupKind::Supergroup, None);
    assert!(basic < 0 && basic > -1_000_000_000_000, "{basic}");
    assert!(supergroup < -1_000_000_000_000, "{supergroup}");
    // The update that showed the bot each supergroup and channel carried
    // its access hash; the worker keeps it (and must send with it: the
    // sandbox, like Telegram, answers CHANNEL_INVALID to a wrong one).
    for chat in [supergroup, channel, banned, not_admin] {
        assert_ne!(cached_access_hash(&world, chat).await, 0, "{chat}");
    }
    telegram.bot_action(banned, BOT_ID, BotAction::Ban).unwrap();

    let started = Instant::now();
    let mut jobs = Vec::new();
    for n in 0..4 {
        for chat in [basic, supergroup, channel] {
            let text = format!("{chat} #{n}");
            jobs.push((enqueue(&world, chat, &text).await, chat, text));
        }
    }
    for (id, chat, text) in &jobs {
        let job = world.settled(*id).await;
        assert_eq!(job["state"], "sent", "{text} to {chat}: {job}");
    }
    // Four messages a group at one per 3 s take at least 9 s.
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(8_900), "took {took:?}");
    let stats = stats(&world);
    assert_eq!(stats["flood_waits"], 0, "{stats}");
    assert!(stats["rpc_errors"].get("FLOOD_WAIT").is_none(), "{stats}");
    for chat in [basic, supergroup, channel] {
        let expected: Vec<String> = (0..4).map(|n| format!("{chat} #{n}")).collect();
        assert_eq!(group_texts(&world, chat), expected, "chat {chat}");
    }

    // A delete in a supergroup goes out as channels.deleteMessages with
    // the channel's access hash.
    let answer = world
        .client
        .post(
            &format!("{INTERACTIVE}?wait=30"),
            &[],
            body(supergroup, "to delete"),
        )
        .await
        .unwrap();
    assert_eq!(answer.status, 201, "{:?}", answer.json());
    let message_id = answer.json().unwrap()["message_id"].as_i64().unwrap();
    assert!(group_texts(&world, supergroup).contains(&"to delete".to_owned()));
    let path = format!("/api/v1/telegram/messages/{message_id}?wait=30");
    let mut connection = world.client.connect().await.unwrap();
    let deleted = connection
        .send(hyper::Method::DELETE, &path, &[], Default::default())
        .await
        .unwrap();
    assert!(deleted.status.is_success(), "{:?}", deleted.json());
    let texts = group_texts(&world, supergroup);
    assert!(!texts.contains(&"to delete".to_owned()), "{texts:?}");

    // Telegram's refusals in groups fail the job for good, code 5, named.
    for (chat, name) in [
        (without_bot, "CHAT_WRITE_FORBIDDEN"),
        (banned, "CHANNEL_PRIVATE"),
        (not_admin, "CHAT_ADMIN_REQUIRED"),
        (never_shown, "CHANNEL_INVALID"),
    ] {
        let id = enqueue(&world, chat, "refused").await;
        let job = world.settled(id).await;
        assert_eq!(job["state"], "failed", "{chat}: {job}");
        assert_eq!(job["error"]["error_code"], 5, "{chat}: {job}");
        assert_eq!(job["error"]["telegram_error"], name, "{chat}: {job}");
        assert!(
            job["error"]["error"].as_str().unwrap().contains(name),
            "{chat}: {job}"
        );
        assert!(group_texts(&world, chat).is_empty(), "{chat}");
    }
    world.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_telegram_signed_out_is_signed_in_again_with_the_token() {
    let (world, user) = world_with_a_sent_job("before").await;
    let imports = |stats: &Value| {
        stats["rpc_counts"]["auth.importBotAuthorization"]
            .as_u64()
            .unwrap_or(0)
    };
    assert_eq!(
        imports(&stats(&world)),
        0,
        "the sandbox's session is signed in"
    );

    world.faults(json!({"revoke_bot_session": true})).await;
    let second = enqueue(&world, user, "after the sign-out").await;
    let job = world.settled(second).await;
    assert_eq!(job["state"], "sent", "{job}");
    assert_eq!(world.bot_texts(user), ["before", "after the sign-out"]);
    let stats = stats(&world);
    assert_eq!(imports(&stats), 1, "{stats}");
    assert!(stats["rpc_errors"]["AUTH_KEY_UNREGISTERED"].as_u64() >= Some(1));
    let log = world.worker.as_ref().unwrap().log();
    assert!(log.contains("signing in again with the token"), "{log}");
    assert_eq!(bot_status(&world).await["state"], "ready");

    // The update stream came back with the new sign-in.
    user_writes_and_it_is_an_event(&world, user, "still there?").await;
    world.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_bot_notices_its_session_signed_out_and_signs_in_again() {
    let world = World::start_with(Pace::Unlimited, "[connection]\nauth_check_ms = 300\n").await;
    let user = world.users(1)[0];
    world.faults(json!({"revoke_bot_session": true})).await;
    // Nothing is sent: the authorization check finds the 401.
    world
        .eventually("a new sign-in", async || {
            let imports = stats(&world)["rpc_counts"]["auth.importBotAuthorization"].as_u64();
            (imports == Some(1)).then_some(())
        })
        .await;
    bot_state_until(&world, "the bot ready again", |state| state == "ready").await;
    user_writes_and_it_is_an_event(&world, user, "anyone?").await;
    let log = world.worker.as_ref().unwrap().log();
    assert!(log.contains("AUTH_KEY_UNREGISTERED"), "{log}");
    world.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_token_halts_the_bot_until_it_works_again_and_nothing_is_lost() {
    let world = World::start(Pace::Unlimited).await;
    let user = world.users(1)[0];
    world.faults(json!({"revoke_bot_token": true})).await;
    // Accepted: nothing has told the worker yet. Its send draws the 401,
    // the sign-in with the token ACCESS_TOKEN_INVALID.
    let queued = enqueue(&world, user, "kept while halted").await;
    let status = halted(&world).await;
    let state = status["state"].as_str().unwrap();
    assert!(state.contains("ACCESS_TOKEN_INVALID"), "{status}");
    assert!(state.contains("signing in again at"), "{status}");
    assert!(
        status["last_error"]
            .as_str()
            .unwrap()
            .contains("ACCESS_TOKEN_INVALID")
    );

    let health = world.client.get("/healthz").await.unwrap();
    assert_eq!(health.status, 200);
    let health = health.json().unwrap();
    assert_eq!(health["status"], "degraded", "{health}");
    assert_eq!(health["halted"][0]["bot"], "default", "{health}");
    assert!(
        health["halted"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("ACCESS_TOKEN_INVALID"),
        "{health}"
    );
    let refused = world
        .client
        .post(INTERACTIVE, &[], body(user, "refused while halted"))
        .await
        .unwrap();
    assert_eq!(refused.status, 503, "{:?}", refused.json());
    let error = refused.json().unwrap()["error"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        error.contains("halted") && error.contains("ACCESS_TOKEN_INVALID"),
        "{error}"
    );
    // CM's gateway path refuses it the same way.
    let cm = json!({"messages": {"authentication": {"producttoken": "any"}, "msg": [{
        "from": "default", "to": [{"number": user.to_string()}],
        "body": {"type": "auto", "content": "refused too"}}]}});
    let refused = world
        .client
        .post("/v1.0/message", &[], cm.to_string())
        .await
        .unwrap();
    assert_eq!(refused.status, 503, "{:?}", refused.json());
    assert!(
        refused
            .json()
            .unwrap()
            .to_string()
            .contains("ACCESS_TOKEN_INVALID"),
        "{:?}",
        refused.json()
    );
    assert_eq!(world.job(queued).await["state"], "queued");
    assert!(world.bot_texts(user).is_empty());
    let token = world.sandbox.telegram().bot_token(BOT_ID).unwrap();
    let log = world.worker.as_ref().unwrap().log();
    assert!(!log.contains(token.expose()), "the log shows the new token");

    // The token works again: the next sign-in (retried with backoff)
    // succeeds and the job kept in line goes out, once.
    world.faults(json!({"restore_bot_token": true})).await;
    let job = world.settled(queued).await;
    assert_eq!(job["state"], "sent", "{job}");
    assert_eq!(world.bot_texts(user), ["kept while halted"]);
    bot_state_until(&world, "the bot ready again", |state| state == "ready").await;
    let health = world.client.get("/healthz").await.unwrap().json().unwrap();
    assert_eq!(health["status"], "ok", "{health}");
    assert_eq!(served(&stats(&world), "restore_bot_token"), 1);
    world.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_grammers_runner_is_replaced_by_a_new_client() {
    let (world, user) = world_with_a_sent_job("one").await;
    // The next connection's help.getConfig lists a DC address that is no
    // IP address: grammers' runner panics on it, and every call of that
    // client would fail as `Dropped` from then on.
    world
        .faults(json!({"bad_dc_config": true, "drop_connections": true}))
        .await;
    world
        .eventually("the runner's death noticed", async || {
            let log = world.worker.as_ref().unwrap().log();
            log.contains("rebuilding the client").then_some(())
        })
        .await;
    let second = enqueue(&world, user, "two").await;
    let job = world.settled(second).await;
    assert_eq!(job["state"], "sent", "{job}");
    assert_eq!(world.bot_texts(user), ["one", "two"]);
    assert_eq!(served(&stats(&world), "bad_dc_config"), 1);
    world.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_wait_at_sign_in_is_waited_out_and_logged_with_its_end() {
    let mut world = World::start(Pace::Unlimited).await;
    let user = world.users(1)[0];
    world
        .faults(json!({"revoke_bot_session": true, "sign_in_flood_wait_s": 3}))
        .await;
    let started = Instant::now();
    let id = enqueue(&world, user, "after the wait").await;
    let status = bot_state_until(&world, "the wait shown", |state| state == "connecting").await;
    let waiting = world
        .eventually("the wait in last_error", async || {
            let status = bot_status(&world).await;
            let error = status["last_error"].as_str().unwrap_or_default().to_owned();
            error.contains("FLOOD_WAIT").then_some(error)
        })
        .await;
    assert!(
        waiting.contains("FLOOD_WAIT_3 at sign-in: signing in again at 20"),
        "{waiting} {status}"
    );
    let job = world.settled(id).await;
    assert_eq!(job["state"], "sent", "{job}");
    assert!(
        started.elapsed() >= Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    let worker = world.worker();
    assert!(
        worker.child.try_wait().unwrap().is_none(),
        "the worker exited"
    );
    let log = worker.log();
    assert!(
        log.contains("waiting it out") && log.contains("until=20"),
        "{log}"
    );
    assert_eq!(served(&stats(&world), "sign_in_flood_wait"), 1);
    world.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_api_id_at_sign_in_is_not_reported_as_a_bad_token() {
    let world = World::start(Pace::Unlimited).await;
    let user = world.users(1)[0];
    world
        .faults(json!({
            "revoke_bot_session": true,
            "rpc_error": {"method": "auth.importBotAuthorization", "error": "API_ID_INVALID"}
        }))
        .await;
    let id = enqueue(&world, user, "after the app is fixed").await;
    let status = halted(&world).await;
    let state = status["state"].as_str().unwrap();
    assert!(state.contains("API_ID_INVALID"), "{status}");
    assert!(state.contains("telegram.api_id"), "{status}");
    assert!(!state.contains("refused the bot token"), "{status}");
    assert!(!state.contains("bot_token"), "{status}");
    // The error was injected once: the retried sign-in works.
    let job = world.settled(id).await;
    assert_eq!(job["state"], "sent", "{job}");
    bot_state_until(&world, "the bot ready again", |state| state == "ready").await;
    world.stop().await;
}

/// An inline keyboard whose button has no stored answer: a click on it
/// waits for a consumer until the deadline.
fn keyboard(user: AccountId) -> String {
    json!({
        "destination_user_id": user.to_string(),
        "telegram_interactive_message": {
            "type": "reply_buttons",
            "text": "Still there?",
            "reply_markup": {"inline_keyboard": [[{"text": "Yes", "callback_data": "yes"}]]}
        }
    })
    .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_answers_every_pending_click_lets_sends_finish_and_exits_0() {
    const CLICKS: usize = 50;
    // Consumers would have 30 s: at the SIGTERM every click is still open.
    let mut world = World::start_with(Pace::Unlimited, "[callbacks]\ndeadline_ms = 30000\n").await;
    let telegram = world.sandbox.telegram().clone();
    telegram.set_callback_timeout(Duration::from_secs(60));
    let users = world.users(CLICKS);
    let mut ids = Vec::new();
    for &user in &users {
        let answer = world
            .client
            .post(INTERACTIVE, &[], keyboard(user))
            .await
            .unwrap();
        assert_eq!(answer.status, 202, "{:?}", answer.json());
        ids.push(answer.json().unwrap()["job_id"].as_i64().unwrap());
    }
    for id in &ids {
        assert_eq!(world.settled(*id).await["state"], "sent");
    }
    let clicks: Vec<_> = users
        .iter()
        .map(|&user| {
            let message_id = world.bot_posts(user)[0]["id"].as_i64().unwrap();
            let telegram = telegram.clone();
            tokio::spawn(async move {
                let click = UserClick::Callback {
                    message_id: i32::try_from(message_id).unwrap(),
                    data: b"yes".to_vec(),
                };
                let pressed = Instant::now();
                let outcome = telegram.click(user, click).await.unwrap();
                (outcome, pressed.elapsed())
            })
        })
        .collect();
    // Every click reached the worker: its event is stored.
    let mut cursor = 0;
    world
        .read_events_until(&mut cursor, |events| {
            let clicked = events
                .iter()
                .filter(|e| e["results"][0]["type"] == "clicked")
                .count();
            clicked == CLICKS
        })
        .await;
    // Sends in flight at the SIGTERM: every reply comes 1.5 s late (less
    // than a click answer's 2 s try).
    world
        .sandbox
        .faults()
        .set_latency(Duration::from_millis(1500));
    let mut in_flight = Vec::new();
    for (n, &user) in users.iter().take(5).enumerate() {
        in_flight.push(enqueue(&world, user, &format!("in flight {n}")).await);
    }
    let mut sending = 0;
    for &id in &in_flight {
        let state = world
            .eventually("the job claimed", async || {
                let state = world.job(id).await["state"].clone();
                (state != "queued").then_some(state)
            })
            .await;
        sending += usize::from(state == "sending");
    }
    assert!(sending > 0, "no send was in flight at the SIGTERM");
    let terminated = Instant::now();
    let status = world.worker().terminate();
    let took = terminated.elapsed();
    let log = world.worker().log();
    assert!(
        status.success(),
        "telegate run exited with {status}:\n{log}"
    );
    // Within the drain time (10 s).
    assert!(took < Duration::from_secs(10), "took {took:?}:\n{log}");
    assert!(log.contains("answering the clicks still pending"), "{log}");
    for click in clicks {
        let (outcome, waited) = click.await.unwrap();
        let Pressed::Answered(outcome) = outcome else {
            panic!("a callback click");
        };
        let answer = outcome
            .result
            .unwrap_or_else(|error| panic!("{error:?}:\n{log}"));
        assert_eq!(answer.message, None, "an empty answer");
        assert!(waited < Duration::from_secs(30), "answered at the deadline");
    }
    assert_eq!(world.sandbox.telegram().stats().callback_timeouts, 0);
    // The sends in flight finished and were recorded before the exit.
    let queue = telegate::queue::Queue::open_at(&worker_support::store::location(world.dir.path()))
        .unwrap();
    for id in in_flight {
        let job = queue
            .job(telegate::queue::JobId::new(id))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(job.state, telegate::queue::JobState::Sent, "job {id}");
    }
    queue.close().await;
    world.worker = None;
    world.sandbox.shutdown().await.unwrap();
}
