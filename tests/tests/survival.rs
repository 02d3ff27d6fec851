//! What survives the daemon: connections through NAT across kill -9 and a
//! restart, the pinned TCX links a new daemon adopts in place, pinned maps of
//! another layout replaced rather than misread, `cleanup` leaving nothing,
//! and the host's nftables table restored when someone flushes it. Each is
//! checked with real traffic and the live kernel state.

use std::{
    io::{Read, Write},
    net::{Shutdown, SocketAddrV4, TcpStream},
    path::{Path, PathBuf},
    process::Command,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use netd::netns::Netns;
use netd_common::maps;
use netd_tests::{
    Sandbox,
    netd::Netd,
    sandbox::{HOST_UPLINK, INTERNET_SERVER},
    sockets::{serve_tcp_echo, tcp_ask, tcp_connect, tcp_listener},
    status::{drift, status},
    traffic::{ping, run_ok},
};
use serde_json::Value;

/// The programs netd attaches in the gateway namespace, as the kernel names
/// them.
const PROG_FROM_HOST: &str = maps::PROG_GATEWAY_FROM_HOST;
const PROG_FROM_NETWORK: &str = maps::PROG_GATEWAY_FROM_NETWORK;
/// The gateway's veth to the host.
const GATEWAY_HOST_SIDE: &str = "host0";

// ---------------------------------------------------------------------------
// Helpers

fn open(name: &str) -> Netns {
    Netns::open(name).unwrap_or_else(|err| panic!("opening namespace {name}: {err:#}"))
}

fn guest_ns(netd: &Netd, network: &str, guest: &str) -> String {
    format!("{}g-{network}.{guest}", netd.prefix())
}

fn gateway_ns(netd: &Netd) -> String {
    format!("{}gw", netd.prefix())
}

/// A network "web" with one guest "a"; returns the guest's namespace.
fn one_guest(netd: &Netd) -> Netns {
    netd.ok(&["network", "create", "web"]);
    netd.ok(&["guest", "add", "web", "a"]);
    open(&guest_ns(netd, "web", "a"))
}

/// `<bpffs>/netd/v1/`, where the dataplane pins its maps and links.
fn pin_root(sandbox: &Sandbox) -> PathBuf {
    sandbox
        .bpffs_dir
        .join("netd")
        .join(maps::PIN_LAYOUT_VERSION)
}

fn map_pin(sandbox: &Sandbox, map: &str) -> PathBuf {
    pin_root(sandbox).join("maps").join(map)
}

/// The gateway's port to the only network (`nu<slot>`).
fn network_port(gateway: &Netns) -> String {
    let out = gateway
        .command("ip")
        .args(["-j", "link", "show"])
        .output()
        .expect("running ip");
    let links: Value = serde_json::from_slice(&out.stdout).expect("ip JSON");
    let ports: Vec<String> = links
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|link| link["ifname"].as_str())
        .filter(|name| name.starts_with("nu"))
        .map(str::to_owned)
        .collect();
    assert_eq!(ports.len(), 1, "one network, one gateway port: {ports:?}");
    ports[0].clone()
}

/// Serves "echo, and say who you are" on `port` of the internet server.
fn internet_echo(sandbox: &Sandbox, port: u16) {
    serve_tcp_echo(tcp_listener(
        &sandbox.internet,
        SocketAddrV4::new(INTERNET_SERVER, port),
    ));
}

/// A guest reaches the internet server: pings are answered, and a TCP
/// exchange with the echo server on `port` arrives from the host's address
/// (the gateway's SNAT and the host's masquerade both applied).
fn assert_internet_works(guest: &Netns, port: u16, when: &str) {
    assert_eq!(
        ping(guest, INTERNET_SERVER, 3),
        3,
        "{when}: the guest's pings to {INTERNET_SERVER} are not all answered"
    );
    let mut stream = tcp_connect(guest, SocketAddrV4::new(INTERNET_SERVER, port), None)
        .unwrap_or_else(|err| panic!("{when}: connecting to {INTERNET_SERVER}:{port}: {err}"));
    let answer = tcp_ask(&mut stream, "hello");
    assert!(
        answer.starts_with(&format!("{HOST_UPLINK}:")) && answer.ends_with(" hello"),
        "{when}: the server should see the host's address {HOST_UPLINK}: {answer:?}"
    );
}

