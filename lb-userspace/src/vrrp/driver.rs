//! The VRRP task of one instance: it owns the advert sockets, the netlink
//! connections (link notifications, VIPs) and the gratuitous ARP sockets,
//! feeds the state machine with received adverts, link changes, commands and
//! its own timers, carries out the machine's actions, and publishes a
//! [`VrrpStatus`].
//!
//! The task waits on nothing but its own sockets, timers and command channel,
//! so health checks or map updates elsewhere cannot delay an advert.
//!
//! The master holds the VIPs on the VRRP interface and, if configured, the
//! gateway address on its own interface ([`crate::vrrp::Gateway`]): both are
//! added and removed together and announced in the same gratuitous ARP
//! rounds, each from its interface's MAC; the adverts list the VIPs only.
//! Only the VRRP interface's carrier is followed (Fault), as keepalived
//! does without `track_interface`.
//!
//! An address the kernel refuses to add does not stop the instance: it stays
//! master, advertising, retries the addresses with every advert until they
//! are all in place, and publishes the error meanwhile
//! ([`VrrpStatus::address_error`]). The addresses go through a
//! [`VipTable`]: netlink, or in tests a stand-in that fails.

use std::future::Future;
use std::io;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::config::{Gateway, VrrpConfig};
use super::garp::GarpSender;
use super::machine::{Action, Instance, State};
use super::notify::Notifier;
use super::packet::Advert;
use super::receive::{receive, Reception};
use super::socket::AdvertSocket;
use super::status::VrrpStatus;
use crate::error_chain::error_chain;
use crate::hooks::HookFailures;
use crate::netlink::{LinkEvent, LinkEvents, LinkQuery, Netlink, NetlinkError};

/// Large enough for any IPv4 datagram a raw socket can deliver.
const RECEIVE_BUFFER_LEN: usize = 65_535;
/// Stand-in deadline for the timer branch while it is disabled (no timer pending).
const IDLE: Duration = Duration::from_secs(3600);
/// Prefix length of a VIP (and of the gateway address): a host address
/// that adds no connected route.
const VIP_PREFIX_LEN: u8 = 32;

#[derive(Debug, thiserror::Error)]
pub enum VrrpError {
    #[error("the primary address {0} is also a virtual address or a unicast peer")]
    PrimaryAddress(Ipv4Addr),
    #[error(transparent)]
    Netlink(#[from] NetlinkError),
    #[error("interface {0} does not exist")]
    NoSuchInterface(String),
    #[error("interface {0} has no Ethernet address")]
    NoEthernetAddress(String),
    #[error("cannot open the VRRP sockets on {interface}")]
    Socket {
        interface: String,
        #[source]
        source: io::Error,
    },
    #[error("the gateway address {address} on {interface}")]
    Gateway {
        address: Ipv4Addr,
        interface: String,
        #[source]
        source: Box<VrrpError>,
    },
    #[error("the netlink connection closed")]
    NetlinkClosed,
    #[error("the VRRP task panicked or was cancelled")]
    TaskFailed(#[source] tokio::task::JoinError),
}

/// Why the kernel (or a stand-in) refused to add or remove a VIP (or the
/// gateway address).
pub type VipError = Box<dyn std::error::Error + Send + Sync>;

/// Where the instance adds and removes the addresses the master holds (as
/// /32s: the VIPs on the VRRP interface, the gateway address on its own):
/// the kernel through [`Netlink`]; tests give one that fails.
pub trait VipTable: Send + 'static {
    /// Adds `address` to interface `ifindex`; already there is fine.
    fn add(
        &mut self,
        ifindex: u32,
        address: Ipv4Addr,
    ) -> impl Future<Output = Result<(), VipError>> + Send;
    /// Removes `address` from interface `ifindex`; already gone is fine.
    fn remove(
        &mut self,
        ifindex: u32,
        address: Ipv4Addr,
    ) -> impl Future<Output = Result<(), VipError>> + Send;
}

impl VipTable for Netlink {
    async fn add(&mut self, ifindex: u32, address: Ipv4Addr) -> Result<(), VipError> {
        Ok(self.add_address(ifindex, address, VIP_PREFIX_LEN).await?)
    }

