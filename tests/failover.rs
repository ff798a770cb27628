//! Several daemons sharing one PostgreSQL store: each bot is held by one
//! daemon under a lease; a daemon killed mid-burst has its bots taken over
//! by the others within 15 s, and every job is delivered once, in its
//! chat's order, with no bot's session on two connections at once. The
//! bots' sessions live in the store too: no daemon has a session file, and
//! the daemon that takes a bot over resumes its update state, so no inbound
//! event is lost or repeated by the move.

mod worker_support;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use axum::http::Method;
use bytes::Bytes;
use telegate::api::client::Client;
use telegate::cli::sandbox::write_fleet_files;
use telegate::config::{BotName, StateDir};
use telegate::events::EventStore;
use telegate::queue::Queue;
use telegate::sandbox::server::{Sandbox, SandboxOptions};
use telegate::sandbox::telegram::{AccountId, NewUser, UserMessage};
use telegate::session::Sessions;
use telegate::store::Location;
use tokio::time::{Instant, sleep};
use worker_support::{Worker, body};

const BOTS: usize = 20;
const DAEMONS: usize = 3;
const USERS_PER_BOT: usize = 25;
const JOBS_PER_CHAT: usize = 10;
/// Telegram's rate for a bot.
const BOT_PER_SECOND: u32 = 30;
const TAKEOVER: Duration = Duration::from_secs(15);

/// Bot `bot`'s state as daemon `client` reports it (`None`: not running
/// there).
async fn state(client: &Client, key: &str) -> Option<String> {
    let mut connection = client.connect().await.ok()?;
    let answer = connection
        .send(
            Method::GET,
            "/api/v1/bots",
            &[("x-octopods-auth", key)],
            Bytes::new(),
        )
        .await
        .ok()?;
    let bots = answer.json().ok()?;
    bots["bots"][0]["state"].as_str().map(str::to_owned)
}

