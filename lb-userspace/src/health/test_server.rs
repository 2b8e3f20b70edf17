//! Stub servers on 127.0.0.1 for the probe and checker tests: each answers
//! every connection the way it is told to, well or badly, and records what
//! it saw.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::{self, Instant};

/// How often [`Reply::Trickle`] sends its next byte.
pub const TRICKLE_INTERVAL: Duration = Duration::from_millis(200);
/// The head of the endless replies: a response without a length, whose
/// body (or last header) never ends.
const STATUS_LINE: &str = "HTTP/1.1 200 OK\r\n";

/// How the stub answers a connection.
#[derive(Debug, Clone)]
pub enum Reply {
    /// Reads the request head, writes these bytes, closes.
    Respond(String),
    /// Accepts and reads, never writes.
    Silent,
    /// Closes as soon as it accepts.
    Close,
    /// Resets the connection (RST) as soon as it accepts.
    Reset,
    /// Reads the request head, then sends a response head that never ends,
    /// one byte every [`TRICKLE_INTERVAL`].
    Trickle,
    /// Reads the request head, then sends a 200 whose body never ends, as
    /// fast as the client reads.
    EndlessBody,
    /// Reads the request head, then sends a header line that never ends, as
    /// fast as the client reads.
    EndlessHeader,
}

impl Reply {
    /// A complete HTTP/1.1 response with `status` and `body`.
    pub fn http(status: u16, body: &str) -> Reply {
        Reply::Respond(format!(
            "HTTP/1.1 {status} Stub\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ))
    }
}

#[derive(Debug)]
struct Seen {
    reply: Mutex<Reply>,
    requests: Mutex<Vec<String>>,
    /// When each request head arrived.
    request_times: Mutex<Vec<Instant>>,
    peers: Mutex<Vec<Ipv4Addr>>,
    /// Connections the client closed while the stub was still sending.
    closed_by_client: Mutex<usize>,
}

/// A listener on 127.0.0.1 that stops (refusing connections) when dropped.
pub struct StubServer {
    address: SocketAddr,
    seen: Arc<Seen>,
    task: JoinHandle<()>,
}

impl StubServer {
    pub async fn start(reply: Reply) -> StubServer {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let seen = Arc::new(Seen {
            reply: Mutex::new(reply),
            requests: Mutex::new(Vec::new()),
            request_times: Mutex::new(Vec::new()),
            peers: Mutex::new(Vec::new()),
            closed_by_client: Mutex::new(0),
        });
        StubServer {
            address: listener.local_addr().unwrap(),
            task: tokio::spawn(serve(listener, Arc::clone(&seen))),
            seen,
        }
    }

    pub fn port(&self) -> u16 {
        self.address.port()
    }

    /// Answers the next connections with `reply`.
    pub fn set_reply(&self, reply: Reply) {
        *self.seen.reply.lock().unwrap() = reply;
    }

    /// The request heads received so far.
    pub fn requests(&self) -> Vec<String> {
        self.seen.requests.lock().unwrap().clone()
    }

    /// When each request head arrived.
    pub fn request_times(&self) -> Vec<Instant> {
        self.seen.request_times.lock().unwrap().clone()
    }

    /// How many connections the client closed while an endless reply
    /// ([`Reply::Trickle`], [`Reply::EndlessBody`], [`Reply::EndlessHeader`])
    /// was being sent: the client gave up on it.
    pub fn closed_by_client(&self) -> usize {
        *self.seen.closed_by_client.lock().unwrap()
    }

    /// The source address of each connection accepted so far.
    pub fn peers(&self) -> Vec<Ipv4Addr> {
        self.seen.peers.lock().unwrap().clone()
    }
}

impl Drop for StubServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(listener: TcpListener, seen: Arc<Seen>) {
    // Dropped with this task, which aborts every connection still open.
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, peer)) = accepted else { continue };
                if let IpAddr::V4(peer) = peer.ip() {
                    seen.peers.lock().unwrap().push(peer);
                }
                let reply = seen.reply.lock().unwrap().clone();
                connections.spawn(answer(stream, reply, Arc::clone(&seen)));
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

async fn answer(mut stream: TcpStream, reply: Reply, seen: Arc<Seen>) {
    match reply {
        Reply::Close => return,
        Reply::Reset => {
            // Closing with a zero linger sends RST instead of FIN.
            let _ = stream.set_zero_linger();
            return;
        }
        Reply::Silent => {
            let mut sink = [0; 1024];
            while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {}
            return;
        }
        _ => {}
    }
    let head = read_head(&mut stream).await;
    seen.requests.lock().unwrap().push(head);
    seen.request_times.lock().unwrap().push(Instant::now());
    let endless = match reply {
        Reply::Respond(bytes) => {
            // The client may already be gone; nothing to report then.
            let _ = stream.write_all(bytes.as_bytes()).await;
            let _ = stream.shutdown().await;
            return;
        }
        Reply::Trickle => trickle(&mut stream).await,
        Reply::EndlessBody => endless(&mut stream, "Content-Type: text/plain\r\n\r\n").await,
        Reply::EndlessHeader => endless(&mut stream, "X-Endless: ").await,
        Reply::Close | Reply::Reset | Reply::Silent => unreachable!("answered above"),
    };
    // An endless reply only ends when a write fails: the client closed.
    if endless.is_err() {
        *seen.closed_by_client.lock().unwrap() += 1;
    }
}

/// A status line, then a header line one byte every [`TRICKLE_INTERVAL`].
async fn trickle(stream: &mut TcpStream) -> std::io::Result<()> {
    stream.write_all(STATUS_LINE.as_bytes()).await?;
    stream.write_all(b"X-Trickle: ").await?;
    loop {
        time::sleep(TRICKLE_INTERVAL).await;
        stream.write_all(b"a").await?;
    }
}

/// A status line and `then`, then `a`s as fast as the client reads.
async fn endless(stream: &mut TcpStream, then: &str) -> std::io::Result<()> {
    stream.write_all(STATUS_LINE.as_bytes()).await?;
    stream.write_all(then.as_bytes()).await?;
    let chunk = [b'a'; 16 * 1024];
    loop {
        stream.write_all(&chunk).await?;
    }
}

/// Reads up to the end of the request head (or of the stream).
async fn read_head(stream: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut buffer = [0; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buffer).await {
            Ok(n) if n > 0 => head.extend_from_slice(&buffer[..n]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&head).into_owned()
}
