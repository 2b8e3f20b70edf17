//! Where things live: the workspace root, the build outputs, the tools.
//!
//! Build outputs can be overridden through environment variables so that the
//! integration tests use exactly what `cargo xtask test` built.

use std::env;
use std::path::{Path, PathBuf};

/// Environment variable naming the eBPF object (also read by `lb-userspace` at
/// compile time).
pub const EBPF_OBJECT_ENV: &str = "LB_EBPF_OBJECT";

/// Environment variable naming the `lb` binary the integration tests run.
pub const LB_BINARY_ENV: &str = "LB_BINARY";

/// The eBPF target triple.
pub const BPF_TARGET: &str = "bpfel-unknown-none";

/// The workspace root (the directory holding the top-level `Cargo.toml`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives one level below the workspace root")
        .to_path_buf()
}

/// The shared Cargo target directory.
pub fn target_dir() -> PathBuf {
    workspace_root().join("target")
}

/// The target directory of clippy on the eBPF crate, apart from the build's.
pub fn ebpf_clippy_target_dir() -> PathBuf {
    target_dir().join("ebpf-clippy")
}

/// Where `cargo xtask build` leaves the eBPF object.
pub fn default_ebpf_object() -> PathBuf {
    target_dir()
        .join(BPF_TARGET)
        .join("release")
        .join("lb-ebpf")
}

/// The eBPF object to use: `$LB_EBPF_OBJECT` if set, else the build output.
pub fn ebpf_object() -> PathBuf {
    env::var_os(EBPF_OBJECT_ENV).map_or_else(default_ebpf_object, PathBuf::from)
}

/// Where `cargo xtask build` leaves the `lb` binary.
pub fn default_lb_binary() -> PathBuf {
    target_dir().join("release").join("lb")
}

/// The `lb` binary to run: `$LB_BINARY` if set, else the build output.
pub fn lb_binary() -> PathBuf {
    env::var_os(LB_BINARY_ENV).map_or_else(default_lb_binary, PathBuf::from)
}

/// Cargo's own `bin` directory (`$CARGO_HOME/bin`, default `~/.cargo/bin`),
/// where `cargo install` puts `bpf-linker`.
pub fn cargo_bin_dir() -> PathBuf {
    let cargo_home = env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env::var_os("HOME").unwrap_or_else(|| "/root".into())).join(".cargo")
        });
    cargo_home.join("bin")
}

/// `$PATH` with [`cargo_bin_dir`] in front, so child processes find
/// `bpf-linker` even when the user's shell did not add it.
pub fn path_with_cargo_bin() -> std::ffi::OsString {
    let mut dirs = vec![cargo_bin_dir()];
    if let Some(path) = env::var_os("PATH") {
        dirs.extend(env::split_paths(&path));
    }
    env::join_paths(dirs).expect("PATH entries contain no separator")
}
