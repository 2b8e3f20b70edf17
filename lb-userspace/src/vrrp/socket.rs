//! The raw IPv4 sockets (protocol 112) that carry adverts: one joined to
//! 224.0.0.18 on the interface for receiving, one bound to the primary address
//! for sending with TTL 255 to the group or to each unicast peer.
//!
//! Two sockets, because a raw socket bound to an address only receives
//! datagrams addressed to it (never the group), while sending from an unbound
//! one would leave the source address to the kernel's choice, and the source
//! is what breaks ties between equal priorities.

use std::io::{self, Read};
use std::net::{Ipv4Addr, SocketAddrV4};

use socket2::{Domain, InterfaceIndexOrAddress, Protocol, SockAddr, SockFilter, Socket, Type};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

use super::packet::{Advert, IP_PROTOCOL, MULTICAST_GROUP, REQUIRED_TTL};

/// IPTOS_PREC_INTERNETCONTROL, as routing protocols (and keepalived) mark adverts.
const TOS_INTERNET_CONTROL: u32 = 0xc0;
/// The largest VRRP message: header and 255 IPv4 addresses.
const MAX_MESSAGE_LEN: usize = 8 + 4 * 255;
/// Classic BPF `ret #0`: accept nothing.
const DROP_ALL: [SockFilter; 1] = [SockFilter::new(0x06, 0, 0, 0)];

/// Sends and receives adverts on one interface.
#[derive(Debug)]
pub struct AdvertSocket {
    receiver: AsyncFd<Socket>,
    sender: Socket,
    source: Ipv4Addr,
    destinations: Vec<Ipv4Addr>,
}

impl AdvertSocket {
    /// Opens both sockets on `interface` (index `ifindex`), sending from
    /// `source` to the multicast group, or to `unicast_peers` when not empty.
    /// Must be called inside a tokio runtime.
    pub fn open(
        interface: &str,
        ifindex: u32,
        source: Ipv4Addr,
        unicast_peers: &[Ipv4Addr],
    ) -> io::Result<Self> {
        let destinations = if unicast_peers.is_empty() {
            vec![MULTICAST_GROUP]
        } else {
            unicast_peers.to_vec()
        };

        let receiver = raw_vrrp_socket(interface)?;
        if unicast_peers.is_empty() {
            receiver.set_multicast_all_v4(false)?;
            receiver
                .join_multicast_v4_n(&MULTICAST_GROUP, &InterfaceIndexOrAddress::Index(ifindex))?;
        }

        let sender = raw_vrrp_socket(interface)?;
        sender.bind(&SockAddr::from(SocketAddrV4::new(source, 0)))?;
        sender.set_multicast_if_v4(&source)?;
        sender.set_multicast_ttl_v4(u32::from(REQUIRED_TTL))?;
        sender.set_ttl_v4(u32::from(REQUIRED_TTL))?;
        sender.set_multicast_loop_v4(false)?;
        sender.set_tos_v4(TOS_INTERNET_CONTROL)?;
        // Bound to the primary address it would queue unicast adverts nobody reads.
        sender.attach_filter(&DROP_ALL)?;

        // SAFETY: `Socket` owns its descriptor and `as_raw_fd` always returns
        // that one; the `AsyncFd` owns the socket until it is dropped and only
        // lends it out by shared reference, so the descriptor stays open and
        // unchanged for the registration's whole life.
        let receiver = unsafe { AsyncFd::register_with_interest(receiver, Interest::READABLE) }
            .map_err(|error| error.into_parts().1)?;
        Ok(AdvertSocket {
            receiver,
            sender,
            source,
            destinations,
        })
    }

    /// Waits for the next datagram (IPv4 header included) and returns its length.
    pub async fn recv(&self, buffer: &mut [u8]) -> io::Result<usize> {
        loop {
            let mut guard = self.receiver.readable().await?;
            match guard.try_io(|socket| {
                let mut socket: &Socket = socket.get_ref();
                socket.read(buffer)
            }) {
                Ok(result) => return result,
                Err(_would_block) => continue,
            }
        }
    }

    /// Sends `advert` to every destination; never blocks. The first error
    /// is returned after trying them all.
    pub fn send(&self, advert: &Advert) -> io::Result<()> {
        let mut message = [0u8; MAX_MESSAGE_LEN];
        let mut result = Ok(());
        for &destination in &self.destinations {
            let sent = advert
                .emit(&mut message, self.source, destination)
                .map_err(|error| io::Error::new(io::ErrorKind::InvalidInput, error))
                .and_then(|len| {
                    let address = SockAddr::from(SocketAddrV4::new(destination, 0));
                    self.sender.send_to(&message[..len], &address)
                });
            if let Err(error) = sent {
                result = result.and(Err(error));
            }
        }
        result
    }
}

fn raw_vrrp_socket(interface: &str) -> io::Result<Socket> {
    let socket = Socket::new(
        Domain::IPV4,
        Type::RAW,
        Some(Protocol::from(i32::from(IP_PROTOCOL))),
    )?;
    socket.set_nonblocking(true)?;
    socket.bind_device(Some(interface.as_bytes()))?;
    Ok(socket)
}
