//! Least privilege for `lb run`: once the data path is loaded and attached
//! and the VRRP, gratuitous-ARP and API sockets are open,
//! [`drop_to_runtime_set`] leaves every thread of the process with only the
//! [`runtime_set`] in its effective, permitted and bounding sets, nothing
//! inheritable or ambient, and `no_new_privs` set. There is no flag to keep
//! more: `lb run` always drops.
//!
//! What `lb run` needs, checked by `tests/least_privilege.rs`:
//!
//! | capability      | at start | after the drop |
//! |-----------------|----------|----------------|
//! | `CAP_BPF`       | creating the maps, loading the program and its BTF | only before Linux 5.19, whose `bpf()` refuses even map reads and writes through open fds without it (`kernel.unprivileged_bpf_disabled`) |
//! | `CAP_PERFMON`   | the verifier accepts `data_end - data` (pointer subtraction) only with it | no |
//! | `CAP_NET_ADMIN` | loading a networking program type, attaching it | yes: adding and removing the VIPs over rtnetlink on VRRP transitions and at shutdown; detaching a program that aya attached through netlink (its fallback when a bpf_link is refused) |
//! | `CAP_NET_RAW`   | the VRRP raw socket (IP protocol 112) and the `AF_PACKET` socket of gratuitous ARP, `[vrrp]` only | no: only opening those sockets is checked, not sending on them |
//! | `CAP_SETPCAP`   | shrinking the bounding set here (unless it already is the runtime set) | no |
//!
//! Needs nothing once started: map reads and writes through the fds already
//! open; health probes, including `SO_BINDTODEVICE` on a fresh socket
//! (unprivileged since Linux 5.7); reading interface state and link
//! notifications over rtnetlink; closing the bpf_link and removing the pins
//! at shutdown (file permissions: they belong to uid 0, which `lb` stays).
//! `lb` never attaches or loads again after start. Notify hooks inherit at
//! most the runtime set: with `no_new_privs` and the bounding set shrunk,
//! `execve` grants root nothing more, setuid binaries (sudo) included.
//!
//! Capabilities belong to each thread, not to the process, and `capset(2)`
//! changes only the calling thread's. By the time of the drop tokio's
//! workers, the VRRP thread and maybe blocking-pool threads run, so the
//! calling thread drops its own, then has every other thread drop its own
//! from a signal handler (what libcap's `psx` does for C), and checks
//! `/proc/self/task/*/status` until no thread holds more. Threads created
//! later inherit the dropped sets.
//!
//! The system calls go through `rustix` (Bytecode Alliance, raw syscalls
//! without libc or allocation): the handler may only make
//! async-signal-safe calls, which rules out the `caps` crate (it builds
//! `HashSet`s and reaches only the calling thread too).

use std::ffi::c_int;
use std::fs;
use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicI32, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rustix::process::Pid as ThreadId;
use rustix::thread::{self as rustix_thread, CapabilitySet, CapabilitySets};

/// How long the other threads get to run the handler, per round.
const HANDLER_WAIT: Duration = Duration::from_secs(2);
/// Rounds of signalling the threads that still hold more (a thread created
/// by one that had not dropped yet is caught by the next round).
const ROUNDS: usize = 5;
/// The first Linux release whose `bpf()` lets map operations through open
/// fds pass without `CAP_BPF` while unprivileged BPF is disabled.
const MAP_ACCESS_WITHOUT_CAP_BPF: (u32, u32) = (5, 19);

