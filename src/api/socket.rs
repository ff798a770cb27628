//! Binding the local socket: mode 0660, a stale file from a dead telegate
//! replaced, a live one left alone.
//!
//! A socket file outlives a crashed process. If connecting to it is refused,
//! nobody listens and it is safe to replace; if a connection succeeds,
//! another telegate is serving there and this one must not steal its path.

use std::fs;
use std::io;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};

use tokio::net::{UnixListener, UnixStream};

/// Mode of the socket file: the owner and its group may connect.
const SOCKET_MODE: u32 = 0o660;

/// Why the socket could not be bound.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    #[error("another telegate is already listening on {0}")]
    InUse(PathBuf),
    #[error("{0} exists and is not a socket; refusing to replace it")]
    NotASocket(PathBuf),
    #[error("cannot bind {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

/// The bound socket's file, removed when this is dropped.
#[derive(Debug)]
pub struct SocketFile {
    path: PathBuf,
}

impl SocketFile {
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

/// Binds `path` (replacing a stale socket file) and sets its mode to 0660.
pub async fn bind(path: &Path) -> Result<(UnixListener, SocketFile), BindError> {
    let io = |source| BindError::Io {
        path: path.to_owned(),
        source,
    };
    match fs::symlink_metadata(path) {
        Ok(metadata) if !metadata.file_type().is_socket() => {
            return Err(BindError::NotASocket(path.to_owned()));
        }
        Ok(_) => match UnixStream::connect(path).await {
            Ok(_) => return Err(BindError::InUse(path.to_owned())),
            Err(err) if err.kind() == io::ErrorKind::ConnectionRefused => {
                tracing::info!(path = %path.display(), "replacing a stale socket file");
                fs::remove_file(path).map_err(io)?;
            }
            Err(err) => return Err(io(err)),
        },
        Err(err) if err.kind() == io::ErrorKind::NotFound => {}
        Err(err) => return Err(io(err)),
    }
    // Bound under a private name and renamed into place once its mode is
    // set, so the socket is never reachable with the umask's mode.
    let staging = staging_path(path);
    match fs::remove_file(&staging) {
        Err(err) if err.kind() != io::ErrorKind::NotFound => return Err(io(err)),
        _ => {}
    }
    let listener = UnixListener::bind(&staging).map_err(io)?;
    let placed = fs::set_permissions(&staging, fs::Permissions::from_mode(SOCKET_MODE))
        .and_then(|()| fs::rename(&staging, path));
    if let Err(err) = placed {
        let _ = fs::remove_file(&staging);
        return Err(io(err));
    }
    let file = SocketFile {
        path: path.to_owned(),
    };
    Ok((listener, file))
}

/// `DIR/.NAME.PID` beside `path`.
fn staging_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.{}", std::process::id()))
}