    async fn remove(&mut self, ifindex: u32, address: Ipv4Addr) -> Result<(), VipError> {
        Ok(self
            .remove_address(ifindex, address, VIP_PREFIX_LEN)
            .await?)
    }
}

/// Controls a running instance; dropping it shuts the instance down gracefully
/// in the background (prefer [`VrrpHandle::shutdown`], which waits for it).
#[derive(Debug)]
pub struct VrrpHandle {
    status: watch::Receiver<VrrpStatus>,
    commands: mpsc::UnboundedSender<Command>,
    task: JoinHandle<Result<(), VrrpError>>,
}

#[derive(Debug)]
enum Command {
    SetPriority(u8),
    CountHold,
    Resign,
    Shutdown,
}

impl VrrpHandle {
    /// Follows the instance's state and counters.
    pub fn status(&self) -> watch::Receiver<VrrpStatus> {
        self.status.clone()
    }

    /// Changes the advertised priority (tracking); 0 is raised to 1.
    pub fn set_priority(&self, priority: u8) {
        // Fails only once the task has ended; `shutdown` reports why.
        let _ = self.commands.send(Command::SetPriority(priority));
    }

    /// Counts one more time tracking held the priority down until this
    /// node's health view is fresh ([`VrrpStatus::preemption_holds`]).
    pub fn count_hold(&self) {
        // Fails only once the task has ended; `shutdown` reports why.
        let _ = self.commands.send(Command::CountHold);
    }

    /// A master hands over at once (priority 0, VIPs released) and goes on
    /// as a backup; anything else ignores it. Counted in
    /// [`VrrpStatus::resignations`].
    pub fn resign(&self) {
        // Fails only once the task has ended; `shutdown` reports why.
        let _ = self.commands.send(Command::Resign);
    }

    /// Leaves the protocol gracefully: a master sends priority 0 and removes
    /// its VIPs. Waits for the task and its notify hooks to finish.
    pub async fn shutdown(self) -> Result<(), VrrpError> {
        let _ = self.commands.send(Command::Shutdown);
        self.task.await.map_err(VrrpError::TaskFailed)?
    }
}

/// Resolves the interface (and the gateway address's), opens the sockets and
/// starts the instance in a task of its own on the current tokio runtime,
/// advertising from `primary_address`. The instance starts in Backup (or
/// Master for priority 255), or in Fault if the interface is down. Failed
/// notify hooks are counted in `hook_failures`.
pub async fn spawn(
    config: VrrpConfig,
    primary_address: Ipv4Addr,
    hook_failures: HookFailures,
) -> Result<VrrpHandle, VrrpError> {
    spawn_with_vips(config, primary_address, Netlink::connect()?, hook_failures).await
}

/// [`spawn`], with the VIPs and the gateway address added to and removed
/// from `vips`.
pub async fn spawn_with_vips(
    config: VrrpConfig,
    primary_address: Ipv4Addr,
    vips: impl VipTable,
    hook_failures: HookFailures,
) -> Result<VrrpHandle, VrrpError> {
    if !config.accepts_primary_address(primary_address) {
        return Err(VrrpError::PrimaryAddress(primary_address));
    }
    let machine = Instance::new(&config, primary_address);
    // Before the lookup, so a carrier change after it is not missed.
    let link_events = LinkEvents::subscribe()?;
    let netlink = Netlink::connect()?;
    let link = netlink
        .link(LinkQuery::Name(&config.interface))
        .await?
        .ok_or_else(|| VrrpError::NoSuchInterface(config.interface.clone()))?;
    let mac = link
        .mac
        .ok_or_else(|| VrrpError::NoEthernetAddress(config.interface.clone()))?;
    let socket_error = |source| VrrpError::Socket {
        interface: config.interface.clone(),
        source,
    };
    let socket = AdvertSocket::open(
        &config.interface,
        link.index,
        primary_address,
        &config.unicast_peers,
    )
    .map_err(socket_error)?;
    let garp = GarpSender::open(link.index, mac).map_err(socket_error)?;
    let gateway = match &config.gateway {
        Some(gateway) => Some(GatewayLink::open(&netlink, gateway).await?),
        None => None,
    };
    let addresses = master_addresses(
        &config.virtual_addresses,
        link.index,
        gateway
            .as_ref()
            .map(|gateway| (gateway.ifindex, gateway.address)),
    );
    let (status_sender, status) = watch::channel(VrrpStatus::new(config.priority));
    let (commands, command_receiver) = mpsc::unbounded_channel();
    let notifier = Notifier::spawn(
        config.notify.clone(),
        config.vrid,
        config.interface.clone(),
        hook_failures,
    );
    let driver = Driver {
        machine,
        ifindex: link.index,
        socket,
        vips,
        addresses,
        addresses_missing: false,
        link_events,
        garp,
        gateway,
        notifier,
        status: status_sender,
        config,
    };
    let task = tokio::spawn(driver.run(command_receiver, link.is_up));
    Ok(VrrpHandle {
        status,
        commands,
        task,
    })
}

/// The gateway address's interface, resolved at startup.
struct GatewayLink {
    ifindex: u32,
    address: Ipv4Addr,
    /// Gratuitous ARPs out of that interface, from its MAC.
    garp: GarpSender,
}

impl GatewayLink {
    /// Looks up `gateway`'s interface and opens its gratuitous ARP socket;
    /// an error names the gateway address.
    async fn open(netlink: &Netlink, gateway: &Gateway) -> Result<Self, VrrpError> {
        Self::resolve(netlink, gateway)
            .await
            .map_err(|source| VrrpError::Gateway {
                address: gateway.address,
                interface: gateway.interface.clone(),
                source: Box::new(source),
            })
    }

