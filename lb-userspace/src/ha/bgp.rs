//! Active-active over BGP: which VIPs this node asks its routing daemon to
//! announce, and applying that. `lb` never speaks BGP. For each announced
//! VIP it keeps a /32 route in a routing table of its own
//! ([`crate::netlink::TableRoute`]); the daemon on the node (BIRD 2 with
//! `protocol kernel { kernel table N; learn; }`, or FRR with `ip
//! import-table N` and `redistribute table N`) exports that table to the
//! upstream routers over eBGP, and they spread flows over every announcing
//! node by ECMP.
//!
//! [`Announcer`] is the rule, with no IO. A VIP is announced while all of:
//! - the node is not shutting down ([`Announcer::shut_down`] withdraws
//!   everything for good: call it before draining, so routers move new flows
//!   away while this node still forwards the ones in flight);
//! - its XDP program is attached (observed; until the first observation it
//!   counts as detached: a node must not attract traffic to a data path it
//!   has not seen);
//! - the health of every service on the VIP has settled: each backend has
//!   been checked often enough to be up if it is healthy, and checked again
//!   since any time this node could not check (its link was down). Before that, this
//!   node's Maglev tables may lack backends that its peers' have, and the
//!   flows that routers move here (ECMP rehashes when a next hop is added)
//!   would reach other backends than the ones they started on;
//! - ANY service on the VIP has a serving backend. Not ALL: a route is per
//!   address, routers cannot steer by port, and every node checks the same
//!   backends, so a service with none left is down on every node alike.
//!   Withdrawing its VIP would take the VIP's healthy services down with it
//!   on every node, for no gain; kept announced, the dead service's packets
//!   are dropped by the data path, which is what withdrawing would give it.
//!   (A node whose own view is wrong keeps attracting that service's flows:
//!   `lb status` shows each node's health view; give a service its own VIP
//!   to have it withdrawn on its own.)
//!
//! [`Announcements`] applies the announced set through a [`RouteAnnouncer`]
//! ([`NetlinkRoutes`] on a node, a fake in the tests), starting from what the
//! kernel already holds, so the routes a crashed run left behind are
//! withdrawn unless still wanted.
//!
//! [`start`] runs both on a task: it polls the kernel for the XDP program
//! ([`XDP_POLL`]) and follows the controller's snapshot; [`BgpNode::shutdown`]
//! withdraws everything, then lets the data path forward for
//! `withdraw_grace` while the routers move the flows away.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::future::Future;
use std::net::Ipv4Addr;
use std::time::Duration;

use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::{interval, MissedTickBehavior};

use super::probe::{Probe, ProbeError};
use super::XdpAttachment;
use crate::config::{self, Config};
use crate::dataplane::{Dataplane, DataplaneError};
use crate::domain::{Snapshot, SnapshotReceiver};
use crate::netlink::{Netlink, NetlinkError, TableRoute};

/// How often the kernel is asked whether the XDP program is attached: a
/// detached program is withdrawn within this (plus the routers' reaction).
pub const XDP_POLL: Duration = Duration::from_millis(200);

