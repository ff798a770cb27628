//! What `GET /stats` shows of the DCs: connections by transport and by DC,
//! the connections refused or closed by a bound, and those refused because
//! their auth key was in use on another connection.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use serde::Serialize;

/// Counters shared by every DC of a sandbox.
#[derive(Default)]
pub struct Traffic {
    counts: Mutex<TrafficCounts>,
}

/// A snapshot of [`Traffic`].
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct TrafficCounts {
    /// Connections whose transport was recognised, by transport name.
    pub connections_by_transport: BTreeMap<&'static str, u64>,
    /// Connections accepted, by DC id.
    pub connections_by_dc: BTreeMap<i32, u64>,
    /// Connections refused or closed by a bound, by reason.
    pub refused: BTreeMap<&'static str, u64>,
    /// Connections answered `406 AUTH_KEY_DUPLICATED`: their auth key was
    /// served on another live connection.
    pub auth_key_duplicates_refused: u64,
    /// The most connections ever served at once with one auth key: 1 once
    /// any was served, more only if the one-connection rule broke.
    pub max_live_connections_per_key: u64,
}

impl Traffic {
    fn lock(&self) -> MutexGuard<'_, TrafficCounts> {
        self.counts.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn accepted(&self, dc_id: i32) {
        *self.lock().connections_by_dc.entry(dc_id).or_default() += 1;
    }

    pub(crate) fn transport(&self, name: &'static str) {
        *self
            .lock()
            .connections_by_transport
            .entry(name)
            .or_default() += 1;
    }

    pub(crate) fn refused(&self, reason: &'static str) {
        *self.lock().refused.entry(reason).or_default() += 1;
    }

    pub(crate) fn auth_key_duplicate_refused(&self) {
        self.lock().auth_key_duplicates_refused += 1;
    }

    /// A connection is served with a key that `live` connections use now.
    pub(crate) fn served_key(&self, live: usize) {
        let live = u64::try_from(live).unwrap_or(u64::MAX);
        let mut counts = self.lock();
        counts.max_live_connections_per_key = counts.max_live_connections_per_key.max(live);
    }

    pub fn counts(&self) -> TrafficCounts {
        self.lock().clone()
    }
}
