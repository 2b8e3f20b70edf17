//! The load balancer in the lab: its configuration for the lab's service, and
//! `lb run` started inside an LB namespace.

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::thread::sleep;
use std::time::{Duration, Instant};

use super::process::NsProcess;
use super::topology::{Node, HOST_INTERFACE, HTTPS_PORT, HTTP_PORT, VIP};
use super::{Lab, LabError};

/// The name of the lab's service in the configuration.
pub const SERVICE_NAME: &str = "web";

/// The name of the lab's HTTPS service (443/tcp on the VIP, the same web
/// servers): `lb` passes TLS through; the web servers hold the certificate.
pub const HTTPS_SERVICE_NAME: &str = "web-https";

/// How the lab's service picks backends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheduler {
    /// Maglev consistent hashing.
    Maglev,
    /// Round-robin.
    RoundRobin,
    /// Maglev by client address (affinity).
    Source,
}

impl Scheduler {
    /// The value of `scheduler` in the configuration file.
    pub fn config_name(self) -> &'static str {
        match self {
            Scheduler::Maglev => "maglev",
            Scheduler::RoundRobin => "round-robin",
            Scheduler::Source => "source",
        }
    }
}

impl fmt::Display for Scheduler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.config_name())
    }
}

/// HTTP checks of `/health` every 200 ms (rise 2, fall 2: a node settles
/// within half a second), as a `[service.health]` section for the lab's
/// service (append it right after [`config_toml`]).
pub const HEALTH_SECTION: &str = "
[service.health]
type = \"http\"
path = \"/health\"
expect_body = \"ok\"
interval = \"200ms\"
timeout = \"150ms\"
rise = 2
fall = 2
";

/// The `lb` configuration for the lab: one TCP service on the VIP, port 80,
/// with every web server as a backend.
pub fn config_toml(scheduler: Scheduler) -> String {
    format!(
        "# Written by `cargo xtask` for the lab.
[global]
interface = \"{HOST_INTERFACE}\"
{}",
        service_toml(SERVICE_NAME, HTTP_PORT, scheduler)
    )
}

/// The lab's HTTPS service, [`HTTPS_SERVICE_NAME`] on port 443, as a
/// `[[service]]` with every web server as a backend and the default checks
/// (a TCP connect to 443); append it to [`config_toml`] (after any
/// [`HEALTH_SECTION`] meant for the port-80 service).
pub fn https_service_toml(scheduler: Scheduler) -> String {
    service_toml(HTTPS_SERVICE_NAME, HTTPS_PORT, scheduler)
}

/// A `[[service]]` named `name`: TCP on the VIP at `port`, every web
/// server a backend.
fn service_toml(name: &str, port: u16, scheduler: Scheduler) -> String {
    let mut text = format!(
        "
[[service]]
name = \"{name}\"
vip = \"{VIP}\"
port = {port}
protocol = \"tcp\"
scheduler = \"{scheduler}\"
"
    );
    for web in Node::WEBS {
        let address = web.address().expect("web servers have addresses");
        text.push_str(&format!(
            "\n[[service.backend]]\nname = \"{web}\"\naddress = \"{address}\"\n"
        ));
    }
    text
}

impl Lab {
    /// Writes the lab's `lb` configuration for `scheduler` into the run
    /// directory and returns its path.
    pub fn write_lb_config(&self, scheduler: Scheduler) -> Result<PathBuf, LabError> {
        let path = self.run_dir().join(format!("lb-{scheduler}.toml"));
        fs::write(&path, config_toml(scheduler)).map_err(|error| LabError::Io {
            context: format!("writing {}", path.display()),
            error,
        })?;
        Ok(path)
    }

    /// Starts `BINARY run --config CONFIG --pin-dir DIR` inside `node` (an
    /// LB), with the node's own pin directory on the lab's bpffs, logging to
    /// `lb.log` in the node's run directory (`lb-2.log`, ... when restarted).
    /// `RUST_LOG` defaults to `info`.
    pub fn start_lb(
        &self,
        node: Node,
        binary: &Path,
        config: &Path,
    ) -> Result<NsProcess, LabError> {
        let filter = std::env::var("RUST_LOG").unwrap_or_else(|_| "info".to_owned());
        self.start_lb_logging(node, binary, config, &filter)
    }

    /// [`Lab::start_lb`] with `RUST_LOG=filter`.
    pub fn start_lb_logging(
        &self,
        node: Node,
        binary: &Path,
        config: &Path,
        filter: &str,
    ) -> Result<NsProcess, LabError> {
        if !binary.is_file() {
            return Err(LabError::MissingLbBinary(binary.to_owned()));
        }
        let log_dir = self.run_dir().join(node.name());
        fs::create_dir_all(&log_dir).map_err(|error| LabError::Io {
            context: format!("creating {}", log_dir.display()),
            error,
        })?;
        let mut command = self.command(node, binary);
        command
            .arg("run")
            .arg("--config")
            .arg(config)
            .arg("--pin-dir")
            .arg(self.lb_pin_dir(node))
            .env("RUST_LOG", filter);
        NsProcess::spawn(
            &format!("lb on {node}"),
            &mut command,
            &unused_log_path(&log_dir),
        )
        .map_err(|error| LabError::Io {
            context: format!("starting {} on {node}", binary.display()),
            error,
        })
    }

    /// Waits until a request from the client to the VIP gets `200 OK`, which
    /// means `lb` has attached and programmed its maps. Fails early if `lb`
    /// exits, and after `timeout`, with the end of its log.
    pub fn wait_until_vip_serves(
        &self,
        lb: &mut NsProcess,
        timeout: Duration,
    ) -> Result<(), LabError> {
        let deadline = Instant::now() + timeout;
        let url = vip_url();
        loop {
            if let Some(status) = lb.try_exit_status().map_err(|error| LabError::Io {
                context: format!("checking on {}", lb.name()),
                error,
            })? {
                return Err(LabError::LbExited {
                    status,
                    log: lb.log_path().to_owned(),
                    log_tail: lb.log_tail(30),
                });
            }
            if self.http_get(&url)?.is_ok() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(LabError::LbNotServing {
                    timeout,
                    log: lb.log_path().to_owned(),
                    log_tail: lb.log_tail(30),
                });
            }
            sleep(Duration::from_millis(200));
        }
    }
}

/// `lb.log` in `dir`, or `lb-N.log` with the first N from 2 not taken.
fn unused_log_path(dir: &Path) -> PathBuf {
    std::iter::once(dir.join("lb.log"))
        .chain((2..).map(|n| dir.join(format!("lb-{n}.log"))))
        .find(|path| !path.exists())
        .expect("an unbounded sequence has a free name")
}

/// The URL of the lab's service.
pub fn vip_url() -> String {
    format!("http://{VIP}:{HTTP_PORT}/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_lists_the_service_and_every_web_server() {
        let text = config_toml(Scheduler::RoundRobin);
        assert!(text.contains("scheduler = \"round-robin\""));
        assert!(text.contains("vip = \"10.0.0.100\""));
        assert_eq!(
            text.matches("[[service.backend]]").count(),
            Node::WEBS.len()
        );
        for n in 1..=3 {
            assert!(text.contains(&format!("address = \"10.0.0.{n}\"")));
        }
    }

    #[test]
    fn the_https_service_is_port_443_with_every_web_server() {
        let text = https_service_toml(Scheduler::Maglev);
        assert!(text.contains("name = \"web-https\""));
        assert!(text.contains("port = 443"));
        assert_eq!(
            text.matches("[[service.backend]]").count(),
            Node::WEBS.len()
        );
    }
}
