//! Catching up after downtime against the sandbox, with `telegate run` as a
//! child process: a backlog fetched in difference slices survives the
//! worker being SIGKILLed in the middle of it, and a click that comes while
//! the start-up catch-up runs is answered at once, not after it.

mod worker_support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use telegate::events::EventStore;
use telegate::queue::Queue;
use telegate::sandbox::telegram::BOT_ID;
use telegate::sandbox::telegram::{
    AccountId, DifferenceRules, GroupKind, NewGroup, Pressed, Role, UserClick, UserMessage,
};
use worker_support::{INTERACTIVE, Pace, World};

/// The text of a text event.
fn text(event: &Value) -> Option<&str> {
    event["body"]["text"]["text"].as_str()
}

/// The texts starting with `prefix` among `events`, each with how often the
/// stream had it.
fn counted<'e>(
    events: impl IntoIterator<Item = &'e Value>,
    prefix: &str,
) -> BTreeMap<String, usize> {
    let mut seen = BTreeMap::new();
    for event in events {
        if let Some(text) = text(event).filter(|t| t.starts_with(prefix)) {
            *seen.entry(text.to_owned()).or_default() += 1;
        }
    }
    seen
}

/// Every event in the worker's store, read directly (the worker is down).
async fn stored_events(world: &World) -> Vec<Value> {
    let queue = Queue::open_at(&worker_support::store::location(world.dir.path())).unwrap();
    let store = EventStore::new(queue.clone());
    let mut events = Vec::new();
    let mut cursor = 0;
    loop {
        let page = store.after(cursor, 1000).await.unwrap();
        let Some(last) = page.last() else { break };
        cursor = last.cursor;
        events.extend(page.iter().map(|e| serde_json::from_str(&e.body).unwrap()));
    }
    queue.close().await;
    events
}

