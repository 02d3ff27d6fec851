//! Each eBPF program's cost in nanoseconds per packet, by BPF_PROG_TEST_RUN
//! on the programs of a running netd (found through the link pins in its
//! bpffs directory), with its real maps: the topology's addresses and MACs,
//! and the conntrack entries of a live connection. Every frame is one that
//! program meets on the path: a guest's packet for the outside (guest port,
//! gateway from network, host link), and the server's reply (host world,
//! gateway from host, network uplink); where a program redirects, its output
//! is the next program's input, as on the wire.
//!
//! A program rewrites its frame (MACs, TTL, addresses), and the kernel's
//! `repeat` re-runs it on the same skb, so only the first of the repeats
//! meets the frame of the path. The figure is therefore the kernel's
//! `duration` of many single runs, each on a fresh copy of the frame, less
//! that of an empty program (the timer's own cost); the `repeat` figure is
//! shown beside it for the record.

use std::{
    collections::BTreeMap,
    ffi::CString,
    io::{Read, Write},
    net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream},
    os::fd::{AsFd, FromRawFd, OwnedFd},
    path::Path,
    time::Duration,
};

use anyhow::{Context, Result, anyhow, bail};
use netd::{dataplane::ebpf::test_run, netns::Netns};
use netd_common::csum::checksum;
use serde_json::{Value, json};

use crate::{
    bench::{Settings, cases::Case, load},
    sandbox::{INTERNET_SERVER, UPLINK},
};

/// The programs, in the order of the path.
pub const PROGRAMS: [&str; 6] = [
    "netd_guest_port",
    "netd_gw_net",
    "netd_host_link",
    "netd_host_world",
    "netd_gw_host",
    "netd_net_uplink",
];

const TC_ACT_OK: i32 = 0;
const TC_ACT_SHOT: i32 = 2;
const TC_ACT_REDIRECT: i32 = 7;
/// The server port of the connection whose packets are measured.
const PROBE_PORT: u16 = 7190;

/// One program on one frame.
#[derive(Debug, Clone)]
pub struct CostRow {
    pub program: String,
    pub frame: String,
    pub verdict: i32,
    /// Median of the single runs' durations, less the empty program's.
    pub median_ns: f64,
    pub mean_ns: f64,
    /// The kernel's average over `repeat` runs on one skb.
    pub repeat_ns: f64,
    pub runs: u32,
}

/// The costs of one build's programs.
#[derive(Debug, Clone)]
pub struct ProgramCosts {
    /// Which build: "after" (this run) or "before" (another commit).
    pub label: String,
    pub commit: String,
    /// The empty program's median single-run duration (subtracted above).
    pub baseline_ns: f64,
    pub rows: Vec<CostRow>,
    pub notes: Vec<String>,
}

pub fn verdict_name(verdict: i32) -> String {
    match verdict {
        TC_ACT_OK => "OK (to the stack)".into(),
        TC_ACT_SHOT => "SHOT (dropped)".into(),
        TC_ACT_REDIRECT => "REDIRECT".into(),
        -1 => "UNSPEC (next program)".into(),
        v => format!("{v}"),
    }
}

impl ProgramCosts {
    pub fn to_json(&self) -> Value {
        json!({
            "label": self.label, "commit": self.commit, "baseline_ns": self.baseline_ns,
            "notes": self.notes,
            "rows": self.rows.iter().map(|r| json!({
                "program": r.program, "frame": r.frame, "verdict": r.verdict,
                "median_ns": r.median_ns, "mean_ns": r.mean_ns, "repeat_ns": r.repeat_ns,
                "runs": r.runs,
            })).collect::<Vec<_>>(),
        })
    }

    pub fn from_json(v: &Value) -> Result<ProgramCosts> {
        let s = |v: &Value, k: &str| v[k].as_str().unwrap_or_default().to_owned();
        let f = |v: &Value, k: &str| v[k].as_f64().unwrap_or(f64::NAN);
        Ok(ProgramCosts {
            label: s(v, "label"),
            commit: s(v, "commit"),
            baseline_ns: f(v, "baseline_ns"),
            notes: v["notes"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|n| n.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default(),
            rows: v["rows"]
                .as_array()
                .ok_or_else(|| anyhow!("no rows"))?
                .iter()
                .map(|r| CostRow {
                    program: s(r, "program"),
                    frame: s(r, "frame"),
                    verdict: r["verdict"].as_i64().unwrap_or(-99) as i32,
                    median_ns: f(r, "median_ns"),
                    mean_ns: f(r, "mean_ns"),
                    repeat_ns: f(r, "repeat_ns"),
                    runs: r["runs"].as_u64().unwrap_or(0) as u32,
                })
                .collect(),
        })
    }

    pub fn save(&self, path: &Path) -> Result<()> {
        std::fs::write(path, serde_json::to_string_pretty(&self.to_json())?)
            .with_context(|| format!("writing {}", path.display()))
    }

    pub fn load(path: &Path) -> Result<ProgramCosts> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        Self::from_json(&serde_json::from_str(&text)?)
    }
}

