//! The data path pinned on a bpffs so that it outlives `lb`: the XDP link,
//! the flow table (`FLOWS`) and the backends table (`BACKENDS`) of the run
//! whose program is attached, in one directory.
//!
//! - A crashed `lb` leaves its program attached and forwarding with its last
//!   maps: the pinned link holds it on the interface.
//! - The next run reuses the pinned flow table when it fits (same size and
//!   layout; the caller checks that backend ids still name the same
//!   servers), so established flows stay on their backend. Everything else
//!   is loaded fresh, programmed, and swapped onto the pinned link in one
//!   `BPF_LINK_UPDATE`: no packet sees a half-programmed data path.
//! - A clean shutdown removes the pins; closing the link then detaches.
//!
//! Pins: `link_<interface>` (the XDP link), `flows`, `backends` (the tables
//! of the attached program) and `backends_staged` (the backends table of a
//! run not attached yet, renamed to `backends` once it is). No dots: bpffs
//! reserves names with dots (`EPERM`).

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::{CString, OsString};
use std::fs;
use std::io;
use std::mem::size_of;
use std::os::unix::ffi::OsStrExt as _;
use std::path::{Path, PathBuf};

use aya::maps::{Array, Map, MapData, MapError, MapInfo, MapType};
use aya::programs::links::{FdLink, PinnedLink};
use aya::programs::xdp::XdpLink;
use aya::EbpfLoader;
use lb_common::maps::{names, programs, Backend, Flow, FlowKey};

use super::{xdp_program_mut, AttachMode, Attachment, Dataplane, DataplaneError, LoadOptions};

/// `f_type` of a bpffs in `statfs` (`BPF_FS_MAGIC`).
const BPF_FS_MAGIC: u32 = 0xcafe_4a11;
const FLOWS_PIN: &str = "flows";
/// Sized with the flow table, and discarded with it.
const NAT_CLIENTS_PIN: &str = "nat_clients";
const BACKENDS_PIN: &str = "backends";
const STAGED_BACKENDS_PIN: &str = "backends_staged";
const LINK_PIN_PREFIX: &str = "link_";

/// Why the pinned data path could not be set up, reused or removed.
#[derive(Debug, thiserror::Error)]
pub enum PinningError {
    #[error("{} is not on a bpffs: mount one (`mount -t bpf bpf /sys/fs/bpf`) or set global.pin_dir to a directory on one", .0.display())]
    NotBpffs(PathBuf),
    #[error("{action} {}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("pinning {what} at {}", path.display())]
    Pin {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: Box<aya::pin::PinError>,
    },
    #[error("reading the pinned map {}", path.display())]
    PinnedMap {
        path: PathBuf,
        #[source]
        source: Box<MapError>,
    },
    #[error("the XDP link on {0} was made through netlink, not a bpf_link: it cannot be pinned")]
    NotALink(String),
    #[error("{action} the XDP link on {interface}")]
    Link {
        action: &'static str,
        interface: String,
        #[source]
        source: Box<aya::programs::ProgramError>,
    },
}

/// The directory holding the pins of one data path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PinDir {
    path: PathBuf,
    /// What [`PinDir::open`] found, for [`PinDir::undo`].
    found: Found,
}

/// The pin directory as a run found it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Found {
    /// The directories `open` created, deepest first.
    created: Vec<PathBuf>,
    /// The names of the pins that were there.
    pins: BTreeSet<OsString>,
}

/// Whether a pinned flow table can serve the new program.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PinnedFlows {
    /// None is pinned.
    Absent,
    /// Pinned with the type, layout and size the new program expects.
    Compatible,
    /// Pinned, but the table type, entry layout or size differ.
    Incompatible,
}

