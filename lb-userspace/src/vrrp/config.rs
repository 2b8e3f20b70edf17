//! The settings of one VRRP instance: RFC 9568 §6.1 parameters plus
//! keepalived's knobs (preempt delay, gratuitous ARP repeats, notify hooks).
//!
//! This is the one settings type of the VRRP machine and driver. It is a model,
//! not a file format: the configuration module fills it from `[vrrp]` and
//! rejects, with the file's line, every value outside the ranges the README
//! documents; [`VrrpConfig::new`] gives valid defaults for programs and
//! tests. The primary address is not part of it: it is found at startup and
//! handed to [`crate::vrrp::spawn`] beside it.

use std::net::Ipv4Addr;
use std::time::Duration;

/// One centisecond, the unit of the advertisement interval on the wire.
pub const CENTISECOND: Duration = Duration::from_millis(10);

/// The largest advertisement interval the 12-bit wire field carries: 40.95 s.
pub const MAX_ADVERT_INTERVAL_CENTIS: u16 = 0x0fff;

/// Most virtual addresses one advert carries (its address count is one byte).
pub const MAX_VIRTUAL_ADDRESSES: usize = u8::MAX as usize;

/// Priority of the address owner (RFC 5798 §5.2.4): the node that holds the
/// virtual addresses as its own. It becomes master at once on startup.
pub const OWNER_PRIORITY: u8 = u8::MAX;

/// Advertisement_Interval: a whole number of centiseconds in
/// `1..=`[`MAX_ADVERT_INTERVAL_CENTIS`], as the advert carries it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AdvertInterval(u16);

impl AdvertInterval {
    /// RFC 9568's default: 1 s.
    pub const DEFAULT: AdvertInterval = AdvertInterval(100);

    /// `centis` centiseconds, if in `1..=4095`.
    pub const fn from_centis(centis: u16) -> Option<Self> {
        if centis >= 1 && centis <= MAX_ADVERT_INTERVAL_CENTIS {
            Some(AdvertInterval(centis))
        } else {
            None
        }
    }

    /// `interval`, if it is a whole number of centiseconds in `1..=4095`.
    pub fn from_duration(interval: Duration) -> Option<Self> {
        let centis = interval.as_nanos() / CENTISECOND.as_nanos();
        if !interval.as_nanos().is_multiple_of(CENTISECOND.as_nanos()) {
            return None;
        }
        Self::from_centis(u16::try_from(centis).ok()?)
    }

    /// The value of the advert's Max Adver Int field.
    pub fn centis(self) -> u16 {
        self.0
    }

    /// The interval as a [`Duration`], for the timers.
    pub fn duration(self) -> Duration {
        CENTISECOND * u32::from(self.0)
    }
}

impl Default for AdvertInterval {
    fn default() -> Self {
        AdvertInterval::DEFAULT
    }
}

/// Settings of one virtual router (one VRID on one interface).
///
/// The machine relies on what the configuration module checks: a VRID and a
/// priority of at least 1, one to [`MAX_VIRTUAL_ADDRESSES`] distinct unicast
/// virtual addresses, positive gratuitous ARP spacing, and durations within
/// the README's ranges (so timer arithmetic cannot overflow).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VrrpConfig {
    /// Interface the adverts are sent and received on and the VIPs are added to.
    pub interface: String,
    /// Virtual Router Identifier, 1-255.
    pub vrid: u8,
    /// Priority, 1-255. [`OWNER_PRIORITY`] (255) marks the address owner: it
    /// becomes master at once on startup instead of waiting
    /// Master_Down_Interval (RFC 9568 §6.4.1).
    pub priority: u8,
    pub advert_interval: AdvertInterval,
    /// The virtual IPv4 addresses, added as /32 on `interface` while master.
    pub virtual_addresses: Vec<Ipv4Addr>,
    /// Peers to send adverts to by unicast; empty means the multicast group
    /// 224.0.0.18. When set, adverts from other sources are rejected.
    pub unicast_peers: Vec<Ipv4Addr>,
    /// Preempt_Mode: take over from a lower-priority master.
    pub preempt: bool,
    /// keepalived's `preempt_delay`: after startup, or after first seeing a
    /// lower-priority master, wait this long before preempting it.
    pub preempt_delay: Duration,
    /// The gateway address, held while master beside the VIPs; `None`: none.
    pub gateway: Option<Gateway>,
    pub garp: GarpConfig,
    pub notify: NotifyCommands,
}

