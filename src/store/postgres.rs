//! The PostgreSQL engine: a blocking client per connection (the store's
//! writer is a thread of its own and reads run on blocking threads, as with
//! SQLite), statements prepared once per connection, parameters rewritten
//! from `?N` to `$N`, and values mapped onto SQLite's value model.
//!
//! A connection the server dropped (a restart, a failover) is opened again
//! at the next statement; the statement that found it dropped fails with a
//! storage error, which the queue retries like a full disk.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::error::Error;
use std::fmt;
use std::time::Duration;

use bytes::BytesMut;
use postgres::types::{IsNull, ToSql as PgToSql, Type};
use postgres::{Client, NoTls};
use rusqlite::ToSql as SqliteToSql;
use rusqlite::types::{ToSqlOutput, Value, ValueRef};

use super::conn::{Conn, StoreError};

/// How long opening a connection may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The key of the advisory lock every write batch holds until it commits.
const WRITE_LOCK: i64 = 0x7465_6c65_6761_7465; // "telegate"

/// A PostgreSQL URL; shown without its password.
#[derive(Clone)]
pub struct PgUrl {
    config: postgres::Config,
    shown: String,
}

impl PgUrl {
    pub(super) fn parse(url: &str) -> Result<PgUrl, StoreError> {
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err(StoreError::Url(
                "must start with postgres:// or postgresql://".into(),
            ));
        }
        let mut config: postgres::Config = url.parse().map_err(|error: postgres::Error| {
            // The parser's message names the part it refused, not its value.
            StoreError::Url(format!("is not a PostgreSQL URL: {error}"))
        })?;
        config.connect_timeout(CONNECT_TIMEOUT);
        config.application_name("telegate");
        let shown = shown(&config);
        Ok(PgUrl { config, shown })
    }

    /// The same server, database `name`.
    pub fn with_database(&self, name: &str) -> PgUrl {
        let mut config = self.config.clone();
        config.dbname(name);
        let shown = shown(&config);
        PgUrl { config, shown }
    }

    /// A new connection.
    pub(crate) fn connect(&self) -> Result<Conn, StoreError> {
        Ok(Conn::postgres(PgConn::open(self.clone())?))
    }

    /// A connection made at its first statement (a server down now is
    /// that statement's error, not the caller's).
    pub(crate) fn connect_lazily(&self) -> Conn {
        Conn::postgres(PgConn::with_client(self.clone(), None))
    }
}

/// `postgres://USER@HOST:PORT/DB`, never the password.
fn shown(config: &postgres::Config) -> String {
    let host = config
        .get_hosts()
        .first()
        .map(|host| match host {
            postgres::config::Host::Tcp(name) => name.clone(),
            postgres::config::Host::Unix(path) => path.display().to_string(),
        })
        .unwrap_or_else(|| "localhost".into());
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let user = config.get_user().unwrap_or("");
    let db = config.get_dbname().unwrap_or(user);
    format!("postgres://{user}@{host}:{port}/{db}")
}

impl fmt::Display for PgUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.shown)
    }
}

impl fmt::Debug for PgUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PgUrl({})", self.shown)
    }
}

/// One PostgreSQL connection of the store.
pub(crate) struct PgConn {
    url: PgUrl,
    client: RefCell<Option<Client>>,
    /// Prepared statements, by the SQL the store wrote.
    statements: RefCell<HashMap<String, postgres::Statement>>,
    changes: Cell<u64>,
    /// Whether a transaction is open. A connection lost inside one is not
    /// made again until the transaction is ended: the server rolled back
    /// what it had done, and what comes after must not commit on its own.
    in_transaction: Cell<bool>,
}

