//! Where telegate's durable state lives: one interface, two engines.
//!
//! The queue, the event stream and the click log are written as SQL against
//! a [`Conn`]: SQLite in a file beside the daemon (the embedded default) or a
//! PostgreSQL server that several daemons share. The layer is deliberately
//! thin — the statements are the queue's and the events' own, in the subset
//! of SQL both engines read the same way — so that every rule about jobs
//! (per-chat order, `random_id`s fixed at enqueue, group commit) is written
//! once and holds on either engine. What differs is here:
//!
//! - parameters are written `?N` and rewritten to `$N` for PostgreSQL;
//! - values cross as SQLite's value model (integer, real, text, blob, null),
//!   so rows are read with `rusqlite`'s `FromSql` on both engines and
//!   PostgreSQL columns are `BIGINT`, `TEXT`, `BYTEA`;
//! - transactions, savepoints and schema versions, which each engine spells
//!   its own way ([`Conn::begin_write`], `queue::schema`).
//!
//! The module sits below `queue` and `events` and knows neither.

mod conn;
mod postgres;
pub(crate) mod sqlite;

pub(crate) use conn::{Conn, Dialect, OptionalExtension, Row};
pub use conn::{Location, StoreError};
pub use postgres::PgUrl;
pub(crate) use postgres::{is_storage_postgres, listen, off_runtime};

/// The store a test runs on: a SQLite file in `dir`, or, with
/// `TELEGATE_TEST_STORE=postgres` (`.ci/run`'s second pass), a database of
/// its own on the server `TELEGATE_TEST_POSTGRES` names, which a store
/// opened again on the same `dir` finds again.
#[cfg(test)]
pub(crate) fn test_location(dir: &std::path::Path) -> Location {
    let server = std::env::var("TELEGATE_TEST_POSTGRES")
        .ok()
        .filter(|_| std::env::var("TELEGATE_TEST_STORE").as_deref() == Ok("postgres"));
    let Some(server) = server else {
        return Location::Sqlite(dir.join("telegate.db"));
    };
    let server = PgUrl::parse(&server).expect("TELEGATE_TEST_POSTGRES is a postgres:// URL");
    let marker = dir.join("postgres-database");
    let name = match std::fs::read_to_string(&marker) {
        Ok(name) => name,
        Err(_) => {
            let name = format!("t_{:016x}", rand::random::<u64>());
            off_runtime(|| {
                let conn = server.connect().expect("the test server takes connections");
                conn.execute_batch(&format!("CREATE DATABASE {name}"))
                    .expect("a test database");
            });
            std::fs::write(&marker, &name).expect("the test database's name is kept");
            name
        }
    };
    Location::Postgres(Box::new(server.with_database(&name)))
}
