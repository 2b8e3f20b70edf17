//! HTTP and HTTPS requests from the client namespace with curl, one new TCP
//! connection (and so a new source port) per request.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use super::lb::vip_url;
use super::tls::TLS_NAME;
use super::topology::{HTTPS_PORT, VIP};

/// Per-request time limit, in seconds.
pub const REQUEST_TIMEOUT_SECS: u32 = 2;

/// Starts each request's section in the output of [`client_script`].
const REQUEST_MARKER: &str = "@@request";

/// Prefixes the status line curl writes after a reply (absent when curl fails
/// before any transfer).
const STATUS_MARKER: &str = "@@status ";

/// What the client's curl fetches: a URL and the curl options it needs for
/// it (for HTTPS, the CA to verify the server with).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// The URL.
    pub url: String,
    /// curl options, given before the URL.
    pub curl_options: Vec<String>,
}

impl Target {
    /// `url`, with no options.
    pub fn plain(url: String) -> Target {
        Target {
            url,
            curl_options: Vec::new(),
        }
    }

    /// The lab's service over HTTP: [`vip_url`].
    pub fn vip_http() -> Target {
        Target::plain(vip_url())
    }

    /// `https://VIP/`, the server's certificate verified against `ca`
    /// (`curl --cacert`, never `-k`): its IP address entry.
    pub fn vip_https(ca: &Path) -> Target {
        Target {
            url: format!("https://{VIP}/"),
            curl_options: vec!["--cacert".into(), ca.display().to_string()],
        }
    }

    /// `https://NAME/` for `name`, which curl resolves to `address`
    /// (`--resolve`), verified against `ca`: e.g. [`TLS_NAME`] at the VIP,
    /// the certificate's DNS entry.
    pub fn https_by_name(name: &str, address: std::net::Ipv4Addr, ca: &Path) -> Target {
        Target {
            url: format!("https://{name}/"),
            curl_options: vec![
                "--cacert".into(),
                ca.display().to_string(),
                "--resolve".into(),
                format!("{name}:{HTTPS_PORT}:{address}"),
            ],
        }
    }

    /// [`Target::https_by_name`] for [`TLS_NAME`] at the VIP.
    pub fn vip_https_by_name(ca: &Path) -> Target {
        Target::https_by_name(TLS_NAME, VIP, ca)
    }

    /// This target with `options` added (e.g. `--tls-max 1.2`).
    pub fn with(mut self, options: &[&str]) -> Target {
        self.curl_options
            .extend(options.iter().map(|&option| option.to_owned()));
        self
    }
}

/// One HTTP request's outcome.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpReply {
    /// HTTP status; 0 when the request failed (refused, timed out...).
    pub status: u16,
    /// The body, without surrounding whitespace.
    pub body: String,
    /// curl's exit code: 0 success, 7 refused, 28 timeout, 60 the server's
    /// certificate not verified.
    pub curl_exit: u32,
}

impl HttpReply {
    /// Whether the request got `200 OK`.
    pub fn is_ok(&self) -> bool {
        self.status == 200
    }
}

impl fmt::Display for HttpReply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.status == 0 && self.curl_exit != 0 {
            write!(f, "failed (no HTTP response, curl exit {})", self.curl_exit)
        } else if self.status == 0 {
            f.write_str("failed (no HTTP response)")
        } else if self.is_ok() {
            f.write_str(&self.body)
        } else {
            write!(f, "HTTP {}", self.status)
        }
    }
}

