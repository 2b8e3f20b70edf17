//! The web servers: Debian's nginx, one instance per web namespace, each with
//! its own configuration, pid file, logs and document root under the lab's
//! run directory, serving the same site over HTTP (port 80) and HTTPS (port
//! 443, with the lab's certificate, see `tls`).

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::Stdio;

use std::time::Duration;

use super::topology::{Node, HTTPS_PORT, HTTP_PORT};
use super::{netns, process, tls, Lab, LabError};
use crate::cmd::{self, CommandError};

/// How long a stopped nginx gets to exit before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// What `/health` answers.
pub const HEALTH_BODY: &str = "ok\n";

/// The body of `/` on `web`: its name, so a client sees who answered.
pub fn index_body(web: Node) -> String {
    format!("{web}\n")
}

/// The directory of `web`'s nginx under the lab's run directory.
fn site_dir(run_dir: &Path, web: Node) -> PathBuf {
    run_dir.join(web.name())
}

/// `web`'s nginx pid file (holds the master's PID).
pub(super) fn pid_file(run_dir: &Path, web: Node) -> PathBuf {
    site_dir(run_dir, web).join("nginx.pid")
}

/// The master PID recorded in `web`'s pid file, if any.
pub(super) fn master_pid(run_dir: &Path, web: Node) -> Option<i32> {
    fs::read_to_string(pid_file(run_dir, web))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Writes `web`'s site and starts its nginx inside `namespace`. nginx binds
/// its sockets before it daemonizes, so the port listens when this returns.
pub(super) fn start(run_dir: &Path, web: Node, namespace: &str) -> Result<(), LabError> {
    let dir = site_dir(run_dir, web);
    let www = dir.join("www");
    let io = |context: &str| {
        let context = format!("{context} for nginx on {web}");
        move |error| LabError::Io { context, error }
    };
    fs::create_dir_all(&www).map_err(io("creating the site directory"))?;
    fs::create_dir_all(dir.join("temp")).map_err(io("creating the temp directory"))?;
    fs::write(www.join("index.html"), index_body(web)).map_err(io("writing index.html"))?;
    fs::write(www.join("health"), HEALTH_BODY).map_err(io("writing /health"))?;
    let conf = dir.join("nginx.conf");
    let text = config(
        &dir,
        &tls::server_certificate(run_dir),
        &tls::server_key(run_dir),
    );
    fs::write(&conf, text).map_err(io("writing nginx.conf"))?;

    // Startup messages go to a file, not a pipe: the daemonized master would
    // otherwise keep a captured pipe open.
    let startup_log = dir.join("startup.log");
    let log = File::create(&startup_log).map_err(io("creating startup.log"))?;
    let mut command = netns::exec(namespace, "nginx");
    command
        .arg("-p")
        .arg(&dir)
        .arg("-c")
        .arg(&conf)
        .arg("-e")
        .arg(dir.join("error.log"))
        .stdin(Stdio::null())
        .stdout(log.try_clone().map_err(io("opening startup.log"))?)
        .stderr(log);
    let status = command.status().map_err(|error| CommandError::Spawn {
        command: cmd::describe(&command),
        error,
    })?;
    if !status.success() {
        return Err(CommandError::Failed {
            command: cmd::describe(&command),
            status,
            output: fs::read_to_string(&startup_log).unwrap_or_default(),
        }
        .into());
    }
    Ok(())
}

impl Lab {
    /// Stops `web`'s nginx, as if the server died: SIGTERM to its master
    /// (fast shutdown: listeners and connections close at once), waiting
    /// until it is gone. Returns the master's PID.
    pub fn stop_web(&self, web: Node) -> Result<i32, LabError> {
        let not_running = |why: &str| LabError::Io {
            context: format!("stopping nginx on {web}"),
            error: std::io::Error::other(why.to_owned()),
        };
        let master = master_pid(&self.run_dir(), web).ok_or_else(|| not_running("no pid file"))?;
        // The PID must be inside the web's namespace: a stale pid file may
        // name some other process.
        if !netns::pids(&self.namespace(web))?.contains(&master) {
            return Err(not_running(
                "its master PID is not running in the namespace",
            ));
        }
        if !process::terminate(&[master], STOP_GRACE).is_empty() {
            return Err(not_running("it survived SIGKILL"));
        }
        Ok(master)
    }

    /// Kills `web`'s nginx, as if the process crashed: SIGKILL to its
    /// master and its workers at once (a worker left alive would go on
    /// serving), waiting until they are gone. The kernel then refuses new
    /// connections and resets open ones. Returns the PIDs killed.
    pub fn kill_web(&self, web: Node) -> Result<Vec<i32>, LabError> {
        let not_running = |why: &str| LabError::Io {
            context: format!("killing nginx on {web}"),
            error: std::io::Error::other(why.to_owned()),
        };
        let master = master_pid(&self.run_dir(), web).ok_or_else(|| not_running("no pid file"))?;
        // Only PIDs inside the web's namespace: a stale pid file may name
        // some other process.
        let inside = netns::pids(&self.namespace(web))?;
        if !inside.contains(&master) {
            return Err(not_running(
                "its master PID is not running in the namespace",
            ));
        }
        let nginx: Vec<i32> = inside
            .into_iter()
            .filter(|&pid| pid == master || process::parent(pid) == Some(master))
            .collect();
        if !process::kill_all(&nginx).is_empty() {
            return Err(not_running("it survived SIGKILL"));
        }
        Ok(nginx)
    }

    /// Starts `web`'s nginx again after [`Lab::stop_web`] or
    /// [`Lab::kill_web`]; it listens when this returns.
    pub fn start_web(&self, web: Node) -> Result<(), LabError> {
        start(&self.run_dir(), web, &self.namespace(web))
    }
}

/// nginx configuration for the site in `dir`: static files, no access log
/// (the benchmarks measure the load balancer, not disk writes), on port 80
/// and, with `certificate` and `key` (TLS 1.2 and 1.3), on port 443.
fn config(dir: &Path, certificate: &Path, key: &Path) -> String {
    let dir = dir.display();
    let certificate = certificate.display();
    let key = key.display();
    format!(
        "# Written by `cargo xtask` for the lab; removed with it.
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;

events {{
    worker_connections 4096;
}}

http {{
    access_log off;
    default_type text/plain;
    keepalive_requests 100000;
    client_body_temp_path {dir}/temp/body;
    proxy_temp_path {dir}/temp/proxy;
    fastcgi_temp_path {dir}/temp/fastcgi;
    uwsgi_temp_path {dir}/temp/uwsgi;
    scgi_temp_path {dir}/temp/scgi;

    server {{
        listen {HTTP_PORT} default_server;
        listen {HTTPS_PORT} ssl default_server;
        ssl_certificate {certificate};
        ssl_certificate_key {key};
        ssl_protocols TLSv1.2 TLSv1.3;
        root {dir}/www;
        index index.html;
    }}
}}
"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_keeps_every_path_inside_the_site_or_the_lab_tls_files() {
        let run_dir = Path::new("/run/lbt-lab");
        let text = config(
            &run_dir.join("web2"),
            &tls::server_certificate(run_dir),
            &tls::server_key(run_dir),
        );
        let paths = text.split_whitespace().filter(|word| word.starts_with('/'));
        for path in paths {
            assert!(
                path.starts_with("/run/lbt-lab/web2/") || path.starts_with("/run/lbt-lab/tls/"),
                "{path}"
            );
        }
        assert!(text.contains("listen 80 default_server;"));
        assert!(text.contains("listen 443 ssl default_server;"));
        assert!(text.contains("ssl_certificate /run/lbt-lab/tls/server.crt;"));
    }

    #[test]
    fn index_names_the_backend() {
        assert_eq!(index_body(Node::Web(3)), "web3\n");
    }
}
