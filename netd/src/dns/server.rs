//! The resolvers' sockets and tasks: one UDP socket and one TCP listener
//! per network, bound to its bridge address on port 53 inside the network's
//! namespace (a socket stays in the namespace it was made in), served by
//! tasks of the daemon's runtime. Relays go out from the daemon's own
//! namespace (see `upstream`).

use std::{
    collections::BTreeMap,
    net::{Ipv4Addr, SocketAddr},
    sync::{Arc, RwLock},
};

use anyhow::{Context, Result};
use tokio::{
    net::{TcpListener, TcpStream, UdpSocket},
    task::{JoinHandle, JoinSet},
};
use tracing::{debug, info};

use super::{
    DNS_PORT,
    directory::{Answer, Directory, Resolved},
    upstream::{self, Upstreams},
    wire::{self, Rcode},
};
use crate::{model::State, netns::Netns};

/// What the resolvers of every network share.
struct Shared {
    directory: RwLock<Directory>,
    upstreams: Upstreams,
}

/// Every network's resolver.
pub struct Resolvers {
    shared: Arc<Shared>,
    running: BTreeMap<String, Running>,
}

/// One network's resolver: where it listens and its tasks, which end (and
/// close its sockets) when it is dropped.
struct Running {
    /// The namespace's identity and the address: a network rebuilt in a new
    /// namespace gets a new resolver.
    netns_id: (u64, u64),
    ip: Ipv4Addr,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl Resolvers {
    pub fn new(upstreams: Upstreams) -> Resolvers {
        Resolvers {
            shared: Arc::new(Shared {
                directory: RwLock::new(Directory::default()),
                upstreams,
            }),
            running: BTreeMap::new(),
        }
    }

    /// Takes `network`'s names from `state` (none if it is gone), the
    /// other networks' left as they are: answered from the next query on.
    pub fn update_network(&self, state: &State, network: &str) {
        self.shared
            .directory
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .update_network(state, network);
    }

    /// Takes the names of `state`: answered from the next query on.
    pub fn update(&self, state: &State) {
        let directory = Directory::from_state(state);
        *self
            .shared
            .directory
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = directory;
    }

    /// `netd resolve`: guests by name from the host.
    pub fn resolve_from_host(&self, name: &str) -> Vec<Resolved> {
        self.shared
            .directory
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .resolve_from_host(name)
    }

    /// Serves `network`'s resolver on `ip`:53 in `netns`, unless it already
    /// runs there. Must be called inside the daemon's runtime.
    pub fn ensure(&mut self, network: &str, netns: &Netns, ip: Ipv4Addr) -> Result<()> {
        let netns_id = netns.identity()?;
        if let Some(running) = self.running.get(network)
            && running.netns_id == netns_id
            && running.ip == ip
            && running.tasks.iter().all(|task| !task.is_finished())
        {
            return Ok(());
        }
        self.stop(network);
        let address = SocketAddr::from((ip, DNS_PORT));
        let (udp, tcp) = netns
            .run_in(|| -> std::io::Result<_> {
                let udp = std::net::UdpSocket::bind(address)?;
                let tcp = std::net::TcpListener::bind(address)?;
                udp.set_nonblocking(true)?;
                tcp.set_nonblocking(true)?;
                Ok((udp, tcp))
            })?
            .with_context(|| {
                format!("binding network {network}'s resolver to {address} (UDP and TCP)")
            })?;
        let udp = Arc::new(UdpSocket::from_std(udp)?);
        let tcp = TcpListener::from_std(tcp)?;
        let tasks = vec![
            tokio::spawn(serve_udp(udp, network.to_owned(), self.shared.clone())),
            tokio::spawn(serve_tcp(tcp, network.to_owned(), self.shared.clone())),
        ];
        info!(network, %address, "resolver serving");
        self.running.insert(
            network.to_owned(),
            Running {
                netns_id,
                ip,
                tasks,
            },
        );
        Ok(())
    }

    /// Stops `network`'s resolver, closing its sockets (they would keep a
    /// deleted namespace alive).
    pub fn stop(&mut self, network: &str) {
        self.running.remove(network);
    }

    /// Stops every resolver.
    pub fn stop_all(&mut self) {
        self.running.clear();
    }
}

/// What the resolver sends back for `message` from `client`: an answer of
/// its own, or the upstream's (relayed over TCP when `tcp`).
async fn respond(
    shared: &Shared,
    network: &str,
    client: Ipv4Addr,
    message: &[u8],
    tcp: bool,
) -> Option<Vec<u8>> {
    let query = match wire::parse_query(message) {
        Ok(query) => query,
        Err(err) => {
            debug!(network, %client, "dns: not a query ({err:?})");
            return wire::servfail_for(message);
        }
    };
    let answer = shared
        .directory
        .read()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .answer(network, client, &query.name, query.qtype);
    let own = |rcode, address| Some(wire::response(message, &query, rcode, address));
    match answer {
        Answer::Address(ip) => own(Rcode::NoError, Some(ip)),
        Answer::NoData => own(Rcode::NoError, None),
        Answer::NxDomain => own(Rcode::NxDomain, None),
        Answer::Refused => own(Rcode::Refused, None),
        Answer::Relay => {
            let upstreams = shared.upstreams.current();
            let relayed = if tcp {
                upstream::relay_tcp(&upstreams, message).await
            } else {
                upstream::relay_udp(&upstreams, message).await
            };
            match relayed {
                Ok(answer) => Some(answer),
                Err(err) => {
                    debug!(network, name = %query.name, "dns relay: {err:#}");
                    own(Rcode::ServFail, None)
                }
            }
        }
    }
}

async fn serve_udp(socket: Arc<UdpSocket>, network: String, shared: Arc<Shared>) {
    // Relays wait on the upstream: each query has its own task, held here
    // so that stopping the resolver stops them too (and closes the socket,
    // which keeps the network's namespace alive).
    let mut queries = JoinSet::new();
    let mut buf = vec![0u8; 65_535];
    loop {
        let received = tokio::select! {
            received = socket.recv_from(&mut buf) => received,
            Some(_) = queries.join_next(), if !queries.is_empty() => continue,
        };
        let Ok((len, SocketAddr::V4(from))) = received else {
            continue;
        };
        let message = buf[..len].to_vec();
        let (socket, network, shared) = (socket.clone(), network.clone(), shared.clone());
        queries.spawn(async move {
            if let Some(answer) = respond(&shared, &network, *from.ip(), &message, false).await {
                let _ = socket.send_to(&answer, from).await;
            }
        });
    }
}

async fn serve_tcp(listener: TcpListener, network: String, shared: Arc<Shared>) {
    // As for UDP: connections end with the resolver.
    let mut connections = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
        };
        let Ok((stream, SocketAddr::V4(from))) = accepted else {
            continue;
        };
        let (network, shared) = (network.clone(), shared.clone());
        connections.spawn(async move {
            let _ = serve_connection(stream, *from.ip(), &network, &shared).await;
        });
    }
}

/// Answers the queries of one TCP connection until the client closes it
/// (or is idle for 10 s, as RFC 7766 suggests servers may).
async fn serve_connection(
    mut stream: TcpStream,
    client: Ipv4Addr,
    network: &str,
    shared: &Shared,
) -> Result<()> {
    let idle = std::time::Duration::from_secs(10);
    while let Ok(Some(message)) =
        tokio::time::timeout(idle, upstream::read_framed(&mut stream)).await?
    {
        if let Some(answer) = respond(shared, network, client, &message, true).await {
            upstream::write_framed(&mut stream, &answer).await?;
        }
    }
    Ok(())
}
