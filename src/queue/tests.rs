//! The queue against a real SQLite file in a temporary directory.

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use super::*;
use crate::chat::ChatId;
use crate::error::ErrorCode;
use crate::store::Location;

fn at(ms: i64) -> Timestamp {
    Timestamp::from_millis(ms)
}

/// Far in the future, so every job enqueued "now" is due.
fn later() -> Timestamp {
    Timestamp::now().saturating_add(Duration::from_secs(3600))
}

fn new_job(chat: i64, text: &str) -> NewJob {
    NewJob::new(
        format!("req_{text}"),
        ChatId::new(chat).unwrap(),
        JobKind::Interactive,
        format!("{{\"text\":\"{text}\"}}"),
    )
}

struct Store {
    _dir: tempfile::TempDir,
    location: Location,
    queue: Queue,
}

impl Store {
    /// The SQLite file of a [`sqlite_store`].
    fn path(&self) -> &std::path::Path {
        match &self.location {
            Location::Sqlite(path) => path,
            Location::Postgres(_) => unreachable!("a SQLite store"),
        }
    }
}

/// The store the tests run on (see `store::test_location`).
fn store() -> Store {
    let dir = tempfile::tempdir().unwrap();
    let location = crate::store::test_location(dir.path());
    store_at(dir, location)
}

/// A SQLite store, for what only SQLite has (its file, its pages).
fn sqlite_store() -> Store {
    let dir = tempfile::tempdir().unwrap();
    let location = Location::Sqlite(dir.path().join("telegate.db"));
    store_at(dir, location)
}

fn store_at(dir: tempfile::TempDir, location: Location) -> Store {
    let queue = Queue::open_at(&location).unwrap();
    Store {
        _dir: dir,
        location,
        queue,
    }
}

async fn enqueue(queue: &Queue, chat: i64, text: &str) -> JobId {
    queue.enqueue(new_job(chat, text)).await.unwrap().id
}

