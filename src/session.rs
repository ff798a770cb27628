//! The bots' MTProto sessions: a SQLite file per bot, or rows of the shared
//! PostgreSQL store.
//!
//! grammers keeps its session (home DC, auth keys, cached peers, update state)
//! behind the `grammers_session::Session` trait. Its stock SQLite storage uses
//! libsql, which cannot link beside the bundled SQLite telegate's queue uses,
//! so telegate implements the trait itself over the store layer's [`Conn`].
//!
//! - On the embedded store a session is a file in `DIR/sessions/`, created
//!   mode 0600 (it holds the auth key); the sandbox writes a pre-provisioned
//!   auth key into it with [`SessionStore::provision`].
//! - On a shared PostgreSQL store ([`Sessions`]) a session is the rows of
//!   its bot's name in that store's `session_*` tables, so a bot that moves
//!   to another daemon (its lease taken over) moves with its auth key and
//!   its update state: the new holder catches up from the last state the
//!   old one stored, never from its own stale copy. A bot whose rows are
//!   not there yet starts from its file, which is imported once.
//!
//! Update state is only written when grammers is told to write it, so the
//! inbound pipeline decides when the stored pts may advance (after the
//! events it covers are stored; see `inbound`).

use std::collections::HashMap;
use std::fmt;
use std::net::{Ipv4Addr, SocketAddrV4, SocketAddrV6};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use grammers_session::types::{
    ChannelKind, ChannelState, DcOption, PeerAuth, PeerId, PeerInfo, PeerKind, UpdateState,
    UpdatesState,
};
use grammers_session::{BoxFuture, Session};
use rusqlite::{Connection, params};

use crate::config::{BotName, StateDir};
use crate::private_file;
use crate::queue::Lease;
use crate::store::{Conn, Dialect, Location, OptionalExtension, Row, StoreError, off_runtime};

/// The DC id a fresh session calls home (Telegram's default for new clients).
const DEFAULT_HOME_DC: i32 = 2;

/// Schema of the session file; bump `SCHEMA_VERSION` and add a step to
/// [`migrate`] for every change. (On PostgreSQL the tables are the store's,
/// migrated with it.)
const SCHEMA_VERSION: i32 = 2;

/// The key of a file's rows: the file is the session.
const FILE_KEY: &str = "";

/// Why the session could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("session file {path}: {source}")]
    Open {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("cannot create the session file {path}: {source}")]
    Create {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("session storage: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("session storage: {0}")]
    Store(#[from] StoreError),
    #[error("a session read or write was interrupted (its task panicked)")]
    Interrupted,
    #[error(
        "the session of bot {bot} is no longer this daemon's to write: its lease changed hands"
    )]
    Fenced { bot: String },
    #[error("session holds a malformed {0}")]
    Corrupt(&'static str),
    #[error("session file has schema version {found}, newer than this telegate ({SCHEMA_VERSION})")]
    TooNew { found: i32 },
}

impl crate::queue::StorageRefusal for SessionError {
    fn is_storage(&self) -> bool {
        match self {
            SessionError::Sqlite(error) => crate::queue::is_storage_sqlite(error),
            SessionError::Store(error) => crate::queue::is_storage(error),
            _ => false,
        }
    }
}

/// Where a daemon keeps its bots' sessions: a file per bot beside it, or
/// (on a shared PostgreSQL store) that store, through one connection the
/// daemon's sessions share.
#[derive(Clone)]
pub struct Sessions {
    state: StateDir,
    shared: Option<Arc<Mutex<Conn>>>,
}

impl fmt::Debug for Sessions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sessions")
            .field("shared", &self.shared.is_some())
            .finish_non_exhaustive()
    }
}

impl Sessions {
    /// The sessions of a daemon over `state` whose store is at `location`.
    /// The shared store is connected to at the first session's first use.
    pub fn new(state: &StateDir, location: &Location) -> Sessions {
        let shared = match location {
            Location::Sqlite(_) => None,
            Location::Postgres(url) => Some(Arc::new(Mutex::new(url.connect_lazily()))),
        };
        Sessions {
            state: state.clone(),
            shared,
        }
    }

    /// Whether the sessions live in the shared store.
    pub fn is_shared(&self) -> bool {
        self.shared.is_some()
    }

    /// The session of the bot `name`. In the shared store, a bot that has
    /// no session there yet gets the one in its file, if there is a file.
    /// (On the shared store, off the runtime's threads.)
    ///
    /// Under `lease` (on the shared store), every write first checks that
    /// the bot's lease is still that one: a write that reaches the store
    /// after the bot moved to another daemon (this one cut off from the
    /// store, then healed) is refused with [`SessionError::Fenced`] instead
    /// of overwriting the new holder's update state.
    pub async fn open(
        &self,
        name: &BotName,
        lease: Option<&Lease>,
    ) -> Result<SessionStore, SessionError> {
        let file = self.state.bot_session(name);
        let Some(db) = &self.shared else {
            return SessionStore::open(&file);
        };
        let (db, name, lease) = (Arc::clone(db), name.clone(), lease.cloned());
        tokio::task::spawn_blocking(move || Sessions::open_shared(db, &name, lease, &file))
            .await
            .map_err(|_| SessionError::Interrupted)?
    }

    fn open_shared(
        db: Arc<Mutex<Conn>>,
        name: &BotName,
        lease: Option<Lease>,
        file: &Path,
    ) -> Result<SessionStore, SessionError> {
        let store = SessionStore::over(Arc::clone(&db), name.as_str().to_owned(), lease.clone())?;
        if store.rows.is_empty()? && file.exists() {
            let image = SessionStore::open(file)?.rows.image()?;
            store.rows.write_image(&image)?;
            tracing::info!(bot = %name, file = %file.display(), "session imported into the shared store");
            return SessionStore::over(db, name.as_str().to_owned(), lease);
        }
        Ok(store)
    }
}

/// A grammers session: a SQLite file's, or a bot's rows in the shared store.
///
/// On a shared store every read and write the client asks for runs on
/// tokio's blocking pool: a database that does not answer (a partition)
/// then holds that call only, never one of the runtime's threads, and the
/// bot can be stopped while the call waits.
#[derive(Clone)]
pub struct SessionStore {
    rows: Arc<SessionRows>,
}

