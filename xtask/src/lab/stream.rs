//! Traffic from the client that runs in the background while a test changes
//! the lab: a stream of requests, each on a new connection (one after the
//! other, or started at a steady rate from several client addresses), and a
//! keep-alive client that holds one connection and sends a request over it
//! at a fixed rate. All log every reply with what the test needs to judge it.

use std::fmt;
use std::fs;
use std::net::Ipv4Addr;
use std::path::Path;
use std::thread::sleep;
use std::time::{Duration, Instant, SystemTime};

use super::http::Target;
use super::process::NsProcess;
use super::topology::Node;
use super::{Lab, LabError};

/// Per-request time limit of the stream, in seconds.
pub const STREAM_REQUEST_TIMEOUT_SECS: u32 = 1;

/// How long a connection of a steady stream may take to connect, in
/// seconds: long enough for the client's first SYN retransmission (after
/// 1 s) and its second (after 3 s) to count, as a real client's would.
pub const STEADY_CONNECT_TIMEOUT_SECS: u32 = 3;

/// Per-request time limit of a steady stream (connect, request, response),
/// in seconds.
pub const STEADY_REQUEST_TIMEOUT_SECS: u32 = 5;

/// How long past its last request's timeout a stream may take to exit.
const FINISH_SLACK: Duration = Duration::from_secs(2);

/// Marks curl's per-request line (after the body) in both logs. Not `@`:
/// curl reads a `-w` format starting with `@` from a file.
const REPLY_MARKER: &str = "#reply";

/// curl's `-w` for one request of a stream: after the body, the marker,
/// then the status, exit code, total time and time to connect.
const REPLY_FORMAT: &str = "%{http_code} %{exitcode} %{time_total} %{time_connect}";

/// `sh -c SCRIPT sh URL MILLISECONDS [CURL_OPTION...]`: one curl per
/// request (with the options), new connection each, for `MILLISECONDS`;
/// one line per request: wall-clock start (Unix seconds), then the body and
/// curl's [`REPLY_FORMAT`].
fn stream_script() -> String {
    format!(
        r#"now_ms() {{ echo $(( $(date +%s%N) / 1000000 )); }}
url=$1; end=$(( $(now_ms) + $2 )); shift 2
while [ "$(now_ms)" -lt "$end" ]; do
    start=$(date +%s.%N)
    reply=$(curl -s --max-time {STREAM_REQUEST_TIMEOUT_SECS} "$@" -w ' {REPLY_MARKER} {REPLY_FORMAT}' "$url" | tr -d '\n')
    echo "$start $reply"
    sleep 0.05
done"#
    )
}

/// `sh -c SCRIPT sh URL PERIOD_US COUNT ADDRESS...`: `COUNT` curls, the
/// `i`-th started `i × PERIOD_US` microseconds after the first whatever
/// the earlier ones are doing (each runs in the background), from the
/// addresses in turn (`--interface`); then waits for all. One line per
/// request, as [`stream_script`]'s with the source address last; each is
/// one `echo`, one write, so concurrent requests do not mix their lines.
fn steady_script() -> String {
    format!(
        r#"url=$1; period_us=$2; count=$3; shift 3
first_us=$(( $(date +%s%N) / 1000 ))
i=0
while [ "$i" -lt "$count" ]; do
    k=$(( i % $# + 1 ))
    eval "source=\${{$k}}"
    wait_us=$(( first_us + i * period_us - $(date +%s%N) / 1000 ))
    if [ "$wait_us" -gt 0 ]; then
        sleep "$(( wait_us / 1000000 )).$(printf '%06d' $(( wait_us % 1000000 )))"
    fi
    (
        start=$(date +%s.%N)
        reply=$(curl -s --interface "$source" --connect-timeout {STEADY_CONNECT_TIMEOUT_SECS} --max-time {STEADY_REQUEST_TIMEOUT_SECS} -w ' {REPLY_MARKER} {REPLY_FORMAT}' "$url" | tr -d '\n')
        echo "$start $reply $source"
    ) &
    i=$(( i + 1 ))
done
wait"#
    )
}

/// One request of a [`RequestStream`].
#[derive(Clone, Debug, PartialEq)]
pub struct StreamReply {
    /// When the request started.
    pub at: SystemTime,
    /// The body (the answering web server's name), empty on failure.
    pub body: String,
    /// HTTP status; 0 when no response came.
    pub status: u16,
    /// curl's exit code: 0 success, 7 connection refused, 28 timeout.
    pub curl_exit: u32,
    /// How long the request took.
    pub took: Duration,
    /// How long the TCP handshake took (curl's `time_connect`); zero when
    /// it never completed.
    pub connect: Duration,
    /// The client address the request was sent from, when the stream chose
    /// it (a steady stream); `None`: the client's own, chosen by the kernel.
    pub source: Option<Ipv4Addr>,
}

impl StreamReply {
    /// Whether the request got `200 OK`.
    pub fn is_ok(&self) -> bool {
        self.status == 200
    }

    /// Why the request got no `200 OK`; `None` if it did.
    pub fn failure(&self) -> Option<Failure> {
        if self.is_ok() {
            return None;
        }
        Some(match self.curl_exit {
            0 => Failure::Status(self.status),
            7 => Failure::Refused,
            28 if self.connect.is_zero() => Failure::ConnectTimeout,
            28 => Failure::ResponseTimeout,
            35 | 52 | 55 | 56 => Failure::Reset,
            other => Failure::Other(other),
        })
    }
}

/// Why a request of a stream failed, from curl's exit code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Failure {
    /// Could not connect (exit 7): an RST answered the SYN.
    Refused,
    /// The handshake did not complete within the connect timeout (exit 28
    /// before connecting).
    ConnectTimeout,
    /// Connected, but the response did not come in time (exit 28).
    ResponseTimeout,
    /// The connection was closed or reset under the request (exit 52, 55
    /// or 56; 35 over HTTPS, where a reset during the TLS handshake is
    /// reported as a failed handshake).
    Reset,
    /// A response other than `200 OK`.
    Status(u16),
    /// Another curl exit code.
    Other(u32),
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Refused => f.write_str("refused"),
            Failure::ConnectTimeout => f.write_str("connect timeout"),
            Failure::ResponseTimeout => f.write_str("response timeout"),
            Failure::Reset => f.write_str("reset"),
            Failure::Status(status) => write!(f, "HTTP {status}"),
            Failure::Other(exit) => write!(f, "curl exit {exit}"),
        }
    }
}