#[tokio::test]
async fn enqueued_jobs_read_back_with_a_random_id() {
    let s = store();
    let id = enqueue(&s.queue, 42, "hello").await;
    let job = s.queue.job(id).await.unwrap().unwrap();
    assert_eq!(job.state, JobState::Queued);
    assert_eq!(job.chat, ChatId::user(42));
    assert_eq!(job.kind, JobKind::Interactive);
    assert_eq!(job.payload, r#"{"text":"hello"}"#);
    assert_eq!(job.request_id, "req_hello");
    assert_eq!(job.bot, DEFAULT_BOT);
    assert_eq!(job.attempts, 0);
    assert_eq!(job.parts.len(), 1);
    assert_eq!(job.parts[0].channel_message_id, None);
    assert!(
        s.queue
            .job(JobId::new(id.get() + 1))
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn files_are_owner_only() {
    let s = sqlite_store();
    enqueue(&s.queue, 1, "x").await;
    for suffix in ["", "-wal", "-shm"] {
        let path = format!("{}{suffix}", s.path().display());
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{path}");
    }
}

#[tokio::test]
async fn an_existing_database_is_narrowed_to_owner_only() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("telegate.db");
    std::fs::write(&path, b"").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let _queue = Queue::open(&path).unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
}

#[tokio::test]
async fn an_idempotency_key_returns_the_first_job() {
    let s = store();
    let mut first = new_job(7, "one");
    first.idempotency_key = Some("key-1".into());
    let mut again = new_job(7, "two");
    again.idempotency_key = Some("key-1".into());
    let a = s.queue.enqueue(first).await.unwrap();
    let b = s.queue.enqueue(again).await.unwrap();
    assert!(!a.duplicate);
    assert!(b.duplicate);
    assert_eq!(a.id, b.id);
    let all = s.queue.jobs(JobFilter::default()).await.unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].payload, r#"{"text":"one"}"#);
}

#[tokio::test]
async fn concurrent_enqueues_with_one_key_make_one_job() {
    let s = store();
    let tasks: Vec<_> = (0..32)
        .map(|i| {
            let queue = s.queue.clone();
            tokio::spawn(async move {
                let mut new = new_job(5, &format!("try{i}"));
                new.idempotency_key = Some("same".into());
                queue.enqueue(new).await.unwrap()
            })
        })
        .collect();
    let mut ids = Vec::new();
    for task in tasks {
        ids.push(task.await.unwrap());
    }
    assert!(ids.iter().all(|e| e.id == ids[0].id));
    assert_eq!(ids.iter().filter(|e| !e.duplicate).count(), 1);
}

#[tokio::test]
async fn one_chat_comes_out_in_enqueue_order_others_in_parallel() {
    let s = store();
    let mut chat_a = Vec::new();
    let mut chat_b = Vec::new();
    for i in 0..5 {
        chat_a.push(enqueue(&s.queue, 100, &format!("a{i}")).await);
        chat_b.push(enqueue(&s.queue, -200, &format!("b{i}")).await);
    }
    let mut order_a = Vec::new();
    let mut order_b = Vec::new();
    for _ in 0..5 {
        let taken = s.queue.claim_due(DEFAULT_BOT, later(), 10).await.unwrap();
        // One per chat, both chats at once.
        assert_eq!(taken.len(), 2, "{taken:?}");
        assert!(taken.iter().all(|job| job.state == JobState::Sending));
        // Nothing more while both lines have a job in flight.
        assert!(
            s.queue
                .claim_due(DEFAULT_BOT, later(), 10)
                .await
                .unwrap()
                .is_empty()
        );
        for job in taken {
            if job.chat == ChatId::user(100) {
                order_a.push(job.id);
            } else {
                order_b.push(job.id);
            }
            s.queue
                .mark_sent(job.id, vec![Some(1)], later())
                .await
                .unwrap();
        }
    }
    assert_eq!(order_a, chat_a);
    assert_eq!(order_b, chat_b);
    assert!(
        s.queue
            .claim_due(DEFAULT_BOT, later(), 10)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn a_retry_keeps_its_place_and_its_random_id() {
    let s = store();
    let first = enqueue(&s.queue, 9, "first").await;
    let second = enqueue(&s.queue, 9, "second").await;
    let taken = s
        .queue
        .claim_due(DEFAULT_BOT, at(i64::MAX / 2), 10)
        .await
        .unwrap();
    assert_eq!(taken.len(), 1);
    assert_eq!(taken[0].id, first);
    let random_id = taken[0].parts[0].random_id;

    let retry = Timestamp::now().saturating_add(Duration::from_secs(60));
    let error = JobError {
        code: ErrorCode::Rejected,
        message: "connection lost".into(),
        telegram: None,
    };
    s.queue
        .retry_at(first, retry, Some(error.clone()), Timestamp::now())
        .await
        .unwrap();
    // Before the retry time nothing of this chat is due, not even `second`.
    assert!(
        s.queue
            .claim_due(DEFAULT_BOT, Timestamp::now(), 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        s.queue
            .next_due_at(DEFAULT_BOT, Timestamp::now())
            .await
            .unwrap(),
        Some(retry)
    );
    let waiting = s.queue.job(first).await.unwrap().unwrap();
    assert_eq!(waiting.state, JobState::Queued);
    assert_eq!(waiting.error, Some(error));

    // The connection is back: the failed job is due now, keeping its
    // place and random_id; another bot's jobs and unfailed ones are left.
    let now = Timestamp::now();
    assert_eq!(s.queue.retry_now("other", now).await.unwrap(), 0);
    assert_eq!(s.queue.retry_now(DEFAULT_BOT, now).await.unwrap(), 1);
    assert_eq!(s.queue.retry_now(DEFAULT_BOT, now).await.unwrap(), 0);
    let due = s.queue.claim_due(DEFAULT_BOT, now, 10).await.unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].id, first);
    assert_eq!(due[0].parts[0].random_id, random_id);
    s.queue.release(first, now).await.unwrap();

    let again = s.queue.claim_due(DEFAULT_BOT, retry, 10).await.unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].id, first);
    assert_eq!(again[0].attempts, 2);
    assert_eq!(again[0].parts[0].random_id, random_id);
    let sent = s
        .queue
        .mark_sent(first, vec![Some(555)], retry)
        .await
        .unwrap();
    assert_eq!(sent.state, JobState::Sent);
    assert_eq!(sent.error, None);
    assert_eq!(sent.parts[0].channel_message_id, Some(555));
    // What a restarted sender charges its meters with.
    let sends = s.queue.recent_sends(DEFAULT_BOT, retry).await.unwrap();
    assert_eq!(sends, [(ChatId::user(9), retry, 1)]);
    let later_on = retry.saturating_add(Duration::from_millis(1));
    assert!(
        s.queue
            .recent_sends(DEFAULT_BOT, later_on)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        s.queue
            .recent_sends("other", retry)
            .await
            .unwrap()
            .is_empty()
    );
    let next = s.queue.claim_due(DEFAULT_BOT, retry, 10).await.unwrap();
    assert_eq!(next[0].id, second);
}

#[tokio::test]
async fn a_failed_job_does_not_block_its_chat() {
    let s = store();
    let first = enqueue(&s.queue, 3, "first").await;
    let second = enqueue(&s.queue, 3, "second").await;
    s.queue.claim_due(DEFAULT_BOT, later(), 10).await.unwrap();
    let error = JobError::telegram("USER_IS_BLOCKED", "the user blocked the bot");
    s.queue
        .mark_failed(first, error.clone(), Timestamp::now())
        .await
        .unwrap();
    let failed = s.queue.job(first).await.unwrap().unwrap();
    assert_eq!(failed.state, JobState::Failed);
    assert_eq!(failed.error, Some(error));
    let next = s.queue.claim_due(DEFAULT_BOT, later(), 10).await.unwrap();
    assert_eq!(next[0].id, second);
}

