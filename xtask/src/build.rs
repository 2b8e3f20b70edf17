//! Build: the eBPF object (for `bpfel-unknown-none`) and the `lb` binary that
//! embeds it; and the clippy command for the eBPF crate, which needs the same
//! compiler route.

use std::path::{Path, PathBuf};
use std::process::Command;

use thiserror::Error;

use crate::bootstrap::{EbpfToolchain, DEBIAN_CARGO_CLIPPY, DEBIAN_RUSTC};
use crate::cmd::{self, CommandError};
use crate::paths;

/// Flags for the eBPF object: debug info and BTF, which aya and bpftool read.
const EBPF_RUSTFLAGS: &str = "-C debuginfo=2 -C link-arg=--btf";

/// A build step failed.
#[derive(Debug, Error)]
pub enum BuildError {
    /// Cargo failed.
    #[error(transparent)]
    Command(#[from] CommandError),
    /// Cargo succeeded but the expected artifact is not there.
    #[error("the build succeeded but {0} does not exist")]
    MissingArtifact(PathBuf),
}

/// What [`all`] built.
#[derive(Clone, Debug)]
pub struct Artifacts {
    /// The eBPF object.
    pub ebpf_object: PathBuf,
    /// The `lb` binary.
    pub lb_binary: PathBuf,
}

/// Builds the eBPF object, then the userspace that embeds it.
pub fn all(toolchain: EbpfToolchain) -> Result<Artifacts, BuildError> {
    let ebpf_object = ebpf(toolchain)?;
    let lb_binary = userspace(&ebpf_object)?;
    Ok(Artifacts {
        ebpf_object,
        lb_binary,
    })
}

/// Builds `lb-ebpf` in release mode and returns the object's path.
pub fn ebpf(toolchain: EbpfToolchain) -> Result<PathBuf, BuildError> {
    println!("build: lb-ebpf ({toolchain})");
    cmd::run(&mut ebpf_cargo(
        toolchain,
        EbpfCommand::Build,
        &paths::target_dir(),
    ))?;
    existing(paths::default_ebpf_object())
}

/// The clippy check of `lb-ebpf` (`-D warnings`), in its own target
/// directory so that it never invalidates the release object.
pub fn ebpf_clippy(toolchain: EbpfToolchain) -> Command {
    let mut cargo = ebpf_cargo(
        toolchain,
        EbpfCommand::Clippy,
        &paths::ebpf_clippy_target_dir(),
    );
    cargo.args(["--", "-D", "warnings"]);
    cargo
}

/// What [`ebpf_cargo`] runs on the eBPF crate.
#[derive(Clone, Copy, PartialEq, Eq)]
enum EbpfCommand {
    Build,
    Clippy,
}

/// Cargo on `lb-ebpf` for `bpfel-unknown-none` in release mode, through the
/// toolchain's compiler route: `cargo +nightly … -Z build-std=core`, or
/// Debian's `rustc` (and, for clippy, Debian's `cargo-clippy`, whose driver
/// matches that `rustc`).
fn ebpf_cargo(toolchain: EbpfToolchain, command: EbpfCommand, target_dir: &Path) -> Command {
    let subcommand = match command {
        EbpfCommand::Build => "build",
        EbpfCommand::Clippy => "clippy",
    };
    let mut cargo = match toolchain {
        EbpfToolchain::NightlyBuildStd => {
            let mut cargo = Command::new("cargo");
            cargo.args(["+nightly", subcommand, "-Zbuild-std=core"]);
            cargo
        }
        EbpfToolchain::DebianRustc if command == EbpfCommand::Clippy => {
            let mut cargo = Command::new(DEBIAN_CARGO_CLIPPY);
            cargo.arg(subcommand);
            cargo
        }
        EbpfToolchain::DebianRustc => {
            let mut cargo = Command::new("cargo");
            cargo.arg(subcommand);
            cargo
        }
    };
    cargo
        .args(["--release", "--target", paths::BPF_TARGET, "--target-dir"])
        .arg(target_dir)
        .current_dir(paths::workspace_root().join("lb-ebpf"))
        .env("PATH", paths::path_with_cargo_bin())
        .env("RUSTFLAGS", EBPF_RUSTFLAGS)
        .env_remove("CARGO_ENCODED_RUSTFLAGS");
    match toolchain {
        EbpfToolchain::DebianRustc => cargo.env("RUSTC", DEBIAN_RUSTC).env("RUSTC_BOOTSTRAP", "1"),
        EbpfToolchain::NightlyBuildStd => cargo.env_remove("RUSTC"),
    };
    cargo
}

/// Builds the `lb` binary in release mode with `ebpf_object` embedded.
pub fn userspace(ebpf_object: &Path) -> Result<PathBuf, BuildError> {
    println!("build: lb-userspace");
    cmd::run(
        Command::new("cargo")
            .args(["build", "--release", "--package", "lb-userspace"])
            .current_dir(paths::workspace_root())
            .env(paths::EBPF_OBJECT_ENV, ebpf_object),
    )?;
    existing(paths::default_lb_binary())
}

fn existing(path: PathBuf) -> Result<PathBuf, BuildError> {
    if path.is_file() {
        Ok(path)
    } else {
        Err(BuildError::MissingArtifact(path))
    }
}