#[derive(Debug, thiserror::Error)]
pub enum BgpError {
    #[error(transparent)]
    Probe(#[from] ProbeError),
    #[error("identifying the XDP program to observe")]
    ProgramId(#[source] DataplaneError),
    #[error("reading the announcements in routing table {table}")]
    Routes {
        table: u32,
        #[source]
        source: NetlinkError,
    },
    #[error("the BGP announcer task failed")]
    Panicked,
}

/// Starts announcing for `config` if it has a `[bgp]` section: observes
/// `dataplane`'s program on interface `xdp_ifindex` and follows the
/// controller's `services` snapshot. Nothing is announced (nor a crashed
/// run's leftovers withdrawn) before the first snapshot published after
/// this call.
pub async fn start(
    config: &Config,
    xdp_ifindex: u32,
    dataplane: &Dataplane,
    services: SnapshotReceiver,
) -> Result<Option<BgpNode>, BgpError> {
    let Some(settings) = &config.bgp else {
        return Ok(None);
    };
    let xdp = XdpAttachment {
        ifindex: xdp_ifindex,
        program_id: dataplane.program_id().map_err(BgpError::ProgramId)?,
    };
    let probe = Probe::connect()?;
    let routes_error = |source| BgpError::Routes {
        table: settings.table,
        source,
    };
    let routes = NetlinkRoutes::connect(settings.table).map_err(routes_error)?;
    let announcements = Announcements::new(routes).await.map_err(routes_error)?;
    tracing::info!(
        table = settings.table,
        leftovers = ?announcements.applied(),
        only = ?settings.announce,
        "bgp announcer starting"
    );
    let (stop, stop_receiver) = oneshot::channel();
    let (status, status_receiver) = watch::channel(BgpStatus::default());
    let task = tokio::spawn(announce(
        settings.clone(),
        xdp,
        probe,
        announcements,
        services,
        Reporting {
            stop: stop_receiver,
            status,
        },
    ));
    Ok(Some(BgpNode {
        stop,
        task,
        withdraw_grace: settings.withdraw_grace,
        status: status_receiver,
    }))
}

/// Each VIP's announcement as the announcer last applied it, for the API.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BgpStatus {
    pub vips: BTreeMap<Ipv4Addr, VipAnnouncement>,
}

/// One VIP: whether its route is in the table, and the verdict behind it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VipAnnouncement {
    /// The route is in `lb`'s table, so the routing daemon announces it.
    pub announced: bool,
    /// Why it is not wanted; `None` when it is.
    pub withdraw_reason: Option<WithdrawReason>,
}

/// The announcer task's stop signal and its published status.
struct Reporting {
    stop: oneshot::Receiver<()>,
    status: watch::Sender<BgpStatus>,
}

/// What `announcer` wants and `applied` holds, per VIP.
fn bgp_status(announcer: &Announcer, applied: &BTreeSet<Ipv4Addr>) -> BgpStatus {
    BgpStatus {
        vips: announcer
            .verdicts()
            .into_iter()
            .map(|(vip, verdict)| {
                let withdraw_reason = match verdict {
                    Verdict::Announce => None,
                    Verdict::Withdraw(reason) => Some(reason),
                };
                let announced = applied.contains(&vip);
                (
                    vip,
                    VipAnnouncement {
                        announced,
                        withdraw_reason,
                    },
                )
            })
            .collect(),
    }
}

/// The running announcer.
#[derive(Debug)]
pub struct BgpNode {
    stop: oneshot::Sender<()>,
    /// Ends after withdrawing; says whether anything had been announced.
    task: JoinHandle<bool>,
    withdraw_grace: Duration,
    status: watch::Receiver<BgpStatus>,
}

impl BgpNode {
    /// Follows each VIP's announcement.
    pub fn status(&self) -> watch::Receiver<BgpStatus> {
        self.status.clone()
    }

    /// Withdraws every VIP, then, if any was announced, waits
    /// `withdraw_grace` while the data path still forwards.
    pub async fn shutdown(self) -> Result<(), BgpError> {
        // An error means the task already ended; its result says why.
        let _ = self.stop.send(());
        let was_announcing = self.task.await.map_err(|_| BgpError::Panicked)?;
        if was_announcing {
            tracing::info!(
                grace = ?self.withdraw_grace,
                "bgp withdrawn; the data path serves while the routers move the flows"
            );
            tokio::time::sleep(self.withdraw_grace).await;
        }
        Ok(())
    }
}