/// A shell script for `sh -c SCRIPT sh URL COUNT [CURL_OPTION...]`:
/// `COUNT` sequential curls with the options, each printing a request
/// marker, its body and a status line (HTTP status, curl's exit code).
pub(super) fn client_script() -> String {
    format!(
        r#"url=$1; count=$2; shift 2
i=0
while [ "$i" -lt "$count" ]; do
    echo '{REQUEST_MARKER}'
    curl -s --max-time {REQUEST_TIMEOUT_SECS} "$@" -w '\n{STATUS_MARKER}%{{http_code}} %{{exitcode}}\n' "$url" || true
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
    let mut curl_exit = 0;
    let mut body = String::new();
    for line in section.lines() {
        match line.strip_prefix(STATUS_MARKER) {
            Some(result) => {
                let mut fields = result.split_whitespace();
                status = fields
                    .next()
                    .and_then(|code| code.parse().ok())
                    .unwrap_or(0);
                curl_exit = fields
                    .next()
                    .and_then(|exit| exit.parse().ok())
                    .unwrap_or(0);
            }
            None => {
                body.push_str(line);
                body.push('\n');
            }
        }
    }
    HttpReply {
        status,
        body: body.trim().to_owned(),
        curl_exit,
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
        let output = "@@request\nweb1\n\n@@status 200 0\n@@request\n\n@@status 000 60\n@@request\n@@request\nweb3\n\n@@status 200 0\n";
        let replies = parse_replies(output);
        assert_eq!(
            replies,
            [
                HttpReply {
                    status: 200,
                    body: "web1".into(),
                    curl_exit: 0,
                },
                HttpReply {
                    status: 0,
                    body: String::new(),
                    curl_exit: 60,
                },
                HttpReply {
                    status: 0,
                    body: String::new(),
                    curl_exit: 0,
                },
                HttpReply {
                    status: 200,
                    body: "web3".into(),
                    curl_exit: 0,
                },
            ]
        );
    }

    #[test]
    fn tally_counts_backends_and_failures() {
        let replies = parse_replies(
            "@@request\nweb1\n@@status 200 0\n@@request\nweb1\n@@status 200 0\n\
             @@request\nx\n@@status 503 0\n@@request\n@@status 000 7\n",
        );
        let counts = tally(&replies);
        assert_eq!(counts["web1"], 2);
        assert_eq!(counts["HTTP 503"], 1);
        assert_eq!(counts["failed (no HTTP response, curl exit 7)"], 1);
    }

    #[test]
    fn script_runs_and_reports_failures() {
        // A malformed URL fails inside curl (exit 3), before anything is sent.
        let output = std::process::Command::new("sh")
            .args(["-c", &client_script(), "sh", "http://", "2"])
            .output()
            .unwrap();
        let replies = parse_replies(&String::from_utf8_lossy(&output.stdout));
        assert_eq!(replies.len(), 2);
        assert!(replies
            .iter()
            .all(|reply| reply.status == 0 && reply.curl_exit == 3));
    }

    #[test]
    fn script_passes_its_options_to_curl() {
        // `--version` prints and exits before any transfer.
        let output = std::process::Command::new("sh")
            .args(["-c", &client_script(), "sh", "http://", "1", "--version"])
            .output()
            .unwrap();
        let replies = parse_replies(&String::from_utf8_lossy(&output.stdout));
        assert_eq!(replies.len(), 1);
        assert!(replies[0].body.starts_with("curl "), "{replies:?}");
    }

    #[test]
    fn https_targets_verify_against_the_given_ca() {
        let ca = Path::new("/run/lbt-lab/tls/ca.crt");
        let by_address = Target::vip_https(ca);
        assert_eq!(by_address.url, "https://10.0.0.100/");
        assert_eq!(
            by_address.curl_options,
            ["--cacert", "/run/lbt-lab/tls/ca.crt"]
        );
        let by_name = Target::vip_https_by_name(ca).with(&["--tls-max", "1.2"]);
        assert_eq!(by_name.url, "https://www.lab.test/");
        assert_eq!(
            by_name.curl_options,
            [
                "--cacert",
                "/run/lbt-lab/tls/ca.crt",
                "--resolve",
                "www.lab.test:443:10.0.0.100",
                "--tls-max",
                "1.2"
            ]
        );
    }
}