/// A stream of requests from the client, one new connection each, for a
/// bounded time: one after the other (about 15 per second), or at a steady
/// rate from several client addresses ([`RequestStream::start_steady`]).
#[derive(Debug)]
pub struct RequestStream {
    process: NsProcess,
    /// When the last request has ended, at the latest.
    last_ends_by: Instant,
}

impl RequestStream {
    /// Starts requesting `target` from the client for `duration`, logging
    /// to `log_name` in the lab's run directory.
    pub fn start(
        lab: &Lab,
        target: &Target,
        duration: Duration,
        log_name: &str,
    ) -> Result<Self, LabError> {
        let mut command = lab.command(Node::Client, "sh");
        command
            .args(["-c", &stream_script(), "sh", &target.url])
            .arg(duration.as_millis().to_string())
            .args(&target.curl_options);
        let process = lab.spawn("request stream", &mut command, log_name)?;
        Ok(RequestStream {
            process,
            last_ends_by: Instant::now()
                + duration
                + Duration::from_secs(u64::from(STREAM_REQUEST_TIMEOUT_SECS)),
        })
    }

    /// Starts `per_second` new connections a second to `url` for
    /// `duration`, at a steady rate however long each takes, each from the
    /// next of `sources` in turn (addresses the client holds), each allowed
    /// [`STEADY_CONNECT_TIMEOUT_SECS`] to connect and
    /// [`STEADY_REQUEST_TIMEOUT_SECS`] in all; logs to `log_name` in the
    /// lab's run directory.
    ///
    /// # Panics
    /// If `sources` is empty or `per_second` is zero.
    pub fn start_steady(
        lab: &Lab,
        url: &str,
        per_second: u32,
        duration: Duration,
        sources: &[Ipv4Addr],
        log_name: &str,
    ) -> Result<Self, LabError> {
        assert!(
            !sources.is_empty() && per_second > 0,
            "a steady stream needs a rate and addresses"
        );
        let period_us = 1_000_000 / u64::from(per_second);
        let count = duration.as_micros() / u128::from(period_us);
        let mut command = lab.command(Node::Client, "sh");
        command
            .args(["-c", &steady_script(), "sh", url])
            .args([period_us.to_string(), count.to_string()])
            .args(sources.iter().map(Ipv4Addr::to_string));
        let process = lab.spawn("steady request stream", &mut command, log_name)?;
        Ok(RequestStream {
            process,
            last_ends_by: Instant::now()
                + duration
                + Duration::from_secs(u64::from(STEADY_REQUEST_TIMEOUT_SECS)),
        })
    }

    /// The replies logged so far.
    pub fn replies(&self) -> Vec<StreamReply> {
        parse_stream(&read_log(self.process.log_path()))
    }

