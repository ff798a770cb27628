//! Several daemons sharing one PostgreSQL store: each bot is held by one
//! daemon under a lease; a daemon killed mid-burst has its bots taken over
//! by the others within 15 s, and every job is delivered once, in its
//! chat's order, with no bot's session on two connections at once. The
//! bots' sessions live in the store too: no daemon has a session file, and
//! the daemon that takes a bot over resumes its update state, so no inbound
//! event is lost or repeated by the move.

mod worker_support;

use std::collections::BTreeMap;
use std::time::Duration;

use axum::http::Method;
use bytes::Bytes;
use telegate::api::client::Client;
use telegate::events::EventStore;
use telegate::queue::Queue;
use telegate::sandbox::telegram::{AccountId, FakeTelegram, UserMessage};
use telegate::store::Location;
use tokio::time::{Instant, sleep};
use worker_support::body;
use worker_support::daemons::{Daemons, Stores, bot_state};
use worker_support::link::{Link, server_of};

const BOTS: usize = 20;
const DAEMONS: usize = 3;
const USERS_PER_BOT: usize = 25;
const JOBS_PER_CHAT: usize = 10;
/// Telegram's rate for a bot.
const BOT_PER_SECOND: u32 = 30;
const TAKEOVER: Duration = Duration::from_secs(15);

/// Every daemon's `telegate.toml`: Telegram's rate for a bot.
fn config() -> String {
    format!("[limits]\nbot_per_second = {BOT_PER_SECOND}\n")
}

/// Whether a chat's `text` is one of the jobs' (`b…`), not what the
/// person wrote (`/start`, `in-…`).
fn is_job_text(text: &str) -> bool {
    text.starts_with('b')
}

/// How often each `in-…` text the people wrote is in the shared store's
/// event stream.
async fn inbound_texts(store: &Location) -> BTreeMap<String, usize> {
    let queue = Queue::open_at(store).unwrap();
    let events = EventStore::new(queue.clone());
    let mut seen = BTreeMap::new();
    let mut cursor = 0;
    loop {
        let page = events.after(cursor, 1000).await.unwrap();
        let Some(last) = page.last() else { break };
        cursor = last.cursor;
        for event in &page {
            let event: serde_json::Value = serde_json::from_str(&event.body).unwrap();
            if let Some(text) = event["body"]["text"]["text"].as_str()
                && text.starts_with("in-")
            {
                *seen.entry(text.to_owned()).or_default() += 1;
            }
        }
    }
    queue.close().await;
    seen
}

/// How long a count may stand still before the test calls the work stuck.
const STALL: Duration = Duration::from_secs(60);

/// Waits until `count()` reaches `goal` while it keeps moving; once it has
/// stood still for [`STALL`], fails with the fleet's diagnosis (which jobs
/// are left, in which state, and what the daemons warned of).
async fn until_all(fleet: &Daemons, what: &str, goal: usize, count: impl Fn() -> usize) {
    let mut last = count();
    let mut moved = Instant::now();
    while last < goal {
        sleep(Duration::from_millis(200)).await;
        let now = count();
        if now != last {
            (last, moved) = (now, Instant::now());
        } else if moved.elapsed() > STALL {
            panic!(
                "only {last} of {goal} {what}, none for {STALL:?}:\n{}",
                fleet.diagnosis().await
            );
        }
    }
}

/// Posts one interactive job per text to `user`, for the bot of `key`,
/// through daemon `client`'s socket.
async fn post(client: &Client, key: &str, user: AccountId, texts: &[String]) {
    let mut connection = client.connect().await.unwrap();
    for text in texts {
        let answer = connection
            .send(
                Method::POST,
                "/api/v1/telegram/interactive",
                &[("x-octopods-auth", key)],
                Bytes::from(body(user, text)),
            )
            .await
            .unwrap();
        assert_eq!(answer.status, 202, "{:?}", answer.body);
    }
}

