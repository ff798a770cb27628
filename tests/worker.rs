//! The worker end to end: `telegate run` as a child process, the sandbox DC
//! in this process, jobs enqueued over `telegate.sock` and read back from
//! the sandbox users' chats. Waits are generous and poll for outcomes; no
//! assertion is about how long something took.

mod worker_support;

use std::collections::HashSet;
use std::fs;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use grammers_tl_types::Serializable;
use serde_json::{Value, json};
use telegate::interactive::InteractiveRequest;
use telegate::sandbox::telegram::BOT_ID;
use telegate::sandbox::telegram::{AccountId, ChatFault, TgError, to_hex};
use tokio::time::{Instant, sleep};
use worker_support::{INTERACTIVE, PATIENCE, Pace, Worker, World, body};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_seed_type_arrives_with_its_exact_keyboard() {
    let world = World::start(Pace::Unlimited).await;
    let user = world.users(1)[0];
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut names: Vec<_> = fs::read_dir(&fixtures)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "json"))
        .collect();
    names.sort();
    assert!(names.len() >= 9, "{names:?}");
    for path in names {
        let mut seed: Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
        seed["destination_user_id"] = json!(user.to_string());
        let body = seed.to_string();
        let request = InteractiveRequest::from_json(body.as_bytes()).unwrap();

        let answer = world
            .client
            .post(&format!("{INTERACTIVE}?wait=30"), &[], body.clone())
            .await
            .unwrap();
        let shown = answer.json().unwrap();
        assert_eq!(answer.status, 201, "{}: {shown}", path.display());
        let channel_id: i64 = shown["channel_message_id"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(shown["message_id"].as_i64().is_some(), "{shown}");

        let last = world.bot_posts(user).pop().unwrap();
        assert_eq!(last["id"], channel_id, "{}", path.display());
        assert_eq!(last["text"], request.text(), "{}", path.display());
        assert_eq!(
            last["reply_markup_tl"],
            to_hex(&request.reply_markup().to_bytes()),
            "{}: the keyboard differs",
            path.display()
        );
    }
    world.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_chat_in_order_and_many_chats_all_arrive() {
    let world = World::start(Pace::Unlimited).await;
    let users = world.users(50);
    let mut jobs: Vec<(AccountId, String)> =
        (0..50).map(|i| (users[0], format!("one {i}"))).collect();
    world.enqueue_all(&jobs).await;
    world.bot_messages(50).await;
    world.assert_delivered_exactly(&jobs);

    let many: Vec<(AccountId, String)> = (0..500)
        .map(|i| (users[i % 50], format!("many {i}")))
        .collect();
    world.enqueue_all(&many).await;
    world.bot_messages(550).await;
    jobs.extend(many);
    world.assert_delivered_exactly(&jobs);
    world.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn within_the_limits_300_chats_draw_no_flood_wait() {
    let world = World::start(Pace::Limited).await;
    let users = world.users(300);
    let jobs: Vec<(AccountId, String)> = users.iter().map(|&u| (u, format!("hi {u}"))).collect();
    world.enqueue_all(&jobs).await;
    world.bot_messages(300).await;
    world.assert_delivered_exactly(&jobs);
    let stats = world.sandbox.telegram().stats();
    assert_eq!(stats.flood_waits, 0, "{stats:?}");
    assert_eq!(stats.rpc_errors.get("FLOOD_WAIT"), None, "{stats:?}");
    world.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_wait_pauses_only_its_chat() {
    let world = World::start(Pace::Unlimited).await;
    let users = world.users(2);
    let (flooded, other) = (users[0], users[1]);
    world
        .sandbox
        .telegram()
        .set_chat_fault(
            Some(flooded),
            Some(ChatFault {
                error: TgError::flood_wait(30),
                remaining: Some(1),
            }),
        )
        .unwrap();
    let held = world.enqueue_all(&[(flooded, "held".into())]).await[0];
    // The flood wait is recorded as a hold on that chat; the job waits in
    // line without the attempt counting against it.
    let deadline = Instant::now() + PATIENCE;
    while world
        .sandbox
        .telegram()
        .stats()
        .rpc_errors
        .get("FLOOD_WAIT")
        != Some(&1)
    {
        assert!(Instant::now() < deadline, "the flood wait never happened");
        sleep(Duration::from_millis(20)).await;
    }
    let others: Vec<(AccountId, String)> = (0..20).map(|i| (other, format!("free {i}"))).collect();
    let mut later = others.clone();
    later.push((flooded, "after".into()));
    world.enqueue_all(&later).await;
    world.bot_messages(20).await;
    world.assert_delivered_exactly(&others);

    let job = world.job(held).await;
    assert_eq!(job["state"], "queued", "{job}");
    assert_eq!(job["attempts"], 0, "{job}");
    assert!(world.bot_texts(flooded).is_empty());
    assert_eq!(world.sandbox.telegram().stats().messages_from_bot, 20);
    world.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_connections_during_a_burst_deliver_every_job_once() {
    let world = World::start(Pace::Unlimited).await;
    world
        .sandbox
        .faults()
        .set_latency(Duration::from_millis(15));
    let users = world.users(30);
    let jobs: Vec<(AccountId, String)> = (0..600)
        .map(|i| (users[i % 30], format!("burst {i}")))
        .collect();

    let done = Arc::new(AtomicBool::new(false));
    let drops = Arc::new(AtomicUsize::new(0));
    let dropper = {
        let (faults, done, drops) = (
            Arc::clone(world.sandbox.faults()),
            Arc::clone(&done),
            Arc::clone(&drops),
        );
        let telegram = world.sandbox.telegram().clone();
        tokio::spawn(async move {
            while !done.load(Ordering::Relaxed) {
                sleep(Duration::from_millis(250)).await;
                let sent = telegram.stats().messages_from_bot;
                if sent > 0 && sent < 600 {
                    faults.drop_connections();
                    drops.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    };
    world.enqueue_all(&jobs).await;
    world.bot_messages(600).await;
    done.store(true, Ordering::Relaxed);
    dropper.await.unwrap();
    world.sandbox.faults().set_latency(Duration::ZERO);

    assert!(
        drops.load(Ordering::Relaxed) >= 2,
        "the burst ended before connections were dropped twice"
    );
    world.assert_delivered_exactly(&jobs);
    world.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_burst_delivers_every_acknowledged_job_once_after_restart() {
    let mut world = World::start(Pace::Unlimited).await;
    world
        .sandbox
        .faults()
        .set_latency(Duration::from_millis(20));
    let users = world.users(20);
    let jobs: Vec<(AccountId, String)> = (0..400)
        .map(|i| (users[i % 20], format!("crash {i}")))
        .collect();
    world.enqueue_all(&jobs).await;
    world.bot_messages(60).await;
    world.worker().kill();
    let before = world.sandbox.telegram().stats().messages_from_bot;
    assert!(before < 400, "everything was sent before the kill");

    world.worker = Some(Worker::start(world.dir.path()).await);
    // Jobs were in flight when it died: the store put them back in line, to
    // be resent with their random_id (the sandbox drops a repeat).
    assert!(
        world
            .worker()
            .log()
            .contains("jobs left in sending are due again"),
        "{}",
        world.worker().log()
    );
    world.bot_messages(400).await;
    world.sandbox.faults().set_latency(Duration::ZERO);
    world.assert_delivered_exactly(&jobs);
    assert_eq!(world.sandbox.telegram().stats().messages_from_bot, 400);
    world.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocked_users_jobs_fail_with_code_5_while_others_flow() {
    let world = World::start(Pace::Unlimited).await;
    let users = world.users(3);
    let blocked = users[0];
    world
        .sandbox
        .telegram()
        .set_chat_fault(
            Some(blocked),
            Some(ChatFault {
                error: TgError::named("USER_IS_BLOCKED"),
                remaining: None,
            }),
        )
        .unwrap();
    let jobs: Vec<(AccountId, String)> =
        (0..30).map(|i| (users[i % 3], format!("to {i}"))).collect();
    let ids = world.enqueue_all(&jobs).await;

    let mut failed = HashSet::new();
    for (id, (user, _)) in ids.iter().zip(&jobs) {
        let job = world.settled(*id).await;
        if *user == blocked {
            assert_eq!(job["state"], "failed", "{job}");
            assert_eq!(job["error"]["error_code"], 5, "{job}");
            assert_eq!(job["error"]["telegram_error"], "USER_IS_BLOCKED", "{job}");
            failed.insert(*id);
        } else {
            assert_eq!(job["state"], "sent", "{job}");
        }
    }
    assert_eq!(failed.len(), 10);
    let delivered: Vec<_> = jobs
        .iter()
        .filter(|(u, _)| *u != blocked)
        .cloned()
        .collect();
    world.assert_delivered_exactly(&delivered);

    // `?wait=` answers the failure in the seed's shape.
    let answer = world
        .client
        .post(
            &format!("{INTERACTIVE}?wait=30"),
            &[],
            body(blocked, "again"),
        )
        .await
        .unwrap();
    let shown = answer.json().unwrap();
    assert_eq!(answer.status, 400, "{shown}");
    assert_eq!(shown["error_code"], 5, "{shown}");
    assert!(
        shown["error"].as_str().unwrap().contains("USER_IS_BLOCKED"),
        "{shown}"
    );
    world.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsent_jobs_expire_with_code_5_whether_retrying_or_held() {
    let world = World::start_with(Pace::Unlimited, "[sender]\njob_expiry_secs = 2\n").await;
    let users = world.users(3);
    let (failing, flooded, fine) = (users[0], users[1], users[2]);
    let telegram = world.sandbox.telegram();
    for (user, error) in [
        (failing, TgError::new(500, "INTERNAL")),
        (flooded, TgError::flood_wait(3600)),
    ] {
        let fault = ChatFault {
            error,
            remaining: None,
        };
        telegram.set_chat_fault(Some(user), Some(fault)).unwrap();
    }
    let jobs = [
        (failing, "retried".to_owned()),
        (flooded, "held".to_owned()),
        (fine, "sent".to_owned()),
    ];
    let ids = world.enqueue_all(&jobs).await;

    let retried = world.settled(ids[0]).await;
    assert_eq!(retried["state"], "failed", "{retried}");
    assert_eq!(retried["error"]["error_code"], 5, "{retried}");
    let message = retried["error"]["error"].as_str().unwrap();
    assert!(message.starts_with("expired after 2 s and "), "{retried}");
    assert!(message.contains("last error: "), "{retried}");
    assert!(message.contains("INTERNAL"), "{retried}");
    assert!(retried["attempts"].as_u64().unwrap() >= 1, "{retried}");

    let held = world.settled(ids[1]).await;
    assert_eq!(held["state"], "failed", "{held}");
    assert_eq!(held["error"]["error_code"], 5, "{held}");
    assert!(
        held["error"]["error"]
            .as_str()
            .unwrap()
            .starts_with("expired after 2 s and "),
        "{held}"
    );

    assert_eq!(world.settled(ids[2]).await["state"], "sent");
    world.assert_delivered_exactly(&jobs[2..]);
    assert!(world.bot_texts(failing).is_empty());
    assert!(world.bot_texts(flooded).is_empty());
    world.stop().await;
}

/// Liveness settings short enough for a test to reach.
const QUICK_LIVENESS: &str = "[connection]\ncall_timeout_ms = 2000\nping_interval_ms = 300\n\
                              ping_timeout_ms = 700\n[callbacks]\ndeadline_ms = 300\n";

/// Turns the black hole over the bot's connections on or off.
fn black_hole(world: &World, on: bool) {
    let keys = if on {
        world.sandbox.telegram().bot_key_ids(BOT_ID)
    } else {
        Vec::new()
    };
    world.sandbox.faults().set_blackhole(keys);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_sent_into_a_black_hole_is_delivered_soon_after_it_ends() {
    let world = World::start_with(Pace::Unlimited, QUICK_LIVENESS).await;
    let user = world.users(1)[0];
    let before = world.enqueue_all(&[(user, "before".into())]).await;
    assert_eq!(world.settled(before[0]).await["state"], "sent");

    black_hole(&world, true);
    let during = world.enqueue_all(&[(user, "during".into())]).await;
    // Long enough for calls and pings to die in the hole several times.
    sleep(Duration::from_secs(4)).await;
    assert_ne!(world.job(during[0]).await["state"], "sent");
    black_hole(&world, false);
    let ended = Instant::now();
    let job = world.settled(during[0]).await;
    assert_eq!(job["state"], "sent", "{job}");
    assert!(
        ended.elapsed() < Duration::from_secs(10),
        "delivered {:?} after the black hole ended",
        ended.elapsed()
    );
    assert_eq!(world.bot_texts(user), ["before", "during"]);
    assert!(
        world
            .worker
            .as_ref()
            .unwrap()
            .log()
            .contains("no pong in time"),
        "the watchdog never noticed the dead connection"
    );
    world.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_click_answered_into_a_black_hole_reaches_the_user_after_it() {
    let world = World::start_with(Pace::Unlimited, QUICK_LIVENESS).await;
    let user = world.users(1)[0];
    let keyboard = json!({
        "destination_user_id": user.to_string(),
        "telegram_interactive_message": {
            "type": "reply_buttons",
            "text": "Pick",
            "reply_markup": {"inline_keyboard": [[{"text": "A", "callback_data": "a"}]]}
        }
    });
    let answer = world
        .client
        .post(INTERACTIVE, &[], keyboard.to_string())
        .await
        .unwrap();
    let job = answer.json().unwrap()["job_id"].as_i64().unwrap();
    assert_eq!(world.settled(job).await["state"], "sent");
    let message_id = world.bot_posts(user)[0]["id"].as_i64().unwrap() as i32;

    let click = {
        let telegram = world.sandbox.telegram().clone();
        tokio::spawn(async move {
            telegram
                .click(
                    user,
                    telegate::sandbox::telegram::UserClick::Callback {
                        message_id,
                        data: b"a".to_vec(),
                    },
                )
                .await
        })
    };
    // The bot has the click (its event is stored) before the hole opens, so
    // only its answer falls in.
    let deadline = Instant::now() + PATIENCE;
    loop {
        let events = world.client.get("/api/v1/events?after=0").await.unwrap();
        if String::from_utf8_lossy(&events.body).contains("callback:") {
            break;
        }
        assert!(Instant::now() < deadline, "the click never became an event");
        sleep(Duration::from_millis(20)).await;
    }
    black_hole(&world, true);
    sleep(Duration::from_secs(3)).await;
    black_hole(&world, false);
    let pressed = tokio::time::timeout(PATIENCE, click)
        .await
        .expect("the click never ended")
        .unwrap()
        .unwrap();
    match pressed {
        telegate::sandbox::telegram::Pressed::Answered(outcome) => {
            assert!(outcome.result.is_ok(), "{:?}", outcome.result)
        }
        other => panic!("{other:?}"),
    }
    world.stop().await;
}
