//! The `mysql` health check against real MariaDB servers: a primary and a
//! replica that really replicates from it, each a `mariadbd` with its own
//! data directory, socket and address, in a network namespace created
//! here. The probes are the daemon's own (`lb::health::probe::check`), run
//! on threads that entered the namespace:
//!
//! - the primary passes `expect_role = "primary"` and fails `"replica"`;
//!   the replica the other way round, and passes `max_lag`;
//! - replication stopped on the replica fails it with the thread that stopped;
//! - a wrong password fails with the server's login message, which does
//!   not hold the password;
//! - the primary killed fails it.
//!
//! Needs root and MariaDB (`mariadb-server`, installed by `cargo xtask
//! test`'s bootstrap); fails, never skips, without them. Every packet stays
//! inside the namespace (its addresses are on its own `lo`); the servers
//! are killed by PID and the namespace deleted by name when the test ends,
//! on panic too.

use std::fs::File;
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use lb::health::probe;
use lb::health::{
    CheckFailure, CheckPass, CheckResult, CheckSpec, CheckTarget, ExpectRole, HealthParams,
    MysqlProbe, Password, ProbeKind, ProbeSpec, ServerRole,
};

const PRIMARY: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
const REPLICA: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 2);
const PORT: u16 = 3306;
const CHECK_PASSWORD: &str = "lb-check-Pw-7431";
const WRONG_PASSWORD: &str = "not-the-Pw-9925";
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a server may take to start, or replication to catch up.
const PATIENCE: Duration = Duration::from_secs(20);

/// A network namespace of its own, deleted by name on drop.
struct Netns {
    name: String,
}

impl Netns {
    fn new() -> Netns {
        let name = format!("lbmysql-{}", std::process::id());
        delete_namespace(&name);
        run("ip", &["netns", "add", &name]);
        let netns = Netns { name };
        run("ip", &["-n", &netns.name, "link", "set", "lo", "up"]);
        for address in [PRIMARY, REPLICA] {
            let address = format!("{address}/32");
            run(
                "ip",
                &["-n", &netns.name, "addr", "add", &address, "dev", "lo"],
            );
        }
        netns
    }

    /// Runs `work` on a thread that has entered the namespace.
    fn run_inside<T: Send + 'static>(&self, work: impl FnOnce() -> T + Send + 'static) -> T {
        let path = format!("/run/netns/{}", self.name);
        thread::spawn(move || {
            let file = File::open(&path).expect("open the namespace");
            // SAFETY: setns only reads the descriptor, which `file` keeps
            // open for the call, and moves only this thread.
            let result = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(
                result,
                0,
                "setns {path}: {}",
                std::io::Error::last_os_error()
            );
            work()
        })
        .join()
        .expect("the thread in the namespace panicked")
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        delete_namespace(&self.name);
    }
}

fn delete_namespace(name: &str) {
    let _ = Command::new("ip")
        .args(["netns", "del", name])
        .stderr(Stdio::null())
        .status();
}

