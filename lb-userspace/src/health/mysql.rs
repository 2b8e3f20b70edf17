//! The `mysql` check: a login to the MySQL/MariaDB server on the backend,
//! then its role. Primary: `@@global.read_only = 0`. Replica: `read_only =
//! 1` and replication running, by `SHOW REPLICA STATUS` (MariaDB 10.5+,
//! MySQL 8.0.22+; `SHOW SLAVE STATUS` on servers without it): both threads
//! `Yes`, and `Seconds_Behind_Master` within `max_lag` when set (NULL, an
//! unknown lag, fails). The whole exchange, connect to disconnect, is
//! bounded by the check's timeout.
//!
//! The client is `mysql_async` (pure Rust, on tokio, no TLS built in). It
//! has no way to bind its socket, so this check connects from the address
//! and interface the kernel's routes choose, not `health_source` and
//! `health_interface`. A connect that fails before leaving this node
//! (`ENETUNREACH`, ...) is this node's fault, as for the TCP and HTTP
//! checks ([`super::result::is_local_fault`]).
//!
//! Failure reasons never hold the password: the server's messages name
//! the user and host only, and the password is only handed to the client.

use std::time::Duration;

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Error, IoError, OptsBuilder, Row};
use tokio::time::{self, Instant};

use super::result::{is_local_fault, CheckFailure, CheckPass, CheckResult, LocalFault, ServerRole};
use super::spec::{CheckTarget, ExpectRole, MysqlProbe};

/// Characters of a server or client message kept in a reason.
const MAX_MESSAGE_CHARS: usize = 200;

/// Checks the server of `target` as `mysql` says; the result arrives
/// within `timeout`.
pub(super) async fn check(
    mysql: &MysqlProbe,
    target: &CheckTarget,
    timeout: Duration,
) -> CheckResult {
    let deadline = Instant::now() + timeout;
    let opts = OptsBuilder::default()
        .ip_or_hostname(target.address().to_string())
        .tcp_port(target.port())
        .user(Some(mysql.user()))
        .pass(Some(mysql.password().expose()))
        .db_name(mysql.database())
        // Never switch to a local socket, which a server on this node
        // would otherwise offer.
        .prefer_socket(false)
        .stmt_cache_size(0);
    let exchange = async {
        let mut conn = Conn::new(opts).await.map_err(login_failure)?;
        let verdict = role_check(&mut conn, mysql).await;
        // A clean goodbye; the verdict stands whatever it says.
        let _ = conn.disconnect().await;
        verdict
    };
    match time::timeout_at(deadline, exchange).await {
        Err(_) => CheckResult::Fail(CheckFailure::MysqlTimeout(timeout)),
        Ok(Ok(pass)) => CheckResult::Pass(pass),
        Ok(Err(result)) => result,
    }
}

/// The role of the server behind `conn`, judged against `mysql`'s expectation.
async fn role_check(conn: &mut Conn, mysql: &MysqlProbe) -> Result<CheckPass, CheckResult> {
    let read_only = query_first(conn, "SELECT @@global.read_only").await?;
    let role = match read_only.as_ref().and_then(|row| column(row, 0)) {
        Some(text) if text == "0" => ServerRole::Primary,
        Some(text) if text == "1" => ServerRole::Replica,
        other => {
            return Err(failed(CheckFailure::Mysql(format!(
                "unexpected @@global.read_only: {}",
                short(other.as_deref().unwrap_or("NULL"))
            ))))
        }
    };
    let expected = mysql.expect_role();
    match (expected, role) {
        (ExpectRole::Any, role) | (ExpectRole::Primary, role @ ServerRole::Primary) => {
            Ok(CheckPass::MysqlRole { role, lag: None })
        }
        (ExpectRole::Primary, role) | (ExpectRole::Replica, role @ ServerRole::Primary) => {
            Err(failed(CheckFailure::Role { role, expected }))
        }
        (ExpectRole::Replica, ServerRole::Replica) => {
            let lag = replication_lag(conn, mysql.max_lag()).await?;
            Ok(CheckPass::MysqlRole {
                role: ServerRole::Replica,
                lag,
            })
        }
    }
}

/// Whether replication runs within `max_lag`: the lag in seconds if the
/// server reports one.
async fn replication_lag(
    conn: &mut Conn,
    max_lag: Option<Duration>,
) -> Result<Option<u64>, CheckResult> {
    let status = match conn.query_first::<Row, _>("SHOW REPLICA STATUS").await {
        Ok(status) => status,
        // A server older than the statement (a syntax error); any other
        // error shows again below.
        Err(Error::Server(_)) => query_first(conn, "SHOW SLAVE STATUS").await?,
        Err(error) => return Err(query_failure(error)),
    };
    let Some(status) = status else {
        return Err(failed(CheckFailure::NotReplicating));
    };
    // MariaDB keeps the old column names; MySQL 8.0.22+ renamed them.
    for (thread, names) in [
        ("IO", ["Slave_IO_Running", "Replica_IO_Running"]),
        ("SQL", ["Slave_SQL_Running", "Replica_SQL_Running"]),
    ] {
        let state = names.iter().find_map(|name| named(&status, name));
        if state.as_deref() != Some("Yes") {
            return Err(failed(CheckFailure::ReplicationStopped {
                thread,
                state: short(state.as_deref().unwrap_or("NULL")),
            }));
        }
    }
    let lag = ["Seconds_Behind_Master", "Seconds_Behind_Source"]
        .iter()
        .find_map(|name| named(&status, name))
        .and_then(|text| text.parse::<u64>().ok());
    match (lag, max_lag) {
        (None, Some(_)) => Err(failed(CheckFailure::LagUnknown)),
        (Some(lag), Some(max)) if lag > max.as_secs() => {
            Err(failed(CheckFailure::Lag { lag, max }))
        }
        (lag, _) => Ok(lag),
    }
}