#[derive(Debug, thiserror::Error)]
pub enum PrivilegeError {
    #[error("reading {path}")]
    Proc {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("cannot parse {path}: {what}")]
    ProcFormat { path: String, what: String },
    #[error("{step}")]
    Apply {
        step: String,
        #[source]
        source: io::Error,
    },
    #[error("signal {0} already has a handler; it is needed to reach the other threads")]
    SignalInUse(c_int),
    #[error("installing the handler of signal {signal}")]
    Handler {
        signal: c_int,
        #[source]
        source: io::Error,
    },
    #[error("another thread could not drop its capabilities")]
    OtherThread(#[source] io::Error),
    #[error("threads {0:?} still hold capabilities beyond the runtime set")]
    ThreadsLeft(Vec<i32>),
}

/// The capabilities `lb run` keeps after setup on this kernel (see the
/// module documentation for why).
fn runtime_set() -> Result<CapabilitySet, PrivilegeError> {
    let path = "/proc/sys/kernel/osrelease";
    let release = read(Path::new(path))?;
    let version = kernel_version(&release).ok_or_else(|| PrivilegeError::ProcFormat {
        path: path.to_owned(),
        what: format!("{:?} is not a kernel release", release.trim()),
    })?;
    Ok(runtime_set_for(version))
}

/// The runtime set on a kernel of `version` (major, minor).
fn runtime_set_for(version: (u32, u32)) -> CapabilitySet {
    if version < MAP_ACCESS_WITHOUT_CAP_BPF {
        CapabilitySet::NET_ADMIN | CapabilitySet::BPF
    } else {
        CapabilitySet::NET_ADMIN
    }
}

/// Drops every capability outside [`runtime_set`] from every thread of
/// the process and sets `no_new_privs`; returns what is kept (the runtime
/// set, less what the process did not have).
pub fn drop_to_runtime_set() -> Result<CapabilitySet, PrivilegeError> {
    // One drop at a time: the handler reads the target from statics.
    static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
    let _guard = ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());

    let last_cap = last_capability()?;
    let kept = runtime_set()? & permitted_now()?;
    TARGET.store(kept.bits(), Ordering::SeqCst);
    LAST_CAP.store(last_cap, Ordering::SeqCst);
    apply_to_this_thread(kept, last_cap).map_err(|failure| PrivilegeError::Apply {
        step: failure.step(),
        source: failure.errno.into(),
    })?;

    let signal = install_handler()?;
    let own = rustix_thread::gettid();
    let mut signalled = 0;
    for _ in 0..ROUNDS {
        let left: Vec<ThreadId> = threads_holding_more(kept)?
            .into_iter()
            .filter(|&tid| tid != own)
            .collect();
        if left.is_empty() {
            tracing::info!(
                kept = %names(kept),
                other_threads = signalled,
                "capabilities dropped to the runtime set"
            );
            return Ok(kept);
        }
        let before = HANDLED.load(Ordering::SeqCst);
        let reached = left
            .iter()
            .filter(|&&tid| signal_thread(tid, signal))
            .count();
        signalled += reached;
        wait_for_handlers(before + reached);
        let failure = FAILURE.swap(0, Ordering::SeqCst);
        if failure != 0 {
            return Err(PrivilegeError::OtherThread(io::Error::from_raw_os_error(
                failure,
            )));
        }
    }
    let left = threads_holding_more(kept)?;
    Err(PrivilegeError::ThreadsLeft(
        left.into_iter()
            .map(ThreadId::as_raw_nonzero)
            .map(i32::from)
            .collect(),
    ))
}

/// `CAP_NET_ADMIN, CAP_BPF`, for logs and errors.
fn names(set: CapabilitySet) -> String {
    let names: Vec<String> = set
        .iter_names()
        .map(|(name, _)| format!("CAP_{name}"))
        .collect();
    if names.is_empty() {
        "none".to_owned()
    } else {
        names.join(", ")
    }
}

/// The set the other threads drop to, for the handler.
static TARGET: AtomicU64 = AtomicU64::new(0);
/// `/proc/sys/kernel/cap_last_cap`, for the handler.
static LAST_CAP: AtomicU32 = AtomicU32::new(0);
/// Handler runs so far.
static HANDLED: AtomicUsize = AtomicUsize::new(0);
/// The errno of the first handler that failed since the last look (0: none).
static FAILURE: AtomicI32 = AtomicI32::new(0);