/// A device as `ip -j link` shows it.
#[derive(Debug, Clone)]
struct Device {
    ifindex: u32,
    name: String,
    mac: [u8; 6],
    /// The peer's ifindex (in its own namespace), for a veth.
    peer: Option<u32>,
}

fn devices(ns: &Netns) -> Result<Vec<Device>> {
    let out = ns
        .command("ip")
        .args(["-j", "link", "show"])
        .output()
        .context("ip -j link")?;
    let list: Vec<Value> = serde_json::from_slice(&out.stdout)
        .with_context(|| format!("ip -j link in {}", ns.name()))?;
    Ok(list
        .iter()
        .filter_map(|d| {
            let mac = d["address"].as_str().unwrap_or("00:00:00:00:00:00");
            let mut bytes = [0u8; 6];
            for (b, part) in bytes.iter_mut().zip(mac.split(':')) {
                *b = u8::from_str_radix(part, 16).unwrap_or(0);
            }
            Some(Device {
                ifindex: d["ifindex"].as_u64()? as u32,
                name: d["ifname"].as_str()?.to_owned(),
                mac: bytes,
                peer: d["link_index"].as_u64().map(|i| i as u32),
            })
        })
        .collect())
}

fn device<'d>(list: &'d [Device], name: &str, ns: &str) -> Result<&'d Device> {
    list.iter()
        .find(|d| d.name == name)
        .ok_or_else(|| anyhow!("no device {name} in {ns}"))
}

fn by_index(list: &[Device], ifindex: u32, ns: &str) -> Result<Device> {
    list.iter()
        .find(|d| d.ifindex == ifindex)
        .cloned()
        .ok_or_else(|| anyhow!("no device with ifindex {ifindex} in {ns}"))
}

/// `bpf(2)` with a zero-padded attribute buffer.
fn bpf(cmd: libc::c_long, attr: &mut [u8; 128]) -> std::io::Result<i64> {
    // SAFETY: the buffer is a valid, large enough bpf_attr for `cmd`; any
    // pointers in it point to memory that outlives the call.
    let rc = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr.as_mut_ptr(), attr.len()) };
    if rc < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_OBJ_GET: libc::c_long = 7;
const BPF_PROG_GET_FD_BY_ID: libc::c_long = 13;
const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;
const BPF_PROG_TYPE_SCHED_CLS: u32 = 3;

fn owned(fd: i64) -> OwnedFd {
    // SAFETY: `fd` was just returned by the kernel and is owned by no one else.
    unsafe { OwnedFd::from_raw_fd(fd as i32) }
}

/// The program id behind a pinned link (from its fdinfo), if `path` is one.
fn link_program_id(path: &Path) -> Option<u32> {
    let cpath = CString::new(path.as_os_str().as_encoded_bytes()).ok()?;
    let mut attr = [0u8; 128];
    attr[..8].copy_from_slice(&(cpath.as_ptr() as u64).to_ne_bytes());
    let fd = owned(bpf(BPF_OBJ_GET, &mut attr).ok()?);
    use std::os::fd::AsRawFd;
    let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{}", fd.as_raw_fd())).ok()?;
    // A link pin (its program's id) or a program pin (its own id).
    if !info.contains("link_type") && !info.contains("prog_type") {
        return None;
    }
    info.lines()
        .find_map(|l| l.strip_prefix("prog_id:"))
        .and_then(|v| v.trim().parse().ok())
}