/// `figures.nat.<what>` of `netd status --json`.
fn nat_figure(netd: &Netd, what: &str) -> u64 {
    let (_, json) = status(netd);
    json["figures"]["nat"][what]
        .as_u64()
        .unwrap_or_else(|| panic!("status has no figures.nat.{what}: {json:#}"))
}

/// `bpftool -j ARGS`, parsed.
fn bpftool_json(args: &[&str]) -> Value {
    let mut cmd = Command::new("bpftool");
    cmd.arg("-j").args(args);
    let out = run_ok(cmd);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("bpftool -j {args:?}: {e}: {out}"))
}

/// What `bpftool map show pinned PATH` says of a pinned map.
fn pinned_map(path: &Path) -> Value {
    bpftool_json(&["map", "show", "pinned", path.to_str().unwrap()])
}

/// One program attached to a TCX hook, and the link holding it.
#[derive(Debug, Clone, PartialEq)]
struct Attached {
    name: String,
    prog_id: u32,
    link_id: u32,
}

/// `union bpf_attr` for BPF_PROG_QUERY (up to `revision`, its last field).
#[repr(C)]
#[derive(Default)]
struct ProgQueryAttr {
    target_ifindex: u32,
    attach_type: u32,
    query_flags: u32,
    attach_flags: u32,
    prog_ids: u64,
    count: u32,
    _pad: u32,
    prog_attach_flags: u64,
    link_ids: u64,
    link_attach_flags: u64,
    revision: u64,
}

const BPF_PROG_QUERY: libc::c_long = 16;
const BPF_TCX_INGRESS: u32 = 46;

/// The programs attached through TCX to `iface`'s ingress in `ns`, in order,
/// as the kernel reports them (the bpftool installed here predates TCX in
/// `bpftool net show`, so ask the kernel directly).
fn tcx_ingress(ns: &Netns, iface: &str) -> Vec<Attached> {
    let ids = ns
        .run_in(|| -> std::io::Result<Vec<(u32, u32)>> {
            let ifindex = nix::net::if_::if_nametoindex(iface).map_err(std::io::Error::from)?;
            let mut prog_ids = [0u32; 16];
            let mut link_ids = [0u32; 16];
            let mut attr = ProgQueryAttr {
                target_ifindex: ifindex,
                attach_type: BPF_TCX_INGRESS,
                prog_ids: prog_ids.as_mut_ptr() as u64,
                count: prog_ids.len() as u32,
                link_ids: link_ids.as_mut_ptr() as u64,
                ..Default::default()
            };
            // SAFETY: BPF_PROG_QUERY with a correctly laid out attr whose
            // pointers lead to arrays of `count` u32s that outlive the call.
            let rc = unsafe {
                libc::syscall(
                    libc::SYS_bpf,
                    BPF_PROG_QUERY,
                    &mut attr as *mut ProgQueryAttr,
                    std::mem::size_of::<ProgQueryAttr>(),
                )
            };
            if rc < 0 {
                return Err(std::io::Error::last_os_error());
            }
            let n = (attr.count as usize).min(prog_ids.len());
            Ok(prog_ids[..n]
                .iter()
                .copied()
                .zip(link_ids[..n].iter().copied())
                .collect())
        })
        .expect("entering the namespace")
        .unwrap_or_else(|err| panic!("querying TCX ingress of {iface} in {}: {err}", ns.name()));
    ids.into_iter()
        .map(|(prog_id, link_id)| {
            let info = bpftool_json(&["prog", "show", "id", &prog_id.to_string()]);
            Attached {
                name: info["name"].as_str().unwrap_or("?").to_string(),
                prog_id,
                link_id,
            }
        })
        .collect()
}

