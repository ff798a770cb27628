//! The sandbox's update model against the real worker: `telegate run` (a
//! child process) catches up on what happened while it was down through
//! `updates.getDifference` slices and `updates.getChannelDifference`, and
//! sees blocks and group membership as the updates Telegram sends.

mod worker_support;

use std::collections::BTreeMap;

use serde_json::Value;
use telegate::sandbox::telegram::BOT_ID;
use telegate::sandbox::telegram::{AccountId, BotAction, GroupKind, NewGroup, Role, UserMessage};
use worker_support::{Pace, World};

/// `(chat, message id)` of a message event (`telegram:BOT:CHAT:ID`).
fn message_ref(event: &Value) -> Option<(i64, i32)> {
    let id = event["id"].as_str()?;
    let mut parts = id.rsplitn(3, ':');
    let message = parts.next()?.parse().ok()?;
    let chat = parts.next()?.parse().ok()?;
    Some((chat, message))
}

fn text(event: &Value) -> Option<&str> {
    event["body"]["text"]["text"].as_str()
}

/// Waits until the worker recorded `texts` (in any order), from `cursor`.
async fn wait_for_texts(world: &World, cursor: &mut i64, texts: &[String]) -> Vec<Value> {
    world
        .read_events_until(cursor, |read| {
            texts
                .iter()
                .all(|wanted| read.iter().any(|e| text(e) == Some(wanted)))
        })
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ten_thousand_message_backlog_arrives_complete_and_in_order_through_slices() {
    const USERS: usize = 100;
    const BACKLOG: usize = 10_000;
    let mut world = World::start(Pace::Unlimited).await;
    let mut cursor = 0;
    // The worker is online: the /starts arrive live.
    let users = world.users_recorded(USERS, &mut cursor).await;
    let status = world.worker().terminate();
    assert!(status.success());

    let telegram = world.sandbox.telegram().clone();
    let mut sent: BTreeMap<AccountId, Vec<i32>> = BTreeMap::new();
    for n in 0..BACKLOG {
        let user = users[n % USERS];
        let id = telegram
            .user_sends(
                user,
                BOT_ID,
                UserMessage::Text(format!("backlog {n}")),
                None,
            )
            .unwrap();
        sent.entry(user).or_default().push(id);
    }
    let before = telegram.stats().differences;

    world.start_worker().await;
    let events = world
        .read_events_until(&mut cursor, |read| {
            read.iter().filter(|e| text(e).is_some()).count() >= BACKLOG
        })
        .await;
    let mut seen: BTreeMap<AccountId, Vec<i32>> = BTreeMap::new();
    for event in &events {
        let (chat, id) = message_ref(event).expect("a message event");
        seen.entry(chat).or_default().push(id);
    }
    assert_eq!(seen, sent, "every chat's backlog, complete and in order");

    let after = telegram.stats().differences;
    let slices = after.get("differenceSlice").copied().unwrap_or(0)
        - before.get("differenceSlice").copied().unwrap_or(0);
    assert!(
        slices >= (BACKLOG / 100 - 1) as u64,
        "{slices} slices of at most 100 for {BACKLOG} messages: {after:?}"
    );
    assert!(!after.contains_key("differenceTooLong"), "{after:?}");
    world.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn supergroup_messages_arrive_through_the_channel_box_after_a_restart() {
    let mut world = World::start(Pace::Unlimited).await;
    let users = world.users(2);
    let telegram = world.sandbox.telegram().clone();
    telegram.set_privacy(BOT_ID, false).unwrap();
    let group = telegram
        .create_group(NewGroup {
            title: "Support".into(),
            kind: GroupKind::Supergroup,
            members: users.clone(),
            bot: Some(Role::Member),
            bot_id: BOT_ID,
        })
        .unwrap();
    let mut cursor = 0;
    let live = |n: usize| format!("live {n}");
    telegram
        .group_sends(group, users[0], UserMessage::Text(live(0)), None)
        .unwrap();
    wait_for_texts(&world, &mut cursor, &[live(0)]).await;
    let status = world.worker().terminate();
    assert!(status.success());

    // While the worker is down: more in the known supergroup, and a second
    // supergroup the bot is added to only now.
    let later = telegram
        .create_group(NewGroup {
            title: "Later".into(),
            kind: GroupKind::Supergroup,
            members: users.clone(),
            bot: None,
            bot_id: BOT_ID,
        })
        .unwrap();
    telegram.bot_action(later, BOT_ID, BotAction::Add).unwrap();
    let mut expected = Vec::new();
    for n in 0..30 {
        let (chat, text) = if n % 3 == 0 {
            (later, format!("later {n}"))
        } else {
            (group, format!("offline {n}"))
        };
        telegram
            .group_sends(chat, users[n % 2], UserMessage::Text(text.clone()), None)
            .unwrap();
        expected.push((chat, text));
    }
    let before = telegram.stats().differences;
    world.start_worker().await;
    let texts: Vec<String> = expected.iter().map(|(_, t)| t.clone()).collect();
    let events = wait_for_texts(&world, &mut cursor, &texts).await;
    for (chat, text) in &expected {
        let event = events.iter().find(|e| self::text(e) == Some(text)).unwrap();
        assert_eq!(message_ref(event).unwrap().0, *chat, "{event}");
    }
    let per_chat = |chat: i64| -> Vec<i32> {
        events
            .iter()
            .filter(|e| text(e).is_some())
            .filter_map(message_ref)
            .filter(|(c, _)| *c == chat)
            .map(|(_, id)| id)
            .collect()
    };
    for chat in [group, later] {
        let ids = per_chat(chat);
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "in order: {ids:?}");
    }
    let after = telegram.stats().differences;
    let channel = after.get("channelDifference").copied().unwrap_or(0)
        - before.get("channelDifference").copied().unwrap_or(0);
    assert!(channel >= 2, "one per supergroup at least: {after:?}");
    world.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_block_is_an_update_bot_stopped_and_what_was_sent_before_the_first_start_arrives() {
    // Users write before the worker ever ran: the session the sandbox wrote
    // starts at the state the bot was made at, so nothing is lost.
    let mut world = World::offline(Pace::Unlimited, "").await;
    let user = world.users(1)[0];
    world.start_worker().await;
    let mut cursor = 0;
    wait_for_texts(&world, &mut cursor, &["/start".to_owned()]).await;

    let telegram = world.sandbox.telegram().clone();
    telegram.set_blocked(user, BOT_ID, true).unwrap();
    let is_stop = |e: &Value| e["results"][0]["type"] == "blocked";
    let events = world
        .read_events_until(&mut cursor, |read| read.iter().any(is_stop))
        .await;
    let stopped = events.iter().find(|e| is_stop(e)).unwrap();
    assert!(
        stopped["id"].as_str().unwrap().ends_with(":qts2"),
        "the first qts after the bot was made: {stopped}"
    );

    // The bot's send to the blocked user fails for good.
    let job = world
        .client
        .post(
            worker_support::INTERACTIVE,
            &[],
            worker_support::body(user, "hi"),
        )
        .await
        .unwrap();
    assert_eq!(job.status, 202, "{:?}", job.body);
    let id = job.json().unwrap()["job_id"].as_i64().unwrap();
    let settled = world.settled(id).await;
    assert_eq!(settled["state"], "failed", "{settled}");
    assert!(settled.to_string().contains("USER_IS_BLOCKED"), "{settled}");
    world.stop().await;
}
