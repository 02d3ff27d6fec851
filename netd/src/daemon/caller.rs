//! Who is calling the API: the host, or a guest (the socket bind-mounted
//! into its container, or `netd exec NETWORK GUEST -- netd ...`). Decided
//! from the connected process (SO_PEERCRED) and the network namespace it is
//! in, never from anything the request says. A guest may only partition its
//! own network; every other request from a guest is refused.

use std::{
    fmt,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
};

use axum::{
    extract::{Request, connect_info::Connected},
    middleware::Next,
    response::{IntoResponse, Response},
    serve::IncomingStream,
};
use tokio::net::UnixListener;

use super::error::{ServiceError, ServiceResult};
use crate::netns::Netns;

/// The peer of an accepted API connection, as the kernel reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerCred {
    /// None when the kernel gave no process (a peer in a PID namespace the
    /// daemon cannot see).
    pub pid: Option<i32>,
}

impl Connected<IncomingStream<'_, UnixListener>> for PeerCred {
    fn connect_info(stream: IncomingStream<'_, UnixListener>) -> Self {
        PeerCred::of(stream.io())
    }
}

impl PeerCred {
    /// The kernel's word on who is at the other end of `stream`.
    pub fn of(stream: &tokio::net::UnixStream) -> PeerCred {
        PeerCred {
            pid: stream
                .peer_cred()
                .ok()
                .and_then(|cred| cred.pid())
                .filter(|&pid| pid > 0),
        }
    }
}

/// Where a request comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Caller {
    /// The daemon's own network namespace.
    Host,
    /// A guest's network namespace.
    Guest { network: String, guest: String },
}

/// "host" or "guest NAME": how `show` says who set a partition (the
/// network is the partition's own).
impl fmt::Display for Caller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Caller::Host => f.write_str("host"),
            Caller::Guest { guest, .. } => write!(f, "guest {guest}"),
        }
    }
}

impl Caller {
    /// The network a partition request acts on: the one it names, which a
    /// guest may only name if it is its own; or, when it names none, the
    /// caller's own network. [`Caller::named_network`], then
    /// [`Caller::may_partition`].
    pub fn partition_network(&self, named: Option<&str>) -> ServiceResult<String> {
        let network = self.named_network(named)?;
        self.may_partition(&network)?;
        Ok(network)
    }

    /// The network a partition request names, or, when it names none, the
    /// caller's own; the host must name one. Says nothing of permission.
    pub fn named_network(&self, named: Option<&str>) -> ServiceResult<String> {
        match (self, named) {
            (_, Some(network)) => Ok(network.to_owned()),
            (Caller::Host, None) => Err(ServiceError::NotFound(
                "this request names no network: from the host, say which network, \
                 e.g. `netd partition web show`"
                    .to_owned(),
            )),
            (Caller::Guest { network, .. }, None) => Ok(network.clone()),
        }
    }

    /// The partition permission, checked once per request: the host may
    /// partition any network, a guest only its own.
    pub fn may_partition(&self, named: &str) -> ServiceResult<()> {
        match self {
            Caller::Host => Ok(()),
            Caller::Guest { network, .. } if named == network => Ok(()),
            Caller::Guest { network, guest } => Err(ServiceError::Forbidden(format!(
                "guest {guest} of network {network} asked to partition network {named:?}: \
                 a guest may only partition its own network; name no network \
                 (`netd partition isolate ...`) to act on {network}"
            ))),
        }
    }

    /// Refuses guests: every route but the partition ones is the host's.
    pub fn require_host(&self) -> ServiceResult<()> {
        match self {
            Caller::Host => Ok(()),
            Caller::Guest { network, guest } => Err(ServiceError::Forbidden(format!(
                "this request comes from inside guest {guest} of network {network}, and a guest \
                 may only partition its own network (`netd partition ...`): run other commands \
                 from the host"
            ))),
        }
    }
}

/// Who is in the namespace with inode `caller`: the host if it is the
/// daemon's own (`host`), else the first guest whose namespace it is.
/// Guests are tried lazily, since finding a guest's inode opens its
/// namespace. None: neither.
pub fn classify<'a>(
    caller: u64,
    host: u64,
    guests: impl IntoIterator<Item = (&'a str, &'a str, Option<u64>)>,
) -> Option<Caller> {
    if caller == host {
        return Some(Caller::Host);
    }
    guests
        .into_iter()
        .find(|(_, _, inode)| *inode == Some(caller))
        .map(|(network, guest, _)| Caller::Guest {
            network: network.to_owned(),
            guest: guest.to_owned(),
        })
}

