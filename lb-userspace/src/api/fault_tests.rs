//! The API in front of the real controller (on fake maps, with real health
//! checks against stub servers on 127.0.0.1) when clients misbehave: a
//! flood of requests, clients that send slowly or never, and changes the
//! tables cannot take. The API keeps answering within a bound, the
//! controller keeps serving health events, and refused changes change
//! nothing.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::{self, Instant};

use super::server::{self, ApiLimits, ApiState};
use super::{ApiClient, ClientError};
use crate::config::{self, Config, HealthCheck};
use crate::controller::Controller;
use crate::dataplane::fake::{FakeCounters, FakeMaps};
use crate::dataplane::LoadOptions;
use crate::domain::{AdminAction, BackendState, ConfigStatus, ReloadCommands, SnapshotReceiver};
use crate::health::test_server::{Reply, StubServer};
use crate::health::{CheckSpec, HealthParams, HttpProbe, ProbeKind, ProbeSpec};
use crate::neighbour::{Interface, Neighbour};

const CHECK_INTERVAL: Duration = Duration::from_millis(100);
const CHECK_TIMEOUT: Duration = Duration::from_millis(300);

/// "web": web1, checked (rewritten to the stub on 127.0.0.1 below);
/// "api": web2 and web3, not checked (see below), the target of the admin
/// calls.
const CONFIG: &str = r#"
    [global]
    interface = "eth0"
    maglev_table_size = 13

    [[service]]
    name = "web"
    vip = "10.0.0.100"
    port = 80
    protocol = "tcp"
    [service.health]
    type = "http"
    path = "/health"

    [[service.backend]]
    name = "web1"
    address = "10.0.0.1"
    initial = "up"

    [[service]]
    name = "api"
    vip = "10.0.0.101"
    port = 80
    protocol = "tcp"

    [[service.backend]]
    name = "web2"
    address = "10.0.0.2"

    [[service.backend]]
    name = "web3"
    address = "10.0.0.3"
"#;

/// A running controller and its API.
struct Node {
    api: ApiClient,
    address: SocketAddr,
    snapshot: SnapshotReceiver,
    stop: oneshot::Sender<()>,
    controller: JoinHandle<(Controller<FakeMaps>, ())>,
}

impl Node {
    /// [`CONFIG`] with web1 checked at `health` (fall = rise = 1), served
    /// within `limits`.
    async fn start(health: &StubServer, limits: ApiLimits) -> Node {
        let mut config: Config = config::parse(CONFIG, "test.toml").unwrap();
        let web = &mut config.services[0];
        web.backends[0].address = Ipv4Addr::LOCALHOST;
        let probe = ProbeKind::Http(HttpProbe::new("/health").unwrap());
        web.health = Some(HealthCheck {
            spec: Arc::new(CheckSpec {
                probe: ProbeSpec::new(probe, CHECK_TIMEOUT).unwrap(),
                params: HealthParams::new(CHECK_INTERVAL, 1, 1).unwrap(),
            }),
            port: Some(health.port()),
            observe: None,
        });
        // TCP services are checked by default: "api" must not be, so that
        // no probe leaves for its (unreachable) 10.0.0.x backends.
        config.services[1].health = None;
        assert!(
            crate::controller::check_targets(&config)
                .iter()
                .all(|desired| desired.target.address().is_loopback()),
            "every probe stays on 127.0.0.1"
        );
        let neighbours: HashMap<Ipv4Addr, Neighbour> = [
            Ipv4Addr::LOCALHOST,
            Ipv4Addr::new(10, 0, 0, 2),
            Ipv4Addr::new(10, 0, 0, 3),
        ]
        .into_iter()
        .map(|address| {
            let neighbour = Neighbour {
                interface: Interface {
                    index: 7,
                    name: "eth1".into(),
                    mac: [0x02, 0, 0, 0, 0, 0xff],
                },
                mac: [0x02, 0, 0, 0, 0, address.octets()[3]],
            };
            (address, neighbour)
        })
        .collect();
        let maps = FakeMaps::new(&LoadOptions {
            table_size: 13,
            max_services: 4,
            max_backends: 8,
            ..LoadOptions::default()
        });
        let controller = Controller::start(&config, neighbours, maps).unwrap();
        let snapshot = controller.subscribe();
        let state = ApiState {
            snapshot: controller.subscribe(),
            admin: controller.admin_commands(),
            // No reloads in these tests: nothing serves them.
            reload: ReloadCommands::new(mpsc::channel(1).0),
            config: watch::channel(ConfigStatus {
                hash: "0000000000000000".into(),
                applied_at: SystemTime::UNIX_EPOCH,
                reloads_ok: 0,
                reloads_failed: 0,
                last_error: None,
            })
            .1,
            counters: Arc::new(FakeCounters::default()),
            flows: crate::flows::census_channel().1,
            vrrp: None,
            unknown_results: controller.unknown_results(),
            hook_failures: crate::hooks::HookFailures::default(),
            bgp: None,
        };
        let (stop, stopped) = oneshot::channel::<()>();
        let controller = tokio::spawn(controller.run(async {
            let _ = stopped.await;
        }));
        let listener = server::listen("127.0.0.1:0".parse().unwrap(), &limits).unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(server::serve(
            listener,
            state,
            limits,
            std::future::pending(),
        ));
        Node {
            api: ApiClient::new(address),
            address,
            snapshot,
            stop,
            controller,
        }
    }

