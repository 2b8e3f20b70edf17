//! Bootstrap: detects what building and running the project needs and installs
//! what is missing, idempotently, one line of output per step.
//!
//! Steps: Debian packages, `bpf-linker` built against LLVM 22, bpffs mounted,
//! and the choice of compiler route for the eBPF crate.

use std::collections::BTreeSet;
use std::fmt;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use thiserror::Error;

use crate::cmd::{self, CommandError};
use crate::paths;

/// Debian packages the project needs: the compiler route for eBPF without
/// `rust-src` (`rustc-web`, its prebuilt `core` for BPF and its clippy, which
/// lints the eBPF crate with the same compiler), what `bpf-linker`
/// links against, the lab's web server (nginx, with its SSL module) and
/// tools (`openssl` makes the lab's CA and certificate), the routing daemons of
/// the active-active lab and its config checks, the benchmarks' peers and
/// the font of their charts, and Prometheus (with `promtool`), which the
/// metrics tests scrape the lab with and check the alert rules with, and
/// MariaDB (server and client), whose servers the `mysql` check's test runs
/// in a namespace of its own.
pub const DEBIAN_PACKAGES: &[&str] = &[
    "rustc-web",
    "libstd-rust-web-dev-bpf",
    "rust-web-clippy",
    "llvm-22-dev",
    "libpolly-22-dev",
    "zlib1g-dev",
    "libzstd-dev",
    "nginx",
    "openssl",
    "wrk",
    "ethtool",
    "iproute2",
    "bpftool",
    "haproxy",
    "nftables",
    "curl",
    "conntrack",
    "bird2",
    "frr",
    "fonts-dejavu-core",
    "prometheus",
    "mariadb-server",
    "mariadb-client",
];

/// A system service that installing its package starts in the root namespace.
struct SystemService {
    package: &'static str,
    name: &'static str,
    /// Where Debian's service keeps its PID.
    pid_file: &'static str,
}

/// The services our packages start. The lab runs its own instances inside
/// namespaces, so a service started by our install is stopped and disabled
/// again.
const SYSTEM_SERVICES: &[SystemService] = &[
    SystemService {
        package: "nginx",
        name: "nginx",
        pid_file: "/run/nginx.pid",
    },
    SystemService {
        package: "haproxy",
        name: "haproxy",
        pid_file: "/run/haproxy.pid",
    },
    SystemService {
        package: "prometheus",
        name: "prometheus",
        pid_file: "/run/prometheus/prometheus.pid",
    },
    SystemService {
        package: "bird2",
        name: "bird",
        pid_file: "/run/bird/bird.pid",
    },
    SystemService {
        package: "frr",
        name: "frr",
        pid_file: "/run/frr/watchfrr.pid",
    },
    SystemService {
        package: "mariadb-server",
        name: "mariadb",
        pid_file: "/run/mysqld/mysqld.pid",
    },
];

/// The `bpf-linker` release the pinned aya versions work with.
const BPF_LINKER_VERSION: &str = "0.13.0";

/// Where Debian's LLVM 22 lives; `bpf-linker` must be built against it.
const LLVM_PREFIX: &str = "/usr/lib/llvm-22";

/// Debian's compiler (`rustc-web`), which ships a prebuilt `core` for BPF.
pub const DEBIAN_RUSTC: &str = "/usr/bin/rustc";

/// Debian's `cargo-clippy` (`rust-web-clippy`), whose driver matches
/// [`DEBIAN_RUSTC`]: rustup's clippy has no `core` for BPF.
pub const DEBIAN_CARGO_CLIPPY: &str = "/usr/bin/cargo-clippy";

/// Where bpffs is mounted.
const BPFFS: &str = "/sys/fs/bpf";

/// How the eBPF crate gets a `core` library for `bpfel-unknown-none`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EbpfToolchain {
    /// A rustup nightly with `rust-src`: `cargo +nightly build -Z build-std=core`.
    NightlyBuildStd,
    /// Debian's `rustc-web` with its prebuilt `core`: `RUSTC=/usr/bin/rustc
    /// RUSTC_BOOTSTRAP=1`.
    DebianRustc,
}

