//! Direct access to the maps of a loaded [`Dataplane`], found through its
//! program's map ids: reads of what the `Dataplane` API does not expose (a
//! flow-table entry, one CPU's round-robin cursor, a learnt NAT client,
//! whole maps for the model's mirror) and the writes that put a setup's
//! stale flows, cursors, held insert windows and NAT state in place (the
//! `Dataplane` API does not write the NAT maps nor the `NAT` service flag
//! yet). The packet fixtures (`tests/tests/fixtures.rs`) use it too.
//!
//! Opening maps by id gives this module its own file descriptors on the same
//! kernel maps; the `Dataplane` keeps its own.

use anyhow::{anyhow, bail, Context as _, Result};
use aya::maps::lpm_trie::LpmTrie;
use aya::maps::{Array, HashMap, Map, MapData, PerCpuArray, PerCpuValues};
use aya::programs::loaded_programs;
use aya::util::nr_cpus;
use lb::dataplane::Dataplane;
use lb_common::handshake::HandshakeWatch;
use lb_common::maps::{
    names, AllowedSource, Backend, Endpoint, Flow, FlowKey, InsertWindow, LocalInterface,
    NatClient, RateLimit, Service, ServiceKey, Settings,
};
use lb_common::model::{MapContents, MapSizes};

/// The maps of one loaded data path that the model mirrors.
pub struct KernelMaps {
    local_interface: Array<MapData, LocalInterface>,
    services: HashMap<MapData, ServiceKey, Service>,
    vips: HashMap<MapData, u32, u32>,
    backends: Array<MapData, Backend>,
    sched_table: Array<MapData, u32>,
    flows: HashMap<MapData, FlowKey, Flow>,
    rr_cursor: PerCpuArray<MapData, u32>,
    allow_lists: LpmTrie<MapData, AllowedSource, u8>,
    rate_limits: Array<MapData, RateLimit>,
    settings: Array<MapData, Settings>,
    insert_window: PerCpuArray<MapData, InsertWindow>,
    flow_clock: Array<MapData, u32>,
    handshakes: Array<MapData, HandshakeWatch>,
    nat_reverse: HashMap<MapData, Endpoint, Endpoint>,
    nat_clients: HashMap<MapData, u32, NatClient>,
}

