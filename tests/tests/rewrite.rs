//! The gateway program's rewrites, byte for byte: crafted frames with full
//! checksums run through the loaded `netd_gw_host` with BPF_PROG_TEST_RUN,
//! and every checksum of the result is recomputed from scratch. Real traffic
//! between veths carries offloaded checksums that no receiver verifies, so
//! this is where a wrong incremental update would show.

use netd::dataplane::ebpf::EbpfDataplane;
use netd_common::{
    csum::checksum,
    maps::PROG_GATEWAY_FROM_HOST,
    nat::{CtEntry, CtKey, IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP, kind},
    zones::GatewayInfo,
};
use netd_tests::{Sandbox, sandbox::block_on};

const GATEWAY: [u8; 4] = [172, 18, 255, 2];
const SERVER: [u8; 4] = [203, 0, 113, 10];
const GUEST: [u8; 4] = [172, 18, 0, 5];
const ETH: usize = 14;

/// An Ethernet + IPv4 frame around `l4`, with a correct header checksum.
fn frame(proto: u8, src: [u8; 4], dst: [u8; 4], l4: &[u8]) -> Vec<u8> {
    let mut f = vec![0u8; ETH];
    f[12] = 0x08;
    let total = (20 + l4.len()) as u16;
    let mut ip = vec![0x45, 0, 0, 0, 0x12, 0x34, 0x40, 0, 64, proto, 0, 0];
    ip[2..4].copy_from_slice(&total.to_be_bytes());
    ip.extend_from_slice(&src);
    ip.extend_from_slice(&dst);
    let c = checksum(&ip);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    f.extend_from_slice(&ip);
    f.extend_from_slice(l4);
    f
}

/// The transport checksum over the pseudo-header, from scratch.
fn l4_checksum(proto: u8, src: [u8; 4], dst: [u8; 4], l4: &[u8]) -> u16 {
    let mut pseudo = Vec::new();
    pseudo.extend_from_slice(&src);
    pseudo.extend_from_slice(&dst);
    pseudo.extend_from_slice(&[0, proto]);
    pseudo.extend_from_slice(&(l4.len() as u16).to_be_bytes());
    pseudo.extend_from_slice(l4);
    checksum(&pseudo)
}

fn udp(
    sport: u16,
    dport: u16,
    payload: &[u8],
    src: [u8; 4],
    dst: [u8; 4],
    with_csum: bool,
) -> Vec<u8> {
    let mut h = Vec::new();
    h.extend_from_slice(&sport.to_be_bytes());
    h.extend_from_slice(&dport.to_be_bytes());
    h.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    h.extend_from_slice(&[0, 0]);
    h.extend_from_slice(payload);
    if with_csum {
        let c = match l4_checksum(IPPROTO_UDP, src, dst, &h) {
            0 => 0xffff,
            c => c,
        };
        h[6..8].copy_from_slice(&c.to_be_bytes());
    }
    h
}

fn tcp(sport: u16, dport: u16, payload: &[u8], src: [u8; 4], dst: [u8; 4]) -> Vec<u8> {
    let mut h = vec![0u8; 20];
    h[0..2].copy_from_slice(&sport.to_be_bytes());
    h[2..4].copy_from_slice(&dport.to_be_bytes());
    h[4..8].copy_from_slice(&1000u32.to_be_bytes());
    h[12] = 5 << 4;
    h[13] = 0x18; // PSH|ACK
    h[14..16].copy_from_slice(&512u16.to_be_bytes());
    h.extend_from_slice(payload);
    let c = l4_checksum(IPPROTO_TCP, src, dst, &h);
    h[16..18].copy_from_slice(&c.to_be_bytes());
    h
}

fn icmp(type_: u8, code: u8, rest: [u8; 4], body: &[u8]) -> Vec<u8> {
    let mut h = vec![type_, code, 0, 0];
    h.extend_from_slice(&rest);
    h.extend_from_slice(body);
    let c = checksum(&h);
    h[2..4].copy_from_slice(&c.to_be_bytes());
    h
}

