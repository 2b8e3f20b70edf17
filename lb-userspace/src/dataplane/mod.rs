//! The XDP data path seen from userspace, and the only module that touches aya:
//! loads the embedded eBPF object, attaches `lb_xdp`, writes services and
//! backends into the maps ([`MapWriter`]) and reads the counters back
//! ([`CounterMaps`]).
//!
//! - `map_writer`: [`MapWriter`], the trait the controller writes the maps
//!   through, over per-entry updates;
//! - `tables`: the double-buffered publication of scheduling tables;
//! - `policy`: each service's source policies (rate limit, allow-list);
//! - `nat`: each `nat` service's reverse translation (`NAT_REVERSE`);
//! - `entries`: the kernel's maps behind those per-entry updates;
//! - `counters`: the counter maps ([`CounterReader`]), shared read-only with
//!   the API;
//! - `fake` (tests only): the maps and counters in memory, with failure
//!   injection;
//! - `settings`: the global settings (insert guard, ICMP echo to a VIP);
//! - `flows`: the flow table and its clock ([`FlowTable`]), shared with the
//!   census of active flows;
//! - `guard`: `lb_guard` at tc ingress beside `lb_xdp`;
//! - `pinning`, `test_run`: the data path pinned across restarts, and
//!   `BPF_PROG_TEST_RUN`.
//!
//! Map layouts and names are the contract in [`lb_common::maps`].

mod counters;
mod entries;
mod error;
#[cfg(test)]
pub mod fake;
mod flows;
mod guard;
mod map_writer;
mod nat;
mod pinning;
mod policy;
mod settings;
mod tables;
mod test_run;

use std::fmt;
use std::sync::Arc;

use aya::{
    maps::{Array, Map, MapData},
    programs::{xdp::XdpLinkId, ProgramError, Xdp, XdpMode},
    Ebpf, EbpfLoader,
};
use lb_common::handshake::{HandshakeWatch, Observe};
use lb_common::maps::{
    defaults, names, programs, Backend, LocalInterface, RateLimit, Scheduler, ServiceKey,
    SourcePrefix,
};

pub use counters::{CounterMaps, CounterReader};
use error::map_error;
pub use error::DataplaneError;
pub use flows::{clock_now as flow_clock_now, ActiveFlows, FlowTable};
pub use map_writer::MapWriter;
pub use map_writer::NatReverse;
pub use pinning::{PinDir, PinnedAttach, PinnedFlows, PinningError};
pub use test_run::{TestRunOutput, TEST_RUN_INGRESS_IFINDEX};

use entries::KernelMaps;
use nat::NatTranslations;
use policy::SourcePolicies;
use tables::ServiceTables;

/// The compiled eBPF object (path chosen by `build.rs`).
static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(env!("LB_EBPF_OBJECT"));

/// The programs loaded into the kernel by [`Dataplane::load`].
const PROGRAMS: [&str; 3] = [programs::LB, programs::PASS, programs::MAC_SWAP];

/// How the load balancer program is attached (`global.xdp_mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum XdpModePreference {
    /// Driver mode, falling back to generic mode with a warning.
    #[default]
    Auto,
    /// Driver mode only: attaching fails if the driver has no XDP support.
    Driver,
    /// Generic mode only (slower; for drivers whose native XDP misbehaves).
    Generic,
}

/// What the data path does with an ICMP echo request to a VIP
/// (`global.vip_icmp_echo`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum VipIcmpEcho {
    /// Passed to the kernel, which answers it on the node holding the VIP.
    #[default]
    Pass,
    /// Dropped and counted (`vip_icmp_echo`).
    Drop,
}

impl VipIcmpEcho {
    /// The value of `Settings::vip_icmp_echo`.
    pub fn map_value(self) -> u8 {
        match self {
            VipIcmpEcho::Pass => lb_common::maps::vip_icmp_echo::PASS,
            VipIcmpEcho::Drop => lb_common::maps::vip_icmp_echo::DROP,
        }
    }
}