/// The announcer task: observes, applies, withdraws on `stop`; returns
/// whether anything was announced when it stopped.
async fn announce(
    settings: config::BgpNode,
    xdp: XdpAttachment,
    probe: Probe,
    mut announcements: Announcements<NetlinkRoutes>,
    mut services: SnapshotReceiver,
    reporting: Reporting,
) -> bool {
    let Reporting { mut stop, status } = reporting;
    // Observed from the next publication on: the controller publishes when
    // its loop starts, after the data path is attached.
    services.mark_unchanged();
    let mut announcer = Announcer::new(settings.announce);
    let mut services_observed = false;
    let mut xdp_poll = interval(XDP_POLL);
    xdp_poll.set_missed_tick_behavior(MissedTickBehavior::Delay);
    // False once the controller is gone: its last snapshot stands.
    let mut following = true;
    let mut verdicts = BTreeMap::new();
    loop {
        tokio::select! {
            _ = &mut stop => break,
            _ = xdp_poll.tick() => match probe.runs_xdp_program(xdp.ifindex, xdp.program_id).await {
                Ok(attached) => announcer.observe_xdp(attached),
                Err(error) => tracing::warn!(%error, "bgp: cannot read the interface's XDP programs"),
            },
            changed = services.changed(), if following => match changed {
                Ok(()) => {
                    announcer.observe_snapshot(&services.borrow_and_update());
                    services_observed = true;
                }
                Err(_) => following = false,
            },
        }
        if services_observed {
            log_verdicts(&mut verdicts, announcer.verdicts());
            apply(&mut announcements, &announcer).await;
            status.send_if_modified(|last| {
                let now = bgp_status(&announcer, announcements.applied());
                let changed = *last != now;
                *last = now;
                changed
            });
        }
    }
    let was_announcing = !announcements.applied().is_empty();
    announcer.shut_down();
    apply(&mut announcements, &announcer).await;
    status.send_replace(bgp_status(&announcer, announcements.applied()));
    was_announcing
}

/// Brings the routes in step with `announcer`, logging what changed.
async fn apply(announcements: &mut Announcements<NetlinkRoutes>, announcer: &Announcer) {
    let applied = announcements.apply(&announcer.announced()).await;
    for vip in applied.announced {
        tracing::info!(%vip, "bgp: announced");
    }
    for vip in applied.withdrawn {
        tracing::info!(%vip, "bgp: withdrawn");
    }
    for (vip, error) in applied.failed {
        tracing::error!(%vip, %error, "bgp: cannot change the announcement; retrying on the next observation");
    }
}

/// Logs each VIP whose verdict changed, and remembers `now`.
fn log_verdicts(last: &mut BTreeMap<Ipv4Addr, Verdict>, now: BTreeMap<Ipv4Addr, Verdict>) {
    for (vip, verdict) in &now {
        if last.get(vip) != Some(verdict) {
            match verdict {
                Verdict::Announce => tracing::info!(%vip, "bgp: vip may be announced"),
                Verdict::Withdraw(reason) => {
                    tracing::warn!(%vip, %reason, "bgp: vip not announced")
                }
            }
        }
    }
    *last = now;
}

/// What the node knows about one service, for [`Announcer::observe_services`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServiceHealth {
    pub vip: Ipv4Addr,
    /// Every backend's health is a fresh verdict: `rise` checks since `lb`
    /// started (or since it was added), and a check since this node last
    /// could not check.
    pub settled: bool,
    /// At least one of its backends is up (in the table, serving new flows).
    pub has_serving_backend: bool,
    /// Every backend is still joining after a reload: nothing to judge it
    /// by yet. (`settled` and `has_serving_backend` leave joining backends
    /// out, so a reload never withdraws a VIP by itself.)
    pub joining: bool,
}

/// Whether a VIP is announced, and if not, why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Announce,
    Withdraw(WithdrawReason),
}

/// Why a VIP is not announced, in order of precedence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WithdrawReason {
    /// `lb` is stopping.
    ShuttingDown,
    /// The XDP program is not attached to the interface (or not yet seen).
    XdpDetached,
    /// A service on the VIP waits for a fresh verdict on its backends: their
    /// first checks, or checks since this node could not check.
    HealthNotSettled,
    /// No service on the VIP has a serving backend.
    NoServingBackend,
}

impl fmt::Display for WithdrawReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            WithdrawReason::ShuttingDown => "shutting down",
            WithdrawReason::XdpDetached => "xdp program not attached",
            WithdrawReason::HealthNotSettled => "waiting for a fresh health verdict",
            WithdrawReason::NoServingBackend => "no serving backend",
        })
    }
}