/// A program's fd and name, by id.
fn program_by_id(id: u32) -> Result<(OwnedFd, String)> {
    let mut attr = [0u8; 128];
    attr[..4].copy_from_slice(&id.to_ne_bytes());
    let fd = owned(bpf(BPF_PROG_GET_FD_BY_ID, &mut attr).context("BPF_PROG_GET_FD_BY_ID")?);
    let mut info = [0u8; 256];
    let mut attr = [0u8; 128];
    use std::os::fd::AsRawFd;
    attr[..4].copy_from_slice(&(fd.as_raw_fd() as u32).to_ne_bytes());
    attr[4..8].copy_from_slice(&(info.len() as u32).to_ne_bytes());
    attr[8..16].copy_from_slice(&(info.as_mut_ptr() as u64).to_ne_bytes());
    bpf(BPF_OBJ_GET_INFO_BY_FD, &mut attr).context("BPF_OBJ_GET_INFO_BY_FD")?;
    // struct bpf_prog_info: name[16] at offset 64.
    let name: Vec<u8> = info[64..80]
        .iter()
        .copied()
        .take_while(|&b| b != 0)
        .collect();
    Ok((fd, String::from_utf8_lossy(&name).into_owned()))
}

/// Every program pinned under `dir`, or attached through a link pinned
/// there, by name.
fn pinned_programs(dir: &Path) -> BTreeMap<String, OwnedFd> {
    let mut ids = std::collections::BTreeSet::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if let Some(id) = link_program_id(&path) {
                ids.insert(id);
            }
        }
    }
    ids.into_iter()
        .filter_map(|id| program_by_id(id).ok())
        .map(|(fd, name)| (name, fd))
        .collect()
}

/// An empty TC program (`r0 = TC_ACT_OK; exit`): the timer's own cost.
fn empty_program() -> Result<OwnedFd> {
    let insns: [u8; 16] = [0xb7, 0, 0, 0, 0, 0, 0, 0, 0x95, 0, 0, 0, 0, 0, 0, 0];
    let license = b"GPL\0";
    let mut attr = [0u8; 128];
    attr[..4].copy_from_slice(&BPF_PROG_TYPE_SCHED_CLS.to_ne_bytes());
    attr[4..8].copy_from_slice(&2u32.to_ne_bytes());
    attr[8..16].copy_from_slice(&(insns.as_ptr() as u64).to_ne_bytes());
    attr[16..24].copy_from_slice(&(license.as_ptr() as u64).to_ne_bytes());
    Ok(owned(
        bpf(BPF_PROG_LOAD, &mut attr).context("loading an empty TC program")?,
    ))
}

/// An Ethernet + IPv4 + TCP (PSH|ACK, 64 bytes of payload) or UDP frame,
/// every checksum right.
fn frame(
    dst_mac: [u8; 6],
    src_mac: [u8; 6],
    ttl: u8,
    src: SocketAddrV4,
    dst: SocketAddrV4,
    udp: bool,
) -> Vec<u8> {
    let proto: u8 = if udp { 17 } else { 6 };
    let payload = [0x5au8; 64];
    let mut l4 = Vec::new();
    l4.extend_from_slice(&src.port().to_be_bytes());
    l4.extend_from_slice(&dst.port().to_be_bytes());
    if udp {
        l4.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
        l4.extend_from_slice(&[0, 0]);
    } else {
        l4.extend_from_slice(&1_000u32.to_be_bytes());
        l4.extend_from_slice(&2_000u32.to_be_bytes());
        l4.extend_from_slice(&[5 << 4, 0x18]);
        l4.extend_from_slice(&512u16.to_be_bytes());
        l4.extend_from_slice(&[0, 0, 0, 0]);
    }
    l4.extend_from_slice(&payload);
    let mut pseudo = Vec::new();
    pseudo.extend_from_slice(&src.ip().octets());
    pseudo.extend_from_slice(&dst.ip().octets());
    pseudo.extend_from_slice(&[0, proto]);
    pseudo.extend_from_slice(&(l4.len() as u16).to_be_bytes());
    pseudo.extend_from_slice(&l4);
    let c = checksum(&pseudo);
    let at = if udp { 6 } else { 16 };
    l4[at..at + 2].copy_from_slice(&c.to_be_bytes());

    let mut f = Vec::new();
    f.extend_from_slice(&dst_mac);
    f.extend_from_slice(&src_mac);
    f.extend_from_slice(&[0x08, 0x00]);
    let mut ip = vec![0x45, 0, 0, 0, 0x12, 0x34, 0x40, 0, ttl, proto, 0, 0];
    ip[2..4].copy_from_slice(&((20 + l4.len()) as u16).to_be_bytes());
    ip.extend_from_slice(&src.ip().octets());
    ip.extend_from_slice(&dst.ip().octets());
    let c = checksum(&ip);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    f.extend_from_slice(&ip);
    f.extend_from_slice(&l4);
    f
}

