//! Reloading the configuration while `lb` runs, on `lb reload` (`POST
//! /reload`) and on SIGHUP: re-reads the file `lb run` was started with,
//! validates it with the validator of `lb check-config`, refuses settings
//! that need a restart ([`config::check_reloadable`]), resolves the backend
//! addresses it adds, and hands it to the controller, which applies only the
//! difference ([`crate::controller`]).
//!
//! One reload at a time. A refused reload changes nothing: the running
//! configuration stays. Every outcome is logged, counted and published
//! ([`ConfigStatus`]) for `/status` and `/metrics`.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use tokio::signal::unix::Signal;
use tokio::sync::{mpsc, watch};

use crate::config::{self, Config, ConfigFile, ContentHash, ServiceChanges};
use crate::controller::ConfigUpdates;
use crate::domain::{
    ConfigStatus, ConfigStatusReceiver, ReloadCommand, ReloadCommands, ReloadError, ReloadOutcome,
    ReloadReply,
};
use crate::neighbour::Resolver;

/// Reload requests that may wait while one runs.
const REQUEST_QUEUE: usize = 16;

/// The file `lb run` was started with, the configuration running now, and
/// the way to the controller.
#[derive(Debug)]
pub struct Reloader {
    path: PathBuf,
    /// `lb run --pin-dir`, which overrides `global.pin_dir` of every reload too.
    pin_dir: Option<PathBuf>,
    running: Config,
    running_hash: ContentHash,
    controller: ConfigUpdates,
    status: watch::Sender<ConfigStatus>,
    requests: mpsc::Receiver<ReloadCommand>,
    request_sender: mpsc::Sender<ReloadCommand>,
}

impl Reloader {
    /// A reloader of the file at `path`, which `lb run` loaded as `running`
    /// (with `--pin-dir` `pin_dir` applied) and started with at `now`.
    pub fn new(
        path: &Path,
        pin_dir: Option<PathBuf>,
        running: ConfigFile,
        controller: ConfigUpdates,
        now: SystemTime,
    ) -> Self {
        let (request_sender, requests) = mpsc::channel(REQUEST_QUEUE);
        let (status, _) = watch::channel(ConfigStatus {
            hash: running.hash.to_string(),
            applied_at: now,
            reloads_ok: 0,
            reloads_failed: 0,
            last_error: None,
        });
        Reloader {
            path: path.to_owned(),
            pin_dir,
            running: running.config,
            running_hash: running.hash,
            controller,
            status,
            requests,
            request_sender,
        }
    }

    /// Where the API asks for reloads; served by [`Reloader::serve`].
    pub fn commands(&self) -> ReloadCommands {
        ReloadCommands::new(self.request_sender.clone())
    }

    /// Follows the running configuration's hash and the reloads' counts.
    pub fn status(&self) -> ConfigStatusReceiver {
        self.status.subscribe()
    }

    /// Serves reload requests and SIGHUPs (`hangups`), one at a time, until
    /// the task is dropped.
    pub async fn serve(mut self, mut hangups: Signal) {
        loop {
            tokio::select! {
                Some(request) = self.requests.recv() => {
                    let reply = self.reload("lb reload").await;
                    // The requester may have given up: the outcome is logged anyway.
                    let _ = request.reply.send(reply);
                }
                Some(()) = hangups.recv() => {
                    let _ = self.reload("SIGHUP").await;
                }
            }
        }
    }

    /// Reloads the file, asked for by `trigger`; counts, logs and
    /// publishes the outcome.
    async fn reload(&mut self, trigger: &str) -> ReloadReply {
        let path = self.path.display().to_string();
        tracing::info!(file = %path, trigger, "reloading the configuration");
        let result = self.apply().await;
        let hash = self.running_hash.to_string();
        self.status.send_modify(|status| {
            // A reload the maps do not follow yet still took: it runs, retried.
            let took = matches!(result, Ok(_) | Err(ReloadError::NotApplied(_)));
            if took {
                status.hash = hash;
                status.applied_at = SystemTime::now();
                status.reloads_ok += 1;
            } else {
                status.reloads_failed += 1;
            }
            status.last_error = result.as_ref().err().map(ToString::to_string);
        });
        match &result {
            Ok(outcome) => tracing::info!(
                file = %path,
                hash = %outcome.hash,
                changes = %outcome.changes,
                "configuration reloaded"
            ),
            Err(ReloadError::NotApplied(reason)) => {
                tracing::error!(file = %path, %reason, "configuration reloaded, data path not updated yet")
            }
            Err(error) => {
                tracing::error!(file = %path, %error, "reload refused; the running configuration stays")
            }
        }
        result
    }