/// Fixed when the object is loaded: map sizes, and how programs attach.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoadOptions {
    /// Capacity of the LRU flow table (`FLOWS`).
    pub flow_table_size: u32,
    /// Number of services, and so the range of service ids.
    pub max_services: u32,
    /// Number of backends, and so the range of backend ids.
    pub max_backends: u32,
    /// Slots per scheduling table half (M; a prime for Maglev).
    pub table_size: u32,
    /// Driver or generic XDP, or driver with fallback.
    pub xdp_mode: XdpModePreference,
    // flood protection
    /// Capacity of the LRU map of per-source token buckets (`SOURCE_BUCKETS`).
    pub rate_limit_table_size: u32,
    /// Flow-table inserts per CPU per second beyond which new flows are
    /// forwarded without an entry (`SETTINGS`); 0: no limit.
    pub flow_insert_limit_per_cpu: u32,
    /// Capacity of the source allow-lists (`ALLOW_LISTS`): the prefixes of
    /// every service together.
    pub allow_table_size: u32,
    /// What happens to ICMP echo requests to a VIP (`SETTINGS`).
    pub vip_icmp_echo: VipIcmpEcho,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            flow_table_size: defaults::FLOW_TABLE_SIZE,
            max_services: defaults::MAX_SERVICES,
            max_backends: defaults::MAX_BACKENDS,
            table_size: defaults::MAGLEV_TABLE_SIZE,
            xdp_mode: XdpModePreference::Auto,
            rate_limit_table_size: defaults::RATE_LIMIT_TABLE_SIZE,
            flow_insert_limit_per_cpu: 0,
            allow_table_size: defaults::ALLOW_TABLE_SIZE,
            vip_icmp_echo: VipIcmpEcho::Pass,
        }
    }
}

impl LoadOptions {
    /// Entries of `SCHED_TABLE`: two halves of `table_size` slots per service.
    fn sched_table_entries(&self) -> Result<u32, DataplaneError> {
        for (option, value) in [
            ("flow_table_size", self.flow_table_size),
            ("max_services", self.max_services),
            ("max_backends", self.max_backends),
            ("table_size", self.table_size),
            ("rate_limit_table_size", self.rate_limit_table_size),
            ("allow_table_size", self.allow_table_size),
        ] {
            if value == 0 {
                return Err(DataplaneError::InvalidOption {
                    option,
                    value: 0,
                    reason: "must be at least 1",
                });
            }
        }
        self.max_services
            .checked_mul(2)
            .and_then(|entries| entries.checked_mul(self.table_size))
            .ok_or(DataplaneError::InvalidOption {
                option: "table_size",
                value: u64::from(self.table_size),
                reason: "max_services * 2 * table_size overflows a u32 map size",
            })
    }
}

/// How a program ended up attached to an interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttachMode {
    /// Native XDP, run by the driver.
    Driver,
    /// Generic XDP, run by the kernel's network stack (slower).
    Generic,
}

impl fmt::Display for AttachMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AttachMode::Driver => "driver",
            AttachMode::Generic => "generic",
        })
    }
}

/// A program attached to an interface.
#[derive(Debug)]
struct Attachment {
    program: &'static str,
    interface: String,
    link: XdpLinkId,
}

/// The loaded data path: programs, maps, attachments and the bookkeeping of
/// published services. Dropping it detaches every program and frees the maps
/// (the counter maps once the last [`Dataplane::counters`] is dropped too).
pub struct Dataplane {
    ebpf: Ebpf,
    options: LoadOptions,
    maps: KernelMaps,
    tables: ServiceTables,
    policies: SourcePolicies,
    nat: NatTranslations,
    flows: Arc<FlowTable>,
    local_interface: Array<MapData, LocalInterface>,
    counters: Arc<CounterMaps>,
    attachments: Vec<Attachment>,
    guard: Option<guard::GuardAttachment>,
}

impl Dataplane {
    /// Loads the embedded eBPF object with maps sized by `options` and loads
    /// (verifies) `lb_xdp`, `lb_guard`, `xdp_pass` and `xdp_mac_swap` into
    /// the kernel.
    pub fn load(options: &LoadOptions) -> Result<Self, DataplaneError> {
        Self::load_with_pins(options, None)
    }

