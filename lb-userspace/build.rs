//! Locates the compiled eBPF object that `lb` embeds and exports its path as
//! `LB_EBPF_OBJECT`.
//!
//! The object is `$LB_EBPF_OBJECT` when set, else
//! `<workspace>/target/bpfel-unknown-none/release/lb-ebpf` (what `cargo xtask
//! build` produces). A missing object fails the build with instructions.

use std::{env, path::PathBuf, process::ExitCode};

const OBJECT_ENV: &str = "LB_EBPF_OBJECT";

fn main() -> ExitCode {
    println!("cargo::rerun-if-env-changed={OBJECT_ENV}");
    let object = match env::var_os(OBJECT_ENV) {
        Some(path) => PathBuf::from(path),
        None => {
            let manifest_dir = PathBuf::from(
                env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"),
            );
            manifest_dir.join("../target/bpfel-unknown-none/release/lb-ebpf")
        }
    };
    println!("cargo::rerun-if-changed={}", object.display());
    let object = match object.canonicalize() {
        Ok(path) if path.is_file() => path,
        _ => {
            println!(
                "cargo::error=eBPF object not found at {}: build it with `cargo xtask build` \
                 (it builds lb-ebpf first), or point {OBJECT_ENV} at it",
                object.display()
            );
            return ExitCode::FAILURE;
        }
    };
    println!("cargo::rustc-env={OBJECT_ENV}={}", object.display());
    ExitCode::SUCCESS
}