/// Which daemon runs each bot now (bots running nowhere are left out).
async fn holders(clients: &[Option<Client>], keys: &[(String, String)]) -> BTreeMap<usize, usize> {
    let mut held = BTreeMap::new();
    for (bot, (_, key)) in keys.iter().enumerate() {
        for (daemon, client) in clients.iter().enumerate() {
            if let Some(client) = client
                && state(client, key).await.as_deref() == Some("ready")
            {
                held.insert(bot, daemon);
            }
        }
    }
    held
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// A sandbox with `bots` bots and `daemons` daemons sharing one fresh
/// PostgreSQL database, each with a copy of one set of files (config and
/// keys); the bots' sessions (the sandbox's auth keys) are in the database
/// only, where whichever daemon takes a bot finds its session.
struct Shared {
    root: tempfile::TempDir,
    store: Location,
    sandbox: Sandbox,
    bots: Vec<AccountId>,
    keys: Vec<(String, String)>,
    daemons: Vec<Option<Worker>>,
    clients: Vec<Option<Client>>,
}

impl Shared {
    async fn start(bots: usize, daemons: usize) -> Shared {
        let root = tempfile::tempdir().unwrap();
        let sandbox_dir = root.path().join("sandbox");
        StateDir::new(&sandbox_dir).prepare().unwrap();
        let sandbox = Sandbox::start(SandboxOptions {
            state_dir: Some(sandbox_dir),
            ..SandboxOptions::default()
        })
        .await
        .unwrap();
        sandbox.telegram().set_limits_enabled(true);
        let bot_ids = sandbox.telegram().ensure_bots(bots);
        let dirs: Vec<PathBuf> = (0..daemons)
            .map(|n| root.path().join(format!("daemon{n}")))
            .collect();
        StateDir::new(&dirs[0]).prepare().unwrap();
        fs::write(
            dirs[0].join("telegate.toml"),
            format!("[limits]\nbot_per_second = {BOT_PER_SECOND}\n"),
        )
        .unwrap();
        let keys = write_fleet_files(&dirs[0], &sandbox, &bot_ids).unwrap();
        let url = worker_support::store::shared_database();
        let store = Location::postgres(&url).unwrap();
        Queue::open_at(&store).unwrap().close().await;
        let sessions = Sessions::new(&StateDir::new(&dirs[0]), &store);
        for (name, _) in &keys {
            let session = sessions
                .open(&BotName::new(name.as_str()).unwrap())
                .unwrap();
            assert!(
                session.is_signed_in().unwrap(),
                "{name}'s session is imported"
            );
        }
        fs::remove_dir_all(dirs[0].join("sessions")).unwrap();
        for dir in &dirs[1..] {
            copy_dir(&dirs[0], dir);
        }
        let env = [("TELEGATE_STORE_URL", url.as_str())];
        Shared {
            store,
            daemons: dirs
                .iter()
                .map(|dir| Some(Worker::spawn(dir, &env)))
                .collect(),
            clients: dirs
                .iter()
                .map(|dir| Some(Client::new(dir.join("telegate.sock"))))
                .collect(),
            root,
            sandbox,
            bots: bot_ids,
            keys,
        }
    }
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
    let mut shared = Shared::start(1, 2).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    let holder = loop {
        if let Some(&daemon) = holders(&shared.clients, &shared.keys).await.get(&0) {
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

    shared.daemons[holder].as_mut().unwrap().kill();
    let killed = Instant::now();
    shared.clients[holder] = None;
    while readyz(&standby_client).await != Some((200, "ready".into())) {
        assert!(
            killed.elapsed() < TAKEOVER,
            "the standby never took the bot over"
        );
        sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        holders(&shared.clients, &shared.keys).await.get(&0),
        Some(&standby)
    );
    let traffic = shared.sandbox.traffic();
    assert_eq!(traffic.auth_key_duplicates_refused, 0, "{traffic:?}");
    if let Some(daemon) = shared.daemons[standby].as_mut() {
        daemon.terminate();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_daemons_bots_are_taken_over_by_the_others() {
    let Shared {
        root: _root,
        store,
        sandbox,
        bots,
        keys,
        mut daemons,
        mut clients,
    } = Shared::start(BOTS, DAEMONS).await;
    let telegram = sandbox.telegram();

    // Every bot runs somewhere, each daemon its share (7, 7, 6).
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let held = holders(&clients, &keys).await;
        let mut per_daemon = [0; DAEMONS];
        for &daemon in held.values() {
            per_daemon[daemon] += 1;
        }
        if held.len() == BOTS && per_daemon.iter().all(|&n| n >= BOTS / DAEMONS) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "bots never spread over the daemons: {per_daemon:?} of {}",
            held.len()
        );
        sleep(Duration::from_millis(200)).await;
    }

    // Users who wrote to their bot, and ten numbered jobs for each chat,
    // each chat's through one daemon (any bot's work may come in at any
    // daemon: the one that holds the bot sends it).
    let mut chats: Vec<(usize, AccountId)> = Vec::new();
    for (b, &bot) in bots.iter().enumerate() {
        for u in 0..USERS_PER_BOT {
            let user = telegram
                .create_user(NewUser {
                    id: None,
                    first_name: format!("U{b}-{u}"),
                    username: None,
                    lang_code: None,
                })
                .unwrap()
                .id;
            telegram
                .user_sends(user, bot, UserMessage::Text("/start".into()), None)
                .unwrap();
            chats.push((b, user));
        }
    }
    // Each chat's jobs go in through one connection, in order, at one of
    // the daemons that will live (work for any bot may come in at any
    // daemon: the one that holds the bot sends it); many connections at
    // once, so the store's commits take many jobs each.
    const CONNECTIONS: usize = 16;
    let mut enqueuers = Vec::new();
    for lane in 0..CONNECTIONS {
        let client = clients[1 + lane % (DAEMONS - 1)].clone().unwrap();
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
    let before = holders(&clients, &keys).await;
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
    daemons[victim].as_mut().unwrap().kill();
    let killed = Instant::now();
    daemons[victim] = None;
    clients[victim] = None;
    assert!(
        sent_at_kill < total,
        "the burst was over before the kill: {sent_at_kill} of {total}"
    );

    // Its bots run again elsewhere within 15 s.
    loop {
        let held = holders(&clients, &keys).await;
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

    // Every job arrives, once, in its chat's order.
    let deadline = Instant::now() + Duration::from_secs(120);
    while delivered(&chats) < total {
        assert!(
            Instant::now() < deadline,
            "only {} of {total} delivered",
            delivered(&chats)
        );
        sleep(Duration::from_millis(200)).await;
    }
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
    let traffic = sandbox.traffic();
    assert_eq!(traffic.auth_key_duplicates_refused, 0, "{traffic:?}");
    assert_eq!(traffic.max_live_connections_per_key, 1, "{traffic:?}");
    let stats = telegram.stats();
    eprintln!(
        "took over {} bots in {takeover:?}; {sent_at_kill} of {total} sent at the kill; \
         {} resends suppressed",
        orphans.len(),
        stats.duplicates_suppressed
    );
    for daemon in daemons.iter_mut().flatten() {
        daemon.terminate();
    }
}
