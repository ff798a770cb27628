//! The bot's MTProto session, kept in a SQLite file of its own.
//!
//! grammers keeps its session (home DC, auth keys, cached peers, update state)
//! behind the `grammers_session::Session` trait. Its stock SQLite storage uses
//! libsql, which cannot link beside the bundled SQLite telegate's queue uses,
//! so telegate implements the trait itself over `rusqlite`. The file lives in
//! `DIR/sessions/`, is created mode 0600 (it holds the auth key), and the
//! sandbox writes a pre-provisioned auth key into it with [`SessionStore::provision`].
//!
//! Update state is only written when grammers is told to write it, so the
//! inbound pipeline decides when the stored pts may advance.

use std::collections::HashMap;
use std::fmt;
use std::net::{Ipv4Addr, SocketAddrV4, SocketAddrV6};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};

use grammers_session::types::{
    ChannelKind, ChannelState, DcOption, PeerAuth, PeerId, PeerInfo, PeerKind, UpdateState,
    UpdatesState,
};
use grammers_session::{BoxFuture, Session};
use rusqlite::{Connection, OptionalExtension, params};

use crate::private_file;

/// The DC id a fresh session calls home (Telegram's default for new clients).
const DEFAULT_HOME_DC: i32 = 2;

/// Schema of the session file; bump `SCHEMA_VERSION` and add a step to
/// [`migrate`] for every change.
const SCHEMA_VERSION: i32 = 1;

/// Why the session file could not be read or written.
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
    #[error("session file holds a malformed {0}")]
    Corrupt(&'static str),
    #[error("session file has schema version {found}, newer than this telegate ({SCHEMA_VERSION})")]
    TooNew { found: i32 },
}

impl crate::queue::StorageRefusal for SessionError {
    fn is_storage(&self) -> bool {
        matches!(self, SessionError::Sqlite(error) if crate::queue::is_storage_sqlite(error))
    }
}

