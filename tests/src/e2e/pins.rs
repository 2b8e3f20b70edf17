//! The data path `lb` leaves pinned on the lab's bpffs for its next run, read
//! by kernel object id with bpftool: which link holds the XDP program, which
//! program it runs, which flow table it shares. Pins are files, so this runs
//! in the root namespace and sends nothing.

use std::path::Path;
use std::process::Command;

use serde::Deserialize;
use xtask::lab::{Lab, Node};

/// The pin of the XDP link on the lab's `eth0`.
const LINK_PIN: &str = "link_eth0";

/// The pins an `lb` with a pin directory leaves while it runs (or after a
/// crash): the XDP link, the flow table and the backend table.
pub const PINS: [&str; 3] = [LINK_PIN, "flows", "backends"];

/// The kernel objects behind `node`'s pins.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PinnedDataPath {
    /// The XDP link on `eth0`.
    pub link: u32,
    /// The program that link runs.
    pub program: u32,
    /// The flow table.
    pub flows: u32,
}

#[derive(Deserialize)]
struct LinkInfo {
    id: u32,
    prog_id: u32,
}

#[derive(Deserialize)]
struct MapInfo {
    id: u32,
}

/// Reads the objects behind the pins of `lb` on `node`.
///
/// # Panics
/// If a pin is missing or bpftool fails.
pub fn pinned_data_path(lab: &Lab, node: Node) -> PinnedDataPath {
    let dir = lab.lb_pin_dir(node);
    let link: LinkInfo = bpftool(&["link", "show", "pinned"], &dir.join(LINK_PIN));
    let flows: MapInfo = bpftool(&["map", "show", "pinned"], &dir.join("flows"));
    PinnedDataPath {
        link: link.id,
        program: link.prog_id,
        flows: flows.id,
    }
}

/// The pins of [`PINS`] missing from `node`'s pin directory.
pub fn missing_pins(lab: &Lab, node: Node) -> Vec<&'static str> {
    let dir = lab.lb_pin_dir(node);
    PINS.into_iter()
        .filter(|pin| !dir.join(pin).exists())
        .collect()
}

/// `bpftool link detach pinned PIN`: the program leaves `node`'s interface
/// while `lb` keeps running (what a careless operator or a driver reset does).
pub fn detach_xdp_link(lab: &Lab, node: Node) {
    let pin = lab.lb_pin_dir(node).join(LINK_PIN);
    let status = Command::new("bpftool")
        .args(["link", "detach", "pinned"])
        .arg(&pin)
        .status()
        .expect("running bpftool");
    assert!(
        status.success(),
        "bpftool link detach pinned {}",
        pin.display()
    );
}

fn bpftool<T: serde::de::DeserializeOwned>(args: &[&str], pin: &Path) -> T {
    let output = Command::new("bpftool")
        .arg("-j")
        .args(args)
        .arg(pin)
        .output()
        .expect("running bpftool");
    assert!(
        output.status.success(),
        "bpftool {} {}: {}",
        args.join(" "),
        pin.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap_or_else(|error| {
        panic!(
            "bpftool {} {}: {error}: {}",
            args.join(" "),
            pin.display(),
            String::from_utf8_lossy(&output.stdout)
        )
    })
}