    /// web1's state as `GET /status` reports it.
    async fn web1(&self) -> BackendState {
        let report = self.api.status().await.unwrap();
        report.backend("web", "web1").unwrap().state
    }

    async fn stop(self) -> Controller<FakeMaps> {
        self.stop.send(()).unwrap();
        self.controller.await.unwrap().0
    }
}

/// Runs `request` and returns how long it took.
async fn timed<T>(request: impl std::future::Future<Output = T>) -> (T, Duration) {
    let started = Instant::now();
    let result = request.await;
    (result, started.elapsed())
}

/// 1,000 concurrent `GET /status` and 100 weight changes (the netns test
/// floods the real binary with twice as many): a normal request is
/// answered within a bound, every flooding request is answered, and a
/// backend failing its check meanwhile is taken out as fast as without the
/// flood.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_requests_leaves_the_api_and_the_controller_serving() {
    let health = StubServer::start(Reply::http(200, "ok")).await;
    let node = Node::start(&health, ApiLimits::default()).await;
    assert_eq!(node.web1().await, BackendState::Up);

    let mut flood = Vec::new();
    for i in 0..1_100u32 {
        let api = node.api;
        flood.push(tokio::spawn(async move {
            if i % 11 == 0 {
                let weight = 1 + i % 2;
                api.backend("api", "web2", AdminAction::Weight(weight))
                    .await
                    .map(|_| ())
            } else {
                api.status().await.map(|_| ())
            }
        }));
    }
    // While the flood is on: one normal request, and web1's checks fail.
    let (report, took) = timed(node.api.status()).await;
    report.unwrap();
    // Well under a second in a release build; seconds in a debug one
    // beside the other tests on two busy cores.
    assert!(took < Duration::from_secs(5), "GET /status took {took:?}");
    health.set_reply(Reply::http(503, "down"));
    // The controller's publication, which the API and tracking read.
    let mut snapshot = node.snapshot.clone();
    let (published, took) = timed(
        snapshot.wait_for(|snapshot| snapshot.services[0].backends[0].state == BackendState::Down),
    )
    .await;
    published.unwrap();
    // One interval to the next check, its answer, a publication.
    assert!(
        took < Duration::from_secs(2),
        "web1 went down after {took:?}"
    );

    let mut failed = Vec::new();
    for request in flood {
        if let Err(error) = request.await.unwrap() {
            failed.push(error.to_string());
        }
    }
    assert!(
        failed.is_empty(),
        "{} failed, e.g. {}",
        failed.len(),
        failed[0]
    );
    assert_eq!(node.web1().await, BackendState::Down);
    let controller = node.stop().await;
    let web = &controller.layout().services[0];
    let (_, slots) = controller.maps().live_table(&web.key()).unwrap();
    assert!(slots.is_empty(), "web1 is still in the table: {slots:?}");
}