/// One step of [`apply_to_this_thread`] that the kernel refused.
struct ApplyFailure {
    step: &'static str,
    /// The capability the step was about, if any.
    capability: Option<u32>,
    errno: rustix::io::Errno,
}

impl ApplyFailure {
    fn step(&self) -> String {
        match self.capability {
            Some(number) => format!("{} {}", self.step, names(capability(number))),
            None => self.step.to_owned(),
        }
    }
}

/// Leaves the calling thread with exactly `kept` (effective and permitted;
/// bounding: at most `kept`), nothing inheritable or ambient, and
/// `no_new_privs`. Async-signal-safe: raw system calls only.
fn apply_to_this_thread(kept: CapabilitySet, last_cap: u32) -> Result<(), ApplyFailure> {
    let fail = |step, capability| {
        move |errno| ApplyFailure {
            step,
            capability,
            errno,
        }
    };
    rustix_thread::set_no_new_privs(true).map_err(fail("setting no_new_privs", None))?;
    // Before the permitted set loses CAP_SETPCAP, which this needs.
    for cap in 0..=last_cap {
        let one = capability(cap);
        if kept.contains(one) {
            continue;
        }
        let reading = fail("reading the bounding set for", Some(cap));
        if rustix_thread::capability_is_in_bounding_set(one).map_err(reading)? {
            rustix_thread::remove_capability_from_bounding_set(one).map_err(fail(
                "dropping from the bounding set (needs CAP_SETPCAP)",
                Some(cap),
            ))?;
        }
    }
    rustix_thread::clear_ambient_capability_set()
        .map_err(fail("clearing the ambient set", None))?;
    rustix_thread::set_capabilities(
        None,
        CapabilitySets {
            effective: kept,
            permitted: kept,
            inheritable: CapabilitySet::empty(),
        },
    )
    .map_err(fail(
        "setting the effective, permitted and inheritable sets",
        None,
    ))
}

/// Runs on each other thread when it is signalled.
extern "C" fn drop_on_signal(_signal: c_int) {
    let kept = CapabilitySet::from_bits_retain(TARGET.load(Ordering::SeqCst));
    if let Err(failure) = apply_to_this_thread(kept, LAST_CAP.load(Ordering::SeqCst)) {
        let _ = FAILURE.compare_exchange(
            0,
            failure.errno.raw_os_error(),
            Ordering::SeqCst,
            Ordering::SeqCst,
        );
    }
    HANDLED.fetch_add(1, Ordering::SeqCst);
}

/// Installs [`drop_on_signal`] for the last real-time signal (once; it
/// stays, so a late delivery still finds it) and returns the signal.
fn install_handler() -> Result<c_int, PrivilegeError> {
    static INSTALLED: Mutex<bool> = Mutex::new(false);
    let signal = libc::SIGRTMAX();
    let mut installed = INSTALLED
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if *installed {
        return Ok(signal);
    }
    // SAFETY: an all-zero `sigaction` is a valid value (no handler, empty
    // mask, no flags); the fields are filled in below.
    let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
    action.sa_sigaction = drop_on_signal as extern "C" fn(c_int) as libc::sighandler_t;
    // Interrupted system calls resume: the threads were busy with something.
    action.sa_flags = libc::SA_RESTART;
    // SAFETY: `action.sa_mask` is a valid `sigset_t` to initialise.
    unsafe { libc::sigemptyset(&mut action.sa_mask) };
    // SAFETY: as above, a valid place for the previous action.
    let mut previous: libc::sigaction = unsafe { std::mem::zeroed() };
    // SAFETY: reads the current action of a valid signal number into `previous`.
    if unsafe { libc::sigaction(signal, std::ptr::null(), &mut previous) } != 0 {
        return Err(PrivilegeError::Handler {
            signal,
            source: io::Error::last_os_error(),
        });
    }
    if previous.sa_sigaction != libc::SIG_DFL {
        return Err(PrivilegeError::SignalInUse(signal));
    }
    // SAFETY: `action` is fully initialised, and its handler only makes
    // async-signal-safe calls (raw system calls and atomics).
    if unsafe { libc::sigaction(signal, &action, std::ptr::null_mut()) } != 0 {
        return Err(PrivilegeError::Handler {
            signal,
            source: io::Error::last_os_error(),
        });
    }
    *installed = true;
    Ok(signal)
}

