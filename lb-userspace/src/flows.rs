//! Active flows: the clock the data path marks each flow's entry with
//! ([`FlowTable::tick`], once a second) and the census of active flows
//! per backend: flows seen within [`IDLE_TIMEOUT`] whose client sent no FIN
//! or RST. `lb status`, `/status`, `/metrics` and `lb backend drain --wait`
//! read the latest census.
//!
//! A census walks the flow table, one system call per entry, on the
//! blocking pool; the next waits [`CENSUS_COST_FACTOR`] times as long as the
//! last took (at least [`CENSUS_INTERVAL`]), so it never takes more than
//! about 5 % of a CPU, whatever the table's size.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::watch;
use tokio::time::sleep;

use crate::dataplane::{ActiveFlows, FlowTable};

/// A flow with no packet for this long no longer counts as active. Above
/// nginx's default `keepalive_timeout` (75 s), so an idle keep-alive
/// connection the server still holds open counts.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// The shortest time between two censuses (and between clock ticks).
pub const CENSUS_INTERVAL: Duration = Duration::from_secs(1);
/// A census waits this many times its predecessor's duration.
const CENSUS_COST_FACTOR: u32 = 20;

/// The latest census of active flows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FlowCensus {
    /// When it was taken; `None` before the first.
    pub taken_at: Option<SystemTime>,
    /// Active flows per backend id.
    pub active: BTreeMap<u32, u64>,
    /// Entries in the flow table, active or not.
    pub entries: u64,
}

impl FlowCensus {
    /// Active flows of backend `id` (0 when none, or before the first census).
    pub fn active_flows(&self, id: u32) -> u64 {
        self.active.get(&id).copied().unwrap_or(0)
    }
}

/// Where the census is published.
pub type FlowCensusReceiver = watch::Receiver<Arc<FlowCensus>>;

/// A census channel with nothing counted yet, and its sender.
pub fn census_channel() -> (watch::Sender<Arc<FlowCensus>>, FlowCensusReceiver) {
    watch::channel(Arc::new(FlowCensus::default()))
}

/// Ticks `table`'s clock every [`CENSUS_INTERVAL`] and publishes a census
/// on `census` as often as its cost allows, until the task is aborted.
pub async fn run(table: Arc<FlowTable>, census: watch::Sender<Arc<FlowCensus>>) {
    let idle_timeout = IDLE_TIMEOUT.as_secs() as u32;
    let mut next_census = Instant::now();
    loop {
        let now = match table.tick() {
            Ok(now) => now,
            Err(error) => {
                tracing::warn!(%error, "ticking the flow clock");
                crate::dataplane::flow_clock_now()
            }
        };
        if Instant::now() >= next_census {
            let started = Instant::now();
            let walked = Arc::clone(&table);
            match tokio::task::spawn_blocking(move || walked.active_flows(now, idle_timeout)).await
            {
                Ok(ActiveFlows {
                    by_backend,
                    entries,
                }) => {
                    census.send_replace(Arc::new(FlowCensus {
                        taken_at: Some(SystemTime::now()),
                        active: by_backend,
                        entries,
                    }));
                }
                Err(error) => tracing::warn!(%error, "counting active flows"),
            }
            let took = started.elapsed();
            next_census = Instant::now() + (took * CENSUS_COST_FACTOR).max(CENSUS_INTERVAL);
        }
        sleep(CENSUS_INTERVAL).await;
    }
}
