//! Bounds on what clients may make the DC hold: connections per address and
//! per auth key, bytes of unfinished packets across all connections, and
//! answers queued for a client that does not read them.
//!
//! Telegram answers a client over such a bound with the transport error
//! `-429` or by closing; so does the sandbox, rather than growing.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

/// The bounds of one DC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DcLimits {
    /// Simultaneous connections from one IP address.
    pub connections_per_address: usize,
    /// Bytes of partly received packets, summed over all connections.
    pub buffered_bytes: usize,
    /// Bytes of answers waiting to be written to one connection.
    pub queued_bytes: usize,
}

impl Default for DcLimits {
    fn default() -> Self {
        DcLimits {
            connections_per_address: 256,
            buffered_bytes: 64 * 1024 * 1024,
            queued_bytes: 4 * 1024 * 1024,
        }
    }
}

/// Live counts by some key (address, auth key); a [`Slot`] holds one.
pub(crate) struct Counts<K: Hash + Eq + Copy>(Arc<Mutex<HashMap<K, usize>>>);

impl<K: Hash + Eq + Copy> Default for Counts<K> {
    fn default() -> Self {
        Counts(Arc::default())
    }
}

impl<K: Hash + Eq + Copy + Send + 'static> Counts<K> {
    /// Whether some slot for `key` is taken.
    pub fn contains(&self, key: &K) -> bool {
        let counts = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        counts.contains_key(key)
    }

    /// Takes a slot for `key` unless `max` are taken already.
    pub fn take(&self, key: K, max: usize) -> Option<Slot> {
        let mut counts = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let count = counts.entry(key).or_default();
        if *count >= max {
            return None;
        }
        *count += 1;
        let counts = Arc::clone(&self.0);
        Some(Slot(Some(Box::new(move || {
            let mut counts = counts.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(count) = counts.get_mut(&key) {
                *count -= 1;
                if *count == 0 {
                    counts.remove(&key);
                }
            }
        }))))
    }
}

/// One taken place in a [`Counts`], given back when dropped.
pub(crate) struct Slot(Option<Box<dyn FnOnce() + Send>>);

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(release) = self.0.take() {
            release();
        }
    }
}

/// The bounds and live counts that several DCs share, so that the limits
/// hold for the whole sandbox and not for each DC alone.
#[derive(Clone)]
pub struct DcAdmission(pub(crate) Arc<Admission>);

impl DcAdmission {
    pub fn new(limits: DcLimits) -> Self {
        DcAdmission(Arc::new(Admission::new(limits)))
    }
}

impl Default for DcAdmission {
    fn default() -> Self {
        DcAdmission::new(DcLimits::default())
    }
}

/// Admission state shared by the connections of one or more DCs.
#[derive(Default)]
pub(crate) struct Admission {
    pub limits: DcLimits,
    pub addresses: Counts<IpAddr>,
    pub keys: Counts<i64>,
    buffered: Arc<AtomicUsize>,
}

impl Admission {
    pub fn new(limits: DcLimits) -> Self {
        Admission {
            limits,
            ..Admission::default()
        }
    }

    /// A connection's share of the buffered-bytes budget, starting at 0.
    pub fn buffer_charge(&self) -> BufferCharge {
        BufferCharge {
            total: Arc::clone(&self.buffered),
            cap: self.limits.buffered_bytes,
            mine: 0,
        }
    }

    #[cfg(test)]
    pub fn buffered(&self) -> usize {
        self.buffered.load(Ordering::Relaxed)
    }
}

/// The bytes one connection holds of unfinished packets.
pub(crate) struct BufferCharge {
    total: Arc<AtomicUsize>,
    cap: usize,
    mine: usize,
}

/// All connections together hold more unfinished packets than allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("unfinished packets of all connections exceed {0} bytes")]
pub struct OverBudget(pub usize);

impl BufferCharge {
    /// Records that this connection now buffers `bytes`.
    pub fn set(&mut self, bytes: usize) -> Result<(), OverBudget> {
        let total = if bytes >= self.mine {
            self.total.fetch_add(bytes - self.mine, Ordering::Relaxed) + (bytes - self.mine)
        } else {
            self.total.fetch_sub(self.mine - bytes, Ordering::Relaxed) - (self.mine - bytes)
        };
        self.mine = bytes;
        if total > self.cap {
            return Err(OverBudget(self.cap));
        }
        Ok(())
    }
}

impl Drop for BufferCharge {
    fn drop(&mut self) {
        self.total.fetch_sub(self.mine, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_bounded_and_given_back() {
        let counts = Counts::<u8>::default();
        let a = counts.take(1, 2).unwrap();
        let _b = counts.take(1, 2).unwrap();
        assert!(counts.take(1, 2).is_none());
        assert!(counts.take(2, 2).is_some());
        drop(a);
        assert!(counts.take(1, 2).is_some());
    }

    #[test]
    fn the_buffer_budget_is_shared_and_released() {
        let admission = Admission::new(DcLimits {
            buffered_bytes: 100,
            ..DcLimits::default()
        });
        let mut one = admission.buffer_charge();
        let mut two = admission.buffer_charge();
        one.set(60).unwrap();
        assert_eq!(two.set(50), Err(OverBudget(100)));
        two.set(40).unwrap();
        one.set(10).unwrap();
        assert_eq!(admission.buffered(), 50);
        drop(two);
        drop(one);
        assert_eq!(admission.buffered(), 0);
    }
}
