//! The load tool: servers that run in a server namespace (the sandbox
//! internet, or a peer guest) and clients that run in a guest namespace.
//! Every figure is measured the same way for every case.
//!
//! A socket belongs to the namespace it was made in (see `sockets`), so a
//! server's sockets are made inside `Netns::run_in` and then served from
//! ordinary threads, and a client's whole loop runs inside `run_in`.

use std::{
    io::{ErrorKind, Read, Write},
    net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream, UdpSocket},
    os::fd::AsRawFd,
    process::{Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context, Result, anyhow, bail};
use netd::netns::Netns;

/// TCP request/response server port.
pub const RR_PORT: u16 = 7101;
/// TCP connect/request/response/close server port.
pub const CRR_PORT: u16 = 7102;
/// UDP sink port.
pub const UDP_PORT: u16 = 7103;
/// Busy-poll TCP request/response server port.
pub const BUSY_PORT: u16 = 7104;
/// sockperf's TCP server port.
pub const SOCKPERF_TCP_PORT: u16 = 7105;
/// sockperf's UDP server port.
pub const SOCKPERF_UDP_PORT: u16 = 7106;
/// iperf3 server port.
pub const IPERF_PORT: u16 = 5201;

/// The CPU every client (load thread or tool) runs on.
pub const CLIENT_CPU: usize = 0;
/// The CPU every server runs on (CPU 0 too on a one-CPU machine).
pub fn server_cpu() -> usize {
    if cpu_count() > 1 { 1 } else { 0 }
}

pub fn cpu_count() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Pins the calling thread to `cpu` (best effort: a CPU outside the
/// process's allowed set leaves the thread where it was).
pub fn pin_thread(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t is valid; CPU_SET writes within it;
    // sched_setaffinity(0) acts on the calling thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

/// Makes `cmd`'s process start pinned to `cpu` (like `taskset -c CPU`).
pub fn pin_command(cmd: &mut Command, cpu: usize) -> &mut Command {
    use std::os::unix::process::CommandExt;
    // SAFETY: sched_setaffinity is a plain system call, safe between fork
    // and exec; the set lives on the child's stack.
    unsafe {
        cmd.pre_exec(move || {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(cpu, &mut set);
            libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
            Ok(())
        });
    }
    cmd
}

/// The ports a client connects to: the servers' own, or the host ports
/// that publish them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ports {
    pub rr: u16,
    pub crr: u16,
    pub udp: u16,
    pub busy: u16,
    pub iperf: u16,
    pub sockperf_tcp: u16,
    pub sockperf_udp: u16,
}

impl Ports {
    /// The servers' own ports.
    pub const DIRECT: Ports = Ports {
        rr: RR_PORT,
        crr: CRR_PORT,
        udp: UDP_PORT,
        busy: BUSY_PORT,
        iperf: IPERF_PORT,
        sockperf_tcp: SOCKPERF_TCP_PORT,
        sockperf_udp: SOCKPERF_UDP_PORT,
    };

    /// Host ports publishing the servers of a peer guest: 1000 above.
    pub const PUBLISHED: Ports = Ports {
        rr: RR_PORT + 1000,
        crr: CRR_PORT + 1000,
        udp: UDP_PORT + 1000,
        busy: BUSY_PORT + 1000,
        iperf: IPERF_PORT + 1000,
        sockperf_tcp: SOCKPERF_TCP_PORT + 1000,
        sockperf_udp: SOCKPERF_UDP_PORT + 1000,
    };

    /// (host port, server port, "tcp"|"udp") for every server.
    pub fn mappings(self) -> Vec<(u16, u16, &'static str)> {
        let d = Ports::DIRECT;
        vec![
            (self.rr, d.rr, "tcp"),
            (self.crr, d.crr, "tcp"),
            (self.udp, d.udp, "udp"),
            (self.busy, d.busy, "tcp"),
            (self.iperf, d.iperf, "tcp"),
            (self.sockperf_tcp, d.sockperf_tcp, "tcp"),
            (self.sockperf_udp, d.sockperf_udp, "udp"),
        ]
    }
}
/// Bytes of each request and of each response.
pub const RR_SIZE: usize = 64;
/// Bytes of each UDP datagram's payload.
pub const UDP_SIZE: usize = 64;

/// Counts the datagrams of the current run: each carries its run's tag in
/// its first 8 bytes, so late datagrams of an earlier run are not counted.
#[derive(Default)]
pub struct UdpSink {
    tag: AtomicU64,
    count: AtomicU64,
}

impl UdpSink {
    fn begin(&self, tag: u64) {
        self.tag.store(tag, Ordering::SeqCst);
        self.count.store(0, Ordering::SeqCst);
    }

    fn received(&self) -> u64 {
        self.count.load(Ordering::SeqCst)
    }
}

/// The servers of one server namespace; they live as long as the process.
pub struct Servers {
    pub sink: Arc<UdpSink>,
}

/// Starts the request/response, connection and UDP servers on every
/// address of `ns`, and an iperf3 server (its process is returned so that
/// its owner can kill it; sandbox teardown also finds it by namespace).
pub fn start_servers(ns: &Netns) -> Result<Servers> {
    let any = |port| SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port);
    let (rr, crr, udp, busy) = ns
        .run_in(|| -> std::io::Result<_> {
            Ok((
                TcpListener::bind(any(RR_PORT))?,
                TcpListener::bind(any(CRR_PORT))?,
                UdpSocket::bind(any(UDP_PORT))?,
                TcpListener::bind(any(BUSY_PORT))?,
            ))
        })?
        .with_context(|| format!("binding the bench servers in {}", ns.name()))?;
    let cpu = server_cpu();
    std::thread::spawn(move || serve_rr(rr, false, cpu));
    std::thread::spawn(move || serve_rr(busy, true, cpu));
    std::thread::spawn(move || {
        pin_thread(cpu);
        serve_crr(crr)
    });
    set_buffer(&udp, libc::SO_RCVBUF, 4 << 20);
    let sink = Arc::new(UdpSink::default());
    let counter = sink.clone();
    std::thread::spawn(move || {
        pin_thread(cpu);
        serve_udp(udp, &counter)
    });
    Ok(Servers { sink })
}

