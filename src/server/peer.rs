//! Who is on the other end of a connection, and whether they may be served.
//!
//! On a Unix socket the kernel says (`SO_PEERCRED`). On loopback TCP nothing in the connection
//! does, but the kernel knows which local socket is the other end and who owns it
//! ([`sock_diag`]). A port number alone proves nothing: any local user can connect from any
//! port.

use std::io;
use std::net::SocketAddr;
use std::os::fd::AsFd;

use crate::sock_diag;

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
        Acl { own_uid: own_uid(), uids: uids.to_vec(), gids: gids.to_vec() }
    }

    pub fn allows(&self, peer: &Peer) -> bool {
        permits(self.own_uid, &self.uids, &self.gids, peer)
    }
}

/// Whether `peer` is root, `own_uid`, in `uids`, or (when `gids` lists any) in one of `gids`
/// by its primary group. A free function so that a token's lists are checked per request with
/// no allocation and no system call: a hidden token must cost what a missing name costs, or
/// the time of a 404 tells them apart (DESIGN §15).
pub fn permits(own_uid: u32, uids: &[u32], gids: &[u32], peer: &Peer) -> bool {
    if peer.uid == 0 || peer.uid == own_uid || uids.contains(&peer.uid) {
        return true;
    }
    if gids.is_empty() {
        return false;
    }
    let gid = peer.gid.or_else(|| primary_gid(peer.uid));
    gid.is_some_and(|gid| gids.contains(&gid))
}

/// The daemon's effective uid, looked up once.
pub fn own_uid() -> u32 {
    static OWN: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    *OWN.get_or_init(|| nix::unistd::geteuid().as_raw())
}

/// The peer of a Unix socket connection.
pub(crate) fn of_unix(stream: &tokio::net::UnixStream) -> io::Result<Peer> {
    let cred = stream.peer_cred()?;
    Ok(Peer { uid: cred.uid(), gid: Some(cred.gid()), pid: cred.pid() })
}

/// The peer of `stream`, a loopback TCP connection that `local` accepted from `remote`: the
/// owner of the socket at `remote` whose other end is `local`.
///
/// Only a socket a process holds, still connected to ours, names a uid (DESIGN §12). An
/// accepted connection may have waited in the kernel's queue, its request with it, while its
/// client went away; the address pair is then free for a socket that was never part of it:
/// - a client that closed leaves a TIME_WAIT (or NEW_SYN_RECV) entry, which the kernel reports
///   as uid 0: reading that as root would serve a refused user's request;
/// - a client that reset leaves nothing, and the lookup finds whatever holds the pair now: a
///   new connection from another process on the same port, or a listener on that port (the
///   kernel answers an exact lookup with it), whose owner never sent this request.
///
/// So the client's socket must be connected (established, or half-closed after sending), and
/// the pair's server end must be this very stream (its inode), looked up after the client: a
/// new connection on the pair exists only once ours is gone.
pub(crate) fn of_tcp(stream: &impl AsFd, local: SocketAddr, remote: SocketAddr) -> io::Result<Peer> {
    let socket = sock_diag::lookup(remote, local)?;
    if !socket.is_held() || !socket.is_connected() {
        return Err(io::Error::other(format!(
            "the client's socket is no longer held by any process ({})",
            sock_diag::state_name(socket.state)
        )));
    }
    let ours = nix::sys::stat::fstat(stream.as_fd())?.st_ino;
    match sock_diag::lookup(local, remote) {
        Ok(end) if u64::from(end.inode) == ours => Ok(Peer { uid: socket.uid, gid: None, pid: None }),
        _ => Err(io::Error::other(
            "the client's connection is gone: another socket holds its address now".to_owned(),
        )),
    }
}

/// The user database's primary group of `uid` (a file read, or a directory service's answer).
fn primary_gid(uid: u32) -> Option<u32> {
    nix::unistd::User::from_uid(uid.into()).ok().flatten().map(|user| user.gid.as_raw())
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
        let (accepted, remote) = listener.accept().unwrap();
        let local = listener.local_addr().unwrap();
        let peer = of_tcp(&accepted, local, remote).expect("sock_diag answers");
        assert_eq!(peer.uid, nix::unistd::geteuid().as_raw());
        // A pair that no socket has is not found.
        drop(client);
        let nobody: SocketAddr = "127.0.0.1:1".parse().unwrap();
        assert!(of_tcp(&accepted, local, nobody).is_err());
    }

    #[tokio::test]
    async fn a_connection_whose_client_reset_is_not_named_by_who_took_its_port() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let local = listener.local_addr().unwrap();
        // A client that reset its connection while it waited to be accepted.
        let gone = tokio::net::TcpSocket::new_v4().unwrap().connect(local).await.unwrap();
        let port = gone.local_addr().unwrap();
        gone.set_zero_linger().unwrap();
        drop(gone);
        // Another process's socket takes the port: here, a listener on it.
        let taker = std::net::TcpListener::bind(port).unwrap();
        let (accepted, remote) = listener.accept().unwrap();
        assert_eq!(remote, port);
        let refused = of_tcp(&accepted, local, remote).unwrap_err().to_string();
        assert!(refused.contains("LISTEN") || refused.contains("gone"), "{refused}");
        drop(taker);
    }
}