fn ip_of(f: &[u8], at: usize) -> [u8; 4] {
    f[ETH + at..ETH + at + 4].try_into().unwrap()
}

fn port(bytes: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([bytes[at], bytes[at + 1]])
}

/// Checks the IPv4 header checksum and returns the transport bytes.
fn checked_l4(f: &[u8]) -> &[u8] {
    assert_eq!(checksum(&f[ETH..ETH + 20]), 0, "IPv4 header checksum");
    &f[ETH + 20..]
}

/// A reply from the server to a guest's connection, as the gateway records
/// it: (zone 0, server -> gateway:40001) becomes (server -> guest:40000),
/// sent to network zone 1.
fn reply_entry(proto: u8, server_port: u16, nat_port: u16, guest_port: u16) -> (CtKey, CtEntry) {
    let key = CtKey {
        zone: 0,
        src: SERVER,
        dst: GATEWAY,
        sport: server_port,
        dport: nat_port,
        proto,
        _pad: [0; 3],
    };
    let entry = CtEntry {
        new_src: SERVER,
        new_dst: GUEST,
        new_sport: server_port,
        new_dport: guest_port,
        out_zone: 1,
        kind: kind::SNAT,
        ..CtEntry::default()
    };
    (key, entry)
}

/// Loads the dataplane into the sandbox's bpffs and runs `test` with it,
/// inside the sandbox's host namespace (the programs' FIB lookups read the
/// routes of the namespace they run in).
fn with_dataplane(test: impl FnOnce(&mut EbpfDataplane) + Send) {
    let sandbox = Sandbox::new();
    let mut dataplane =
        block_on(async { EbpfDataplane::open(&sandbox.bpffs_dir) }).expect("loading the dataplane");
    dataplane
        .set_gateway(GatewayInfo {
            gateway_ip: GATEWAY,
            host_ip: [172, 18, 255, 1],
            host_side_ifindex: 1,
            ready: 1,
            ..GatewayInfo::default()
        })
        .unwrap();
    sandbox
        .host
        .run_in(|| test(&mut dataplane))
        .expect("entering the sandbox's host namespace");
    dataplane.forget_all_pins();
}

fn run(dataplane: &mut EbpfDataplane, frame: &[u8]) -> Vec<u8> {
    let out = dataplane
        .test_run(PROG_GATEWAY_FROM_HOST, frame)
        .expect("BPF_PROG_TEST_RUN");
    assert_eq!(out.frame.len(), frame.len(), "the frame keeps its length");
    out.frame
}

#[test]
fn a_udp_reply_is_rewritten_to_the_guest_with_valid_checksums() {
    with_dataplane(|dp| {
        let (key, entry) = reply_entry(IPPROTO_UDP, 53, 40001, 40000);
        dp.insert_connection(key, entry).unwrap();
        let l4 = udp(53, 40001, b"an answer of odd length", SERVER, GATEWAY, true);
        let out = run(dp, &frame(IPPROTO_UDP, SERVER, GATEWAY, &l4));
        assert_eq!(ip_of(&out, 16), GUEST, "destination");
        assert_eq!(ip_of(&out, 12), SERVER, "source untouched");
        let l4 = checked_l4(&out);
        assert_eq!(port(l4, 2), 40000, "destination port");
        assert_eq!(
            l4_checksum(IPPROTO_UDP, SERVER, GUEST, l4),
            0,
            "UDP checksum"
        );
    });
}

#[test]
fn a_zero_udp_checksum_stays_zero() {
    with_dataplane(|dp| {
        let (key, entry) = reply_entry(IPPROTO_UDP, 53, 40001, 40000);
        dp.insert_connection(key, entry).unwrap();
        let l4 = udp(53, 40001, b"no checksum", SERVER, GATEWAY, false);
        let out = run(dp, &frame(IPPROTO_UDP, SERVER, GATEWAY, &l4));
        let l4 = checked_l4(&out);
        assert_eq!(port(l4, 2), 40000);
        assert_eq!(port(l4, 6), 0, "zero means no checksum, and stays so");
    });
}

