//! Least privilege: after setup every thread of `lb run` holds only the
//! runtime set (CAP_NET_ADMIN on this kernel), with nothing inheritable or
//! ambient, the bounding set shrunk to it, and no_new_privs.
//!
//! - The drop function, in a child process with threads blocked in
//!   different ways: /proc shows the runtime set on every thread.
//! - The real `lb` binary (`$LB_BINARY`, else the one cargo built) started
//!   under `setpriv` with exactly the start set, in a namespace with a veth
//!   pair to a backend namespace: it attaches, serves the API, brings the
//!   backend up by health checks run after the drop, drains it over the API
//!   (a map write), becomes VRRP master and adds the VIP over netlink, runs
//!   its notify hook with at most the runtime set, and on SIGTERM removes the
//!   VIP, detaches and unpins. Without any one capability of the start set
//!   it does not start.
//!
//! Needs root (fails, never skips, without it). Every packet stays inside the
//! namespaces created here (`lbpriv-*`), which are deleted by name at the end,
//! on panic too, with every process started in them.

use std::fs::{self, File};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener};
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// CAP_NET_ADMIN: the runtime set on Linux 5.19 and later.
const RUNTIME_SET: u64 = 1 << 12;
/// What `lb run` needs to start, in `setpriv` spelling.
const START_SET: [&str; 5] = ["bpf", "perfmon", "net_admin", "net_raw", "setpcap"];
/// The same as a mask: CAP_BPF 39, CAP_PERFMON 38, CAP_NET_ADMIN 12,
/// CAP_NET_RAW 13, CAP_SETPCAP 8.
const START_MASK: u64 = 1 << 39 | 1 << 38 | 1 << 12 | 1 << 13 | 1 << 8;

const LB_NAMESPACE: &str = "lbpriv-lb";
const BACKEND_NAMESPACE: &str = "lbpriv-web";
const LB_INTERFACE: &str = "lbpriv0";
const BACKEND_INTERFACE: &str = "lbpriv1";
const LB_ADDRESS: Ipv4Addr = Ipv4Addr::new(10, 98, 0, 1);
const BACKEND_ADDRESS: Ipv4Addr = Ipv4Addr::new(10, 98, 0, 2);
const VIP: Ipv4Addr = Ipv4Addr::new(10, 98, 0, 100);
const BACKEND_PORT: u16 = 8080;
const API: &str = "127.0.0.1:9188";

const CHILD_ENV: &str = "LB_LEAST_PRIVILEGE_CHILD";

fn assert_root() {
    assert_eq!(
        fs::metadata("/proc/self").expect("procfs").uid(),
        0,
        "the least-privilege test needs root (it drops capabilities and creates network namespaces)"
    );
}

// ---- /proc -----------------------------------------------------------------

/// One thread's capability sets and no_new_privs, from its status file.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Privileges {
    inheritable: u64,
    permitted: u64,
    effective: u64,
    bounding: u64,
    ambient: u64,
    no_new_privs: bool,
}

impl Privileges {
    fn parse(status: &str) -> Privileges {
        let field = |name: &str| {
            status
                .lines()
                .find_map(|line| line.strip_prefix(&format!("{name}:")))
                .unwrap_or_else(|| panic!("no {name} in {status}"))
                .trim()
                .to_owned()
        };
        let mask = |name: &str| u64::from_str_radix(&field(name), 16).expect("hex mask");
        Privileges {
            inheritable: mask("CapInh"),
            permitted: mask("CapPrm"),
            effective: mask("CapEff"),
            bounding: mask("CapBnd"),
            ambient: mask("CapAmb"),
            no_new_privs: field("NoNewPrivs") == "1",
        }
    }

    /// Exactly `set` usable and nothing to regain.
    fn only(set: u64) -> Privileges {
        Privileges {
            inheritable: 0,
            permitted: set,
            effective: set,
            bounding: set,
            ambient: 0,
            no_new_privs: true,
        }
    }
}

/// Every thread of process `pid`: (tid, privileges).
fn threads_of(pid: &str) -> Vec<(String, Privileges)> {
    let tasks = format!("/proc/{pid}/task");
    let mut threads = Vec::new();
    for entry in fs::read_dir(&tasks).expect("task directory") {
        let entry = entry.expect("task entry");
        if let Ok(status) = fs::read_to_string(entry.path().join("status")) {
            let tid = entry.file_name().to_string_lossy().into_owned();
            threads.push((tid, Privileges::parse(&status)));
        }
    }
    threads
}

// ---- part 1: the drop function in a child process ---------------------------