/// A grammers session stored in a SQLite file.
pub struct SessionStore {
    db: Mutex<Connection>,
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
        store.write_home_dc(dc_id)?;
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
        self.write_dc_option(&DcOption {
            id: dc_id,
            ipv4: addr,
            ipv6: SocketAddrV6::new(addr.ip().to_ipv6_mapped(), addr.port(), 0, 0),
            auth_key: Some(auth_key),
        })
    }

    /// Points the home DC at `addr`, keeping its auth key (the config's
    /// `dc_addr`: a sandbox restarted on another port).
    pub fn set_home_addr(&self, addr: SocketAddrV4) -> Result<(), SessionError> {
        let home = self.dcs().home_dc;
        let auth_key = self.dcs().options.get(&home).and_then(|o| o.auth_key);
        self.write_dc_option(&DcOption {
            id: home,
            ipv4: addr,
            ipv6: SocketAddrV6::new(addr.ip().to_ipv6_mapped(), addr.port(), 0, 0),
            auth_key,
        })
    }

    /// Records a sign-in done elsewhere: `me` as the signed-in account and
    /// `state` as its update state, unless the session already has an
    /// update state (it is never moved back). Returns whether it wrote. The
    /// sandbox uses it so that a worker's first start catches up from the
    /// moment the sandbox made the bot.
    pub fn record_sign_in(&self, me: PeerInfo, state: UpdatesState) -> Result<bool, SessionError> {
        if self.read_updates_state()?.pts != 0 {
            return Ok(false);
        }
        self.write_peer(me)?;
        self.write_update_state(UpdateState::All(state))?;
        Ok(true)
    }

    /// Whether a user (the bot) is signed in with this session.
    pub fn is_signed_in(&self) -> Result<bool, SessionError> {
        Ok(self.read_peer(PeerId::self_user())?.is_some())
    }

    fn from_connection(conn: Connection) -> Result<Self, SessionError> {
        without_lookaside(&conn);
        conn.pragma_update(None, "journal_mode", "WAL")?;
        // NORMAL in WAL mode survives a process crash; after a power cut the
        // update state can only fall *behind*, which repeats events rather
        // than losing them.
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        migrate(&conn)?;
        let dcs = load_dcs(&conn)?;
        Ok(SessionStore {
            db: Mutex::new(conn),
            dcs: Mutex::new(dcs),
            peers: Mutex::new(HashMap::new()),
        })
    }

    fn db(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave SQLite inconsistent.
        self.db.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn dcs(&self) -> MutexGuard<'_, DcCache> {
        self.dcs.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn peers(&self) -> MutexGuard<'_, HashMap<i64, PeerRow>> {
        self.peers.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn write_home_dc(&self, dc_id: i32) -> Result<(), SessionError> {
        self.db().execute(
            "INSERT INTO home_dc (singleton, dc_id) VALUES (0, ?1)
             ON CONFLICT (singleton) DO UPDATE SET dc_id = excluded.dc_id",
            params![dc_id],
        )?;
        self.dcs().home_dc = dc_id;
        Ok(())
    }

    fn write_dc_option(&self, option: &DcOption) -> Result<(), SessionError> {
        self.db().execute(
            "INSERT OR REPLACE INTO dc_option (dc_id, ipv4, ipv6, auth_key) VALUES (?1, ?2, ?3, ?4)",
            params![
                option.id,
                option.ipv4.to_string(),
                option.ipv6.to_string(),
                option.auth_key.as_ref().map(|k| k.as_slice()),
            ],
        )?;
        self.dcs().options.insert(option.id, option.clone());
        Ok(())
    }

    fn read_peer(&self, peer: PeerId) -> Result<Option<PeerInfo>, SessionError> {
        let Some(id) = peer.bot_api_dialog_id() else {
            let row = self
                .db()
                .prepare_cached(
                    "SELECT peer_id, hash, bot, is_self, channel_kind FROM peer WHERE is_self = 1",
                )?
                .query_row([], PeerRow::read)
                .optional()?;
            return row.map(PeerRow::into_info).transpose();
        };
        if let Some(row) = self.peers().get(&id) {
            return row.clone().into_info().map(Some);
        }
        let row = self
            .db()
            .prepare_cached(
                "SELECT peer_id, hash, bot, is_self, channel_kind FROM peer WHERE peer_id = ?1",
            )?
            .query_row(params![id], PeerRow::read)
            .optional()?;
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
        let db = self.db();
        if row.is_self == Some(true) {
            // Only one self user: a re-sign-in as another bot replaces it.
            let demoted = db
                .prepare_cached("UPDATE peer SET is_self = 0 WHERE is_self = 1 AND peer_id != ?1")?
                .execute(params![row.peer_id])?;
            if demoted > 0 {
                self.peers().clear();
            }
        }
        db.prepare_cached(
            "INSERT OR REPLACE INTO peer (peer_id, hash, bot, is_self, channel_kind)
             VALUES (?1, ?2, ?3, ?4, ?5)",
        )?
        .execute(params![
            row.peer_id,
            row.hash,
            row.bot,
            row.is_self,
            row.channel_kind
        ])?;
        self.peers().insert(row.peer_id, row);
        Ok(())
    }

    fn read_updates_state(&self) -> Result<UpdatesState, SessionError> {
        let db = self.db();
        let mut state = db
            .query_row(
                "SELECT pts, qts, date, seq FROM update_state WHERE singleton = 0",
                [],
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
        let mut stmt =
            db.prepare("SELECT channel_id, pts FROM channel_state ORDER BY channel_id")?;
        state.channels = stmt
            .query_map([], |row| {
                Ok(ChannelState {
                    id: row.get(0)?,
                    pts: row.get(1)?,
                })
            })?
            .collect::<Result<_, _>>()?;
        Ok(state)
    }

    fn write_update_state(&self, update: UpdateState) -> Result<(), SessionError> {
        let mut db = self.db();
        let tx = db.transaction()?;
        match update {
            UpdateState::All(state) => {
                write_primary(&tx, state.pts, state.date, state.seq)?;
                write_qts(&tx, state.qts)?;
                tx.execute("DELETE FROM channel_state", [])?;
                for channel in state.channels {
                    write_channel(&tx, channel.id, channel.pts)?;
                }
            }
            UpdateState::Primary { pts, date, seq } => write_primary(&tx, pts, date, seq)?,
            UpdateState::Secondary { qts } => write_qts(&tx, qts)?,
            UpdateState::Channel { id, pts } => write_channel(&tx, id, pts)?,
        }
        tx.commit()?;
        Ok(())
    }
}

fn write_primary(conn: &Connection, pts: i32, date: i32, seq: i32) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO update_state (singleton, pts, qts, date, seq) VALUES (0, ?1, 0, ?2, ?3)
         ON CONFLICT (singleton) DO UPDATE SET pts = excluded.pts, date = excluded.date, seq = excluded.seq",
        params![pts, date, seq],
    )?;
    Ok(())
}

