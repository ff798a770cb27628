//! Files that hold secrets or durable state are created owner-only.
//!
//! SQLite creates its files with the process umask (often 0644). Session
//! files hold the auth key and the store holds users' messages, so telegate
//! creates them itself, mode 0600, before SQLite opens them; SQLite gives its
//! `-wal` and `-shm` side files the same mode as the database.

use std::fs::{self, OpenOptions, Permissions};
use std::io;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Owner read/write only.
pub const MODE: u32 = 0o600;

/// Creates `path` (and its missing parent directories) if it does not exist,
/// and makes sure it is mode 0600 either way. Never truncates.
pub fn create(path: &Path) -> io::Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(parent)?;
    }
    OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(MODE)
        .open(path)?;
    fs::set_permissions(path, Permissions::from_mode(MODE))
}

/// Writes `contents` to `path` (replacing what was there), mode 0600.
pub fn write(path: &Path, contents: &[u8]) -> io::Result<()> {
    use std::io::Write;
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(MODE)
        .open(path)?;
    file.write_all(contents)?;
    create(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_owner_only_and_tightens_existing_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/state.db");
        create(&path).unwrap();
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            MODE
        );

        fs::write(&path, b"kept").unwrap();
        fs::set_permissions(&path, Permissions::from_mode(0o644)).unwrap();
        create(&path).unwrap();
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            MODE
        );
        assert_eq!(fs::read(&path).unwrap(), b"kept");
    }
}