#[test]
fn drop_leaves_every_thread_with_only_the_runtime_set() {
    if std::env::var_os(CHILD_ENV).is_some() {
        // This test binary re-run by the test below: the child's part.
        drop_in_a_child_process();
        return;
    }
    assert_root();
    let output = Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "--exact",
            "drop_leaves_every_thread_with_only_the_runtime_set",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, "1")
        .output()
        .expect("run the child");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "child failed: {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // libtest may print "test ... " in front of the first line.
    let report: Vec<&str> = stdout
        .lines()
        .filter_map(|line| Some(line.split_once("privilege ")?.1))
        .collect();
    let value = |key: &str| {
        report
            .iter()
            .find_map(|line| line.strip_prefix(&format!("{key} ")))
            .unwrap_or_else(|| panic!("no {key} in {stdout}"))
    };
    let before = Privileges::parse(&value("before").replace(';', "\n"));
    assert_eq!(
        before.permitted & START_MASK,
        START_MASK,
        "root starts with all"
    );
    assert_eq!(u64::from_str_radix(value("kept"), 16), Ok(RUNTIME_SET));
    let process = Privileges::parse(&value("process").replace(';', "\n"));
    assert_eq!(process, Privileges::only(RUNTIME_SET), "/proc/self/status");
    let threads: Vec<&&str> = report
        .iter()
        .filter(|line| line.starts_with("thread "))
        .collect();
    // The main thread, the test thread, four helpers, one started after.
    assert!(threads.len() >= 7, "{threads:?}");
    for line in threads {
        let (tid, status) = line["thread ".len()..].split_once(' ').expect("tid");
        let privileges = Privileges::parse(&status.replace(';', "\n"));
        assert_eq!(privileges, Privileges::only(RUNTIME_SET), "thread {tid}");
    }
}

/// The child of [`drop_leaves_every_thread_with_only_the_runtime_set`]:
/// threads busy in user space, asleep, blocked on a futex and in `read`,
/// then the drop, then one more thread, then a report on stdout.
fn drop_in_a_child_process() {
    assert_eq!(
        std::env::var(CHILD_ENV).as_deref(),
        Ok("1"),
        "only run as the child of drop_leaves_every_thread_with_only_the_runtime_set"
    );
    let status_line = |path: &str| fs::read_to_string(path).expect(path).replace('\n', ";");
    println!("privilege before {}", status_line("/proc/self/status"));

    let stop = Arc::new(AtomicBool::new(false));
    let mut helpers: Vec<JoinHandle<()>> = Vec::new();
    let spinning = Arc::clone(&stop);
    helpers.push(thread::spawn(move || {
        while !spinning.load(Ordering::Relaxed) {
            std::hint::spin_loop();
        }
    }));
    let sleeping = Arc::clone(&stop);
    helpers.push(thread::spawn(move || {
        while !sleeping.load(Ordering::Relaxed) {
            thread::sleep(Duration::from_millis(50));
        }
    }));
    let (wake, woken) = mpsc::channel::<()>();
    helpers.push(thread::spawn(move || {
        let _ = woken.recv();
    }));
    let (mut pipe_reader, mut pipe_writer) = std::io::pipe().expect("pipe");
    helpers.push(thread::spawn(move || {
        let mut byte = [0u8; 1];
        let _ = pipe_reader.read(&mut byte);
    }));
    thread::sleep(Duration::from_millis(100));

    let kept = lb::privilege::drop_to_runtime_set().expect("drop to the runtime set");
    println!("privilege kept {:x}", kept.bits());

    // A thread started after the drop inherits the dropped sets.
    let (started, running) = mpsc::channel();
    let (finish, finished) = mpsc::channel::<()>();
    let late = thread::spawn(move || {
        started.send(()).expect("report");
        let _ = finished.recv();
    });
    running.recv().expect("the late thread runs");
    println!("privilege process {}", status_line("/proc/self/status"));
    for entry in fs::read_dir("/proc/self/task").expect("tasks") {
        let entry = entry.expect("task");
        let status = status_line(&entry.path().join("status").to_string_lossy());
        println!(
            "privilege thread {} {status}",
            entry.file_name().to_string_lossy()
        );
    }

    stop.store(true, Ordering::Relaxed);
    let _ = wake.send(());
    pipe_writer.write_all(&[1]).expect("wake the reader");
    drop(finish);
    helpers.push(late);
    for helper in helpers {
        helper.join().expect("helper thread");
    }
}

// ---- part 2: the real lb ----------------------------------------------------

/// The `lb` binary under test.
fn lb_binary() -> PathBuf {
    std::env::var_os("LB_BINARY")
        .map_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_lb")), PathBuf::from)
}