/// More clients than the connection cap that open a connection and never
/// send, or send a byte every 100 ms: each is closed by the header read
/// timeout, and a normal request is answered once the first ones are.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_are_cut_off_and_a_normal_request_still_answered() {
    let limits = ApiLimits {
        max_connections: 32,
        header_read_timeout: Duration::from_millis(500),
        ..ApiLimits::default()
    };
    let health = StubServer::start(Reply::http(200, "ok")).await;
    let node = Node::start(&health, limits).await;
    let started = Instant::now();
    let mut slow = Vec::new();
    for i in 0..48 {
        let mut stream = TcpStream::connect(node.address).await.unwrap();
        slow.push(tokio::spawn(async move {
            if i % 2 == 0 {
                // Opens and never sends; waits for the server to close.
                let mut buffer = [0; 64];
                while matches!(stream.read(&mut buffer).await, Ok(n) if n > 0) {}
            } else {
                // One byte every 100 ms of a head that would take 4 s.
                for byte in b"GET /status HTTP/1.1\r\nHost: x\r\n\r\n".iter().cycle() {
                    if stream.write_all(&[*byte]).await.is_err() {
                        break;
                    }
                    time::sleep(Duration::from_millis(100)).await;
                }
            }
            started.elapsed()
        }));
    }
    // 48 slow clients, 32 served: 16 and this one wait for the first
    // timeouts, after 500 ms.
    let (report, took) = timed(node.api.status()).await;
    report.unwrap();
    assert!(
        took < limits.header_read_timeout * 3,
        "GET /status took {took:?}"
    );
    for client in slow {
        let cut_after = time::timeout(Duration::from_secs(5), client)
            .await
            .expect("the server closes every slow connection")
            .unwrap();
        // Accepted at once or after the first 500 ms, then 500 ms more.
        assert!(
            cut_after < limits.header_read_timeout * 4,
            "a slow client lasted {cut_after:?}"
        );
    }
    node.stop().await;
}

/// A request whose body never arrives is answered 408 after the request
/// timeout, and a body or a head over its limit is refused, all without
/// reaching the controller.
#[tokio::test]
async fn a_body_that_never_arrives_or_is_too_large_is_refused() {
    let limits = ApiLimits {
        request_timeout: Duration::from_millis(300),
        ..ApiLimits::default()
    };
    let health = StubServer::start(Reply::http(200, "ok")).await;
    let node = Node::start(&health, limits).await;
    let address = node.address;
    let answer = |head: String| async move {
        let mut stream = TcpStream::connect(address).await.unwrap();
        stream.write_all(head.as_bytes()).await.unwrap();
        let mut answer = Vec::new();
        let _ = time::timeout(Duration::from_secs(3), stream.read_to_end(&mut answer)).await;
        String::from_utf8_lossy(&answer).into_owned()
    };
    let weight = |length: usize, body: &str| {
        format!(
            "PUT /services/api/backends/web2/weight HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {length}\r\nConnection: close\r\n\r\n{body}",
            address
        )
    };
    let (slow, took) = timed(answer(weight(15, "{\"wei"))).await;
    assert!(slow.starts_with("HTTP/1.1 408 "), "{slow}");
    assert!(took < Duration::from_secs(2), "{took:?}");
    let large = format!("{{\"weight\": 2, \"pad\": \"{}\"}}", "x".repeat(2_000));
    let refused = answer(weight(large.len(), &large)).await;
    assert!(refused.starts_with("HTTP/1.1 413 "), "{refused}");
    let huge_head = format!(
        "GET /status HTTP/1.1\r\nHost: {address}\r\nX-Pad: {}\r\nConnection: close\r\n\r\n",
        "x".repeat(10_000)
    );
    let refused = answer(huge_head).await;
    assert!(refused.starts_with("HTTP/1.1 431 "), "{refused}");
    let report = node.api.status().await.unwrap();
    assert_eq!(report.backend("api", "web2").unwrap().weight, 1);
    node.stop().await;
}

/// A weight that would starve a backend under Maglev is refused with 409
/// and the reason; `/status` and the maps stay as they were.
#[tokio::test]
async fn a_weight_that_does_not_fit_is_refused_over_the_api_and_changes_nothing() {
    let health = StubServer::start(Reply::http(200, "ok")).await;
    let node = Node::start(&health, ApiLimits::default()).await;
    let before = node.api.status().await.unwrap();
    let error = node
        .api
        .backend("api", "web2", AdminAction::Weight(100))
        .await
        .unwrap_err();
    let ClientError::Refused(reason) = &error else {
        panic!("{error:?}");
    };
    assert!(
        reason.starts_with(
            "service \"api\": global.maglev_table_size = 13 is too small for these weights under Maglev"
        ),
        "{reason}"
    );
    let after = node.api.status().await.unwrap();
    assert_eq!(
        before.backend("api", "web2").unwrap().weight,
        after.backend("api", "web2").unwrap().weight
    );
    assert_eq!(after.backend("api", "web2").unwrap().weight, 1);
    let controller = node.stop().await;
    let api = &controller.layout().services[1];
    let (_, slots) = controller.maps().live_table(&api.key()).unwrap();
    let web2 = api.backends[0].id;
    let share = slots.iter().filter(|&&id| id == web2).count();
    // Weights 1 and 1 in 13 slots.
    assert!(share == 6 || share == 7, "{slots:?}");
}
