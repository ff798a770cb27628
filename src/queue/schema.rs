//! The store's schema, as a list of versioned migrations.
//!
//! SQLite's `user_version` holds how many migrations a database has had; on
//! open, the missing ones run in order, each in its own transaction. A
//! migration is never edited once released: changes are new entries.
//!
//! PostgreSQL came at version 8: its first migration creates the schema as
//! SQLite's eight leave it, and later versions add an entry to both lists.
//! Its version is the one row of `telegate_schema`; daemons that start at
//! once migrate one after another (under an advisory lock).

use rusqlite::{Connection, OptionalExtension as _};

use super::QueueError;
use crate::store::{Conn, Dialect, OptionalExtension};

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
    // 5: many bots. Events, flood holds, idempotency keys and webhook
    // progress name their bot; what was there belongs to `default` (jobs
    // had their `bot` column from the start). A bot's line heads come from
    // (bot, chat, id).
    "
    CREATE TABLE events_of_bots (
        cursor     INTEGER PRIMARY KEY AUTOINCREMENT,
        bot        TEXT    NOT NULL,
        event_id   TEXT    NOT NULL,
        chat       INTEGER NOT NULL,
        body       TEXT    NOT NULL,
        created_at INTEGER NOT NULL,
        UNIQUE (bot, event_id)
    );
    INSERT INTO events_of_bots (cursor, bot, event_id, chat, body, created_at)
        SELECT cursor, 'default', event_id, chat, body, created_at FROM events;
    -- Keep cursors of pruned events from being handed out again.
    INSERT INTO sqlite_sequence (name, seq)
        SELECT 'events_of_bots', seq FROM sqlite_sequence WHERE name = 'events'
        AND NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'events_of_bots');
    UPDATE sqlite_sequence
        SET seq = max(seq, coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'events'), 0))
        WHERE name = 'events_of_bots';
    DROP TABLE events;
    ALTER TABLE events_of_bots RENAME TO events;
    CREATE INDEX events_by_time ON events (created_at);
    CREATE INDEX events_by_bot ON events (bot, cursor);

    CREATE TABLE holds_of_bots (
        bot        TEXT    NOT NULL,
        chat       INTEGER NOT NULL,
        not_before INTEGER NOT NULL,
        PRIMARY KEY (bot, chat)
    );
    INSERT INTO holds_of_bots SELECT 'default', chat, not_before FROM holds;
    DROP TABLE holds;
    ALTER TABLE holds_of_bots RENAME TO holds;

    DROP INDEX jobs_idempotency_key;
    CREATE UNIQUE INDEX jobs_idempotency_key ON jobs (bot, idempotency_key)
        WHERE idempotency_key IS NOT NULL;
    DROP INDEX jobs_active;
    CREATE INDEX jobs_active ON jobs (bot, chat, id) WHERE state IN ('queued', 'sending');

    CREATE TABLE webhook_chats_of_bots (
        bot       TEXT    NOT NULL,
        chat      INTEGER NOT NULL,
        delivered INTEGER NOT NULL,
        PRIMARY KEY (bot, chat)
    );
    INSERT INTO webhook_chats_of_bots SELECT 'default', chat, delivered FROM webhook_chats;
    DROP TABLE webhook_chats;
    ALTER TABLE webhook_chats_of_bots RENAME TO webhook_chats;
    CREATE TABLE webhook_marks (
        bot       TEXT    PRIMARY KEY,
        delivered INTEGER NOT NULL
    );
    INSERT INTO webhook_marks SELECT 'default', delivered FROM webhook_mark;
    DROP TABLE webhook_mark;
    ",
    // 6: a job held by its `send_at` (never tried, due later than it was
    // enqueued) is no part of its chat's line until then; this index finds
    // the earliest of them without walking every queued job. And the clicks
    // that counted on buttons with an `on_click` (see `after_click`), in
    // order (rowid).
    "
    CREATE INDEX jobs_scheduled ON jobs (bot, not_before)
        WHERE state = 'queued' AND attempts = 0 AND not_before > created_at;
    CREATE TABLE button_clicks (
        bot      TEXT    NOT NULL,
        chat     INTEGER NOT NULL,
        msg_id   INTEGER NOT NULL,
        query_id INTEGER NOT NULL,
        data     BLOB    NOT NULL,
        UNIQUE (bot, chat, msg_id, query_id)
    );
    ",
    // 7: users who blocked a bot (`updateBotStopped`): their jobs fail at
    // once, without a call to Telegram, until they unblock it.
    "
    CREATE TABLE blocked_chats (
        bot        TEXT    NOT NULL,
        chat       INTEGER NOT NULL,
        blocked_at INTEGER NOT NULL,
        PRIMARY KEY (bot, chat)
    );
    ",
    // 8: the same `jobs`, its state CHECK spelled as comparisons. SQLite
    // checks an IN list of more than two values through a temporary b-tree
    // it builds (and frees) on every insert and every state change: about
    // a tenth of an enqueue's instructions. Rebuilt as in 4.
    "
    CREATE TABLE jobs_checked (
        id              INTEGER PRIMARY KEY,
        request_id      TEXT    NOT NULL,
        bot             TEXT    NOT NULL,
        chat            INTEGER NOT NULL,
        kind            TEXT    NOT NULL,
        payload         TEXT    NOT NULL,
        idempotency_key TEXT,
        state           TEXT    NOT NULL
                        CHECK (state = 'queued' OR state = 'sending' OR state = 'sent'
                               OR state = 'failed' OR state = 'cancelled'),
        attempts        INTEGER NOT NULL DEFAULT 0,
        not_before      INTEGER NOT NULL,
        error_code      INTEGER,
        error_text      TEXT,
        error_name      TEXT,
        created_at      INTEGER NOT NULL,
        updated_at      INTEGER NOT NULL,
        wire            BLOB
    );
    INSERT INTO jobs_checked
        SELECT id, request_id, bot, chat, kind, payload, idempotency_key, state, attempts,
               not_before, error_code, error_text, error_name, created_at, updated_at, wire
        FROM jobs;
    DROP TABLE jobs;
    ALTER TABLE jobs_checked RENAME TO jobs;
    CREATE UNIQUE INDEX jobs_idempotency_key ON jobs (bot, idempotency_key)
        WHERE idempotency_key IS NOT NULL;
    CREATE INDEX jobs_active ON jobs (bot, chat, id) WHERE state IN ('queued', 'sending');
    CREATE INDEX jobs_by_state ON jobs (state, id);
    CREATE INDEX jobs_scheduled ON jobs (bot, not_before)
        WHERE state = 'queued' AND attempts = 0 AND not_before > created_at;
    ",
];

