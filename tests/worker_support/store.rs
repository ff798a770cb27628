//! The store a test's daemon (or in-process queue) runs on.
//!
//! By default the state dir's SQLite file. With `TELEGATE_TEST_STORE=postgres`
//! (`.ci/run`'s second pass), every state dir gets a database of its own on
//! the PostgreSQL server `TELEGATE_TEST_POSTGRES` names (`.ci/run` starts
//! one), created on first use and found again (its name is kept in the
//! state dir) when a test restarts its daemon on the same dir. Tests of
//! what only a shared store does take a database of their own with
//! [`shared_database`], whatever the pass.

// Each test binary uses part of it.
#![allow(dead_code)]

use std::path::Path;

use telegate::store::{Location, PgUrl};

/// The server the suite runs against, if it runs on PostgreSQL.
fn server() -> Option<(String, PgUrl)> {
    if std::env::var("TELEGATE_TEST_STORE").as_deref() != Ok("postgres") {
        return None;
    }
    Some(postgres_server())
}

/// The test server: its URL as given (it trusts loopback clients, so the
/// URL holds no password) and parsed.
fn postgres_server() -> (String, PgUrl) {
    let url = std::env::var("TELEGATE_TEST_POSTGRES").expect(
        "TELEGATE_TEST_POSTGRES names no PostgreSQL server: run the suite with `bash .ci/run`, \
         which starts one",
    );
    match Location::postgres(&url) {
        Ok(Location::Postgres(parsed)) => (url, *parsed),
        _ => panic!("TELEGATE_TEST_POSTGRES is not a postgres:// URL"),
    }
}

/// A new database on the test server, for daemons that share it: its URL.
pub fn shared_database() -> String {
    let (admin, server) = postgres_server();
    let name = format!("t_{:016x}", rand::random::<u64>());
    create_database(admin, &name);
    server.with_database(&name).to_string()
}

fn create_database(admin: String, name: &str) {
    let create = format!("CREATE DATABASE {name}");
    // The blocking client runs a runtime of its own: off tokio's.
    std::thread::spawn(move || {
        let mut client = postgres::Client::connect(&admin, postgres::NoTls)
            .expect("the test server takes connections");
        client.batch_execute(&create).expect("a test database");
    })
    .join()
    .expect("the test database is created");
}

/// The PostgreSQL URL of `dir`'s database (created now if new), or `None`
/// when the suite runs on SQLite.
pub fn postgres_url(dir: &Path) -> Option<String> {
    if dir.join(SQLITE_ONLY).exists() {
        return None;
    }
    let (admin, server) = server()?;
    std::fs::create_dir_all(dir).expect("the state dir");
    let marker = dir.join("postgres-database");
    let name = match std::fs::read_to_string(&marker) {
        Ok(name) => name,
        Err(_) => {
            let name = format!("t_{:016x}", rand::random::<u64>());
            create_database(admin, &name);
            std::fs::write(&marker, &name).expect("the test database's name is kept");
            name
        }
    };
    Some(server.with_database(&name).to_string())
}

/// The marker of a state dir kept on SQLite.
const SQLITE_ONLY: &str = "sqlite-only";

/// Keeps `dir`'s store on SQLite whatever the suite runs on: for a test of
/// what only a SQLite file does (a disk filling under it).
pub fn keep_on_sqlite(dir: &Path) {
    std::fs::write(dir.join(SQLITE_ONLY), b"").expect("the marker is written");
}

/// The environment that points a daemon over `dir` at its store.
pub fn env(dir: &Path) -> Vec<(&'static str, String)> {
    postgres_url(dir)
        .map(|url| ("TELEGATE_STORE_URL", url))
        .into_iter()
        .collect()
}

/// `dir`'s store, for a queue opened in the test's own process.
pub fn location(dir: &Path) -> Location {
    match postgres_url(dir) {
        Some(url) => Location::postgres(&url).expect("a test database URL"),
        None => Location::Sqlite(dir.join("telegate.db")),
    }
}

/// Runs `sql` (statements without parameters) on `dir`'s store: a test
/// that edits what its daemon stored, on either engine.
pub fn execute(dir: &Path, sql: &str) {
    match postgres_url(dir) {
        Some(url) => {
            let sql = sql.to_owned();
            std::thread::spawn(move || {
                let mut client = postgres::Client::connect(&url, postgres::NoTls).unwrap();
                client.batch_execute(&sql).unwrap();
            })
            .join()
            .expect("the statements ran");
        }
        None => {
            let db = rusqlite::Connection::open(dir.join("telegate.db")).unwrap();
            db.busy_timeout(std::time::Duration::from_secs(30)).unwrap();
            db.execute_batch(sql).unwrap();
        }
    }
}

/// The text in the first column of the first row of `query` on `dir`'s
/// store.
pub fn query_text(dir: &Path, query: &str) -> String {
    match postgres_url(dir) {
        Some(url) => {
            let query = query.to_owned();
            std::thread::spawn(move || {
                let mut client = postgres::Client::connect(&url, postgres::NoTls).unwrap();
                client.query_one(&query, &[]).unwrap().get::<_, String>(0)
            })
            .join()
            .expect("the query ran")
        }
        None => {
            let db = rusqlite::Connection::open(dir.join("telegate.db")).unwrap();
            db.busy_timeout(std::time::Duration::from_secs(30)).unwrap();
            db.query_row(query, [], |row| row.get(0)).unwrap()
        }
    }
}
