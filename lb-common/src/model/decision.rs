//! What the model says the program does with one packet: the [`Decision`]
//! and the parts it is made of.

use alloc::vec::Vec;

use super::flood::BucketWrite;
use super::nat::ClientWrite;
use crate::handshake::{HandshakeDelta, HandshakeWatch};
use crate::maps::{Counters, Endpoint, Flow, FlowKey, InsertWindow, Reason, XDP_ACTION_NAMES};

/// An XDP action, numbered as the kernel numbers them (`enum xdp_action`).
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum XdpAction {
    /// Program error. `lb_xdp` never returns it; listed so that every value a
    /// test run reports maps onto this type.
    Aborted = 0,
    Drop = 1,
    Pass = 2,
    /// Bounced out of the ingress interface.
    Tx = 3,
    /// Sent out of another interface (`bpf_redirect`).
    Redirect = 4,
}

impl XdpAction {
    /// The action numbered `value`, if the kernel defines one.
    pub const fn from_u32(value: u32) -> Option<Self> {
        match value {
            0 => Some(Self::Aborted),
            1 => Some(Self::Drop),
            2 => Some(Self::Pass),
            3 => Some(Self::Tx),
            4 => Some(Self::Redirect),
            _ => None,
        }
    }

    /// The name used in `ACTION_STATS` and metrics (`"tx"`, ...).
    pub const fn name(self) -> &'static str {
        XDP_ACTION_NAMES[self as usize]
    }
}

/// The interface a packet arrived on, and when.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ingress {
    /// The clock the program reads (`bpf_ktime_get_ns`), for the flood
    /// guards; an explicit input, so the model stays deterministic.
    pub now_ns: u64,
    /// Its ifindex: a backend behind it is reached with `XDP_TX`, any other
    /// with `XDP_REDIRECT`.
    pub ifindex: u32,
    /// Its MAC. Not consulted: the program checks frames against the MACs
    /// in `LOCAL_INTERFACE` ([`super::MapContents::local_interface`]).
    pub mac: [u8; 6],
}

/// What a packet did to the flow table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlowChange {
    /// No entry was written (lookups only refresh the LRU order, which the
    /// model does not track).
    Unchanged,
    /// A new entry for a flow that had none.
    Inserted { key: FlowKey, flow: Flow },
    /// An entry rewritten: its backend no longer served the flow.
    Replaced {
        key: FlowKey,
        flow: Flow,
        previous: Flow,
    },
    /// A new flow forwarded without an entry: this CPU's inserts this second
    /// reached `flow_insert_limit_per_cpu` (`insert_skipped`).
    Skipped { key: FlowKey, flow: Flow },
    /// An established entry's last-seen mark rewritten (a new clock tick, or
    /// a FIN or RST): the backend stays.
    Marked { key: FlowKey, last_seen: u32 },
}

impl FlowChange {
    /// Whether the packet opened a new flow (counted in `new_flows`).
    pub fn is_new_flow(&self) -> bool {
        matches!(
            self,
            FlowChange::Inserted { .. } | FlowChange::Replaced { .. } | FlowChange::Skipped { .. }
        )
    }
}

/// A round-robin cursor moved by the packet (this CPU's).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CursorAdvance {
    /// The service whose cursor moved (its index in `RR_CURSOR`).
    pub service_id: u32,
    /// The cursor's new value: the slot the next new flow starts from.
    pub next: u32,
}

/// Counters added to one entry of `SERVICE_STATS` or `BACKEND_STATS`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Traffic {
    /// The entry: a service id or a backend id.
    pub index: u32,
    /// What is added to it.
    pub delta: Counters,
}

/// What a packet did to passive health.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HandshakeEffect {
    /// Added to `HANDSHAKE_STATS`, by backend id, in order.
    pub counted: Vec<(u32, HandshakeDelta)>,
    /// Handshake records written, by backend id, in write order.
    pub watches: Vec<(u32, HandshakeWatch)>,
}

/// How a `nat` service rewrote a forwarded packet's addresses and ports
/// (its checksums updated to match).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NatRewrite {
    /// A client's packet, on its way to its backend: the destination is
    /// the backend's address and port.
    ToBackend,
    /// A backend's reply, sent on to its client: the source, this
    /// `NAT_REVERSE` key (the backend's address, port and protocol), is
    /// the service's VIP and port.
    Reply(Endpoint),
}

/// Everything one packet does, as the program would do it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    /// The action returned (also counted in `ACTION_STATS`).
    pub action: XdpAction,
    /// The frame as the program leaves it (MACs rewritten when forwarded,
    /// and the addresses, ports and checksums that `nat` rewrites).
    pub output: Vec<u8>,
    /// The `REASON_STATS` entry counted: for a passed or dropped packet, and
    /// `insert_skipped` for a new flow forwarded without an entry.
    pub reason: Option<Reason>,
    /// The 5-tuple, when the packet parsed as TCP or UDP to a VIP, or the
    /// flow an ICMP "fragmentation needed" to a VIP is about.
    pub flow_key: Option<FlowKey>,
    /// The backend the packet was forwarded to (none for a `nat` reply).
    pub backend_id: Option<u32>,
    /// What happened to the flow table.
    pub flow_change: FlowChange,
    /// The round-robin cursor the packet moved, if any. It moves even when the
    /// slot it yields turns out unusable and the packet is dropped.
    pub cursor_advance: Option<CursorAdvance>,
    /// Counted in `SERVICE_STATS` (absent when the id is beyond the map).
    pub service_traffic: Option<Traffic>,
    /// Counted in `BACKEND_STATS` (absent when the id is beyond the map).
    pub backend_traffic: Option<Traffic>,
    // flood protection
    /// The source's token bucket after a new flow took a token from it.
    pub source_bucket: Option<BucketWrite>,
    /// This CPU's insert window after a new flow, when the guard is on.
    pub insert_window: Option<InsertWindow>,
    // passive health
    pub handshakes: HandshakeEffect,
    // NAT
    /// The rewrite of a packet forwarded by a `nat` service, or of a reply
    /// translated back to one.
    pub nat: Option<NatRewrite>,
    /// The client's MAC learnt on a new flow of a `nat` service, when it
    /// changed: the `NAT_CLIENTS` write.
    pub nat_client: Option<ClientWrite>,
}

impl Decision {
    /// A packet handed to the kernel (`Pass`) or dropped (`Drop`) untouched.
    pub(super) fn unforwarded(
        action: XdpAction,
        reason: Reason,
        frame: &[u8],
        flow_key: Option<FlowKey>,
        cursor_advance: Option<CursorAdvance>,
    ) -> Self {
        Self {
            action,
            output: frame.to_vec(),
            reason: Some(reason),
            flow_key,
            backend_id: None,
            flow_change: FlowChange::Unchanged,
            cursor_advance,
            service_traffic: None,
            backend_traffic: None,
            source_bucket: None,
            insert_window: None,
            handshakes: HandshakeEffect::default(),
            nat: None,
            nat_client: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_are_numbered_like_the_kernel() {
        for value in 0..5 {
            let action = XdpAction::from_u32(value).unwrap();
            assert_eq!(action as u32, value);
            assert_eq!(action.name(), XDP_ACTION_NAMES[value as usize]);
        }
        assert_eq!(XdpAction::from_u32(5), None);
        assert_eq!(XdpAction::Tx.name(), "tx");
    }
}