    async fn resolve(netlink: &Netlink, gateway: &Gateway) -> Result<Self, VrrpError> {
        let link = netlink
            .link(LinkQuery::Name(&gateway.interface))
            .await?
            .ok_or_else(|| VrrpError::NoSuchInterface(gateway.interface.clone()))?;
        let mac = link
            .mac
            .ok_or_else(|| VrrpError::NoEthernetAddress(gateway.interface.clone()))?;
        let garp = GarpSender::open(link.index, mac).map_err(|source| VrrpError::Socket {
            interface: gateway.interface.clone(),
            source,
        })?;
        Ok(GatewayLink {
            ifindex: link.index,
            address: gateway.address,
            garp,
        })
    }
}

/// Every address the master holds, with the index of the interface it goes
/// on: the VIPs on the VRRP interface `ifindex`, then the gateway address
/// on its own.
fn master_addresses(
    virtual_addresses: &[Ipv4Addr],
    ifindex: u32,
    gateway: Option<(u32, Ipv4Addr)>,
) -> Vec<(u32, Ipv4Addr)> {
    let vips = virtual_addresses.iter().map(|&address| (ifindex, address));
    vips.chain(gateway).collect()
}

/// The advert of `config` with `priority`: it lists the VIPs only, never
/// the gateway address.
fn advert(config: &VrrpConfig, priority: u8) -> Advert {
    Advert {
        vrid: config.vrid,
        priority,
        max_advert_interval: config.advert_interval.centis(),
        addresses: config.virtual_addresses.clone(),
    }
}

struct Driver<V> {
    machine: Instance,
    config: VrrpConfig,
    /// The VRRP interface, whose carrier is followed.
    ifindex: u32,
    socket: AdvertSocket,
    vips: V,
    /// What `vips` gets while master: see [`master_addresses`].
    addresses: Vec<(u32, Ipv4Addr)>,
    /// Set while master without every address in place: retried with each
    /// advert.
    addresses_missing: bool,
    link_events: LinkEvents,
    /// Gratuitous ARPs for the VIPs, out of the VRRP interface.
    garp: GarpSender,
    gateway: Option<GatewayLink>,
    notifier: Notifier,
    status: watch::Sender<VrrpStatus>,
}

impl<V: VipTable> Driver<V> {
    async fn run(
        mut self,
        mut commands: mpsc::UnboundedReceiver<Command>,
        link_is_up: bool,
    ) -> Result<(), VrrpError> {
        let now = Instant::now();
        self.machine.handle_startup(now);
        if !link_is_up {
            self.machine.handle_fault(now);
        }
        self.carry_out_actions().await;

        let mut buffer = vec![0u8; RECEIVE_BUFFER_LEN];
        let result = loop {
            let deadline = self.machine.poll_timeout();
            let wake_at = deadline.unwrap_or_else(|| Instant::now() + IDLE);
            tokio::select! {
                command = commands.recv() => match command {
                    Some(Command::SetPriority(priority)) => {
                        self.machine.set_priority(Instant::now(), priority);
                    }
                    Some(Command::CountHold) => {
                        self.status.send_modify(|status| status.preemption_holds += 1);
                    }
                    Some(Command::Resign) => self.resign(),
                    Some(Command::Shutdown) | None => break Ok(()),
                },
                received = self.socket.recv(&mut buffer) => match received {
                    Ok(len) => self.handle_datagram(&buffer[..len]),
                    Err(error) => {
                        tracing::warn!(%error, "vrrp receive failed");
                        self.status.send_modify(|status| status.received.receive_errors += 1);
                    }
                },
                change = next_carrier_change(&mut self.link_events, self.ifindex) => match change {
                    Some(true) => self.machine.handle_fault_cleared(Instant::now()),
                    Some(false) => self.machine.handle_fault(Instant::now()),
                    None => break Err(VrrpError::NetlinkClosed),
                },
                () = tokio::time::sleep_until(wake_at.into()), if deadline.is_some() => {
                    self.machine.handle_timeout(Instant::now());
                }
            }
            self.carry_out_actions().await;
        };

        self.machine.handle_shutdown(Instant::now());
        self.carry_out_actions().await;
        self.notifier.finish().await;
        result
    }