impl PinDir {
    /// Creates `path` (with its parents) if needed; it must be on a bpffs.
    /// Remembers what it found there, for [`PinDir::undo`].
    pub fn open(path: &Path) -> Result<Self, PinningError> {
        let created: Vec<PathBuf> = path
            .ancestors()
            .take_while(|dir| !dir.exists())
            .map(Path::to_owned)
            .collect();
        fs::create_dir_all(path).map_err(|source| PinningError::Io {
            action: "creating",
            path: path.to_owned(),
            source,
        })?;
        let mut pins = PinDir {
            path: path.to_owned(),
            found: Found {
                created,
                pins: BTreeSet::new(),
            },
        };
        if !is_bpffs(path)? {
            // A directory we made on the wrong file system goes again;
            // nothing in one we found there is ours.
            pins.remove_created_directories()?;
            return Err(PinningError::NotBpffs(path.to_owned()));
        }
        pins.found.pins = pins.pin_names()?;
        Ok(pins)
    }

    /// Puts the directory back as [`PinDir::open`] found it, after a start
    /// that failed: removes the pins added since (the flow table and
    /// backends table a load pinned, a link pinned by a failed attach) and
    /// the directories `open` created. Pins that were there stay, so a
    /// previous run's data path keeps serving; a flow table unpinned by
    /// [`PinDir::discard_flows`] stays unpinned.
    pub fn undo(&self) -> Result<(), PinningError> {
        if self.path.exists() {
            for name in self.pin_names()? {
                if !self.found.pins.contains(&name) {
                    remove_pin(&self.path.join(name))?;
                }
            }
        }
        self.remove_created_directories()
    }