/// Sends `signal` to thread `tid` of this process; false if it is gone.
fn signal_thread(tid: ThreadId, signal: c_int) -> bool {
    let pid = rustix::process::getpid();
    // SAFETY: tgkill takes plain integers; a thread that exited meanwhile
    // makes it fail with ESRCH, and the handler of `signal` is installed.
    unsafe {
        libc::tgkill(
            pid.as_raw_nonzero().get(),
            tid.as_raw_nonzero().get(),
            signal,
        ) == 0
    }
}

/// Waits until [`HANDLED`] reaches `target`, or [`HANDLER_WAIT`] passed.
fn wait_for_handlers(target: usize) {
    let deadline = Instant::now() + HANDLER_WAIT;
    while HANDLED.load(Ordering::SeqCst) < target && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// The threads of this process that hold anything beyond `kept`, or lack
/// `no_new_privs`, per `/proc/self/task/*/status`.
fn threads_holding_more(kept: CapabilitySet) -> Result<Vec<ThreadId>, PrivilegeError> {
    let tasks = Path::new("/proc/self/task");
    let entries = fs::read_dir(tasks).map_err(|source| PrivilegeError::Proc {
        path: tasks.display().to_string(),
        source,
    })?;
    let mut left = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| PrivilegeError::Proc {
            path: tasks.display().to_string(),
            source,
        })?;
        let Some(tid) = entry
            .file_name()
            .to_str()
            .and_then(|name| name.parse::<i32>().ok())
            .and_then(ThreadId::from_raw)
        else {
            continue;
        };
        let path = entry.path().join("status");
        let status = match fs::read_to_string(&path) {
            Ok(status) => status,
            // The thread exited since the listing.
            Err(error) if error.kind() == io::ErrorKind::NotFound => continue,
            Err(source) => {
                return Err(PrivilegeError::Proc {
                    path: path.display().to_string(),
                    source,
                })
            }
        };
        let state = ThreadState::parse(&status).ok_or_else(|| PrivilegeError::ProcFormat {
            path: path.display().to_string(),
            what: "no Cap*/NoNewPrivs lines".to_owned(),
        })?;
        if !state.holds_at_most(kept) {
            left.push(tid);
        }
    }
    Ok(left)
}

/// The capability sets and `no_new_privs` of one thread, as
/// `/proc/<pid>/task/<tid>/status` shows them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ThreadState {
    inheritable: u64,
    permitted: u64,
    effective: u64,
    bounding: u64,
    ambient: u64,
    no_new_privs: bool,
}

impl ThreadState {
    fn parse(status: &str) -> Option<ThreadState> {
        let field = |name: &str| {
            status
                .lines()
                .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
                .map(str::trim)
        };
        let mask = |name: &str| u64::from_str_radix(field(name)?, 16).ok();
        Some(ThreadState {
            inheritable: mask("CapInh")?,
            permitted: mask("CapPrm")?,
            effective: mask("CapEff")?,
            bounding: mask("CapBnd")?,
            ambient: mask("CapAmb")?,
            no_new_privs: field("NoNewPrivs")? == "1",
        })
    }

    fn holds_at_most(&self, kept: CapabilitySet) -> bool {
        let beyond = !kept.bits();
        self.no_new_privs
            && self.inheritable == 0
            && self.ambient == 0
            && (self.permitted | self.effective | self.bounding) & beyond == 0
    }
}