/// What a [`SessionStore`] reads and writes through.
struct SessionRows {
    /// A file's own connection, or the one the daemon's sessions share.
    db: Arc<Mutex<Conn>>,
    /// Whose rows: [`FILE_KEY`] in a file, the bot's name in a shared store.
    key: String,
    /// The bot's lease the rows are written under (a shared store's).
    lease: Option<Lease>,
    /// `home_dc_id` and `dc_option` are called on every request: served from
    /// memory, written through to the file.
    dcs: Mutex<DcCache>,
    /// Peers read or written so far, by Bot API dialog id, written through
    /// to the file. grammers caches every user of every update it sees and
    /// the sender looks up each chat's access hash per message: from
    /// memory, an unchanged peer costs no SQL and no write transaction.
    peers: Mutex<HashMap<i64, PeerRow>>,
}

struct DcCache {
    home_dc: i32,
    options: HashMap<i32, DcOption>,
}

/// All of one session, as it moves from a file into the shared store.
struct SessionImage {
    home_dc: Option<i32>,
    options: Vec<DcOption>,
    peers: Vec<PeerRow>,
    state: UpdatesState,
}

impl fmt::Debug for SessionStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print auth keys.
        f.debug_struct("SessionStore").finish_non_exhaustive()
    }
}

impl SessionStore {
    /// Opens the session file at `path`, creating it (mode 0600) if needed.
    pub fn open(path: &Path) -> Result<Self, SessionError> {
        private_file::create(path).map_err(|source| SessionError::Create {
            path: path.to_owned(),
            source,
        })?;
        let conn = Connection::open(path).map_err(|source| SessionError::Open {
            path: path.to_owned(),
            source,
        })?;
        Self::from_connection(conn)
    }

    /// A session that lives in memory only (tests, one-off tools).
    pub fn in_memory() -> Result<Self, SessionError> {
        Self::from_connection(Connection::open_in_memory()?)
    }

    /// Writes a pre-provisioned home DC (address and auth key) into the
    /// session at `path`, so the client talks encrypted MTProto at once
    /// without a DH exchange. The sandbox uses it; Telegram never needs it.
    pub fn provision(
        path: &Path,
        dc_id: i32,
        addr: SocketAddrV4,
        auth_key: [u8; 256],
    ) -> Result<Self, SessionError> {
        let store = Self::open(path)?;
        store.rows.write_home_dc(dc_id)?;
        store.add_dc(dc_id, addr, auth_key)?;
        Ok(store)
    }

    /// Records DC `dc_id` at `addr` with a provisioned auth key (the
    /// sandbox's other DCs), leaving the home DC as it is.
    pub fn add_dc(
        &self,
        dc_id: i32,
        addr: SocketAddrV4,
        auth_key: [u8; 256],
    ) -> Result<(), SessionError> {
        self.rows.write_dc_option(&DcOption {
            id: dc_id,
            ipv4: addr,
            ipv6: SocketAddrV6::new(addr.ip().to_ipv6_mapped(), addr.port(), 0, 0),
            auth_key: Some(auth_key),
        })
    }

    /// Points the home DC at `addr`, keeping its auth key (the config's
    /// `dc_addr`: a sandbox restarted on another port). Blocks on a shared
    /// store: from async code, [`SessionStore::point_home_at`].
    pub fn set_home_addr(&self, addr: SocketAddrV4) -> Result<(), SessionError> {
        self.rows.set_home_addr(addr)
    }

    /// Records a sign-in done elsewhere: `me` as the signed-in account and
    /// `state` as its update state, unless the session already has an
    /// update state (it is never moved back). Returns whether it wrote. The
    /// sandbox uses it so that a worker's first start catches up from the
    /// moment the sandbox made the bot.
    pub fn record_sign_in(&self, me: PeerInfo, state: UpdatesState) -> Result<bool, SessionError> {
        if self.rows.read_updates_state()?.pts != 0 {
            return Ok(false);
        }
        self.rows.write_peer(me)?;
        self.rows.write_update_state(UpdateState::All(state))?;
        Ok(true)
    }

    fn from_connection(conn: Connection) -> Result<Self, SessionError> {
        without_lookaside(&conn);
        conn.pragma_update(None, "journal_mode", "WAL")?;
        // NORMAL in WAL mode survives a process crash; after a power cut the
        // update state can only fall *behind*, which repeats events rather
        // than losing them.
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        migrate(&conn)?;
        Self::over(
            Arc::new(Mutex::new(Conn::sqlite(conn))),
            FILE_KEY.to_owned(),
            None,
        )
    }

    /// The session `key` in `db` (migrated already), written under `lease`.
    fn over(db: Arc<Mutex<Conn>>, key: String, lease: Option<Lease>) -> Result<Self, SessionError> {
        let rows = SessionRows {
            db,
            key,
            lease,
            dcs: Mutex::new(DcCache {
                home_dc: DEFAULT_HOME_DC,
                options: HashMap::new(),
            }),
            peers: Mutex::new(HashMap::new()),
        };
        let dcs = rows.with_db(load_dcs)?;
        *rows.dcs() = dcs;
        Ok(SessionStore {
            rows: Arc::new(rows),
        })
    }

    /// Runs `f` on the rows where it may block: at once on a file (a local
    /// SQLite file answers at once), on tokio's blocking pool on a shared
    /// store.
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&SessionRows) -> Result<T, SessionError> + Send + 'static,
    ) -> Result<T, SessionError> {
        if !self.rows.is_shared() {
            return f(&self.rows);
        }
        let rows = Arc::clone(&self.rows);
        tokio::task::spawn_blocking(move || f(&rows))
            .await
            .map_err(|_| SessionError::Interrupted)?
    }

    /// Whether a user (the bot) is signed in with this session.
    pub async fn is_signed_in(&self) -> Result<bool, SessionError> {
        self.blocking(SessionRows::is_signed_in).await
    }

    /// [`SessionStore::set_home_addr`], off the runtime's threads.
    pub async fn point_home_at(&self, addr: SocketAddrV4) -> Result<(), SessionError> {
        self.blocking(move |rows| rows.set_home_addr(addr)).await
    }
}

impl SessionRows {
    fn is_shared(&self) -> bool {
        self.key != FILE_KEY
    }

