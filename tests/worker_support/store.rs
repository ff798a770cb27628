//! The store a test's daemon (or in-process queue) runs on.
//!
//! By default the state dir's SQLite file. When `TELEGATE_TEST_POSTGRES`
//! names a PostgreSQL server (`.ci/run`'s second pass starts one), every
//! state dir gets a database of its own there, created on first use and
//! found again (its name is kept in the state dir) when a test restarts
//! its daemon on the same dir.

// Each test binary uses part of it.
#![allow(dead_code)]

use std::path::Path;

use telegate::store::{Location, PgUrl};

/// The server the suite runs against, if any: its URL as given (the
/// test server trusts loopback clients, so it holds no password) and
/// parsed.
fn server() -> Option<(String, PgUrl)> {
    let url = std::env::var("TELEGATE_TEST_POSTGRES").ok()?;
    match Location::postgres(&url) {
        Ok(Location::Postgres(parsed)) => Some((url, *parsed)),
        _ => panic!("TELEGATE_TEST_POSTGRES is not a postgres:// URL"),
    }
}

/// The PostgreSQL URL of `dir`'s database (created now if new), or `None`
/// when the suite runs on SQLite.
pub fn postgres_url(dir: &Path) -> Option<String> {
    let (admin, server) = server()?;
    std::fs::create_dir_all(dir).expect("the state dir");
    let marker = dir.join("postgres-database");
    let name = match std::fs::read_to_string(&marker) {
        Ok(name) => name,
        Err(_) => {
            let name = format!("t_{:016x}", rand::random::<u64>());
            let create = format!("CREATE DATABASE {name}");
            // The blocking client runs a runtime of its own: off tokio's.
            std::thread::spawn(move || {
                let mut client = postgres::Client::connect(&admin, postgres::NoTls)
                    .expect("the test server takes connections");
                client.batch_execute(&create).expect("a test database");
            })
            .join()
            .expect("the test database is created");
            std::fs::write(&marker, &name).expect("the test database's name is kept");
            name
        }
    };
    Some(server.with_database(&name).to_string())
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
