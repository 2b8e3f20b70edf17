//! The VRRP task of one instance: it owns the advert sockets, the netlink
//! connections (link notifications, VIPs) and the gratuitous ARP socket,
//! feeds the state machine with received adverts, link changes, commands and
//! its own timers, carries out the machine's actions, and publishes a
//! [`VrrpStatus`].
//!
//! The task waits on nothing but its own sockets, timers and command channel,
//! so health checks or map updates elsewhere cannot delay an advert.

use std::collections::HashSet;
use std::io;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::config::VrrpConfig;
use super::garp::GarpSender;
use super::machine::{Action, Instance, State};
use super::notify::Notifier;
use super::packet::{self, Advert};
use super::socket::AdvertSocket;
use super::status::VrrpStatus;
use crate::netlink::{LinkEvent, LinkEvents, LinkQuery, Netlink, NetlinkError};

/// Large enough for any IPv4 datagram a raw socket can deliver.
const RECEIVE_BUFFER_LEN: usize = 65_535;
/// Stand-in deadline for the timer branch while it is disabled (no timer pending).
const IDLE: Duration = Duration::from_secs(3600);
/// Prefix length of a VIP: a host address that adds no connected route.
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
    #[error("the netlink connection closed")]
    NetlinkClosed,
    #[error("the VRRP task panicked or was cancelled")]
    TaskFailed(#[source] tokio::task::JoinError),
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

/// Resolves the interface, opens the sockets and starts the instance in a task
/// of its own on the current tokio runtime, advertising from
/// `primary_address`. The instance starts in Backup (or Master for priority
/// 255), or in Fault if the interface is down.
pub async fn spawn(config: VrrpConfig, primary_address: Ipv4Addr) -> Result<VrrpHandle, VrrpError> {
    if !config.accepts_primary_address(primary_address) {
        return Err(VrrpError::PrimaryAddress(primary_address));
    }
    let machine = Instance::new(&config, primary_address);
    let advert_interval = config.advert_interval.centis();
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
    let (status_sender, status) = watch::channel(VrrpStatus::new(config.priority));
    let (commands, command_receiver) = mpsc::unbounded_channel();
    let notifier = Notifier::spawn(config.notify.clone(), config.vrid, config.interface.clone());
    let driver = Driver {
        machine,
        advert_interval,
        ifindex: link.index,
        socket,
        netlink,
        link_events,
        garp,
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

struct Driver {
    machine: Instance,
    config: VrrpConfig,
    advert_interval: u16,
    ifindex: u32,
    socket: AdvertSocket,
    netlink: Netlink,
    link_events: LinkEvents,
    garp: GarpSender,
    notifier: Notifier,
    status: watch::Sender<VrrpStatus>,
}

impl Driver {
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

    /// Runs the receive checks, then hands a valid advert to the machine.
    fn handle_datagram(&mut self, datagram: &[u8]) {
        let received = match packet::parse_datagram(datagram) {
            Ok(received) => received,
            Err(error) => {
                tracing::debug!(%error, "vrrp advert rejected");
                self.status
                    .send_modify(|status| status.received.count_packet_error(error));
                return;
            }
        };
        let peers = &self.config.unicast_peers;
        if !peers.is_empty() && !peers.contains(&received.source) {
            tracing::debug!(source = %received.source, "vrrp advert from an unknown peer rejected");
            self.status
                .send_modify(|status| status.received.rejected_unknown_peer += 1);
            return;
        }
        match self
            .machine
            .handle_advert(Instant::now(), received.source, &received.advert)
        {
            Ok(()) => {
                let same_addresses =
                    same_addresses(&received.advert.addresses, &self.config.virtual_addresses);
                if !same_addresses {
                    tracing::debug!(source = %received.source, addresses = ?received.advert.addresses, "vrrp advert lists other virtual addresses");
                }
                self.status.send_modify(|status| {
                    status
                        .received
                        .count_accepted(received.checksum_form, same_addresses)
                });
            }
            Err(rejected) => {
                tracing::debug!(%rejected, source = %received.source, "vrrp advert rejected");
                self.status
                    .send_modify(|status| status.received.count_rejection(rejected));
            }
        }
    }

    async fn carry_out_actions(&mut self) {
        while let Some(action) = self.machine.poll_action() {
            match action {
                Action::SendAdvert { priority } => self.send_advert(priority),
                Action::AddVirtualAddresses => self.change_addresses(true).await,
                Action::RemoveVirtualAddresses => self.change_addresses(false).await,
                Action::SendGratuitousArp => {
                    let result = self.garp.send(&self.config.virtual_addresses);
                    if let Err(error) = &result {
                        tracing::warn!(%error, "vrrp gratuitous ARP failed");
                    }
                    self.status.send_modify(|status| match result {
                        Ok(()) => status.sent.gratuitous_arps += 1,
                        Err(_) => status.sent.gratuitous_arp_errors += 1,
                    });
                }
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
        let advert = Advert {
            vrid: self.config.vrid,
            priority,
            max_advert_interval: self.advert_interval,
            addresses: self.config.virtual_addresses.clone(),
        };
        let result = self.socket.send(&advert);
        if let Err(error) = &result {
            tracing::warn!(%error, priority, "vrrp advert not sent");
        }
        self.status.send_modify(|status| match result {
            Ok(()) => status.sent.adverts += 1,
            Err(_) => status.sent.advert_errors += 1,
        });
    }

    async fn change_addresses(&mut self, add: bool) {
        for &address in &self.config.virtual_addresses {
            let result = if add {
                self.netlink
                    .add_address(self.ifindex, address, VIP_PREFIX_LEN)
                    .await
            } else {
                self.netlink
                    .remove_address(self.ifindex, address, VIP_PREFIX_LEN)
                    .await
            };
            if let Err(error) = result {
                tracing::error!(error = %error_chain(&error), "vrrp virtual address change failed");
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

fn same_addresses(advertised: &[Ipv4Addr], configured: &[Ipv4Addr]) -> bool {
    advertised.iter().collect::<HashSet<_>>() == configured.iter().collect::<HashSet<_>>()
}

/// `error` and its sources, joined by ": ".
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
