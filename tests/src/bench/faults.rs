//! Fault figures: a fault policy replaced on a network of 253 guests, and
//! the delay line's timing error and throughput with real datagrams
//! between two guests.

use std::{
    net::{Ipv4Addr, SocketAddrV4, UdpSocket},
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use netd::netns::Netns;
use serde_json::Value;

use crate::{
    bench::{
        cases::{CaseKey, cli},
        control::{Timing, us},
    },
    netd::Netd,
};

/// Two policies of several clauses each, alternated so every request
/// changes the one in force; nftables takes loss shares only.
fn policies(key: CaseKey) -> [&'static str; 2] {
    match key {
        CaseKey::NetdEbpf => [
            "isolate c0 + all --delay 5ms --port 5432/tcp + cut --from c1 --to c2 --duplicate 5",
            "isolate c1 + all --delay 6ms --port 5432/tcp + cut --from c2 --to c3 --corrupt 5",
        ],
        _ => ["all --loss 10", "all --loss 20"],
    }
}

/// `netd partition NET POLICY --json` on `network` (253 guests), `reps`
/// times: the daemon's in-force time and the CLI's round trip.
pub fn policy_apply(netd: &Netd, key: CaseKey, network: &str, reps: usize) -> Vec<Timing> {
    let system = key.short();
    let mut in_force = Timing::new(
        "fault policy apply",
        format!("{system}, in_force_after_us (CLI, 253 guests)"),
    );
    let mut round_trip = Timing::new(
        "fault policy apply",
        format!("{system}, `netd partition ... --json` round trip (253 guests)"),
    );
    for rep in 0..reps.max(2) {
        let mut args = vec!["partition", network];
        args.extend(policies(key)[rep % 2].split_whitespace());
        args.push("--json");
        let start = Instant::now();
        match cli(netd, &args) {
            Ok(text) => {
                round_trip.samples_us.push(us(start.elapsed()));
                match serde_json::from_str::<Value>(&text)
                    .ok()
                    .and_then(|v| v["in_force_after_us"].as_f64())
                {
                    Some(v) => in_force.samples_us.push(v),
                    None => {
                        in_force.fail(anyhow::anyhow!("the CLI's JSON has no in_force_after_us"))
                    }
                }
            }
            Err(err) => round_trip.fail(err),
        }
    }
    let _ = cli(netd, &["partition", network, "heal"]);
    vec![in_force, round_trip]
}

/// A network "cpdl" with guests d0 and d1 (172.18.0.1 and .2) and `delay`
/// from d0 to d1; the guests' namespaces.
fn delayed_pair(netd: &Netd, delay: &str) -> Result<(Netns, Netns)> {
    cli(netd, &["network", "create", "cpdl"])?;
    for guest in ["d0", "d1"] {
        cli(netd, &["guest", "add", "cpdl", guest])?;
    }
    delay_d0_to_d1(netd, delay)?;
    let open = |guest: &str| {
        let name = format!("{}g-cpdl.{guest}", netd.prefix());
        Netns::open(&name).with_context(|| format!("opening {name}"))
    };
    Ok((open("d0")?, open("d1")?))
}

/// Puts `delay` on what d0 sends to d1 (replacing the policy in force).
fn delay_d0_to_d1(netd: &Netd, delay: &str) -> Result<()> {
    let words = [
        "partition",
        "cpdl",
        "cut",
        "--from",
        "d0",
        "--to",
        "d1",
        "--delay",
        delay,
    ];
    cli(netd, &words).map(drop)
}

fn socket(netns: &Netns, ip: Ipv4Addr) -> Result<UdpSocket> {
    netns
        .run_in(|| UdpSocket::bind((ip, 0)))?
        .with_context(|| format!("binding a socket to {ip} in {}", netns.name()))
}

const D0: Ipv4Addr = Ipv4Addr::new(172, 18, 0, 1);
const D1: Ipv4Addr = Ipv4Addr::new(172, 18, 0, 2);

/// CLOCK_MONOTONIC in nanoseconds: the same clock in every namespace.
fn monotonic_ns() -> u64 {
    let now = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .expect("CLOCK_MONOTONIC is always there");
    now.tv_sec() as u64 * 1_000_000_000 + now.tv_nsec() as u64
}

/// The delay line's rows; the network they need is removed afterwards.
pub fn delay_line(netd: &Netd, system: &str) -> Vec<Timing> {
    let mut error = Timing::new(
        "delay line timing error",
        format!("{system}, arrival - send - 10 ms (200 datagrams, 5 ms apart)"),
    );
    let mut throughput = Timing::new("delay line throughput", system);
    match delayed_pair(netd, "10ms").and_then(|(d0, d1)| {
        timing_error(&d0, &d1, &mut error)?;
        delay_d0_to_d1(netd, "1ms")?;
        packets_per_second(netd, &d0, &d1, &mut throughput)
    }) {
        Ok(()) => {}
        Err(err) => {
            error.fail(anyhow::anyhow!("{err:#}"));
            throughput.fail(err);
        }
    }
    let _ = cli(netd, &["network", "rm", "cpdl"]);
    vec![error, throughput]
}

/// Each datagram carries its send time; a sample is how much later than
/// intended it arrived, in microseconds.
fn timing_error(d0: &Netns, d1: &Netns, out: &mut Timing) -> Result<()> {
    let (sender, receiver) = (socket(d0, D0)?, socket(d1, D1)?);
    receiver.set_read_timeout(Some(Duration::from_secs(1)))?;
    let to = receiver.local_addr()?;
    let intended_ns = 10_000_000u64;
    let reading = std::thread::spawn(move || {
        let mut samples = Vec::new();
        let mut buf = [0u8; 64];
        while let Ok(len) = receiver.recv(&mut buf) {
            let arrived = monotonic_ns();
            if len == 8 {
                let sent = u64::from_le_bytes(buf[..8].try_into().unwrap());
                samples.push((arrived.saturating_sub(sent) as f64 - intended_ns as f64) / 1e3);
            }
        }
        samples
    });
    for _ in 0..200 {
        sender.send_to(&monotonic_ns().to_le_bytes(), to)?;
        std::thread::sleep(Duration::from_millis(5));
    }
    out.samples_us = reading
        .join()
        .map_err(|_| anyhow::anyhow!("the receiving thread panicked"))?;
    anyhow::ensure!(!out.samples_us.is_empty(), "no datagram arrived");
    Ok(())
}

/// Offers datagrams for two seconds as fast as one sender can; the
/// arrivals per second go in the label.
fn packets_per_second(netd: &Netd, d0: &Netns, d1: &Netns, out: &mut Timing) -> Result<()> {
    let (sender, receiver) = (socket(d0, D0)?, socket(d1, D1)?);
    receiver.set_read_timeout(Some(Duration::from_millis(500)))?;
    let to: SocketAddrV4 = match receiver.local_addr()? {
        std::net::SocketAddr::V4(addr) => addr,
        other => anyhow::bail!("unexpected address {other}"),
    };
    let counting = std::thread::spawn(move || {
        let mut buf = [0u8; 64];
        let mut count = 0u64;
        let mut last = Instant::now();
        while receiver.recv(&mut buf).is_ok() {
            count += 1;
            last = Instant::now();
        }
        (count, last)
    });
    let payload = [0x5a_u8; 64];
    let start = Instant::now();
    let mut offered = 0u64;
    while start.elapsed() < Duration::from_secs(2) {
        if sender.send_to(&payload, to).is_ok() {
            offered += 1;
        }
    }
    let (arrived, last) = counting
        .join()
        .map_err(|_| anyhow::anyhow!("the counting thread panicked"))?;
    let seconds = last.duration_since(start).as_secs_f64().max(1e-3);
    let per_second = arrived as f64 / seconds;
    let status: Value = serde_json::from_str(&cli(netd, &["status", "--json"])?)?;
    let dropped = crate::status::counter(&status, "cpdl", "dropped_delay_queue");
    let tap_dropped = tap_tx_dropped(netd).map_or("?".to_owned(), |n| n.to_string());
    out.label = format!(
        "{}: {per_second:.0} packets/s arrived through --delay 1ms ({arrived} of {offered} offered in 2 s; {dropped} dropped for a full queue, {tap_dropped} by the TAP's ring before the daemon read them)",
        out.label
    );
    anyhow::ensure!(arrived > 0, "no datagram arrived");
    out.samples_us.push(1e6 / per_second);
    Ok(())
}

/// Frames the kernel dropped at the delay line's TAP (its ring was full:
/// the reader fell behind).
fn tap_tx_dropped(netd: &Netd) -> Option<u64> {
    let netns = Netns::open(&format!("{}n-cpdl", netd.prefix())).ok()?;
    let out = netns
        .command("ip")
        .args(["-j", "-s", "link", "show", "dev", "delay0"])
        .output()
        .ok()?;
    let links: Value = serde_json::from_slice(&out.stdout).ok()?;
    links[0]["stats64"]["tx"]["dropped"].as_u64()
}
