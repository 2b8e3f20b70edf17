//! Gratuitous ARP: the broadcast ARP request (sender = target = VIP, sender
//! MAC = ours) that makes hosts and switches on the segment move a VIP (or
//! the gateway address, on the servers' segment) to this node at once, sent
//! through an AF_PACKET socket bound to one interface.

use std::io;
use std::net::Ipv4Addr;

use socket2::{Domain, SockAddr, SockAddrStorage, Socket, Type};

const BROADCAST_MAC: [u8; 6] = [0xff; 6];
const ETHERTYPE_ARP: u16 = 0x0806;
const ETHERTYPE_IPV4: u16 = 0x0800;
const ARP_HARDWARE_ETHERNET: u16 = 1;
const ARP_OPERATION_REQUEST: u16 = 1;
/// The shortest Ethernet frame without its FCS; the ARP message is padded to it.
pub const FRAME_LEN: usize = 60;

/// The Ethernet frame of a gratuitous ARP request for `address` from `mac`.
/// The target hardware address is zero, as in an RFC 5227 announcement.
pub fn frame(mac: [u8; 6], address: Ipv4Addr) -> [u8; FRAME_LEN] {
    let mut frame = [0u8; FRAME_LEN];
    let mut at = 0;
    let mut put = |bytes: &[u8]| {
        frame[at..at + bytes.len()].copy_from_slice(bytes);
        at += bytes.len();
    };
    put(&BROADCAST_MAC);
    put(&mac);
    put(&ETHERTYPE_ARP.to_be_bytes());
    put(&ARP_HARDWARE_ETHERNET.to_be_bytes());
    put(&ETHERTYPE_IPV4.to_be_bytes());
    put(&[6, 4]);
    put(&ARP_OPERATION_REQUEST.to_be_bytes());
    put(&mac);
    put(&address.octets());
    put(&[0; 6]);
    put(&address.octets());
    frame
}

/// Sends gratuitous ARPs out of one interface.
#[derive(Debug)]
pub struct GarpSender {
    socket: Socket,
    destination: SockAddr,
    mac: [u8; 6],
}

impl GarpSender {
    /// A send-only packet socket on interface `ifindex` whose MAC is `mac`.
    pub fn open(ifindex: u32, mac: [u8; 6]) -> io::Result<Self> {
        // Protocol 0: the socket receives nothing, so nothing queues up.
        let socket = Socket::new(Domain::PACKET, Type::RAW, None)?;
        socket.set_nonblocking(true)?;
        let ifindex = i32::try_from(ifindex).map_err(|_| {
            io::Error::new(io::ErrorKind::InvalidInput, "interface index out of range")
        })?;
        Ok(GarpSender {
            socket,
            destination: link_layer_broadcast(ifindex),
            mac,
        })
    }

    /// Sends one gratuitous ARP for each of `addresses`; returns the first
    /// error after trying them all.
    pub fn send(&self, addresses: &[Ipv4Addr]) -> io::Result<()> {
        let mut result = Ok(());
        for &address in addresses {
            if let Err(error) = self
                .socket
                .send_to(&frame(self.mac, address), &self.destination)
            {
                result = result.and(Err(error));
            }
        }
        result
    }
}

/// The `sockaddr_ll` of the Ethernet broadcast on interface `ifindex`.
fn link_layer_broadcast(ifindex: i32) -> SockAddr {
    let mut storage = SockAddrStorage::zeroed();
    // SAFETY: `SockAddrStorage` wraps a `sockaddr_storage`, which is larger
    // than and aligned at least as strictly as `sockaddr_ll` (view_as asserts
    // the size), and `sockaddr_ll` is plain data for which zero is valid.
    let address = unsafe { storage.view_as::<libc::sockaddr_ll>() };
    address.sll_family = libc::AF_PACKET as libc::sa_family_t;
    address.sll_protocol = ETHERTYPE_ARP.to_be();
    address.sll_ifindex = ifindex;
    address.sll_halen = 6;
    address.sll_addr[..6].copy_from_slice(&BROADCAST_MAC);
    let len = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
    // SAFETY: the storage holds a fully initialised `sockaddr_ll` of the family
    // it names, and `len` is exactly its size.
    unsafe { SockAddr::new(storage, len) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_is_a_broadcast_arp_request_for_the_vip_from_our_mac() {
        let mac = [0x02, 0, 0, 0, 0, 0x0a];
        let vip = Ipv4Addr::new(10, 99, 0, 100);
        let expected: [u8; 42] = [
            0xff, 0xff, 0xff, 0xff, 0xff, 0xff, // destination: broadcast
            0x02, 0, 0, 0, 0, 0x0a, // source: our MAC
            0x08, 0x06, // ARP
            0x00, 0x01, 0x08, 0x00, 6, 4, // Ethernet, IPv4, lengths
            0x00, 0x01, // request
            0x02, 0, 0, 0, 0, 0x0a, 10, 99, 0, 100, // sender: our MAC, VIP
            0, 0, 0, 0, 0, 0, 10, 99, 0, 100, // target: zero MAC, VIP
        ];
        let frame = frame(mac, vip);
        assert_eq!(frame[..42], expected);
        assert!(frame[42..].iter().all(|&byte| byte == 0), "zero padding");
    }
}