/// Asserts exactly one program, `name`, is attached to `iface`'s ingress
/// through a link; returns it.
fn the_one_program(ns: &Netns, iface: &str, name: &str, when: &str) -> Attached {
    let attached = tcx_ingress(ns, iface);
    assert_eq!(
        attached.len(),
        1,
        "{when}: {iface} should carry exactly one program: {attached:?}"
    );
    assert_eq!(
        attached[0].name, name,
        "{when}: program on {iface}: {attached:?}"
    );
    assert_ne!(
        attached[0].link_id, 0,
        "{when}: {name} on {iface} is attached through a link: {attached:?}"
    );
    attached[0].clone()
}

/// The ids of the programs in cls_bpf filters on `iface`'s ingress in `ns`
/// (netd's guest ports carry theirs so), as `tc -j filter show` reports them.
fn port_filter_programs(ns: &Netns, iface: &str) -> Vec<u64> {
    let out = ns
        .command("tc")
        .args(["-j", "filter", "show", "dev", iface, "ingress"])
        .output()
        .expect("running tc");
    assert!(
        out.status.success(),
        "tc: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let filters: Value = serde_json::from_slice(&out.stdout).expect("tc JSON");
    filters
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|filter| filter["options"]["prog"]["id"].as_u64())
        .collect()
}

/// The id of the guest-port program this daemon loaded (its pin).
fn pinned_guest_port_program(sandbox: &Sandbox) -> u64 {
    pinned_program(sandbox, maps::PROG_GUEST_PORT)
}

/// The id of the program `name` this daemon loaded and pinned.
fn pinned_program(sandbox: &Sandbox, name: &str) -> u64 {
    let pin = pin_root(sandbox).join("programs").join(name);
    bpftool_json(&["prog", "show", "pinned", pin.to_str().unwrap()])["id"]
        .as_u64()
        .unwrap_or_else(|| panic!("no program pinned at {}", pin.display()))
}

/// Whether the kernel still has the BPF link `id`.
fn link_exists(id: u32) -> bool {
    Command::new("bpftool")
        .args(["link", "show", "id", &id.to_string()])
        .output()
        .expect("running bpftool")
        .status
        .success()
}

/// The tables `nft list tables` shows in the sandbox's host namespace.
fn host_nft_tables(sandbox: &Sandbox) -> Vec<String> {
    let mut cmd = sandbox.host_command("nft");
    cmd.args(["list", "tables"]);
    run_ok(cmd)
        .lines()
        .map(|l| l.trim().trim_start_matches("table ").to_string())
        .collect()
}

fn host_has_netd_table(sandbox: &Sandbox) -> bool {
    host_nft_tables(sandbox).iter().any(|t| t == "inet netd")
}

/// Polls `done` every 100 ms until it holds or `timeout` passes.
fn eventually(timeout: Duration, mut done: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    loop {
        if done() {
            return true;
        }
        if start.elapsed() > timeout {
            return false;
        }
        thread::sleep(Duration::from_millis(100));
    }
}

/// Byte `offset` of the stream test's pattern: a period (251) prime to the
/// chunk size, so a lost, repeated or reordered chunk shows.
fn pattern_byte(offset: u64) -> u8 {
    (offset % 251) as u8
}

// ---------------------------------------------------------------------------
// Tests