    /// Reads, checks and resolves the file, and has the controller apply it.
    async fn apply(&mut self) -> ReloadReply {
        // With its causes, as `lb check-config` prints it.
        let refused = |error: anyhow::Error| ReloadError::Refused(format!("{error:#}"));
        let ConfigFile { mut config, hash } =
            config::load(&self.path).map_err(|error| refused(error.into()))?;
        if let Some(dir) = &self.pin_dir {
            config.global.pin_dir =
                Some(config::validate_pin_dir(dir).map_err(|error| refused(error.into()))?);
        }
        config::check_reloadable(&self.running, &config).map_err(|error| refused(error.into()))?;
        let changes = ServiceChanges::between(&self.running, &config);
        let known = self.running.backend_addresses();
        let added: Vec<_> = config
            .backend_addresses()
            .into_iter()
            .filter(|address| !known.contains(address))
            .collect();
        let neighbours = if added.is_empty() {
            Default::default()
        } else {
            let resolver = Resolver::new().map_err(|error| refused(error.into()))?;
            resolver.resolve_all(&added).await.map_err(|error| {
                refused(
                    anyhow::Error::new(error)
                        .context("resolving the new backends' MAC addresses (dsr-l2)"),
                )
            })?
        };
        let applied = self.controller.send(config.clone(), neighbours).await;
        if matches!(applied, Ok(()) | Err(ReloadError::NotApplied(_))) {
            self.running = config;
            self.running_hash = hash;
        }
        applied.map(|()| ReloadOutcome {
            hash: hash.to_string(),
            changes: changes.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::net::Ipv4Addr;

    use tokio::sync::oneshot;

    use super::*;
    use crate::controller::Controller;
    use crate::dataplane::fake::FakeMaps;
    use crate::dataplane::LoadOptions;
    use crate::domain::SnapshotReceiver;
    use crate::neighbour::{Interface, Neighbour};

    /// Service `web` over web1 and web2 (`web2_weight`), unchecked: no probe
    /// leaves the test; `global` lines first.
    fn text(global: &str, web2_weight: u32) -> String {
        format!(
            "[global]\ninterface = \"eth0\"\n{global}\nmaglev_table_size = 13\n\
             [[service]]\nname = \"web\"\nvip = \"10.0.0.100\"\nport = 80\nprotocol = \"tcp\"\n\
             [service.health]\ntype = \"none\"\n\
             [[service.backend]]\nname = \"web1\"\naddress = \"10.0.0.1\"\n\
             [[service.backend]]\nname = \"web2\"\naddress = \"10.0.0.2\"\nweight = {web2_weight}\n"
        )
    }

    fn neighbours() -> HashMap<Ipv4Addr, Neighbour> {
        (1..=2)
            .map(|last| {
                let neighbour = Neighbour {
                    interface: Interface {
                        index: 7,
                        name: "eth1".into(),
                        mac: [0x02, 0, 0, 0, 0, 0xff],
                    },
                    mac: [0x02, 0, 0, 0, 0, last],
                };
                (Ipv4Addr::new(10, 0, 0, last), neighbour)
            })
            .collect()
    }

    fn web2_weight(snapshot: &SnapshotReceiver) -> u32 {
        snapshot.borrow().services[0].backends[1].configured_weight
    }

    #[tokio::test]
    async fn a_refused_file_changes_nothing_and_is_counted_and_a_valid_one_takes() {
        let dir = std::env::temp_dir().join(format!("lb-reload-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("lb.toml");
        std::fs::write(&path, text("", 1)).unwrap();
        let loaded = config::load(&path).unwrap();
        let first_hash = loaded.hash.to_string();
        let maps = FakeMaps::new(&LoadOptions {
            table_size: 13,
            ..LoadOptions::default()
        });
        let controller = Controller::start(&loaded.config, neighbours(), maps).unwrap();
        let snapshot = controller.subscribe();
        let mut reloader = Reloader::new(
            &path,
            None,
            loaded,
            controller.config_updates(),
            SystemTime::UNIX_EPOCH,
        );
        let status = reloader.status();
        let (stop, stopped) = oneshot::channel::<()>();
        let running = tokio::spawn(controller.run(async {
            let _ = stopped.await;
        }));

        // Invalid: refused with the file's line, as check-config says it.
        std::fs::write(&path, text("mtu = 9000", 5)).unwrap();
        let refused = reloader.reload("test").await.unwrap_err();
        let check_config = anyhow::Error::from(config::load(&path).unwrap_err());
        assert_eq!(refused, ReloadError::Refused(format!("{check_config:#}")));
        assert!(
            refused
                .to_string()
                .starts_with(&format!("{}:3:1: unknown field `mtu`", path.display())),
            "{refused}"
        );
        // Valid, but a setting that needs a restart.
        std::fs::write(&path, text("max_services = 8", 5)).unwrap();
        let refused = reloader.reload("test").await.unwrap_err();
        assert_eq!(
            refused.to_string(),
            "global.max_services cannot change while lb runs: restart lb to apply it (nothing was changed)"
        );
        assert_eq!(web2_weight(&snapshot), 1, "nothing changed");
        let counted = status.borrow().clone();
        assert_eq!(
            (
                counted.hash.as_str(),
                counted.reloads_ok,
                counted.reloads_failed
            ),
            (first_hash.as_str(), 0, 2)
        );
        assert_eq!(counted.applied_at, SystemTime::UNIX_EPOCH);
        assert_eq!(counted.last_error, Some(refused.to_string()));

        // Valid: it takes.
        let valid = text("", 5);
        std::fs::write(&path, &valid).unwrap();
        let outcome = reloader.reload("test").await.unwrap();
        let hash = ContentHash::of(valid.as_bytes()).to_string();
        assert_eq!(
            outcome,
            ReloadOutcome {
                hash: hash.clone(),
                changes: "services: 1 changed (web), 0 unchanged".into(),
            }
        );
        assert_eq!(web2_weight(&snapshot), 5);
        let counted = status.borrow().clone();
        assert_eq!(
            (
                counted.hash,
                counted.reloads_ok,
                counted.reloads_failed,
                counted.last_error
            ),
            (hash, 1, 2, None)
        );
        assert!(counted.applied_at > SystemTime::UNIX_EPOCH);

        stop.send(()).unwrap();
        running.await.unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
