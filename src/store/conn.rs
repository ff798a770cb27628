//! [`Conn`]: one connection to the store, whichever engine holds it, with
//! the part of `rusqlite`'s interface the store's SQL is written against.

use std::fmt;
use std::path::PathBuf;

use rusqlite::ToSql;
use rusqlite::types::{FromSql, FromSqlError, Type, Value, ValueRef};

use super::postgres::{PgConn, PgUrl};

/// Where the store is.
#[derive(Clone, Debug)]
pub enum Location {
    /// A SQLite file (with its `-wal` and `-shm` files beside it).
    Sqlite(PathBuf),
    /// A PostgreSQL database; its `Display` hides the password.
    Postgres(Box<PgUrl>),
}

impl Location {
    /// `postgres://…` or `postgresql://…` is a PostgreSQL server; anything
    /// else is refused (a SQLite store is named by its path, not a URL).
    pub fn postgres(url: &str) -> Result<Location, StoreError> {
        PgUrl::parse(url).map(|url| Location::Postgres(Box::new(url)))
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Sqlite(path) => write!(f, "{}", path.display()),
            Location::Postgres(url) => write!(f, "{url}"),
        }
    }
}

/// Why the engine refused a statement.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("SQLite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("PostgreSQL: {}", postgres_message(.0))]
    Postgres(#[from] postgres::Error),
    #[error("cannot open the store {store}: {source}")]
    Open {
        store: String,
        source: std::io::Error,
    },
    #[error("the store needs WAL journaling, SQLite gave `{0}`")]
    NoWal(String),
    #[error("the store URL {0}")]
    Url(String),
    #[error("the query returned no row")]
    NoRow,
    #[error("the connection to the store was lost in the middle of a transaction")]
    Lost,
}

/// What went wrong, from the server's own message where there is one
/// (`postgres::Error` alone says only "db error").
fn postgres_message(error: &postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => match std::error::Error::source(error) {
            Some(source) => format!("{error}: {source}"),
            None => error.to_string(),
        },
    }
}

impl StoreError {
    /// Whether this is "the query returned no row".
    fn is_no_row(&self) -> bool {
        matches!(
            self,
            StoreError::NoRow | StoreError::Sqlite(rusqlite::Error::QueryReturnedNoRows)
        )
    }
}

/// `rusqlite`'s `optional()`, for the store's results.
pub(crate) trait OptionalExtension<T> {
    /// `Ok(None)` where the query returned no row.
    fn optional(self) -> Result<Option<T>, StoreError>;
}

impl<T> OptionalExtension<T> for Result<T, StoreError> {
    fn optional(self) -> Result<Option<T>, StoreError> {
        match self {
            Ok(value) => Ok(Some(value)),
            Err(error) if error.is_no_row() => Ok(None),
            Err(error) => Err(error),
        }
    }
}

/// The engine a connection speaks to, for the few statements each spells
/// its own way.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Dialect {
    Sqlite,
    Postgres,
}

/// A statement's parameters: `rusqlite::params![…]` or an array of values.
pub(crate) trait Params {
    /// Calls `f` with the parameters as `rusqlite` takes them.
    fn with_values<R>(&self, f: impl FnOnce(&[&dyn ToSql]) -> R) -> R;
}

impl Params for &[&dyn ToSql] {
    fn with_values<R>(&self, f: impl FnOnce(&[&dyn ToSql]) -> R) -> R {
        f(self)
    }
}

impl<T: ToSql, const N: usize> Params for [T; N] {
    fn with_values<R>(&self, f: impl FnOnce(&[&dyn ToSql]) -> R) -> R {
        let values: [&dyn ToSql; N] = std::array::from_fn(|i| &self[i] as &dyn ToSql);
        f(&values)
    }
}

/// One connection to the store.
pub(crate) struct Conn {
    backend: Backend,
}

enum Backend {
    Sqlite(rusqlite::Connection),
    Postgres(Box<PgConn>),
}

impl Conn {
    pub(crate) fn sqlite(conn: rusqlite::Connection) -> Conn {
        Conn {
            backend: Backend::Sqlite(conn),
        }
    }

    pub(super) fn postgres(conn: PgConn) -> Conn {
        Conn {
            backend: Backend::Postgres(Box::new(conn)),
        }
    }

    pub(crate) fn dialect(&self) -> Dialect {
        match self.backend {
            Backend::Sqlite(_) => Dialect::Sqlite,
            Backend::Postgres(_) => Dialect::Postgres,
        }
    }

    /// The SQLite connection underneath, for tests of what only SQLite has.
    #[cfg(test)]
    pub(crate) fn as_sqlite(&self) -> Option<&rusqlite::Connection> {
        match &self.backend {
            Backend::Sqlite(conn) => Some(conn),
            Backend::Postgres(_) => None,
        }
    }