/// Where a program runs and on what.
struct Stage<'a> {
    program: &'static str,
    ns: &'a Netns,
    ifindex: u32,
}

/// A frame and the skb mark it carries (the programs pass the zone in it).
#[derive(Clone)]
struct Packet {
    frame: Vec<u8>,
    mark: u32,
}

/// Runs `packet` through `stage` once: the verdict and the output.
fn once(fds: &BTreeMap<String, OwnedFd>, stage: &Stage, packet: &Packet) -> Result<(i32, Packet)> {
    let fd = fds
        .get(stage.program)
        .ok_or_else(|| anyhow!("{} is not attached", stage.program))?;
    let run = stage.ns.run_in(|| {
        test_run::run_timed(fd.as_fd(), &packet.frame, stage.ifindex, packet.mark, 1)
    })??;
    Ok((
        run.verdict,
        Packet {
            frame: run.frame,
            mark: run.mark,
        },
    ))
}

/// `runs` single runs of `frame` (each on a fresh copy), and one of `runs`
/// repeats: (median, mean, repeat average) in ns.
fn timed(
    fd: std::os::fd::BorrowedFd<'_>,
    ns: &Netns,
    ifindex: u32,
    packet: &Packet,
    runs: u32,
) -> Result<(f64, f64, f64)> {
    let (frame, mark) = (&packet.frame, packet.mark);
    ns.run_in(|| -> Result<(f64, f64, f64)> {
        load::pin_thread(load::CLIENT_CPU);
        let mut durations = Vec::with_capacity(runs as usize);
        for _ in 0..runs {
            durations.push(test_run::run_timed(fd, frame, ifindex, mark, 1)?.duration_ns);
        }
        let repeat = test_run::run_timed(fd, frame, ifindex, mark, runs)?.duration_ns;
        durations.sort_unstable();
        let median = durations[durations.len() / 2] as f64;
        let mean = durations.iter().map(|&d| d as f64).sum::<f64>() / durations.len() as f64;
        Ok((median, mean, repeat as f64))
    })?
}

