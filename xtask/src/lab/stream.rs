//! Traffic from the client that runs in the background while a test changes
//! the lab: a steady stream of requests, each on a new connection, and a
//! keep-alive client that holds one connection and sends a request over it
//! at a fixed rate. Both log every reply with what the test needs to judge it.

use std::fs;
use std::path::Path;
use std::thread::sleep;
use std::time::{Duration, Instant, SystemTime};

use super::process::NsProcess;
use super::topology::Node;
use super::{Lab, LabError};

/// Per-request time limit of the stream, in seconds.
pub const STREAM_REQUEST_TIMEOUT_SECS: u32 = 1;

/// How long past its last request's timeout a stream may take to exit.
const FINISH_SLACK: Duration = Duration::from_secs(2);

/// Marks curl's per-request line (after the body) in both logs. Not `@`:
/// curl reads a `-w` format starting with `@` from a file.
const REPLY_MARKER: &str = "#reply";

/// `sh -c SCRIPT sh URL MILLISECONDS`: one curl per request, new connection
/// each, for `MILLISECONDS`; one line per request: wall-clock start (Unix
/// seconds), then the body and curl's status, exit code and time.
fn stream_script() -> String {
    format!(
        r#"now_ms() {{ echo $(( $(date +%s%N) / 1000000 )); }}
end=$(( $(now_ms) + $2 ))
while [ "$(now_ms)" -lt "$end" ]; do
    start=$(date +%s.%N)
    reply=$(curl -s --max-time {STREAM_REQUEST_TIMEOUT_SECS} -w ' {REPLY_MARKER} %{{http_code}} %{{exitcode}} %{{time_total}}' "$1" | tr -d '\n')
    echo "$start $reply"
    sleep 0.05
done"#
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
}

impl StreamReply {
    /// Whether the request got `200 OK`.
    pub fn is_ok(&self) -> bool {
        self.status == 200
    }
}

/// A steady stream of requests from the client, one new connection each
/// (about 15 per second), for a bounded time.
#[derive(Debug)]
pub struct RequestStream {
    process: NsProcess,
    /// When the last request has started.
    ends_at: Instant,
}

impl RequestStream {
    /// Starts requesting `url` from the client for `duration`, logging to
    /// `log_name` in the lab's run directory.
    pub fn start(
        lab: &Lab,
        url: &str,
        duration: Duration,
        log_name: &str,
    ) -> Result<Self, LabError> {
        let mut command = lab.command(Node::Client, "sh");
        command
            .args(["-c", &stream_script(), "sh", url])
            .arg(duration.as_millis().to_string());
        let process = lab.spawn("request stream", &mut command, log_name)?;
        Ok(RequestStream {
            process,
            ends_at: Instant::now() + duration,
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
        let deadline = self.ends_at
            + Duration::from_secs(u64::from(STREAM_REQUEST_TIMEOUT_SECS))
            + FINISH_SLACK;
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

/// Parses [`stream_script`]'s lines; a line cut short (the stream was
/// stopped while writing it) is skipped.
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
    let at = SystemTime::UNIX_EPOCH + Duration::from_secs_f64(start.parse().ok()?);
    Some(StreamReply {
        at,
        body: body.trim().to_owned(),
        status,
        curl_exit,
        took,
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
/// connection (curl reuses it for every URL of one invocation).
#[derive(Debug)]
pub struct KeepAliveClient {
    process: NsProcess,
}

impl KeepAliveClient {
    /// Starts `requests` GETs of `url`, one every `1 / per_second` seconds,
    /// logging to `log_name` in the lab's run directory.
    pub fn start(
        lab: &Lab,
        url: &str,
        requests: usize,
        per_second: u32,
        log_name: &str,
    ) -> Result<Self, LabError> {
        let mut command = lab.command(Node::Client, "curl");
        command
            .args(["-s", "--no-buffer", "--rate", &format!("{per_second}/s")])
            .args([
                "-w",
                &format!("{REPLY_MARKER} %{{http_code}} %{{local_port}} %{{num_connects}}\\n"),
            ])
            .args(std::iter::repeat_n(url, requests));
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
        let log = "1700000000.250000000 web2 #reply 200 0 0.000453\n\
                   1700000001.500000000  #reply 000 7 0.000734\n\
                   1700000002.000000000  #reply 000 28 1.002\n\
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
            }
        );
        assert!(replies[0].is_ok());
        assert_eq!((replies[1].status, replies[1].curl_exit), (0, 7));
        assert_eq!(replies[2].curl_exit, 28);
        assert!(replies[1].body.is_empty());
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
            .args(["-c", &stream_script(), "sh", "http://", "0"])
            .output()
            .unwrap();
        assert!(output.status.success());
        assert!(output.stdout.is_empty());
    }
}
