//! Who is on the other end of a connection, and whether they may be served.
//!
//! On a Unix socket the kernel says (`SO_PEERCRED`). On loopback TCP nothing in the connection
//! does, but the kernel knows which local socket is the other end and who owns it: the
//! sock_diag netlink interface answers that for an exact address pair, as `ss -e` shows it. Any
//! process may ask, so this works for a daemon without privileges. A port number alone proves
//! nothing: any local user can connect from any port.

use std::io;
use std::net::{IpAddr, SocketAddr};

use netlink_packet_core::{NLM_F_REQUEST, NetlinkHeader, NetlinkMessage, NetlinkPayload};
use netlink_packet_sock_diag::SockDiagMessage;
use netlink_packet_sock_diag::constants::{AF_INET, AF_INET6, IPPROTO_TCP};
use netlink_packet_sock_diag::inet::{ExtensionFlags, InetRequest, SocketId, StateFlags};
use netlink_sys::protocols::NETLINK_SOCK_DIAG;
use netlink_sys::{Socket, SocketAddr as NetlinkAddr};

/// A connection's peer, as far as the kernel tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer {
    pub uid: u32,
    /// The peer process's gid on a Unix socket. TCP does not tell: there the ACL takes the
    /// primary group of `uid`, looked up only when `allow_gids` has to decide.
    pub gid: Option<u32>,
    pub pid: Option<i32>,
}

/// Who may be served: root, the daemon's own uid, and the configured uids and gids.
#[derive(Debug, Clone)]
pub struct Acl {
    own_uid: u32,
    uids: Vec<u32>,
    gids: Vec<u32>,
}

impl Acl {
    pub fn new(uids: &[u32], gids: &[u32]) -> Acl {
        Acl { own_uid: nix::unistd::geteuid().as_raw(), uids: uids.to_vec(), gids: gids.to_vec() }
    }

    pub fn allows(&self, peer: &Peer) -> bool {
        if peer.uid == 0 || peer.uid == self.own_uid || self.uids.contains(&peer.uid) {
            return true;
        }
        if self.gids.is_empty() {
            return false;
        }
        let gid = peer.gid.or_else(|| primary_gid(peer.uid));
        gid.is_some_and(|gid| self.gids.contains(&gid))
    }
}

/// The peer of a Unix socket connection.
pub(crate) fn of_unix(stream: &tokio::net::UnixStream) -> io::Result<Peer> {
    let cred = stream.peer_cred()?;
    Ok(Peer { uid: cred.uid(), gid: Some(cred.gid()), pid: cred.pid() })
}

/// The peer of a loopback TCP connection that `local` accepted from `remote`: the owner of the
/// socket at `remote` whose other end is `local`.
pub(crate) fn of_tcp(local: SocketAddr, remote: SocketAddr) -> io::Result<Peer> {
    Ok(Peer { uid: socket_owner(remote, local)?, gid: None, pid: None })
}

/// The user database's primary group of `uid` (a file read, or a directory service's answer).
fn primary_gid(uid: u32) -> Option<u32> {
    nix::unistd::User::from_uid(uid.into()).ok().flatten().map(|user| user.gid.as_raw())
}

/// Asks sock_diag for the TCP socket bound to `source` and connected to `destination`.
fn socket_owner(source: SocketAddr, destination: SocketAddr) -> io::Result<u32> {
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
        NetlinkPayload::InnerMessage(SockDiagMessage::InetResponse(response)) => Ok(response.header.uid),
        NetlinkPayload::Error(error) => Err(error.to_io()),
        other => Err(io::Error::new(io::ErrorKind::InvalidData, format!("unexpected answer {other:?}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_acl_admits_root_self_and_the_configured_ids_only() {
        let acl = Acl { own_uid: 990, uids: vec![1000], gids: vec![997] };
        let peer = |uid, gid| Peer { uid, gid, pid: None };
        assert!(acl.allows(&peer(0, Some(0))));
        assert!(acl.allows(&peer(990, Some(990))));
        assert!(acl.allows(&peer(1000, Some(1000))));
        assert!(acl.allows(&peer(1234, Some(997))));
        assert!(!acl.allows(&peer(65534, Some(65534))));
        assert!(!acl.allows(&peer(65534, None)));
    }

    #[test]
    fn without_a_gid_the_acl_takes_the_uids_primary_group() {
        let nobody = nix::unistd::User::from_name("nobody").unwrap().expect("a nobody user");
        let (uid, group) = (nobody.uid.as_raw(), nobody.gid.as_raw());
        let tcp_peer = Peer { uid, gid: None, pid: None };
        assert!(Acl { own_uid: 990, uids: vec![], gids: vec![group] }.allows(&tcp_peer));
        assert!(!Acl { own_uid: 990, uids: vec![], gids: vec![group.wrapping_add(1)] }.allows(&tcp_peer));
    }

    #[test]
    fn a_loopback_tcp_peer_is_found_with_its_uid() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (_, remote) = listener.accept().unwrap();
        let peer = of_tcp(listener.local_addr().unwrap(), remote).expect("sock_diag answers");
        assert_eq!(peer.uid, nix::unistd::geteuid().as_raw());
        // A pair that no socket has is not found.
        drop(client);
        let nobody: SocketAddr = "127.0.0.1:1".parse().unwrap();
        assert!(of_tcp(listener.local_addr().unwrap(), nobody).is_err());
    }
}