    /// Points the home DC at `addr`, keeping its auth key (the config's
    /// `dc_addr`: a sandbox restarted on another port).
    fn set_home_addr(&self, addr: SocketAddrV4) -> Result<(), SessionError> {
        let home = self.dcs().home_dc;
        let auth_key = self.dcs().options.get(&home).and_then(|o| o.auth_key);
        self.write_dc_option(&DcOption {
            id: home,
            ipv4: addr,
            ipv6: SocketAddrV6::new(addr.ip().to_ipv6_mapped(), addr.port(), 0, 0),
            auth_key,
        })
    }

    fn is_signed_in(&self) -> Result<bool, SessionError> {
        Ok(self.read_peer(PeerId::self_user())?.is_some())
    }

    /// Runs `run` on the session's connection with its key. A PostgreSQL
    /// client blocks, so on the shared store it runs off tokio's threads.
    fn with_db<T: Send>(
        &self,
        run: impl FnOnce(&Conn, &str) -> Result<T, SessionError> + Send,
    ) -> Result<T, SessionError> {
        // A panic while holding the lock cannot leave the store
        // inconsistent: a transaction not committed is rolled back.
        let mut db = self.db.lock().unwrap_or_else(PoisonError::into_inner);
        let conn: &mut Conn = &mut db;
        let key = self.key.as_str();
        match conn.dialect() {
            Dialect::Sqlite => run(conn, key),
            Dialect::Postgres => off_runtime(move || run(conn, key)),
        }
    }

    /// Runs the writes `run` in one transaction, first checking (under a
    /// lease) that the lease is still the one the rows are written under.
    fn write_db<T: Send>(
        &self,
        run: impl FnOnce(&Conn, &str) -> Result<T, StoreError> + Send,
    ) -> Result<T, SessionError> {
        let lease = self.lease.as_ref();
        self.with_db(move |conn, key| {
            conn.in_transaction(|conn| {
                if let Some(lease) = lease
                    && !crate::queue::still_held(conn, key, lease)?
                {
                    return Err(SessionError::Fenced {
                        bot: key.to_owned(),
                    });
                }
                Ok(run(conn, key)?)
            })
        })
    }

    fn dcs(&self) -> MutexGuard<'_, DcCache> {
        self.dcs.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn peers(&self) -> MutexGuard<'_, HashMap<i64, PeerRow>> {
        self.peers.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether the session holds nothing yet (no DC, no home DC).
    fn is_empty(&self) -> Result<bool, SessionError> {
        self.with_db(|conn, key| {
            let found: Option<i64> = conn
                .query_row(
                    "SELECT 1 FROM session_dc_option WHERE session = ?1
                     UNION ALL SELECT 1 FROM session_home_dc WHERE session = ?1
                     LIMIT 1",
                    params![key],
                    |row| row.get(0),
                )
                .optional()?;
            Ok(found.is_none())
        })
    }

    /// Everything the session holds.
    fn image(&self) -> Result<SessionImage, SessionError> {
        let state = self.read_updates_state()?;
        self.with_db(|conn, key| {
            let home_dc = read_home_dc(conn, key)?;
            let options = load_dcs(conn, key)?.options.into_values().collect();
            let peers = conn
                .query_map(
                    "SELECT peer_id, hash, bot, is_self, channel_kind FROM session_peer
                     WHERE session = ?1 ORDER BY peer_id",
                    params![key],
                    PeerRow::read,
                )?
                .collect::<Result<_, _>>()?;
            Ok(SessionImage {
                home_dc,
                options,
                peers,
                state,
            })
        })
    }

    /// Writes all of `image` as this session, in one transaction.
    fn write_image(&self, image: &SessionImage) -> Result<(), SessionError> {
        self.write_db(|conn, key| {
            if let Some(dc_id) = image.home_dc {
                write_home_dc(conn, key, dc_id)?;
            }
            for option in &image.options {
                write_dc_option(conn, key, option)?;
            }
            for peer in &image.peers {
                write_peer_row(conn, key, peer)?;
            }
            write_state(conn, key, UpdateState::All(image.state.clone()))
        })
    }

    fn write_home_dc(&self, dc_id: i32) -> Result<(), SessionError> {
        self.write_db(|conn, key| write_home_dc(conn, key, dc_id))?;
        self.dcs().home_dc = dc_id;
        Ok(())
    }

    fn write_dc_option(&self, option: &DcOption) -> Result<(), SessionError> {
        self.write_db(|conn, key| write_dc_option(conn, key, option))?;
        self.dcs().options.insert(option.id, option.clone());
        Ok(())
    }

    fn read_peer(&self, peer: PeerId) -> Result<Option<PeerInfo>, SessionError> {
        let Some(id) = peer.bot_api_dialog_id() else {
            let row = self.with_db(|conn, key| {
                Ok(conn
                    .query_row(
                        "SELECT peer_id, hash, bot, is_self, channel_kind FROM session_peer
                         WHERE session = ?1 AND is_self = 1",
                        params![key],
                        PeerRow::read,
                    )
                    .optional()?)
            })?;
            return row.map(PeerRow::into_info).transpose();
        };
        if let Some(row) = self.peers().get(&id) {
            return row.clone().into_info().map(Some);
        }
        let row = self.with_db(|conn, key| {
            Ok(conn
                .query_row(
                    "SELECT peer_id, hash, bot, is_self, channel_kind FROM session_peer
                     WHERE session = ?1 AND peer_id = ?2",
                    params![key, id],
                    PeerRow::read,
                )
                .optional()?)
        })?;
        if let Some(row) = &row {
            self.peers().insert(id, row.clone());
        }
        row.map(PeerRow::into_info).transpose()
    }

    fn write_peer(&self, info: PeerInfo) -> Result<(), SessionError> {
        let merged = match self.read_peer(info.id())? {
            Some(mut known) => {
                known.extend_info(&info);
                known
            }
            None => info,
        };
        let row = PeerRow::from_info(&merged);
        if self.peers().get(&row.peer_id) == Some(&row) {
            return Ok(()); // already on file as it is
        }
        let demoted = self.write_db(|conn, key| {
            let mut demoted = 0;
            if row.is_self == Some(true) {
                // Only one self user: a re-sign-in as another bot replaces it.
                demoted = conn.execute(
                    "UPDATE session_peer SET is_self = 0
                     WHERE session = ?1 AND is_self = 1 AND peer_id != ?2",
                    params![key, row.peer_id],
                )?;
            }
            write_peer_row(conn, key, &row)?;
            Ok(demoted)
        })?;
        let mut peers = self.peers();
        if demoted > 0 {
            peers.clear();
        }
        peers.insert(row.peer_id, row);
        Ok(())
    }

