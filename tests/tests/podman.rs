//! podman (Debian's, CNI backend) runs containers on a netd network through
//! netd-cni: two containers reach each other, a container reaches the
//! sandbox internet through netd's NAT, `-p 8080:80` is reachable at the
//! host's address, `podman rm -f` leaves nothing, and an attachment whose
//! container podman lost is removed by the plugin's GC.

use std::{
    io::{Read, Write},
    net::SocketAddrV4,
};

use netd_tests::{
    Sandbox,
    cni::{self, conf},
    netd::Netd,
    podman::{NETWORK, Podman},
    sandbox::{HOST_UPLINK, INTERNET_SERVER},
    sockets::{serve_tcp_echo, tcp_connect, tcp_listener},
};
use serde_json::json;

/// `netd guest ls web --json`'s guest for podman container `id`.
fn guest_of(netd: &Netd, id: &str) -> Option<serde_json::Value> {
    netd.json(&["guest", "ls", "web"])
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["labels"]["cni.container_id"] == id)
        .cloned()
}

fn ip_of(netd: &Netd, id: &str) -> String {
    let guest = guest_of(netd, id).unwrap_or_else(|| panic!("no guest for container {id}"));
    guest["ip"]
        .as_str()
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_owned()
}

#[test]
fn podman_containers_on_a_netd_network() {
    let sandbox = Sandbox::new();
    let netd = Netd::start(&sandbox);
    netd.ok(&["network", "create", "web"]);
    let podman = Podman::new(&sandbox, &netd, "web").unwrap_or_else(|why| panic!("{why}"));
    let rootfs = podman.rootfs().to_owned();

    let server = podman.ok(&[
        "run",
        "-d",
        "--name",
        "server",
        "--network",
        NETWORK,
        "-p",
        "8080:80",
        "--rootfs",
        &rootfs,
        "/bin/httpd",
        "-f",
        "-p",
        "80",
        "-h",
        "/www",
    ]);
    let server_id = server.trim().to_owned();
    let server_ip = ip_of(&netd, &server_id);

    let fetched = podman.ok(&[
        "run",
        "--rm",
        "--network",
        NETWORK,
        "--rootfs",
        &rootfs,
        "/bin/wget",
        "-q",
        "-O",
        "-",
        &format!("http://{server_ip}/"),
    ]);
    assert_eq!(
        fetched, "hello from a podman container\n",
        "container to container"
    );

    serve_tcp_echo(tcp_listener(
        &sandbox.internet,
        SocketAddrV4::new(INTERNET_SERVER, 7),
    ));
    let answer = podman.ok(&[
        "run",
        "--rm",
        "--network",
        NETWORK,
        "--rootfs",
        &rootfs,
        "/bin/sh",
        "-c",
        &format!("echo out | nc -w 2 {INTERNET_SERVER} 7"),
    ]);
    assert!(
        answer.starts_with(&format!("{HOST_UPLINK}:")),
        "the internet sees the host's address: {answer}"
    );

    let mut stream = tcp_connect(
        &sandbox.internet,
        SocketAddrV4::new(HOST_UPLINK, 8080),
        Some(SocketAddrV4::new(INTERNET_SERVER, 0)),
    )
    .expect("-p 8080:80 is reachable at the host's address");
    stream.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
    let mut page = String::new();
    let _ = stream.read_to_string(&mut page);
    assert!(page.contains("hello from a podman container"), "{page}");
    assert_eq!(netd.json(&["port", "ls"])[0]["spec"], "8080:80/tcp");

    podman.ok(&["rm", "-f", "-t", "0", "server"]);
    assert_eq!(
        netd.json(&["guest", "ls", "web"]),
        json!([]),
        "rm -f leaves no guest"
    );
    assert_eq!(netd.json(&["port", "ls"]), json!([]), "nor a port");
}

#[test]
fn an_attachment_podman_lost_is_removed_by_gc() {
    let sandbox = Sandbox::new();
    let netd = Netd::start(&sandbox);
    netd.ok(&["network", "create", "web"]);
    let podman = Podman::new(&sandbox, &netd, "web").unwrap_or_else(|why| panic!("{why}"));
    let crashed =
        Podman::with_state(&sandbox, &netd, "web", "crashed").unwrap_or_else(|why| panic!("{why}"));
    let sleep = |p: &Podman| {
        let rootfs = p.rootfs().to_owned();
        let id = p.ok(&[
            "run",
            "-d",
            "--network",
            NETWORK,
            "--rootfs",
            &rootfs,
            "/bin/sleep",
            "600",
        ]);
        id.trim().to_owned()
    };
    let kept = sleep(&podman);
    let lost = sleep(&crashed);
    let lost_netns = guest_of(&netd, &lost).unwrap()["netns"]
        .as_str()
        .unwrap()
        .to_owned();

    crashed.lose_everything();
    assert!(
        guest_of(&netd, &lost).is_some(),
        "the attachment outlived podman's state"
    );

    // The runtime's GC (podman 4.3 has none: it is run here as CNI 1.1.0
    // says a runtime runs it), with the attachments the runtime still has.
    let ids = podman.ok(&["ps", "--all", "--no-trunc", "--format", "{{.ID}}"]);
    let valid: Vec<_> = ids
        .split_whitespace()
        .map(|id| json!({"containerID": id, "ifname": "eth0"}))
        .collect();
    let mut gc = conf(&netd, NETWORK, "web", "1.1.0", json!({}));
    gc["cni.dev/valid-attachments"] = json!(valid);
    cni::run(&sandbox, "GC", None, &gc).ok();
    assert!(
        guest_of(&netd, &lost).is_none(),
        "GC removed the lost attachment"
    );
    assert!(guest_of(&netd, &kept).is_some(), "and kept the live one");
    // The lost container's namespace was podman's, outside the sandbox.
    if let Some(name) = lost_netns.strip_prefix("/run/netns/") {
        let _ = netd::netns::Netns::delete(name);
    }
}