/// Which network namespace `peer` calls from, and the daemon's own; a
/// caller whose namespace cannot be read is refused. Telling the host
/// ([`Placed::is_host`]) needs no look at the state, so the common request
/// never waits for the service to learn who sent it; other callers are
/// placed among the guests by [`identify`].
pub fn place(peer: &PeerCred) -> ServiceResult<Placed> {
    let Some(pid) = peer.pid else {
        return Err(ServiceError::Forbidden(
            "cannot tell where this request comes from: the kernel gave no process id for \
             the connection (is the caller in a PID namespace the daemon cannot see?); \
             call from the host, or from a guest with `netd exec NETWORK GUEST -- netd ...`"
                .to_owned(),
        ));
    };
    let caller = namespace_inode(&format!("/proc/{pid}/ns/net")).map_err(|err| {
        ServiceError::Forbidden(format!(
            "cannot tell which network namespace process {pid} is in ({err:#}): \
             call from the host, or from a guest"
        ))
    })?;
    let host = namespace_inode("/proc/self/ns/net")?;
    Ok(Placed { caller, host })
}

/// The caller's namespace and the daemon's, by inode (what [`place`]
/// found).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Placed {
    caller: u64,
    host: u64,
}

impl Placed {
    pub fn is_host(&self) -> bool {
        self.caller == self.host
    }
}

/// Who the caller `placed` is, among `guests` (network, guest, namespace
/// path; as `Service::guest_namespaces` lists them). A caller that cannot
/// be placed (a namespace that is neither the host's nor a guest's) is
/// refused: a guest must never pass for the host.
pub fn identify(placed: Placed, guests: &[(&str, &str, PathBuf)]) -> ServiceResult<Caller> {
    let Placed { caller, host } = placed;
    let guests = guests.iter().map(|(network, guest, path)| {
        let inode = Netns::open_path(guest, path)
            .and_then(|netns| netns.inode())
            .ok();
        (*network, *guest, inode)
    });
    classify(caller, host, guests).ok_or_else(|| {
        ServiceError::Forbidden(format!(
            "this request comes from a network namespace (inode {caller}) that is neither \
             the daemon's nor a guest's: call from the host, or from a guest with \
             `netd exec NETWORK GUEST -- netd ...`"
        ))
    })
}

fn namespace_inode(path: &str) -> anyhow::Result<u64> {
    Ok(std::fs::metadata(Path::new(path))?.ino())
}

/// Route layer on every route but the partition ones: guests are refused.
pub async fn host_only(request: Request, next: Next) -> Response {
    let allowed = match request.extensions().get::<Caller>() {
        Some(caller) => caller.require_host(),
        None => Err(ServiceError::Forbidden(
            "the caller was not identified: `identify_caller` must run before `host_only`"
                .to_owned(),
        )),
    };
    match allowed {
        Ok(()) => next.run(request).await,
        Err(err) => err.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guest(network: &str, guest: &str) -> Caller {
        Caller::Guest {
            network: network.to_owned(),
            guest: guest.to_owned(),
        }
    }

    #[test]
    fn the_daemons_own_namespace_is_the_host() {
        let guests = [("web", "a", Some(7))];
        assert_eq!(classify(7, 7, guests), Some(Caller::Host));
    }

    #[test]
    fn a_guests_namespace_is_that_guest() {
        let guests = [
            ("web", "a", Some(10)),
            ("db", "pg", Some(11)),
            ("web", "b", None),
        ];
        assert_eq!(classify(11, 1, guests), Some(guest("db", "pg")));
        assert_eq!(classify(10, 1, guests), Some(guest("web", "a")));
    }

    #[test]
    fn any_other_namespace_is_nobody() {
        let guests = [("web", "a", Some(10)), ("web", "b", None)];
        assert_eq!(classify(12, 1, guests), None);
    }

    #[test]
    fn the_host_partitions_the_network_it_names() {
        assert_eq!(Caller::Host.partition_network(Some("web")).unwrap(), "web");
        let err = Caller::Host.partition_network(None).unwrap_err();
        assert_eq!(err.status(), 404);
        assert!(
            err.to_string()
                .starts_with("this request names no network: from the host, say which network"),
            "{err}"
        );
    }

    #[test]
    fn a_guest_partitions_its_own_network_only() {
        let caller = guest("web", "a");
        assert_eq!(caller.partition_network(None).unwrap(), "web");
        assert_eq!(caller.partition_network(Some("web")).unwrap(), "web");
        let err = caller.partition_network(Some("db")).unwrap_err();
        assert_eq!(err.status(), 403);
        assert!(
            err.to_string()
                .contains("a guest may only partition its own network"),
            "{err}"
        );
    }

    #[test]
    fn only_the_host_passes_require_host() {
        assert!(Caller::Host.require_host().is_ok());
        let err = guest("web", "a").require_host().unwrap_err();
        assert_eq!(err.status(), 403);
        assert!(
            err.to_string().contains("inside guest a of network web"),
            "{err}"
        );
    }

    #[test]
    fn callers_print_as_show_names_them() {
        assert_eq!(Caller::Host.to_string(), "host");
        assert_eq!(guest("web", "a").to_string(), "guest a");
    }
}