    /// [`Dataplane::load`], with the flow table shared through `pins` when
    /// given (see [`Dataplane::load_pinned`]).
    fn load_with_pins(
        options: &LoadOptions,
        pins: Option<&PinDir>,
    ) -> Result<Self, DataplaneError> {
        let sched_table_entries = options.sched_table_entries()?;
        let mut loader = EbpfLoader::new();
        loader
            .map_max_entries(names::FLOWS, options.flow_table_size)
            .map_max_entries(names::SERVICES, options.max_services)
            .map_max_entries(names::VIPS, options.max_services)
            .map_max_entries(names::SERVICE_STATS, options.max_services)
            .map_max_entries(names::RR_CURSOR, options.max_services)
            .map_max_entries(names::BACKENDS, options.max_backends)
            .map_max_entries(names::BACKEND_STATS, options.max_backends)
            .map_max_entries(names::HANDSHAKES, options.max_backends)
            .map_max_entries(names::HANDSHAKE_STATS, options.max_backends)
            .map_max_entries(names::SCHED_TABLE, sched_table_entries)
            .map_max_entries(names::RATE_LIMITS, options.max_services)
            .map_max_entries(names::SOURCE_BUCKETS, options.rate_limit_table_size)
            .map_max_entries(names::ALLOW_LISTS, options.allow_table_size)
            .map_max_entries(names::NAT_REVERSE, options.max_backends)
            .map_max_entries(names::NAT_CLIENTS, options.flow_table_size);
        if let Some(pins) = pins {
            pins.share_flows(&mut loader);
        }
        let mut ebpf = loader
            .load(EBPF_OBJECT)
            .map_err(|error| DataplaneError::Load(Box::new(error)))?;
        for program in PROGRAMS {
            xdp_program_mut(&mut ebpf, program)?
                .load()
                .map_err(|source| DataplaneError::ProgramLoad {
                    program,
                    source: Box::new(source),
                })?;
        }
        guard::load(&mut ebpf)?;
        tracing::debug!(?options, "eBPF programs loaded");
        settings::write_settings(&mut ebpf, options)?;
        if let Some(pins) = pins {
            let backends = ebpf
                .map(names::BACKENDS)
                .ok_or(DataplaneError::MissingMap(names::BACKENDS))?;
            pins.stage_backends(backends)?;
        }
        Ok(Self {
            maps: KernelMaps {
                services: take_map(&mut ebpf, names::SERVICES)?,
                vips: take_map(&mut ebpf, names::VIPS)?,
                backends: take_map(&mut ebpf, names::BACKENDS)?,
                sched_table: take_map(&mut ebpf, names::SCHED_TABLE)?,
                rate_limits: take_map(&mut ebpf, names::RATE_LIMITS)?,
                allow_lists: take_map(&mut ebpf, names::ALLOW_LISTS)?,
                rr_cursor: take_map(&mut ebpf, names::RR_CURSOR)?,
                handshakes: take_map(&mut ebpf, names::HANDSHAKES)?,
                nat_reverse: take_map(&mut ebpf, names::NAT_REVERSE)?,
                max_backends: options.max_backends,
            },
            flows: Arc::new(FlowTable {
                flows: take_map(&mut ebpf, names::FLOWS)?,
                clock: std::sync::Mutex::new(take_map(&mut ebpf, names::FLOW_CLOCK)?),
            }),
            local_interface: take_map(&mut ebpf, names::LOCAL_INTERFACE)?,
            counters: Arc::new(CounterMaps {
                service_stats: take_map(&mut ebpf, names::SERVICE_STATS)?,
                backend_stats: take_map(&mut ebpf, names::BACKEND_STATS)?,
                action_stats: take_map(&mut ebpf, names::ACTION_STATS)?,
                reason_stats: take_map(&mut ebpf, names::REASON_STATS)?,
                handshake_stats: take_map(&mut ebpf, names::HANDSHAKE_STATS)?,
            }),
            tables: ServiceTables::new(options.table_size, options.max_services),
            policies: SourcePolicies::new(options.max_services),
            nat: NatTranslations::default(),
            options: *options,
            attachments: Vec::new(),
            guard: None,
            ebpf,
        })
        .and_then(|dataplane: Self| {
            // Before any packet, so that new flows get a real mark.
            dataplane.flows.tick()?;
            Ok(dataplane)
        })
    }

    /// The sizes the maps were created with.
    pub fn options(&self) -> &LoadOptions {
        &self.options
    }

    /// Tells `lb_xdp` the MAC and index of an interface it serves, in entry
    /// `slot` ([`LocalInterface::MAIN`] or [`LocalInterface::SERVERS`]):
    /// frames for any other destination are passed untouched. Until the
    /// main one is set, every frame is (the MAC is all zeros). Write it
    /// before attaching.
    pub fn set_local_interface(
        &mut self,
        slot: u32,
        mac: [u8; 6],
        ifindex: u32,
    ) -> Result<(), DataplaneError> {
        let interface = LocalInterface {
            mac,
            _pad: [0; 2],
            ifindex,
        };
        self.local_interface
            .set(slot, interface, 0)
            .map_err(map_error(names::LOCAL_INTERFACE))
    }

    /// Attaches the load balancer (`lb_xdp`) to `interface` in the mode the
    /// load options ask for; `Auto`: driver mode, or generic mode (with a
    /// warning) when driver mode is refused. Its guard (`lb_guard`) goes to
    /// the interface's tc ingress first, so that no moment has `lb_xdp`
    /// without it.
    pub fn attach(&mut self, interface: &str) -> Result<AttachMode, DataplaneError> {
        self.attach_guard(interface)?;
        self.attach_program(programs::LB, interface)
    }

