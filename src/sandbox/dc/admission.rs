//! Bounds on what clients may make the DC hold: connections per address and
//! per auth key, bytes of unfinished packets across all connections, and
//! answers queued for a client that does not read them.
//!
//! Telegram answers a client over such a bound with the transport error
//! `-429` or by closing; so does the sandbox, rather than growing. It also
//! holds the one bound Telegram answers with an RPC error: an auth key is
//! served on one live connection at a time ([`ServedKeys`]; the others get
//! `406 AUTH_KEY_DUPLICATED`, see [`super::connection`]).

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use crate::sandbox::NatMapping;

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

/// The connections each auth key is served on. A connection is served
/// only while no other connection with its key is live: open, and its NAT
/// mapping not dead (a client whose mapping died reconnects from a new
/// port while the server still holds the old socket, and must get in).
#[derive(Default)]
pub(crate) struct ServedKeys(Arc<ServedInner>);

#[derive(Default)]
struct ServedInner {
    holders: Mutex<HashMap<i64, Vec<Holder>>>,
    /// Woken whenever a connection stops being served.
    released: Notify,
    next_id: AtomicU64,
}

struct Holder {
    id: u64,
    mapping: Arc<NatMapping>,
}

impl ServedInner {
    fn lock(&self) -> MutexGuard<'_, HashMap<i64, Vec<Holder>>> {
        self.holders.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl ServedKeys {
    /// Serves `key` on the connection whose mapping is `mapping`, unless a
    /// live connection is served with it still after `grace` (a reconnecting
    /// client closes its old socket first, but the server may see the new
    /// connection before the old one's end). With the claim comes how many
    /// live connections are served with `key` now, this one included.
    pub async fn claim(
        &self,
        key: i64,
        mapping: &Arc<NatMapping>,
        grace: Duration,
    ) -> Option<(KeyClaim, usize)> {
        let deadline = Instant::now() + grace;
        loop {
            // Registered before looking, so that no release is missed.
            let released = self.0.released.notified();
            tokio::pin!(released);
            released.as_mut().enable();
            if let Some(claimed) = self.try_claim(key, mapping) {
                return Some(claimed);
            }
            if tokio::time::timeout_at(deadline, released).await.is_err() {
                return None;
            }
        }
    }

    fn try_claim(&self, key: i64, mapping: &Arc<NatMapping>) -> Option<(KeyClaim, usize)> {
        let mut holders = self.0.lock();
        let served = holders.entry(key).or_default();
        let live = served.iter().filter(|h| !h.mapping.is_dead()).count();
        if live > 0 {
            return None;
        }
        let id = self.0.next_id.fetch_add(1, Ordering::Relaxed);
        served.push(Holder {
            id,
            mapping: Arc::clone(mapping),
        });
        let claim = KeyClaim {
            inner: Arc::clone(&self.0),
            key,
            id,
        };
        Some((claim, live + 1))
    }
}

/// A connection served with its key, until dropped.
pub(crate) struct KeyClaim {
    inner: Arc<ServedInner>,
    key: i64,
    id: u64,
}

impl Drop for KeyClaim {
    fn drop(&mut self) {
        let mut holders = self.inner.lock();
        if let Some(served) = holders.get_mut(&self.key) {
            served.retain(|holder| holder.id != self.id);
            if served.is_empty() {
                holders.remove(&self.key);
            }
        }
        drop(holders);
        self.inner.released.notify_waiters();
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
    /// Connections per auth key id that sent a first packet (for the
    /// `max_connections` fault).
    pub keys: Counts<i64>,
    pub served_keys: ServedKeys,
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

    #[tokio::test(start_paused = true)]
    async fn a_key_is_served_once_until_closed_or_its_mapping_dies() {
        let faults = Arc::new(crate::sandbox::Faults::default());
        let mapping = || Arc::new(NatMapping::new(Arc::clone(&faults), 7));
        let served = ServedKeys::default();
        let grace = Duration::from_millis(100);
        let (first, live) = served.claim(7, &mapping(), grace).await.unwrap();
        assert_eq!(live, 1);
        assert!(served.claim(7, &mapping(), grace).await.is_none());
        assert!(served.claim(8, &mapping(), grace).await.is_some());

        // Closed within the grace: the waiting connection is served.
        let waiting = tokio::spawn({
            let served = ServedKeys(Arc::clone(&served.0));
            let mapping = mapping();
            async move { served.claim(7, &mapping, grace).await }
        });
        tokio::time::sleep(grace / 2).await;
        drop(first);
        let (second, live) = waiting.await.unwrap().unwrap();
        assert_eq!(live, 1);

        // A dead mapping does not hold the key.
        faults.set_blackhole([7]);
        let dead = mapping();
        assert!(dead.is_dead());
        drop(second);
        let (_dead, _) = served.claim(7, &dead, grace).await.unwrap();
        faults.set_blackhole([]);
        let (_fresh, live) = served.claim(7, &mapping(), grace).await.unwrap();
        assert_eq!(live, 1);
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
