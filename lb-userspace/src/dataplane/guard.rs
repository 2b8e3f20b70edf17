//! `lb_guard` at tc ingress beside `lb_xdp` (see `lb-ebpf/src/guard.rs`):
//! service traffic that reaches the kernel because `lb_xdp` no longer runs
//! is dropped rather than answered with a reset by this node's kernel.
//!
//! Attached through TCX (a bpf_link, Linux 6.6 and later) or, on older
//! kernels, through a `clsact` qdisc over netlink. It is not pinned: it
//! guards a running `lb` (a detached program, the instant before this node
//! resigns or withdraws); a crashed `lb` leaves its pinned `lb_xdp`
//! forwarding, and the next run attaches a guard of its own.

use std::io;

use aya::programs::tc::{self, SchedClassifierLinkId, TcAttachType, TcError};
use aya::programs::{ProgramError, SchedClassifier};
use aya::util::KernelVersion;
use aya::Ebpf;
use lb_common::maps::programs;

use super::{Dataplane, DataplaneError};

/// The first release with TCX, where a tc program attaches as a bpf_link
/// without a qdisc.
const TCX: KernelVersion = KernelVersion::new(6, 6, 0);

/// The guard attached to an interface.
#[derive(Debug)]
pub(super) struct GuardAttachment {
    interface: String,
    link: SchedClassifierLinkId,
}

/// Loads (verifies) `lb_guard`.
pub(super) fn load(ebpf: &mut Ebpf) -> Result<(), DataplaneError> {
    program_mut(ebpf)?
        .load()
        .map_err(|source| DataplaneError::ProgramLoad {
            program: programs::GUARD,
            source: Box::new(source),
        })
}

/// The loaded `lb_guard`.
pub(super) fn program(ebpf: &Ebpf) -> Result<&SchedClassifier, DataplaneError> {
    ebpf.program(programs::GUARD)
        .ok_or_else(|| DataplaneError::MissingProgram(programs::GUARD.to_owned()))?
        .try_into()
        .map_err(|_| wrong_type())
}

fn program_mut(ebpf: &mut Ebpf) -> Result<&mut SchedClassifier, DataplaneError> {
    ebpf.program_mut(programs::GUARD)
        .ok_or_else(|| DataplaneError::MissingProgram(programs::GUARD.to_owned()))?
        .try_into()
        .map_err(|_| wrong_type())
}

fn wrong_type() -> DataplaneError {
    DataplaneError::ProgramType {
        program: programs::GUARD.to_owned(),
        expected: "tc classifier",
    }
}

impl Dataplane {
    /// Attaches `lb_guard` at tc ingress of `interface` (once: a second call
    /// for the same interface keeps the first attachment).
    pub(super) fn attach_guard(&mut self, interface: &str) -> Result<(), DataplaneError> {
        if self
            .guard
            .as_ref()
            .is_some_and(|guard| guard.interface == interface)
        {
            return Ok(());
        }
        let attach_error = |source: ProgramError| match source {
            ProgramError::UnknownInterface { name } => DataplaneError::UnknownInterface(name),
            source => DataplaneError::AttachGuard {
                program: programs::GUARD,
                interface: interface.to_owned(),
                source: Box::new(source),
            },
        };
        if KernelVersion::current().is_ok_and(|version| version < TCX) {
            add_clsact(interface).map_err(|error| attach_error(error.into()))?;
        }
        let link = program_mut(&mut self.ebpf)?
            .attach(interface, TcAttachType::Ingress)
            .map_err(attach_error)?;
        self.detach_guard();
        tracing::info!(
            program = programs::GUARD,
            interface,
            "guard attached at tc ingress"
        );
        self.guard = Some(GuardAttachment {
            interface: interface.to_owned(),
            link,
        });
        Ok(())
    }

    /// Detaches `lb_guard`, if attached.
    pub(super) fn detach_guard(&mut self) {
        let Some(GuardAttachment { interface, link }) = self.guard.take() else {
            return;
        };
        let result = program_mut(&mut self.ebpf).and_then(|guard| {
            guard
                .detach(link)
                .map_err(|source| detach_error(&interface, source))
        });
        match result {
            Ok(()) => tracing::info!(program = programs::GUARD, interface, "guard detached"),
            Err(error) => {
                tracing::warn!(program = programs::GUARD, interface, %error, "detaching the guard")
            }
        }
    }
}

fn detach_error(interface: &str, source: ProgramError) -> DataplaneError {
    DataplaneError::Detach {
        program: programs::GUARD,
        interface: interface.to_owned(),
        source: Box::new(source),
    }
}

/// Adds the `clsact` qdisc a pre-TCX kernel attaches tc programs to; one
/// already there is fine.
fn add_clsact(interface: &str) -> Result<(), TcError> {
    match tc::qdisc_add_clsact(interface) {
        Err(TcError::NetlinkError(error))
            if error.raw_os_error().is_some_and(|code| {
                io::Error::from_raw_os_error(code).kind() == io::ErrorKind::AlreadyExists
            }) =>
        {
            Ok(())
        }
        other => other,
    }
}
