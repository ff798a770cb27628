//! Opening the store: for SQLite, the file with owner-only permissions and
//! WAL with full sync; for either engine, a small pool of read connections
//! beside the one writer.
//!
//! The file is created mode 0600 before SQLite touches it; SQLite gives its
//! `-wal` and `-shm` files the mode of the database file.

use std::fs::OpenOptions;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use rusqlite::config::DbConfig;
use rusqlite::{Connection, OpenFlags};

use super::{Conn, Location, StoreError};

/// How long a connection waits on a lock before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// Idle read connections kept for reuse.
const MAX_IDLE_READERS: usize = 8;
/// Prepared statements each connection keeps: more than the store, the
/// event stream and the writer's savepoints use (about 40), so no hot
/// statement is ever parsed and planned again (rusqlite's default is 16).
const STATEMENT_CACHE: usize = 96;

/// What every connection of the store is set to: a statement cache that
/// holds every hot statement, and plans that never depend on bound values
/// (the query planner stability guarantee). Without it SQLite re-prepares
/// a statement each time a `?` it checked against a partial index (every
/// table here has one) is bound to a new value: parsing and planning on
/// every job.
fn configure(conn: &Connection) -> Result<(), StoreError> {
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)?;
    Ok(())
}

/// Creates the database file owner-only (or narrows an existing one).
fn create_owner_only(path: &Path) -> Result<(), StoreError> {
    let io = |source| StoreError::Open {
        store: path.display().to_string(),
        source,
    };
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
        .map_err(io)?;
    let metadata = file.metadata().map_err(io)?;
    if metadata.permissions().mode() & 0o777 != 0o600 {
        file.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(io)?;
    }
    Ok(())
}

/// The connection that writes: WAL, `synchronous=FULL`, so a commit that
/// returned survives a crash or power loss.
fn open_sqlite_writer(path: &Path) -> Result<Connection, StoreError> {
    create_owner_only(path)?;
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    configure(&conn)?;
    let mode: String = conn.pragma_update_and_check(None, "journal_mode", "wal", |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::NoWal(mode));
    }
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", true)?;
    Ok(conn)
}

/// The connection that writes to the store at `location`.
pub(crate) fn open_writer(location: &Location) -> Result<Conn, StoreError> {
    match location {
        Location::Sqlite(path) => open_sqlite_writer(path).map(Conn::sqlite),
        Location::Postgres(url) => url.connect(),
    }
}

/// Read connections, handed out one per read (read-only on SQLite).
pub(crate) struct Readers {
    location: Location,
    idle: Mutex<Vec<Conn>>,
}

impl Readers {
    pub(crate) fn new(location: &Location) -> Self {
        Readers {
            location: location.clone(),
            idle: Mutex::new(Vec::new()),
        }
    }

    fn open(&self) -> Result<Conn, StoreError> {
        match &self.location {
            Location::Sqlite(path) => {
                let conn = Connection::open_with_flags(
                    path,
                    OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                )?;
                configure(&conn)?;
                Ok(Conn::sqlite(conn))
            }
            Location::Postgres(url) => url.connect(),
        }
    }

    /// Runs `read` on an idle connection (or a new one), then keeps it.
    pub(crate) fn with<T, E: From<StoreError>>(
        &self,
        read: impl FnOnce(&Conn) -> Result<T, E>,
    ) -> Result<T, E> {
        let idle = self.idle.lock().ok().and_then(|mut idle| idle.pop());
        let conn = match idle {
            Some(conn) => conn,
            None => self.open()?,
        };
        let result = read(&conn);
        if let Ok(mut idle) = self.idle.lock()
            && idle.len() < MAX_IDLE_READERS
        {
            idle.push(conn);
        }
        result
    }
}
