//! A bound on the API connections one caller may hold open: callers are
//! told apart by their network namespace (a guest with the socket
//! bind-mounted is one caller, the host another), so that a guest opening
//! thousands of idle connections exhausts its own share, not the daemon's
//! descriptors, and the host's CLI keeps working.

use std::{
    collections::HashMap,
    io,
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll},
};

use axum::{extract::connect_info::Connected, serve::IncomingStream};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{UnixListener, UnixStream, unix::SocketAddr},
};

use super::caller::PeerCred;

/// How many API connections one caller (network namespace) may hold open
/// at once; the next one is closed as soon as it is accepted.
pub const CONNECTIONS_PER_CALLER: usize = 64;

type Counts = Arc<Mutex<HashMap<u64, usize>>>;

/// The API's listener, with [`CONNECTIONS_PER_CALLER`] enforced.
pub struct LimitedListener {
    inner: UnixListener,
    per_caller: usize,
    open: Counts,
}

impl LimitedListener {
    pub fn new(inner: UnixListener, per_caller: usize) -> LimitedListener {
        LimitedListener {
            inner,
            per_caller,
            open: Arc::default(),
        }
    }
}

/// An accepted connection; dropping it gives its caller's slot back.
pub struct LimitedStream {
    inner: UnixStream,
    caller: u64,
    open: Counts,
}

impl Drop for LimitedStream {
    fn drop(&mut self) {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = open.get_mut(&self.caller) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.caller);
            }
        }
    }
}

/// The network namespace (its inode) of the process at the other end; 0
/// when it cannot be told (such callers share one bound).
fn caller_of(stream: &UnixStream) -> u64 {
    use std::os::unix::fs::MetadataExt;
    stream
        .peer_cred()
        .ok()
        .and_then(|cred| cred.pid())
        .and_then(|pid| std::fs::metadata(format!("/proc/{pid}/ns/net")).ok())
        .map_or(0, |meta| meta.ino())
}

impl axum::serve::Listener for LimitedListener {
    type Io = LimitedStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let mut refused: u64 = 0;
        loop {
            let (stream, addr) = match self.inner.accept().await {
                Ok(accepted) => accepted,
                Err(err) => {
                    // EMFILE and the like: wait for descriptors to come back.
                    tracing::warn!("accepting an API connection: {err}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            };
            let caller = caller_of(&stream);
            let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
            let count = open.entry(caller).or_default();
            if *count >= self.per_caller {
                refused += 1;
                if refused.is_power_of_two() {
                    tracing::warn!(
                        netns_inode = caller,
                        "refusing API connections beyond {} from one network namespace",
                        self.per_caller
                    );
                }
                continue;
            }
            *count += 1;
            drop(open);
            let stream = LimitedStream {
                inner: stream,
                caller,
                open: self.open.clone(),
            };
            return (stream, addr);
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

impl Connected<IncomingStream<'_, LimitedListener>> for PeerCred {
    fn connect_info(stream: IncomingStream<'_, LimitedListener>) -> Self {
        PeerCred::of(&stream.io().inner)
    }
}

impl AsyncRead for LimitedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for LimitedStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