    /// Waits for the stream to end by itself (its last request completes
    /// within the request timeout) and returns every reply. A stream still
    /// running well past its end is stopped.
    pub fn finish(mut self) -> Vec<StreamReply> {
        let deadline = self.last_ends_by + FINISH_SLACK;
        while matches!(self.process.try_exit_status(), Ok(None)) && Instant::now() < deadline {
            sleep(Duration::from_millis(50));
        }
        let log = self.process.log_path().to_owned();
        // Reaps it, or stops it if it overran.
        let _ = self.process.stop();
        parse_stream(&read_log(&log))
    }
}

fn read_log(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_default()
}

/// Parses [`stream_script`]'s and [`steady_script`]'s lines; a line cut
/// short (the stream was stopped while writing it) is skipped.
fn parse_stream(log: &str) -> Vec<StreamReply> {
    log.lines().filter_map(parse_stream_line).collect()
}

fn parse_stream_line(line: &str) -> Option<StreamReply> {
    let (start, rest) = line.split_once(' ')?;
    let (body, result) = rest.rsplit_once(REPLY_MARKER)?;
    let mut fields = result.split_whitespace();
    let status = fields.next()?.parse().ok()?;
    let curl_exit = fields.next()?.parse().ok()?;
    let took = Duration::from_secs_f64(fields.next()?.parse().ok()?);
    let connect = Duration::from_secs_f64(fields.next()?.parse().ok()?);
    let source = match fields.next() {
        Some(address) => Some(address.parse().ok()?),
        None => None,
    };
    let at = SystemTime::UNIX_EPOCH + Duration::from_secs_f64(start.parse().ok()?);
    Some(StreamReply {
        at,
        body: body.trim().to_owned(),
        status,
        curl_exit,
        took,
        connect,
        source,
    })
}

/// One request of a [`KeepAliveClient`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeepAliveReply {
    /// The body (the answering web server's name), empty on failure.
    pub body: String,
    /// HTTP status; 0 when no response came.
    pub status: u16,
    /// The client's port: the same for every request of one connection.
    pub local_port: u16,
    /// Whether curl had to open a new connection for this request.
    pub new_connection: bool,
}

/// One curl that sends `requests` GETs at a fixed rate over one kept-alive
/// connection (curl reuses it for every URL of one invocation; over HTTPS,
/// one TLS session on it).
#[derive(Debug)]
pub struct KeepAliveClient {
    process: NsProcess,
}

impl KeepAliveClient {
    /// Starts `requests` GETs of `target`, one every `1 / per_second`
    /// seconds, logging to `log_name` in the lab's run directory.
    pub fn start(
        lab: &Lab,
        target: &Target,
        requests: usize,
        per_second: u32,
        log_name: &str,
    ) -> Result<Self, LabError> {
        let mut command = lab.command(Node::Client, "curl");
        command
            .args(["-s", "--no-buffer", "--rate", &format!("{per_second}/s")])
            .args(&target.curl_options)
            .args([
                "-w",
                &format!("{REPLY_MARKER} %{{http_code}} %{{local_port}} %{{num_connects}}\\n"),
            ])
            .args(std::iter::repeat_n(&target.url, requests));
        let process = lab.spawn("keep-alive client", &mut command, log_name)?;
        Ok(KeepAliveClient { process })
    }

    /// The replies logged so far.
    pub fn replies(&self) -> Vec<KeepAliveReply> {
        parse_keep_alive(&read_log(self.process.log_path()))
    }

    /// Whether curl is still sending.
    pub fn is_running(&mut self) -> bool {
        matches!(self.process.try_exit_status(), Ok(None))
    }

    /// Stops curl (if still running) and returns every reply.
    pub fn finish(self) -> Vec<KeepAliveReply> {
        let log = self.process.log_path().to_owned();
        let _ = self.process.stop();
        parse_keep_alive(&read_log(&log))
    }
}

