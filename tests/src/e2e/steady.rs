//! What the passive-health tests run and break: extra client addresses for
//! a steady stream of new connections ([`ClientAddresses`], for
//! [`Streams::steady`](super::Streams::steady)), faults set with nftables in
//! a lab namespace and undone when dropped ([`NftFault`]: a dead web host, a
//! lossy path of one client address), and a summary of what such a stream
//! saw ([`summarize`]). Killing a web server's nginx is
//! [`Lab::kill_web`](xtask::lab::Lab::kill_web).

use std::collections::BTreeMap;
use std::fs;
use std::net::Ipv4Addr;
use std::time::Duration;

use xtask::lab::{Lab, Node, StreamReply, HOST_INTERFACE, SUBNET_PREFIX_LEN};

/// The first of the client's extra addresses, on the lab's subnet: clear of
/// the lab's nodes (10.0.0.1–3, .11, .12, .200, .254), the VIP (.100), and
/// the benchmark's addresses (client sources .201–.205, VIPs .101–.103,
/// SNAT .13).
pub const FIRST_CLIENT_ADDRESS: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 210);

/// How many extra addresses the client may get: .210–.225.
pub const MAX_CLIENT_ADDRESSES: usize = 16;

/// A connection whose handshake took longer than this had its SYN
/// retransmitted: Linux retransmits the first one after 1 s.
pub const SYN_RETRANSMITTED_AFTER: Duration = Duration::from_millis(900);

/// Extra addresses on the client's `eth0`, so that its connections come
/// from several distinct clients; removed when dropped (and with the lab).
#[derive(Debug)]
pub struct ClientAddresses<'lab> {
    lab: &'lab Lab,
    addresses: Vec<Ipv4Addr>,
}

impl<'lab> ClientAddresses<'lab> {
    /// Adds `count` addresses from [`FIRST_CLIENT_ADDRESS`] on.
    ///
    /// # Panics
    /// If `count` exceeds [`MAX_CLIENT_ADDRESSES`] or an address cannot be
    /// added (those added already are removed again).
    pub fn add(lab: &'lab Lab, count: usize) -> ClientAddresses<'lab> {
        assert!(
            count <= MAX_CLIENT_ADDRESSES,
            "at most {MAX_CLIENT_ADDRESSES} client addresses"
        );
        let mut added = ClientAddresses {
            lab,
            addresses: Vec::with_capacity(count),
        };
        for address in client_addresses(count) {
            lab.run(
                Node::Client,
                "ip",
                &["addr", "add", &with_prefix(address), "dev", HOST_INTERFACE],
            )
            .unwrap_or_else(|error| panic!("adding {address} to the client: {error}"));
            added.addresses.push(address);
        }
        added
    }

    /// The addresses, in order.
    pub fn addresses(&self) -> &[Ipv4Addr] {
        &self.addresses
    }
}

impl Drop for ClientAddresses<'_> {
    fn drop(&mut self) {
        for address in &self.addresses {
            let removed = self.lab.run(
                Node::Client,
                "ip",
                &["addr", "del", &with_prefix(*address), "dev", HOST_INTERFACE],
            );
            if let Err(error) = removed {
                eprintln!("removing {address} from the client: {error}");
            }
        }
    }
}

/// The first `count` extra client addresses.
fn client_addresses(count: usize) -> impl Iterator<Item = Ipv4Addr> {
    (u32::from(FIRST_CLIENT_ADDRESS)..)
        .take(count)
        .map(Ipv4Addr::from)
}

fn with_prefix(address: Ipv4Addr) -> String {
    format!("{address}/{SUBNET_PREFIX_LEN}")
}

/// A fault made of one nftables table in one lab namespace; dropping it
/// deletes the table (the namespace's end does too).
#[derive(Debug)]
pub struct NftFault<'lab> {
    lab: &'lab Lab,
    node: Node,
    table: &'static str,
}

