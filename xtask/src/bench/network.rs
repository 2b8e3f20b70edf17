//! The lab settings the benchmark adds, the same for every variant and made
//! once before the first run: the variants' addresses on lb1 and the web
//! servers, the client's per-variant source addresses and routes, and the
//! sysctls that let lb1 forward for nftables.

use std::net::Ipv4Addr;

use anyhow::{Context as _, Result};

use super::variants::{
    Variant, HAPROXY_ADDRESS, NFTABLES_ADDRESS, NFTABLES_SNAT_ADDRESS, VIP_ROUND_ROBIN,
};
use crate::lab::{Lab, Node, HOST_INTERFACE};

/// Ephemeral ports of the client: the widest range, so that a variant's
/// connections per second, not the port supply, set its pace.
const CLIENT_PORT_RANGE: &str = "1024 65535";

/// Makes the lab ready for every variant.
pub fn prepare(lab: &Lab) -> Result<()> {
    // lb1 answers ARP for the addresses the client targets, and for the
    // one nftables SNATs to.
    for address in [
        VIP_ROUND_ROBIN,
        HAPROXY_ADDRESS,
        NFTABLES_ADDRESS,
        NFTABLES_SNAT_ADDRESS,
    ] {
        add_address(lab, Node::Lb1, address, HOST_INTERFACE)?;
    }
    // nftables DNAT forwards through lb1, out of the interface it came in
    // on: no ICMP redirects telling the client to go to the web servers.
    sysctl(lab, Node::Lb1, "net.ipv4.ip_forward", "1")?;
    for interface in ["all", HOST_INTERFACE] {
        sysctl(
            lab,
            Node::Lb1,
            &format!("net.ipv4.conf.{interface}.send_redirects"),
            "0",
        )?;
    }
    // Direct server return for the round-robin VIP, like the lab's VIP.
    for web in Node::WEBS {
        add_address(lab, web, VIP_ROUND_ROBIN, "lo")?;
    }
    sysctl(
        lab,
        Node::Client,
        "net.ipv4.ip_local_port_range",
        CLIENT_PORT_RANGE,
    )?;
    for variant in Variant::ALL {
        let source = variant.client_source();
        add_address(lab, Node::Client, source, HOST_INTERFACE)?;
        for target in variant.targets() {
            lab.run(
                Node::Client,
                "ip",
                &[
                    "route",
                    "replace",
                    &format!("{target}/32"),
                    "dev",
                    HOST_INTERFACE,
                    "src",
                    &source.to_string(),
                ],
            )
            .with_context(|| format!("routing {target} from {source} in the client"))?;
        }
    }
    Ok(())
}

fn add_address(lab: &Lab, node: Node, address: Ipv4Addr, device: &str) -> Result<()> {
    lab.run(
        node,
        "ip",
        &["addr", "add", &format!("{address}/32"), "dev", device],
    )
    .with_context(|| format!("adding {address} to {device} of {node}"))?;
    Ok(())
}

fn sysctl(lab: &Lab, node: Node, key: &str, value: &str) -> Result<()> {
    lab.run(node, "sysctl", &["-q", "-w", &format!("{key}={value}")])
        .with_context(|| format!("setting {key} in {node}"))?;
    Ok(())
}