/// The calling thread's permitted set.
fn permitted_now() -> Result<CapabilitySet, PrivilegeError> {
    rustix_thread::capabilities(None)
        .map(|sets| sets.permitted)
        .map_err(|errno| PrivilegeError::Apply {
            step: "reading the capability sets".to_owned(),
            source: errno.into(),
        })
}

/// The highest capability number this kernel knows.
fn last_capability() -> Result<u32, PrivilegeError> {
    let path = "/proc/sys/kernel/cap_last_cap";
    let text = read(Path::new(path))?;
    text.trim()
        .parse()
        .ok()
        .filter(|&last| last < u64::BITS)
        .ok_or_else(|| PrivilegeError::ProcFormat {
            path: path.to_owned(),
            what: format!("{:?} is not a capability number", text.trim()),
        })
}

fn capability(number: u32) -> CapabilitySet {
    CapabilitySet::from_bits_retain(1 << number)
}

fn read(path: &Path) -> Result<String, PrivilegeError> {
    fs::read_to_string(path).map_err(|source| PrivilegeError::Proc {
        path: path.display().to_string(),
        source,
    })
}

/// (major, minor) of a kernel release such as `6.1.0-18-amd64`.
fn kernel_version(release: &str) -> Option<(u32, u32)> {
    let mut numbers = release.trim().split(['.', '-']);
    let major = numbers.next()?.parse().ok()?;
    let minor = numbers.next()?.parse().ok()?;
    Some((major, minor))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cap_bpf_is_kept_only_where_map_access_needs_it() {
        assert_eq!(kernel_version("6.18.44-fc-v1147"), Some((6, 18)));
        assert_eq!(kernel_version("5.15.0-91-generic\n"), Some((5, 15)));
        assert_eq!(kernel_version("6.1"), Some((6, 1)));
        assert_eq!(kernel_version("six"), None);
        assert_eq!(runtime_set_for((6, 1)), CapabilitySet::NET_ADMIN);
        assert_eq!(runtime_set_for((5, 19)), CapabilitySet::NET_ADMIN);
        assert_eq!(
            runtime_set_for((5, 15)),
            CapabilitySet::NET_ADMIN | CapabilitySet::BPF
        );
    }

    #[test]
    fn a_thread_is_done_when_it_holds_nothing_beyond_the_runtime_set() {
        let status = "Name:\tlb\nCapInh:\t0000000000000000\nCapPrm:\t0000000000001000\n\
                      CapEff:\t0000000000001000\nCapBnd:\t0000000000001000\n\
                      CapAmb:\t0000000000000000\nNoNewPrivs:\t1\nSeccomp:\t0\n";
        let state = ThreadState::parse(status).unwrap();
        assert_eq!(state.permitted, 1 << 12);
        assert!(state.holds_at_most(CapabilitySet::NET_ADMIN));
        // Less than the runtime set is fine too.
        assert!(state.holds_at_most(CapabilitySet::NET_ADMIN | CapabilitySet::BPF));
        assert!(!state.holds_at_most(CapabilitySet::BPF));
        let without_nnp = ThreadState {
            no_new_privs: false,
            ..state
        };
        assert!(!without_nnp.holds_at_most(CapabilitySet::NET_ADMIN));
        let root = ThreadState {
            bounding: 0x1ff_ffff_ffff,
            ..state
        };
        assert!(!root.holds_at_most(CapabilitySet::NET_ADMIN));
        assert_eq!(ThreadState::parse("Name:\tlb\n"), None);
    }

    #[test]
    fn names_are_the_kernel_names() {
        assert_eq!(
            names(CapabilitySet::NET_ADMIN | CapabilitySet::BPF),
            "CAP_NET_ADMIN, CAP_BPF"
        );
        assert_eq!(names(CapabilitySet::empty()), "none");
    }
}