    fn read_updates_state(&self) -> Result<UpdatesState, SessionError> {
        self.with_db(|conn, key| {
            let mut state = conn
                .query_row(
                    "SELECT pts, qts, date, seq FROM session_update_state WHERE session = ?1",
                    params![key],
                    |row| {
                        Ok(UpdatesState {
                            pts: row.get(0)?,
                            qts: row.get(1)?,
                            date: row.get(2)?,
                            seq: row.get(3)?,
                            channels: Vec::new(),
                        })
                    },
                )
                .optional()?
                .unwrap_or_default();
            state.channels = conn
                .query_map(
                    "SELECT channel_id, pts FROM session_channel_state
                     WHERE session = ?1 ORDER BY channel_id",
                    params![key],
                    |row| {
                        Ok(ChannelState {
                            id: row.get(0)?,
                            pts: row.get(1)?,
                        })
                    },
                )?
                .collect::<Result<_, _>>()?;
            Ok(state)
        })
    }

    fn write_update_state(&self, update: UpdateState) -> Result<(), SessionError> {
        self.write_db(|conn, key| write_state(conn, key, update))
    }
}

fn write_home_dc(conn: &Conn, key: &str, dc_id: i32) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO session_home_dc (session, dc_id) VALUES (?1, ?2)
         ON CONFLICT (session) DO UPDATE SET dc_id = excluded.dc_id",
        params![key, dc_id],
    )?;
    Ok(())
}

fn read_home_dc(conn: &Conn, key: &str) -> Result<Option<i32>, StoreError> {
    conn.query_row(
        "SELECT dc_id FROM session_home_dc WHERE session = ?1",
        params![key],
        |row| row.get(0),
    )
    .optional()
}

fn write_dc_option(conn: &Conn, key: &str, option: &DcOption) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO session_dc_option (session, dc_id, ipv4, ipv6, auth_key)
         VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (session, dc_id) DO UPDATE SET
             ipv4 = excluded.ipv4, ipv6 = excluded.ipv6, auth_key = excluded.auth_key",
        params![
            key,
            option.id,
            option.ipv4.to_string(),
            option.ipv6.to_string(),
            option.auth_key.as_ref().map(|k| k.as_slice()),
        ],
    )?;
    Ok(())
}

fn write_peer_row(conn: &Conn, key: &str, row: &PeerRow) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO session_peer (session, peer_id, hash, bot, is_self, channel_kind)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT (session, peer_id) DO UPDATE SET
             hash = excluded.hash, bot = excluded.bot, is_self = excluded.is_self,
             channel_kind = excluded.channel_kind",
        params![
            key,
            row.peer_id,
            row.hash,
            row.bot,
            row.is_self,
            row.channel_kind
        ],
    )?;
    Ok(())
}

/// Writes `update` (inside the caller's transaction).
fn write_state(conn: &Conn, key: &str, update: UpdateState) -> Result<(), StoreError> {
    match update {
        UpdateState::All(state) => {
            write_primary(conn, key, state.pts, state.date, state.seq)?;
            write_qts(conn, key, state.qts)?;
            conn.execute(
                "DELETE FROM session_channel_state WHERE session = ?1",
                params![key],
            )?;
            for channel in state.channels {
                write_channel(conn, key, channel.id, channel.pts)?;
            }
            Ok(())
        }
        UpdateState::Primary { pts, date, seq } => write_primary(conn, key, pts, date, seq),
        UpdateState::Secondary { qts } => write_qts(conn, key, qts),
        UpdateState::Channel { id, pts } => write_channel(conn, key, id, pts),
    }
}

fn write_primary(conn: &Conn, key: &str, pts: i32, date: i32, seq: i32) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO session_update_state (session, pts, qts, date, seq) VALUES (?1, ?2, 0, ?3, ?4)
         ON CONFLICT (session) DO UPDATE SET
             pts = excluded.pts, date = excluded.date, seq = excluded.seq",
        params![key, pts, date, seq],
    )?;
    Ok(())
}

fn write_qts(conn: &Conn, key: &str, qts: i32) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO session_update_state (session, pts, qts, date, seq) VALUES (?1, 0, ?2, 0, 0)
         ON CONFLICT (session) DO UPDATE SET qts = excluded.qts",
        params![key, qts],
    )?;
    Ok(())
}

fn write_channel(conn: &Conn, key: &str, id: i64, pts: i32) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO session_channel_state (session, channel_id, pts) VALUES (?1, ?2, ?3)
         ON CONFLICT (session, channel_id) DO UPDATE SET pts = excluded.pts",
        params![key, id, pts],
    )?;
    Ok(())
}

/// Turns SQLite's per-connection lookaside allocator off. It is 48 KiB
/// malloc'd per connection to speed up small allocations: worth it for the
/// queue's busy connections, not for one per bot (a daemon holds a session
/// connection for each), which writes the update state now and then.
fn without_lookaside(conn: &Connection) {
    // SAFETY: SQLITE_DBCONFIG_LOOKASIDE takes (void*, int, int); a null
    // buffer of no slots turns lookaside off. The connection is fresh, so
    // no lookaside memory is in use (SQLite would leave it on otherwise,
    // which only costs memory).
    unsafe {
        rusqlite::ffi::sqlite3_db_config(
            conn.handle(),
            rusqlite::ffi::SQLITE_DBCONFIG_LOOKASIDE,
            std::ptr::null_mut::<std::ffi::c_void>(),
            0 as std::ffi::c_int,
            0 as std::ffi::c_int,
        );
    }
}

