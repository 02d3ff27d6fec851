//! What an adversarial run broke, each with the test that shows it fixed.

use std::{
    io::{Read, Write},
    net::{Ipv4Addr, SocketAddrV4, TcpStream},
    time::Duration,
};

use netd::netns::Netns;
use netd_tests::{
    Sandbox,
    netd::{EBPF_NFT_HOST, Netd},
    sandbox::HOST_UPLINK,
    sockets::{serve_tcp_echo, tcp_listener},
    status::counter,
};

fn guest(netd: &Netd, network: &str, guest: &str) -> Netns {
    let name = format!("{}g-{network}.{guest}", netd.prefix());
    Netns::open(&name).unwrap_or_else(|err| panic!("opening namespace {name}: {err:#}"))
}

/// One exchange through `to` from `ns`, with short timeouts: whether the
/// echo came back.
fn reaches(ns: &Netns, to: SocketAddrV4) -> bool {
    let timeout = Duration::from_millis(700);
    ns.run_in(|| -> std::io::Result<bool> {
        let mut stream = TcpStream::connect_timeout(&to.into(), timeout)?;
        stream.set_read_timeout(Some(timeout))?;
        stream.write_all(b"x")?;
        let mut buf = [0u8; 256];
        let n = stream.read(&mut buf)?;
        Ok(buf[..n].ends_with(b"x"))
    })
    .expect("entering the namespace")
    .unwrap_or(false)
}

/// A cut between two guests holds whatever way their packets take: through
/// a published port (at the host link's address or the host's own) as well
/// as directly. The eBPF gateway, with either host side.
fn a_cut_holds_through_published_ports(dataplane: &str) {
    let sandbox = Sandbox::new();
    let netd = Netd::start_with_dataplane(&sandbox, dataplane);
    netd.ok(&["network", "create", "web"]);
    for g in ["a1", "a2", "a3"] {
        netd.ok(&["guest", "add", "web", g]);
    }
    netd.ok(&["port", "add", "web", "a2", "8080:80"]);
    let a1 = guest(&netd, "web", "a1");
    let a2 = guest(&netd, "web", "a2");
    let a3 = guest(&netd, "web", "a3");
    serve_tcp_echo(tcp_listener(
        &a2,
        SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 80),
    ));
    let published = [
        SocketAddrV4::new(Ipv4Addr::new(172, 18, 255, 2), 8080),
        SocketAddrV4::new(HOST_UPLINK, 8080),
    ];
    for to in published {
        assert!(reaches(&a1, to), "before the cut, a1 reaches a2 at {to}");
    }
    for verb in [
        vec!["disjoint", "a1", "--", "a2", "a3"],
        vec!["cut", "--from", "a1", "--to", "a2"],
        vec!["isolate", "a1", "--keep-outside"],
    ] {
        let mut args = vec!["partition", "web"];
        args.extend(verb.iter().copied());
        netd.ok(&args);
        for to in published {
            assert!(
                !reaches(&a1, to),
                "{verb:?}: a1 must not reach a2 through its published port at {to}"
            );
        }
        if verb[0] != "isolate" {
            assert!(
                reaches(&a3, published[1]),
                "{verb:?}: a3 is not cut from a2 and still reaches it"
            );
        }
        netd.ok(&["partition", "web", "heal"]);
        assert!(reaches(&a1, published[1]), "healed: a1 reaches a2 again");
    }
    let status = netd.json(&["status"]);
    assert!(
        counter(&status, "web", "dropped_partition") > 0,
        "the cut packets are counted: {status}"
    );
}

#[test]
fn ebpf_a_cut_holds_through_published_ports() {
    a_cut_holds_through_published_ports("ebpf");
}

#[test]
fn ebpf_nft_host_a_cut_holds_through_published_ports() {
    a_cut_holds_through_published_ports(EBPF_NFT_HOST);
}
