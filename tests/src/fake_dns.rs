//! A fake upstream resolver for tests: it answers every A question with one
//! fixed address, over UDP and TCP, from a namespace of the sandbox, so that
//! netd's relay is exercised without a packet to a real resolver. Written
//! apart from netd's own DNS code, so a mistake there is not mirrored here.

use std::{
    io::{Read, Write},
    net::{Ipv4Addr, SocketAddrV4, TcpListener, UdpSocket},
    sync::{
        Arc,
        atomic::{AtomicU32, Ordering},
    },
};

use netd::netns::Netns;

/// Serves until the test ends; returns how many questions it was asked.
pub fn serve(ns: &Netns, addr: SocketAddrV4, answer: Ipv4Addr) -> Arc<AtomicU32> {
    let asked = Arc::new(AtomicU32::new(0));
    let (udp, tcp) = ns
        .run_in(|| (UdpSocket::bind(addr), TcpListener::bind(addr)))
        .expect("entering namespace");
    let (udp, tcp) = (
        udp.unwrap_or_else(|e| panic!("binding {addr}/udp: {e}")),
        tcp.unwrap_or_else(|e| panic!("binding {addr}/tcp: {e}")),
    );
    let counter = asked.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok((len, from)) = udp.recv_from(&mut buf) {
            counter.fetch_add(1, Ordering::SeqCst);
            if let Some(reply) = reply(&buf[..len], answer) {
                let _ = udp.send_to(&reply, from);
            }
        }
    });
    let counter = asked.clone();
    std::thread::spawn(move || {
        for stream in tcp.incoming() {
            let Ok(mut stream) = stream else { continue };
            counter.fetch_add(1, Ordering::SeqCst);
            let mut len = [0u8; 2];
            if stream.read_exact(&mut len).is_err() {
                continue;
            }
            let mut query = vec![0u8; usize::from(u16::from_be_bytes(len))];
            if stream.read_exact(&mut query).is_err() {
                continue;
            }
            if let Some(reply) = reply(&query, answer) {
                let mut framed = (reply.len() as u16).to_be_bytes().to_vec();
                framed.extend_from_slice(&reply);
                let _ = stream.write_all(&framed);
            }
        }
    });
    asked
}

/// The query's header and question, flagged as an answer, with one A record.
fn reply(query: &[u8], answer: Ipv4Addr) -> Option<Vec<u8>> {
    let mut end = 12;
    while *query.get(end)? != 0 {
        end += usize::from(query[end]) + 1;
    }
    end += 5;
    let mut out = query.get(..end)?.to_vec();
    out[2] |= 0x80; // QR
    out[3] = 0x80; // RA, NOERROR
    out[6..12].copy_from_slice(&[0, 1, 0, 0, 0, 0]);
    out.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4]);
    out.extend_from_slice(&answer.octets());
    Some(out)
}