/// Two namespaces joined by a veth pair (`lbpriv-lb` with `lb`, and
/// `lbpriv-web` with the backend), a private bpffs for the pins and a
/// directory for configs and hook output. Deleted on drop, with every
/// process still inside the namespaces.
struct Lab {
    dir: PathBuf,
    bpffs: PathBuf,
}

impl Lab {
    fn new() -> Lab {
        assert_root();
        for namespace in [LB_NAMESPACE, BACKEND_NAMESPACE] {
            // Left over by an earlier run that was killed.
            delete_namespace(namespace);
        }
        let dir = std::env::temp_dir().join(format!("lbpriv-{}", std::process::id()));
        fs::create_dir_all(&dir).expect("lab directory");
        let bpffs = dir.join("bpf");
        fs::create_dir_all(&bpffs).expect("bpffs mount point");
        // `ip netns exec` remounts /sys, so /sys/fs/bpf is no bpffs inside the
        // namespace; one mounted here, before `lb` starts, is seen there.
        run(Command::new("mount").args(["-t", "bpf", "bpf"]).arg(&bpffs));
        let lab = Lab { dir, bpffs };
        for namespace in [LB_NAMESPACE, BACKEND_NAMESPACE] {
            ip(&["netns", "add", namespace]);
            ip(&["-n", namespace, "link", "set", "lo", "up"]);
        }
        ip(&[
            "-n",
            LB_NAMESPACE,
            "link",
            "add",
            LB_INTERFACE,
            "type",
            "veth",
            "peer",
            "name",
            BACKEND_INTERFACE,
            "netns",
            BACKEND_NAMESPACE,
        ]);
        for (namespace, interface, address) in [
            (LB_NAMESPACE, LB_INTERFACE, LB_ADDRESS),
            (BACKEND_NAMESPACE, BACKEND_INTERFACE, BACKEND_ADDRESS),
        ] {
            let address = format!("{address}/24");
            ip(&["-n", namespace, "addr", "add", &address, "dev", interface]);
            ip(&["-n", namespace, "link", "set", interface, "up"]);
        }
        lab
    }

    /// Writes the config of run `name`: one service with one TCP-checked
    /// backend, a single-node VRRP instance whose master hook records its
    /// own privileges, pins in a directory of its own.
    fn config(&self, name: &str) -> PathBuf {
        let text = format!(
            r#"
[global]
interface = "{LB_INTERFACE}"
maglev_table_size = 13
flow_table_size = 1024
api = "{API}"
pin_dir = "{pin_dir}"

[[service]]
name = "web"
vip = "{VIP}"
port = 80
protocol = "tcp"

[service.health]
type = "tcp"
port = {BACKEND_PORT}
interval = "200ms"
timeout = "100ms"
rise = 1
fall = 1

[[service.backend]]
name = "web1"
address = "{BACKEND_ADDRESS}"

[vrrp]
vrid = 42
priority = 100
advert_interval = "1s"
virtual_addresses = ["{VIP}"]
notify_master = "cat /proc/self/status > {hook}"
"#,
            pin_dir = self.pin_dir(name).display(),
            hook = self.hook_status().display(),
        );
        let path = self.dir.join(format!("{name}.toml"));
        fs::write(&path, text).expect("write the config");
        path
    }

    fn pin_dir(&self, name: &str) -> PathBuf {
        self.bpffs.join(name)
    }

    /// Where the master hook leaves its /proc/self/status.
    fn hook_status(&self) -> PathBuf {
        self.dir.join("hook-status")
    }

