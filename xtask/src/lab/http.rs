//! HTTP requests from the client namespace with curl, one new TCP connection
//! (and so a new source port) per request.

use std::collections::BTreeMap;
use std::fmt;

/// Per-request time limit, in seconds.
pub const REQUEST_TIMEOUT_SECS: u32 = 2;

/// Starts each request's section in the output of [`client_script`].
const REQUEST_MARKER: &str = "@@request";

/// Prefixes the status line curl writes after a reply (absent when curl fails
/// before any transfer).
const STATUS_MARKER: &str = "@@status ";

/// One HTTP request's outcome.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpReply {
    /// HTTP status; 0 when the request failed (refused, timed out...).
    pub status: u16,
    /// The body, without surrounding whitespace.
    pub body: String,
}

impl HttpReply {
    /// Whether the request got `200 OK`.
    pub fn is_ok(&self) -> bool {
        self.status == 200
    }
}

impl fmt::Display for HttpReply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.status == 0 {
            f.write_str("failed (no HTTP response)")
        } else if self.is_ok() {
            f.write_str(&self.body)
        } else {
            write!(f, "HTTP {}", self.status)
        }
    }
}

/// A shell script for `sh -c SCRIPT sh URL COUNT`: `COUNT` sequential curls,
/// each printing a request marker, its body and a status line.
pub(super) fn client_script() -> String {
    format!(
        r#"i=0
while [ "$i" -lt "$2" ]; do
    echo '{REQUEST_MARKER}'
    curl -s --max-time {REQUEST_TIMEOUT_SECS} -w '\n{STATUS_MARKER}%{{http_code}}\n' "$1" || true
    i=$((i + 1))
done"#
    )
}

/// Parses the output of [`client_script`]: one reply per request marker.
pub(super) fn parse_replies(output: &str) -> Vec<HttpReply> {
    let marker = format!("{REQUEST_MARKER}\n");
    let mut sections = output.split(&marker);
    // Whatever precedes the first marker is not a reply.
    sections.next();
    sections.map(parse_reply).collect()
}

fn parse_reply(section: &str) -> HttpReply {
    let mut status = 0;
    let mut body = String::new();
    for line in section.lines() {
        match line.strip_prefix(STATUS_MARKER) {
            Some(code) => status = code.trim().parse().unwrap_or(0),
            None => {
                body.push_str(line);
                body.push('\n');
            }
        }
    }
    HttpReply {
        status,
        body: body.trim().to_owned(),
    }
}

/// How many requests each backend answered (by body), failures under their
/// [`HttpReply`] description.
pub fn tally(replies: &[HttpReply]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for reply in replies {
        *counts.entry(reply.to_string()).or_insert(0) += 1;
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_are_split_at_status_lines() {
        let output = "@@request\nweb1\n\n@@status 200\n@@request\n\n@@status 000\n@@request\n@@request\nweb3\n\n@@status 200\n";
        let replies = parse_replies(output);
        assert_eq!(
            replies,
            [
                HttpReply {
                    status: 200,
                    body: "web1".into()
                },
                HttpReply {
                    status: 0,
                    body: String::new()
                },
                HttpReply {
                    status: 0,
                    body: String::new()
                },
                HttpReply {
                    status: 200,
                    body: "web3".into()
                },
            ]
        );
    }

    #[test]
    fn tally_counts_backends_and_failures() {
        let replies = parse_replies(
            "@@request\nweb1\n@@status 200\n@@request\nweb1\n@@status 200\n\
             @@request\nx\n@@status 503\n@@request\n@@status 000\n",
        );
        let counts = tally(&replies);
        assert_eq!(counts["web1"], 2);
        assert_eq!(counts["HTTP 503"], 1);
        assert_eq!(counts["failed (no HTTP response)"], 1);
    }

    #[test]
    fn script_runs_and_reports_failures() {
        // A malformed URL fails inside curl, before anything is sent.
        let output = std::process::Command::new("sh")
            .args(["-c", &client_script(), "sh", "http://", "2"])
            .output()
            .unwrap();
        let replies = parse_replies(&String::from_utf8_lossy(&output.stdout));
        assert_eq!(replies.len(), 2);
        assert!(replies.iter().all(|reply| reply.status == 0));
    }
}