/// Reads events into `stream` until it has `count` backlog messages.
async fn read_backlog_until(
    world: &World,
    cursor: &mut i64,
    stream: &mut Vec<Value>,
    count: usize,
) {
    let before = counted(stream.iter(), "backlog ").len();
    let read = world
        .read_events_until(cursor, |read| {
            before + counted(read, "backlog ").len() >= count
        })
        .await;
    stream.extend(read);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_killed_five_times_mid_catch_up_arrives_exactly_once() {
    const USERS: usize = 50;
    const BACKLOG: usize = 10_000;
    // Slices far larger than one commit of the recorder (1,024 events):
    // each slice's messages all carry the slice's final state, so saving
    // that state after the first commit of a slice would lose the rest of
    // it to a kill.
    const SLICE: usize = 5_000;
    // Kill once the stream shows this many: mostly inside a slice, and each
    // kill is checked to have come before everything was recorded.
    const KILL_AT: [usize; 5] = [1_500, 3_000, 4_500, 6_000, 7_500];
    let mut world = World::start(Pace::Unlimited).await;
    let mut cursor = 0;
    let users = world.users_recorded(USERS, &mut cursor).await;
    assert!(world.worker().terminate().success());

    let telegram = world.sandbox.telegram().clone();
    telegram.set_difference_rules(DifferenceRules {
        slice: SLICE,
        ..telegram.difference_rules()
    });
    let backlog = |n: usize| format!("backlog {n}");
    let mut sent = BTreeMap::new();
    for n in 0..BACKLOG {
        let id = telegram
            .user_sends(
                users[n % USERS],
                BOT_ID,
                UserMessage::Text(backlog(n)),
                None,
            )
            .unwrap();
        sent.insert(backlog(n), (users[n % USERS], id));
    }

    let mut stream = Vec::new();
    for kill_at in KILL_AT {
        world.start_worker().await;
        read_backlog_until(&world, &mut cursor, &mut stream, kill_at).await;
        world.worker().kill(); // SIGKILL
        let recorded = counted(&stored_events(&world).await, "backlog ").len();
        assert!(
            recorded < BACKLOG,
            "the kill at {kill_at} came after the catch-up: {recorded} recorded"
        );
    }
    world.start_worker().await;
    read_backlog_until(&world, &mut cursor, &mut stream, BACKLOG).await;
    // Anything late (a repeat) would come right after.
    stream.extend(
        world
            .events(cursor, 1)
            .await
            .into_iter()
            .map(|l| l["event"].clone()),
    );

    let seen = counted(&stream, "backlog ");
    let repeated: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(repeated.is_empty(), "events seen twice: {repeated:?}");
    let missing: Vec<_> = sent.keys().filter(|t| !seen.contains_key(*t)).collect();
    assert!(
        missing.is_empty(),
        "{} lost, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    assert_eq!(seen.len(), BACKLOG);
    for event in stream
        .iter()
        .filter(|e| text(e).is_some_and(|t| t.starts_with("backlog ")))
    {
        let (user, id) = sent[text(event).unwrap()];
        let bot = telegram.bot_id();
        assert_eq!(
            event["id"],
            format!("telegram:{bot}:{user}:{id}"),
            "{event}"
        );
    }
    world.stop().await;
}

/// Sends `user` a message with a callback button whose stored answer is
/// `answer`; returns its Telegram message id.
async fn stored_answer_button(world: &World, user: AccountId, answer: &str) -> i32 {
    let body = json!({
        "destination_user_id": user.to_string(),
        "telegram_interactive_message": {"type": "reply_buttons", "text": "Arrived?",
            "reply_markup": {"inline_keyboard": [[
                {"text": "Yes", "callback_data": "yes", "answer": {"text": answer}}]]}}
    });
    let sent = world
        .client
        .post(&format!("{INTERACTIVE}?wait=30"), &[], body.to_string())
        .await
        .unwrap();
    assert_eq!(sent.status, 201, "{:?}", sent.body);
    sent.json().unwrap()["channel_message_id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_click_during_the_start_up_catch_up_is_answered_at_once() {
    // grammers fetches one channel difference after another before it reads
    // live updates; with this many supergroups and this latency that takes
    // longer than a user's app waits for an answer.
    const GROUPS: usize = 40;
    const LATENCY: Duration = Duration::from_millis(300);
    let mut world = World::start(Pace::Unlimited).await;
    let users = world.users(2);
    let telegram = world.sandbox.telegram().clone();
    telegram.set_privacy(BOT_ID, false).unwrap();
    let mut groups = Vec::new();
    for n in 0..GROUPS {
        let group = telegram
            .create_group(NewGroup {
                title: format!("Group {n}"),
                kind: GroupKind::Supergroup,
                members: users.clone(),
                bot: Some(Role::Member),
                bot_id: BOT_ID,
            })
            .unwrap();
        telegram
            .group_sends(
                group,
                users[1],
                UserMessage::Text(format!("hello {n}")),
                None,
            )
            .unwrap();
        groups.push(group);
    }
    let mut cursor = 0;
    // The worker knows every supergroup's box once it has its messages.
    world
        .read_events_until(&mut cursor, |read| counted(read, "hello ").len() >= GROUPS)
        .await;
    let message_id = stored_answer_button(&world, users[0], "Great!").await;
    assert!(world.worker().terminate().success());

    for (n, group) in groups.iter().enumerate() {
        telegram
            .group_sends(
                *group,
                users[1],
                UserMessage::Text(format!("missed {n}")),
                None,
            )
            .unwrap();
    }
    let served = |stats: &telegate::sandbox::telegram::Stats| {
        stats
            .differences
            .iter()
            .filter(|(kind, _)| kind.starts_with("channel"))
            .map(|(_, n)| *n)
            .sum::<u64>()
    };
    let before = served(&telegram.stats());
    world.sandbox.faults().set_latency(LATENCY);
    world.start_worker().await;

    let clicked = Instant::now();
    let pressed = tokio::time::timeout(
        worker_support::PATIENCE,
        telegram.click(
            users[0],
            UserClick::Callback {
                message_id,
                data: b"yes".to_vec(),
            },
        ),
    )
    .await
    .expect("the click to end")
    .unwrap();
    let answered_after = clicked.elapsed();
    let during = served(&telegram.stats()) - before;
    let Pressed::Answered(outcome) = pressed else {
        panic!("a callback button is answered")
    };
    let answer = outcome
        .result
        .expect("answered before the user's app gave up");
    assert_eq!(answer.message.as_deref(), Some("Great!"));
    assert!(
        during < GROUPS as u64,
        "answered while the catch-up ran ({during} of {GROUPS} channel differences served, \
         answered after {answered_after:?})"
    );

    // The catch-up completes; the click is an event too, recorded once.
    world.sandbox.faults().set_latency(Duration::ZERO);
    let events = world
        .read_events_until(&mut cursor, |read| counted(read, "missed ").len() >= GROUPS)
        .await;
    assert!(served(&telegram.stats()) - before >= GROUPS as u64);
    let later = world.events(0, 0).await;
    let clicks = later
        .iter()
        .filter(|l| {
            l["event"]["id"]
                .as_str()
                .is_some_and(|id| id.starts_with("callback:"))
        })
        .count();
    assert_eq!(clicks, 1, "one click event: {events:?}");
    world.stop().await;
}
