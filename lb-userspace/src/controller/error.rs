//! Why the desired state could not be published to the maps.

use std::net::Ipv4Addr;

use lb_common::maglev::MaglevError;
use lb_common::ring::RingError;

use crate::dataplane::DataplaneError;

/// Why the desired state could not be turned into map writes or applied.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("backend {backend} of service {service}: no resolved neighbour for {address}")]
    MissingNeighbour {
        service: String,
        backend: String,
        address: Ipv4Addr,
    },
    #[error("backend id {id} has no desired state")]
    MissingState { id: u32 },
    #[error("backend id {id} has weight 0: only backends with a weight take new flows")]
    ZeroWeight { id: u32 },
    #[error("service {service}: building the Maglev table")]
    Maglev {
        service: String,
        #[source]
        source: MaglevError,
    },
    #[error("service {service}: building the round-robin ring")]
    Ring {
        service: String,
        #[source]
        source: RingError,
    },
    #[error("writing the data path's maps")]
    Dataplane(#[from] DataplaneError),
}
