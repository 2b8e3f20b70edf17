//! Flood protection as `lb-ebpf/src/flood.rs` does it, on the new-flow side:
//! the per-source token bucket (drop `rate_limited`) and the per-CPU
//! flow-table insert guard (forward without an entry, `insert_skipped`).
//! The clock is the packet's [`Ingress::now_ns`].

use super::contents::MapContents;
use super::decision::{FlowChange, Ingress};
use crate::maps::{service_flags, Flow, FlowKey, InsertWindow, Service, SourceKey, TokenBucket};

/// A new flow's bucket after it took a token: the `SOURCE_BUCKETS` write.
pub type BucketWrite = (SourceKey, TokenBucket);

/// `Err(())` when the new `flow` to `service` is over its source's limit;
/// otherwise the bucket write, if the service has a limit (its flag set and
/// a non-zero limit in `RATE_LIMITS`).
pub(super) fn rate_limit(
    service: &Service,
    flow: &FlowKey,
    ingress: &Ingress,
    maps: &MapContents,
) -> Result<Option<BucketWrite>, ()> {
    if service.flags & service_flags::RATE_LIMIT == 0 {
        return Ok(None);
    }
    let Some(limit) = maps.rate_limit(service.id) else {
        return Ok(None);
    };
    if limit.refill_interval_ns == 0 {
        return Ok(None);
    }
    let key = SourceKey {
        service_id: service.id,
        src_ip: flow.src_ip,
    };
    match TokenBucket::take(maps.source_bucket(&key), limit, ingress.now_ns) {
        Some(bucket) => Ok(Some((key, bucket))),
        None => Err(()),
    }
}

/// The flow-table change of a new `flow` with `entry`, and this CPU's
/// insert window after it (when the guard is on).
pub(super) fn record(
    flow: &FlowKey,
    entry: Flow,
    ingress: &Ingress,
    maps: &MapContents,
) -> (FlowChange, Option<InsertWindow>) {
    let limit = maps.settings().flow_insert_limit_per_cpu;
    let window = (limit != 0).then(|| maps.insert_window().admit(limit, || ingress.now_ns));
    if let Some((false, _)) = window {
        let change = FlowChange::Skipped {
            key: *flow,
            flow: entry,
        };
        return (change, window.map(|(_, next)| next));
    }
    let change = match maps.flow(flow) {
        None => FlowChange::Inserted {
            key: *flow,
            flow: entry,
        },
        Some(previous) => FlowChange::Replaced {
            key: *flow,
            flow: entry,
            previous,
        },
    };
    (change, window.map(|(_, next)| next))
}