/// The texts of `user`'s chat with `bot` that start with `prefix`, in order.
fn texts_sent(
    telegram: &FakeTelegram,
    user: AccountId,
    bot: AccountId,
    prefix: &str,
) -> Vec<String> {
    telegram.chat(user, bot).unwrap()["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["text"].as_str())
        .filter(|text| text.starts_with(prefix))
        .map(str::to_owned)
        .collect()
}

/// Waits (30 s at most) for `user`'s chat with `bot` to hold as many texts
/// starting with `prefix` as `expected` has, then checks they are those,
/// once each, in order.
async fn expect_sent(
    telegram: &FakeTelegram,
    (user, bot): (AccountId, AccountId),
    prefix: &str,
    expected: &[String],
) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while texts_sent(telegram, user, bot, prefix).len() < expected.len() {
        assert!(
            Instant::now() < deadline,
            "sent only {:?}",
            texts_sent(telegram, user, bot, prefix)
        );
        sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(texts_sent(telegram, user, bot, prefix), expected);
}

/// `GET /readyz` of a daemon: its status and its body's `status`.
async fn readyz(client: &Client) -> Option<(u16, String)> {
    let answer = client.get("/readyz").await.ok()?;
    let status = answer.json().ok()?["status"].as_str()?.to_owned();
    Some((answer.status.as_u16(), status))
}

/// Two daemons and one bot: the one that does not hold it stands by (and
/// says so at `/readyz`), and takes the bot when its holder dies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_daemon_is_ready_and_takes_the_bot_when_its_holder_dies() {
    let mut shared = Daemons::start(1, Stores::Postgres(2), &config(), true).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    let holder = loop {
        if let Some(&daemon) = shared.holders().await.get(&0) {
            break daemon;
        }
        assert!(Instant::now() < deadline, "the bot never ran");
        sleep(Duration::from_millis(100)).await;
    };
    let standby = 1 - holder;
    let standby_client = shared.clients[standby].clone().unwrap();
    let holder_client = shared.clients[holder].clone().unwrap();
    assert_eq!(readyz(&holder_client).await, Some((200, "ready".into())));
    assert_eq!(readyz(&standby_client).await, Some((200, "standby".into())));

    shared.kill(holder);
    let killed = Instant::now();
    while readyz(&standby_client).await != Some((200, "ready".into())) {
        assert!(
            killed.elapsed() < TAKEOVER,
            "the standby never took the bot over"
        );
        sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(shared.holders().await.get(&0), Some(&standby));
    let traffic = shared.sandbox.traffic();
    assert_eq!(traffic.auth_key_duplicates_refused, 0, "{traffic:?}");
    shared.terminate();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_daemons_bots_are_taken_over_by_the_others() {
    let mut fleet = Daemons::start(BOTS, Stores::Postgres(DAEMONS), &config(), true).await;
    let store = fleet.store.clone().unwrap();
    let (bots, keys) = (fleet.bots.clone(), fleet.keys.clone());
    let telegram = fleet.sandbox.telegram().clone();

    // Every bot runs somewhere, each daemon its share (7, 7, 6).
    let deadline = Instant::now() + Duration::from_secs(60);
    while !fleet.spread().await {
        assert!(
            Instant::now() < deadline,
            "bots never spread over the daemons: {:?}",
            fleet.holders().await
        );
        sleep(Duration::from_millis(200)).await;
    }

    // Users who wrote to their bot, and ten numbered jobs for each chat,
    // each chat's through one daemon (any bot's work may come in at any
    // daemon: the one that holds the bot sends it).
    let chats = fleet.chats(USERS_PER_BOT);
    // Each chat's jobs go in through one connection, in order, at one of
    // the daemons that will live (work for any bot may come in at any
    // daemon: the one that holds the bot sends it); many connections at
    // once, so the store's commits take many jobs each.
    const CONNECTIONS: usize = 16;
    let mut enqueuers = Vec::new();
    for lane in 0..CONNECTIONS {
        let client = fleet.clients[1 + lane % (DAEMONS - 1)].clone().unwrap();
        let mine: Vec<(usize, AccountId)> = chats
            .iter()
            .enumerate()
            .filter(|(n, _)| n % CONNECTIONS == lane)
            .map(|(_, chat)| *chat)
            .collect();
        let keys = keys.clone();
        enqueuers.push(tokio::spawn(async move {
            let mut connection = client.connect().await.unwrap();
            for seq in 0..JOBS_PER_CHAT {
                for &(b, user) in &mine {
                    let text = format!("b{b}-{user}-{seq}");
                    let answer = connection
                        .send(
                            Method::POST,
                            "/api/v1/telegram/interactive",
                            &[("x-octopods-auth", keys[b].1.as_str())],
                            Bytes::from(body(user, &text)),
                        )
                        .await
                        .unwrap();
                    assert_eq!(answer.status, 202, "{:?}", answer.body);
                }
            }
        }));
    }
    let total = chats.len() * JOBS_PER_CHAT;
    assert_eq!(total, 5_000);
    let delivered = |chats: &[(usize, AccountId)]| -> usize {
        chats
            .iter()
            .map(|&(b, user)| {
                telegram.chat(user, bots[b]).unwrap()["messages"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter(|m| m["text"].as_str().is_some_and(is_job_text))
                    .count()
            })
            .sum()
    };

    // Mid-burst (a fifth delivered): the first daemon dies, and nobody
    // restarts it.
    let deadline = Instant::now() + Duration::from_secs(120);
    while delivered(&chats) < total / 5 {
        assert!(Instant::now() < deadline, "the burst never got going");
        sleep(Duration::from_millis(50)).await;
    }
    let victim = 0;
    let before = fleet.holders().await;
    let orphans: Vec<usize> = before
        .iter()
        .filter(|&(_, &daemon)| daemon == victim)
        .map(|(&bot, _)| bot)
        .collect();
    assert!(!orphans.is_empty(), "the victim held no bot: {before:?}");
    // Each person writes to their bot once more (the victim may or may
    // not record these before it dies), then it is killed.
    for &(b, user) in &chats {
        let text = format!("in-{b}-{user}-before");
        telegram
            .user_sends(user, bots[b], UserMessage::Text(text), None)
            .unwrap();
    }
    let sent_at_kill = delivered(&chats);
    fleet.kill(victim);
    let killed = Instant::now();
    assert!(
        sent_at_kill < total,
        "the burst was over before the kill: {sent_at_kill} of {total}"
    );

    // Its bots run again elsewhere within 15 s.
    loop {
        let held = fleet.holders().await;
        if orphans.iter().all(|bot| held.contains_key(bot)) {
            break;
        }
        assert!(
            killed.elapsed() < TAKEOVER,
            "bots {orphans:?} not taken over in {TAKEOVER:?}: {held:?}"
        );
        sleep(Duration::from_millis(100)).await;
    }
    let takeover = killed.elapsed();
    for &(b, user) in &chats {
        let text = format!("in-{b}-{user}-after");
        telegram
            .user_sends(user, bots[b], UserMessage::Text(text), None)
            .unwrap();
    }

    for enqueuer in enqueuers {
        enqueuer.await.unwrap();
    }

    // Every job arrives, once, in its chat's order. (However slow the
    // machine, the count must keep moving: a stuck job stalls it.)
    until_all(&fleet, "delivered", total, || delivered(&chats)).await;
    for &(b, user) in &chats {
        let chat = telegram.chat(user, bots[b]).unwrap();
        let texts: Vec<&str> = chat["messages"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|m| m["text"].as_str())
            .filter(|text| is_job_text(text))
            .collect();
        let expected: Vec<String> = (0..JOBS_PER_CHAT)
            .map(|seq| format!("b{b}-{user}-{seq}"))
            .collect();
        assert_eq!(texts, expected, "bot {b}, user {user}");
    }
    // One event stream for all daemons: every message each person wrote is
    // in it exactly once, those the victim's bots got across the move too.
    let wanted: BTreeMap<String, usize> = chats
        .iter()
        .flat_map(|&(b, user)| ["before", "after"].map(|when| (format!("in-{b}-{user}-{when}"), 1)))
        .collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let seen = inbound_texts(&store).await;
        if seen == wanted {
            break;
        }
        let wrong: Vec<_> = seen.iter().filter(|(_, n)| **n != 1).collect();
        assert!(
            wrong.is_empty(),
            "events repeated across the move: {wrong:?}"
        );
        assert!(
            Instant::now() < deadline,
            "{} of {} inbound messages became events",
            seen.len(),
            wanted.len()
        );
        sleep(Duration::from_millis(200)).await;
    }

    // No bot's key was on two live connections: the takeover waited for
    // the killed daemon's connections to close.
    let traffic = fleet.sandbox.traffic();
    assert_eq!(traffic.auth_key_duplicates_refused, 0, "{traffic:?}");
    assert_eq!(traffic.max_live_connections_per_key, 1, "{traffic:?}");
    let stats = telegram.stats();
    eprintln!(
        "took over {} bots in {takeover:?}; {sent_at_kill} of {total} sent at the kill; \
         {} resends suppressed",
        orphans.len(),
        stats.duplicates_suppressed
    );
    fleet.terminate();
}

/// Two daemons, two bots, and the first daemon's link to the store cut (its
/// bytes held, nothing closed): it stops its bot by itself before the
/// lease can lapse (its connection closed: the bot's key is never on two
/// connections at once), and says it is not ready; the other daemon takes
/// the bot once the lease lapsed and sends, once, work for it that came in
/// at its own socket. Then the link heals: the first daemon's late writes
/// land (refused where the lease moved on), it takes its share back, work
/// posted at its socket for every bot is sent once, and no key is ever on
/// two connections. It stops on SIGTERM.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_cut_off_from_the_store_stops_its_bots_before_another_takes_them() {
    let server = std::env::var("TELEGATE_TEST_POSTGRES")
        .expect("TELEGATE_TEST_POSTGRES names the test server (.ci/run starts one)");
    let link = Link::start(server_of(&server)).await;
    let mut fleet = Daemons::start_routed(2, Stores::Postgres(2), &config(), true, |n, url| {
        if n == 0 {
            link.url(url)
        } else {
            url.to_owned()
        }
    })
    .await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while !fleet.spread().await {
        assert!(
            Instant::now() < deadline,
            "bots never spread: {:?}",
            fleet.holders().await
        );
        sleep(Duration::from_millis(100)).await;
    }
    let held = fleet.holders().await;
    let moved = *held.iter().find(|&(_, &daemon)| daemon == 0).unwrap().0;
    let key = fleet.keys[moved].1.clone();
    let (cut_off, other) = (
        fleet.clients[0].clone().unwrap(),
        fleet.clients[1].clone().unwrap(),
    );
    let telegram = fleet.sandbox.telegram().clone();
    let (_, user) = *fleet.chats(1).iter().find(|(b, _)| *b == moved).unwrap();

    link.cut();
    let cut = Instant::now();
    // Taken by the other once the lease lapsed (10 s after the last
    // renewal): the sandbox refuses a second connection on the bot's key,
    // so the cut-off daemon must have closed its own by then.
    while bot_state(&other, &key).await.as_deref() != Some("ready") {
        assert!(
            cut.elapsed() < TAKEOVER,
            "the other daemon never took the bot: {:?}\ncut-off daemon's log:\n{}\nthe other's log:\n{}",
            fleet.holders().await,
            fleet.daemons[0].as_ref().unwrap().log(),
            fleet.daemons[1].as_ref().unwrap().log()
        );
        sleep(Duration::from_millis(100)).await;
    }
    let taken = cut.elapsed();
    // The cut-off daemon answers, and is not ready (nor a standby).
    let ready = tokio::time::timeout(Duration::from_secs(2), readyz(&cut_off))
        .await
        .ok()
        .flatten();
    assert_eq!(
        ready.as_ref().map(|(status, _)| *status),
        Some(503),
        "{ready:?}"
    );
    assert_ne!(bot_state(&cut_off, &key).await.as_deref(), Some("ready"));

    let texts: Vec<String> = (0..5).map(|n| format!("after the cut {n}")).collect();
    post(&other, &key, user, &texts).await;
    let bot_of = |n: usize| fleet.bots[n];
    expect_sent(&telegram, (user, bot_of(moved)), "after the cut", &texts).await;
    let traffic = fleet.sandbox.traffic();
    assert_eq!(traffic.auth_key_duplicates_refused, 0, "{traffic:?}");
    assert_eq!(traffic.max_live_connections_per_key, 1, "{traffic:?}");
    eprintln!("cut off: the bot taken over after {taken:?}");

    // Healed: what the cut-off daemon had on its way to the store arrives
    // late (its lease renewals, its bots' last writes, refused where the
    // lease moved on); it renews again, takes its share back from the
    // other, and serves every bot's work once.
    link.heal();
    let healed = Instant::now();
    while !(matches!(readyz(&cut_off).await, Some((200, _))) && fleet.spread().await) {
        assert!(
            healed.elapsed() < Duration::from_secs(60),
            "the healed daemon never took its share back: {:?}\nits log:\n{}",
            fleet.holders().await,
            fleet.daemons[0].as_ref().unwrap().log()
        );
        sleep(Duration::from_millis(100)).await;
    }
    eprintln!("healed: the bots spread again after {:?}", healed.elapsed());
    let after: Vec<String> = (0..5).map(|n| format!("after the heal {n}")).collect();
    let people = fleet.chats(1);
    for &(bot, person) in &people {
        // Through the healed daemon's socket, whichever daemon runs the bot.
        post(&cut_off, &fleet.keys[bot].1, person, &after).await;
    }
    for &(bot, person) in &people {
        expect_sent(&telegram, (person, bot_of(bot)), "after the heal", &after).await;
    }
    assert_eq!(
        texts_sent(&telegram, user, bot_of(moved), "after the cut"),
        texts,
        "nothing sent twice"
    );
    let traffic = fleet.sandbox.traffic();
    assert_eq!(traffic.auth_key_duplicates_refused, 0, "{traffic:?}");
    assert_eq!(traffic.max_live_connections_per_key, 1, "{traffic:?}");

    let status = fleet.daemons[0]
        .as_mut()
        .unwrap()
        .terminate_within(Duration::from_secs(30))
        .await;
    assert!(
        status.is_some(),
        "the healed daemon did not stop on SIGTERM:\n{}",
        fleet.daemons[0].as_ref().unwrap().log()
    );
    fleet.daemons[0] = None;
    fleet.terminate();
}