/// An iperf3 server in `ns`, to be owned by a sandbox (`Sandbox::spawn`).
pub fn iperf3_server(ns: &Netns) -> Command {
    let mut cmd = ns.command("iperf3");
    cmd.args(["-s", "-p", &IPERF_PORT.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    pin_command(&mut cmd, server_cpu());
    cmd
}

/// sockperf servers in `ns`, pinned to the server CPU: TCP and UDP.
pub fn sockperf_servers(ns: &Netns) -> Vec<Command> {
    [(SOCKPERF_TCP_PORT, true), (SOCKPERF_UDP_PORT, false)]
        .into_iter()
        .map(|(port, tcp)| {
            let mut cmd = ns.command("sockperf");
            cmd.args(["server", "-i", "0.0.0.0", "-p", &port.to_string()]);
            if tcp {
                cmd.arg("--tcp");
            }
            cmd.stdout(Stdio::null()).stderr(Stdio::null());
            pin_command(&mut cmd, server_cpu());
            cmd
        })
        .collect()
}

/// Answers each 64-byte request with 64 bytes, a thread per connection on
/// `cpu`; with `busy`, the thread spins on non-blocking reads instead of
/// sleeping in them.
fn serve_rr(listener: TcpListener, busy: bool, cpu: usize) {
    for stream in listener.incoming() {
        let Ok(mut stream) = stream else { return };
        std::thread::spawn(move || {
            pin_thread(cpu);
            let _ = stream.set_nodelay(true);
            let mut buf = [0u8; RR_SIZE];
            if busy {
                let _ = stream.set_nonblocking(true);
                // A client gone without a word (its path broken) must not
                // leave this thread spinning: 5 s without a request ends it.
                let idle = || Some(Instant::now() + Duration::from_secs(5));
                while spin_read_exact(&mut stream, &mut buf, idle()).is_ok() {
                    if spin_write_all(&mut stream, &buf).is_err() {
                        return;
                    }
                }
                return;
            }
            while stream.read_exact(&mut buf).is_ok() {
                if stream.write_all(&buf).is_err() {
                    return;
                }
            }
        });
    }
}

/// `read_exact` on a non-blocking socket by spinning; an error at EOF or
/// past `deadline`.
fn spin_read_exact(
    stream: &mut TcpStream,
    buf: &mut [u8],
    deadline: Option<Instant>,
) -> std::io::Result<()> {
    let mut got = 0;
    let mut spins = 0u32;
    while got < buf.len() {
        match stream.read(&mut buf[got..]) {
            Ok(0) => return Err(ErrorKind::UnexpectedEof.into()),
            Ok(n) => got += n,
            Err(err) if err.kind() == ErrorKind::WouldBlock => {
                spins = spins.wrapping_add(1);
                if spins.is_multiple_of(4096)
                    && let Some(deadline) = deadline
                    && Instant::now() > deadline
                {
                    return Err(ErrorKind::TimedOut.into());
                }
                std::hint::spin_loop();
            }
            Err(err) if err.kind() == ErrorKind::Interrupted => {}
            Err(err) => return Err(err),
        }
    }
    Ok(())
}

fn spin_write_all(stream: &mut TcpStream, buf: &[u8]) -> std::io::Result<()> {
    let mut sent = 0;
    while sent < buf.len() {
        match stream.write(&buf[sent..]) {
            Ok(0) => return Err(ErrorKind::WriteZero.into()),
            Ok(n) => sent += n,
            Err(err) if matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted) => {
                std::hint::spin_loop()
            }
            Err(err) => return Err(err),
        }
    }
    Ok(())
}

/// One byte in, one byte out, then the server closes first, so the
/// client's side never sits in TIME_WAIT and its ports do not run out.
fn serve_crr(listener: TcpListener) {
    for stream in listener.incoming() {
        let Ok(mut stream) = stream else { return };
        let _ = stream.set_nodelay(true);
        let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
        let mut byte = [0u8; 1];
        if stream.read_exact(&mut byte).is_ok() {
            let _ = stream.write_all(&byte);
        }
    }
}

fn serve_udp(socket: UdpSocket, sink: &UdpSink) {
    let mut buf = [0u8; 2048];
    loop {
        match socket.recv(&mut buf) {
            Ok(n) if n >= 8 => {
                let tag = u64::from_le_bytes(buf[..8].try_into().expect("8 bytes"));
                if tag == sink.tag.load(Ordering::Relaxed) {
                    sink.count.fetch_add(1, Ordering::Relaxed);
                }
            }
            Ok(_) => {}
            Err(err) if err.kind() == ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
}

fn set_buffer(socket: &impl AsRawFd, option: libc::c_int, bytes: libc::c_int) {
    // SAFETY: setsockopt on a socket we own, with a valid int option.
    unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            option,
            &bytes as *const _ as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as u32,
        );
    }
}

/// TCP request/response over one connection.
pub struct RrResult {
    pub transactions: u64,
    pub secs: f64,
    /// Nanoseconds per transaction, sorted.
    pub latencies_ns: Vec<u64>,
}

impl RrResult {
    pub fn per_sec(&self) -> f64 {
        self.transactions as f64 / self.secs
    }

    /// The latency at quantile `q` (0..=1), in microseconds.
    pub fn latency_us(&self, q: f64) -> f64 {
        crate::bench::stats::quantile_sorted_u64(&self.latencies_ns, q) / 1000.0
    }
}

/// One connection from `ns` to `to`; 64-byte requests, each answered with
/// 64 bytes, back to back for `duration` (after 100 unrecorded ones).
/// With `busy`, the client spins on non-blocking reads (to a server that
/// spins too), so no side sleeps and wakes per transaction.
pub fn tcp_rr(ns: &Netns, to: SocketAddrV4, duration: Duration, busy: bool) -> Result<RrResult> {
    ns.run_in(move || -> Result<RrResult> {
        pin_thread(CLIENT_CPU);
        let mut stream = TcpStream::connect_timeout(&SocketAddr::V4(to), Duration::from_secs(3))
            .with_context(|| format!("connecting to {to}"))?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(Duration::from_secs(3)))?;
        stream.set_nonblocking(busy)?;
        let mut buf = [7u8; RR_SIZE];
        let one = |stream: &mut TcpStream, buf: &mut [u8; RR_SIZE]| -> std::io::Result<()> {
            if busy {
                let limit = Some(Instant::now() + Duration::from_secs(3));
                spin_write_all(stream, buf)?;
                spin_read_exact(stream, buf, limit)
            } else {
                stream.write_all(buf)?;
                stream.read_exact(buf)
            }
        };
        for _ in 0..100 {
            one(&mut stream, &mut buf).context("warm-up answer")?;
        }
        let mut latencies_ns = Vec::with_capacity(1 << 16);
        let start = Instant::now();
        let deadline = start + duration;
        loop {
            let sent = Instant::now();
            if sent >= deadline {
                break;
            }
            one(&mut stream, &mut buf)
                .with_context(|| format!("answer {} from {to}", latencies_ns.len()))?;
            latencies_ns.push(sent.elapsed().as_nanos() as u64);
        }
        let secs = start.elapsed().as_secs_f64();
        latencies_ns.sort_unstable();
        Ok(RrResult {
            transactions: latencies_ns.len() as u64,
            secs,
            latencies_ns,
        })
    })?
}

