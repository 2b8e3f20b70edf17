//! The active-active nodes in the lab: lb1 and lb2 run `lb` with the same
//! services (Maglev, so both pick the same backend for a flow) and HTTP
//! checks, plus a `[bgp]` section; `lb` keeps the VIP's route in
//! [`ANNOUNCE_TABLE`] while it can serve, each node's BIRD exports it, and
//! the router ([`super::Router`]) spreads flows over both. Build the lab
//! without the static VIP ([`super::LabOptions`]).

use std::fs;
use std::path::{Path, PathBuf};

use super::bird::ANNOUNCE_TABLE;
use super::lb::{config_toml, Scheduler, HEALTH_SECTION};
use super::process::NsProcess;
use super::topology::Node;
use super::{Lab, LabError};

/// `lb`'s configuration on both nodes: the lab's Maglev service with
/// [`HEALTH_SECTION`]'s checks, announced from [`ANNOUNCE_TABLE`], with a one-second
/// grace after withdrawing on a graceful stop.
pub fn active_active_config_toml() -> String {
    let mut text = config_toml(Scheduler::Maglev);
    text.push_str(HEALTH_SECTION);
    text.push_str(&format!(
        "
[bgp]
table = {ANNOUNCE_TABLE}
withdraw_grace = \"1s\"
"
    ));
    text
}

impl Lab {
    /// Writes the active-active configuration into the run directory and
    /// returns its path.
    pub fn write_active_active_config(&self) -> Result<PathBuf, LabError> {
        let path = self.run_dir().join("lb-active-active.toml");
        fs::write(&path, active_active_config_toml()).map_err(|error| LabError::Io {
            context: format!("writing {}", path.display()),
            error,
        })?;
        Ok(path)
    }

    /// Starts `lb` (`binary`) with the active-active configuration on lb1,
    /// then lb2.
    pub fn start_active_active(&self, binary: &Path) -> Result<[NsProcess; 2], LabError> {
        let config = self.write_active_active_config()?;
        Ok([
            self.start_lb(Node::Lb1, binary, &config)?,
            self.start_lb(Node::Lb2, binary, &config)?,
        ])
    }
}
