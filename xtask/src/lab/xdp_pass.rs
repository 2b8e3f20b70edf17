//! The `xdp_pass` program on the switch-side peers of the LB veths.
//!
//! A veth drops every `XDP_TX` frame unless its peer has an XDP program
//! attached, so the lab attaches the eBPF object's `xdp_pass` to the switch
//! ports of lb1 and lb2. The links are pinned on bpffs so they outlive this
//! process; removing the pins detaches them.

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};

use aya::programs::{links::FdLink, ProgramError, Xdp, XdpMode};
use aya::{Ebpf, EbpfError};
use lb_common::maps::programs::PASS;
use nix::sched::{setns, CloneFlags};
use thiserror::Error;

/// Attaching `xdp_pass` failed.
#[derive(Debug, Error)]
pub enum XdpPassError {
    /// Entering the switch namespace failed.
    #[error("entering namespace {namespace}: {error}")]
    EnterNamespace {
        /// The namespace.
        namespace: String,
        /// The error.
        error: io::Error,
    },
    /// The eBPF object could not be loaded.
    #[error("loading {}: {error}", object.display())]
    LoadObject {
        /// The object file.
        object: PathBuf,
        /// The error (boxed: aya's errors are large).
        error: Box<EbpfError>,
    },
    /// The object has no `xdp_pass` program.
    #[error("the eBPF object has no XDP program named {PASS}")]
    MissingProgram,
    /// Loading or attaching the program failed.
    #[error("{action} {PASS} on {interface}: {error}")]
    Program {
        /// What was being done.
        action: &'static str,
        /// The interface.
        interface: String,
        /// The error (boxed: aya's errors are large).
        error: Box<ProgramError>,
    },
    /// The kernel attached through netlink, which cannot be pinned.
    #[error("{PASS} on {interface} was attached without a bpf_link, so it cannot be pinned")]
    NotALink {
        /// The interface.
        interface: String,
    },
    /// Pinning the link failed.
    #[error("pinning {PASS} on {interface} at {}: {message}", pin.display())]
    Pin {
        /// The interface.
        interface: String,
        /// The pin path.
        pin: PathBuf,
        /// The error.
        message: String,
    },
    /// Creating or removing the pin directory failed.
    #[error("{context}: {error}")]
    Io {
        /// What was being done.
        context: String,
        /// The error.
        error: io::Error,
    },
    /// The worker thread panicked.
    #[error("the thread attaching {PASS} panicked")]
    Panicked,
}

/// Attaches `xdp_pass` from `object` in native mode to each of `interfaces`
/// of `namespace`, pinning each link as `pin_dir/xdp_pass_<interface>`.
pub(super) fn attach_pinned(
    object: &Path,
    namespace: &str,
    interfaces: &[String],
    pin_dir: &Path,
) -> Result<(), XdpPassError> {
    fs::create_dir_all(pin_dir).map_err(|error| XdpPassError::Io {
        context: format!("creating {}", pin_dir.display()),
        error,
    })?;
    // setns(CLONE_NEWNET) switches only the calling thread, so a short-lived
    // thread enters the namespace and the rest of the process stays put.
    std::thread::scope(|scope| {
        scope
            .spawn(|| attach_in_namespace(object, namespace, interfaces, pin_dir))
            .join()
            .map_err(|_| XdpPassError::Panicked)?
    })
}

fn attach_in_namespace(
    object: &Path,
    namespace: &str,
    interfaces: &[String],
    pin_dir: &Path,
) -> Result<(), XdpPassError> {
    let enter = |error| XdpPassError::EnterNamespace {
        namespace: namespace.to_owned(),
        error,
    };
    let netns = File::open(Path::new("/run/netns").join(namespace)).map_err(enter)?;
    setns(&netns, CloneFlags::CLONE_NEWNET).map_err(|errno| enter(errno.into()))?;

    let mut ebpf = Ebpf::load_file(object).map_err(|error| XdpPassError::LoadObject {
        object: object.to_owned(),
        error: Box::new(error),
    })?;
    let program: &mut Xdp = ebpf
        .program_mut(PASS)
        .ok_or(XdpPassError::MissingProgram)?
        .try_into()
        .map_err(|_| XdpPassError::MissingProgram)?;
    let program_error = |action, interface: &str| {
        let interface = interface.to_owned();
        move |error| XdpPassError::Program {
            action,
            interface,
            error: Box::new(error),
        }
    };
    program
        .load()
        .map_err(program_error("loading", interfaces.join(",").as_str()))?;
    for interface in interfaces {
        let link_id = program
            .attach(interface, XdpMode::Driver)
            .map_err(program_error("attaching", interface))?;
        let link = program
            .take_link(link_id)
            .map_err(program_error("taking the link of", interface))?;
        let link = FdLink::try_from(link).map_err(|_| XdpPassError::NotALink {
            interface: interface.clone(),
        })?;
        let pin = pin_path(pin_dir, interface);
        link.pin(&pin).map_err(|error| XdpPassError::Pin {
            interface: interface.clone(),
            pin: pin.clone(),
            message: error.to_string(),
        })?;
    }
    Ok(())
}

fn pin_path(pin_dir: &Path, interface: &str) -> PathBuf {
    pin_dir.join(format!("{PASS}_{interface}"))
}

/// Removes every pin in `pin_dir` (detaching the links) and the directory.
/// Returns how many pins were removed; a missing directory is not an error.
pub(super) fn remove_pins(pin_dir: &Path) -> Result<usize, XdpPassError> {
    let io = |context: String| move |error| XdpPassError::Io { context, error };
    let entries = match fs::read_dir(pin_dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(error) => return Err(io(format!("reading {}", pin_dir.display()))(error)),
    };
    let mut removed = 0;
    for entry in entries {
        let path = entry
            .map_err(io(format!("reading {}", pin_dir.display())))?
            .path();
        fs::remove_file(&path).map_err(io(format!("removing {}", path.display())))?;
        removed += 1;
    }
    fs::remove_dir(pin_dir).map_err(io(format!("removing {}", pin_dir.display())))?;
    Ok(removed)
}
