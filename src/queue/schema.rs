//! The store's schema, as a list of versioned migrations.
//!
//! SQLite's `user_version` holds how many migrations a database has had; on
//! open, the missing ones run in order, each in its own transaction. A
//! migration is never edited once released: changes are new entries.

use rusqlite::{Connection, OptionalExtension};

use super::QueueError;

/// Migration `n` (from 1) is `MIGRATIONS[n - 1]`.
const MIGRATIONS: &[&str] = &[
    // 1: jobs, their parts (one Telegram message each) and flood holds.
    "
    CREATE TABLE jobs (
        id              INTEGER PRIMARY KEY,
        request_id      TEXT    NOT NULL,
        bot             TEXT    NOT NULL,
        chat            INTEGER NOT NULL,
        kind            TEXT    NOT NULL,
        payload         TEXT    NOT NULL,
        idempotency_key TEXT,
        state           TEXT    NOT NULL
                        CHECK (state IN ('queued', 'sending', 'sent', 'failed')),
        attempts        INTEGER NOT NULL DEFAULT 0,
        not_before      INTEGER NOT NULL,
        error_code      INTEGER,
        error_text      TEXT,
        error_name      TEXT,
        created_at      INTEGER NOT NULL,
        updated_at      INTEGER NOT NULL
    );
    -- Partial, so jobs without a key cost no index page.
    CREATE UNIQUE INDEX jobs_idempotency_key ON jobs (idempotency_key)
        WHERE idempotency_key IS NOT NULL;
    -- The head of each chat's line: its lowest active job.
    CREATE INDEX jobs_active ON jobs (chat, id) WHERE state IN ('queued', 'sending');
    CREATE INDEX jobs_by_state ON jobs (state, id);

    -- One row per Telegram message of a job; the row id is telegate's
    -- message id, random_id is fixed at enqueue for every attempt.
    CREATE TABLE parts (
        message_id         INTEGER PRIMARY KEY,
        job_id             INTEGER NOT NULL REFERENCES jobs (id),
        seq                INTEGER NOT NULL,
        random_id          INTEGER NOT NULL,
        channel_message_id INTEGER,
        UNIQUE (job_id, seq)
    );

    -- FLOOD_WAIT: nothing goes to `chat` before `not_before`; chat 0 holds
    -- the whole bot.
    CREATE TABLE holds (
        chat       INTEGER PRIMARY KEY,
        not_before INTEGER NOT NULL
    );
    ",
    // 2: what users did and what became of jobs, as a stream of events.
    "
    -- The cursor orders the stream; AUTOINCREMENT keeps a pruned cursor
    -- from ever being handed out again. `event_id` is derived from what
    -- happened (e.g. `telegram:BOT:CHAT:MSG`), so a replay after a crash is
    -- recognised and not stored twice.
    CREATE TABLE events (
        cursor     INTEGER PRIMARY KEY AUTOINCREMENT,
        event_id   TEXT    NOT NULL UNIQUE,
        chat       INTEGER NOT NULL,
        body       TEXT    NOT NULL,
        created_at INTEGER NOT NULL
    );
    CREATE INDEX events_by_time ON events (created_at);
    -- A click names the message by Telegram's id: find the job that sent it.
    CREATE INDEX parts_by_channel_message ON parts (channel_message_id)
        WHERE channel_message_id IS NOT NULL;

    -- Webhook progress: the last cursor delivered per chat, and a cursor
    -- below which everything is delivered (where a restart resumes).
    CREATE TABLE webhook_chats (
        chat      INTEGER PRIMARY KEY,
        delivered INTEGER NOT NULL
    );
    CREATE TABLE webhook_mark (
        id        INTEGER PRIMARY KEY CHECK (id = 0),
        delivered INTEGER NOT NULL
    );
    ",
    // 3: the requests a job sends, built and checked at enqueue, in a
    // versioned binary form (see `outgoing`); NULL for jobs stored before,
    // which are sent from their payload.
    "
    ALTER TABLE jobs ADD COLUMN wire BLOB;
    ",
    // 4: a client may cancel a queued job: the state `cancelled`. SQLite
    // cannot change a CHECK in place, so `jobs` is rebuilt (the documented
    // way: new table, copy, drop, rename; foreign keys checked before the
    // commit, see `run`).
    "
    CREATE TABLE jobs_with_cancel (
        id              INTEGER PRIMARY KEY,
        request_id      TEXT    NOT NULL,
        bot             TEXT    NOT NULL,
        chat            INTEGER NOT NULL,
        kind            TEXT    NOT NULL,
        payload         TEXT    NOT NULL,
        idempotency_key TEXT,
        state           TEXT    NOT NULL
                        CHECK (state IN ('queued', 'sending', 'sent', 'failed', 'cancelled')),
        attempts        INTEGER NOT NULL DEFAULT 0,
        not_before      INTEGER NOT NULL,
        error_code      INTEGER,
        error_text      TEXT,
        error_name      TEXT,
        created_at      INTEGER NOT NULL,
        updated_at      INTEGER NOT NULL,
        wire            BLOB
    );
    INSERT INTO jobs_with_cancel
        SELECT id, request_id, bot, chat, kind, payload, idempotency_key, state, attempts,
               not_before, error_code, error_text, error_name, created_at, updated_at, wire
        FROM jobs;
    DROP TABLE jobs;
    ALTER TABLE jobs_with_cancel RENAME TO jobs;
    CREATE UNIQUE INDEX jobs_idempotency_key ON jobs (idempotency_key)
        WHERE idempotency_key IS NOT NULL;
    CREATE INDEX jobs_active ON jobs (chat, id) WHERE state IN ('queued', 'sending');
    CREATE INDEX jobs_by_state ON jobs (state, id);
    ",
];