/// New connections, one at a time.
pub struct CrrResult {
    pub connections: u64,
    pub failures: u64,
    /// Connections that took half a second or more (a SYN or FIN
    /// retransmitted: something on the path dropped a packet).
    pub slow: u64,
    pub secs: f64,
}

/// Connect, send 1 byte, read 1 byte, read the server's close, close;
/// again and again for `duration`.
pub fn tcp_crr(ns: &Netns, to: SocketAddrV4, duration: Duration) -> Result<CrrResult> {
    ns.run_in(move || -> Result<CrrResult> {
        pin_thread(CLIENT_CPU);
        let one = || -> std::io::Result<()> {
            let mut stream =
                TcpStream::connect_timeout(&SocketAddr::V4(to), Duration::from_secs(1))?;
            stream.set_nodelay(true)?;
            stream.set_read_timeout(Some(Duration::from_secs(1)))?;
            stream.write_all(&[1])?;
            let mut byte = [0u8; 1];
            stream.read_exact(&mut byte)?;
            match stream.read(&mut byte)? {
                0 => Ok(()),
                _ => Err(std::io::Error::other("more than one byte")),
            }
        };
        let (mut connections, mut failures, mut slow) = (0u64, 0u64, 0u64);
        let mut last_error = None;
        let start = Instant::now();
        while start.elapsed() < duration {
            let began = Instant::now();
            match one() {
                Ok(()) => {
                    connections += 1;
                    if began.elapsed() >= Duration::from_millis(500) {
                        slow += 1;
                    }
                }
                Err(err) => {
                    failures += 1;
                    last_error = Some(err);
                    if connections == 0 && failures >= 3 {
                        break;
                    }
                }
            }
        }
        if connections == 0 {
            bail!(
                "no connection to {to} completed: {}",
                last_error.map(|e| e.to_string()).unwrap_or_default()
            );
        }
        Ok(CrrResult {
            connections,
            failures,
            slow,
            secs: start.elapsed().as_secs_f64(),
        })
    })?
}