    fn resign(&mut self) {
        if self.machine.handle_resign(Instant::now()) {
            tracing::warn!(
                vrid = self.config.vrid,
                interface = %self.config.interface,
                "vrrp master resigned: priority 0 sent, virtual addresses released"
            );
            self.status.send_modify(|status| status.resignations += 1);
        }
    }

    /// Runs the receive checks, hands a valid advert to the machine and
    /// counts the outcome.
    fn handle_datagram(&mut self, datagram: &[u8]) {
        let reception = receive(&mut self.machine, &self.config, Instant::now(), datagram);
        match &reception {
            Reception::Accepted {
                source,
                same_addresses: false,
                ..
            } => tracing::debug!(%source, "vrrp advert lists other virtual addresses"),
            Reception::Accepted { .. } => {}
            Reception::Malformed(error) => tracing::debug!(%error, "vrrp advert rejected"),
            Reception::UnknownPeer(source) => {
                tracing::debug!(%source, "vrrp advert from an unknown peer rejected")
            }
            Reception::Refused { source, reason } => {
                tracing::debug!(%reason, %source, "vrrp advert rejected")
            }
        }
        self.status
            .send_modify(|status| status.received.count(&reception));
    }

    async fn carry_out_actions(&mut self) {
        while let Some(action) = self.machine.poll_action() {
            match action {
                Action::SendAdvert { priority } => {
                    self.send_advert(priority);
                    // Priority 0 is the goodbye of a master that steps down.
                    if self.addresses_missing && priority > 0 {
                        self.add_addresses().await;
                    }
                }
                Action::AddVirtualAddresses => self.add_addresses().await,
                Action::RemoveVirtualAddresses => self.remove_addresses().await,
                Action::SendGratuitousArp => self.send_gratuitous_arps(),
                Action::StateChanged { from, to } => self.state_changed(from, to),
            }
        }
        let (priority, master_address) = (self.machine.priority(), self.machine.master_address());
        self.status.send_if_modified(|status| {
            let changed = status.priority != priority || status.master_address != master_address;
            status.priority = priority;
            status.master_address = master_address;
            changed
        });
    }

    fn send_advert(&mut self, priority: u8) {
        let result = self.socket.send(&advert(&self.config, priority));
        if let Err(error) = &result {
            tracing::warn!(%error, priority, "vrrp advert not sent");
        }
        self.status.send_modify(|status| match result {
            Ok(()) => status.sent.adverts += 1,
            Err(_) => status.sent.advert_errors += 1,
        });
    }

