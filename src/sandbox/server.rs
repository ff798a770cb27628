//! A running sandbox: the DC, the Telegram model behind it, the control API
//! and the state file, started and stopped together.
//!
//! `telegate sandbox` runs one; tests start one in-process the same way and
//! point a grammers client (or a worker) at [`Sandbox::dc_addr`].

use std::collections::BTreeMap;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use super::control::{self, Control};
use super::dc::{Dc, DcAdmission, DcLimits, DcParts, Traffic, TrafficCounts};
use super::state_file::{StateFile, StateFileError};
use super::telegram::{DC_ID, DC_IDS, DEFAULT_CALLBACK_TIMEOUT, FakeTelegram, World};
use super::web::{self, RunningWeb, WebError, WebOptions};
use super::{Faults, KeyRing, Outbox, Service};
use crate::api::socket::{BindError, SocketFile};

/// How to start a sandbox.
#[derive(Debug, Clone)]
pub struct SandboxOptions {
    /// Where the state file and control socket live; `None`: in memory,
    /// without a control socket (use [`Sandbox::telegram`] directly).
    pub state_dir: Option<PathBuf>,
    /// The home DC's port on 127.0.0.1 (0 picks a free one); the other
    /// DCs take free ports.
    pub port: u16,
    pub callback_timeout: Duration,
    /// Serve the chat page (needs `state_dir`: the worker's socket is there).
    pub web: Option<WebOptions>,
    /// How many bots the model holds at least (more are added, none
    /// removed). Each bot's connections come from loopback like every
    /// other client's, so one address may hold [`CONNECTIONS_PER_BOT`] more
    /// per bot.
    pub bots: usize,
}

/// Connections one address may open per bot of the sandbox, beyond the
/// DC's usual bound (a bot holds one per DC it uses, and a reconnect may
/// overlap the connection it replaces).
pub const CONNECTIONS_PER_BOT: usize = 2;

