//! Host devices that a guest's packet may skip the egress queue of.
//!
//! When the host's link to the outside is itself a veth (the host is a
//! container, a test node, a namespace started with `nsenter --net`),
//! sending a packet out of it only puts the packet into its peer's ingress
//! in the next namespace, through a per-CPU backlog queue. The host program
//! can do the same in one step (`bpf_redirect_peer`), as it does into the
//! gateway: the guest's packet then crosses one veth queue on its way out,
//! as on a direct veth. What that step skips is the device's egress: its
//! qdisc and TC egress programs, and packet taps (tcpdump) on it. So a
//! device qualifies only while it has nothing there that the skip would
//! bypass: a veth whose peer is in another namespace, with no qdisc but the
//! default `noqueue` (an `ingress` qdisc is on the other side and harmless)
//! and no TCX egress program. The daemon re-reads this on every repair
//! tick, with the devices it follows.

use anyhow::{Context, Result, bail};
use aya::programs::{SchedClassifier, TcAttachType};
use rtnetlink::{
    packet_core::{NLM_F_DUMP, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage, NetlinkPayload},
    packet_route::{
        RouteNetlinkMessage,
        link::{InfoKind, LinkAttribute, LinkInfo, LinkMessage},
        tc::{TcAttribute, TcMessage},
    },
    sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE},
};

use crate::netns::Netns;

/// What decides whether a device's egress may be skipped.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct EgressFacts {
    /// The device is a veth.
    pub veth: bool,
    /// Its peer lives in another namespace (`IFLA_LINK_NETNSID`): the
    /// kernel's peer redirect goes only across namespaces.
    pub peer_elsewhere: bool,
    /// The kinds of the qdiscs on it.
    pub qdiscs: Vec<String>,
    /// How many TCX egress programs it has.
    pub tcx_egress: usize,
}

impl EgressFacts {
    /// Whether a packet may go straight into the peer: nothing on the
    /// device's egress that the step would bypass.
    pub fn skippable(&self) -> bool {
        self.veth
            && self.peer_elsewhere
            && self.tcx_egress == 0
            && self
                .qdiscs
                .iter()
                .all(|kind| kind == "noqueue" || kind == "ingress")
    }
}

/// The devices of `netns` whose egress may be skipped, by index: one link
/// dump and one qdisc dump for all of them, and a TCX query for each veth
/// whose peer is elsewhere. Loopback and `except` (the host link) never are.
pub fn skippable(netns: &Netns, except: &str) -> Result<Vec<u32>> {
    let except = except.to_owned();
    netns.run_in(move || -> Result<Vec<u32>> {
        let socket = connect()?;
        let links = request(
            &socket,
            RouteNetlinkMessage::GetLink(LinkMessage::default()),
            NLM_F_REQUEST | NLM_F_DUMP,
        )
        .context("listing links")?;
        let mut candidates: Vec<(u32, String, EgressFacts)> = links
            .iter()
            .filter_map(|message| match message {
                RouteNetlinkMessage::NewLink(link) => Some(link),
                _ => None,
            })
            .filter_map(|link| {
                let mut name = None;
                let mut facts = EgressFacts::default();
                for attribute in &link.attributes {
                    match attribute {
                        LinkAttribute::IfName(ifname) => name = Some(ifname.clone()),
                        LinkAttribute::LinkInfo(infos) => {
                            facts.veth |= infos
                                .iter()
                                .any(|info| matches!(info, LinkInfo::Kind(InfoKind::Veth)));
                        }
                        LinkAttribute::LinkNetNsId(_) => facts.peer_elsewhere = true,
                        _ => {}
                    }
                }
                let name = name?;
                (facts.veth && facts.peer_elsewhere && name != except).then_some((
                    link.header.index,
                    name,
                    facts,
                ))
            })
            .collect();
        if candidates.is_empty() {
            return Ok(Vec::new());
        }
        let qdiscs = request(
            &socket,
            RouteNetlinkMessage::GetQueueDiscipline(TcMessage::default()),
            NLM_F_REQUEST | NLM_F_DUMP,
        )
        .context("listing qdiscs")?;
        for message in &qdiscs {
            let RouteNetlinkMessage::NewQueueDiscipline(qdisc) = message else {
                continue;
            };
            let Some((_, _, facts)) = candidates
                .iter_mut()
                .find(|(index, _, _)| *index as i32 == qdisc.header.index)
            else {
                continue;
            };
            for attribute in &qdisc.attributes {
                if let TcAttribute::Kind(kind) = attribute {
                    facts.qdiscs.push(kind.clone());
                }
            }
        }
        for (_, name, facts) in &mut candidates {
            facts.tcx_egress = SchedClassifier::query_tcx(name.as_str(), TcAttachType::Egress)
                .map(|(_, programs)| programs.len())
                // No answer: count it as occupied rather than skip what may
                // be there.
                .unwrap_or(1);
        }
        Ok(candidates
            .into_iter()
            .filter(|(_, _, facts)| facts.skippable())
            .map(|(index, _, _)| index)
            .collect())
    })?
}