/// The announcement rule: observations in, the VIPs to announce out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Announcer {
    /// The VIPs this node may announce (`bgp.announce`); `None`: every
    /// service's VIP.
    only: Option<BTreeSet<Ipv4Addr>>,
    xdp_attached: bool,
    /// Per VIP of the last observation, its services together. Empty until
    /// the services are observed.
    vips: BTreeMap<Ipv4Addr, VipHealth>,
    shutting_down: bool,
}

impl Announcer {
    /// An announcer that has observed nothing, so announces nothing; `only`
    /// limits it to those VIPs (`None`: every service's).
    pub fn new(only: Option<BTreeSet<Ipv4Addr>>) -> Self {
        Announcer {
            only,
            xdp_attached: false,
            vips: BTreeMap::new(),
            shutting_down: false,
        }
    }

    /// Records whether the load balancer's XDP program is attached.
    pub fn observe_xdp(&mut self, attached: bool) {
        self.xdp_attached = attached;
    }

    /// Records every service's health; a VIP no longer among them (removed
    /// by a reload) is withdrawn. A service still joining after a reload
    /// counts only for a VIP with no other service, as not settled.
    pub fn observe_services(&mut self, services: impl IntoIterator<Item = ServiceHealth>) {
        self.vips.clear();
        let (joining, joined): (Vec<ServiceHealth>, Vec<ServiceHealth>) = services
            .into_iter()
            .filter(|service| {
                self.only
                    .as_ref()
                    .is_none_or(|only| only.contains(&service.vip))
            })
            .partition(|service| service.joining);
        for service in joined {
            let vip = self.vips.entry(service.vip).or_insert(VipHealth {
                settled: true,
                serving: false,
            });
            vip.settled &= service.settled;
            vip.serving |= service.has_serving_backend;
        }
        for service in joining {
            self.vips.entry(service.vip).or_insert(VipHealth {
                settled: false,
                serving: false,
            });
        }
    }

    /// Records every service of the controller's `snapshot`.
    pub fn observe_snapshot(&mut self, snapshot: &Snapshot) {
        self.observe_services(snapshot.services.iter().map(|service| ServiceHealth {
            vip: service.vip,
            settled: service.is_settled(),
            has_serving_backend: service.is_serving(),
            joining: service.is_joining(),
        }));
    }

    /// Withdraws every VIP from now on, whatever is observed later.
    pub fn shut_down(&mut self) {
        self.shutting_down = true;
    }

    /// The verdict for each VIP of the last service observation.
    pub fn verdicts(&self) -> BTreeMap<Ipv4Addr, Verdict> {
        self.vips
            .iter()
            .map(|(&vip, &health)| (vip, self.verdict(health)))
            .collect()
    }

    /// The VIPs to announce now.
    pub fn announced(&self) -> BTreeSet<Ipv4Addr> {
        self.verdicts()
            .into_iter()
            .filter(|(_, verdict)| *verdict == Verdict::Announce)
            .map(|(vip, _)| vip)
            .collect()
    }

    fn verdict(&self, health: VipHealth) -> Verdict {
        if self.shutting_down {
            Verdict::Withdraw(WithdrawReason::ShuttingDown)
        } else if !self.xdp_attached {
            Verdict::Withdraw(WithdrawReason::XdpDetached)
        } else if !health.settled {
            Verdict::Withdraw(WithdrawReason::HealthNotSettled)
        } else if !health.serving {
            Verdict::Withdraw(WithdrawReason::NoServingBackend)
        } else {
            Verdict::Announce
        }
    }
}

/// The services of one VIP together: all settled, any serving.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct VipHealth {
    settled: bool,
    serving: bool,
}

/// Where announcements are made: adding a VIP's announcement, removing it,
/// and listing the ones in place.
pub trait RouteAnnouncer {
    type Error: std::error::Error + Send + Sync + 'static;

    /// Announces `vip`; already announced is fine.
    fn announce(&mut self, vip: Ipv4Addr) -> impl Future<Output = Result<(), Self::Error>> + Send;

    /// Withdraws `vip`; already withdrawn is fine.
    fn withdraw(&mut self, vip: Ipv4Addr) -> impl Future<Output = Result<(), Self::Error>> + Send;