/// Brings a session file up to [`SCHEMA_VERSION`].
fn migrate(conn: &Connection) -> Result<(), SessionError> {
    let version: i32 = conn.pragma_query_value(None, "user_version", |row| row.get(0))?;
    if version > SCHEMA_VERSION {
        return Err(SessionError::TooNew { found: version });
    }
    if version < 1 {
        conn.execute_batch(
            "BEGIN;
             CREATE TABLE home_dc (singleton INTEGER PRIMARY KEY CHECK (singleton = 0), dc_id INTEGER NOT NULL);
             CREATE TABLE dc_option (dc_id INTEGER PRIMARY KEY, ipv4 TEXT NOT NULL, ipv6 TEXT NOT NULL, auth_key BLOB);
             CREATE TABLE peer (peer_id INTEGER PRIMARY KEY, hash INTEGER, bot INTEGER, is_self INTEGER, channel_kind INTEGER);
             CREATE INDEX peer_self ON peer (is_self) WHERE is_self = 1;
             CREATE TABLE update_state (singleton INTEGER PRIMARY KEY CHECK (singleton = 0),
                 pts INTEGER NOT NULL, qts INTEGER NOT NULL, date INTEGER NOT NULL, seq INTEGER NOT NULL);
             CREATE TABLE channel_state (channel_id INTEGER PRIMARY KEY, pts INTEGER NOT NULL);
             PRAGMA user_version = 1;
             COMMIT;",
        )?;
    }
    if version < 2 {
        // The shared store's tables, keyed by session, so that one set of
        // statements serves a file and PostgreSQL alike.
        conn.execute_batch(
            "BEGIN;
             CREATE TABLE session_home_dc (session TEXT PRIMARY KEY, dc_id INTEGER NOT NULL);
             CREATE TABLE session_dc_option (session TEXT NOT NULL, dc_id INTEGER NOT NULL,
                 ipv4 TEXT NOT NULL, ipv6 TEXT NOT NULL, auth_key BLOB, PRIMARY KEY (session, dc_id));
             CREATE TABLE session_peer (session TEXT NOT NULL, peer_id INTEGER NOT NULL, hash INTEGER,
                 bot INTEGER, is_self INTEGER, channel_kind INTEGER, PRIMARY KEY (session, peer_id));
             CREATE INDEX session_peer_self ON session_peer (session) WHERE is_self = 1;
             CREATE TABLE session_update_state (session TEXT PRIMARY KEY, pts INTEGER NOT NULL,
                 qts INTEGER NOT NULL, date INTEGER NOT NULL, seq INTEGER NOT NULL);
             CREATE TABLE session_channel_state (session TEXT NOT NULL, channel_id INTEGER NOT NULL,
                 pts INTEGER NOT NULL, PRIMARY KEY (session, channel_id));
             INSERT INTO session_home_dc SELECT '', dc_id FROM home_dc;
             INSERT INTO session_dc_option SELECT '', dc_id, ipv4, ipv6, auth_key FROM dc_option;
             INSERT INTO session_peer SELECT '', peer_id, hash, bot, is_self, channel_kind FROM peer;
             INSERT INTO session_update_state SELECT '', pts, qts, date, seq FROM update_state;
             INSERT INTO session_channel_state SELECT '', channel_id, pts FROM channel_state;
             DROP TABLE home_dc; DROP TABLE dc_option; DROP TABLE peer;
             DROP TABLE update_state; DROP TABLE channel_state;
             PRAGMA user_version = 2;
             COMMIT;",
        )?;
    }
    Ok(())
}

fn load_dcs(conn: &Conn, key: &str) -> Result<DcCache, SessionError> {
    let home_dc = read_home_dc(conn, key)?.unwrap_or(DEFAULT_HOME_DC);
    let rows = conn.query_map(
        "SELECT dc_id, ipv4, ipv6, auth_key FROM session_dc_option WHERE session = ?1",
        params![key],
        |row| {
            Ok((
                row.get::<_, i32>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, String>(2)?,
                row.get::<_, Option<Vec<u8>>>(3)?,
            ))
        },
    )?;
    let mut options = HashMap::new();
    for row in rows {
        let (id, ipv4, ipv6, auth_key) = row?;
        let auth_key = match auth_key {
            None => None,
            Some(bytes) => Some(
                <[u8; 256]>::try_from(bytes.as_slice())
                    .map_err(|_| SessionError::Corrupt("auth key"))?,
            ),
        };
        options.insert(
            id,
            DcOption {
                id,
                ipv4: ipv4
                    .parse()
                    .map_err(|_| SessionError::Corrupt("DC address"))?,
                ipv6: ipv6
                    .parse()
                    .map_err(|_| SessionError::Corrupt("DC address"))?,
                auth_key,
            },
        );
    }
    Ok(DcCache { home_dc, options })
}

/// One row of the `session_peer` table.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PeerRow {
    peer_id: i64,
    hash: Option<i64>,
    bot: Option<bool>,
    is_self: Option<bool>,
    channel_kind: Option<u8>,
}

impl PeerRow {
    fn read(row: &Row<'_>) -> rusqlite::Result<Self> {
        Ok(PeerRow {
            peer_id: row.get(0)?,
            hash: row.get(1)?,
            bot: row.get(2)?,
            is_self: row.get(3)?,
            channel_kind: row.get(4)?,
        })
    }

    fn from_info(info: &PeerInfo) -> Self {
        let (bot, is_self, channel_kind) = match info {
            PeerInfo::User { bot, is_self, .. } => (*bot, *is_self, None),
            PeerInfo::Chat { .. } => (None, None, None),
            PeerInfo::Channel { kind, .. } => (None, None, kind.map(|k| k as u8)),
        };
        PeerRow {
            peer_id: info.id().bot_api_dialog_id_unchecked(),
            hash: info.auth().map(PeerAuth::hash),
            bot,
            is_self,
            channel_kind,
        }
    }

    fn into_info(self) -> Result<PeerInfo, SessionError> {
        let id =
            PeerId::from_bot_api_dialog_id(self.peer_id).ok_or(SessionError::Corrupt("peer id"))?;
        let auth = self.hash.map(PeerAuth::from_hash);
        Ok(match id.kind() {
            PeerKind::User => PeerInfo::User {
                id: id.bare_id_unchecked(),
                auth,
                bot: self.bot,
                is_self: self.is_self,
            },
            PeerKind::Chat => PeerInfo::Chat {
                id: id.bare_id_unchecked(),
            },
            PeerKind::Channel => PeerInfo::Channel {
                id: id.bare_id_unchecked(),
                auth,
                kind: self.channel_kind.and_then(channel_kind),
            },
        })
    }
}