fn write_qts(conn: &Connection, qts: i32) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO update_state (singleton, pts, qts, date, seq) VALUES (0, 0, ?1, 0, 0)
         ON CONFLICT (singleton) DO UPDATE SET qts = excluded.qts",
        params![qts],
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

fn write_channel(conn: &Connection, id: i64, pts: i32) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT OR REPLACE INTO channel_state (channel_id, pts) VALUES (?1, ?2)",
        params![id, pts],
    )?;
    Ok(())
}

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
    Ok(())
}

fn load_dcs(conn: &Connection) -> Result<DcCache, SessionError> {
    let home_dc = conn
        .query_row("SELECT dc_id FROM home_dc WHERE singleton = 0", [], |row| {
            row.get(0)
        })
        .optional()?
        .unwrap_or(DEFAULT_HOME_DC);
    let mut stmt = conn.prepare("SELECT dc_id, ipv4, ipv6, auth_key FROM dc_option")?;
    let rows = stmt.query_map([], |row| {
        Ok((
            row.get::<_, i32>(0)?,
            row.get::<_, String>(1)?,
            row.get::<_, String>(2)?,
            row.get::<_, Option<Vec<u8>>>(3)?,
        ))
    })?;
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

/// One row of the `peer` table.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PeerRow {
    peer_id: i64,
    hash: Option<i64>,
    bot: Option<bool>,
    is_self: Option<bool>,
    channel_kind: Option<u8>,
}

impl PeerRow {
    fn read(row: &rusqlite::Row<'_>) -> rusqlite::Result<Self> {
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
        Ok(self.dcs().home_dc)
    }

    fn set_home_dc_id(&self, dc_id: i32) -> BoxFuture<'_, Result<(), SessionError>> {
        Box::pin(async move { self.write_home_dc(dc_id) })
    }

    fn dc_option(&self, dc_id: i32) -> Result<Option<DcOption>, SessionError> {
        let dcs = self.dcs();
        Ok(dcs
            .options
            .get(&dc_id)
            .cloned()
            .or_else(|| known_dc_option(dc_id)))
    }

    fn set_dc_option(&self, dc_option: &DcOption) -> BoxFuture<'_, Result<(), SessionError>> {
        let dc_option = dc_option.clone();
        Box::pin(async move { self.write_dc_option(&dc_option) })
    }

    fn peer(&self, peer: PeerId) -> BoxFuture<'_, Result<Option<PeerInfo>, SessionError>> {
        Box::pin(async move { self.read_peer(peer) })
    }

    fn cache_peer(&self, peer: PeerInfo) -> BoxFuture<'_, Result<(), SessionError>> {
        Box::pin(async move { self.write_peer(peer) })
    }

    fn updates_state(&self) -> BoxFuture<'_, Result<UpdatesState, SessionError>> {
        Box::pin(async move { self.read_updates_state() })
    }

    fn set_update_state(&self, update: UpdateState) -> BoxFuture<'_, Result<(), SessionError>> {
        Box::pin(async move { self.write_update_state(update) })
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
        assert!(!store.is_signed_in().unwrap());
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
        assert!(store.is_signed_in().unwrap());
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
        store.read_updates_state().unwrap();
        let (mut used, mut most) = (0, 0);
        // SAFETY: the out-pointers are valid for the call.
        let rc = unsafe {
            rusqlite::ffi::sqlite3_db_status(
                store.db().handle(),
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