    /// The SQLite connection underneath, for what only SQLite has (its
    /// pragmas, the schema's rebuilds).
    pub(crate) fn as_sqlite_mut(&mut self) -> Option<&mut rusqlite::Connection> {
        match &mut self.backend {
            Backend::Sqlite(conn) => Some(conn),
            Backend::Postgres(_) => None,
        }
    }

    /// Runs one statement; returns the rows it changed.
    pub(crate) fn execute(&self, sql: &str, params: impl Params) -> Result<usize, StoreError> {
        match &self.backend {
            Backend::Sqlite(conn) => {
                let mut statement = conn.prepare_cached(sql)?;
                Ok(params.with_values(|values| statement.execute(values))?)
            }
            Backend::Postgres(conn) => params.with_values(|values| conn.execute(sql, values)),
        }
    }

    /// The first row of `sql`, through `map` ([`StoreError::NoRow`] when
    /// there is none).
    pub(crate) fn query_row<T>(
        &self,
        sql: &str,
        params: impl Params,
        map: impl FnOnce(&Row<'_>) -> rusqlite::Result<T>,
    ) -> Result<T, StoreError> {
        match &self.backend {
            Backend::Sqlite(conn) => {
                let mut statement = conn.prepare_cached(sql)?;
                Ok(params.with_values(|values| {
                    statement.query_row(values, |row| map(&Row::Sqlite(row)))
                })?)
            }
            Backend::Postgres(conn) => {
                let rows = params.with_values(|values| conn.query(sql, values))?;
                let row = rows.first().ok_or(StoreError::NoRow)?;
                Ok(map(&Row::Postgres(row))?)
            }
        }
    }

    /// Every row of `sql`, through `map`.
    pub(crate) fn query_map<T>(
        &self,
        sql: &str,
        params: impl Params,
        mut map: impl FnMut(&Row<'_>) -> rusqlite::Result<T>,
    ) -> Result<std::vec::IntoIter<rusqlite::Result<T>>, StoreError> {
        let rows: Vec<rusqlite::Result<T>> = match &self.backend {
            Backend::Sqlite(conn) => {
                let mut statement = conn.prepare_cached(sql)?;
                params.with_values(|values| {
                    statement
                        .query_map(values, |row| map(&Row::Sqlite(row)))
                        .map(|rows| rows.collect())
                })?
            }
            Backend::Postgres(conn) => params
                .with_values(|values| conn.query(sql, values))?
                .iter()
                .map(|row| map(&Row::Postgres(row)))
                .collect(),
        };
        Ok(rows.into_iter())
    }

    /// `sql` as a statement to run (statements are cached per connection on
    /// both engines).
    pub(crate) fn prepare_cached<'a>(&'a self, sql: &'a str) -> Result<Statement<'a>, StoreError> {
        Ok(Statement { conn: self, sql })
    }

    /// Runs `sql`, which may hold several statements and no parameters.
    pub(crate) fn execute_batch(&self, sql: &str) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Sqlite(conn) => Ok(conn.execute_batch(sql)?),
            Backend::Postgres(conn) => conn.batch(sql),
        }
    }

    /// Begins the transaction of a write batch. On SQLite it takes the
    /// write lock at once; on PostgreSQL it also takes the store's write
    /// lock, so that batches of every daemon commit one after another and
    /// the event stream's cursors are handed out in commit order (a reader
    /// that saw cursor N never later finds a smaller one appear).
    pub(crate) fn begin_write(&self) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Sqlite(conn) => {
                conn.prepare_cached("BEGIN IMMEDIATE")?.execute([])?;
                Ok(())
            }
            Backend::Postgres(conn) => conn.begin_write(),
        }
    }

    /// Whether no transaction is open: SQLite rolls a transaction back by
    /// itself on a storage error; a PostgreSQL transaction is gone with its
    /// connection.
    pub(crate) fn is_autocommit(&self) -> bool {
        match &self.backend {
            Backend::Sqlite(conn) => conn.is_autocommit(),
            Backend::Postgres(conn) => conn.is_autocommit(),
        }
    }

    /// Commits the open transaction.
    pub(crate) fn commit(&self) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Sqlite(conn) => {
                conn.prepare_cached("COMMIT")?.execute([])?;
                Ok(())
            }
            Backend::Postgres(conn) => conn.end("COMMIT"),
        }
    }

    /// Rolls the open transaction back.
    pub(crate) fn rollback(&self) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Sqlite(conn) => Ok(conn.execute_batch("ROLLBACK")?),
            Backend::Postgres(conn) => conn.end("ROLLBACK"),
        }
    }

    /// Runs `f` in a transaction of its own: committed if it returns `Ok`,
    /// rolled back if it (or the commit) fails.
    pub(crate) fn in_transaction<T, E: From<StoreError>>(
        &self,
        f: impl FnOnce(&Conn) -> Result<T, E>,
    ) -> Result<T, E> {
        match &self.backend {
            Backend::Sqlite(conn) => conn.execute_batch("BEGIN").map_err(StoreError::from)?,
            Backend::Postgres(conn) => conn.begin()?,
        }
        let outcome = f(self).and_then(|value| Ok(self.commit().map(|()| value)?));
        if outcome.is_err() && !self.is_autocommit() {
            let _ = self.rollback();
        }
        outcome
    }

    /// Rows changed since the connection opened.
    pub(crate) fn total_changes(&self) -> u64 {
        match &self.backend {
            Backend::Sqlite(conn) => conn.total_changes(),
            Backend::Postgres(conn) => conn.total_changes(),
        }
    }
}