fn channel_kind(raw: u8) -> Option<ChannelKind> {
    [
        ChannelKind::Broadcast,
        ChannelKind::Megagroup,
        ChannelKind::Gigagroup,
        ChannelKind::Community,
    ]
    .into_iter()
    .find(|kind| *kind as u8 == raw)
}

impl Session for SessionStore {
    type Error = SessionError;

    fn home_dc_id(&self) -> Result<i32, SessionError> {
        Ok(self.rows.dcs().home_dc)
    }

    fn set_home_dc_id(&self, dc_id: i32) -> BoxFuture<'_, Result<(), SessionError>> {
        Box::pin(self.blocking(move |rows| rows.write_home_dc(dc_id)))
    }

    fn dc_option(&self, dc_id: i32) -> Result<Option<DcOption>, SessionError> {
        let dcs = self.rows.dcs();
        Ok(dcs
            .options
            .get(&dc_id)
            .cloned()
            .or_else(|| known_dc_option(dc_id)))
    }

    fn set_dc_option(&self, dc_option: &DcOption) -> BoxFuture<'_, Result<(), SessionError>> {
        let dc_option = dc_option.clone();
        Box::pin(self.blocking(move |rows| rows.write_dc_option(&dc_option)))
    }

    fn peer(&self, peer: PeerId) -> BoxFuture<'_, Result<Option<PeerInfo>, SessionError>> {
        Box::pin(self.blocking(move |rows| rows.read_peer(peer)))
    }

    fn cache_peer(&self, peer: PeerInfo) -> BoxFuture<'_, Result<(), SessionError>> {
        Box::pin(self.blocking(move |rows| rows.write_peer(peer)))
    }

    fn updates_state(&self) -> BoxFuture<'_, Result<UpdatesState, SessionError>> {
        Box::pin(self.blocking(SessionRows::read_updates_state))
    }

    fn set_update_state(&self, update: UpdateState) -> BoxFuture<'_, Result<(), SessionError>> {
        Box::pin(self.blocking(move |rows| rows.write_update_state(update)))
    }
}