/// Runs `f` where a blocking PostgreSQL client may run: the client drives
/// its own runtime, which cannot start inside another one, so on a thread
/// of tokio's (other than its blocking pool) `f` runs on a thread of its own.
pub(crate) fn off_runtime<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    if tokio::runtime::Handle::try_current().is_err() {
        return f();
    }
    std::thread::scope(|scope| {
        scope
            .spawn(f)
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

impl Drop for PgConn {
    fn drop(&mut self) {
        // Closing the client blocks on its runtime: off tokio's threads.
        if let Some(client) = self.client.get_mut().take() {
            if tokio::runtime::Handle::try_current().is_ok() {
                let _ = std::thread::Builder::new()
                    .name("telegate-store-close".into())
                    .spawn(move || drop(client));
            } else {
                drop(client);
            }
        }
    }
}

impl PgConn {
    fn open(url: PgUrl) -> Result<PgConn, StoreError> {
        let client = off_runtime(|| url.config.connect(NoTls))?;
        Ok(PgConn::with_client(url, Some(client)))
    }

    fn with_client(url: PgUrl, client: Option<Client>) -> PgConn {
        PgConn {
            url,
            client: RefCell::new(client),
            statements: RefCell::new(HashMap::new()),
            changes: Cell::new(0),
            in_transaction: Cell::new(false),
        }
    }

    /// Runs `run` on the client, connecting again first if the last one
    /// was dropped; a dropped connection forgets its prepared statements.
    fn with<T>(
        &self,
        run: impl FnOnce(
            &mut Client,
            &RefCell<HashMap<String, postgres::Statement>>,
        ) -> Result<T, postgres::Error>,
    ) -> Result<T, StoreError> {
        let mut slot = self.client.borrow_mut();
        if slot.as_ref().is_none_or(Client::is_closed) {
            if self.in_transaction.get() {
                return Err(StoreError::Lost);
            }
            self.statements.borrow_mut().clear();
            *slot = None;
            *slot = Some(self.url.config.connect(NoTls)?);
        }
        let client = slot.as_mut().expect("connected above");
        let outcome = run(client, &self.statements);
        if client.is_closed() {
            *slot = None;
        }
        Ok(outcome?)
    }

    fn statement(
        client: &mut Client,
        cache: &RefCell<HashMap<String, postgres::Statement>>,
        sql: &str,
    ) -> Result<postgres::Statement, postgres::Error> {
        if let Some(statement) = cache.borrow().get(sql) {
            return Ok(statement.clone());
        }
        let translated = translate(sql);
        let statement = client.prepare(&translated).inspect_err(|error| {
            // Every statement is telegate's own: one PostgreSQL cannot
            // prepare is a bug, named here with the server's reason.
            if let Some(db) = error.as_db_error() {
                tracing::error!(statement = %translated, error = db.message(), "PostgreSQL cannot prepare a statement");
            }
        })?;
        cache.borrow_mut().insert(sql.to_owned(), statement.clone());
        Ok(statement)
    }

    pub(super) fn execute(
        &self,
        sql: &str,
        params: &[&dyn SqliteToSql],
    ) -> Result<usize, StoreError> {
        let outputs = outputs(params)?;
        let values = pg_values(&outputs);
        let refs = as_params(&values);
        let changed = self.with(|client, cache| {
            let statement = Self::statement(client, cache, sql)?;
            client.execute(&statement, &refs)
        })?;
        self.changes.set(self.changes.get() + changed);
        Ok(usize::try_from(changed).unwrap_or(usize::MAX))
    }

    pub(super) fn query(
        &self,
        sql: &str,
        params: &[&dyn SqliteToSql],
    ) -> Result<Vec<postgres::Row>, StoreError> {
        let outputs = outputs(params)?;
        let values = pg_values(&outputs);
        let refs = as_params(&values);
        self.with(|client, cache| {
            let statement = Self::statement(client, cache, sql)?;
            client.query(&statement, &refs)
        })
    }

    pub(super) fn batch(&self, sql: &str) -> Result<(), StoreError> {
        self.with(|client, _| client.batch_execute(sql))
    }

    pub(super) fn begin(&self) -> Result<(), StoreError> {
        // Whatever was open before ended with its connection.
        self.in_transaction.set(false);
        self.batch("BEGIN")?;
        self.in_transaction.set(true);
        Ok(())
    }

    pub(super) fn begin_write(&self) -> Result<(), StoreError> {
        self.begin()?;
        self.execute(
            "SELECT pg_advisory_xact_lock(?1)",
            &[&WRITE_LOCK as &dyn SqliteToSql],
        )
        .map(drop)
    }

    /// Ends the open transaction with `sql` (`COMMIT` or `ROLLBACK`). On a
    /// lost connection a rollback is already done, and a commit failed.
    pub(super) fn end(&self, sql: &str) -> Result<(), StoreError> {
        let ended = self.batch(sql);
        self.in_transaction.set(false);
        ended
    }

    /// Whether no transaction is open (or the one open was lost with its
    /// connection, so none is, on the server).
    pub(super) fn is_autocommit(&self) -> bool {
        !self.in_transaction.get() || self.client.borrow().as_ref().is_none_or(Client::is_closed)
    }

    pub(super) fn total_changes(&self) -> u64 {
        self.changes.get()
    }
}

/// Listens on `channel` until `stop`, calling `heard` with each
/// notification's payload; a dropped connection is opened again (after a
/// second), so a restarted server is heard from again.
pub(crate) fn listen(
    url: &PgUrl,
    channel: &str,
    stop: &std::sync::atomic::AtomicBool,
    mut heard: impl FnMut(&str),
) {
    use postgres::fallible_iterator::FallibleIterator;
    use std::sync::atomic::Ordering;
    while !stop.load(Ordering::Acquire) {
        let listening = url.config.connect(NoTls).and_then(|mut client| {
            client
                .batch_execute(&format!("LISTEN {channel}"))
                .map(|()| client)
        });
        let mut client = match listening {
            Ok(client) => client,
            Err(error) => {
                tracing::warn!(error = %StoreError::from(error), "cannot listen for other daemons' work; retrying");
                std::thread::sleep(Duration::from_secs(1));
                continue;
            }
        };
        while !stop.load(Ordering::Acquire) && !client.is_closed() {
            let mut notifications = client.notifications();
            let mut waiting = notifications.timeout_iter(Duration::from_secs(1));
            loop {
                match waiting.next() {
                    Ok(Some(notification)) => heard(notification.payload()),
                    Ok(None) => break,
                    Err(error) => {
                        tracing::warn!(error = %StoreError::from(error), "the listening connection failed");
                        break;
                    }
                }
            }
        }
    }
}

/// The store's SQL as PostgreSQL reads it: `?N` → `$N` (a bare `?` takes
/// the number after the highest so far, as SQLite numbers them), and
/// SQLite's planner hints dropped, PostgreSQL's planner choosing for
/// itself: `INDEXED BY name`, and `CROSS JOIN … ON` (SQLite's way to fix
/// the join order) read as `JOIN … ON`. Quoted text is left alone.
fn translate(sql: &str) -> String {
    let mut out = placeholders(sql).replace(" CROSS JOIN ", " JOIN ");
    while let Some(at) = out.find("INDEXED BY ") {
        let name_end = out[at + "INDEXED BY ".len()..]
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .map_or(out.len(), |n| at + "INDEXED BY ".len() + n);
        out.replace_range(at..name_end, "");
    }
    out
}

fn placeholders(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 8);
    let mut highest = 0u32;
    let mut chars = sql.chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                quoted = !quoted;
                out.push(c);
            }
            '?' if !quoted => {
                let mut digits = String::new();
                while let Some(d) = chars.peek().copied().filter(char::is_ascii_digit) {
                    digits.push(d);
                    chars.next();
                }
                let n = match digits.parse::<u32>() {
                    Ok(n) => n,
                    Err(_) => highest + 1,
                };
                highest = highest.max(n);
                out.push('$');
                out.push_str(&n.to_string());
            }
            _ => out.push(c),
        }
    }
    out
}