/// A UDP blast: what was sent, and what the sink counted.
pub struct UdpResult {
    pub sent: u64,
    pub received: u64,
    pub secs: f64,
}

/// One sender in `ns` sends 64-byte datagrams to `to` as fast as it can for
/// `duration`; the sink counts those that arrive (200 ms of grace after).
pub fn udp_blast(
    ns: &Netns,
    to: SocketAddrV4,
    sink: &UdpSink,
    tag: u64,
    duration: Duration,
) -> Result<UdpResult> {
    // The whole send runs on a thread of its own, in `ns`, on the client CPU.
    let (sent, secs, last_error) = ns
        .run_in(|| -> std::io::Result<(u64, f64, Option<std::io::Error>)> {
            pin_thread(CLIENT_CPU);
            let socket = UdpSocket::bind(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0))?;
            socket.connect(to)?;
            // Warm-up, not counted: neighbours and connection state on the path.
            let mut buf = [0u8; UDP_SIZE];
            for _ in 0..10 {
                let _ = socket.send(&buf);
            }
            std::thread::sleep(Duration::from_millis(50));
            sink.begin(tag);
            buf[..8].copy_from_slice(&tag.to_le_bytes());
            let mut sent = 0u64;
            let start = Instant::now();
            let mut last_error = None;
            while start.elapsed() < duration {
                for _ in 0..64 {
                    match socket.send(&buf) {
                        Ok(_) => sent += 1,
                        Err(err) => last_error = Some(err),
                    }
                }
            }
            Ok((sent, start.elapsed().as_secs_f64(), last_error))
        })?
        .with_context(|| format!("a UDP socket towards {to}"))?;
    std::thread::sleep(Duration::from_millis(200));
    let received = sink.received();
    if sent == 0 {
        bail!(
            "no datagram could be sent to {to}: {}",
            last_error.map(|e| e.to_string()).unwrap_or_default()
        );
    }
    Ok(UdpResult {
        sent,
        received,
        secs,
    })
}