    /// Attaches one of the object's programs (see [`lb_common::maps::programs`])
    /// to `interface`, like [`Dataplane::attach`]. The lab uses it to put
    /// `xdp_pass` on the peer of an LB veth.
    pub fn attach_program(
        &mut self,
        program: &'static str,
        interface: &str,
    ) -> Result<AttachMode, DataplaneError> {
        let preference = self.options.xdp_mode;
        let xdp = xdp_program_mut(&mut self.ebpf, program)?;
        let attach_error = |driver_error: String, source: ProgramError| match source {
            ProgramError::UnknownInterface { name } => DataplaneError::UnknownInterface(name),
            source => DataplaneError::Attach {
                program,
                interface: interface.to_owned(),
                driver_error,
                source: Box::new(source),
            },
        };
        if preference == XdpModePreference::Generic {
            let link = xdp
                .attach(interface, XdpMode::Skb)
                .map_err(|source| attach_error("not tried (xdp_mode generic)".into(), source))?;
            return Ok(self.record_attachment(program, interface, link, AttachMode::Generic));
        }
        let (link, mode) = match xdp.attach(interface, XdpMode::Driver) {
            Ok(link) => (link, AttachMode::Driver),
            Err(source) if preference == XdpModePreference::Driver => {
                return Err(attach_error("no fallback (xdp_mode driver)".into(), source))
            }
            Err(ProgramError::UnknownInterface { name }) => {
                return Err(DataplaneError::UnknownInterface(name))
            }
            Err(driver_error) => {
                let link = xdp
                    .attach(interface, XdpMode::Skb)
                    .map_err(|source| attach_error(driver_error.to_string(), source))?;
                tracing::warn!(
                    program,
                    interface,
                    error = %driver_error,
                    "driver-mode XDP unavailable, attached in generic mode (slower)"
                );
                (link, AttachMode::Generic)
            }
        };
        Ok(self.record_attachment(program, interface, link, mode))
    }

    /// Remembers an attachment (so it is detached later) and logs it.
    fn record_attachment(
        &mut self,
        program: &'static str,
        interface: &str,
        link: XdpLinkId,
        mode: AttachMode,
    ) -> AttachMode {
        tracing::info!(program, interface, %mode, "XDP program attached");
        self.attachments.push(Attachment {
            program,
            interface: interface.to_owned(),
            link,
        });
        mode
    }

    /// The kernel's id of the load balancer program (`lb_xdp`): what an
    /// interface reports when the program is attached to it.
    pub fn program_id(&self) -> Result<u32, DataplaneError> {
        let program = xdp_program(&self.ebpf, programs::LB)?;
        let info = program
            .info()
            .map_err(|source| DataplaneError::ProgramInfo {
                program: programs::LB,
                source: Box::new(source),
            })?;
        Ok(info.id())
    }

    /// Detaches every attached program, the guard last. Also done when the
    /// dataplane is dropped. A link pinned by [`Dataplane::attach_pinned`]
    /// stays attached until its pin is removed too ([`PinDir::remove`]).
    pub fn detach(&mut self) {
        for Attachment {
            program,
            interface,
            link,
        } in std::mem::take(&mut self.attachments)
        {
            let result = xdp_program_mut(&mut self.ebpf, program).and_then(|xdp| {
                xdp.detach(link).map_err(|source| DataplaneError::Detach {
                    program,
                    interface: interface.clone(),
                    source: Box::new(source),
                })
            });
            match result {
                Ok(()) => tracing::info!(program, interface, "XDP program detached"),
                Err(error) => tracing::warn!(program, interface, %error, "detaching XDP program"),
            }
        }
        self.detach_guard();
    }

    /// The counter maps, for readers that outlive a borrow of the data path
    /// (the control API).
    pub fn counters(&self) -> &Arc<CounterMaps> {
        &self.counters
    }

    /// Number of flows in the flow table. Walks the table: O(flows) syscalls.
    pub fn flow_count(&self) -> usize {
        self.flows.entries()
    }

    /// The flow table and its clock, for the task that ticks the clock and
    /// counts active flows.
    pub fn flow_table(&self) -> &Arc<FlowTable> {
        &self.flows
    }

    /// Runs `program` once on `packet` with `BPF_PROG_TEST_RUN`, against the
    /// live maps. The program sees the packet arrive on
    /// [`TEST_RUN_INGRESS_IFINDEX`]; packets shorter than 14 bytes are refused
    /// by the kernel (`EINVAL`).
    pub fn test_run(&self, program: &str, packet: &[u8]) -> Result<TestRunOutput, DataplaneError> {
        self.test_run_repeated(program, packet, 1)
    }

