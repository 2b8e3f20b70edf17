//! Errors of the dataplane module; each names the map or program involved.

use aya::{maps::MapError, programs::ProgramError, EbpfError};

/// What went wrong while loading, attaching or programming the XDP data path.
///
/// aya's errors are boxed: they are large and these results are returned on
/// every map write.
#[derive(Debug, thiserror::Error)]
pub enum DataplaneError {
    /// The eBPF object could not be parsed or its maps created.
    #[error("loading the eBPF object")]
    Load(#[source] Box<EbpfError>),

    /// A size in [`super::LoadOptions`] is zero or overflows a map size.
    #[error("invalid load option {option} = {value}: {reason}")]
    InvalidOption {
        option: &'static str,
        value: u64,
        reason: &'static str,
    },

    /// The object lacks a program the controller needs.
    #[error("program {0} not found in the eBPF object")]
    MissingProgram(String),

    /// The program exists but is of another type than expected.
    #[error("program {program} is not a {expected} program")]
    ProgramType {
        program: String,
        expected: &'static str,
    },

    /// Loading (verifying) a program failed; the message holds the verifier log.
    #[error("loading program {program} into the kernel")]
    ProgramLoad {
        program: &'static str,
        #[source]
        source: Box<ProgramError>,
    },

    /// The object lacks a map of the contract.
    #[error("map {0} not found in the eBPF object")]
    MissingMap(&'static str),

    /// A map has the wrong type or could not be read or written.
    #[error("map {map}")]
    Map {
        map: &'static str,
        #[source]
        source: MapError,
    },

    /// No interface has that name (in this network namespace).
    #[error("no network interface named {0}")]
    UnknownInterface(String),

    /// Attaching to an interface failed in driver and in generic mode.
    #[error("attaching program {program} to interface {interface} (driver mode: {driver_error})")]
    Attach {
        program: &'static str,
        interface: String,
        driver_error: String,
        #[source]
        source: Box<ProgramError>,
    },

    /// The number of possible CPUs could not be read.
    #[error("reading the number of possible CPUs")]
    Cpus(#[source] std::io::Error),

    /// Attaching the guard (`lb_guard`) at tc ingress failed.
    #[error("attaching program {program} at tc ingress of interface {interface}")]
    AttachGuard {
        program: &'static str,
        interface: String,
        #[source]
        source: Box<ProgramError>,
    },

    /// Detaching from an interface failed.
    #[error("detaching program {program} from interface {interface}")]
    Detach {
        program: &'static str,
        interface: String,
        #[source]
        source: Box<ProgramError>,
    },

    /// A service id does not fit the maps sized at load time.
    #[error("service id {id} is out of range (max services {max})")]
    ServiceIdOutOfRange { id: u32, max: u32 },

    /// A service id is already used by another service.
    #[error("service id {id} is already used by another service")]
    ServiceIdInUse { id: u32 },

    /// A backend id does not fit the maps sized at load time.
    #[error("backend id {id} is out of range (max backends {max})")]
    BackendIdOutOfRange { id: u32, max: u32 },

    /// A scheduling table is longer than the table size chosen at load time.
    #[error("scheduling table of {len} slots exceeds the table size {table_size}")]
    TableTooLong { len: usize, table_size: u32 },

    /// The kernel's information about a loaded program could not be read.
    #[error("reading the kernel's information about program {program}")]
    ProgramInfo {
        program: &'static str,
        #[source]
        source: Box<ProgramError>,
    },

    /// Setting up, reusing or removing the pinned data path failed.
    #[error(transparent)]
    Pinning(#[from] super::PinningError),

    /// `BPF_PROG_TEST_RUN` failed.
    #[error("test run of program {program}")]
    TestRun {
        program: String,
        #[source]
        source: Box<ProgramError>,
    },
}

/// Wraps an aya map error with the name of the map it concerns.
pub(super) fn map_error(map: &'static str) -> impl FnOnce(MapError) -> DataplaneError {
    move |source| DataplaneError::Map { map, source }
}
