//! Passive health from the handshakes the data path sees (`observe =
//! "layer4"`): the per-backend record of handshakes that did or did not
//! complete, shared by `lb-ebpf` and the reference model.
//!
//! With direct server return the load balancer never sees a backend's
//! packets, only the client's: after a SYN, a healthy backend's client sends
//! the ACK that completes the handshake; a dead one's client retransmits the
//! SYN (host gone) or goes silent (refused). So a handshake has failed when
//! its SYN is retransmitted, or when its completing ACK has not arrived
//! `handshake_timeout` after the SYN was forwarded.
//!
//! Each backend's [`HandshakeWatch`] (one entry per backend id, shared by
//! every CPU) holds:
//! - up to [`WATCHED`] pending handshakes: a SYN forwarded to the backend
//!   and not yet completed; a SYN that finds every slot taken is not
//!   watched (under a high connection rate the watch is a sample);
//! - the failures in a row: handshakes seen to fail since the backend last
//!   completed one, and one bit per client (a hash of its address) among
//!   them.
//!
//! A backend is *ejected* once `error_limit` handshakes in a row failed,
//! from at least two distinct clients: one client's lossy path or SYN flood
//! never ejects a healthy backend, because its failures all set the same
//! bit, and any completed handshake (from any client) clears the row. An
//! ejected backend gets no new flows from the data path at once (they take
//! the next slot, see `lb-ebpf/src/balance.rs`) and the controller marks it
//! down, which the active checks undo.
//!
//! Overdue handshakes are found when the next SYN for the same backend
//! arrives: the data path has no timers. CPUs update the record without a
//! lock; a race loses at most one update, which only delays a verdict.

/// Pending handshakes watched per backend.
pub const WATCHED: usize = 4;

/// Right shift from `bpf_ktime_get_ns` nanoseconds to the handshake clock:
/// ticks of 2^20 ns (about 1.05 ms), in a `u32` that wraps after 52 days
/// (every comparison is a wrapping difference).
pub const CLOCK_SHIFT: u32 = 20;

/// The handshake clock at `now_ns` nanoseconds (see [`CLOCK_SHIFT`]).
#[inline(always)]
pub const fn clock(now_ns: u64) -> u32 {
    (now_ns >> CLOCK_SHIFT) as u32
}

/// A duration of `nanos` in handshake-clock ticks, rounded up, saturated.
pub const fn ticks(nanos: u64) -> u32 {
    let ticks = nanos.div_ceil(1 << CLOCK_SHIFT);
    if ticks > u32::MAX as u64 {
        u32::MAX
    } else {
        ticks as u32
    }
}

/// A service's passive health settings, as the data path reads them (the
/// `error_limit` and `handshake_timeout` of its `SERVICES` entry, with the
/// `OBSERVE` flag).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Observe {
    /// Failed handshakes in a row (from two clients at least) that eject a
    /// backend; 1 or more.
    pub error_limit: u8,
    /// How long a handshake may take to complete, in ticks of [`clock`].
    pub handshake_timeout: u32,
}

/// A SYN forwarded to the backend whose completing ACK has not been seen.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct PendingHandshake {
    /// The client's address, network order; 0: the slot is free.
    pub client: u32,
    /// The client's port, network order.
    pub port: u16,
    pub _pad: u16,
    /// When the SYN was forwarded, on the handshake clock.
    pub opened_at: u32,
}

/// Value of `HANDSHAKES` (see the module documentation), by backend id.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct HandshakeWatch {
    /// Handshakes seen to fail since the backend last completed one.
    pub failed_in_row: u32,
    /// One bit per client with a failure in the row ([`client_bit`]).
    pub failed_clients: u32,
    pub pending: [PendingHandshake; WATCHED],
}

/// What one packet did to a backend's handshake counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct HandshakeDelta {
    pub completed: u64,
    pub retransmitted: u64,
    pub failed: u64,
}

/// Per-backend handshake counters (value of `HANDSHAKE_STATS`, per CPU;
/// userspace sums them).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct HandshakeCounters {
    /// Handshakes whose completing ACK arrived.
    pub completed: u64,
    /// SYNs retransmitted on a tuple whose handshake had not completed
    /// (each one given to the next backend).
    pub retransmitted: u64,
    /// Handshakes seen to fail: retransmitted, or watched and not
    /// completed within `handshake_timeout`.
    pub failed: u64,
}

impl HandshakeCounters {
    /// The counters after `delta`.
    pub const fn plus(self, delta: HandshakeDelta) -> Self {
        Self {
            completed: self.completed.wrapping_add(delta.completed),
            retransmitted: self.retransmitted.wrapping_add(delta.retransmitted),
            failed: self.failed.wrapping_add(delta.failed),
        }
    }
}

/// The bit of [`HandshakeWatch::failed_clients`] for client address
/// `client` (network order): a multiplicative hash, so that neighbouring
/// addresses spread over the bits.
#[inline(always)]
pub const fn client_bit(client: u32) -> u32 {
    1 << (client.wrapping_mul(0x9E37_79B1) >> 27)
}

impl HandshakeWatch {
    /// Whether the backend is ejected with `error_limit` (0: never): that
    /// many failures in a row, from at least two clients.
    #[inline(always)]
    pub const fn is_ejected(&self, error_limit: u8) -> bool {
        error_limit != 0
            && self.failed_in_row >= error_limit as u32
            // More than one bit set: at least two distinct clients.
            && self.failed_clients & self.failed_clients.wrapping_sub(1) != 0
    }

