//! The sandbox's world on disk: `DIR/sandbox.json`, mode 0600.
//!
//! A worker restarted against a running sandbox finds every user, message
//! and pts where it left them, since they live in the sandbox's memory; this
//! file makes the sandbox itself restartable with the same directory. It is
//! rewritten atomically (temporary file, then rename) at most twice a second
//! while things change, and once more at shutdown. It holds auth keys and the bot token,
//! hence the mode.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tracing::warn;

use super::telegram::{FakeTelegram, World};
use crate::private_file;

pub const FILE_NAME: &str = "sandbox.json";

/// Changes within this window are saved together: the whole world is
/// rewritten each time, so this bounds the cost under a busy worker (and is
/// what a SIGKILLed sandbox may lose; a clean stop saves everything).
const COALESCE: Duration = Duration::from_millis(500);

#[derive(Debug, thiserror::Error)]
pub enum StateFileError {
    #[error("cannot read the sandbox state {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("the sandbox state {path} is not valid: {source}")]
    Parse {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("cannot write the sandbox state {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
}

/// Where the world is kept.
#[derive(Debug, Clone)]
pub struct StateFile {
    path: PathBuf,
}

impl StateFile {
    pub fn in_dir(dir: &Path) -> Self {
        StateFile {
            path: dir.join(FILE_NAME),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The saved world, or a new one (saved at once) if there is none yet.
    pub fn load_or_create(&self) -> Result<World, StateFileError> {
        match fs::read(&self.path) {
            Ok(bytes) => {
                let mut world: World =
                    serde_json::from_slice(&bytes).map_err(|source| StateFileError::Parse {
                        path: self.path.clone(),
                        source,
                    })?;
                world.migrate();
                Ok(world)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let world = World::new();
                self.save(&world)?;
                Ok(world)
            }
            Err(source) => Err(StateFileError::Read {
                path: self.path.clone(),
                source,
            }),
        }
    }

    /// Writes `world` atomically, mode 0600.
    pub fn save(&self, world: &World) -> Result<(), StateFileError> {
        let write_error = |source| StateFileError::Write {
            path: self.path.clone(),
            source,
        };
        let bytes = serde_json::to_vec(world).map_err(|e| write_error(io::Error::other(e)))?;
        let tmp = self.path.with_extension("json.tmp");
        if let Some(parent) = self.path.parent().filter(|p| !p.as_os_str().is_empty()) {
            fs::create_dir_all(parent).map_err(write_error)?;
        }
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(private_file::MODE)
            .open(&tmp)
            .map_err(write_error)?;
        file.write_all(&bytes).map_err(write_error)?;
        file.sync_all().map_err(write_error)?;
        fs::rename(&tmp, &self.path).map_err(write_error)?;
        private_file::create(&self.path).map_err(write_error)
    }

    /// Saves the world after each change until `shutdown` resolves, then
    /// once more. A failed save is logged and retried with the next change;
    /// the last one's error is returned.
    pub async fn keep_saved(
        self,
        telegram: FakeTelegram,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> Result<(), StateFileError> {
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = telegram.wait_changed() => {}
                () = &mut shutdown => break,
            }
            tokio::time::sleep(COALESCE).await;
            let world = telegram.snapshot();
            let file = self.clone();
            let saved = tokio::task::spawn_blocking(move || file.save(&world)).await;
            match saved {
                Ok(Ok(())) => {}
                Ok(Err(error)) => {
                    warn!(%error, "sandbox state not saved; retrying on the next change")
                }
                Err(error) => warn!(%error, "sandbox state saver failed"),
            }
        }
        self.save(&telegram.snapshot())
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn creates_saves_and_reloads_owner_only() {
        let dir = tempfile::tempdir().unwrap();
        let file = StateFile::in_dir(dir.path());
        let world = file.load_or_create().unwrap();
        let mode = fs::metadata(file.path()).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let again = file.load_or_create().unwrap();
        assert_eq!(again.keys[0].key, world.keys[0].key);
        assert_eq!(again.bots[0].token, world.bots[0].token);
    }

    #[tokio::test]
    async fn changes_are_saved_while_running_and_at_shutdown() {
        use std::sync::Arc;

        use crate::sandbox::Outbox;
        use crate::sandbox::telegram::NewUser;

        let dir = tempfile::tempdir().unwrap();
        let file = StateFile::in_dir(dir.path());
        let telegram =
            FakeTelegram::new(file.load_or_create().unwrap(), Arc::new(Outbox::default()));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let saver = tokio::spawn(file.clone().keep_saved(telegram.clone(), async {
            let _ = stopped.await;
        }));
        let saved_users = |file: &StateFile| file.load_or_create().unwrap().users.len();
        telegram
            .create_user(NewUser {
                first_name: "Ann".into(),
                ..NewUser::default()
            })
            .unwrap();
        tokio::time::timeout(Duration::from_secs(20), async {
            while saved_users(&file) != 1 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .expect("the change saved while running");
        telegram
            .create_user(NewUser {
                first_name: "Ben".into(),
                ..NewUser::default()
            })
            .unwrap();
        stop.send(()).unwrap();
        saver.await.unwrap().unwrap();
        assert_eq!(saved_users(&file), 2, "saved at shutdown");
    }

    #[test]
    fn a_corrupt_file_is_reported_not_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let file = StateFile::in_dir(dir.path());
        fs::write(file.path(), b"{not json").unwrap();
        let err = file.load_or_create().unwrap_err();
        assert!(matches!(err, StateFileError::Parse { .. }), "{err}");
        assert_eq!(fs::read(file.path()).unwrap(), b"{not json");
    }
}