    /// Removes the pins of run `name`, if it left any (releasing its program).
    fn remove_pins(&self, name: &str) {
        let dir = self.pin_dir(name);
        if let Ok(entries) = fs::read_dir(&dir) {
            for entry in entries.flatten() {
                let _ = fs::remove_file(entry.path());
            }
            let _ = fs::remove_dir(&dir);
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for namespace in [LB_NAMESPACE, BACKEND_NAMESPACE] {
            kill_processes_in(namespace);
            delete_namespace(namespace);
        }
        let _ = Command::new("umount").arg(&self.bpffs).status();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// Kills, by PID, every process still in `namespace` (all started here).
fn kill_processes_in(namespace: &str) {
    let Ok(output) = Command::new("ip")
        .args(["netns", "pids", namespace])
        .output()
    else {
        return;
    };
    for pid in String::from_utf8_lossy(&output.stdout).split_whitespace() {
        let _ = Command::new("kill").args(["-KILL", pid]).status();
    }
}

fn delete_namespace(namespace: &str) {
    let _ = Command::new("ip")
        .args(["netns", "del", namespace])
        .stderr(Stdio::null())
        .status();
}

fn run(command: &mut Command) -> String {
    let output = command.output().expect("run a command");
    assert!(
        output.status.success(),
        "{command:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("utf-8")
}

fn ip(args: &[&str]) -> String {
    run(Command::new("ip").args(args))
}

/// `setpriv` arguments that leave exactly `caps` (and uid 0) to what it runs.
fn setpriv(caps: &[&str]) -> Command {
    let bounding: Vec<String> = caps.iter().map(|cap| format!("+{cap}")).collect();
    let mut command = Command::new("setpriv");
    command.args([
        "--inh-caps=-all".to_owned(),
        "--ambient-caps=-all".to_owned(),
        format!("--bounding-set=-all,{}", bounding.join(",")),
        "--".to_owned(),
    ]);
    command
}

/// A running `lb run`, its log collected on a thread.
struct Lb {
    child: Child,
    log: mpsc::Receiver<String>,
    lines: Vec<String>,
}

impl Lb {
    /// Starts `lb run --config config` in the lb namespace under `setpriv`
    /// with exactly `caps`.
    fn start(config: &Path, caps: &[&str]) -> Lb {
        let setpriv = setpriv(caps);
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", LB_NAMESPACE])
            .arg(setpriv.get_program())
            .args(setpriv.get_args())
            .arg(lb_binary())
            .arg("run")
            .arg("--config")
            .arg(config)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = command.spawn().expect("start lb");
        let stderr = child.stderr.take().expect("stderr");
        let (sender, log) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        Lb {
            child,
            log,
            lines: Vec::new(),
        }
    }

    fn pid(&self) -> String {
        self.child.id().to_string()
    }

    /// Waits for "lb ready" (the documented readiness line); false if `lb`
    /// exited first or `timeout` passed.
    fn wait_ready(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.log.recv_timeout(left) {
                Ok(line) => {
                    let ready = line.contains("lb ready");
                    self.lines.push(line);
                    if ready {
                        return true;
                    }
                }
                Err(_) => return false,
            }
        }
        false
    }

    /// Waits up to `timeout` for `lb` to exit.
    fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().expect("wait for lb") {
                return Some(status);
            }
            thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// Everything it logged so far, for failure messages.
    fn log(&mut self) -> String {
        self.lines.extend(self.log.try_iter());
        self.lines.join("\n")
    }
}

impl Drop for Lb {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// `lb status --json` of the running `lb`, asked from inside its namespace.
fn status() -> serde_json::Value {
    let output = run(Command::new("ip")
        .args(["netns", "exec", LB_NAMESPACE])
        .arg(lb_binary())
        .args(["status", "--json", "--api", API]));
    serde_json::from_str(&output).expect("status JSON")
}

fn backend_field(status: &serde_json::Value, field: &str) -> String {
    status["services"][0]["backends"][0][field]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// Whether an XDP program is attached to the lb's interface, per `ip -j link`.
fn xdp_attached() -> bool {
    let output = ip(&[
        "-n",
        LB_NAMESPACE,
        "-j",
        "link",
        "show",
        "dev",
        LB_INTERFACE,
    ]);
    let links: serde_json::Value = serde_json::from_str(&output).expect("ip -j link");
    !links[0]["xdp"].is_null()
}

fn has_vip() -> bool {
    let output = ip(&[
        "-n",
        LB_NAMESPACE,
        "-4",
        "-o",
        "addr",
        "show",
        "dev",
        LB_INTERFACE,
    ]);
    output.contains(&format!("inet {VIP}/32"))
}

/// Polls `condition` every 20 ms for up to `timeout`.
fn wait_until(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if condition() {
            return true;
        }
        thread::sleep(Duration::from_millis(20));
    }
    condition()
}

/// Accepts TCP connections on the backend's address until `stop`, on a
/// thread inside the backend namespace.
fn start_backend(stop: Arc<AtomicBool>) -> JoinHandle<()> {
    let path = format!("/run/netns/{BACKEND_NAMESPACE}");
    thread::spawn(move || {
        let file = File::open(&path).expect("open the namespace");
        // SAFETY: setns only reads the descriptor, which `file` keeps open for
        // the call, and moves only this thread into the namespace.
        let result = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(
            result,
            0,
            "setns {path}: {}",
            std::io::Error::last_os_error()
        );
        let listener = TcpListener::bind(SocketAddrV4::new(BACKEND_ADDRESS, BACKEND_PORT))
            .expect("backend listens");
        listener.set_nonblocking(true).expect("non-blocking");
        while !stop.load(Ordering::Relaxed) {
            match listener.accept() {
                Ok((connection, _)) => drop(connection),
                Err(_) => thread::sleep(Duration::from_millis(10)),
            }
        }
    })
}

fn assert_only_runtime_set(pid: &str, log: &str) {
    let threads = threads_of(pid);
    assert!(threads.len() > 1, "lb runs threads: {threads:?}");
    for (tid, privileges) in threads {
        assert_eq!(
            privileges,
            Privileges::only(RUNTIME_SET),
            "thread {tid} of lb {pid}\n{log}"
        );
    }
}

#[test]
fn lb_starts_with_exactly_the_start_set_and_serves_with_only_the_runtime_set() {
    let lab = Lab::new();

    // What setpriv leaves to the program it runs: the start set, nothing more.
    let started_with = run(setpriv(&START_SET).args(["cat", "/proc/self/status"]));
    let started_with = Privileges::parse(&started_with);
    assert_eq!(
        (
            started_with.permitted,
            started_with.effective,
            started_with.bounding
        ),
        (START_MASK, START_MASK, START_MASK)
    );

    let mut lb = Lb::start(&lab.config("serve"), &START_SET);
    let ready = lb.wait_ready(Duration::from_secs(30));
    let pid = lb.pid();
    assert!(ready, "lb did not get ready:\n{}", lb.log());
    assert_only_runtime_set(&pid, &lb.log());
    assert!(xdp_attached(), "XDP program attached");
    // The backend is not listening yet: its checks fail.
    assert!(
        wait_until(Duration::from_secs(5), || backend_field(
            &status(),
            "health"
        ) == "down"),
        "{}",
        lb.log()
    );

    // Health checks bound to the interface (SO_BINDTODEVICE) after the drop.
    let stop_backend = Arc::new(AtomicBool::new(false));
    let backend = start_backend(Arc::clone(&stop_backend));
    assert!(
        wait_until(Duration::from_secs(10), || backend_field(
            &status(),
            "state"
        ) == "up"),
        "backend up by health checks:\n{}",
        lb.log()
    );
    // A map write through an open fd after the drop.
    run(Command::new("ip")
        .args(["netns", "exec", LB_NAMESPACE])
        .arg(lb_binary())
        .args(["backend", "drain", "web", "web1", "--api", API]));
    assert_eq!(backend_field(&status(), "state"), "draining");

    // VRRP master after three advert intervals: the VIP is added over
    // netlink, and the hook runs with at most the runtime set.
    assert!(
        wait_until(Duration::from_secs(15), has_vip),
        "VIP added:\n{}",
        lb.log()
    );
    assert!(
        wait_until(Duration::from_secs(5), || {
            fs::read_to_string(lab.hook_status()).is_ok_and(|status| status.contains("NoNewPrivs"))
        }),
        "master hook ran:\n{}",
        lb.log()
    );
    let hook = Privileges::parse(&fs::read_to_string(lab.hook_status()).expect("hook status"));
    assert_eq!(hook, Privileges::only(RUNTIME_SET), "the master hook");
    assert_only_runtime_set(&pid, &lb.log());

    // Shutdown after the drop: VIP removed, program detached, pins removed.
    run(Command::new("kill").args(["-TERM", &pid]));
    let exit = lb.wait_exit(Duration::from_secs(20));
    assert!(
        exit.is_some_and(|status| status.success()),
        "lb exits cleanly on SIGTERM ({exit:?}):\n{}",
        lb.log()
    );
    assert!(!has_vip(), "VIP removed at shutdown");
    assert!(!xdp_attached(), "XDP program detached at shutdown");
    assert!(!lab.pin_dir("serve").exists(), "pins removed at shutdown");
    stop_backend.store(true, Ordering::Relaxed);
    backend.join().expect("backend thread");

    // Each capability of the start set is needed: without it lb does not
    // start (or, without CAP_SETPCAP, stops at the drop).
    for missing in START_SET {
        let caps: Vec<&str> = START_SET
            .into_iter()
            .filter(|&cap| cap != missing)
            .collect();
        let name = format!("without-{missing}");
        let mut lb = Lb::start(&lab.config(&name), &caps);
        let exit = lb.wait_exit(Duration::from_secs(30));
        let log = lb.log();
        lab.remove_pins(&name);
        assert!(
            exit.is_some_and(|status| !status.success()),
            "lb without CAP_{} must not run ({exit:?}):\n{log}",
            missing.to_uppercase()
        );
        assert!(
            wait_until(Duration::from_secs(5), || !xdp_attached()),
            "nothing left attached without CAP_{}",
            missing.to_uppercase()
        );
    }
}