#[tokio::test]
async fn holds_pause_a_chat_or_the_whole_bot() {
    let s = store();
    enqueue(&s.queue, 1, "one").await;
    let two = enqueue(&s.queue, 2, "two").await;
    let now = Timestamp::now();
    let soon = now.saturating_add(Duration::from_secs(30));
    s.queue
        .defer_chat(DEFAULT_BOT, ChatId::user(1), soon)
        .await
        .unwrap();
    let taken = s.queue.claim_due(DEFAULT_BOT, now, 10).await.unwrap();
    assert_eq!(taken.iter().map(|j| j.id).collect::<Vec<_>>(), vec![two]);
    assert_eq!(
        s.queue
            .next_due_at(DEFAULT_BOT, Timestamp::now())
            .await
            .unwrap(),
        Some(soon)
    );

    enqueue(&s.queue, 3, "three").await;
    let later_still = soon.saturating_add(Duration::from_secs(30));
    s.queue.defer_all(DEFAULT_BOT, later_still).await.unwrap();
    assert!(
        s.queue
            .claim_due(DEFAULT_BOT, soon, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        s.queue
            .next_due_at(DEFAULT_BOT, Timestamp::now())
            .await
            .unwrap(),
        Some(later_still)
    );
    assert_eq!(
        s.queue
            .claim_due(DEFAULT_BOT, later_still, 10)
            .await
            .unwrap()
            .len(),
        2
    );
}

#[tokio::test]
async fn claim_takes_only_due_heads() {
    let s = store();
    let a1 = enqueue(&s.queue, 1, "a1").await;
    let a2 = enqueue(&s.queue, 1, "a2").await;
    let b1 = enqueue(&s.queue, 2, "b1").await;
    let due = s.queue.due(DEFAULT_BOT, later(), 10).await.unwrap();
    assert_eq!(due.iter().map(|j| j.id).collect::<Vec<_>>(), vec![a1, b1]);
    // a2 is behind a1: not taken even when named.
    let taken = s.queue.claim(vec![a2, b1], later(), None).await.unwrap();
    assert_eq!(taken.iter().map(|j| j.id).collect::<Vec<_>>(), vec![b1]);
}

#[tokio::test]
async fn marks_need_a_job_in_sending() {
    let s = store();
    let id = enqueue(&s.queue, 1, "x").await;
    let err = s
        .queue
        .mark_sent(id, vec![Some(1)], later())
        .await
        .unwrap_err();
    assert!(matches!(err, QueueError::NotSending { .. }), "{err}");
    let err = s
        .queue
        .mark_failed(JobId::new(999), JobError::telegram("X", "x"), later())
        .await
        .unwrap_err();
    assert!(matches!(err, QueueError::NoSuchJob(_)), "{err}");
    s.queue.claim_due(DEFAULT_BOT, later(), 1).await.unwrap();
    let err = s
        .queue
        .mark_sent(id, vec![Some(1), Some(2)], later())
        .await
        .unwrap_err();
    assert!(matches!(err, QueueError::PartCount { .. }), "{err}");
    // The failed mark changed nothing.
    assert_eq!(
        s.queue.job(id).await.unwrap().unwrap().state,
        JobState::Sending
    );
}

#[tokio::test]
async fn multi_part_jobs_keep_a_random_id_per_part() {
    let s = store();
    let mut new = new_job(1, "album");
    new.parts = 3;
    let id = s.queue.enqueue(new).await.unwrap().id;
    let taken = s.queue.claim_due(DEFAULT_BOT, later(), 1).await.unwrap();
    let randoms: Vec<i64> = taken[0].parts.iter().map(|p| p.random_id).collect();
    assert_eq!(randoms.len(), 3);
    assert_ne!(randoms[0], randoms[1]);
    s.queue.mark_part_sent(id, 0, 70).await.unwrap();
    let job = s.queue.job(id).await.unwrap().unwrap();
    assert_eq!(job.parts[0].channel_message_id, Some(70));
    assert_eq!(job.parts[1].channel_message_id, None);
    let sent = s
        .queue
        .mark_sent(id, vec![Some(70), Some(71), Some(72)], later())
        .await
        .unwrap();
    let ids: Vec<_> = sent.parts.iter().map(|p| p.channel_message_id).collect();
    assert_eq!(ids, vec![Some(70), Some(71), Some(72)]);
    let mut zero = new_job(1, "none");
    zero.parts = 0;
    assert!(matches!(
        s.queue.enqueue(zero).await,
        Err(QueueError::NoParts)
    ));
}

#[tokio::test]
async fn jobs_left_sending_are_due_again_after_reopening() {
    let s = store();
    // On a shared store the bot's lease holder is who returns them: when it
    // comes back after a crash (its first tick), or another takes over.
    let shared = matches!(s.location, Location::Postgres(_));
    let tick = |queue: &Queue, restarted: bool| {
        let queue = queue.clone();
        async move {
            queue
                .lease_tick(
                    "daemon-a",
                    vec![DEFAULT_BOT.into()],
                    vec![],
                    10_000,
                    restarted,
                )
                .await
                .unwrap()
        }
    };
    if shared {
        let held = tick(&s.queue, true).await.held;
        assert_eq!(held, [(DEFAULT_BOT.to_owned(), 1)]);
    }
    let id = enqueue(&s.queue, 1, "x").await;
    let taken = s.queue.claim_due(DEFAULT_BOT, later(), 1).await.unwrap();
    let random_id = taken[0].parts[0].random_id;
    s.queue.close().await;
    drop(s.queue);

    let reopened = Queue::open_at(&s.location).unwrap();
    if shared {
        let state = reopened.job(id).await.unwrap().unwrap().state;
        assert_eq!(state, JobState::Sending, "not before the holder says so");
        let tick = tick(&reopened, true).await;
        assert_eq!(tick.taken, [DEFAULT_BOT]);
        assert_eq!(
            tick.held,
            [(DEFAULT_BOT.to_owned(), 2)],
            "the next fencing token"
        );
    }
    let job = reopened.job(id).await.unwrap().unwrap();
    assert_eq!(job.state, JobState::Queued);
    assert_eq!(job.attempts, 1);
    let again = reopened.claim_due(DEFAULT_BOT, later(), 1).await.unwrap();
    assert_eq!(again[0].id, id);
    assert_eq!(again[0].parts[0].random_id, random_id);
    assert_eq!(again[0].attempts, 2);
}

/// A bot's jobs left `sending` by a sender that ended without its drain go
/// back in line, in the same process, when the bot's next sender starts:
/// only that bot's, and on a shared store only by the lease's holder (the
/// lease lost and held again under the same token, no tick "takes" it).
#[tokio::test]
async fn a_bots_jobs_left_sending_are_returned_by_its_next_sender() {
    let s = store();
    let shared = matches!(s.location, Location::Postgres(_));
    s.queue.fence("daemon-a");
    let bots = || vec![DEFAULT_BOT.to_owned(), "other".to_owned()];
    if shared {
        let tick = s
            .queue
            .lease_tick("daemon-a", bots(), vec![], 60_000, false)
            .await
            .unwrap();
        assert_eq!(tick.held.len(), 2);
    }
    let id = enqueue(&s.queue, 1, "x").await;
    let other = s
        .queue
        .enqueue(NewJob {
            bot: "other".into(),
            ..new_job(2, "y")
        })
        .await
        .unwrap()
        .id;
    let random_id = s.queue.claim_due(DEFAULT_BOT, later(), 1).await.unwrap()[0].parts[0].random_id;
    s.queue.claim_due("other", later(), 1).await.unwrap();
    // The chat's line is held: nothing of it is due.
    assert!(
        s.queue
            .due(DEFAULT_BOT, later(), 10)
            .await
            .unwrap()
            .is_empty()
    );

    if shared {
        // Another daemon, not the holder, returns nothing.
        let b = Queue::open_at(&s.location).unwrap();
        b.fence("daemon-b");
        assert_eq!(b.return_sending(DEFAULT_BOT, later()).await.unwrap(), 0);
        assert_eq!(b.job(id).await.unwrap().unwrap().state, JobState::Sending);
        b.close().await;
    }
    assert_eq!(
        s.queue.return_sending(DEFAULT_BOT, later()).await.unwrap(),
        1
    );
    let job = s.queue.job(id).await.unwrap().unwrap();
    assert_eq!(job.state, JobState::Queued);
    let again = s.queue.claim_due(DEFAULT_BOT, later(), 1).await.unwrap();
    assert_eq!(again[0].id, id);
    assert_eq!(again[0].parts[0].random_id, random_id);
    // The other bot's job is its own sender's.
    let other = s.queue.job(other).await.unwrap().unwrap();
    assert_eq!(other.state, JobState::Sending);
}

/// On a shared store a daemon fenced by its holder name claims only the
/// jobs of bots it holds the lease of: none before it takes the lease, and
/// none once another holder has it.
#[tokio::test]
async fn claims_of_a_fenced_daemon_need_the_bots_lease() {
    let s = store();
    if !matches!(s.location, Location::Postgres(_)) {
        // SQLite is one daemon's: nothing to fence.
        s.queue.fence("daemon-a");
        enqueue(&s.queue, 1, "x").await;
        assert_eq!(
            s.queue
                .claim_due(DEFAULT_BOT, later(), 1)
                .await
                .unwrap()
                .len(),
            1
        );
        return;
    }
    s.queue.fence("daemon-a");
    let id = enqueue(&s.queue, 1, "x").await;
    assert!(
        s.queue
            .claim_due(DEFAULT_BOT, later(), 1)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        s.queue
            .claim(vec![id], later(), None)
            .await
            .unwrap()
            .is_empty()
    );
    let tick = s
        .queue
        .lease_tick("daemon-a", vec![DEFAULT_BOT.into()], vec![], 10_000, false)
        .await
        .unwrap();
    assert_eq!(tick.taken, [DEFAULT_BOT]);
    let taken = s.queue.claim_due(DEFAULT_BOT, later(), 1).await.unwrap();
    assert_eq!(taken.len(), 1);
    // Handed over: the lease row goes, and with it the right to claim.
    s.queue.release(id, Timestamp::now()).await.unwrap();
    s.queue
        .lease_tick("daemon-a", vec![], vec![DEFAULT_BOT.into()], 10_000, false)
        .await
        .unwrap();
    assert!(
        s.queue
            .claim_due(DEFAULT_BOT, later(), 1)
            .await
            .unwrap()
            .is_empty()
    );
}

/// The outcome of an attempt that reaches the store after the bot's lease
/// lapsed and another daemon took it (a daemon cut off, then healed) is
/// refused; the job is the new holder's, back in line with its
/// `random_id`, and its outcome is the one that counts.
#[tokio::test]
async fn a_late_outcome_from_a_daemon_whose_lease_lapsed_is_refused() {
    let s = store();
    s.queue.fence("daemon-a");
    let id = enqueue(&s.queue, 1, "x").await;
    if !matches!(s.location, Location::Postgres(_)) {
        // SQLite is one daemon's: nothing to fence.
        s.queue.claim_due(DEFAULT_BOT, later(), 1).await.unwrap();
        let sent = s.queue.mark_sent(id, vec![Some(7)], later()).await.unwrap();
        assert_eq!(sent.state, JobState::Sent);
        return;
    }
    let bots = || vec![DEFAULT_BOT.to_owned()];
    s.queue
        .lease_tick("daemon-a", bots(), vec![], 60_000, false)
        .await
        .unwrap();
    let taken = s.queue.claim_due(DEFAULT_BOT, later(), 1).await.unwrap();
    let random_id = taken[0].parts[0].random_id;
    // Daemon A falls silent; its lease lapses and daemon B takes the bot.
    s.queue
        .write(|conn, _| {
            conn.execute("UPDATE bot_leases SET expires_at = 0", rusqlite::params![])?;
            Ok(())
        })
        .await
        .unwrap();
    let other = Queue::open_at(&s.location).unwrap();
    other.fence("daemon-b");
    let tick = other
        .lease_tick("daemon-b", bots(), vec![], 60_000, false)
        .await
        .unwrap();
    assert_eq!(tick.held, [(DEFAULT_BOT.to_owned(), 2)]);

    // A's outcomes arrive late: every one is refused, nothing changes.
    for refused in [
        s.queue.mark_sent(id, vec![Some(7)], later()).await.err(),
        s.queue
            .mark_failed(id, JobError::telegram("LATE", "late"), later())
            .await
            .err(),
        s.queue.retry_at(id, later(), None, later()).await.err(),
        s.queue.release(id, later()).await.err(),
        s.queue.mark_part_sent(id, 0, 7).await.err(),
    ] {
        assert!(
            matches!(&refused, Some(QueueError::NotHeld { bot, .. }) if bot == DEFAULT_BOT),
            "{refused:?}"
        );
    }
    let job = other.job(id).await.unwrap().unwrap();
    assert_eq!(job.state, JobState::Queued);
    assert_eq!(job.parts[0].channel_message_id, None);

    let again = other.claim_due(DEFAULT_BOT, later(), 1).await.unwrap();
    assert_eq!(again[0].parts[0].random_id, random_id);
    let sent = other.mark_sent(id, vec![Some(8)], later()).await.unwrap();
    assert_eq!(sent.parts[0].channel_message_id, Some(8));
    other.close().await;
}

#[tokio::test]
async fn a_closed_store_refuses_work() {
    let s = store();
    s.queue.close().await;
    assert!(matches!(
        s.queue.enqueue(new_job(1, "late")).await,
        Err(QueueError::Closed)
    ));
    assert!(s.queue.check().await.is_err());
}

#[tokio::test]
async fn settled_waits_for_the_outcome_or_the_timeout() {
    let s = store();
    let id = enqueue(&s.queue, 1, "x").await;
    let waiter = {
        let queue = s.queue.clone();
        tokio::spawn(async move { queue.settled(id, Duration::from_secs(60)).await })
    };
    let mut events = s.queue.subscribe();
    s.queue.claim_due(DEFAULT_BOT, later(), 1).await.unwrap();
    assert_eq!(events.recv().await.unwrap().state, JobState::Sending);
    s.queue
        .mark_sent(id, vec![Some(12)], later())
        .await
        .unwrap();
    let job = waiter.await.unwrap().unwrap().unwrap();
    assert_eq!(job.state, JobState::Sent);

    let other = enqueue(&s.queue, 2, "y").await;
    let job = s
        .queue
        .settled(other, Duration::from_millis(10))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(job.state, JobState::Queued);
    assert!(
        s.queue
            .settled(JobId::new(999), Duration::from_millis(10))
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn listing_filters_by_state_and_pages() {
    let s = store();
    let ids = [
        enqueue(&s.queue, 1, "a").await,
        enqueue(&s.queue, 2, "b").await,
        enqueue(&s.queue, 3, "c").await,
    ];
    s.queue.claim(vec![ids[1]], later(), None).await.unwrap();
    let sending = s
        .queue
        .jobs(JobFilter {
            state: Some(JobState::Sending),
            ..JobFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(
        sending.iter().map(|j| j.id).collect::<Vec<_>>(),
        vec![ids[1]]
    );
    let page = s
        .queue
        .jobs(JobFilter {
            after: Some(ids[0]),
            limit: Some(1),
            ..JobFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(page.iter().map(|j| j.id).collect::<Vec<_>>(), vec![ids[1]]);
}

#[tokio::test]
async fn many_chats_each_keep_their_order() {
    let s = store();
    let chats: Vec<i64> = (1..=40).map(|n| if n % 3 == 0 { -n } else { n }).collect();
    let mut expected: std::collections::HashMap<ChatId, Vec<JobId>> = Default::default();
    for round in 0..5 {
        for &chat in chats.iter().rev() {
            let id = enqueue(&s.queue, chat, &format!("{chat}-{round}")).await;
            expected
                .entry(ChatId::new(chat).unwrap())
                .or_default()
                .push(id);
        }
    }
    let mut seen: std::collections::HashMap<ChatId, Vec<JobId>> = Default::default();
    // Leave some jobs in `sending` across claims to interleave the lines.
    let mut in_flight: Vec<JobId> = Vec::new();
    while seen.values().map(Vec::len).sum::<usize>() < 200 {
        let taken = s.queue.claim_due(DEFAULT_BOT, later(), 7).await.unwrap();
        let chats_taken: std::collections::HashSet<_> = taken.iter().map(|j| j.chat).collect();
        assert_eq!(
            chats_taken.len(),
            taken.len(),
            "two jobs of one chat at once"
        );
        for job in &taken {
            seen.entry(job.chat).or_default().push(job.id);
        }
        in_flight.extend(taken.iter().map(|j| j.id));
        assert!(!in_flight.is_empty(), "jobs are left but none is due");
        // Finish the older half of what is in flight (concurrently, so the
        // marks share commits).
        let finish: Vec<_> = in_flight
            .drain(..in_flight.len().div_ceil(2))
            .map(|id| {
                let queue = s.queue.clone();
                tokio::spawn(async move { queue.mark_sent(id, vec![Some(1)], later()).await })
            })
            .collect();
        for mark in finish {
            mark.await.unwrap().unwrap();
        }
    }
    assert_eq!(seen, expected);
}

#[tokio::test]
async fn a_released_job_is_due_again_without_counting_the_attempt() {
    let s = store();
    let id = enqueue(&s.queue, 8, "flooded").await;
    let taken = s.queue.claim_due(DEFAULT_BOT, later(), 10).await.unwrap();
    assert_eq!(taken[0].attempts, 1);
    s.queue.release(id, later()).await.unwrap();
    let job = s.queue.job(id).await.unwrap().unwrap();
    assert_eq!(job.state, JobState::Queued);
    assert_eq!(job.attempts, 0);
    let again = s.queue.claim_due(DEFAULT_BOT, later(), 10).await.unwrap();
    assert_eq!(again[0].id, id);
    assert_eq!(again[0].parts[0].random_id, taken[0].parts[0].random_id);
    // Only a job in `sending` can be released.
    s.queue.mark_sent(id, vec![None], later()).await.unwrap();
    let err = s.queue.release(id, later()).await.unwrap_err();
    assert!(matches!(err, QueueError::NotSending { .. }), "{err}");
}

#[tokio::test]
async fn expired_jobs_waiting_for_a_retry_or_a_hold_fail_and_a_job_in_flight_does_not() {
    let s = store();
    let retrying = enqueue(&s.queue, 1, "retrying").await;
    let held = enqueue(&s.queue, 2, "held").await;
    let in_flight = enqueue(&s.queue, 3, "in_flight").await;
    let created = s.queue.job(retrying).await.unwrap().unwrap().created_at;
    let expiry = Expiry::new(Duration::from_secs(60)).unwrap();
    let before = created.saturating_add(Duration::from_secs(59));
    let after = created.saturating_add(Duration::from_secs(61));

    assert_eq!(
        s.queue
            .claim_due(DEFAULT_BOT, before, 10)
            .await
            .unwrap()
            .len(),
        3
    );
    let error = JobError {
        code: ErrorCode::Rejected,
        message: "attempt 1 failed, will retry: Telegram error 500 INTERNAL".into(),
        telegram: None,
    };
    s.queue
        .retry_at(retrying, later(), Some(error), before)
        .await
        .unwrap();
    s.queue
        .defer_chat(DEFAULT_BOT, ChatId::user(2), later())
        .await
        .unwrap();
    s.queue.release(held, before).await.unwrap();

    let (expired, next) = s.queue.expire(DEFAULT_BOT, expiry, before).await.unwrap();
    assert_eq!(expired, 0, "nothing expires before its deadline");
    assert_eq!(next, Some(expiry.deadline(created)));

    let (expired, next) = s.queue.expire(DEFAULT_BOT, expiry, after).await.unwrap();
    assert_eq!(expired, 2);
    assert_eq!(next, None, "nothing is left queued");
    let failed = s.queue.job(retrying).await.unwrap().unwrap();
    assert_eq!(failed.state, JobState::Failed);
    let message = failed.error.unwrap().message;
    assert_eq!(
        message,
        "expired after 60 s and 1 attempt; last error: \
         attempt 1 failed, will retry: Telegram error 500 INTERNAL"
    );
    let failed = s.queue.job(held).await.unwrap().unwrap();
    assert_eq!(failed.state, JobState::Failed);
    assert!(
        failed
            .error
            .as_ref()
            .unwrap()
            .message
            .contains("0 attempts"),
        "{:?}",
        failed.error
    );
    assert_eq!(
        s.queue.job(in_flight).await.unwrap().unwrap().state,
        JobState::Sending
    );
    // The in-flight job can still be reported sent.
    s.queue
        .mark_sent(in_flight, vec![Some(7)], after)
        .await
        .unwrap();

    // Both failures joined the event stream, like any other.
    let events = crate::events::EventStore::new(s.queue.clone());
    let lines: Vec<String> = events
        .after(0, 10)
        .await
        .unwrap()
        .iter()
        .map(|event| event.to_line())
        .collect();
    for id in [retrying, held] {
        let name = format!("job:{}:failed", id.get());
        assert!(lines.iter().any(|line| line.contains(&name)), "{lines:?}");
    }
}

#[tokio::test]
async fn an_expired_job_is_failed_when_claimed_not_taken() {
    let s = store();
    let old = enqueue(&s.queue, 4, "old").await;
    let created = s.queue.job(old).await.unwrap().unwrap().created_at;
    let expiry = Expiry::new(Duration::from_secs(5));
    let fresh = created.saturating_add(Duration::from_secs(4));
    let stale = created.saturating_add(Duration::from_secs(5));
    let taken = s.queue.claim(vec![old], stale, expiry).await.unwrap();
    assert!(taken.is_empty());
    let job = s.queue.job(old).await.unwrap().unwrap();
    assert_eq!(job.state, JobState::Failed);
    assert_eq!(job.error.unwrap().code, ErrorCode::Rejected);

    let young = enqueue(&s.queue, 4, "young").await;
    let taken = s.queue.claim(vec![young], fresh, expiry).await.unwrap();
    assert_eq!(
        taken.len(),
        1,
        "the chat's line moved on past the failed job"
    );
}

#[tokio::test]
async fn a_sent_job_hands_its_line_to_the_chats_next_job_in_the_same_commit() {
    let s = store();
    let first = enqueue(&s.queue, 5, "first").await;
    let other_chat = enqueue(&s.queue, 6, "other").await;
    let second = enqueue(&s.queue, 5, "second").await;
    let third = enqueue(&s.queue, 5, "third").await;
    s.queue.claim(vec![first], later(), None).await.unwrap();

    let (sent, next) = s
        .queue
        .mark_sent_then_take(first, vec![Some(1)], later(), |next: &Job| Some(next.id))
        .await
        .unwrap();
    assert_eq!(sent.state, JobState::Sent);
    let (next, asked_about) = next.expect("the chat's next job is taken");
    assert_eq!((next.id, asked_about), (second, second));
    assert_eq!(next.state, JobState::Sending);
    assert_eq!(next.attempts, 1);
    assert_eq!(
        s.queue.job(second).await.unwrap().unwrap().state,
        JobState::Sending
    );
    assert_eq!(
        s.queue.job(other_chat).await.unwrap().unwrap().state,
        JobState::Queued,
        "another chat's job is not taken"
    );

    // Refused (e.g. by the limits): the next job stays in line.
    let (_, next) = s
        .queue
        .mark_sent_then_take(second, vec![Some(2)], later(), |_: &Job| None::<()>)
        .await
        .unwrap();
    assert!(next.is_none());
    assert_eq!(
        s.queue.job(third).await.unwrap().unwrap().state,
        JobState::Queued
    );
    // Not due yet (its time is in the future): not even asked about.
    let taken = s.queue.claim(vec![third], later(), None).await.unwrap();
    assert_eq!(taken.len(), 1);
    let fourth = enqueue(&s.queue, 5, "fourth").await;
    let (_, next) = s
        .queue
        .mark_sent_then_take(third, vec![Some(3)], at(0), |_: &Job| -> Option<()> {
            panic!("asked about a job that is not due")
        })
        .await
        .unwrap();
    assert!(next.is_none());
    assert_eq!(
        s.queue.job(fourth).await.unwrap().unwrap().state,
        JobState::Queued
    );
}

/// SQLite re-prepares a statement whose plan may depend on a bound value
/// (a `?` checked against a partial index) each time that value changes:
/// the store's connections ask for plans that never do, so a cached
/// statement is parsed once.
#[tokio::test]
async fn hot_statements_are_never_prepared_again() {
    let s = sqlite_store();
    for chat in 40..44 {
        enqueue(&s.queue, chat, "x").await;
    }
    s.queue.close().await;
    let conn = crate::store::sqlite::open_writer(&s.location).unwrap();
    let conn = conn.as_sqlite().unwrap();
    let statements = [
        read::DUE_HEAD_SQL,
        "SELECT min(id) FROM jobs INDEXED BY jobs_active
         WHERE state IN ('queued', 'sending') AND chat = ?1",
        "SELECT seq, random_id FROM parts WHERE job_id = ?1 ORDER BY seq",
        "SELECT id, state FROM jobs WHERE idempotency_key = ?1",
    ];
    for sql in statements {
        let mut statement = conn.prepare(sql).unwrap();
        for value in 1..=4_i64 {
            for index in 1..=statement.parameter_count() {
                statement.raw_bind_parameter(index, value).unwrap();
            }
            let mut rows = statement.raw_query();
            while rows.next().unwrap().is_some() {}
        }
        let again = statement.get_status(rusqlite::StatementStatus::RePrepare);
        assert_eq!(again, 0, "re-prepared {again} times: {sql}");
    }
}

/// Caps the store at its current size plus `extra_pages` (SQLite then
/// refuses growth with `SQLITE_FULL`, as a full disk does).
async fn cap_pages(queue: &Queue, extra_pages: i64) {
    queue
        .write(move |conn, _| {
            let conn = conn.as_sqlite().expect("a SQLite store");
            let pages: i64 = conn.pragma_query_value(None, "page_count", |r| r.get(0))?;
            conn.pragma_update(None, "max_page_count", pages + extra_pages)?;
            Ok(())
        })
        .await
        .unwrap();
}

#[tokio::test]
async fn a_full_store_is_reported_until_a_write_goes_through_again() {
    let s = sqlite_store();
    enqueue(&s.queue, 1, "before").await;
    cap_pages(&s.queue, 0).await;
    let big = "x".repeat(64 * 1024);
    let refused = s.queue.enqueue(new_job(2, &big)).await.unwrap_err();
    assert!(refused.is_storage(), "{refused}");
    assert!(refused.is_unavailable(), "{refused}");
    let why = s.queue.refusal().expect("the refusal is remembered");
    assert!(why.contains("full"), "{why}");
    // An empty transaction commits on a full store: it changes nothing.
    s.queue.write(|_, _| Ok(())).await.unwrap();
    assert!(s.queue.refusal().is_some());
    // Reads still work, and nothing refused was stored.
    let jobs = s.queue.jobs(JobFilter::default()).await.unwrap();
    assert_eq!(jobs.len(), 1);

    cap_pages(&s.queue, 1_000_000).await;
    s.queue.probe().await.unwrap();
    assert_eq!(s.queue.refusal(), None);
    enqueue(&s.queue, 2, &big).await;
}

#[tokio::test]
async fn a_job_held_by_send_at_lets_its_chats_later_jobs_go_but_holds_what_follows_it() {
    let s = store();
    let at = later();
    let held = s
        .queue
        .enqueue(NewJob {
            not_before: Some(at),
            ..new_job(4, "held")
        })
        .await
        .unwrap()
        .id;
    let held_message = s.queue.job(held).await.unwrap().unwrap().parts[0].message_id;
    let next = enqueue(&s.queue, 4, "next").await;
    // An edit of the held message waits for it, however late it comes.
    let edit = s
        .queue
        .enqueue(NewJob {
            follows: Some(held_message),
            ..new_job(4, "edit")
        })
        .await
        .unwrap()
        .id;
    let after = enqueue(&s.queue, 4, "after").await;
    let now = Timestamp::now();
    let ids = |jobs: Vec<Job>| jobs.iter().map(|j| j.id).collect::<Vec<_>>();
    // The chat's line goes on without the held job: `next`, then `after`,
    // one at a time as ever.
    assert_eq!(
        ids(s.queue.claim_due(DEFAULT_BOT, now, 10).await.unwrap()),
        [next]
    );
    assert!(
        s.queue
            .claim_due(DEFAULT_BOT, now, 10)
            .await
            .unwrap()
            .is_empty()
    );
    s.queue.mark_sent(next, vec![Some(10)], now).await.unwrap();
    assert_eq!(
        ids(s.queue.claim_due(DEFAULT_BOT, now, 10).await.unwrap()),
        [after]
    );
    s.queue.mark_sent(after, vec![Some(11)], now).await.unwrap();
    assert!(
        s.queue
            .claim_due(DEFAULT_BOT, now, 10)
            .await
            .unwrap()
            .is_empty()
    );
    // Nothing else is due before the hold ends; then the held job, and its
    // edit after it.
    assert_eq!(
        s.queue.next_due_at(DEFAULT_BOT, now).await.unwrap(),
        Some(at)
    );
    assert_eq!(
        ids(s.queue.claim_due(DEFAULT_BOT, at, 10).await.unwrap()),
        [held]
    );
    assert!(
        s.queue
            .claim_due(DEFAULT_BOT, at, 10)
            .await
            .unwrap()
            .is_empty()
    );
    s.queue.mark_sent(held, vec![Some(12)], at).await.unwrap();
    assert_eq!(
        ids(s.queue.claim_due(DEFAULT_BOT, at, 10).await.unwrap()),
        [edit]
    );
}