#[test]
fn a_tcp_stream_through_nat_survives_kill_9_and_restart_without_losing_a_byte() {
    const PORT: u16 = 7100;
    const CHUNK: usize = 8 * 1024;
    let sb = Sandbox::new();
    let mut netd = Netd::start(&sb);
    let guest = one_guest(&netd);

    let listener = tcp_listener(&sb.internet, SocketAddrV4::new(INTERNET_SERVER, PORT));
    let mut client = tcp_connect(&guest, SocketAddrV4::new(INTERNET_SERVER, PORT), None)
        .expect("the guest connects to the internet server");
    client
        .set_write_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let (mut server, peer) = listener.accept().expect("accepting the guest's connection");
    assert_eq!(
        peer.ip(),
        std::net::IpAddr::V4(HOST_UPLINK),
        "the server sees the host's address"
    );
    server
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let received = Arc::new(AtomicU64::new(0));

    let writer = {
        let stop = stop.clone();
        thread::spawn(move || -> (u64, Option<std::io::Error>, TcpStream) {
            let mut sent = 0u64;
            let mut chunk = vec![0u8; CHUNK];
            while !stop.load(Ordering::Relaxed) {
                for (i, byte) in chunk.iter_mut().enumerate() {
                    *byte = pattern_byte(sent + i as u64);
                }
                if let Err(err) = client.write_all(&chunk) {
                    return (sent, Some(err), client);
                }
                sent += CHUNK as u64;
                thread::sleep(Duration::from_millis(5));
            }
            let result = client.shutdown(Shutdown::Write).err();
            (sent, result, client)
        })
    };
    let reader = {
        let received = received.clone();
        thread::spawn(move || -> Result<u64, String> {
            let mut total = 0u64;
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                match server.read(&mut buf) {
                    Ok(0) => return Ok(total),
                    Ok(n) => {
                        for (i, &byte) in buf[..n].iter().enumerate() {
                            let offset = total + i as u64;
                            if byte != pattern_byte(offset) {
                                return Err(format!(
                                    "byte {offset} is {byte}, expected {}",
                                    pattern_byte(offset)
                                ));
                            }
                        }
                        total += n as u64;
                        received.store(total, Ordering::Relaxed);
                    }
                    Err(err) => return Err(format!("reading after {total} bytes: {err}")),
                }
            }
        })
    };

    thread::sleep(Duration::from_secs(1));
    let before_kill = received.load(Ordering::Relaxed);
    assert!(before_kill > 0, "the stream flows before the kill");
    netd.kill9();
    let at_kill = received.load(Ordering::Relaxed);
    thread::sleep(Duration::from_millis(500));
    // Bytes keep arriving with no daemon (waiting longer if TCP happens to
    // be backing off a retransmission right then).
    eventually(Duration::from_secs(10), || {
        received.load(Ordering::Relaxed) > at_kill
    });
    let without_daemon = received.load(Ordering::Relaxed);
    netd.restart();
    let at_restart = received.load(Ordering::Relaxed);
    thread::sleep(Duration::from_millis(1500));
    let snat = nat_figure(&netd, "snat");
    stop.store(true, Ordering::Relaxed);

    let (sent, write_error, client) = writer.join().expect("writer thread");
    let outcome = reader.join().expect("reader thread");
    drop(client);
    println!(
        "sent {sent} bytes; received {before_kill} before the kill, {at_kill} at it, \
         {without_daemon} after 500 ms without a daemon, {at_restart} once restarted; \
         result {outcome:?}"
    );
    assert!(
        write_error.is_none(),
        "the guest's connection errored after {sent} bytes: {write_error:?}\n{}",
        netd.log()
    );
    let total = outcome.unwrap_or_else(|err| panic!("the server's side: {err}"));
    assert_eq!(
        total, sent,
        "the server received every byte written, in order"
    );
    assert!(
        without_daemon > at_kill,
        "bytes kept flowing while no daemon ran ({at_kill} at the kill, {without_daemon} before the restart)"
    );
    assert!(
        at_restart < sent,
        "bytes flowed after the restart too ({at_restart} at the restart, {sent} in all)"
    );
    assert!(
        snat >= 1,
        "the restarted daemon sees the connection in the adopted conntrack table: snat {snat}"
    );
}