    /// One gratuitous ARP round: the VIPs out of the VRRP interface, the
    /// gateway address out of its own; counted once, as an error if either
    /// failed.
    fn send_gratuitous_arps(&mut self) {
        let vips = self.garp.send(&self.config.virtual_addresses);
        let gateway = self
            .gateway
            .as_ref()
            .map_or(Ok(()), |gateway| gateway.garp.send(&[gateway.address]));
        let result = vips.and(gateway);
        if let Err(error) = &result {
            tracing::warn!(%error, "vrrp gratuitous ARP failed");
        }
        self.status.send_modify(|status| match result {
            Ok(()) => status.sent.gratuitous_arps += 1,
            Err(_) => status.sent.gratuitous_arp_errors += 1,
        });
    }

    /// Adds every address the master holds; while one is refused, they count
    /// as missing (retried with the next advert) and the error is published.
    async fn add_addresses(&mut self) {
        let mut refused = None;
        for &(ifindex, address) in &self.addresses {
            if let Err(error) = self.vips.add(ifindex, address).await {
                refused = Some(format!("{address}: {}", error_chain(&*error)));
            }
        }
        match (&refused, self.addresses_missing) {
            (Some(error), false) => tracing::error!(
                %error,
                "vrrp: an address could not be added; retrying with every advert"
            ),
            (Some(error), true) => tracing::debug!(%error, "vrrp: address still refused"),
            (None, true) => tracing::info!("vrrp: every address is in place now"),
            (None, false) => {}
        }
        self.addresses_missing = refused.is_some();
        self.status.send_if_modified(|status| {
            let failed = refused.is_some();
            if failed {
                status.sent.address_errors += 1;
            }
            let changed = status.address_error != refused;
            status.address_error = refused;
            failed || changed
        });
    }

    /// Removes every address the master holds; nothing is retried once this
    /// node is not master.
    async fn remove_addresses(&mut self) {
        self.addresses_missing = false;
        self.status
            .send_if_modified(|status| status.address_error.take().is_some());
        for &(ifindex, address) in &self.addresses {
            if let Err(error) = self.vips.remove(ifindex, address).await {
                tracing::error!(error = %error_chain(&*error), %address, "vrrp: removing an address failed");
                self.status
                    .send_modify(|status| status.sent.address_errors += 1);
            }
        }
    }

    fn state_changed(&mut self, from: State, to: State) {
        tracing::info!(
            vrid = self.config.vrid,
            interface = %self.config.interface,
            %from,
            %to,
            priority = self.machine.priority(),
            "vrrp state changed"
        );
        self.status.send_modify(|status| {
            status.state = to;
            status.since = SystemTime::now();
            status.transitions += 1;
        });
        self.notifier.state_changed(from, to);
    }
}

/// Waits for the next change of interface `index`: whether it is up (a
/// deleted interface is not), or `None` once the connection closed.
/// Cancel-safe, like [`LinkEvents::next`].
async fn next_carrier_change(events: &mut LinkEvents, index: u32) -> Option<bool> {
    loop {
        match events.next().await? {
            LinkEvent::Changed(link) if link.index == index => return Some(link.is_up),
            LinkEvent::Removed { index: removed } if removed == index => return Some(false),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VIPS: [Ipv4Addr; 2] = [Ipv4Addr::new(10, 0, 0, 100), Ipv4Addr::new(10, 0, 0, 101)];
    const GATEWAY: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 1);

    #[test]
    fn the_master_holds_the_vips_on_its_interface_and_the_gateway_address_on_its_own() {
        assert_eq!(
            master_addresses(&VIPS, 2, Some((3, GATEWAY))),
            [(2, VIPS[0]), (2, VIPS[1]), (3, GATEWAY)]
        );
        assert_eq!(
            master_addresses(&VIPS, 2, None),
            [(2, VIPS[0]), (2, VIPS[1])]
        );
    }

    #[test]
    fn the_advert_lists_the_vips_only() {
        let mut config = VrrpConfig::new("eth0", 51, 150, VIPS.to_vec());
        config.gateway = Some(Gateway {
            interface: "eth1".into(),
            address: GATEWAY,
        });
        assert_eq!(
            advert(&config, 150),
            Advert {
                vrid: 51,
                priority: 150,
                max_advert_interval: 100,
                addresses: VIPS.to_vec(),
            }
        );
    }
}