/// iperf3 from `ns` to the iperf3 server at `to` for `secs` seconds (one
/// TCP stream): the receiver's bits per second.
pub fn iperf3(ns: &Netns, to: Ipv4Addr, port: u16, secs: u32) -> Result<f64> {
    let mut last = anyhow!("iperf3 did not run");
    for attempt in 0..2 {
        if attempt > 0 {
            std::thread::sleep(Duration::from_millis(500));
        }
        match iperf3_once(ns, to, port, secs) {
            Ok(bps) => return Ok(bps),
            Err(err) => last = err,
        }
    }
    Err(last)
}

fn iperf3_once(ns: &Netns, to: Ipv4Addr, port: u16, secs: u32) -> Result<f64> {
    let mut cmd = ns.command("iperf3");
    pin_command(&mut cmd, CLIENT_CPU);
    let mut child = cmd
        .args(["-c", &to.to_string(), "-p", &port.to_string()])
        .args(["-t", &secs.to_string(), "-J", "--connect-timeout", "3000"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("running iperf3 (is it installed? `cargo xtask setup`)")?;
    let limit = Duration::from_secs(u64::from(secs) + 20);
    let start = Instant::now();
    while child.try_wait()?.is_none() {
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            bail!("iperf3 to {to} did not finish in {} s", limit.as_secs());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let output = child.wait_with_output()?;
    let report: serde_json::Value = serde_json::from_slice(&output.stdout)
        .with_context(|| format!("iperf3's JSON report (exit {})", output.status))?;
    if let Some(error) = report.get("error").and_then(|e| e.as_str()) {
        bail!("iperf3 to {to}: {error}");
    }
    report["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .ok_or_else(|| anyhow!("iperf3's report has no end.sum_received.bits_per_second"))
}

/// What `sockperf ping-pong --tcp` reports: the half round trip.
pub struct SockperfLatency {
    pub avg_us: f64,
    pub p50_us: f64,
}

/// `sockperf ping-pong --tcp -m 64` from `ns` to `to` for `secs` s, pinned
/// to the client CPU; sockperf's latency figures are half a round trip.
pub fn sockperf_ping_pong(ns: &Netns, to: SocketAddrV4, secs: u32) -> Result<SockperfLatency> {
    let out = sockperf(ns, to, secs, &["ping-pong", "--tcp"])?;
    let avg_us = figure_after(&out, "Summary: Latency is ")
        .ok_or_else(|| anyhow!("sockperf ping-pong printed no latency: {}", tail(&out)))?;
    let p50_us = figure_after(&out, "percentile 50.000 =").unwrap_or(f64::NAN);
    Ok(SockperfLatency { avg_us, p50_us })
}

/// `sockperf throughput -m 64` (UDP) from `ns` to `to`: the sender's
/// messages per second.
pub fn sockperf_throughput(ns: &Netns, to: SocketAddrV4, secs: u32) -> Result<f64> {
    let out = sockperf(ns, to, secs, &["throughput"])?;
    figure_after(&out, "Summary: Message Rate is ")
        .ok_or_else(|| anyhow!("sockperf throughput printed no rate: {}", tail(&out)))
}

fn sockperf(ns: &Netns, to: SocketAddrV4, secs: u32, mode: &[&str]) -> Result<String> {
    let mut cmd = ns.command("sockperf");
    pin_command(&mut cmd, CLIENT_CPU);
    cmd.args(mode)
        .args(["-i", &to.ip().to_string(), "-p", &to.port().to_string()])
        .args(["-t", &secs.to_string(), "-m", &UDP_SIZE.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = cmd
        .spawn()
        .context("running sockperf (is it installed? `cargo xtask setup`)")?;
    let pid = child.id();
    // sockperf waits for its server without end when nobody answers.
    let limit = Duration::from_secs(u64::from(secs) + 15);
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let waiter = std::thread::spawn(move || {
        let out = child.wait_with_output();
        let _ = done_tx.send(());
        out
    });
    if done_rx.recv_timeout(limit).is_err() {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    let output = waiter
        .join()
        .map_err(|_| anyhow!("sockperf's waiter panicked"))??;
    let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&output.stderr));
    // Strip its colour escapes.
    let text = text.replace("\u{1b}[2;35m", "").replace("\u{1b}[0m", "");
    if !output.status.success() && figure_after(&text, "Summary:").is_none() {
        bail!(
            "sockperf to {to} failed ({}): {}",
            output.status,
            tail(&text)
        );
    }
    Ok(text)
}

/// The number right after `marker` in `text`.
fn figure_after(text: &str, marker: &str) -> Option<f64> {
    let at = text.find(marker)? + marker.len();
    text[at..]
        .split_whitespace()
        .next()?
        .trim_end_matches(|c: char| !c.is_ascii_digit())
        .parse()
        .ok()
}

fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(3)..].join(" / ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sockperf_figures_are_read() {
        let out = "sockperf: Summary: Latency is 11.894 usec\n\
                   sockperf: ---> percentile 50.000 =    9.592\n\
                   sockperf: Summary: Message Rate is 85626 [msg/sec]\n";
        assert_eq!(figure_after(out, "Summary: Latency is "), Some(11.894));
        assert_eq!(figure_after(out, "percentile 50.000 ="), Some(9.592));
        assert_eq!(
            figure_after(out, "Summary: Message Rate is "),
            Some(85626.0)
        );
        assert_eq!(figure_after(out, "nothing"), None);
    }

    #[test]
    fn published_ports_map_onto_the_servers() {
        for (host, server, _) in Ports::PUBLISHED.mappings() {
            assert_eq!(host, server + 1000);
        }
    }
}