    /// The VIPs announced now.
    fn announced(&mut self)
        -> impl Future<Output = Result<BTreeSet<Ipv4Addr>, Self::Error>> + Send;
}

/// The announced set, kept in step with [`Announcer::announced`].
#[derive(Debug)]
pub struct Announcements<R> {
    routes: R,
    /// What `routes` holds, as far as the calls that succeeded say.
    applied: BTreeSet<Ipv4Addr>,
}

/// What one [`Announcements::apply`] changed, and what it could not.
#[derive(Debug)]
pub struct Applied<E> {
    pub withdrawn: Vec<Ipv4Addr>,
    pub announced: Vec<Ipv4Addr>,
    /// Left as it was; the next `apply` tries again.
    pub failed: Vec<(Ipv4Addr, E)>,
}

impl<R: RouteAnnouncer> Announcements<R> {
    /// Starts from what `routes` already holds (a crashed run's leftovers
    /// included).
    pub async fn new(mut routes: R) -> Result<Self, R::Error> {
        let applied = routes.announced().await?;
        Ok(Announcements { routes, applied })
    }

    /// The VIPs announced now.
    pub fn applied(&self) -> &BTreeSet<Ipv4Addr> {
        &self.applied
    }

    /// Withdraws what is announced but not `wanted`, then announces what is
    /// `wanted` but missing. A failure leaves that VIP as it was and does not
    /// stop the others.
    pub async fn apply(&mut self, wanted: &BTreeSet<Ipv4Addr>) -> Applied<R::Error> {
        let mut applied = Applied {
            withdrawn: Vec::new(),
            announced: Vec::new(),
            failed: Vec::new(),
        };
        let unwanted: Vec<Ipv4Addr> = self.applied.difference(wanted).copied().collect();
        for vip in unwanted {
            match self.routes.withdraw(vip).await {
                Ok(()) => {
                    self.applied.remove(&vip);
                    applied.withdrawn.push(vip);
                }
                Err(error) => applied.failed.push((vip, error)),
            }
        }
        let missing: Vec<Ipv4Addr> = wanted.difference(&self.applied).copied().collect();
        for vip in missing {
            match self.routes.announce(vip).await {
                Ok(()) => {
                    self.applied.insert(vip);
                    applied.announced.push(vip);
                }
                Err(error) => applied.failed.push((vip, error)),
            }
        }
        applied
    }
}

/// Announcements in the kernel: a VIP is announced while its /32 route is
/// in `table`, which the node's routing daemon exports.
///
/// The VIP itself is not put on the node (not on `lo`, not on the
/// interface): its kernel must never own it, or, while the XDP program is
/// detached or gone and routers still send here, it would answer the VIP's
/// connections with resets instead of dropping the packets until the flows
/// have moved to another node. (So the node does not answer ICMP echo for
/// the VIP either.)
#[derive(Debug)]
pub struct NetlinkRoutes {
    netlink: Netlink,
    table: u32,
}

impl NetlinkRoutes {
    /// Opens a netlink connection (inside a tokio runtime) for the routes of
    /// `table`.
    pub fn connect(table: u32) -> Result<Self, NetlinkError> {
        Ok(NetlinkRoutes {
            netlink: Netlink::connect()?,
            table,
        })
    }

    fn route(&self, vip: Ipv4Addr) -> TableRoute {
        TableRoute {
            table: self.table,
            destination: vip,
        }
    }
}

impl RouteAnnouncer for NetlinkRoutes {
    type Error = NetlinkError;

    async fn announce(&mut self, vip: Ipv4Addr) -> Result<(), NetlinkError> {
        self.netlink.add_route(self.route(vip)).await
    }

    async fn withdraw(&mut self, vip: Ipv4Addr) -> Result<(), NetlinkError> {
        self.netlink.remove_route(self.route(vip)).await
    }

    async fn announced(&mut self) -> Result<BTreeSet<Ipv4Addr>, NetlinkError> {
        Ok(self
            .netlink
            .routes_in_table(self.table)
            .await?
            .into_iter()
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WEB: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 10);
    const DB: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 20);