/// The schema version this build writes.
pub const VERSION: u32 = MIGRATIONS.len() as u32;

/// Brings the database up to [`VERSION`].
pub fn migrate(conn: &mut Connection) -> Result<(), QueueError> {
    migrate_to(conn, VERSION)
}

/// Brings the database up to `target` (≤ [`VERSION`]); tests use it to
/// write a store as an earlier release did.
pub fn migrate_to(conn: &mut Connection, target: u32) -> Result<(), QueueError> {
    let found: u32 = conn.pragma_query_value(None, "user_version", |row| row.get(0))?;
    if found > VERSION {
        return Err(QueueError::SchemaTooNew {
            found,
            known: VERSION,
        });
    }
    // A migration that rebuilds a table drops it first, which foreign keys
    // would refuse (SQLite's way to change a table: keys off around the
    // transaction, checked before it commits).
    let enforced: bool = conn.pragma_query_value(None, "foreign_keys", |row| row.get(0))?;
    conn.pragma_update(None, "foreign_keys", false)?;
    let migrated = run(conn, found, target);
    conn.pragma_update(None, "foreign_keys", enforced)?;
    migrated
}

fn run(conn: &mut Connection, found: u32, target: u32) -> Result<(), QueueError> {
    let migrations = MIGRATIONS.iter().take(target as usize);
    for (version, sql) in (1..).zip(migrations).skip(found as usize) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        let broken: Option<String> = tx
            .query_row("PRAGMA foreign_key_check", [], |row| row.get(0))
            .optional()?;
        if let Some(table) = broken {
            return Err(QueueError::Commit(format!(
                "migration {version} left rows of `{table}` without their parent"
            )));
        }
        tx.pragma_update(None, "user_version", version)?;
        tx.commit()?;
        tracing::info!(version, "store schema migrated");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrates_once_and_refuses_a_newer_schema() {
        let mut conn = Connection::open_in_memory().unwrap();
        migrate(&mut conn).unwrap();
        migrate(&mut conn).unwrap();
        let version: u32 = conn
            .pragma_query_value(None, "user_version", |row| row.get(0))
            .unwrap();
        assert_eq!(version, VERSION);

        conn.pragma_update(None, "user_version", VERSION + 1)
            .unwrap();
        let err = migrate(&mut conn).unwrap_err();
        assert!(matches!(err, QueueError::SchemaTooNew { .. }), "{err}");
    }

    #[test]
    fn jobs_and_parts_survive_the_rebuild_that_allows_cancelled_v4() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("PRAGMA foreign_keys = ON").unwrap();
        for sql in &MIGRATIONS[..3] {
            conn.execute_batch(sql).unwrap();
        }
        conn.pragma_update(None, "user_version", 3).unwrap();
        conn.execute_batch(
            "INSERT INTO jobs (id, request_id, bot, chat, kind, payload, state, not_before,
                               created_at, updated_at)
             VALUES (7, 'r', 'default', 42, 'interactive', '{}', 'queued', 0, 0, 0);
             INSERT INTO parts (job_id, seq, random_id) VALUES (7, 0, 99);",
        )
        .unwrap();
        let refused = conn.execute("UPDATE jobs SET state = 'cancelled' WHERE id = 7", []);
        assert!(refused.is_err(), "v3 has no cancelled state");

        migrate(&mut conn).unwrap();
        conn.execute("UPDATE jobs SET state = 'cancelled' WHERE id = 7", [])
            .unwrap();
        let (state, random_id): (String, i64) = conn
            .query_row(
                "SELECT j.state, p.random_id FROM jobs j JOIN parts p ON p.job_id = j.id",
                [],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .unwrap();
        assert_eq!((state.as_str(), random_id), ("cancelled", 99));
        let enforced: bool = conn
            .pragma_query_value(None, "foreign_keys", |row| row.get(0))
            .unwrap();
        assert!(enforced, "foreign keys are on again after migrating");
        let orphan = conn.execute(
            "INSERT INTO parts (job_id, seq, random_id) VALUES (8, 0, 1)",
            [],
        );
        assert!(orphan.is_err(), "parts still need their job");
    }
}