#[test]
fn the_restarted_daemon_adopts_the_pinned_links_without_a_gap() {
    const PORT: u16 = 7200;
    let sb = Sandbox::new();
    let mut netd = Netd::start(&sb);
    let guest = one_guest(&netd);
    internet_echo(&sb, PORT);
    assert_internet_works(&guest, PORT, "before the kill");
    let gateway = open(&gateway_ns(&netd));
    let port = network_port(&gateway);

    let host_before = the_one_program(
        &gateway,
        GATEWAY_HOST_SIDE,
        PROG_FROM_HOST,
        "before the kill",
    );
    let net_before = port_filter_programs(&gateway, &port);
    assert_eq!(
        net_before,
        vec![pinned_program(&sb, PROG_FROM_NETWORK)],
        "the network's gateway port carries the daemon's program, once"
    );
    let network = open(&format!("{}n-web", netd.prefix()));
    let guest_port_before = port_filter_programs(&network, "g-a");
    assert_eq!(
        guest_port_before,
        vec![pinned_guest_port_program(&sb)],
        "the guest's port carries the daemon's program, once"
    );

    netd.kill9();
    assert_eq!(
        tcx_ingress(&gateway, GATEWAY_HOST_SIDE),
        vec![host_before.clone()],
        "with no daemon, the host side keeps its program"
    );
    assert_eq!(
        port_filter_programs(&gateway, &port),
        net_before,
        "with no daemon, the network's port keeps its program"
    );
    assert_internet_works(&guest, PORT, "with no daemon running");

    // Pings every 20 ms through the whole restart: a moment without a
    // program on either hook would lose some.
    let mut pinger = guest.command("ping");
    pinger.args(["-n", "-q", "-i", "0.02", "-W", "2", "-c", "150"]);
    pinger.arg(INTERNET_SERVER.to_string());
    let pinger = pinger
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("starting ping");
    thread::sleep(Duration::from_millis(300));
    netd.restart();
    let pings = pinger.wait_with_output().expect("ping");
    let summary = String::from_utf8_lossy(&pings.stdout).into_owned();
    assert!(
        summary.contains("150 packets transmitted, 150 received"),
        "pings through the restart were lost: {summary}"
    );

    let host_after = the_one_program(
        &gateway,
        GATEWAY_HOST_SIDE,
        PROG_FROM_HOST,
        "after the restart",
    );
    assert_eq!(
        host_after.link_id, host_before.link_id,
        "the restarted daemon kept the pinned link ({host_before:?} -> {host_after:?})"
    );
    assert_ne!(
        host_after.prog_id, host_before.prog_id,
        "the link now runs the restarted daemon's program ({host_before:?} -> {host_after:?})"
    );
    let net_after = port_filter_programs(&gateway, &port);
    assert_eq!(
        net_after,
        vec![pinned_program(&sb, PROG_FROM_NETWORK)],
        "after the restart the network's port carries the new daemon's program, once"
    );
    assert_ne!(net_after, net_before, "its filter was replaced in place");
    let guest_port_after = port_filter_programs(&network, "g-a");
    assert_eq!(
        guest_port_after,
        vec![pinned_guest_port_program(&sb)],
        "after the restart the guest's port carries the new daemon's program, once"
    );
    assert_ne!(
        guest_port_after, guest_port_before,
        "the filter was replaced, not left with the old program"
    );
    assert_internet_works(&guest, PORT, "after the restart");
}

