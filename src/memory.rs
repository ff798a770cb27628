//! Process-wide memory settings, so that a daemon holding many idle bots
//! costs little per bot (issue #13).
//!
//! Two defaults meant for a process with a few large users cost a daemon
//! with a thousand small ones dearly, and neither can be set per bot:
//!
//! - SQLite gives every new connection's page cache an up-front bulk of 20
//!   pages and writes a header into each, so each bot's session file (seven
//!   pages) held ~88 KiB resident. Without the bulk a cache allocates the
//!   pages it reads, one by one.
//! - glibc raises its mmap threshold to the size of any mmapped block freed
//!   (up to 32 MiB). grammers gives every connection a 1 MiB read buffer
//!   and a 1 MiB write buffer; once one was freed (a bot reconnected: a
//!   1,000-bot start on two cores has the liveness watchdog drop dozens),
//!   later buffers came from the heap arenas, where they are zeroed or
//!   reused and so resident, where mmapped ones cost only the pages
//!   touched: 0.44 MiB per idle bot at 1,000 bots against 0.20 with the
//!   threshold pinned at glibc's own initial 128 KiB. Blocks that large are
//!   otherwise rare (media parts): each costs an mmap and its page faults,
//!   small beside moving it over the network (the sender's CPU per job did
//!   not change measurably in `benches/bots.rs`).
//!
//! [`configure`] must run before the first SQLite connection of the process
//! (SQLite refuses the setting once initialized), so `main` calls it first.

/// glibc's initial mmap threshold, kept from then on.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MMAP_THRESHOLD: libc::c_int = 128 * 1024;

/// What [`configure`] managed to set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Configured {
    /// SQLite page caches allocate no bulk (false: SQLite was already in use).
    pub sqlite_no_bulk: bool,
    /// The allocator's mmap threshold is pinned (false: not glibc, or refused).
    pub mmap_threshold_pinned: bool,
}

/// Applies the settings; call it once, before any SQLite connection.
pub fn configure() -> Configured {
    // SAFETY: SQLITE_CONFIG_PAGECACHE takes (void*, int, int); a null
    // buffer with N = 0 asks for no bulk allocation. SQLite returns
    // SQLITE_MISUSE instead of applying it once initialized.
    let sqlite = unsafe {
        rusqlite::ffi::sqlite3_config(
            rusqlite::ffi::SQLITE_CONFIG_PAGECACHE,
            std::ptr::null_mut::<std::ffi::c_void>(),
            0 as std::ffi::c_int,
            0 as std::ffi::c_int,
        )
    };
    Configured {
        sqlite_no_bulk: sqlite == rusqlite::ffi::SQLITE_OK,
        mmap_threshold_pinned: pin_mmap_threshold(),
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn pin_mmap_threshold() -> bool {
    // SAFETY: mallopt only sets allocator parameters; setting
    // M_MMAP_THRESHOLD also turns its dynamic adjustment off.
    unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1 }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn pin_mmap_threshold() -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[test]
    fn the_mmap_threshold_is_pinned_on_glibc() {
        // Whether SQLite took its setting depends on whether another test
        // of this process opened a connection first; the allocator's does not.
        assert!(configure().mmap_threshold_pinned);
    }
}