impl<'lab> NftFault<'lab> {
    /// `web`'s host is dead to the network: every IPv4 packet it receives
    /// is dropped (the load balancer's checks, the clients' SYNs and
    /// requests). ARP is not IPv4, so it still answers ARP, as a host whose
    /// kernel runs and whose service is wedged would; what it sends still
    /// leaves.
    pub fn dead_host(lab: &'lab Lab, web: Node) -> NftFault<'lab> {
        let table = "lbtest_dead_host";
        let rules = format!(
            "table ip {table} {{
    chain input {{
        type filter hook input priority filter; policy drop;
    }}
}}
"
        );
        Self::load(lab, web, table, &rules)
    }

    /// Every IPv4 packet from and to the client's `address` is dropped at
    /// random with `percent` % probability, in the client's namespace,
    /// each direction on its own: a bad path of one client (its SYNs,
    /// SYN-ACKs, ACKs, requests and replies all suffer).
    pub fn lossy_path(lab: &'lab Lab, address: Ipv4Addr, percent: u8) -> NftFault<'lab> {
        assert!(percent <= 100, "a percentage: {percent}");
        let table = "lbtest_lossy_path";
        let rules = format!(
            "table ip {table} {{
    chain output {{
        type filter hook output priority filter; policy accept;
        ip saddr {address} numgen random mod 100 < {percent} drop
    }}
    chain input {{
        type filter hook input priority filter; policy accept;
        ip daddr {address} numgen random mod 100 < {percent} drop
    }}
}}
"
        );
        Self::load(lab, Node::Client, table, &rules)
    }

    /// Loads `rules` (which create `table`) into `node` at once (`nft -f`
    /// applies a file as one transaction).
    fn load(lab: &'lab Lab, node: Node, table: &'static str, rules: &str) -> NftFault<'lab> {
        let path = lab.run_dir().join(format!("{table}-{node}.nft"));
        fs::write(&path, rules)
            .unwrap_or_else(|error| panic!("writing {}: {error}", path.display()));
        let path = path.to_string_lossy();
        lab.run(node, "nft", &["-f", &path])
            .unwrap_or_else(|error| panic!("loading {path} into {node}: {error}"));
        NftFault { lab, node, table }
    }
}

impl Drop for NftFault<'_> {
    fn drop(&mut self) {
        let deleted = self
            .lab
            .run(self.node, "nft", &["delete", "table", "ip", self.table]);
        if let Err(error) = deleted {
            eprintln!(
                "deleting nftables table {} in {}: {error}",
                self.table, self.node
            );
        }
    }
}

/// One line on `replies` of a stream: how many, who answered, failures by
/// reason, and how long the handshakes took.
pub fn summarize(replies: &[&StreamReply]) -> String {
    let mut answered: BTreeMap<&str, usize> = BTreeMap::new();
    let mut failed: BTreeMap<String, usize> = BTreeMap::new();
    for reply in replies {
        match reply.failure() {
            None => *answered.entry(reply.body.as_str()).or_default() += 1,
            Some(failure) => *failed.entry(failure.to_string()).or_default() += 1,
        }
    }
    let connected: Vec<Duration> = replies
        .iter()
        .map(|reply| reply.connect)
        .filter(|connect| !connect.is_zero())
        .collect();
    let within = |bound: Duration| connected.iter().filter(|&&c| c <= bound).count();
    let fast = within(Duration::from_millis(10));
    let retransmitted = connected.len() - within(SYN_RETRANSMITTED_AFTER);
    let slowest = connected.iter().max().copied().unwrap_or_default();
    format!(
        "{} connections: {} answered {answered:?}, {} failed {failed:?}; handshakes: \
         {fast} within 10 ms, {} in 10-900 ms, {retransmitted} over 900 ms (SYN \
         retransmitted), slowest {:.3} s",
        replies.len(),
        answered.values().sum::<usize>(),
        failed.values().sum::<usize>(),
        connected.len() - fast - retransmitted,
        slowest.as_secs_f64(),
    )
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::time::SystemTime;

    use super::*;

    #[test]
    fn client_addresses_are_used_by_nothing_else_in_the_lab() {
        let addresses: Vec<Ipv4Addr> = client_addresses(MAX_CLIENT_ADDRESSES).collect();
        assert_eq!(addresses.first(), Some(&FIRST_CLIENT_ADDRESS));
        assert_eq!(addresses.last(), Some(&Ipv4Addr::new(10, 0, 0, 225)));
        let taken: HashSet<Ipv4Addr> = Node::ALL
            .iter()
            .chain(&[Node::Router])
            .filter_map(|node| node.address())
            .chain([xtask::lab::VIP])
            .collect();
        assert!(addresses.iter().all(|address| !taken.contains(address)));
    }

    #[test]
    fn a_summary_counts_answers_failures_and_slow_handshakes() {
        let reply = |body: &str, curl_exit, connect_ms| StreamReply {
            at: SystemTime::UNIX_EPOCH,
            body: body.into(),
            status: if curl_exit == 0 { 200 } else { 0 },
            curl_exit,
            took: Duration::from_millis(connect_ms + 1),
            connect: Duration::from_millis(connect_ms),
            source: Some(FIRST_CLIENT_ADDRESS),
        };
        let replies = [
            reply("web1", 0, 1),
            reply("web1", 0, 1003),
            reply("web3", 0, 20),
            reply("", 7, 0),
        ];
        let summary = summarize(&replies.iter().collect::<Vec<_>>());
        assert!(
            summary.starts_with(
                "4 connections: 3 answered {\"web1\": 2, \"web3\": 1}, 1 failed {\"refused\": 1}; \
                 handshakes: 1 within 10 ms, 1 in 10-900 ms, 1 over 900 ms"
            ),
            "{summary}"
        );
    }
}