#[test]
fn a_tcp_reply_is_rewritten_with_valid_checksums_and_its_flags_recorded() {
    with_dataplane(|dp| {
        let (key, entry) = reply_entry(IPPROTO_TCP, 80, 40001, 40000);
        dp.insert_connection(key, entry).unwrap();
        let l4 = tcp(80, 40001, b"HTTP/1.1 200 OK\r\n", SERVER, GATEWAY);
        let out = run(dp, &frame(IPPROTO_TCP, SERVER, GATEWAY, &l4));
        assert_eq!(ip_of(&out, 16), GUEST);
        let l4 = checked_l4(&out);
        assert_eq!(port(l4, 2), 40000);
        assert_eq!(
            l4_checksum(IPPROTO_TCP, SERVER, GUEST, l4),
            0,
            "TCP checksum"
        );
        let seen = dp.connection(&key).expect("entry");
        assert_eq!(
            seen.tcp_flags, 0x18,
            "the reply direction's flags are recorded"
        );
        assert!(seen.last_seen_ns > 0);
    });
}

#[test]
fn an_echo_reply_gets_the_guests_identifier_back() {
    with_dataplane(|dp| {
        // Echo replies carry the identifier as the "destination port".
        let (key, entry) = reply_entry(IPPROTO_ICMP, 0, 0x4242, 0x0707);
        dp.insert_connection(key, entry).unwrap();
        let l4 = icmp(0, 0, [0x42, 0x42, 0, 1], b"ping payload");
        let out = run(dp, &frame(IPPROTO_ICMP, SERVER, GATEWAY, &l4));
        assert_eq!(ip_of(&out, 16), GUEST);
        let l4 = checked_l4(&out);
        assert_eq!(port(l4, 4), 0x0707, "identifier");
        assert_eq!(checksum(l4), 0, "ICMP checksum");
    });
}

#[test]
fn a_port_unreachable_is_translated_back_quote_and_all() {
    with_dataplane(|dp| {
        let (key, entry) = reply_entry(IPPROTO_UDP, 53, 40001, 40000);
        dp.insert_connection(key, entry).unwrap();
        // What the gateway had sent: gateway:40001 -> server:53, quoted whole.
        let sent_udp = udp(40001, 53, b"query", GATEWAY, SERVER, true);
        let sent = frame(IPPROTO_UDP, GATEWAY, SERVER, &sent_udp);
        let l4 = icmp(3, 3, [0; 4], &sent[ETH..]);
        let out = run(dp, &frame(IPPROTO_ICMP, SERVER, GATEWAY, &l4));
        assert_eq!(ip_of(&out, 16), GUEST, "the error goes to the guest");
        assert_eq!(ip_of(&out, 12), SERVER, "from the server that reported it");
        let l4 = checked_l4(&out);
        assert_eq!(checksum(l4), 0, "ICMP checksum over the rewritten quote");
        let quoted = &l4[8..];
        assert_eq!(checksum(&quoted[..20]), 0, "quoted IPv4 header checksum");
        assert_eq!(&quoted[12..16], &GUEST, "quoted source is the guest");
        assert_eq!(&quoted[16..20], &SERVER, "quoted destination unchanged");
        let quoted_udp = &quoted[20..];
        assert_eq!(
            port(quoted_udp, 0),
            40000,
            "quoted source port is the guest's"
        );
        assert_eq!(
            l4_checksum(IPPROTO_UDP, GUEST, SERVER, quoted_udp),
            0,
            "quoted UDP checksum"
        );
    });
}

#[test]
fn a_packet_of_no_connection_is_left_alone() {
    with_dataplane(|dp| {
        let l4 = udp(53, 45678, b"stray", SERVER, GATEWAY, true);
        let input = frame(IPPROTO_UDP, SERVER, GATEWAY, &l4);
        let out = run(dp, &input);
        assert_eq!(out, input, "untouched");
    });
}