    /// A settled service.
    fn service(vip: Ipv4Addr, has_serving_backend: bool) -> ServiceHealth {
        ServiceHealth {
            vip,
            settled: true,
            has_serving_backend,
            joining: false,
        }
    }

    fn set(vips: &[Ipv4Addr]) -> BTreeSet<Ipv4Addr> {
        vips.iter().copied().collect()
    }

    /// Attached, with one serving service on each of WEB and DB.
    fn serving_node() -> Announcer {
        let mut announcer = Announcer::new(None);
        announcer.observe_xdp(true);
        announcer.observe_services([service(WEB, true), service(DB, true)]);
        announcer
    }

    #[test]
    fn nothing_is_announced_before_the_data_path_and_the_services_are_seen() {
        let mut announcer = Announcer::new(None);
        assert!(announcer.announced().is_empty());
        announcer.observe_services([service(WEB, true)]);
        assert_eq!(
            announcer.verdicts()[&WEB],
            Verdict::Withdraw(WithdrawReason::XdpDetached)
        );
        let mut announcer = Announcer::new(None);
        announcer.observe_xdp(true);
        assert!(announcer.verdicts().is_empty());
        announcer.observe_services([service(WEB, true)]);
        assert_eq!(announcer.announced(), set(&[WEB]));
    }

    #[test]
    fn the_last_backend_going_down_withdraws_its_vip_only() {
        let mut announcer = serving_node();
        assert_eq!(announcer.announced(), set(&[WEB, DB]));
        announcer.observe_services([service(WEB, false), service(DB, true)]);
        assert_eq!(announcer.announced(), set(&[DB]));
        assert_eq!(
            announcer.verdicts()[&WEB],
            Verdict::Withdraw(WithdrawReason::NoServingBackend)
        );
        // A backend back up announces it again.
        announcer.observe_services([service(WEB, true), service(DB, true)]);
        assert_eq!(announcer.announced(), set(&[WEB, DB]));
    }

    #[test]
    fn a_vip_stays_announced_while_any_of_its_services_serves() {
        let mut announcer = Announcer::new(None);
        announcer.observe_xdp(true);
        // Port 80 and port 443 on the same VIP; 443 has lost every backend.
        announcer.observe_services([service(WEB, true), service(WEB, false)]);
        assert_eq!(announcer.announced(), set(&[WEB]));
        announcer.observe_services([service(WEB, false), service(WEB, false)]);
        assert!(announcer.announced().is_empty());
    }

    #[test]
    fn a_vip_waits_until_every_service_on_it_has_settled() {
        let mut announcer = Announcer::new(None);
        announcer.observe_xdp(true);
        let unsettled = ServiceHealth {
            settled: false,
            ..service(WEB, true)
        };
        // The first backend is up, the others' first checks are pending.
        announcer.observe_services([unsettled, service(DB, true)]);
        assert_eq!(
            announcer.verdicts()[&WEB],
            Verdict::Withdraw(WithdrawReason::HealthNotSettled)
        );
        assert_eq!(announcer.announced(), set(&[DB]));
        // Another service on the VIP, settled and serving, is not enough.
        announcer.observe_services([unsettled, service(WEB, true)]);
        assert!(announcer.announced().is_empty());
        announcer.observe_services([service(WEB, true), service(DB, true)]);
        assert_eq!(announcer.announced(), set(&[WEB, DB]));
    }

    #[test]
    fn a_detached_data_path_withdraws_everything_until_it_is_back() {
        let mut announcer = serving_node();
        announcer.observe_xdp(false);
        assert!(announcer.announced().is_empty());
        assert!(announcer
            .verdicts()
            .values()
            .all(|verdict| *verdict == Verdict::Withdraw(WithdrawReason::XdpDetached)));
        announcer.observe_xdp(true);
        assert_eq!(announcer.announced(), set(&[WEB, DB]));
    }

