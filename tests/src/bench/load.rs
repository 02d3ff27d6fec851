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
/// iperf3 server port.
pub const IPERF_PORT: u16 = 5201;
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
    let (rr, crr, udp) = ns
        .run_in(|| -> std::io::Result<_> {
            Ok((
                TcpListener::bind(any(RR_PORT))?,
                TcpListener::bind(any(CRR_PORT))?,
                UdpSocket::bind(any(UDP_PORT))?,
            ))
        })?
        .with_context(|| format!("binding the bench servers in {}", ns.name()))?;
    std::thread::spawn(move || serve_rr(rr));
    std::thread::spawn(move || serve_crr(crr));
    set_buffer(&udp, libc::SO_RCVBUF, 4 << 20);
    let sink = Arc::new(UdpSink::default());
    let counter = sink.clone();
    std::thread::spawn(move || serve_udp(udp, &counter));
    Ok(Servers { sink })
}

/// An iperf3 server in `ns`, to be owned by a sandbox (`Sandbox::spawn`).
pub fn iperf3_server(ns: &Netns) -> Command {
    let mut cmd = ns.command("iperf3");
    cmd.args(["-s", "-p", &IPERF_PORT.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    cmd
}

fn serve_rr(listener: TcpListener) {
    for stream in listener.incoming() {
        let Ok(mut stream) = stream else { return };
        std::thread::spawn(move || {
            let _ = stream.set_nodelay(true);
            let mut buf = [0u8; RR_SIZE];
            while stream.read_exact(&mut buf).is_ok() {
                if stream.write_all(&buf).is_err() {
                    return;
                }
            }
        });
    }
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
pub fn tcp_rr(ns: &Netns, to: SocketAddrV4, duration: Duration) -> Result<RrResult> {
    ns.run_in(move || -> Result<RrResult> {
        let mut stream = TcpStream::connect_timeout(&SocketAddr::V4(to), Duration::from_secs(3))
            .with_context(|| format!("connecting to {to}"))?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(Duration::from_secs(3)))?;
        let mut buf = [7u8; RR_SIZE];
        for _ in 0..100 {
            stream.write_all(&buf)?;
            stream.read_exact(&mut buf).context("warm-up answer")?;
        }
        let mut latencies_ns = Vec::with_capacity(1 << 16);
        let start = Instant::now();
        let deadline = start + duration;
        loop {
            let sent = Instant::now();
            if sent >= deadline {
                break;
            }
            stream.write_all(&buf)?;
            stream
                .read_exact(&mut buf)
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
    pub secs: f64,
}

/// Connect, send 1 byte, read 1 byte, read the server's close, close;
/// again and again for `duration`.
pub fn tcp_crr(ns: &Netns, to: SocketAddrV4, duration: Duration) -> Result<CrrResult> {
    ns.run_in(move || -> Result<CrrResult> {
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
        let (mut connections, mut failures) = (0u64, 0u64);
        let mut last_error = None;
        let start = Instant::now();
        while start.elapsed() < duration {
            match one() {
                Ok(()) => connections += 1,
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
    let socket = ns
        .run_in(|| -> std::io::Result<UdpSocket> {
            let socket = UdpSocket::bind(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0))?;
            socket.connect(to)?;
            Ok(socket)
        })?
        .with_context(|| format!("a UDP socket towards {to}"))?;
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
    let secs = start.elapsed().as_secs_f64();
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
pub fn iperf3(ns: &Netns, to: Ipv4Addr, secs: u32) -> Result<f64> {
    let mut last = anyhow!("iperf3 did not run");
    for attempt in 0..2 {
        if attempt > 0 {
            std::thread::sleep(Duration::from_millis(500));
        }
        match iperf3_once(ns, to, secs) {
            Ok(bps) => return Ok(bps),
            Err(err) => last = err,
        }
    }
    Err(last)
}

fn iperf3_once(ns: &Netns, to: Ipv4Addr, secs: u32) -> Result<f64> {
    let mut child = ns
        .command("iperf3")
        .args(["-c", &to.to_string(), "-p", &IPERF_PORT.to_string()])
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