impl Default for SandboxOptions {
    fn default() -> Self {
        SandboxOptions {
            state_dir: None,
            port: 0,
            callback_timeout: DEFAULT_CALLBACK_TIMEOUT,
            web: None,
            bots: 1,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    State(#[from] StateFileError),
    #[error("cannot listen on 127.0.0.1:{port}: {source}")]
    Dc { port: u16, source: io::Error },
    #[error("control socket: {0}")]
    Control(#[from] BindError),
    #[error(transparent)]
    Web(#[from] WebError),
}

/// A running sandbox. Stop it with [`Sandbox::shutdown`] so that the state
/// file gets its last write; dropping it stops the DC too.
pub struct Sandbox {
    telegram: FakeTelegram,
    faults: Arc<Faults>,
    traffic: Arc<Traffic>,
    /// DCs 1–5; the home DC (2) listens on the configured port.
    dcs: Vec<Dc>,
    dc_addrs: BTreeMap<i32, SocketAddrV4>,
    /// Removed from disk when dropped.
    control_socket: Option<SocketFile>,
    stop: watch::Sender<bool>,
    control_task: Option<JoinHandle<io::Result<()>>>,
    saver_task: Option<JoinHandle<Result<(), StateFileError>>>,
    web: Option<RunningWeb>,
}

impl Sandbox {
    pub async fn start(options: SandboxOptions) -> Result<Sandbox, StartError> {
        let state_file = options.state_dir.as_deref().map(StateFile::in_dir);
        let world = match &state_file {
            Some(file) => file.load_or_create()?,
            None => World::new(),
        };
        let outbox = Arc::new(Outbox::default());
        let faults = Arc::new(Faults::default());
        let telegram = FakeTelegram::new(world, Arc::clone(&outbox));
        telegram.set_callback_timeout(options.callback_timeout);
        let bots = telegram.ensure_bots(options.bots).len();

        let service: Arc<dyn Service> = Arc::new(telegram.clone());
        let keys: Arc<dyn KeyRing> = Arc::new(telegram.clone());
        let traffic = Arc::new(Traffic::default());
        let mut dcs = Vec::new();
        let mut dc_addrs = BTreeMap::new();
        let defaults = DcLimits::default();
        let admission = DcAdmission::new(DcLimits {
            connections_per_address: defaults.connections_per_address + CONNECTIONS_PER_BOT * bots,
            ..defaults
        });
        for dc_id in DC_IDS {
            let port = if dc_id == DC_ID { options.port } else { 0 };
            let parts = DcParts {
                dc_id,
                service: Arc::clone(&service),
                keys: Arc::clone(&keys),
                outbox: Arc::clone(&outbox),
                faults: Arc::clone(&faults),
                traffic: Arc::clone(&traffic),
                admission: admission.clone(),
            };
            let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
            let dc = Dc::bind(addr, parts)
                .await
                .map_err(|source| StartError::Dc { port, source })?;
            let addr = match dc.local_addr() {
                SocketAddr::V4(v4) => v4,
                SocketAddr::V6(v6) => SocketAddrV4::new(Ipv4Addr::LOCALHOST, v6.port()),
            };
            dc_addrs.insert(dc_id, addr);
            dcs.push(dc);
        }
        telegram.set_dc_addresses(dc_addrs.iter().map(|(&id, &addr)| (id, addr)).collect());

        let (stop, stopped) = watch::channel(false);
        let mut sandbox = Sandbox {
            telegram: telegram.clone(),
            faults: Arc::clone(&faults),
            traffic: Arc::clone(&traffic),
            dcs,
            dc_addrs: dc_addrs.clone(),
            control_socket: None,
            stop,
            control_task: None,
            saver_task: None,
            web: None,
        };
        if let (Some(dir), Some(file)) = (options.state_dir, state_file) {
            let path = dir.join(control::SOCKET_NAME);
            let (listener, socket) = crate::api::socket::bind(&path).await?;
            let control = Control {
                telegram: telegram.clone(),
                faults,
                traffic,
                dc_addrs,
            };
            if let Some(options) = options.web {
                let worker_socket = crate::config::StateDir::new(&dir).socket();
                let running =
                    web::start(options, control.clone(), worker_socket, stopped.clone()).await?;
                info!(url = %format!("http://{}/", running.local_addr()), "sandbox web page listening");
                sandbox.web = Some(running);
            }
            sandbox.control_task = Some(tokio::spawn(control::serve(
                listener,
                control,
                until_stopped(stopped.clone()),
            )));
            sandbox.saver_task = Some(tokio::spawn(
                file.keep_saved(telegram, until_stopped(stopped)),
            ));
            info!(socket = %path.display(), "sandbox control API listening");
            sandbox.control_socket = Some(socket);
        }
        Ok(sandbox)
    }

    pub fn telegram(&self) -> &FakeTelegram {
        &self.telegram
    }

    pub fn faults(&self) -> &Arc<Faults> {
        &self.faults
    }

    /// Where MTProto clients connect.
    pub fn dc_addr(&self) -> SocketAddrV4 {
        self.dc_addrs[&DC_ID]
    }

    /// Where each DC (1–5) listens.
    pub fn dc_addrs(&self) -> &BTreeMap<i32, SocketAddrV4> {
        &self.dc_addrs
    }

    /// The DCs' counters (what `GET /stats` shows of them).
    pub fn traffic(&self) -> TrafficCounts {
        self.traffic.counts()
    }

    /// What the control API (and the web page) work on.
    pub fn control(&self) -> Control {
        Control {
            telegram: self.telegram.clone(),
            faults: Arc::clone(&self.faults),
            traffic: Arc::clone(&self.traffic),
            dc_addrs: self.dc_addrs.clone(),
        }
    }

    /// Where the chat page listens, if it is served.
    pub fn web_addr(&self) -> Option<SocketAddr> {
        self.web.as_ref().map(RunningWeb::local_addr)
    }

    pub fn control_socket(&self) -> Option<&Path> {
        self.control_socket.as_ref().map(SocketFile::path)
    }

    /// Stops the control API, saves the state a last time, stops the DC.
    pub async fn shutdown(mut self) -> Result<(), StateFileError> {
        let _ = self.stop.send(true);
        if let Some(task) = self.control_task.take() {
            match task.await {
                Ok(Err(error)) => warn!(%error, "control API stopped with an error"),
                Err(error) => warn!(%error, "control API task failed"),
                Ok(Ok(())) => {}
            }
        }
        if let Some(web) = self.web.take()
            && let Err(error) = web.join().await
        {
            warn!(%error, "web page stopped with an error");
        }
        let saved = match self.saver_task.take() {
            Some(task) => task.await.unwrap_or_else(|e| {
                Err(StateFileError::Write {
                    path: PathBuf::new(),
                    source: io::Error::other(e),
                })
            }),
            None => Ok(()),
        };
        drop(self.control_socket.take());
        let Sandbox { dcs, .. } = self;
        for dc in dcs {
            dc.shutdown().await;
        }
        saved
    }
}

async fn until_stopped(mut stopped: watch::Receiver<bool>) {
    // An error means the sender is gone: the sandbox was dropped.
    let _ = stopped.wait_for(|stop| *stop).await;
}