/// The first row `query` returns, if any.
async fn query_first(conn: &mut Conn, query: &str) -> Result<Option<Row>, CheckResult> {
    conn.query_first::<Row, _>(query)
        .await
        .map_err(query_failure)
}

/// Column `index` of `row` as text; `None` for NULL or a value that is not text.
fn column(row: &Row, index: usize) -> Option<String> {
    row.get_opt::<Option<String>, _>(index)?.ok().flatten()
}

/// The column named `name` of `row` as text, if it has one and it is not NULL.
fn named(row: &Row, name: &str) -> Option<String> {
    let index = row
        .columns_ref()
        .iter()
        .position(|column| column.name_str() == name)?;
    column(row, index)
}

fn failed(failure: CheckFailure) -> CheckResult {
    CheckResult::Fail(failure)
}

/// What an error while connecting and logging in says about the backend.
fn login_failure(error: Error) -> CheckResult {
    match error {
        Error::Io(IoError::Io(error)) => {
            if error.kind() == std::io::ErrorKind::ConnectionRefused {
                failed(CheckFailure::ConnectionRefused)
            } else if is_local_fault(&error) {
                CheckResult::Unknown(LocalFault::Unreachable(error.to_string()))
            } else {
                failed(CheckFailure::Connect(error.to_string()))
            }
        }
        Error::Server(error) => failed(CheckFailure::MysqlLogin(short(&error.message))),
        other => failed(CheckFailure::Mysql(short(&other.to_string()))),
    }
}

/// What an error after the login says.
fn query_failure(error: Error) -> CheckResult {
    match error {
        Error::Server(error) => failed(CheckFailure::Mysql(short(&format!(
            "query failed: {}",
            error.message
        )))),
        other => failed(CheckFailure::Mysql(short(&other.to_string()))),
    }
}

/// `text` cut to [`MAX_MESSAGE_CHARS`] characters (then `…`), control
/// characters replaced.
fn short(text: &str) -> String {
    let mut kept: String = text
        .chars()
        .take(MAX_MESSAGE_CHARS)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if text.chars().count() > MAX_MESSAGE_CHARS {
        kept.push('…');
    }
    kept
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;
    use std::sync::Arc;

    use tokio::net::TcpListener;

    use super::super::spec::{CheckSpec, HealthParams, Password, ProbeKind, ProbeSpec};
    use super::super::test_server::{Reply, StubServer};
    use super::*;

    const TIMEOUT: Duration = Duration::from_millis(300);

    fn probe() -> MysqlProbe {
        MysqlProbe::new("lbcheck", Password::new("s3cret-pw".to_owned()).unwrap()).unwrap()
    }

    fn target(port: u16) -> CheckTarget {
        let spec = CheckSpec {
            probe: ProbeSpec::new(ProbeKind::Mysql(probe()), TIMEOUT).unwrap(),
            params: HealthParams::default(),
        };
        CheckTarget::new(Ipv4Addr::LOCALHOST, port, Arc::new(spec)).unwrap()
    }

    #[tokio::test]
    async fn a_refused_connection_fails_like_a_tcp_check() {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let result = check(&probe(), &target(port), TIMEOUT).await;
        assert_eq!(result, CheckResult::Fail(CheckFailure::ConnectionRefused));
    }

    #[tokio::test]
    async fn a_server_that_never_greets_times_out() {
        let server = StubServer::start(Reply::Silent).await;
        let started = Instant::now();
        let result = check(&probe(), &target(server.port()), TIMEOUT).await;
        assert_eq!(
            result,
            CheckResult::Fail(CheckFailure::MysqlTimeout(TIMEOUT))
        );
        assert_eq!(result.to_string(), "MySQL check timeout after 300ms");
        assert!(started.elapsed() < TIMEOUT * 3, "{:?}", started.elapsed());
    }

    #[tokio::test]
    async fn a_server_that_is_not_mysql_fails_without_the_password() {
        let server = StubServer::start(Reply::http(200, "ok")).await;
        let result = check(&probe(), &target(server.port()), TIMEOUT).await;
        assert!(matches!(result, CheckResult::Fail(_)), "{result:?}");
        assert!(!result.to_string().contains("s3cret-pw"), "{result}");
    }

    #[test]
    fn messages_are_shortened() {
        assert_eq!(short("Access denied\nfor"), "Access denied for");
        let long = "x".repeat(300);
        assert_eq!(short(&long).chars().count(), MAX_MESSAGE_CHARS + 1);
    }
}