fn connect() -> Result<Socket> {
    let mut socket = Socket::new(NETLINK_ROUTE).context("opening a netlink socket")?;
    socket.bind_auto().context("binding a netlink socket")?;
    socket
        .connect(&SocketAddr::new(0, 0))
        .context("connecting a netlink socket")?;
    Ok(socket)
}

/// Sends one request and gathers its answers (a dump's parts, or the one
/// answer) until the kernel says it is done.
fn request(
    socket: &Socket,
    message: RouteNetlinkMessage,
    flags: u16,
) -> Result<Vec<RouteNetlinkMessage>> {
    let mut header = NetlinkHeader::default();
    header.flags = flags;
    header.sequence_number = 1;
    let mut packet = NetlinkMessage::new(header, NetlinkPayload::from(message));
    packet.finalize();
    let mut buffer = vec![0u8; packet.buffer_len()];
    packet.serialize(&mut buffer);
    socket
        .send(&buffer, 0)
        .context("sending a netlink request")?;
    let dump = flags & NLM_F_DUMP != 0;
    let mut answers = Vec::new();
    loop {
        let (bytes, _) = socket
            .recv_from_full()
            .context("reading a netlink answer")?;
        let mut offset = 0;
        while offset < bytes.len() {
            let message = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&bytes[offset..])
                .context("decoding a netlink answer")?;
            let length = message.header.length as usize;
            match message.payload {
                NetlinkPayload::InnerMessage(inner) => {
                    answers.push(inner);
                    if !dump {
                        return Ok(answers);
                    }
                }
                NetlinkPayload::Done(_) => return Ok(answers),
                NetlinkPayload::Error(err) if err.code.is_some() => {
                    bail!("netlink error: {err}")
                }
                _ => {}
            }
            if length == 0 {
                break;
            }
            offset += length;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn veth(qdiscs: &[&str]) -> EgressFacts {
        EgressFacts {
            veth: true,
            peer_elsewhere: true,
            qdiscs: qdiscs.iter().map(|q| q.to_string()).collect(),
            tcx_egress: 0,
        }
    }

    #[test]
    fn a_bare_veth_into_another_namespace_is_skippable() {
        assert!(veth(&[]).skippable());
        assert!(veth(&["noqueue"]).skippable());
        assert!(veth(&["noqueue", "ingress"]).skippable());
    }

    #[test]
    fn anything_on_the_egress_keeps_the_queue() {
        assert!(!veth(&["tbf"]).skippable());
        assert!(!veth(&["clsact"]).skippable());
        assert!(!veth(&["noqueue", "htb"]).skippable());
        let mut tcx = veth(&[]);
        tcx.tcx_egress = 1;
        assert!(!tcx.skippable());
    }

    #[test]
    fn only_a_veth_whose_peer_is_elsewhere() {
        let mut same_namespace = veth(&[]);
        same_namespace.peer_elsewhere = false;
        assert!(!same_namespace.skippable());
        let mut physical = veth(&[]);
        physical.veth = false;
        assert!(!physical.skippable());
    }
}