#[test]
fn a_pinned_map_with_another_layout_is_replaced_not_reused() {
    const PORT: u16 = 7300;
    let sb = Sandbox::new();
    let mut netd = Netd::start(&sb);
    let guest = one_guest(&netd);
    internet_echo(&sb, PORT);
    assert_internet_works(&guest, PORT, "before the stop");

    netd.stop();
    let pin = map_pin(&sb, maps::CONNTRACK);
    std::fs::remove_file(&pin).unwrap_or_else(|err| panic!("removing {}: {err}", pin.display()));
    let mut create = sb.host_command("bpftool");
    create
        .args(["map", "create"])
        .arg(&pin)
        .args(["type", "hash", "key", "4", "value", "4", "entries", "16"])
        .args(["name", maps::CONNTRACK]);
    run_ok(create);
    let planted = pinned_map(&pin);
    assert_eq!(planted["bytes_key"], 4, "the planted map: {planted}");

    netd.restart();
    let log = netd.log();
    assert!(
        log.contains("replacing a pinned map") && log.contains(maps::CONNTRACK),
        "the log says the pinned {} was replaced:\n{log}",
        maps::CONNTRACK
    );
    let now = pinned_map(&pin);
    assert_eq!(now["bytes_key"], 20, "key size of the pinned map: {now}");
    assert_eq!(
        now["bytes_value"], 32,
        "value size of the pinned map: {now}"
    );
    assert_eq!(now["type"], "lru_hash", "{now}");
    assert_eq!(now["max_entries"], maps::CONNTRACK_MAX_ENTRIES, "{now}");
    assert_ne!(now["id"], planted["id"], "a new map, not the planted one");

    assert_internet_works(&guest, PORT, "after the replacement");
    let entries = nat_figure(&netd, "conntrack_entries");
    assert!(
        entries >= 2,
        "the programs and the daemon share the new conntrack map: {entries} entries"
    );
    let dumped = bpftool_json(&["map", "dump", "pinned", pin.to_str().unwrap()]);
    assert!(
        !dumped.as_array().expect("map dump").is_empty(),
        "the pinned conntrack map holds the connections"
    );
}

#[test]
fn cleanup_removes_every_pin_and_the_host_table() {
    const PORT: u16 = 7400;
    let sb = Sandbox::new();
    let netd = Netd::start(&sb);
    let guest = one_guest(&netd);
    internet_echo(&sb, PORT);
    assert_internet_works(&guest, PORT, "before the cleanup");
    assert!(host_has_netd_table(&sb), "{:?}", host_nft_tables(&sb));
    let gateway = open(&gateway_ns(&netd));
    let links: Vec<u32> = vec![
        the_one_program(
            &gateway,
            GATEWAY_HOST_SIDE,
            PROG_FROM_HOST,
            "before the cleanup",
        )
        .link_id,
    ];
    drop(gateway);
    assert!(
        links.iter().all(|&id| link_exists(id)),
        "bpftool sees the links {links:?} before the cleanup"
    );

    netd.ok(&["cleanup"]);

    let netd_pins = sb.bpffs_dir.join("netd");
    assert!(
        !netd_pins.exists(),
        "{} is still there after cleanup",
        netd_pins.display()
    );
    assert!(
        !host_has_netd_table(&sb),
        "the host still has netd's table: {:?}",
        host_nft_tables(&sb)
    );
    assert_eq!(
        Netns::list_with_prefix(&netd.prefix()),
        Vec::<String>::new(),
        "namespaces left after cleanup"
    );
    assert!(
        eventually(Duration::from_secs(10), || links
            .iter()
            .all(|&id| !link_exists(id))),
        "the programs' TCX links {links:?} outlive the cleanup"
    );
    assert_eq!(netd.json(&["network", "ls"]), serde_json::json!([]));
}

