//! Who owns a TCP socket on this host: the kernel's sock_diag netlink interface answers that
//! for an exact address pair, as `ss -e` shows it. Any process may ask, so this works for a
//! daemon without privileges. Used both ways round: for the client of one of our loopback
//! listeners (`server::peer`), and for the listener behind a loopback server we connect to
//! (`trust`).

use std::io;
use std::net::{IpAddr, SocketAddr};

use netlink_packet_core::{NLM_F_REQUEST, NetlinkHeader, NetlinkMessage, NetlinkPayload};
use netlink_packet_sock_diag::SockDiagMessage;
use netlink_packet_sock_diag::constants::{
    AF_INET, AF_INET6, IPPROTO_TCP, TCP_ESTABLISHED, TCP_FIN_WAIT1, TCP_FIN_WAIT2, TCP_TIME_WAIT,
};
use netlink_packet_sock_diag::inet::{ExtensionFlags, InetRequest, SocketId, StateFlags};
use netlink_sys::protocols::NETLINK_SOCK_DIAG;
use netlink_sys::{Socket, SocketAddr as NetlinkAddr};

/// `TCP_NEW_SYN_RECV` (include/net/tcp_states.h): a half-open connection's request socket.
/// The crate's constants stop at `TCP_CLOSING`.
const TCP_NEW_SYN_RECV: u8 = 12;

/// One TCP socket as the kernel describes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TcpSocket {
    /// The uid that created the socket; an accepted connection carries its listener's.
    pub uid: u32,
    /// The socket's inode: 0 when no process holds it (not yet accepted, or closed).
    pub inode: u32,
    /// `TCP_ESTABLISHED` and so on (include/net/tcp_states.h).
    pub state: u8,
}

impl TcpSocket {
    /// Whether the uid means anything. TIME_WAIT and NEW_SYN_RECV entries are the kernel's
    /// mini-sockets, which no process owns: sock_diag reports them as uid 0, which is not
    /// root's word but nobody's.
    pub fn has_owner(&self) -> bool {
        !matches!(self.state, TCP_TIME_WAIT | TCP_NEW_SYN_RECV)
    }

    /// Whether a process holds the socket now: it has an owner and an inode.
    pub fn is_held(&self) -> bool {
        self.has_owner() && self.inode != 0
    }

    /// Whether it is one end of a connection that has carried data both ways: established, or
    /// closing its own side after sending. Not a listener, whose address an exact lookup may
    /// answer with when no connection has the pair.
    pub fn is_connected(&self) -> bool {
        matches!(self.state, TCP_ESTABLISHED | TCP_FIN_WAIT1 | TCP_FIN_WAIT2)
    }
}

/// The TCP socket bound to `source` and connected to `destination`, if there is one.
pub(crate) fn lookup(source: SocketAddr, destination: SocketAddr) -> io::Result<TcpSocket> {
    let family = match (source.ip(), destination.ip()) {
        (IpAddr::V4(_), IpAddr::V4(_)) => AF_INET,
        (IpAddr::V6(_), IpAddr::V6(_)) => AF_INET6,
        _ => return Err(io::Error::new(io::ErrorKind::InvalidInput, "mixed address families")),
    };
    let mut socket = Socket::new(NETLINK_SOCK_DIAG)?;
    socket.bind_auto()?;
    socket.connect(&NetlinkAddr::new(0, 0))?;
    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST;
    let mut request = NetlinkMessage::new(
        header,
        SockDiagMessage::InetRequest(InetRequest {
            family,
            protocol: IPPROTO_TCP,
            extensions: ExtensionFlags::empty(),
            states: StateFlags::all(),
            socket_id: SocketId {
                source_port: source.port(),
                destination_port: destination.port(),
                source_address: source.ip(),
                destination_address: destination.ip(),
                interface_id: 0,
                // All ones: "no cookie", look the socket up by its addresses.
                cookie: [0xff; 8],
            },
        })
        .into(),
    );
    request.finalize();
    let mut buf = vec![0; request.buffer_len()];
    request.serialize(&mut buf);
    socket.send(&buf, 0)?;

    let mut answer = vec![0; 4096];
    let size = socket.recv(&mut &mut answer[..], 0)?;
    let message = <NetlinkMessage<SockDiagMessage>>::deserialize(&answer[..size])
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
    match message.payload {
        NetlinkPayload::InnerMessage(SockDiagMessage::InetResponse(response)) => {
            let header = response.header;
            Ok(TcpSocket { uid: header.uid, inode: header.inode, state: header.state })
        }
        NetlinkPayload::Error(error) => Err(error.to_io()),
        other => Err(io::Error::new(io::ErrorKind::InvalidData, format!("unexpected answer {other:?}"))),
    }
}

/// A state's name as `ss` prints it, for messages.
pub(crate) fn state_name(state: u8) -> &'static str {
    match state {
        1 => "ESTAB",
        2 => "SYN-SENT",
        3 => "SYN-RECV",
        4 => "FIN-WAIT-1",
        5 => "FIN-WAIT-2",
        6 => "TIME-WAIT",
        7 => "CLOSE",
        8 => "CLOSE-WAIT",
        9 => "LAST-ACK",
        10 => "LISTEN",
        11 => "CLOSING",
        12 => "NEW-SYN-RECV",
        _ => "unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn a_connection_is_found_with_its_owner_and_inode() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let found = lookup(client.local_addr().unwrap(), listener.local_addr().unwrap()).unwrap();
        assert_eq!(found.uid, nix::unistd::geteuid().as_raw());
        assert!(found.is_held(), "{found:?}");
        // Not accepted yet: the server's end has its listener's owner but no inode.
        let server_end = lookup(listener.local_addr().unwrap(), client.local_addr().unwrap()).unwrap();
        assert!(server_end.has_owner() && !server_end.is_held(), "{server_end:?}");
        assert_eq!(server_end.uid, nix::unistd::geteuid().as_raw());
    }

    #[test]
    fn a_closed_socket_in_time_wait_has_no_owner() {
        let listener = std::net::TcpListener::bind("[::1]:0").unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        let (ours, theirs) = (client.local_addr().unwrap(), listener.local_addr().unwrap());
        // The side that closes first goes to TIME_WAIT once the other side closes too.
        drop(client);
        drop(server);
        let deadline = Instant::now() + Duration::from_secs(5);
        let found = loop {
            match lookup(ours, theirs) {
                Ok(found) if found.state == TCP_TIME_WAIT => break found,
                _ => assert!(Instant::now() < deadline, "the socket never reached TIME_WAIT"),
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        assert_eq!((found.uid, found.inode), (0, 0), "the kernel reports a mini-socket as uid 0");
        assert!(!found.has_owner() && !found.is_held());
    }
}
