//! Real sockets in sandbox namespaces. A socket belongs to the namespace it
//! was created in, whichever thread uses it later: so each is created inside
//! `Netns::run_in` and then driven from ordinary threads.

use std::{
    io::{Read, Write},
    net::{SocketAddr, SocketAddrV4, TcpListener, TcpStream, UdpSocket},
    thread::JoinHandle,
    time::Duration,
};

use netd::netns::Netns;

/// A TCP listener in `ns`.
pub fn tcp_listener(ns: &Netns, addr: SocketAddrV4) -> TcpListener {
    ns.run_in(|| TcpListener::bind(addr))
        .expect("entering namespace")
        .unwrap_or_else(|err| panic!("binding {addr} in {}: {err}", ns.name()))
}

/// A UDP socket in `ns`.
pub fn udp_socket(ns: &Netns, addr: SocketAddrV4) -> UdpSocket {
    let socket = ns
        .run_in(|| UdpSocket::bind(addr))
        .expect("entering namespace")
        .unwrap_or_else(|err| panic!("binding {addr} in {}: {err}", ns.name()));
    socket
        .set_read_timeout(Some(Duration::from_secs(2)))
        .expect("setting a timeout");
    socket
}

/// A TCP connection made from inside `ns`, bound to `local` if given.
pub fn tcp_connect(
    ns: &Netns,
    to: SocketAddrV4,
    local: Option<SocketAddrV4>,
) -> std::io::Result<TcpStream> {
    let stream = ns.run_in(|| -> std::io::Result<TcpStream> {
        match local {
            None => TcpStream::connect_timeout(&SocketAddr::V4(to), Duration::from_secs(3)),
            Some(local) => socket2_like_bind(local)?.connect(to),
        }
    });
    let stream = stream.expect("entering namespace")?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    Ok(stream)
}

/// A connected TCP socket from a fixed local address, via libc (std has no
/// bind-before-connect).
fn socket2_like_bind(local: SocketAddrV4) -> std::io::Result<BoundTcp> {
    // SAFETY: plain socket syscalls with valid arguments; the fd is owned by
    // the returned value.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0);
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let one: libc::c_int = 1;
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_REUSEADDR,
            &one as *const _ as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as u32,
        );
        let addr = sockaddr(local);
        if libc::bind(
            fd,
            &addr as *const _ as *const libc::sockaddr,
            std::mem::size_of::<libc::sockaddr_in>() as u32,
        ) < 0
        {
            let err = std::io::Error::last_os_error();
            libc::close(fd);
            return Err(err);
        }
        Ok(BoundTcp { fd })
    }
}

struct BoundTcp {
    fd: i32,
}

impl BoundTcp {
    fn connect(self, to: SocketAddrV4) -> std::io::Result<TcpStream> {
        use std::os::fd::FromRawFd;
        let addr = sockaddr(to);
        // SAFETY: connect on our own fd; on success the fd moves into the stream.
        unsafe {
            if libc::connect(
                self.fd,
                &addr as *const _ as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_in>() as u32,
            ) < 0
            {
                let err = std::io::Error::last_os_error();
                libc::close(self.fd);
                return Err(err);
            }
            Ok(TcpStream::from_raw_fd(self.fd))
        }
    }
}

fn sockaddr(addr: SocketAddrV4) -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: libc::AF_INET as u16,
        sin_port: addr.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from_ne_bytes(addr.ip().octets()),
        },
        sin_zero: [0; 8],
    }
}

/// Serves every connection of `listener` with "echo, and say who you are":
/// each line read is answered with "<peer address> <line>".
pub fn serve_tcp_echo(listener: TcpListener) -> JoinHandle<()> {
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            std::thread::spawn(move || {
                let peer = stream
                    .peer_addr()
                    .map(|a| a.to_string())
                    .unwrap_or_default();
                let mut buf = [0u8; 4096];
                loop {
                    match stream.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => {
                            let reply = format!("{peer} {}", String::from_utf8_lossy(&buf[..n]));
                            if stream.write_all(reply.as_bytes()).is_err() {
                                return;
                            }
                        }
                    }
                }
            });
        }
    })
}

/// Same for UDP: every datagram is answered with "<peer address> <payload>".
pub fn serve_udp_echo(socket: UdpSocket) -> JoinHandle<()> {
    socket.set_read_timeout(None).expect("blocking socket");
    std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        loop {
            let Ok((n, peer)) = socket.recv_from(&mut buf) else {
                return;
            };
            let reply = format!("{peer} {}", String::from_utf8_lossy(&buf[..n]));
            let _ = socket.send_to(reply.as_bytes(), peer);
        }
    })
}

/// Sends `line` on a TCP connection and returns the echo server's answer.
pub fn tcp_ask(stream: &mut TcpStream, line: &str) -> String {
    stream.write_all(line.as_bytes()).expect("sending");
    let mut buf = [0u8; 4096];
    let n = stream.read(&mut buf).expect("reading the answer");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

/// Sends `line` in one datagram and returns the answer, or None on timeout.
pub fn udp_ask(socket: &UdpSocket, to: SocketAddrV4, line: &str) -> Option<String> {
    socket.send_to(line.as_bytes(), to).expect("sending");
    let mut buf = [0u8; 2048];
    let (n, _) = socket.recv_from(&mut buf).ok()?;
    Some(String::from_utf8_lossy(&buf[..n]).into_owned())
}