/// Measures the programs of the running netd eBPF case.
pub fn measure(case: &Case, settings: &Settings) -> Result<ProgramCosts> {
    let netd = case.netd().ok_or_else(|| anyhow!("not a netd case"))?;
    let sb = case.sandbox;
    let prefix = netd.prefix();
    let fds = pinned_programs(&sb.bpffs_dir);
    if fds.is_empty() {
        bail!("no pinned program under {}", sb.bpffs_dir.display());
    }
    let mut notes = Vec::new();
    for p in PROGRAMS {
        if !fds.contains_key(p) {
            notes.push(format!("{p}: not attached in this build (or not in force)"));
        }
    }

    // The namespaces and devices on the path.
    let guest = &case.internet.client;
    let gw = Netns::open(&format!("{prefix}gw"))?;
    let net = Netns::open(&format!("{prefix}n-bench"))?;
    let host = &sb.host;
    let (guest_devs, gw_devs, net_devs, host_devs, inet_devs) = (
        devices(guest)?,
        devices(&gw)?,
        devices(&net)?,
        devices(host)?,
        devices(&sb.internet)?,
    );
    let eth0 = device(&guest_devs, "eth0", guest.name())?;
    let port = by_index(
        &net_devs,
        eth0.peer.ok_or_else(|| anyhow!("eth0 has no peer"))?,
        net.name(),
    )?;
    let bridge = device(&net_devs, "br0", net.name())?;
    let uplink = device(&net_devs, "uplink", net.name())?;
    let gw_port = by_index(
        &gw_devs,
        uplink
            .peer
            .ok_or_else(|| anyhow!("the network's uplink has no peer"))?,
        gw.name(),
    )?;
    let host0 = device(&gw_devs, "host0", gw.name())?;
    let netd0 = by_index(
        &host_devs,
        host0.peer.ok_or_else(|| anyhow!("host0 has no peer"))?,
        host.name(),
    )?;
    let host_uplink = device(&host_devs, UPLINK, host.name())?;
    let inet_uplink = device(&inet_devs, UPLINK, sb.internet.name())?;

    // A live connection from the guest to a server in the internet: its
    // conntrack entries are the ones the measured packets meet.
    let listener = sb
        .internet
        .run_in(|| TcpListener::bind(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, PROBE_PORT)))??;
    let server = SocketAddrV4::new(INTERNET_SERVER, PROBE_PORT);
    let mut client = guest
        .run_in(|| TcpStream::connect_timeout(&SocketAddr::V4(server), Duration::from_secs(3)))??;
    let (mut accepted, wire) = listener.accept()?;
    client.write_all(b"x")?;
    let mut byte = [0u8; 1];
    accepted.read_exact(&mut byte)?;
    accepted.write_all(b"y")?;
    client.read_exact(&mut byte)?;
    let SocketAddr::V4(guest_addr) = client.local_addr()? else {
        bail!("not IPv4")
    };
    let SocketAddr::V4(wire) = wire else {
        bail!("not IPv4")
    };

    let empty = empty_program()?;
    let runs = settings.prog_runs.max(100);
    let nothing = Packet {
        frame: frame_of_nothing(),
        mark: 0,
    };
    let (baseline, _, _) = timed(empty.as_fd(), host, 0, &nothing, runs)?;

    let mut rows = Vec::new();
    let mut measure_row = |stage: &Stage, packet: &Packet, what: &str| -> Result<(i32, Packet)> {
        let (verdict, out) = once(&fds, stage, packet)?;
        let fd = fds.get(stage.program).expect("checked by once");
        let (median, mean, repeat) = timed(fd.as_fd(), stage.ns, stage.ifindex, packet, runs)?;
        rows.push(CostRow {
            program: stage.program.to_owned(),
            frame: what.to_owned(),
            verdict,
            median_ns: median - baseline,
            mean_ns: mean - baseline,
            repeat_ns: repeat,
            runs,
        });
        Ok((verdict, out))
    };

    // Out: the guest's packet of the established connection.
    let s_guest_port = Stage {
        program: "netd_guest_port",
        ns: &net,
        ifindex: port.ifindex,
    };
    let s_gw_net = Stage {
        program: "netd_gw_net",
        ns: &gw,
        ifindex: gw_port.ifindex,
    };
    let s_host_link = Stage {
        program: "netd_host_link",
        ns: host,
        ifindex: netd0.ifindex,
    };
    let out_frame = |sport: u16, udp: bool| Packet {
        mark: 0,
        frame: frame(
            bridge.mac,
            eth0.mac,
            64,
            SocketAddrV4::new(*guest_addr.ip(), sport),
            if udp {
                SocketAddrV4::new(INTERNET_SERVER, load::UDP_PORT)
            } else {
                server
            },
            udp,
        ),
    };
    let f1 = out_frame(guest_addr.port(), false);
    let mut next = None;
    if fds.contains_key(s_guest_port.program) {
        let (verdict, out) = measure_row(
            &s_guest_port,
            &f1,
            "a guest's TCP packet for the internet, established",
        )?;
        next = (verdict == TC_ACT_REDIRECT).then_some(out);
    }
    // Without the guest port's redirect, the bridge and the network's
    // routing hand it to the uplink: MACs uplink -> gateway port, TTL 63.
    let f2 = next.unwrap_or_else(|| Packet {
        frame: frame(gw_port.mac, uplink.mac, 63, guest_addr, server, false),
        mark: 0,
    });
    let mut next = None;
    if fds.contains_key(s_gw_net.program) {
        let (verdict, out) = measure_row(&s_gw_net, &f2, "the same packet, entering the gateway")?;
        next = (verdict == TC_ACT_REDIRECT).then_some(out);
    }
    if fds.contains_key(s_host_link.program) {
        match next {
            Some(f3) => {
                measure_row(
                    &s_host_link,
                    &f3,
                    "the same packet, entering the host (existing conntrack entry)",
                )?;
            }
            None => notes.push(
                "netd_host_link: the gateway did not redirect the guest's packet to the host, \
                 so its input is not known"
                    .into(),
            ),
        }
    }

    // Reply: the server's answer at the host's uplink.
    let s_world = Stage {
        program: "netd_host_world",
        ns: host,
        ifindex: host_uplink.ifindex,
    };
    let s_gw_host = Stage {
        program: "netd_gw_host",
        ns: &gw,
        ifindex: host0.ifindex,
    };
    let s_net_uplink = Stage {
        program: "netd_net_uplink",
        ns: &net,
        ifindex: uplink.ifindex,
    };
    let f4 = Packet {
        frame: frame(host_uplink.mac, inet_uplink.mac, 64, server, wire, false),
        mark: 0,
    };
    let mut next = None;
    if fds.contains_key(s_world.program) {
        let (verdict, out) = measure_row(
            &s_world,
            &f4,
            "the server's reply, entering the host's uplink",
        )?;
        next = (verdict == TC_ACT_REDIRECT).then_some(out);
    }
    // Without the host program, the host's netfilter un-masquerades it
    // (the gateway's address; the port kept) and routes it to netd0.
    let gateway_ip = Ipv4Addr::new(172, 18, 255, 2);
    let f5 = next.unwrap_or_else(|| Packet {
        frame: frame(
            host0.mac,
            netd0.mac,
            63,
            server,
            SocketAddrV4::new(gateway_ip, wire.port()),
            false,
        ),
        mark: 0,
    });
    let mut next = None;
    if fds.contains_key(s_gw_host.program) {
        let (verdict, out) = measure_row(&s_gw_host, &f5, "the reply, entering the gateway")?;
        next = (verdict == TC_ACT_REDIRECT).then_some(out);
    }
    let f6 = next.unwrap_or_else(|| Packet {
        frame: frame(uplink.mac, gw_port.mac, 62, server, guest_addr, false),
        mark: 0,
    });
    if fds.contains_key(s_net_uplink.program) {
        measure_row(&s_net_uplink, &f6, "the reply, entering the network")?;
    }

    // New flows: UDP packets from fresh source ports through the outbound
    // chain, each program timed once per flow (no repeat can be new).
    let flows = (runs / 20).clamp(200, 2_000);
    let mut new_times: BTreeMap<&'static str, (Vec<u32>, i32)> = BTreeMap::new();
    for i in 0..flows {
        let mut packet = out_frame(20_000 + i as u16, true);
        for stage in [&s_guest_port, &s_gw_net, &s_host_link] {
            let Some(fd) = fds.get(stage.program) else {
                continue;
            };
            let run = stage.ns.run_in(|| {
                test_run::run_timed(fd.as_fd(), &packet.frame, stage.ifindex, packet.mark, 1)
            })??;
            let entry = new_times.entry(stage.program).or_default();
            entry.0.push(run.duration_ns);
            entry.1 = run.verdict;
            packet = match run.verdict {
                TC_ACT_REDIRECT => Packet {
                    frame: run.frame,
                    mark: run.mark,
                },
                // Passed to the network's bridge (before the fast path): the
                // network's routing hands it to the gateway, as above.
                TC_ACT_OK if stage.program == s_guest_port.program => Packet {
                    frame: frame(
                        gw_port.mac,
                        uplink.mac,
                        63,
                        SocketAddrV4::new(*guest_addr.ip(), 20_000 + i as u16),
                        SocketAddrV4::new(INTERNET_SERVER, load::UDP_PORT),
                        true,
                    ),
                    mark: 0,
                },
                _ => break,
            };
        }
    }
    for stage in [&s_guest_port, &s_gw_net, &s_host_link] {
        if let Some((mut times, verdict)) = new_times.remove(stage.program) {
            times.sort_unstable();
            let n = times.len();
            rows.push(CostRow {
                program: stage.program.to_owned(),
                frame: "a guest's UDP packet of a new flow (its first packet)".into(),
                verdict,
                median_ns: times[n / 2] as f64 - baseline,
                mean_ns: times.iter().map(|&t| t as f64).sum::<f64>() / n as f64 - baseline,
                repeat_ns: f64::NAN,
                runs: n as u32,
            });
        }
    }
    drop((client, accepted, listener));
    rows.sort_by_key(|r| PROGRAMS.iter().position(|p| *p == r.program));
    let load = crate::bench::load_figures();
    notes.push(format!(
        "measured {} UTC, load average {:.2} {:.2} {:.2}",
        now_utc(),
        load[0],
        load[1],
        load[2]
    ));
    let (label, commit) = match settings.prog_costs_as.split_once(':') {
        Some((label, commit)) => (label.to_owned(), commit.to_owned()),
        None => (settings.prog_costs_as.clone(), git_commit()),
    };
    Ok(ProgramCosts {
        label,
        commit,
        baseline_ns: baseline,
        rows,
        notes,
    })
}

fn now_utc() -> String {
    std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

/// A minimal frame for the empty program.
fn frame_of_nothing() -> Vec<u8> {
    let mut f = vec![0u8; 60];
    f[12] = 0x08;
    f
}

fn git_commit() -> String {
    std::process::Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}
