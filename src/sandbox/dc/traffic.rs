//! What `GET /stats` shows of the DCs: connections by transport and by DC,
//! and the connections refused or closed by a bound.

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

    pub fn counts(&self) -> TrafficCounts {
        self.lock().clone()
    }
}