/// Parses the keep-alive log: each reply is its body lines, then a marker
/// line with the status, the local port and the number of new connections.
fn parse_keep_alive(log: &str) -> Vec<KeepAliveReply> {
    let mut replies = Vec::new();
    let mut body = String::new();
    for line in log.lines() {
        let Some(result) = line.strip_prefix(REPLY_MARKER) else {
            body.push_str(line);
            body.push('\n');
            continue;
        };
        let fields: Vec<&str> = result.split_whitespace().collect();
        if let [status, port, connects] = fields[..] {
            replies.push(KeepAliveReply {
                body: body.trim().to_owned(),
                status: status.parse().unwrap_or(0),
                local_port: port.parse().unwrap_or(0),
                new_connection: connects != "0",
            });
        }
        body.clear();
    }
    replies
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_lines_carry_time_body_status_and_exit_code() {
        let log = "1700000000.250000000 web2 #reply 200 0 0.000453 0.000120\n\
                   1700000001.500000000  #reply 000 7 0.000734 0.000000\n\
                   1700000002.000000000  #reply 000 28 1.002 0.000000\n\
                   1700000003.000000000 web";
        let replies = parse_stream(log);
        assert_eq!(replies.len(), 3, "the cut last line is skipped");
        assert_eq!(
            replies[0],
            StreamReply {
                at: SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_250),
                body: "web2".into(),
                status: 200,
                curl_exit: 0,
                took: Duration::from_secs_f64(0.000453),
                connect: Duration::from_secs_f64(0.000120),
                source: None,
            }
        );
        assert!(replies[0].is_ok());
        assert_eq!((replies[1].status, replies[1].curl_exit), (0, 7));
        assert_eq!(replies[2].curl_exit, 28);
        assert!(replies[1].body.is_empty());
    }

    #[test]
    fn steady_lines_carry_the_source_and_failures_are_told_apart() {
        let log = "1700000004.000000000 web1 #reply 200 0 1.004 1.002 10.0.0.210\n\
                   1700000004.100000000  #reply 000 7 0.001 0.000000 10.0.0.211\n\
                   1700000004.200000000  #reply 000 28 3.001 0.000000 10.0.0.212\n\
                   1700000004.300000000  #reply 000 28 5.001 0.000300 10.0.0.213\n\
                   1700000004.400000000  #reply 000 56 0.002 0.000200 10.0.0.214\n\
                   1700000004.500000000 bad gateway #reply 502 0 0.002 0.000200 10.0.0.215\n\
                   1700000004.600000000  #reply 000 28 3.0 0.0 10.0.0.";
        let replies = parse_stream(log);
        assert_eq!(replies.len(), 6, "the cut last line is skipped");
        assert_eq!(replies[0].source, Some(Ipv4Addr::new(10, 0, 0, 210)));
        assert_eq!(replies[0].connect, Duration::from_secs_f64(1.002));
        assert_eq!(replies[0].failure(), None);
        let failures: Vec<Option<Failure>> =
            replies[1..].iter().map(StreamReply::failure).collect();
        assert_eq!(
            failures,
            [
                Some(Failure::Refused),
                Some(Failure::ConnectTimeout),
                Some(Failure::ResponseTimeout),
                Some(Failure::Reset),
                Some(Failure::Status(502)),
            ]
        );
        assert_eq!(replies[5].body, "bad gateway");
    }

    #[test]
    fn keep_alive_replies_follow_their_bodies() {
        let log = "web3\n#reply 200 53838 1\nweb3\n#reply 200 53838 0\n#reply 000 53838 0\n";
        let replies = parse_keep_alive(log);
        assert_eq!(
            replies,
            [
                KeepAliveReply {
                    body: "web3".into(),
                    status: 200,
                    local_port: 53838,
                    new_connection: true
                },
                KeepAliveReply {
                    body: "web3".into(),
                    status: 200,
                    local_port: 53838,
                    new_connection: false
                },
                KeepAliveReply {
                    body: String::new(),
                    status: 0,
                    local_port: 53838,
                    new_connection: false
                },
            ]
        );
    }

    #[test]
    fn the_stream_script_is_valid_shell_and_bounded() {
        // Zero seconds: the loop ends before any request.
        let output = std::process::Command::new("sh")
            .args([
                "-c",
                &stream_script(),
                "sh",
                "http://",
                "0",
                "--cacert",
                "x",
            ])
            .output()
            .unwrap();
        assert!(output.status.success());
        assert!(output.stdout.is_empty());
    }

    #[test]
    fn the_steady_script_starts_every_request_and_names_its_source() {
        // A malformed URL fails inside curl, before anything is sent.
        let output = std::process::Command::new("sh")
            .args(["-c", &steady_script(), "sh", "http://", "1000", "3"])
            .args(["127.0.0.1", "127.0.0.2"])
            .output()
            .unwrap();
        assert!(output.status.success());
        let replies = parse_stream(&String::from_utf8_lossy(&output.stdout));
        assert_eq!(replies.len(), 3);
        let mut sources: Vec<Ipv4Addr> = replies.iter().filter_map(|reply| reply.source).collect();
        sources.sort();
        assert_eq!(
            sources,
            [
                Ipv4Addr::new(127, 0, 0, 1),
                Ipv4Addr::new(127, 0, 0, 1),
                Ipv4Addr::new(127, 0, 0, 2)
            ]
        );
        assert!(replies
            .iter()
            .all(|reply| reply.failure() == Some(Failure::Other(3))));
    }
}