/// The schema version this build writes.
pub const VERSION: u32 = MIGRATIONS.len() as u32;

/// PostgreSQL's migrations: `(version, sql)`, the first one the schema of
/// SQLite's version 8. Columns are `BIGINT`, `TEXT` and `BYTEA` only (the
/// store reads values in SQLite's model, see `store`).
const POSTGRES_MIGRATIONS: &[(u32, &str)] = &[
    (
        8,
        "
    -- SQLite's two-argument max() and min(), which the store's SQL uses:
    -- NULL when either is (STRICT), where GREATEST and LEAST skip a NULL.
    CREATE FUNCTION max(a BIGINT, b BIGINT) RETURNS BIGINT
        LANGUAGE sql IMMUTABLE STRICT AS 'SELECT GREATEST(a, b)';
    CREATE FUNCTION min(a BIGINT, b BIGINT) RETURNS BIGINT
        LANGUAGE sql IMMUTABLE STRICT AS 'SELECT LEAST(a, b)';

    CREATE TABLE jobs (
        id              BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        request_id      TEXT   NOT NULL,
        bot             TEXT   NOT NULL,
        chat            BIGINT NOT NULL,
        kind            TEXT   NOT NULL,
        payload         TEXT   NOT NULL,
        idempotency_key TEXT,
        state           TEXT   NOT NULL
                        CHECK (state IN ('queued', 'sending', 'sent', 'failed', 'cancelled')),
        attempts        BIGINT NOT NULL DEFAULT 0,
        not_before      BIGINT NOT NULL,
        error_code      BIGINT,
        error_text      TEXT,
        error_name      TEXT,
        created_at      BIGINT NOT NULL,
        updated_at      BIGINT NOT NULL,
        wire            BYTEA
    );
    CREATE UNIQUE INDEX jobs_idempotency_key ON jobs (bot, idempotency_key)
        WHERE idempotency_key IS NOT NULL;
    CREATE INDEX jobs_active ON jobs (bot, chat, id) WHERE state IN ('queued', 'sending');
    CREATE INDEX jobs_by_state ON jobs (state, id);
    CREATE INDEX jobs_scheduled ON jobs (bot, not_before)
        WHERE state = 'queued' AND attempts = 0 AND not_before > created_at;

    CREATE TABLE parts (
        message_id         BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        job_id             BIGINT NOT NULL REFERENCES jobs (id),
        seq                BIGINT NOT NULL,
        random_id          BIGINT NOT NULL,
        channel_message_id BIGINT,
        UNIQUE (job_id, seq)
    );
    CREATE INDEX parts_by_channel_message ON parts (channel_message_id)
        WHERE channel_message_id IS NOT NULL;

    CREATE TABLE holds (
        bot        TEXT   NOT NULL,
        chat       BIGINT NOT NULL,
        not_before BIGINT NOT NULL,
        PRIMARY KEY (bot, chat)
    );

    -- An identity is never handed out twice, as AUTOINCREMENT in SQLite.
    CREATE TABLE events (
        cursor     BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        bot        TEXT   NOT NULL,
        event_id   TEXT   NOT NULL,
        chat       BIGINT NOT NULL,
        body       TEXT   NOT NULL,
        created_at BIGINT NOT NULL,
        UNIQUE (bot, event_id)
    );
    CREATE INDEX events_by_time ON events (created_at);
    CREATE INDEX events_by_bot ON events (bot, cursor);

    CREATE TABLE webhook_chats (
        bot       TEXT   NOT NULL,
        chat      BIGINT NOT NULL,
        delivered BIGINT NOT NULL,
        PRIMARY KEY (bot, chat)
    );
    CREATE TABLE webhook_marks (
        bot       TEXT   PRIMARY KEY,
        delivered BIGINT NOT NULL
    );
    CREATE TABLE webhook_dead (
        cursor   BIGINT PRIMARY KEY,
        event_id TEXT   NOT NULL,
        chat     BIGINT NOT NULL,
        attempts BIGINT NOT NULL,
        error    TEXT   NOT NULL,
        died_at  BIGINT NOT NULL
    );

    -- Clicks in the order they came: SQLite's rowid, spelled out.
    CREATE TABLE button_clicks (
        rowid    BIGINT GENERATED ALWAYS AS IDENTITY,
        bot      TEXT   NOT NULL,
        chat     BIGINT NOT NULL,
        msg_id   BIGINT NOT NULL,
        query_id BIGINT NOT NULL,
        data     BYTEA  NOT NULL,
        UNIQUE (bot, chat, msg_id, query_id)
    );

    CREATE TABLE blocked_chats (
        bot        TEXT   NOT NULL,
        chat       BIGINT NOT NULL,
        blocked_at BIGINT NOT NULL,
        PRIMARY KEY (bot, chat)
    );

    -- Which daemon holds which bot, and the daemons that beat (see
    -- `queue::lease`): a shared store's own.
    CREATE TABLE bot_leases (
        bot        TEXT   PRIMARY KEY,
        holder     TEXT   NOT NULL,
        token      BIGINT NOT NULL,
        expires_at BIGINT NOT NULL
    );
    CREATE TABLE daemons (
        holder  TEXT   PRIMARY KEY,
        seen_at BIGINT NOT NULL
    );
    ",
    ),
    (
        9,
        "
    -- The bots' MTProto sessions (see `session`): on a shared store they
    -- move with the bot's lease. The tables of a session file, keyed by
    -- the bot's name.
    CREATE TABLE session_home_dc (
        session TEXT   PRIMARY KEY,
        dc_id   BIGINT NOT NULL
    );
    CREATE TABLE session_dc_option (
        session  TEXT   NOT NULL,
        dc_id    BIGINT NOT NULL,
        ipv4     TEXT   NOT NULL,
        ipv6     TEXT   NOT NULL,
        auth_key BYTEA,
        PRIMARY KEY (session, dc_id)
    );
    CREATE TABLE session_peer (
        session      TEXT   NOT NULL,
        peer_id      BIGINT NOT NULL,
        hash         BIGINT,
        bot          BIGINT,
        is_self      BIGINT,
        channel_kind BIGINT,
        PRIMARY KEY (session, peer_id)
    );
    CREATE INDEX session_peer_self ON session_peer (session) WHERE is_self = 1;
    CREATE TABLE session_update_state (
        session TEXT   PRIMARY KEY,
        pts     BIGINT NOT NULL,
        qts     BIGINT NOT NULL,
        date    BIGINT NOT NULL,
        seq     BIGINT NOT NULL
    );
    CREATE TABLE session_channel_state (
        session    TEXT   NOT NULL,
        channel_id BIGINT NOT NULL,
        pts        BIGINT NOT NULL,
        PRIMARY KEY (session, channel_id)
    );
    ",
    ),
];