fn run(program: &str, args: &[&str]) -> String {
    let output = Command::new(program).args(args).output().expect(program);
    assert!(
        output.status.success(),
        "{program} {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("utf-8")
}

/// A directory of this test's own, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        let dir = std::env::temp_dir().join(format!("lbmysql-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A `mariadbd` in the namespace, listening on `address`; killed by its
/// PID on drop.
struct Mariadb {
    child: Option<Child>,
    dir: PathBuf,
    name: &'static str,
}

impl Mariadb {
    /// A fresh data directory under `root/name` (no network needed); the
    /// installer has exited when this returns.
    fn install(root: &Path, name: &'static str) -> PathBuf {
        let dir = root.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let output = Command::new("mariadb-install-db")
            .arg("--no-defaults")
            .arg(format!("--datadir={}", dir.join("data").display()))
            .args([
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
                "--user=root",
            ])
            .stdin(Stdio::null())
            .output()
            .expect("mariadb-install-db (install mariadb-server)");
        assert!(
            output.status.success(),
            "mariadb-install-db for the {name}: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        dir
    }

    /// Starts the server of `dir` in `netns` on `address`; `ip netns exec`
    /// execs it, so the child's PID is the server's.
    fn start(
        netns: &Netns,
        dir: PathBuf,
        name: &'static str,
        address: Ipv4Addr,
        server_id: u32,
        read_only: bool,
    ) -> Mariadb {
        let path = |leaf: &str| dir.join(leaf).display().to_string();
        let child = Command::new("ip")
            .args(["netns", "exec", &netns.name, "mariadbd", "--no-defaults"])
            .arg(format!("--datadir={}", path("data")))
            .arg(format!("--socket={}", path("sock")))
            .arg(format!("--pid-file={}", path("pid")))
            .arg(format!("--log-error={}", path("error.log")))
            .arg(format!("--log-bin={}", path("data/binlog")))
            .arg(format!("--bind-address={address}"))
            .arg(format!("--port={PORT}"))
            .arg(format!("--server-id={server_id}"))
            .arg(format!("--read-only={}", u8::from(read_only)))
            .args([
                "--user=root",
                "--skip-name-resolve",
                "--innodb-buffer-pool-size=16M",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("mariadbd");
        let server = Mariadb {
            child: Some(child),
            dir,
            name,
        };
        let deadline = Instant::now() + PATIENCE;
        while server.try_sql("SELECT 1").is_err() {
            assert!(
                Instant::now() < deadline,
                "{name} did not start: {}",
                std::fs::read_to_string(server.dir.join("error.log")).unwrap_or_default()
            );
            thread::sleep(Duration::from_millis(100));
        }
        server
    }

    /// Runs `sql` as root over the server's Unix socket (no network).
    fn try_sql(&self, sql: &str) -> Result<String, String> {
        let output = Command::new("mariadb")
            .arg("--no-defaults")
            .arg(format!("--socket={}", self.dir.join("sock").display()))
            .args(["-uroot", "--batch", "--skip-column-names", "-e", sql])
            .output()
            .map_err(|error| error.to_string())?;
        if output.status.success() {
            Ok(String::from_utf8_lossy(&output.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&output.stderr).into_owned())
        }
    }

    fn sql(&self, sql: &str) -> String {
        self.try_sql(sql)
            .unwrap_or_else(|error| panic!("{} refused {sql:?}: {error}", self.name))
    }

    /// SIGKILL by PID, and reaped.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Mariadb {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The check user, on a server of its own (not replicated, so the replica's
/// applier never meets it).
fn create_check_user(server: &Mariadb) {
    server.sql(&format!(
        "SET sql_log_bin = 0; \
         CREATE USER 'lbcheck'@'%' IDENTIFIED BY '{CHECK_PASSWORD}'; \
         GRANT SLAVE MONITOR ON *.* TO 'lbcheck'@'%';"
    ));
}

/// The daemon's own probe of `address` as `lbcheck` with `password`,
/// expecting `role` (and `max_lag`), from inside `netns`.
fn check(
    netns: &Netns,
    address: Ipv4Addr,
    password: &str,
    role: ExpectRole,
    max_lag: Option<Duration>,
) -> CheckResult {
    let mut mysql = MysqlProbe::new("lbcheck", Password::new(password.to_owned()).unwrap())
        .unwrap()
        .with_expect_role(role);
    if let Some(max_lag) = max_lag {
        mysql = mysql.with_max_lag(max_lag).unwrap();
    }
    let spec = CheckSpec {
        probe: ProbeSpec::new(ProbeKind::Mysql(mysql), CHECK_TIMEOUT).unwrap(),
        params: HealthParams::default(),
    };
    let target = CheckTarget::new(address, PORT, Arc::new(spec)).unwrap();
    netns.run_inside(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let started = Instant::now();
        let result = runtime.block_on(probe::check(&target));
        assert!(
            started.elapsed() < CHECK_TIMEOUT + Duration::from_millis(500),
            "the check overran its timeout: {:?}",
            started.elapsed()
        );
        result
    })
}

/// Checks until `accept` takes the result, within [`PATIENCE`]; the last
/// result.
fn check_until(
    what: &str,
    accept: impl Fn(&CheckResult) -> bool,
    check: impl Fn() -> CheckResult,
) -> CheckResult {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let result = check();
        if accept(&result) {
            return result;
        }
        assert!(Instant::now() < deadline, "{what}: still {result:?}");
        thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn the_mysql_check_tells_primary_and_replica_apart_and_fails_with_its_reason() {
    assert_eq!(
        std::fs::metadata("/proc/self").expect("procfs").uid(),
        0,
        "the mysql netns test needs root (it creates a network namespace)"
    );
    let started = Instant::now();
    // Dropped in reverse order: the servers first, then the namespace, then
    // the directory.
    let root = TempDir::new();
    let netns = Netns::new();
    let primary_dir = Mariadb::install(&root.0, "primary");
    let replica_dir = Mariadb::install(&root.0, "replica");
    let mut primary = Mariadb::start(&netns, primary_dir, "primary", PRIMARY, 1, false);
    let replica = Mariadb::start(&netns, replica_dir, "replica", REPLICA, 2, true);
    create_check_user(&primary);
    create_check_user(&replica);
    primary.sql(
        "SET sql_log_bin = 0; \
         CREATE USER 'repl'@'%' IDENTIFIED BY 'repl-pw'; \
         GRANT REPLICATION SLAVE ON *.* TO 'repl'@'%';",
    );
    replica.sql(&format!(
        "CHANGE MASTER TO MASTER_HOST = '{PRIMARY}', MASTER_PORT = {PORT}, \
         MASTER_USER = 'repl', MASTER_PASSWORD = 'repl-pw', MASTER_USE_GTID = slave_pos; \
         START SLAVE;"
    ));
    // Something to replicate, so the replica has really applied events.
    primary.sql("CREATE DATABASE app; CREATE TABLE app.t (id INT PRIMARY KEY); INSERT INTO app.t VALUES (1);");

    let replica_check = |role, max_lag| check(&netns, REPLICA, CHECK_PASSWORD, role, max_lag);
    let replica_passes = |result: &CheckResult| matches!(result, CheckResult::Pass(_));
    let passed = check_until("the replica replicating", replica_passes, || {
        replica_check(ExpectRole::Replica, Some(Duration::from_secs(5)))
    });
    assert_eq!(
        passed,
        CheckResult::Pass(CheckPass::MysqlRole {
            role: ServerRole::Replica,
            lag: Some(0)
        })
    );
    assert_eq!(passed.to_string(), "role replica, lag 0s");
    assert_eq!(
        replica.sql("SELECT id FROM app.t").trim(),
        "1",
        "replicated"
    );

    // Roles.
    let primary_check = |role| check(&netns, PRIMARY, CHECK_PASSWORD, role, None);
    assert_eq!(
        primary_check(ExpectRole::Primary),
        CheckResult::Pass(CheckPass::MysqlRole {
            role: ServerRole::Primary,
            lag: None
        })
    );
    assert_eq!(
        primary_check(ExpectRole::Replica).to_string(),
        "role is primary, expected replica"
    );
    assert!(matches!(
        primary_check(ExpectRole::Any),
        CheckResult::Pass(_)
    ));
    assert_eq!(
        replica_check(ExpectRole::Primary, None).to_string(),
        "role is replica, expected primary"
    );
    assert!(matches!(
        replica_check(ExpectRole::Any, None),
        CheckResult::Pass(_)
    ));

    // A wrong password: the server's message, without the password.
    let wrong = check(&netns, PRIMARY, WRONG_PASSWORD, ExpectRole::Primary, None);
    let reason = wrong.to_string();
    assert!(
        matches!(wrong, CheckResult::Fail(CheckFailure::MysqlLogin(_))),
        "{wrong:?}"
    );
    assert!(
        reason.starts_with("login failed: Access denied for user 'lbcheck'"),
        "{reason}"
    );
    assert!(
        !reason.contains(WRONG_PASSWORD) && !reason.contains(CHECK_PASSWORD),
        "{reason}"
    );

    // Replication stopped, then only its IO thread running again.
    replica.sql("STOP SLAVE;");
    assert_eq!(
        replica_check(ExpectRole::Replica, None).to_string(),
        "replication stopped: IO thread No"
    );
    replica.sql("START SLAVE IO_THREAD;");
    let sql_stopped = check_until(
        "the IO thread running again",
        |result| result.to_string() == "replication stopped: SQL thread No",
        || replica_check(ExpectRole::Replica, None),
    );
    assert!(matches!(sql_stopped, CheckResult::Fail(_)));

    // The primary killed: nothing listens on its address any more.
    primary.kill();
    assert_eq!(
        primary_check(ExpectRole::Primary),
        CheckResult::Fail(CheckFailure::ConnectionRefused)
    );
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "took {:?}",
        started.elapsed()
    );
    drop(replica);
    drop(primary);
    let left = run("ip", &["netns", "pids", &netns.name]);
    assert!(
        left.trim().is_empty(),
        "processes left in the namespace: {left}"
    );
}