/// The statically known option grammers' own storages fall back to.
fn known_dc_option(dc_id: i32) -> Option<DcOption> {
    grammers_session::SessionData::default()
        .dc_options
        .remove(&dc_id)
        .filter(|option| option.ipv4.ip() != &Ipv4Addr::UNSPECIFIED)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn key(byte: u8) -> [u8; 256] {
        [byte; 256]
    }

    /// The sessions of a daemon over `dir` on the test's store (SQLite, or
    /// PostgreSQL in `.ci/run`'s second pass), whose schema is in place.
    fn sessions_in(dir: &Path, store: &Location) -> Sessions {
        drop(crate::queue::Queue::open_at(store).unwrap());
        Sessions::new(&StateDir::new(dir), store)
    }

    fn bot(name: &str) -> BotName {
        BotName::new(name).unwrap()
    }

    /// The signed-in bot `id`, as grammers caches it.
    fn me(id: i64) -> PeerInfo {
        PeerInfo::User {
            id,
            auth: Some(PeerAuth::from_hash(9)),
            bot: Some(true),
            is_self: Some(true),
        }
    }

    fn addr(port: u16) -> SocketAddrV4 {
        SocketAddrV4::new(Ipv4Addr::LOCALHOST, port)
    }

    /// Two daemons on one store: on PostgreSQL the second sees the bot's
    /// session as the first left it (auth key, self user, update state), and
    /// another bot's session is its own; on SQLite each daemon has its files.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_session_moves_with_its_bot_to_another_daemon_on_a_shared_store() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let store = crate::store::test_location(a.path());
        let first = sessions_in(a.path(), &store);
        let second = sessions_in(b.path(), &store);
        let held = first.open(&bot("alpha"), None).await.unwrap();
        held.add_dc(2, addr(4000), key(5)).unwrap();
        held.cache_peer(me(77)).await.unwrap();
        held.set_update_state(UpdateState::All(UpdatesState {
            pts: 40,
            qts: 4,
            date: 1000,
            seq: 0,
            channels: vec![ChannelState { id: 8, pts: 80 }],
        }))
        .await
        .unwrap();
        held.set_update_state(UpdateState::Primary {
            pts: 41,
            date: 1001,
            seq: 0,
        })
        .await
        .unwrap();

        let moved = second.open(&bot("alpha"), None).await.unwrap();
        let other = second.open(&bot("beta"), None).await.unwrap();
        assert!(
            !other.is_signed_in().await.unwrap(),
            "beta has a session of its own"
        );
        if !first.is_shared() {
            assert!(
                !moved.is_signed_in().await.unwrap(),
                "a daemon's files are its own"
            );
            return;
        }
        assert_eq!(moved.dc_option(2).unwrap().unwrap().auth_key, Some(key(5)));
        let me = moved.peer(PeerId::self_user()).await.unwrap().unwrap();
        assert_eq!(me.id(), PeerId::user(77).unwrap());
        let state = moved.updates_state().await.unwrap();
        assert_eq!((state.pts, state.qts, state.date), (41, 4, 1001));
        assert_eq!(state.channels, [ChannelState { id: 8, pts: 80 }]);
    }

    /// A session written under a lease that has since changed hands (its
    /// daemon cut off from the store, its writes arriving once healed) is
    /// refused, and the new holder's update state stays as it wrote it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_session_write_under_a_lapsed_lease_is_refused() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let store = crate::store::test_location(a.path());
        let queue = crate::queue::Queue::open_at(&store).unwrap();
        let (first, second) = (sessions_in(a.path(), &store), sessions_in(b.path(), &store));
        let state = |pts| UpdateState::Primary {
            pts,
            date: 1000 + pts,
            seq: 0,
        };
        let lease = |holder: &str, token| Lease {
            holder: holder.into(),
            token,
        };
        if !first.is_shared() {
            // A daemon's files are its own: there is no lease to check.
            let held = first
                .open(&bot("alpha"), Some(&lease("a", 1)))
                .await
                .unwrap();
            held.set_update_state(state(5)).await.unwrap();
            assert_eq!(held.updates_state().await.unwrap().pts, 5);
            return;
        }
        let tick = |holder: &'static str| {
            let queue = queue.clone();
            async move {
                queue
                    .lease_tick(holder, vec!["alpha".into()], vec![], 60_000, false)
                    .await
                    .unwrap()
                    .held
            }
        };
        assert_eq!(tick("a").await, [("alpha".to_owned(), 1)]);
        let held = first
            .open(&bot("alpha"), Some(&lease("a", 1)))
            .await
            .unwrap();
        held.set_update_state(state(10)).await.unwrap();

        // A's lease lapses and B takes the bot under the next token.
        queue
            .write(|conn, _| {
                conn.execute("UPDATE bot_leases SET expires_at = 0", params![])?;
                Ok(())
            })
            .await
            .unwrap();
        assert_eq!(tick("b").await, [("alpha".to_owned(), 2)]);
        let moved = second
            .open(&bot("alpha"), Some(&lease("b", 2)))
            .await
            .unwrap();
        assert_eq!(moved.updates_state().await.unwrap().pts, 10);
        moved.set_update_state(state(12)).await.unwrap();

        for late in [
            held.set_update_state(state(11)).await,
            held.set_dc_option(&DcOption {
                id: 9,
                ipv4: addr(4009),
                ipv6: SocketAddrV6::new(Ipv4Addr::LOCALHOST.to_ipv6_mapped(), 4009, 0, 0),
                auth_key: Some(key(4)),
            })
            .await,
            held.cache_peer(me(78)).await,
        ] {
            assert!(
                matches!(&late, Err(SessionError::Fenced { bot }) if bot == "alpha"),
                "{late:?}"
            );
        }
        let reopened = second
            .open(&bot("alpha"), Some(&lease("b", 2)))
            .await
            .unwrap();
        assert_eq!(reopened.updates_state().await.unwrap().pts, 12);
        assert!(reopened.dc_option(9).unwrap().is_none());
        assert!(!reopened.is_signed_in().await.unwrap());
        // Even the same holder's old token is refused.
        let stale = second
            .open(&bot("alpha"), Some(&lease("b", 1)))
            .await
            .unwrap();
        assert!(matches!(
            stale.set_update_state(state(13)).await,
            Err(SessionError::Fenced { .. })
        ));
        queue.close().await;
    }

    /// On a shared store a bot's session file is imported the first time the
    /// bot's session is opened; after that the store's rows win over the file.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_session_file_is_imported_into_a_shared_store_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::test_location(dir.path());
        let sessions = sessions_in(dir.path(), &store);
        let file = StateDir::new(dir.path()).bot_session(&bot("alpha"));
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        let provisioned = SessionStore::provision(&file, 3, addr(4000), key(1)).unwrap();
        provisioned
            .record_sign_in(
                me(77),
                UpdatesState {
                    pts: 5,
                    qts: 1,
                    date: 10,
                    seq: 0,
                    channels: vec![],
                },
            )
            .unwrap();
        drop(provisioned);

        let opened = sessions.open(&bot("alpha"), None).await.unwrap();
        assert_eq!(opened.home_dc_id().unwrap(), 3);
        assert_eq!(opened.dc_option(3).unwrap().unwrap().auth_key, Some(key(1)));
        assert!(opened.is_signed_in().await.unwrap());
        assert_eq!(opened.updates_state().await.unwrap().pts, 5);
        opened
            .set_update_state(UpdateState::Primary {
                pts: 6,
                date: 11,
                seq: 0,
            })
            .await
            .unwrap();
        drop(opened);

        // The file changes behind the store's back: a shared store keeps
        // its own (newer) rows; a file is the session itself.
        SessionStore::open(&file)
            .unwrap()
            .add_dc(3, addr(4000), key(2))
            .unwrap();
        let again = sessions.open(&bot("alpha"), None).await.unwrap();
        let expected = if sessions.is_shared() { key(1) } else { key(2) };
        assert_eq!(
            again.dc_option(3).unwrap().unwrap().auth_key,
            Some(expected)
        );
        assert_eq!(again.updates_state().await.unwrap().pts, 6);
    }

    /// A session file of schema 1 (before sessions were keyed) keeps its
    /// DCs, peers and update state.
    #[tokio::test]
    async fn a_schema_1_session_file_keeps_its_contents() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bot.session");
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(
            "CREATE TABLE home_dc (singleton INTEGER PRIMARY KEY CHECK (singleton = 0), dc_id INTEGER NOT NULL);
             CREATE TABLE dc_option (dc_id INTEGER PRIMARY KEY, ipv4 TEXT NOT NULL, ipv6 TEXT NOT NULL, auth_key BLOB);
             CREATE TABLE peer (peer_id INTEGER PRIMARY KEY, hash INTEGER, bot INTEGER, is_self INTEGER, channel_kind INTEGER);
             CREATE INDEX peer_self ON peer (is_self) WHERE is_self = 1;
             CREATE TABLE update_state (singleton INTEGER PRIMARY KEY CHECK (singleton = 0),
                 pts INTEGER NOT NULL, qts INTEGER NOT NULL, date INTEGER NOT NULL, seq INTEGER NOT NULL);
             CREATE TABLE channel_state (channel_id INTEGER PRIMARY KEY, pts INTEGER NOT NULL);
             INSERT INTO home_dc VALUES (0, 4);
             INSERT INTO dc_option VALUES (4, '127.0.0.1:4444', '[::ffff:127.0.0.1]:4444', zeroblob(256));
             INSERT INTO peer VALUES (77, 9, 1, 1, NULL);
             INSERT INTO update_state VALUES (0, 12, 3, 100, 0);
             INSERT INTO channel_state VALUES (8, 80);
             PRAGMA user_version = 1;",
        )
        .unwrap();
        drop(conn);
        let store = SessionStore::open(&path).unwrap();
        assert_eq!(store.home_dc_id().unwrap(), 4);
        assert_eq!(store.dc_option(4).unwrap().unwrap().auth_key, Some(key(0)));
        assert!(store.is_signed_in().await.unwrap());
        let state = store.updates_state().await.unwrap();
        assert_eq!((state.pts, state.qts), (12, 3));
        assert_eq!(state.channels, [ChannelState { id: 8, pts: 80 }]);
    }

    #[tokio::test]
    async fn provisioned_dc_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bot.session");
        let addr = SocketAddrV4::new(Ipv4Addr::LOCALHOST, 4430);
        drop(SessionStore::provision(&path, 7, addr, key(9)).unwrap());

        let store = SessionStore::open(&path).unwrap();
        assert_eq!(store.home_dc_id().unwrap(), 7);
        let option = store.dc_option(7).unwrap().unwrap();
        assert_eq!(option.ipv4, addr);
        assert_eq!(option.auth_key, Some(key(9)));
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[tokio::test]
    async fn fresh_session_falls_back_to_known_dcs() {
        let store = SessionStore::in_memory().unwrap();
        assert_eq!(store.home_dc_id().unwrap(), DEFAULT_HOME_DC);
        let option = store.dc_option(DEFAULT_HOME_DC).unwrap().unwrap();
        assert_eq!(option.auth_key, None);
        assert!(!store.is_signed_in().await.unwrap());
    }

    #[tokio::test]
    async fn self_user_is_found_by_the_self_sentinel() {
        let store = SessionStore::in_memory().unwrap();
        store
            .cache_peer(PeerInfo::User {
                id: 1000,
                auth: None,
                bot: Some(true),
                is_self: Some(true),
            })
            .await
            .unwrap();
        let me = store.peer(PeerId::self_user()).await.unwrap().unwrap();
        assert_eq!(me.id(), PeerId::user(1000).unwrap());
        assert!(store.is_signed_in().await.unwrap());
    }

    #[tokio::test]
    async fn cached_peers_merge_what_is_known() {
        let store = SessionStore::in_memory().unwrap();
        let user = PeerId::user(42).unwrap();
        store
            .cache_peer(PeerInfo::User {
                id: 42,
                auth: Some(PeerAuth::from_hash(777)),
                bot: Some(false),
                is_self: None,
            })
            .await
            .unwrap();
        // A later sighting without a hash must not erase the known one.
        store
            .cache_peer(PeerInfo::User {
                id: 42,
                auth: None,
                bot: None,
                is_self: None,
            })
            .await
            .unwrap();
        let info = store.peer(user).await.unwrap().unwrap();
        assert_eq!(info.auth(), Some(PeerAuth::from_hash(777)));

        let channel = PeerInfo::Channel {
            id: 55,
            auth: Some(PeerAuth::from_hash(1)),
            kind: Some(ChannelKind::Megagroup),
        };
        store.cache_peer(channel.clone()).await.unwrap();
        assert_eq!(store.peer(channel.id()).await.unwrap(), Some(channel));
    }

    #[tokio::test]
    async fn update_state_is_stored_piecewise() {
        let store = SessionStore::in_memory().unwrap();
        store
            .set_update_state(UpdateState::All(UpdatesState {
                pts: 10,
                qts: 3,
                date: 1000,
                seq: 2,
                channels: vec![ChannelState { id: 5, pts: 50 }],
            }))
            .await
            .unwrap();
        store
            .set_update_state(UpdateState::Primary {
                pts: 11,
                date: 1001,
                seq: 3,
            })
            .await
            .unwrap();
        store
            .set_update_state(UpdateState::Secondary { qts: 4 })
            .await
            .unwrap();
        store
            .set_update_state(UpdateState::Channel { id: 6, pts: 60 })
            .await
            .unwrap();
        let state = store.updates_state().await.unwrap();
        assert_eq!(
            state,
            UpdatesState {
                pts: 11,
                qts: 4,
                date: 1001,
                seq: 3,
                channels: vec![
                    ChannelState { id: 5, pts: 50 },
                    ChannelState { id: 6, pts: 60 }
                ],
            }
        );
    }

    #[test]
    fn debug_output_hides_the_auth_key() {
        let store = SessionStore::in_memory().unwrap();
        let addr = SocketAddrV4::new(Ipv4Addr::LOCALHOST, 1);
        store
            .rows
            .write_dc_option(&DcOption {
                id: 2,
                ipv4: addr,
                ipv6: SocketAddrV6::new(addr.ip().to_ipv6_mapped(), 1, 0, 0),
                auth_key: Some(key(0xab)),
            })
            .unwrap();
        assert!(!format!("{store:?}").contains("171"));
    }

    #[test]
    fn a_new_home_address_keeps_the_auth_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bot.session");
        let old = SocketAddrV4::new(Ipv4Addr::LOCALHOST, 1000);
        let new = SocketAddrV4::new(Ipv4Addr::LOCALHOST, 2000);
        SessionStore::provision(&path, 2, old, key(7))
            .unwrap()
            .set_home_addr(new)
            .unwrap();
        let reopened = SessionStore::open(&path).unwrap();
        let option = reopened.dc_option(2).unwrap().unwrap();
        assert_eq!(option.ipv4, new);
        assert_eq!(option.ipv6.port(), 2000);
        assert_eq!(option.auth_key, Some(key(7)));
    }

    #[test]
    fn a_session_connection_uses_no_lookaside_memory() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bot.session");
        let addr = SocketAddrV4::new(Ipv4Addr::LOCALHOST, 1000);
        let store = SessionStore::provision(&path, 2, addr, key(7)).unwrap();
        store.rows.read_updates_state().unwrap();
        let (mut used, mut most) = (0, 0);
        // SAFETY: the out-pointers are valid for the call.
        let rc = unsafe {
            rusqlite::ffi::sqlite3_db_status(
                store.rows.db.lock().unwrap().as_sqlite().unwrap().handle(),
                rusqlite::ffi::SQLITE_DBSTATUS_LOOKASIDE_USED,
                &mut used,
                &mut most,
                0,
            )
        };
        assert_eq!(rc, rusqlite::ffi::SQLITE_OK);
        assert_eq!((used, most), (0, 0));
    }

    #[test]
    fn newer_schema_is_refused() {
        let conn = Connection::open_in_memory().unwrap();
        conn.pragma_update(None, "user_version", 99).unwrap();
        assert!(matches!(
            SessionStore::from_connection(conn),
            Err(SessionError::TooNew { found: 99 })
        ));
    }
}