#[test]
fn a_flushed_host_table_is_reported_as_drift_and_restored() {
    const PORT: u16 = 7500;
    let sb = Sandbox::new();
    let netd = Netd::start(&sb);
    let guest = one_guest(&netd);
    internet_echo(&sb, PORT);
    assert_internet_works(&guest, PORT, "before the flush");
    assert!(host_has_netd_table(&sb), "{:?}", host_nft_tables(&sb));

    // The daemon repairs on a 5 s tick; if it happens to land between the
    // delete and `status`, delete again.
    let mut reported = false;
    for _ in 0..3 {
        let mut delete = sb.host_command("nft");
        delete.args(["delete", "table", "inet", "netd"]);
        run_ok(delete);
        let out = netd.cli(&["status"]);
        let (json_code, json) = status(&netd);
        if out.status.code() == Some(0) && json_code == 0 && host_has_netd_table(&sb) {
            continue;
        }
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            out.status.code(),
            Some(3),
            "netd status exits 3 with the host table gone: {stdout}"
        );
        assert!(
            stdout.contains("host nftables table"),
            "netd status names the host nftables table: {stdout}"
        );
        assert_eq!(json_code, 3);
        assert!(
            drift(&json)
                .iter()
                .any(|d| d.contains("host nftables table inet netd")),
            "drift names the host table: {:?}",
            drift(&json)
        );
        reported = true;
        break;
    }
    assert!(
        reported,
        "the table was restored before status could see it, three times"
    );

    assert!(
        eventually(Duration::from_secs(20), || host_has_netd_table(&sb)),
        "the daemon did not restore its host table:\n{}",
        netd.log()
    );
    let (code, json) = status(&netd);
    assert!(
        drift(&json).is_empty(),
        "drift after the repair: {:?}",
        drift(&json)
    );
    assert_eq!(code, 0);
    assert_internet_works(&guest, PORT, "after the repair");
}

/// The keys of a pinned hash map, as bpftool dumps them (hex bytes).
fn pinned_keys(path: &Path) -> Vec<Vec<String>> {
    let dumped = bpftool_json(&["map", "dump", "pinned", path.to_str().unwrap()]);
    dumped
        .as_array()
        .expect("map dump")
        .iter()
        .map(|entry| {
            entry["key"]
                .as_array()
                .expect("key bytes")
                .iter()
                .map(|b| b.as_str().unwrap_or_default().to_owned())
                .collect()
        })
        .collect()
}

/// Entries a crash left in the dataplane's maps for a network and a guest
/// the state does not have (planted here with bpftool while the daemon is
/// down) are gone after the next start, and the real ones stay.
#[test]
fn map_entries_of_networks_and_guests_gone_are_collected_at_start() {
    const PORT: u16 = 7600;
    let sb = Sandbox::new();
    let mut netd = Netd::start(&sb);
    let guest = one_guest(&netd);
    internet_echo(&sb, PORT);
    netd.stop();

    let networks = map_pin(&sb, maps::NETWORKS);
    let guest_ports = map_pin(&sb, maps::GUEST_PORTS);
    let real_networks = pinned_keys(&networks);
    let real_guests = pinned_keys(&guest_ports);
    assert_eq!(real_networks.len(), 1, "{real_networks:?}");
    // Zone 77, and a guest 10.77.0.9 in it: neither exists.
    let mut plant = sb.host_command("bpftool");
    plant.args(["map", "update", "pinned"]).arg(&networks);
    plant.args(["key", "hex", "4d", "00", "00", "00", "value", "hex"]);
    plant.args(std::iter::repeat_n("00", 44));
    run_ok(plant);
    let mut plant = sb.host_command("bpftool");
    plant.args(["map", "update", "pinned"]).arg(&guest_ports);
    plant.args(["key", "hex", "4d", "00", "00", "00", "0a", "4d", "00", "09"]);
    plant
        .args(["value", "hex"])
        .args(std::iter::repeat_n("00", 20));
    run_ok(plant);
    assert_eq!(pinned_keys(&networks).len(), 2, "planted");

    netd.restart();
    assert_eq!(
        pinned_keys(&networks),
        real_networks,
        "the stale network went"
    );
    assert_eq!(
        pinned_keys(&guest_ports),
        real_guests,
        "the stale guest went"
    );
    assert!(
        netd.log().contains("removed eBPF map entries"),
        "{}",
        netd.log()
    );
    assert_internet_works(&guest, PORT, "after the collection");
}