impl fmt::Display for EbpfToolchain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NightlyBuildStd => {
                f.write_str("rustup nightly with rust-src (-Z build-std=core)")
            }
            Self::DebianRustc => write!(f, "Debian rustc ({DEBIAN_RUSTC}, RUSTC_BOOTSTRAP=1)"),
        }
    }
}

/// Why the bootstrap stopped.
#[derive(Debug, Error)]
pub enum BootstrapError {
    /// Something must be installed or mounted, which needs root.
    #[error("bootstrap needs root to {0} (run as root)")]
    NotRoot(String),
    /// A command the bootstrap ran failed.
    #[error(transparent)]
    Command(#[from] CommandError),
    /// Reading system state failed.
    #[error("could not read {path}: {error}")]
    Read {
        /// What was read.
        path: PathBuf,
        /// The error.
        error: std::io::Error,
    },
    /// `cargo install` succeeded but the result is not what we asked for.
    #[error("bpf-linker {BPF_LINKER_VERSION} was installed but `bpf-linker --version` says {0:?}")]
    BpfLinkerStillMissing(Option<String>),
}

/// Runs every bootstrap step and returns the eBPF compiler route to use.
/// Without root it still checks everything, and fails only if something must
/// be installed or mounted.
pub fn run() -> Result<EbpfToolchain, BootstrapError> {
    debian_packages()?;
    bpf_linker()?;
    bpffs()?;
    let toolchain = detect_ebpf_toolchain();
    println!("bootstrap: eBPF toolchain ... {toolchain}");
    Ok(toolchain)
}

/// Whether this process runs as root.
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Starts a step's line; the step finishes it with [`finish`].
fn begin(step: &str) {
    print!("bootstrap: {step} ... ");
    // A failed flush only delays the progress line.
    let _ = std::io::stdout().flush();
}

fn progress(text: &str) {
    print!("{text} ... ");
    let _ = std::io::stdout().flush();
}

fn finish(text: &str) {
    println!("{text}");
}

/// Step 1: Debian packages, installed only if missing.
fn debian_packages() -> Result<(), BootstrapError> {
    begin("debian packages");
    let installed = installed_debian_packages(DEBIAN_PACKAGES)?;
    let missing: Vec<&str> = DEBIAN_PACKAGES
        .iter()
        .copied()
        .filter(|package| !installed.contains(*package))
        .collect();
    // A system service that was there before us is none of our business.
    let mut notes: Vec<String> = SYSTEM_SERVICES
        .iter()
        .filter(|service| !missing.contains(&service.package) && system_service_running(service))
        .map(|service| format!("system {} running, left alone", service.name))
        .collect();
    if missing.is_empty() {
        finish(&with_notes("ok (already installed)", &notes));
        return Ok(());
    }
    let missing_list = missing.join(" ");
    if !is_root() {
        finish("missing");
        return Err(BootstrapError::NotRoot(format!(
            "install Debian packages: {missing_list}"
        )));
    }
    progress(&format!("installing {missing_list}"));
    let apt = |args: &[&str]| {
        let mut command = Command::new("apt-get");
        command.args(args).env("DEBIAN_FRONTEND", "noninteractive");
        cmd::run_quiet(&mut command)
    };
    apt(&["update", "-q"])?;
    let mut install = vec!["install", "-y", "-q", "--no-install-recommends"];
    install.extend(&missing);
    apt(&install)?;

    let installed_now = SYSTEM_SERVICES
        .iter()
        .filter(|service| missing.contains(&service.package));
    for service in installed_now {
        let name = service.name;
        notes.push(match stop_and_disable_service(name) {
            Ok(()) => format!("{name} service stopped and disabled"),
            Err(error) => format!("warning: could not stop the {name} service: {error}"),
        });
    }
    finish(&with_notes("ok", &notes));
    Ok(())
}

fn with_notes(verdict: &str, notes: &[String]) -> String {
    if notes.is_empty() {
        verdict.to_owned()
    } else {
        format!("{verdict}; {}", notes.join("; "))
    }
}

/// Which of `packages` dpkg reports as installed.
fn installed_debian_packages(packages: &[&str]) -> Result<BTreeSet<String>, BootstrapError> {
    // dpkg-query exits 1 when some package is unknown, but still lists the rest.
    let output = cmd::output_unchecked(
        Command::new("dpkg-query")
            .args(["-W", "-f=${Package}\t${Status}\n"])
            .args(packages),
    )?;
    Ok(parse_dpkg_status(&String::from_utf8_lossy(&output.stdout)))
}

/// Parses `dpkg-query -W -f='${Package}\t${Status}\n'` into the installed names.
fn parse_dpkg_status(listing: &str) -> BTreeSet<String> {
    listing
        .lines()
        .filter_map(|line| line.split_once('\t'))
        .filter(|(_, status)| status.trim() == "install ok installed")
        .map(|(package, _)| package.to_owned())
        .collect()
}

/// Whether the root namespace's own `service` runs (Debian's pid file names a
/// live process).
fn system_service_running(service: &SystemService) -> bool {
    std::fs::read_to_string(service.pid_file)
        .ok()
        .and_then(|pid| pid.trim().parse::<u32>().ok())
        .is_some_and(|pid| Path::new(&format!("/proc/{pid}")).exists())
}

/// Stops and disables a service that Debian started while installing its
/// package, under systemd or under a plain init script (containers).
fn stop_and_disable_service(service: &str) -> Result<(), CommandError> {
    if Path::new("/run/systemd/system").is_dir() {
        cmd::run_quiet(Command::new("systemctl").args(["stop", service]))?;
        cmd::run_quiet(Command::new("systemctl").args(["disable", "--quiet", service]))?;
        return Ok(());
    }
    let init_script = Path::new("/etc/init.d").join(service);
    if init_script.exists() {
        cmd::run_quiet(Command::new(&init_script).arg("stop"))?;
    }
    if cmd::on_path("update-rc.d") {
        cmd::run_quiet(Command::new("update-rc.d").args([service, "disable"]))?;
    }
    Ok(())
}

/// Step 2: `bpf-linker` 0.13 built against Debian's LLVM 22.
fn bpf_linker() -> Result<(), BootstrapError> {
    begin(&format!("bpf-linker {BPF_LINKER_VERSION}"));
    if let Some(version) = bpf_linker_version().filter(|v| is_supported_bpf_linker(v)) {
        finish(&format!("ok (already installed: {version})"));
        return Ok(());
    }
    progress("installing with cargo install against LLVM 22 (takes a few minutes)");
    let mut path = std::ffi::OsString::from(format!("{LLVM_PREFIX}/bin:"));
    path.push(paths::path_with_cargo_bin());
    cmd::run_quiet(
        Command::new("cargo")
            .args(["install", "--quiet", "bpf-linker", "--version"])
            .arg(format!("={BPF_LINKER_VERSION}"))
            .args(["--locked", "--no-default-features", "--features", "llvm-22"])
            .env("PATH", path)
            .env("LLVM_PREFIX", LLVM_PREFIX)
            .env_remove("RUSTC")
            .env_remove("RUSTC_BOOTSTRAP"),
    )?;
    match bpf_linker_version() {
        Some(version) if is_supported_bpf_linker(&version) => {
            finish(&format!("ok (installed: {version})"));
            Ok(())
        }
        other => Err(BootstrapError::BpfLinkerStillMissing(other)),
    }
}

/// What `bpf-linker --version` prints, looking in cargo's bin directory too.
fn bpf_linker_version() -> Option<String> {
    let output = Command::new("bpf-linker")
        .arg("--version")
        .env("PATH", paths::path_with_cargo_bin())
        .output()
        .ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

/// Whether `bpf-linker --version` output names a 0.13.x release.
fn is_supported_bpf_linker(version: &str) -> bool {
    version
        .split_whitespace()
        .nth(1)
        .is_some_and(|v| v.starts_with("0.13."))
}

/// Step 3: bpffs mounted at /sys/fs/bpf.
fn bpffs() -> Result<(), BootstrapError> {
    begin(&format!("bpffs at {BPFFS}"));
    if bpffs_mounted()? {
        finish("ok (already mounted)");
        return Ok(());
    }
    if !is_root() {
        finish("not mounted");
        return Err(BootstrapError::NotRoot(format!("mount bpffs at {BPFFS}")));
    }
    cmd::run_quiet(Command::new("mount").args(["-t", "bpf", "bpf", BPFFS]))?;
    finish("ok (mounted)");
    Ok(())
}

fn bpffs_mounted() -> Result<bool, BootstrapError> {
    let mounts_path = Path::new("/proc/self/mounts");
    let mounts = std::fs::read_to_string(mounts_path).map_err(|error| BootstrapError::Read {
        path: mounts_path.to_owned(),
        error,
    })?;
    Ok(is_bpffs_mounted(&mounts))
}

/// Whether a `/proc/mounts` listing has bpffs at [`BPFFS`].
fn is_bpffs_mounted(mounts: &str) -> bool {
    mounts.lines().any(|line| {
        let mut fields = line.split_whitespace();
        let (_, mountpoint, fstype) = (fields.next(), fields.next(), fields.next());
        mountpoint == Some(BPFFS) && fstype == Some("bpf")
    })
}

/// Step 4: a rustup nightly with `rust-src` if there is one, else Debian's rustc.
/// Only installed toolchains are asked (rustup must not try to download one).
pub fn detect_ebpf_toolchain() -> EbpfToolchain {
    let rustup = |args: &[&str]| {
        Command::new("rustup")
            .args(args)
            .env("PATH", paths::path_with_cargo_bin())
            .env("RUSTUP_AUTO_INSTALL", "0")
            .output()
            .ok()
            .filter(|output| output.status.success())
            .map(|output| String::from_utf8_lossy(&output.stdout).into_owned())
    };
    let has_nightly = rustup(&["toolchain", "list"])
        .is_some_and(|list| list.lines().any(|line| line.starts_with("nightly")));
    let nightly_sysroot = has_nightly
        .then(|| rustup(&["run", "nightly", "rustc", "--print", "sysroot"]))
        .flatten();
    match nightly_sysroot {
        Some(sysroot) if has_rust_src(Path::new(sysroot.trim())) => EbpfToolchain::NightlyBuildStd,
        _ => EbpfToolchain::DebianRustc,
    }
}

/// Whether the toolchain at `sysroot` has the `rust-src` component.
fn has_rust_src(sysroot: &Path) -> bool {
    sysroot.join("lib/rustlib/src/rust/library/core").is_dir()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dpkg_listing_keeps_only_installed_packages() {
        let listing = "nginx\tinstall ok installed\nwrk\tdeinstall ok config-files\ncurl\tinstall ok installed\n";
        let installed = parse_dpkg_status(listing);
        assert!(installed.contains("nginx"));
        assert!(installed.contains("curl"));
        assert!(!installed.contains("wrk"));
    }

    #[test]
    fn only_bpf_linker_0_13_is_supported() {
        assert!(is_supported_bpf_linker("bpf-linker 0.13.0"));
        assert!(is_supported_bpf_linker("bpf-linker 0.13.2"));
        assert!(!is_supported_bpf_linker("bpf-linker 0.9.14"));
        assert!(!is_supported_bpf_linker("bpf-linker 0.130.0"));
        assert!(!is_supported_bpf_linker(""));
    }

    #[test]
    fn rust_src_is_found_under_the_sysroot() {
        let sysroot = std::env::temp_dir().join(format!("xtask-sysroot-{}", std::process::id()));
        assert!(!has_rust_src(&sysroot));
        std::fs::create_dir_all(sysroot.join("lib/rustlib/src/rust/library/core")).unwrap();
        assert!(has_rust_src(&sysroot));
        std::fs::remove_dir_all(&sysroot).unwrap();
    }

    #[test]
    fn bpffs_is_recognised_by_mountpoint_and_type() {
        let mounted = "sysfs /sys sysfs rw 0 0\nbpf /sys/fs/bpf bpf rw,relatime 0 0\n";
        assert!(is_bpffs_mounted(mounted));
        let tmpfs_there = "none /sys/fs/bpf tmpfs rw 0 0\n";
        assert!(!is_bpffs_mounted(tmpfs_there));
        assert!(!is_bpffs_mounted("sysfs /sys sysfs rw 0 0\n"));
    }
}