/// A statement of a [`Conn`], run with parameters.
pub(crate) struct Statement<'a> {
    conn: &'a Conn,
    sql: &'a str,
}

impl Statement<'_> {
    pub(crate) fn execute(&mut self, params: impl Params) -> Result<usize, StoreError> {
        self.conn.execute(self.sql, params)
    }

    pub(crate) fn query_row<T>(
        &mut self,
        params: impl Params,
        map: impl FnOnce(&Row<'_>) -> rusqlite::Result<T>,
    ) -> Result<T, StoreError> {
        self.conn.query_row(self.sql, params, map)
    }

    pub(crate) fn query_map<T>(
        &mut self,
        params: impl Params,
        map: impl FnMut(&Row<'_>) -> rusqlite::Result<T>,
    ) -> Result<std::vec::IntoIter<rusqlite::Result<T>>, StoreError> {
        self.conn.query_map(self.sql, params, map)
    }
}

/// One row of a result, read with `rusqlite`'s `FromSql` on both engines.
pub(crate) enum Row<'a> {
    Sqlite(&'a rusqlite::Row<'a>),
    Postgres(&'a postgres::Row),
}

/// A column by position or by name.
pub(crate) trait ColumnIndex: Copy {
    fn position(self, row: &Row<'_>) -> rusqlite::Result<usize>;
}

impl ColumnIndex for usize {
    fn position(self, _: &Row<'_>) -> rusqlite::Result<usize> {
        Ok(self)
    }
}

impl ColumnIndex for &str {
    fn position(self, row: &Row<'_>) -> rusqlite::Result<usize> {
        let found = match row {
            Row::Sqlite(row) => row.as_ref().column_index(self).ok(),
            Row::Postgres(row) => row.columns().iter().position(|c| c.name() == self),
        };
        found.ok_or_else(|| rusqlite::Error::InvalidColumnName(self.to_owned()))
    }
}

impl Row<'_> {
    /// Column `idx` as a `T`.
    pub(crate) fn get<I: ColumnIndex, T: FromSql>(&self, idx: I) -> rusqlite::Result<T> {
        let idx = idx.position(self)?;
        match self {
            Row::Sqlite(row) => row.get(idx),
            Row::Postgres(row) => {
                let value = super::postgres::column_value(row, idx)?;
                T::column_result(ValueRef::from(&value))
                    .map_err(|error| from_sql_error(row, idx, &value, error))
            }
        }
    }
}

/// `rusqlite`'s error for a PostgreSQL column that does not read as asked.
fn from_sql_error(
    row: &postgres::Row,
    idx: usize,
    value: &Value,
    error: FromSqlError,
) -> rusqlite::Error {
    let name = row
        .columns()
        .get(idx)
        .map_or_else(String::new, |c| c.name().to_owned());
    match error {
        FromSqlError::InvalidType => {
            rusqlite::Error::InvalidColumnType(idx, name, value_type(value))
        }
        FromSqlError::OutOfRange(n) => rusqlite::Error::IntegralValueOutOfRange(idx, n),
        FromSqlError::Other(source) => {
            rusqlite::Error::FromSqlConversionFailure(idx, value_type(value), source)
        }
        other => rusqlite::Error::FromSqlConversionFailure(idx, value_type(value), Box::new(other)),
    }
}

fn value_type(value: &Value) -> Type {
    match value {
        Value::Null => Type::Null,
        Value::Integer(_) => Type::Integer,
        Value::Real(_) => Type::Real,
        Value::Text(_) => Type::Text,
        Value::Blob(_) => Type::Blob,
    }
}