    /// Runs `program` `repeat` times on `packet`; the duration is the average
    /// per run. Each run sees the packet as the previous run left it.
    pub fn test_run_repeated(
        &self,
        program: &str,
        packet: &[u8],
        repeat: u32,
    ) -> Result<TestRunOutput, DataplaneError> {
        test_run::run(xdp_program(&self.ebpf, program)?, program, packet, repeat)
    }

    /// Runs `lb_guard` once on `packet` (from its Ethernet header) with
    /// `BPF_PROG_TEST_RUN`, against the live maps; the packet arrives on
    /// `lo`, whose MAC is all zeros, so only a frame to `00:00:00:00:00:00`
    /// is "to this host". Returns the tc action (`TC_ACT_OK` = 0,
    /// `TC_ACT_SHOT` = 2).
    pub fn test_run_guard(&self, packet: &[u8]) -> Result<i32, DataplaneError> {
        test_run::run_classifier(guard::program(&self.ebpf)?, programs::GUARD, packet)
    }
}

impl fmt::Debug for Dataplane {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Dataplane")
            .field("options", &self.options)
            .field("attachments", &self.attachments)
            .field("tables", &self.tables)
            .finish_non_exhaustive()
    }
}

impl MapWriter for Dataplane {
    fn set_backend(&mut self, id: u32, backend: &Backend) -> Result<(), DataplaneError> {
        map_writer::EntryWriter::write_backend(&mut self.maps, id, backend)
    }

    fn set_service(
        &mut self,
        key: ServiceKey,
        id: u32,
        scheduler: Scheduler,
        slots: &[u32],
    ) -> Result<usize, DataplaneError> {
        self.tables
            .publish(&mut self.maps, key, id, scheduler, slots)
    }

    fn remove_service(&mut self, key: &ServiceKey) -> Result<(), DataplaneError> {
        self.tables.remove(&mut self.maps, key)
    }

    fn set_rate_limit(&mut self, id: u32, limit: RateLimit) -> Result<(), DataplaneError> {
        self.policies
            .set_rate_limit(&mut self.maps, &mut self.tables, id, limit)
    }

    fn set_allow_list(
        &mut self,
        id: u32,
        allow: Option<&[SourcePrefix]>,
    ) -> Result<(), DataplaneError> {
        self.policies
            .set_allow_list(&mut self.maps, &mut self.tables, id, allow)
    }

    fn set_observe(&mut self, id: u32, observe: Option<Observe>) -> Result<(), DataplaneError> {
        self.policies
            .set_observe(&mut self.maps, &mut self.tables, id, observe)
    }

    fn set_nat(&mut self, id: u32, nat: Option<&NatReverse>) -> Result<(), DataplaneError> {
        self.nat.set(&mut self.maps, &mut self.tables, id, nat)
    }

    fn handshakes(&self, id: u32) -> Result<HandshakeWatch, DataplaneError> {
        self.maps.read_handshakes(id)
    }

    fn clear_handshakes(&mut self, id: u32) -> Result<(), DataplaneError> {
        map_writer::EntryWriter::write_handshakes(&mut self.maps, id, &HandshakeWatch::default())
    }
}

impl Drop for Dataplane {
    fn drop(&mut self) {
        self.detach();
    }
}

fn xdp_program<'a>(ebpf: &'a Ebpf, name: &str) -> Result<&'a Xdp, DataplaneError> {
    ebpf.program(name)
        .ok_or_else(|| DataplaneError::MissingProgram(name.to_owned()))?
        .try_into()
        .map_err(|_| DataplaneError::ProgramType {
            program: name.to_owned(),
            expected: "XDP",
        })
}

fn xdp_program_mut<'a>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut Xdp, DataplaneError> {
    ebpf.program_mut(name)
        .ok_or_else(|| DataplaneError::MissingProgram(name.to_owned()))?
        .try_into()
        .map_err(|_| DataplaneError::ProgramType {
            program: name.to_owned(),
            expected: "XDP",
        })
}

/// Takes map `name` out of `ebpf` as the typed map `T`.
fn take_map<T>(ebpf: &mut Ebpf, name: &'static str) -> Result<T, DataplaneError>
where
    T: TryFrom<Map, Error = aya::maps::MapError>,
{
    let map = ebpf
        .take_map(name)
        .ok_or(DataplaneError::MissingMap(name))?;
    T::try_from(map).map_err(map_error(name))
}