impl KernelMaps {
    /// Opens the maps of `dataplane`'s `lb_xdp` program.
    pub fn open(dataplane: &Dataplane) -> Result<Self> {
        let program_id = dataplane.program_id()?;
        let program = loaded_programs()
            .filter_map(Result::ok)
            .find(|info| info.id() == program_id)
            .ok_or_else(|| anyhow!("program id {program_id} is not loaded"))?;
        let map_ids = program
            .map_ids()?
            .ok_or_else(|| anyhow!("the kernel does not report a program's map ids"))?;
        let mut maps: std::collections::HashMap<String, Map> = std::collections::HashMap::new();
        for id in map_ids {
            let data = MapData::from_id(id).with_context(|| format!("opening map id {id}"))?;
            let name = data.info()?.name_as_str().unwrap_or_default().to_owned();
            maps.insert(name, Map::from_map_data(data)?);
        }
        let mut take = |name: &'static str| {
            maps.remove(name)
                .ok_or_else(|| anyhow!("program {program_id} uses no map named {name}"))
        };
        Ok(Self {
            local_interface: take(names::LOCAL_INTERFACE)?.try_into()?,
            services: take(names::SERVICES)?.try_into()?,
            vips: take(names::VIPS)?.try_into()?,
            backends: take(names::BACKENDS)?.try_into()?,
            sched_table: take(names::SCHED_TABLE)?.try_into()?,
            flows: take(names::FLOWS)?.try_into()?,
            rr_cursor: take(names::RR_CURSOR)?.try_into()?,
            allow_lists: take(names::ALLOW_LISTS)?.try_into()?,
            rate_limits: take(names::RATE_LIMITS)?.try_into()?,
            settings: take(names::SETTINGS)?.try_into()?,
            insert_window: take(names::INSERT_WINDOW)?.try_into()?,
            flow_clock: take(names::FLOW_CLOCK)?.try_into()?,
            handshakes: take(names::HANDSHAKES)?.try_into()?,
            nat_reverse: take(names::NAT_REVERSE)?.try_into()?,
            nat_clients: take(names::NAT_CLIENTS)?.try_into()?,
        })
    }

    /// The maps as the program on `cpu` sees them, read whole.
    pub fn snapshot(&self, sizes: MapSizes, cpu: usize) -> Result<MapContents> {
        let mut contents = MapContents::new(sizes);
        for slot in 0..LocalInterface::COUNT {
            contents.set_local_interface(slot, self.local_interface.get(&slot, 0)?)?;
        }
        for entry in self.services.iter() {
            let (key, service) = entry?;
            contents.set_service(key, service);
        }
        for entry in self.vips.iter() {
            let (vip, services) = entry?;
            contents.set_vip(vip, services);
        }
        for id in 0..sizes.max_backends {
            contents.set_backend(id, self.backends.get(&id, 0)?)?;
            contents.set_handshakes(id, self.handshakes(id)?)?;
        }
        for index in 0..sizes.sched_table_entries {
            contents.set_table_slot(index, self.sched_table.get(&index, 0)?)?;
        }
        for entry in self.flows.iter() {
            let (key, flow) = entry?;
            contents.insert_flow(key, flow);
        }
        for service_id in 0..sizes.max_services {
            contents.set_rr_cursor(service_id, self.rr_cursor(service_id, cpu)?)?;
            contents.set_rate_limit(service_id, self.rate_limits.get(&service_id, 0)?)?;
        }
        for entry in self.allow_lists.iter() {
            let (key, _) = entry?;
            contents.set_allowed(key.prefix_len(), key.data());
        }
        contents.set_settings(self.settings.get(&0, 0)?);
        let windows = self.insert_window.get(&0, 0)?;
        match windows.get(cpu) {
            Some(&window) => contents.set_insert_window(window),
            None => bail!("INSERT_WINDOW has no value for CPU {cpu}"),
        }
        contents.set_flow_clock(self.flow_clock.get(&0, 0)?);
        for entry in self.nat_reverse.iter() {
            let (backend, service) = entry?;
            contents.set_nat_reverse(backend, service);
        }
        for (addr, client) in self.nat_clients()? {
            contents.set_nat_client(addr, client);
        }
        Ok(contents)
    }

    /// The flow-table entry of `key`, if any.
    pub fn flow(&self, key: &FlowKey) -> Result<Option<Flow>> {
        match self.flows.get(key, 0) {
            Ok(flow) => Ok(Some(flow)),
            Err(aya::maps::MapError::KeyNotFound) => Ok(None),
            Err(error) => Err(error.into()),
        }
    }

    /// Backend `id`'s handshake record.
    pub fn handshakes(&self, id: u32) -> Result<HandshakeWatch> {
        Ok(self.handshakes.get(&id, 0)?)
    }

    /// Every flow-table entry.
    pub fn flows(&self) -> Result<Vec<(FlowKey, Flow)>> {
        Ok(self.flows.iter().collect::<Result<_, _>>()?)
    }

    /// Inserts or replaces a flow-table entry.
    pub fn insert_flow(&mut self, key: FlowKey, flow: Flow) -> Result<()> {
        Ok(self.flows.insert(key, flow, 0)?)
    }

    /// Removes the flow-table entry of `key`, if there is one.
    pub fn remove_flow(&mut self, key: &FlowKey) -> Result<()> {
        if self.flow(key)?.is_some() {
            self.flows.remove(key)?;
        }
        Ok(())
    }

    /// `cpu`'s round-robin cursor of service `service_id`.
    pub fn rr_cursor(&self, service_id: u32, cpu: usize) -> Result<u32> {
        let values = self.rr_cursor.get(&service_id, 0)?;
        match values.get(cpu) {
            Some(&value) => Ok(value),
            None => bail!("RR_CURSOR has no value for CPU {cpu}"),
        }
    }

    /// Puts every CPU's insert window at its limit, starting at the end of
    /// time: the clock never reaches a new window, so every new flow is
    /// forwarded without an insert (`insert_skipped`), whatever the clock.
    pub fn hold_insert_windows_full(&mut self) -> Result<()> {
        let cpus = nr_cpus().map_err(|(_, error)| error)?;
        let full = InsertWindow {
            started_ns: u64::MAX,
            inserts: u64::MAX,
        };
        let values = PerCpuValues::try_from(vec![full; cpus])?;
        Ok(self.insert_window.set(0, values, 0)?)
    }

    /// Sets the flow clock (`FLOW_CLOCK`) to `now`.
    pub fn set_flow_clock(&mut self, now: u32) -> Result<()> {
        Ok(self.flow_clock.set(0, now, 0)?)
    }

    /// Sets `flag` ([`lb_common::maps::service_flags`]) in the live
    /// `SERVICES` entry of `key`. The `Dataplane` keeps its own copy of the
    /// entry: its next write of it (a publication, a policy change under
    /// the service's id) drops the flag again.
    pub fn set_service_flag(&mut self, key: &ServiceKey, flag: u8) -> Result<()> {
        let mut service = self
            .services
            .get(key, 0)
            .with_context(|| format!("service {key:?} is not in SERVICES"))?;
        service.flags |= flag;
        Ok(self.services.insert(key, service, 0)?)
    }

    /// Sets the `NAT_REVERSE` entry of the `nat` backend endpoint `backend`:
    /// its replies leave as `service`.
    pub fn set_nat_reverse(&mut self, backend: Endpoint, service: Endpoint) -> Result<()> {
        Ok(self.nat_reverse.insert(backend, service, 0)?)
    }

    /// The `NAT_CLIENTS` entry of client `addr` (network order), if any.
    pub fn nat_client(&self, addr: u32) -> Result<Option<NatClient>> {
        match self.nat_clients.get(&addr, 0) {
            Ok(client) => Ok(Some(client)),
            Err(aya::maps::MapError::KeyNotFound) => Ok(None),
            Err(error) => Err(error.into()),
        }
    }

    /// Every `NAT_CLIENTS` entry.
    pub fn nat_clients(&self) -> Result<Vec<(u32, NatClient)>> {
        Ok(self.nat_clients.iter().collect::<Result<_, _>>()?)
    }

    /// Writes client `addr`'s `NAT_CLIENTS` entry, as if learnt.
    pub fn set_nat_client(&mut self, addr: u32, client: NatClient) -> Result<()> {
        Ok(self.nat_clients.insert(addr, client, 0)?)
    }

    /// Sets the round-robin cursor of service `service_id` on every CPU.
    pub fn set_rr_cursor(&mut self, service_id: u32, next: u32) -> Result<()> {
        let cpus = nr_cpus().map_err(|(_, error)| error)?;
        let values = PerCpuValues::try_from(vec![next; cpus])?;
        Ok(self.rr_cursor.set(service_id, values, 0)?)
    }
}