    /// Counts as failed every watched handshake opened `timeout` ticks or
    /// more before `now`, freeing its slot; returns how many.
    #[inline(always)]
    pub fn expire(&mut self, now: u32, timeout: u32) -> u64 {
        let mut expired = 0;
        let mut clients = 0;
        for pending in self.pending.iter_mut() {
            if pending.client != 0 && now.wrapping_sub(pending.opened_at) >= timeout {
                clients |= client_bit(pending.client);
                *pending = PendingHandshake::default();
                expired += 1;
            }
        }
        if expired != 0 {
            self.failed_in_row = self.failed_in_row.saturating_add(expired as u32);
            self.failed_clients |= clients;
        }
        expired
    }

    /// Watches the handshake of `client`:`port` opened at `now`, if a slot
    /// is free.
    #[inline(always)]
    pub fn watch(&mut self, client: u32, port: u16, now: u32) {
        for pending in self.pending.iter_mut() {
            if pending.client == 0 {
                *pending = PendingHandshake {
                    client,
                    port,
                    _pad: 0,
                    opened_at: now,
                };
                return;
            }
        }
    }

    /// The handshake of `client`:`port` completed: the row of failures
    /// ends. Returns whether anything changed (so an unchanged record is
    /// never written, and its cache line stays shared between CPUs).
    #[inline(always)]
    pub fn complete(&mut self, client: u32, port: u16) -> bool {
        let mut changed = self.failed_in_row != 0 || self.failed_clients != 0;
        self.failed_in_row = 0;
        self.failed_clients = 0;
        changed |= self.forget(client, port);
        changed
    }

    /// The SYN of `client`:`port` was retransmitted: its handshake with
    /// this backend failed.
    #[inline(always)]
    pub fn fail(&mut self, client: u32, port: u16) {
        self.forget(client, port);
        self.failed_in_row = self.failed_in_row.saturating_add(1);
        self.failed_clients |= client_bit(client);
    }

    /// Frees the slot watching `client`:`port`, if any; returns whether one was.
    #[inline(always)]
    fn forget(&mut self, client: u32, port: u16) -> bool {
        for pending in self.pending.iter_mut() {
            if pending.client == client && pending.port == port && client != 0 {
                *pending = PendingHandshake::default();
                return true;
            }
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: u32 = 0x0a00_0001;
    const B: u32 = 0x0a00_0002;

    #[test]
    fn failures_from_two_clients_eject_and_a_completion_clears_them() {
        let mut watch = HandshakeWatch::default();
        watch.fail(A, 1);
        watch.fail(A, 2);
        watch.fail(A, 3);
        assert!(
            !watch.is_ejected(3),
            "one client's failures never eject: {watch:?}"
        );
        watch.fail(B, 4);
        assert!(watch.is_ejected(3) && watch.is_ejected(4));
        assert!(!watch.is_ejected(5) && !watch.is_ejected(0));
        assert!(watch.complete(B, 9));
        assert!(!watch.is_ejected(1));
        assert!(!watch.complete(B, 9), "nothing left to change");
    }

    #[test]
    fn a_watched_handshake_fails_once_overdue_and_not_before() {
        let mut watch = HandshakeWatch::default();
        watch.watch(A, 1, 100);
        watch.watch(B, 2, 140);
        assert_eq!(watch.expire(149, 50), 0);
        assert_eq!(watch.expire(150, 50), 1, "A's is 50 ticks old");
        assert_eq!(
            (watch.failed_in_row, watch.failed_clients),
            (1, client_bit(A))
        );
        assert_eq!(watch.expire(u32::MAX, 50), 1, "B's, the clock wrapped");
        assert!(watch.is_ejected(2));
        assert_eq!(watch.pending, [PendingHandshake::default(); WATCHED]);
    }

    #[test]
    fn a_full_watch_ignores_more_and_a_completion_frees_its_slot() {
        let mut watch = HandshakeWatch::default();
        for port in 0..WATCHED as u16 + 2 {
            watch.watch(A, port, 7);
        }
        assert!(watch.pending.iter().all(|pending| pending.client == A));
        assert!(watch.complete(A, 0));
        watch.watch(B, 9, 8);
        assert!(watch.pending.iter().any(|pending| pending.client == B));
        assert_eq!(
            watch.expire(17, 10),
            3,
            "the three A's are 10 ticks old, B's 9"
        );
        assert_eq!(watch.expire(18, 10), 1, "B's now");
    }

    #[test]
    fn clock_and_ticks_round_trip() {
        assert_eq!(clock(5 << CLOCK_SHIFT), 5);
        assert_eq!(ticks(0), 0);
        assert_eq!(ticks(1), 1);
        assert_eq!(ticks(50_000_000), 48, "50 ms is 47.7 ticks, rounded up");
        assert_eq!(ticks(u64::MAX), u32::MAX);
    }

    #[test]
    fn two_clients_rarely_share_a_bit() {
        // The lab's clients, 10.0.0.x in network order: distinct bits.
        let bits: u32 = (1..=16u32)
            .map(|host| client_bit(u32::from_ne_bytes([10, 0, 0, host as u8])))
            .fold(0, |all, bit| all | bit);
        assert!(bits.count_ones() >= 12, "{bits:#034b}");
    }
}