/// The gateway address: the servers' default gateway on the servers' side
/// of a two-armed node (`forwarding = "nat"`), a virtual address on an
/// interface of its own. The master adds it as /32 and announces it by
/// gratuitous ARP there with the VIPs, so the servers' replies follow the
/// master; the adverts do not carry it (as keepalived's
/// `virtual_ipaddress_excluded`), so it never has to match the peer's list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gateway {
    /// The servers' side (`global.server_interface`).
    pub interface: String,
    pub address: Ipv4Addr,
}

/// When gratuitous ARPs for the VIPs and the gateway address are sent while
/// master (keepalived's `garp_master_repeat`, `garp_master_delay`,
/// `garp_master_refresh`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GarpConfig {
    /// How many rounds are sent on becoming master (the first one at once).
    pub count: u32,
    /// Time between those rounds.
    pub interval: Duration,
    /// If set, one more round every this long for as long as the node is master.
    pub refresh: Option<Duration>,
}

impl Default for GarpConfig {
    fn default() -> Self {
        GarpConfig {
            count: 5,
            interval: Duration::from_secs(1),
            refresh: None,
        }
    }
}

/// Shell commands run (`sh -c`, not awaited) when the instance enters a state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NotifyCommands {
    pub master: Option<String>,
    pub backup: Option<String>,
    pub fault: Option<String>,
}

impl VrrpConfig {
    /// A configuration with the defaults: 1 s adverts, multicast, preemption on
    /// without delay, no gateway address, 5 gratuitous ARP rounds 1 s apart,
    /// no refresh, no hooks.
    pub fn new(
        interface: impl Into<String>,
        vrid: u8,
        priority: u8,
        virtual_addresses: Vec<Ipv4Addr>,
    ) -> Self {
        VrrpConfig {
            interface: interface.into(),
            vrid,
            priority,
            advert_interval: AdvertInterval::DEFAULT,
            virtual_addresses,
            unicast_peers: Vec::new(),
            preempt: true,
            preempt_delay: Duration::ZERO,
            gateway: None,
            garp: GarpConfig::default(),
            notify: NotifyCommands::default(),
        }
    }

    /// Whether `address` can be this node's primary address: it must be
    /// neither a virtual address nor the gateway address (those come and go
    /// with the master role) nor a unicast peer (the node would advertise to
    /// itself).
    pub fn accepts_primary_address(&self, address: Ipv4Addr) -> bool {
        !self.master_addresses().any(|held| held == address)
            && !self.unicast_peers.contains(&address)
    }

    /// Every address the master holds: the virtual addresses, then the
    /// gateway address if any.
    pub fn master_addresses(&self) -> impl Iterator<Item = Ipv4Addr> + '_ {
        let gateway = self.gateway.as_ref().map(|gateway| gateway.address);
        self.virtual_addresses.iter().copied().chain(gateway)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advert_interval_must_be_whole_centiseconds_in_twelve_bits() {
        let centis = |interval: Duration| {
            AdvertInterval::from_duration(interval).map(AdvertInterval::centis)
        };
        assert_eq!(centis(Duration::from_millis(100)), Some(10));
        assert_eq!(centis(Duration::from_millis(40_950)), Some(4095));
        for bad in [
            Duration::ZERO,
            Duration::from_millis(5),
            Duration::from_millis(105),
            Duration::from_millis(40_960),
            Duration::MAX,
        ] {
            assert_eq!(centis(bad), None, "{bad:?}");
        }
        assert_eq!(AdvertInterval::DEFAULT.duration(), Duration::from_secs(1));
        assert_eq!(AdvertInterval::from_centis(0), None);
    }

    #[test]
    fn the_primary_address_is_none_the_master_holds_nor_a_peer() {
        let mut config = VrrpConfig::new("eth0", 51, 150, vec![Ipv4Addr::new(10, 0, 0, 100)]);
        config.unicast_peers = vec![Ipv4Addr::new(10, 0, 0, 3)];
        assert!(config.accepts_primary_address(Ipv4Addr::new(10, 0, 0, 2)));
        assert!(!config.accepts_primary_address(Ipv4Addr::new(10, 0, 0, 100)));
        assert!(!config.accepts_primary_address(Ipv4Addr::new(10, 0, 0, 3)));
        config.gateway = Some(Gateway {
            interface: "eth1".into(),
            address: Ipv4Addr::new(10, 1, 0, 1),
        });
        assert!(!config.accepts_primary_address(Ipv4Addr::new(10, 1, 0, 1)));
        assert_eq!(
            config.master_addresses().collect::<Vec<_>>(),
            [Ipv4Addr::new(10, 0, 0, 100), Ipv4Addr::new(10, 1, 0, 1)]
        );
    }
}
