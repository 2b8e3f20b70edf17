//! Stub servers on 127.0.0.1 for the probe and checker tests: each answers
//! every connection the way it is told to, and records what it saw.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

/// How the stub answers a connection.
#[derive(Debug, Clone)]
pub enum Reply {
    /// Reads the request head, writes these bytes, closes.
    Respond(String),
    /// Accepts and reads, never writes.
    Silent,
    /// Closes as soon as it accepts.
    Close,
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
    peers: Mutex<Vec<Ipv4Addr>>,
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
            peers: Mutex::new(Vec::new()),
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
        Reply::Close => {}
        Reply::Silent => {
            let mut sink = [0; 1024];
            while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {}
        }
        Reply::Respond(bytes) => {
            let head = read_head(&mut stream).await;
            seen.requests.lock().unwrap().push(head);
            // The client may already be gone; nothing to report then.
            let _ = stream.write_all(bytes.as_bytes()).await;
            let _ = stream.shutdown().await;
        }
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