    #[test]
    fn shutting_down_withdraws_everything_for_good() {
        let mut announcer = serving_node();
        announcer.shut_down();
        assert!(announcer.announced().is_empty());
        announcer.observe_xdp(true);
        announcer.observe_services([service(WEB, true), service(DB, true)]);
        assert!(announcer.announced().is_empty());
        assert!(announcer
            .verdicts()
            .values()
            .all(|verdict| *verdict == Verdict::Withdraw(WithdrawReason::ShuttingDown)));
    }

    #[test]
    fn a_vip_removed_from_the_services_is_withdrawn() {
        let mut announcer = serving_node();
        announcer.observe_services([service(DB, true)]);
        assert_eq!(announcer.announced(), set(&[DB]));
        assert!(!announcer.verdicts().contains_key(&WEB));
    }

    #[test]
    fn only_the_listed_vips_are_announced() {
        let mut announcer = Announcer::new(Some(set(&[DB])));
        announcer.observe_xdp(true);
        announcer.observe_services([service(WEB, true), service(DB, true)]);
        assert_eq!(announcer.announced(), set(&[DB]));
        assert!(!announcer.verdicts().contains_key(&WEB));
    }

    #[test]
    fn a_snapshot_is_observed_as_each_service_s_settled_and_serving() {
        use std::time::SystemTime;

        use crate::domain::{AdminState, BackendSnapshot, BackendState, ServiceSnapshot};

        let backend = |state: BackendState, settled: bool| BackendSnapshot {
            id: 0,
            name: "b".into(),
            address: Ipv4Addr::new(10, 0, 0, 1),
            state,
            reason: String::new(),
            since: SystemTime::UNIX_EPOCH,
            health: None,
            health_reason: String::new(),
            health_since: SystemTime::UNIX_EPOCH,
            settled,
            health_unknown: None,
            joining: false,
            admin: AdminState::Enabled,
            weight: 1,
            configured_weight: 1,
            last_check: None,
            mac: None,
            mac_unresolved: false,
            backup: false,
            standby: false,
            state_changes: 0,
            health_by: crate::domain::HealthSource::Checks,
        };
        let service = |vip: Ipv4Addr, backends: Vec<BackendSnapshot>| ServiceSnapshot {
            id: 0,
            name: "s".into(),
            vip,
            port: 80,
            protocol: "tcp".into(),
            scheduler: "maglev".into(),
            forwarding: "dsr-l2".into(),
            table_fingerprint: 0,
            backends,
        };
        let snapshot = Snapshot {
            services: vec![
                // One backend up, the other's first checks pending.
                service(
                    WEB,
                    vec![
                        backend(BackendState::Up, true),
                        backend(BackendState::Down, false),
                    ],
                ),
                // Every backend checked and down.
                service(DB, vec![backend(BackendState::Down, true)]),
            ],
        };
        let mut announcer = Announcer::new(None);
        announcer.observe_xdp(true);
        announcer.observe_snapshot(&snapshot);
        assert_eq!(
            announcer.verdicts(),
            BTreeMap::from([
                (WEB, Verdict::Withdraw(WithdrawReason::HealthNotSettled)),
                (DB, Verdict::Withdraw(WithdrawReason::NoServingBackend)),
            ])
        );
    }

    #[test]
    fn a_service_a_reload_adds_waits_alone_and_never_withdraws_a_serving_vip() {
        let mut announcer = serving_node();
        let joining = ServiceHealth {
            vip: WEB,
            settled: true,
            has_serving_backend: false,
            joining: true,
        };
        let new_vip = Ipv4Addr::new(192, 0, 2, 30);
        announcer.observe_services([
            service(WEB, true),
            joining,
            service(DB, true),
            ServiceHealth {
                vip: new_vip,
                ..joining
            },
        ]);
        assert_eq!(announcer.announced(), set(&[WEB, DB]));
        assert_eq!(
            announcer.verdicts()[&new_vip],
            Verdict::Withdraw(WithdrawReason::HealthNotSettled)
        );
    }

    /// In-memory routes; a VIP in `failing` cannot be changed.
    #[derive(Debug, Default)]
    struct FakeRoutes {
        announced: BTreeSet<Ipv4Addr>,
        failing: BTreeSet<Ipv4Addr>,
    }

