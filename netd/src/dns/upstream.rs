//! Where names that are not netd's go: the `dns_upstreams` setting, else
//! the nameservers of the host's /etc/resolv.conf (a 127.x one included:
//! the daemon relays from the host's namespace, where it is reachable). The
//! relay itself sends the guest's query as it came and hands back the
//! answer as it came.

use std::{
    net::{IpAddr, SocketAddr},
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{Context, Result, bail};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpStream, UdpSocket},
    time::timeout,
};

use super::DNS_PORT;

/// How long one upstream has to answer before the next is tried.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(2);

/// Where the upstreams come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Upstreams {
    /// `dns_upstreams` in netd.toml.
    Fixed(Vec<SocketAddr>),
    /// The host's resolv.conf, read at each relay (it changes with DHCP,
    /// VPNs and systemd-resolved).
    ResolvConf(PathBuf),
}

impl Upstreams {
    pub fn from_config(fixed: &[SocketAddr]) -> Upstreams {
        if fixed.is_empty() {
            Upstreams::ResolvConf(PathBuf::from("/etc/resolv.conf"))
        } else {
            Upstreams::Fixed(fixed.to_vec())
        }
    }

    /// The upstreams in force now.
    pub fn current(&self) -> Vec<SocketAddr> {
        match self {
            Upstreams::Fixed(fixed) => fixed.clone(),
            Upstreams::ResolvConf(path) => read_resolv_conf(path),
        }
    }
}

fn read_resolv_conf(path: &Path) -> Vec<SocketAddr> {
    std::fs::read_to_string(path)
        .map(|text| nameservers(&text))
        .unwrap_or_default()
}

/// The IPv4 `nameserver` lines of a resolv.conf, on port 53 (netd's
/// networks are IPv4, and so is the relay's socket).
pub fn nameservers(resolv_conf: &str) -> Vec<SocketAddr> {
    resolv_conf
        .lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            (words.next()? == "nameserver").then_some(())?;
            let ip: IpAddr = words.next()?.parse().ok()?;
            ip.is_ipv4().then_some(SocketAddr::new(ip, DNS_PORT))
        })
        .collect()
}

/// `IP` or `IP:PORT`, as `dns_upstreams` takes them.
pub fn parse_upstream(text: &str) -> Result<SocketAddr, String> {
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, DNS_PORT));
    }
    match text.parse::<SocketAddr>() {
        Ok(addr) if addr.is_ipv4() => Ok(addr),
        _ => Err(format!(
            "dns_upstreams entry {text:?} is not an IPv4 address: write IP or IP:PORT, e.g. \
             \"192.0.2.53\" or \"127.0.0.53:53\""
        )),
    }
}

/// Relays a query over UDP to each upstream in turn until one answers.
pub async fn relay_udp(upstreams: &[SocketAddr], query: &[u8]) -> Result<Vec<u8>> {
    for upstream in upstreams {
        match relay_udp_to(*upstream, query).await {
            Ok(answer) => return Ok(answer),
            Err(err) => tracing::debug!("dns upstream {upstream}: {err:#}"),
        }
    }
    bail!("no upstream resolver answered ({} tried)", upstreams.len())
}

async fn relay_udp_to(upstream: SocketAddr, query: &[u8]) -> Result<Vec<u8>> {
    let socket = UdpSocket::bind("0.0.0.0:0").await?;
    socket.connect(upstream).await?;
    socket.send(query).await?;
    let mut buf = vec![0u8; 65_535];
    loop {
        let len = timeout(UPSTREAM_TIMEOUT, socket.recv(&mut buf))
            .await
            .context("timed out")??;
        // Only the answer to this query (same ID) counts.
        if len >= 2 && buf[..2] == query[..2] {
            buf.truncate(len);
            return Ok(buf);
        }
    }
}

/// Relays a query over TCP (length-prefixed, RFC 1035 4.2.2) to each
/// upstream in turn until one answers.
pub async fn relay_tcp(upstreams: &[SocketAddr], query: &[u8]) -> Result<Vec<u8>> {
    for upstream in upstreams {
        match timeout(UPSTREAM_TIMEOUT, relay_tcp_to(*upstream, query)).await {
            Ok(Ok(answer)) => return Ok(answer),
            Ok(Err(err)) => tracing::debug!("dns upstream {upstream} (tcp): {err:#}"),
            Err(_) => tracing::debug!("dns upstream {upstream} (tcp): timed out"),
        }
    }
    bail!(
        "no upstream resolver answered over TCP ({} tried)",
        upstreams.len()
    )
}

async fn relay_tcp_to(upstream: SocketAddr, query: &[u8]) -> Result<Vec<u8>> {
    let mut stream = TcpStream::connect(upstream).await?;
    write_framed(&mut stream, query).await?;
    read_framed(&mut stream)
        .await?
        .context("the upstream closed the connection")
}

/// Reads one length-prefixed message; None at a clean end of stream.
pub async fn read_framed(stream: &mut TcpStream) -> Result<Option<Vec<u8>>> {
    let mut len = [0u8; 2];
    match stream.read_exact(&mut len).await {
        Ok(_) => {}
        Err(err) if err.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(err) => return Err(err.into()),
    }
    let mut message = vec![0u8; usize::from(u16::from_be_bytes(len))];
    stream.read_exact(&mut message).await?;
    Ok(Some(message))
}

/// Writes one length-prefixed message.
pub async fn write_framed(stream: &mut TcpStream, message: &[u8]) -> Result<()> {
    let len = u16::try_from(message.len()).context("a DNS message over 65,535 bytes")?;
    let mut framed = Vec::with_capacity(message.len() + 2);
    framed.extend_from_slice(&len.to_be_bytes());
    framed.extend_from_slice(message);
    stream.write_all(&framed).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_nameservers_are_read_from_resolv_conf() {
        let text = "# generated\nsearch example.org\nnameserver 127.0.0.53\n\
                    nameserver   192.0.2.1 # second\nnameserver 2001:db8::1\nnameserver bogus\noptions edns0\n";
        let expected: Vec<SocketAddr> = vec![
            "127.0.0.53:53".parse().unwrap(),
            "192.0.2.1:53".parse().unwrap(),
        ];
        assert_eq!(nameservers(text), expected);
        assert!(nameservers("").is_empty());
    }

    #[test]
    fn upstreams_are_addresses_with_an_optional_port() {
        assert_eq!(
            parse_upstream("192.0.2.53"),
            Ok("192.0.2.53:53".parse().unwrap())
        );
        assert_eq!(
            parse_upstream("127.0.0.1:5353"),
            Ok("127.0.0.1:5353".parse().unwrap())
        );
        let err = parse_upstream("dns.example").unwrap_err();
        assert!(err.contains("write IP or IP:PORT"), "{err}");
        assert!(parse_upstream("[2001:db8::1]:53").is_err());
    }

    #[test]
    fn fixed_upstreams_win_over_resolv_conf() {
        let fixed: Vec<SocketAddr> = vec!["192.0.2.53:53".parse().unwrap()];
        assert_eq!(Upstreams::from_config(&fixed).current(), fixed);
        assert_eq!(
            Upstreams::from_config(&[]),
            Upstreams::ResolvConf(PathBuf::from("/etc/resolv.conf"))
        );
    }
}