    /// Removes the directories [`PinDir::open`] created, deepest first.
    fn remove_created_directories(&self) -> Result<(), PinningError> {
        for dir in &self.found.created {
            match fs::remove_dir(dir) {
                Err(error) if error.kind() != io::ErrorKind::NotFound => {
                    return Err(PinningError::Io {
                        action: "removing",
                        path: dir.clone(),
                        source: error,
                    })
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// The names of the pins in the directory now.
    fn pin_names(&self) -> Result<BTreeSet<OsString>, PinningError> {
        let read_error = |source| PinningError::Io {
            action: "reading",
            path: self.path.clone(),
            source,
        };
        let mut names = BTreeSet::new();
        for entry in fs::read_dir(&self.path).map_err(read_error)? {
            names.insert(entry.map_err(read_error)?.file_name());
        }
        Ok(names)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn flows(&self) -> PathBuf {
        self.path.join(FLOWS_PIN)
    }

    fn backends(&self) -> PathBuf {
        self.path.join(BACKENDS_PIN)
    }

    fn staged_backends(&self) -> PathBuf {
        self.path.join(STAGED_BACKENDS_PIN)
    }

    fn link(&self, interface: &str) -> PathBuf {
        self.path.join(format!("{LINK_PIN_PREFIX}{interface}"))
    }

    /// The backends table of the program the previous run attached, by id
    /// (entries never written are left out); empty if there is none.
    pub fn previous_backends(&self) -> Result<BTreeMap<u32, Backend>, PinningError> {
        let path = self.backends();
        if !path.exists() {
            return Ok(BTreeMap::new());
        }
        let map_error = |source| PinningError::PinnedMap {
            path: path.clone(),
            source: Box::new(source),
        };
        let map = MapData::from_pin(&path).map_err(map_error)?;
        let array: Array<MapData, Backend> = Array::try_from(Map::Array(map)).map_err(map_error)?;
        let mut backends = BTreeMap::new();
        for (id, backend) in (0u32..).zip(array.iter()) {
            let backend = backend.map_err(map_error)?;
            if backend != Backend::default() {
                backends.insert(id, backend);
            }
        }
        Ok(backends)
    }

    /// Checks the pinned flow table against what a program loaded with
    /// `options` uses.
    pub fn pinned_flows(&self, options: &LoadOptions) -> Result<PinnedFlows, PinningError> {
        let path = self.flows();
        if !path.exists() {
            return Ok(PinnedFlows::Absent);
        }
        let info = MapInfo::from_pin(&path).map_err(|source| PinningError::PinnedMap {
            path: path.clone(),
            source: Box::new(source),
        })?;
        let fits = matches!(info.map_type(), Ok(MapType::LruHash))
            && info.key_size() as usize == size_of::<FlowKey>()
            && info.value_size() as usize == size_of::<Flow>()
            && info.max_entries() == options.flow_table_size;
        Ok(if fits {
            PinnedFlows::Compatible
        } else {
            PinnedFlows::Incompatible
        })
    }

    /// Unpins the flow table, so the next load starts an empty one. The
    /// running program keeps its own until it is replaced.
    pub fn discard_flows(&self) -> Result<(), PinningError> {
        remove_pin(&self.flows())?;
        remove_pin(&self.path.join(NAT_CLIENTS_PIN))
    }

    /// Removes every pin and the directory; returns the names of the pins
    /// removed. The program stays attached until the last descriptor of its
    /// link is closed ([`Dataplane::detach`]; at once when no process holds
    /// one).
    pub fn remove(&self) -> Result<Vec<OsString>, PinningError> {
        let names = self.pin_names()?;
        for name in &names {
            remove_pin(&self.path.join(name))?;
        }
        fs::remove_dir(&self.path).map_err(|source| PinningError::Io {
            action: "removing",
            path: self.path.clone(),
            source,
        })?;
        Ok(names.into_iter().collect())
    }

    /// Tells `loader` to take `FLOWS`, and `NAT_CLIENTS` beside it, from
    /// the pins, or to pin the ones it creates: an established `nat` flow
    /// never learns its client again, so the clients must outlive a restart
    /// with the flows.
    pub(super) fn share_flows(&self, loader: &mut EbpfLoader<'_>) {
        loader.map_pin_path(names::FLOWS, self.flows());
        loader.map_pin_path(names::NAT_CLIENTS, self.path.join(NAT_CLIENTS_PIN));
    }

    /// Pins the freshly loaded backends table as staged (replacing a stale one).
    pub(super) fn stage_backends(&self, backends: &Map) -> Result<(), PinningError> {
        let path = self.staged_backends();
        remove_pin(&path)?;
        backends.pin(&path).map_err(|source| PinningError::Pin {
            what: "the backends table",
            path,
            source: Box::new(source),
        })
    }

    /// The staged backends table becomes the one of the attached program.
    fn commit_backends(&self) -> Result<(), PinningError> {
        let (from, to) = (self.staged_backends(), self.backends());
        fs::rename(&from, &to).map_err(|source| PinningError::Io {
            action: "renaming",
            path: from,
            source,
        })
    }

    /// Links pinned for other interfaces than `interface`: left by a run
    /// with another configuration.
    fn other_links(&self, interfaces: &[&str]) -> Result<Vec<PathBuf>, PinningError> {
        let own: Vec<PathBuf> = interfaces.iter().map(|name| self.link(name)).collect();
        let entries = fs::read_dir(&self.path).map_err(|source| PinningError::Io {
            action: "reading",
            path: self.path.clone(),
            source,
        })?;
        Ok(entries
            .filter_map(Result::ok)
            .map(|entry| entry.path())
            .filter(|path| {
                !own.contains(path)
                    && path
                        .file_name()
                        .is_some_and(|name| name.as_bytes().starts_with(LINK_PIN_PREFIX.as_bytes()))
            })
            .collect())
    }
}

/// How [`Dataplane::attach_pinned`] put the program on the interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PinnedAttach {
    /// The previous run's program was replaced on its pinned link, in the
    /// mode that link was made with.
    Replaced,
    /// Attached anew, and the link pinned.
    Attached(AttachMode),
}

impl std::fmt::Display for PinnedAttach {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PinnedAttach::Replaced => f.write_str("took over the pinned link"),
            PinnedAttach::Attached(mode) => write!(f, "{mode} mode, link pinned"),
        }
    }
}

impl Dataplane {
    /// Like [`Dataplane::load`], with the flow table shared through `pins`:
    /// the pinned one is used if there is one (check it first with
    /// [`PinDir::pinned_flows`]), else the new one is pinned. The backends
    /// table is pinned as staged until [`Dataplane::attach_pinned`].
    pub fn load_pinned(options: &LoadOptions, pins: &PinDir) -> Result<Self, DataplaneError> {
        Self::load_with_pins(options, Some(pins))
    }

    /// Puts `lb_xdp` on `interface` through a pinned link (and its guard, not
    /// pinned, at tc ingress): swaps it onto the
    /// link a previous run pinned for `interface` in one step if that link
    /// is still attached, else attaches it like [`Dataplane::attach`] and
    /// pins the link. Either way the program stays attached after this
    /// process ends, until [`PinDir::remove`] and [`Dataplane::detach`].
    ///
    /// `server_interface` (`global.server_interface`) gets `lb_xdp` the same
    /// way, on its own pinned link, without a guard: the kernel answers
    /// nothing there that a client would see.
    pub fn attach_pinned(
        &mut self,
        interface: &str,
        server_interface: Option<&str>,
        pins: &PinDir,
    ) -> Result<PinnedAttach, DataplaneError> {
        // Removed once this attach succeeded: until then, the programs of a
        // previous configuration keep running on their interfaces.
        let ours: Vec<&str> = [Some(interface), server_interface]
            .into_iter()
            .flatten()
            .collect();
        let stale_links = pins.other_links(&ours)?;
        // Before the program it guards, as in `attach`.
        self.attach_guard(interface)?;
        let outcome = self.attach_one_pinned(interface, pins)?;
        if let Some(servers) = server_interface {
            let servers_outcome = self.attach_one_pinned(servers, pins)?;
            tracing::info!(interface = servers, outcome = %servers_outcome, "XDP program on the servers' side");
        }
        pins.commit_backends()?;
        for stale in stale_links {
            tracing::warn!(pin = %stale.display(), "removing the link a previous configuration pinned");
            remove_pin(&stale)?;
        }
        Ok(outcome)
    }

    /// `lb_xdp` on `interface` through its pinned link: swapped onto the
    /// link if it is still attached, else attached and pinned.
    fn attach_one_pinned(
        &mut self,
        interface: &str,
        pins: &PinDir,
    ) -> Result<PinnedAttach, DataplaneError> {
        let pin = pins.link(interface);
        let outcome = match self.replace_pinned_program(interface, &pin) {
            Some(link) => {
                self.attachments.push(Attachment {
                    program: programs::LB,
                    interface: interface.to_owned(),
                    link,
                });
                PinnedAttach::Replaced
            }
            None => {
                remove_pin(&pin)?;
                let mode = self.attach_program(programs::LB, interface)?;
                self.pin_last_attachment(interface, &pin)?;
                PinnedAttach::Attached(mode)
            }
        };
        tracing::info!(interface, pin = %pin.display(), %outcome, "XDP program on a pinned link");
        Ok(outcome)
    }

    /// Swaps `lb_xdp` onto the link pinned at `pin`; `None` if there is no
    /// such link or it can no longer be updated (detached since).
    fn replace_pinned_program(
        &mut self,
        interface: &str,
        pin: &Path,
    ) -> Option<aya::programs::xdp::XdpLinkId> {
        if !pin.exists() {
            return None;
        }
        let link = PinnedLink::from_pin(pin)
            .map_err(|error| error.to_string())
            .and_then(|pinned| {
                XdpLink::try_from(FdLink::from(pinned)).map_err(|error| error.to_string())
            });
        let link = match link {
            Ok(link) => link,
            Err(error) => {
                tracing::warn!(interface, pin = %pin.display(), %error, "the pinned link is unusable; attaching anew");
                return None;
            }
        };
        let xdp = xdp_program_mut(&mut self.ebpf, programs::LB).ok()?;
        match xdp.attach_to_link(link) {
            Ok(id) => Some(id),
            Err(error) => {
                tracing::warn!(interface, pin = %pin.display(), %error, "the pinned link is no longer attached; attaching anew");
                None
            }
        }
    }

    /// Pins the link of the attachment just made to `interface`.
    fn pin_last_attachment(&mut self, interface: &str, pin: &Path) -> Result<(), DataplaneError> {
        let attachment = self
            .attachments
            .pop()
            .expect("attach() succeeded, so it recorded an attachment");
        let xdp = xdp_program_mut(&mut self.ebpf, attachment.program)?;
        let link = xdp
            .take_link(attachment.link)
            .map_err(|source| PinningError::Link {
                action: "taking",
                interface: interface.to_owned(),
                source: Box::new(source),
            })?;
        let link =
            FdLink::try_from(link).map_err(|_| PinningError::NotALink(interface.to_owned()))?;
        let pinned = link.pin(pin).map_err(|source| PinningError::Pin {
            what: "the XDP link",
            path: pin.to_owned(),
            source: Box::new(source),
        })?;
        // Back under the program, so that detach() closes it like any other.
        let link = XdpLink::try_from(FdLink::from(pinned))
            .map_err(|_| PinningError::NotALink(interface.to_owned()))?;
        let id = xdp
            .attach_to_link(link)
            .map_err(|source| PinningError::Link {
                action: "re-adopting the pinned",
                interface: interface.to_owned(),
                source: Box::new(source),
            })?;
        self.attachments.push(Attachment {
            link: id,
            ..attachment
        });
        Ok(())
    }
}

/// Removes the pin at `path`; an absent one is fine.
fn remove_pin(path: &Path) -> Result<(), PinningError> {
    match fs::remove_file(path) {
        Err(error) if error.kind() != io::ErrorKind::NotFound => Err(PinningError::Io {
            action: "removing",
            path: path.to_owned(),
            source: error,
        }),
        _ => Ok(()),
    }
}

/// Whether `path` is on a bpffs.
fn is_bpffs(path: &Path) -> Result<bool, PinningError> {
    let io_error = |source| PinningError::Io {
        action: "checking the file system of",
        path: path.to_owned(),
        source,
    };
    let c_path = CString::new(path.as_os_str().as_bytes())
        .map_err(|error| io_error(io::Error::new(io::ErrorKind::InvalidInput, error)))?;
    // SAFETY: `statfs` is plain data for which all zeroes is a valid value.
    let mut stats: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c_path` is a NUL-terminated string that outlives the call and
    // `stats` is a valid, writable `statfs` the kernel fills in.
    let result = unsafe { libc::statfs(c_path.as_ptr(), &mut stats) };
    if result != 0 {
        return Err(io_error(io::Error::last_os_error()));
    }
    // f_type's integer type differs between libc targets; the magic fits in 32 bits.
    Ok(stats.f_type as u32 == BPF_FS_MAGIC)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_off_bpffs_is_refused() {
        let dir = std::env::temp_dir().join(format!("lb-pinning-test-{}", std::process::id()));
        let error = PinDir::open(&dir).expect_err("a temporary directory is not on a bpffs");
        assert!(matches!(error, PinningError::NotBpffs(ref path) if *path == dir));
        assert!(error.to_string().contains("mount -t bpf"));
        assert!(!dir.exists(), "the directory it created is removed");
        // One that was there keeps what it holds: none of it is a pin.
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("notes"), "mine").unwrap();
        assert!(matches!(PinDir::open(&dir), Err(PinningError::NotBpffs(_))));
        assert_eq!(fs::read_to_string(dir.join("notes")).unwrap(), "mine");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_attach_outcome_reads_well_in_the_ready_line() {
        assert_eq!(
            PinnedAttach::Replaced.to_string(),
            "took over the pinned link"
        );
        assert_eq!(
            PinnedAttach::Attached(AttachMode::Driver).to_string(),
            "driver mode, link pinned"
        );
    }
}