    #[derive(Debug, thiserror::Error, PartialEq, Eq)]
    #[error("refused")]
    struct Refused;

    impl FakeRoutes {
        fn change(&mut self, vip: Ipv4Addr, announce: bool) -> Result<(), Refused> {
            if self.failing.contains(&vip) {
                return Err(Refused);
            }
            if announce {
                self.announced.insert(vip);
            } else {
                self.announced.remove(&vip);
            }
            Ok(())
        }
    }

    impl RouteAnnouncer for FakeRoutes {
        type Error = Refused;

        async fn announce(&mut self, vip: Ipv4Addr) -> Result<(), Refused> {
            self.change(vip, true)
        }

        async fn withdraw(&mut self, vip: Ipv4Addr) -> Result<(), Refused> {
            self.change(vip, false)
        }

        async fn announced(&mut self) -> Result<BTreeSet<Ipv4Addr>, Refused> {
            Ok(self.announced.clone())
        }
    }

    #[tokio::test]
    async fn applying_withdraws_the_unwanted_and_announces_the_missing() {
        let mut announcements = Announcements::new(FakeRoutes::default()).await.unwrap();
        let applied = announcements.apply(&set(&[WEB, DB])).await;
        assert_eq!(applied.announced, [WEB, DB]);
        assert!(applied.withdrawn.is_empty() && applied.failed.is_empty());
        let applied = announcements.apply(&set(&[DB])).await;
        assert_eq!(applied.withdrawn, [WEB]);
        assert!(applied.announced.is_empty());
        assert_eq!(announcements.routes.announced, set(&[DB]));
        // Nothing to do: nothing done.
        let applied = announcements.apply(&set(&[DB])).await;
        assert!(applied.withdrawn.is_empty() && applied.announced.is_empty());
    }

    #[tokio::test]
    async fn what_a_crashed_run_left_is_withdrawn_unless_wanted() {
        let leftovers = FakeRoutes {
            announced: set(&[WEB, DB]),
            failing: BTreeSet::new(),
        };
        let mut announcements = Announcements::new(leftovers).await.unwrap();
        assert_eq!(announcements.applied(), &set(&[WEB, DB]));
        let applied = announcements.apply(&set(&[DB])).await;
        assert_eq!(applied.withdrawn, [WEB]);
        assert!(applied.announced.is_empty());
        assert_eq!(announcements.routes.announced, set(&[DB]));
    }

    #[tokio::test]
    async fn a_failed_change_is_retried_and_does_not_block_the_others() {
        let routes = FakeRoutes {
            announced: set(&[WEB]),
            failing: set(&[WEB]),
        };
        let mut announcements = Announcements::new(routes).await.unwrap();
        let applied = announcements.apply(&set(&[DB])).await;
        assert_eq!(applied.failed, [(WEB, Refused)]);
        assert_eq!(applied.announced, [DB]);
        assert_eq!(announcements.applied(), &set(&[WEB, DB]));
        announcements.routes.failing.clear();
        let applied = announcements.apply(&set(&[DB])).await;
        assert_eq!(applied.withdrawn, [WEB]);
        assert_eq!(announcements.routes.announced, set(&[DB]));
    }

    #[tokio::test]
    async fn stepping_the_rule_through_a_node_s_life_drives_the_routes() {
        let mut announcer = Announcer::new(None);
        let mut announcements = Announcements::new(FakeRoutes::default()).await.unwrap();
        // Start-up: data path attached, then the first health results.
        announcer.observe_xdp(true);
        announcements.apply(&announcer.announced()).await;
        assert!(announcements.routes.announced.is_empty());
        announcer.observe_services([service(WEB, true)]);
        announcements.apply(&announcer.announced()).await;
        assert_eq!(announcements.routes.announced, set(&[WEB]));
        // Graceful stop: withdrawn before anything else happens.
        announcer.shut_down();
        let applied = announcements.apply(&announcer.announced()).await;
        assert_eq!(applied.withdrawn, [WEB]);
        assert!(announcements.routes.announced.is_empty());
    }
}