/// The schema version this build writes on PostgreSQL.
const POSTGRES_VERSION: u32 = POSTGRES_MIGRATIONS[POSTGRES_MIGRATIONS.len() - 1].0;

/// The advisory lock daemons take while they migrate a shared store.
const MIGRATION_LOCK: i64 = 0x7465_6c65_6761_7465 + 1;

/// Brings the store up to [`VERSION`].
pub fn migrate(conn: &mut Conn) -> Result<(), QueueError> {
    match conn.dialect() {
        Dialect::Sqlite => {
            let sqlite = conn.as_sqlite_mut().expect("a SQLite connection");
            migrate_to(sqlite, VERSION)
        }
        Dialect::Postgres => migrate_postgres(conn),
    }
}

fn migrate_postgres(conn: &Conn) -> Result<(), QueueError> {
    conn.execute(
        "SELECT pg_advisory_lock(?1)",
        rusqlite::params![MIGRATION_LOCK],
    )?;
    let migrated = (|| {
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS telegate_schema (
                 one     BIGINT PRIMARY KEY CHECK (one = 1),
                 version BIGINT NOT NULL
             )",
        )?;
        let found: u32 = conn
            .query_row(
                "SELECT version FROM telegate_schema",
                rusqlite::params![],
                |row| row.get(0),
            )
            .optional()?
            .unwrap_or(0);
        if found > POSTGRES_VERSION {
            return Err(QueueError::SchemaTooNew {
                found,
                known: POSTGRES_VERSION,
            });
        }
        for &(version, sql) in POSTGRES_MIGRATIONS.iter().filter(|(v, _)| *v > found) {
            conn.in_transaction(|conn| {
                conn.execute_batch(sql)?;
                conn.execute(
                    "INSERT INTO telegate_schema (one, version) VALUES (1, ?1)
                     ON CONFLICT (one) DO UPDATE SET version = excluded.version",
                    rusqlite::params![version],
                )
            })?;
            tracing::info!(version, "store schema migrated");
        }
        Ok(())
    })();
    let _ = conn.execute(
        "SELECT pg_advisory_unlock(?1)",
        rusqlite::params![MIGRATION_LOCK],
    );
    migrated
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
            .query_row("PRAGMA foreign_key_check", rusqlite::params![], |row| {
                row.get(0)
            })
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
        migrate_to(&mut conn, VERSION).unwrap();
        migrate_to(&mut conn, VERSION).unwrap();
        let version: u32 = conn
            .pragma_query_value(None, "user_version", |row| row.get(0))
            .unwrap();
        assert_eq!(version, VERSION);

        conn.pragma_update(None, "user_version", VERSION + 1)
            .unwrap();
        let err = migrate_to(&mut conn, VERSION).unwrap_err();
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

        migrate_to(&mut conn, VERSION).unwrap();
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

    #[test]
    fn the_v8_rebuild_keeps_jobs_and_their_check_without_a_temporary_btree() {
        let mut conn = Connection::open_in_memory().unwrap();
        migrate_to(&mut conn, 7).unwrap();
        conn.execute_batch(
            "INSERT INTO jobs (id, request_id, bot, chat, kind, payload, idempotency_key, state,
                               not_before, created_at, updated_at, wire)
             VALUES (7, 'r', 'default', 42, 'interactive', '{}', 'k', 'sending', 5, 0, 0, x'01');
             INSERT INTO parts (job_id, seq, random_id) VALUES (7, 0, 99);",
        )
        .unwrap();
        migrate_to(&mut conn, VERSION).unwrap();
        let (state, key, random_id): (String, String, i64) = conn
            .query_row(
                "SELECT j.state, j.idempotency_key, p.random_id
                 FROM jobs j JOIN parts p ON p.job_id = j.id",
                [],
                |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
            )
            .unwrap();
        assert_eq!(
            (state.as_str(), key.as_str(), random_id),
            ("sending", "k", 99)
        );
        let refused = conn.execute("UPDATE jobs SET state = 'lost' WHERE id = 7", []);
        assert!(refused.is_err(), "an unknown state is still refused");
        let duplicate = conn.execute(
            "INSERT INTO jobs (request_id, bot, chat, kind, payload, idempotency_key, state,
                               not_before, created_at, updated_at)
             VALUES ('r', 'default', 42, 'interactive', '{}', 'k', 'queued', 0, 0, 0)",
            [],
        );
        assert!(duplicate.is_err(), "idempotency keys are unique again");
        // Neither an insert nor a state change builds a temporary b-tree.
        for sql in [
            "INSERT INTO jobs (request_id, bot, chat, kind, payload, state, not_before,
                               created_at, updated_at) VALUES ('r', 'b', 1, 'k', '{}', ?1, 0, 0, 0)",
            "UPDATE jobs SET state = ?1 WHERE id = 7",
        ] {
            let mut plan = conn.prepare(&format!("EXPLAIN {sql}")).unwrap();
            let opcodes: Vec<String> = plan
                .query_map(["sent"], |row| row.get(1))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            assert!(
                !opcodes.iter().any(|op| op == "OpenEphemeral"),
                "{sql}: {opcodes:?}"
            );
        }
    }

    #[test]
    fn rows_of_the_one_bot_store_belong_to_default_after_migration() {
        let mut conn = Connection::open_in_memory().unwrap();
        for sql in &MIGRATIONS[..2] {
            conn.execute_batch(sql).unwrap();
        }
        conn.pragma_update(None, "user_version", 2).unwrap();
        conn.execute_batch(
            "INSERT INTO jobs (request_id, bot, chat, kind, payload, idempotency_key, state,
                               not_before, created_at, updated_at)
                 VALUES ('r', 'default', 5, 'interactive', '{}', 'key-1', 'queued', 0, 0, 0);
             INSERT INTO events (event_id, chat, body, created_at) VALUES ('e1', 5, '{}', 0);
             INSERT INTO events (event_id, chat, body, created_at) VALUES ('e2', 5, '{}', 0);
             DELETE FROM events WHERE event_id = 'e2';
             INSERT INTO holds (chat, not_before) VALUES (5, 99);
             INSERT INTO webhook_chats (chat, delivered) VALUES (5, 1);
             INSERT INTO webhook_mark (id, delivered) VALUES (0, 1);",
        )
        .unwrap();
        migrate_to(&mut conn, VERSION).unwrap();
        let bot_of = |sql: &str| -> String { conn.query_row(sql, [], |row| row.get(0)).unwrap() };
        assert_eq!(
            bot_of("SELECT bot FROM events WHERE event_id = 'e1'"),
            "default"
        );
        assert_eq!(bot_of("SELECT bot FROM holds WHERE chat = 5"), "default");
        assert_eq!(
            bot_of("SELECT bot FROM webhook_chats WHERE chat = 5"),
            "default"
        );
        assert_eq!(bot_of("SELECT bot FROM webhook_marks"), "default");
        // The pruned event's cursor (2) is not handed out again.
        conn.execute(
            "INSERT INTO events (bot, event_id, chat, body, created_at) VALUES ('a', 'e3', 5, '{}', 0)",
            [],
        )
        .unwrap();
        let cursor: i64 = conn
            .query_row(
                "SELECT cursor FROM events WHERE event_id = 'e3'",
                [],
                |row| row.get(0),
            )
            .unwrap();
        assert_eq!(cursor, 3);
        // An idempotency key is per bot now.
        conn.execute(
            "INSERT INTO jobs (request_id, bot, chat, kind, payload, idempotency_key, state,
                               not_before, created_at, updated_at)
                 VALUES ('r', 'other', 5, 'interactive', '{}', 'key-1', 'queued', 0, 0, 0)",
            [],
        )
        .unwrap();
    }
}
