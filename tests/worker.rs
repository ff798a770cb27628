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
use worker_support::{INTERACTIVE, PATIENCE, Pace, Tmpfs, Worker, World, body, eventually};

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

/// Issue 12 item 15: a burst to many chats, enqueued as fast as the socket
/// takes it while the worker sends (the store busy with both), then a kill
/// and a restart mid-burst, against the sandbox's flood limits: not one
/// `FLOOD_WAIT`, and the restarted worker starts from the sends the store
/// holds rather than from empty meters.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_to_many_chats_and_a_restart_mid_burst_draw_no_flood_wait() {
    let mut world = World::start(Pace::Limited).await;
    let users = world.users(620);
    let mut jobs: Vec<(AccountId, String)> = users[..600]
        .iter()
        .map(|&u| (u, format!("burst {u}")))
        .collect();
    for round in 0..5 {
        jobs.extend(
            users[600..]
                .iter()
                .map(|&u| (u, format!("line {u} {round}"))),
        );
    }
    world.enqueue_all(&jobs).await;
    world.bot_messages(350).await;
    world.worker().kill();
    world.start_worker().await;
    let deadline = Instant::now() + PATIENCE;
    let charged = loop {
        let log = world.worker().log();
        if let Some(line) = log
            .lines()
            .find(|line| line.contains("meters charged with the last minute's sends"))
        {
            break line.to_owned();
        }
        assert!(
            Instant::now() < deadline,
            "the restart did not charge its meters:\n{log}"
        );
        sleep(Duration::from_millis(50)).await;
    };
    let jobs_charged: u64 = charged
        .split("jobs=")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no job count in {charged:?}"));
    // Nearly every message so far was sent (and recorded) in the last
    // minute; a few may have been in flight at the kill.
    assert!(jobs_charged >= 300, "{charged}");
    world.bot_messages(jobs.len() as u64).await;
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
    // While the jobs are posted, each answer takes a second, so a chat gets
    // about one message a second out however slow the store's enqueue is
    // (a PostgreSQL store takes jobs at a few hundred a second): the burst
    // is still going when the worker dies.
    world.sandbox.faults().set_latency(Duration::from_secs(1));
    let users = world.users(20);
    let jobs: Vec<(AccountId, String)> = (0..400)
        .map(|i| (users[i % 20], format!("crash {i}")))
        .collect();
    world.enqueue_all(&jobs).await;
    world
        .sandbox
        .faults()
        .set_latency(Duration::from_millis(20));
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
            .contains(" left in sending are due again"),
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
    // The reconnect left the swallowed connection open at the sandbox: its
    // dead mapping does not hold the key, so nothing was refused.
    let traffic = world.sandbox.traffic();
    assert_eq!(traffic.auth_key_duplicates_refused, 0);
    assert_eq!(traffic.max_live_connections_per_key, 1);
    assert!(
        world
            .worker
            .as_ref()
            .unwrap()
            .log()
            .contains("no pong in time"),
        "the watchdog never noticed the dead connection"
    );
    // The sender heard of it too, and of the connection coming back (which
    // makes the job that failed in the hole due at once).
    let log = world.worker.as_ref().unwrap().log();
    assert!(
        log.contains("the connection is dead: claiming nothing"),
        "{log}"
    );
    assert!(
        log.contains("the connection is back: sending again"),
        "{log}"
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

/// How often `text` occurs in the stored events.
async fn events_with(world: &World, text: &str) -> usize {
    let events = world
        .client
        .get("/api/v1/events?after=0&limit=1000")
        .await
        .unwrap();
    assert_eq!(events.status, 200);
    String::from_utf8_lossy(&events.body).matches(text).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_stalls_nothing_for_good() {
    // Declared first: unmounted after the worker is gone.
    let tmpfs = Tmpfs::mount("3m");
    // The disk that fills is the SQLite store's.
    worker_support::store::keep_on_sqlite(tmpfs.path());
    // Answers come 3 s late, so sends are in flight when the disk fills;
    // pings and calls wait longer than that.
    let config = "[connection]\ncall_timeout_ms = 30000\nping_interval_ms = 3000\n\
                  ping_timeout_ms = 10000\n";
    let world = World::start_with_state(Pace::Unlimited, config, tmpfs.path()).await;
    let users = world.users(3);
    let before: Vec<(AccountId, String)> = users.iter().map(|u| (*u, "before".into())).collect();
    for id in world.enqueue_all(&before).await {
        assert_eq!(world.settled(id).await["state"], "sent");
    }
    // A button with a stored answer, for a click while the disk is full.
    let clicker = world.users(1)[0];
    let buttons = json!({
        "destination_user_id": clicker.to_string(),
        "telegram_interactive_message": {
            "type": "reply_buttons",
            "text": "Pick",
            "reply_markup": {"inline_keyboard": [[
                {"text": "A", "callback_data": "a", "answer": {"text": "Noted"}}
            ]]}
        }
    });
    let posted = world
        .client
        .post(INTERACTIVE, &[], buttons.to_string())
        .await
        .unwrap();
    let buttons_job = posted.json().unwrap()["job_id"].as_i64().unwrap();
    assert_eq!(world.settled(buttons_job).await["state"], "sent");
    let buttons_message = world.bot_posts(clicker)[0]["id"].as_i64().unwrap() as i32;

    // Sends Telegram takes while the disk fills: their outcome cannot be
    // recorded.
    world.sandbox.faults().set_latency(Duration::from_secs(3));
    let in_flight: Vec<(AccountId, String)> =
        users.iter().map(|u| (*u, "in flight".into())).collect();
    let in_flight_ids = world.enqueue_all(&in_flight).await;
    for id in &in_flight_ids {
        eventually("the job is claimed", async || {
            (world.job(*id).await["state"] == "sending").then_some(())
        })
        .await;
    }
    let filler = tmpfs.fill("filler");
    assert!(filler > 0);
    world.sandbox.faults().set_latency(Duration::ZERO);
    world.bot_messages(7).await;

    // While full: health says why, enqueues are refused (nothing unstored
    // acknowledged), an inbound message waits in grammers, and the worker
    // stays up.
    let health = eventually("/healthz is 503", async || {
        let health = world.client.get("/healthz").await.unwrap();
        (health.status == 503).then_some(health)
    })
    .await;
    let reason = health.json().unwrap()["error"].as_str().unwrap().to_owned();
    assert!(reason.contains("full"), "{reason}");
    let refused = world
        .client
        .post(INTERACTIVE, &[], body(users[0], "refused"))
        .await
        .unwrap();
    assert_eq!(refused.status, 503, "{:?}", refused.json());
    world
        .sandbox
        .telegram()
        .user_sends(
            users[1],
            BOT_ID,
            telegate::sandbox::telegram::UserMessage::Text("sent while full".into()),
            None,
        )
        .unwrap();
    // A click is answered all the same (its event waits for the disk).
    let pressed = tokio::time::timeout(
        PATIENCE,
        world.sandbox.telegram().click(
            clicker,
            telegate::sandbox::telegram::UserClick::Callback {
                message_id: buttons_message,
                data: b"a".to_vec(),
            },
        ),
    )
    .await
    .expect("the click never ended")
    .unwrap();
    match pressed {
        telegate::sandbox::telegram::Pressed::Answered(outcome) => {
            let answer = outcome.result.expect("answered while the disk is full");
            assert_eq!(answer.message.as_deref(), Some("Noted"));
        }
        other => panic!("{other:?}"),
    }
    for id in &in_flight_ids {
        assert_eq!(world.job(*id).await["state"], "sending");
    }
    let mut world = world;
    assert!(
        world.worker().child.try_wait().unwrap().is_none(),
        "the worker exited on a full disk:\n{}",
        world.worker().log()
    );
    assert_eq!(events_with(&world, "sent while full").await, 0);

    // Space is back: everything flows again by itself.
    fs::remove_file(tmpfs.path().join("filler")).unwrap();
    for id in &in_flight_ids {
        assert_eq!(world.settled(*id).await["state"], "sent");
    }
    eventually("/healthz is 200", async || {
        (world.client.get("/healthz").await.unwrap().status == 200).then_some(())
    })
    .await;
    eventually("the inbound message and the click are events", async || {
        let message = events_with(&world, "sent while full").await > 0;
        let click = events_with(&world, "\"clicked\"").await > 0;
        (message && click).then_some(())
    })
    .await;
    let after: Vec<(AccountId, String)> = users.iter().map(|u| (*u, "after".into())).collect();
    for id in world.enqueue_all(&after).await {
        assert_eq!(world.settled(id).await["state"], "sent");
    }
    for user in &users {
        assert_eq!(world.bot_texts(*user), ["before", "in flight", "after"]);
    }
    assert_eq!(events_with(&world, "sent while full").await, 1);
    assert_eq!(events_with(&world, "\"clicked\"").await, 1);
    let log = world.worker().log();
    assert!(log.contains("the store refuses writes"), "{log}");
    assert!(
        log.contains("recorded after the store refused it") && log.contains("outcome of a send"),
        "{log}"
    );
    world.stop().await;
}