fn outputs<'a>(params: &'a [&dyn SqliteToSql]) -> Result<Vec<ToSqlOutput<'a>>, StoreError> {
    params
        .iter()
        .map(|param| param.to_sql().map_err(StoreError::from))
        .collect()
}

fn pg_values<'a>(outputs: &'a [ToSqlOutput<'a>]) -> Vec<PgValue<'a>> {
    outputs
        .iter()
        .map(|output| {
            PgValue(match output {
                ToSqlOutput::Borrowed(value) => *value,
                ToSqlOutput::Owned(value) => ValueRef::from(value),
                // The store binds no zero-blobs or arrays.
                _ => ValueRef::Null,
            })
        })
        .collect()
}

fn as_params<'a>(values: &'a [PgValue<'a>]) -> Vec<&'a (dyn PgToSql + Sync)> {
    values.iter().map(|v| v as &(dyn PgToSql + Sync)).collect()
}

/// A SQLite value bound to a PostgreSQL parameter of whatever type the
/// server inferred for it.
#[derive(Debug)]
struct PgValue<'a>(ValueRef<'a>);

type BoxError = Box<dyn Error + Sync + Send>;

impl PgToSql for PgValue<'_> {
    fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> Result<IsNull, BoxError> {
        match self.0 {
            ValueRef::Null => Ok(IsNull::Yes),
            ValueRef::Integer(n) => match *ty {
                Type::INT8 => PgToSql::to_sql(&n, ty, out),
                Type::INT4 => PgToSql::to_sql(&i32::try_from(n)?, ty, out),
                Type::INT2 => PgToSql::to_sql(&i16::try_from(n)?, ty, out),
                Type::BOOL => PgToSql::to_sql(&(n != 0), ty, out),
                Type::FLOAT8 => PgToSql::to_sql(&(n as f64), ty, out),
                Type::TEXT | Type::VARCHAR | Type::UNKNOWN => {
                    PgToSql::to_sql(&n.to_string(), ty, out)
                }
                _ => Err(mismatch("an integer", ty)),
            },
            ValueRef::Real(x) => match *ty {
                Type::FLOAT8 => PgToSql::to_sql(&x, ty, out),
                Type::FLOAT4 => PgToSql::to_sql(&(x as f32), ty, out),
                _ => Err(mismatch("a real", ty)),
            },
            ValueRef::Text(bytes) => {
                let text = std::str::from_utf8(bytes)?;
                match *ty {
                    Type::BYTEA => PgToSql::to_sql(&bytes, ty, out),
                    Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN => {
                        PgToSql::to_sql(&text, ty, out)
                    }
                    _ => Err(mismatch("text", ty)),
                }
            }
            ValueRef::Blob(bytes) => match *ty {
                Type::BYTEA => PgToSql::to_sql(&bytes, ty, out),
                _ => Err(mismatch("a blob", ty)),
            },
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    postgres::types::to_sql_checked!();
}

fn mismatch(what: &str, ty: &Type) -> BoxError {
    format!("{what} cannot be bound to a parameter of type {ty}").into()
}

/// Column `idx` of `row` in SQLite's value model.
pub(super) fn column_value(row: &postgres::Row, idx: usize) -> rusqlite::Result<Value> {
    let failed = |error: postgres::Error| {
        rusqlite::Error::FromSqlConversionFailure(idx, rusqlite::types::Type::Null, Box::new(error))
    };
    let Some(column) = row.columns().get(idx) else {
        return Err(rusqlite::Error::InvalidColumnIndex(idx));
    };
    let value = match *column.type_() {
        Type::INT8 => row
            .try_get::<_, Option<i64>>(idx)
            .map(|v| v.map(Value::Integer)),
        Type::INT4 => row
            .try_get::<_, Option<i32>>(idx)
            .map(|v| v.map(|n| Value::Integer(n.into()))),
        Type::INT2 => row
            .try_get::<_, Option<i16>>(idx)
            .map(|v| v.map(|n| Value::Integer(n.into()))),
        Type::BOOL => row
            .try_get::<_, Option<bool>>(idx)
            .map(|v| v.map(|b| Value::Integer(b.into()))),
        Type::FLOAT8 => row
            .try_get::<_, Option<f64>>(idx)
            .map(|v| v.map(Value::Real)),
        Type::FLOAT4 => row
            .try_get::<_, Option<f32>>(idx)
            .map(|v| v.map(|x| Value::Real(x.into()))),
        Type::BYTEA => row
            .try_get::<_, Option<Vec<u8>>>(idx)
            .map(|v| v.map(Value::Blob)),
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME => row
            .try_get::<_, Option<String>>(idx)
            .map(|v| v.map(Value::Text)),
        ref other => {
            return Err(rusqlite::Error::FromSqlConversionFailure(
                idx,
                rusqlite::types::Type::Null,
                format!(
                    "column `{}` is {other}; the store reads BIGINT, TEXT, BYTEA, DOUBLE PRECISION",
                    column.name()
                )
                .into(),
            ));
        }
    };
    value.map(|v| v.unwrap_or(Value::Null)).map_err(failed)
}

/// Whether PostgreSQL's `error` is the storage's (a dropped connection, a
/// full disk, a server shutting down, a conflict worth retrying) rather
/// than the data's.
pub(crate) fn is_storage_postgres(error: &postgres::Error) -> bool {
    if error.is_closed() {
        return true;
    }
    match error.code() {
        // No SQL state: the error came from the connection, not a statement.
        None => true,
        Some(code) => {
            let code = code.code();
            code.starts_with("08")
                || code.starts_with("53")
                || code.starts_with("57P")
                || code == "40001"
                || code == "40P01"
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_numbered_as_sqlite_numbers_them() {
        assert_eq!(placeholders("a = ?1 AND b = ?12"), "a = $1 AND b = $12");
        assert_eq!(
            placeholders("VALUES (?, ?, ?2, ?)"),
            "VALUES ($1, $2, $2, $3)"
        );
        assert_eq!(placeholders("x = '?1' AND y = ?1"), "x = '?1' AND y = $1");
    }

    #[test]
    fn index_hints_are_dropped() {
        assert_eq!(
            translate("SELECT id FROM jobs INDEXED BY jobs_active WHERE chat = ?1"),
            "SELECT id FROM jobs  WHERE chat = $1"
        );
    }

    #[test]
    fn a_url_is_shown_without_its_password() {
        let url = PgUrl::parse("postgres://bob:hunter2@127.0.0.1:5433/jobs").unwrap();
        assert_eq!(url.to_string(), "postgres://bob@127.0.0.1:5433/jobs");
        assert!(!format!("{url:?}").contains("hunter2"));
        let other = url.with_database("events");
        assert_eq!(other.to_string(), "postgres://bob@127.0.0.1:5433/events");
    }

    #[test]
    fn a_url_of_another_scheme_is_refused() {
        let error = PgUrl::parse("mysql://x@y/z").unwrap_err().to_string();
        assert!(error.contains("postgres://"), "{error}");
    }
}
