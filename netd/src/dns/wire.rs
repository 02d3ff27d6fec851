//! The few pieces of the DNS wire format (RFC 1035) the resolver needs: a
//! query's header and question, and the answers netd gives itself (an A
//! record, no data, NXDOMAIN, REFUSED, SERVFAIL). Everything else is relayed
//! to the upstream resolvers byte for byte, so nothing else is parsed. Pure.

use std::net::Ipv4Addr;

/// Record type A (an IPv4 address).
pub const TYPE_A: u16 = 1;
/// Class IN.
pub const CLASS_IN: u16 = 1;
const HEADER_LEN: usize = 12;
/// Longest name on the wire (RFC 1035, 3.1).
const MAX_NAME_LEN: usize = 255;

/// Response codes netd answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rcode {
    NoError = 0,
    ServFail = 2,
    NxDomain = 3,
    Refused = 5,
}

/// A standard query's question, as parsed from the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    pub id: u16,
    /// The header's flags as sent (RD is echoed back).
    pub flags: u16,
    /// The name, lower case, without the trailing dot ("" for the root).
    pub name: String,
    pub qtype: u16,
    pub qclass: u16,
    /// Where the question ends: header and question are copied into the
    /// response.
    question_end: usize,
}

/// Why a message is not a query netd answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WireError {
    /// Shorter than its header or its question says.
    Truncated,
    /// A response, another opcode than QUERY, or not exactly one question.
    NotAQuery,
    /// A compressed or over-long name in the question.
    BadName,
}

/// Parses a message that should be a standard query with one question.
pub fn parse_query(message: &[u8]) -> Result<Query, WireError> {
    if message.len() < HEADER_LEN {
        return Err(WireError::Truncated);
    }
    let word = |at: usize| u16::from_be_bytes([message[at], message[at + 1]]);
    let (id, flags, qdcount) = (word(0), word(2), word(4));
    let is_response = flags & 0x8000 != 0;
    let opcode = (flags >> 11) & 0xf;
    if is_response || opcode != 0 || qdcount != 1 {
        return Err(WireError::NotAQuery);
    }
    let mut at = HEADER_LEN;
    let mut labels: Vec<String> = Vec::new();
    loop {
        let len = usize::from(*message.get(at).ok_or(WireError::Truncated)?);
        at += 1;
        if len == 0 {
            break;
        }
        if len & 0xc0 != 0 {
            return Err(WireError::BadName);
        }
        let label = message.get(at..at + len).ok_or(WireError::Truncated)?;
        labels.push(String::from_utf8_lossy(label).to_ascii_lowercase());
        at += len;
        if at - HEADER_LEN > MAX_NAME_LEN {
            return Err(WireError::BadName);
        }
    }
    if message.len() < at + 4 {
        return Err(WireError::Truncated);
    }
    Ok(Query {
        id,
        flags,
        name: labels.join("."),
        qtype: word(at),
        qclass: word(at + 2),
        question_end: at + 4,
    })
}

/// The response to `query` from `message`: the header and question echoed,
/// authoritative, with `rcode` and the A record `address` if given (TTL 0,
/// so no cache holds a name after its guest is gone).
pub fn response(message: &[u8], query: &Query, rcode: Rcode, address: Option<Ipv4Addr>) -> Vec<u8> {
    let mut out = Vec::with_capacity(query.question_end + 16);
    out.extend_from_slice(&query.id.to_be_bytes());
    // QR, the opcode (QUERY: 0), AA, RD as asked, RA, the code.
    let flags = 0x8000 | 0x0400 | (query.flags & 0x0100) | 0x0080 | rcode as u16;
    out.extend_from_slice(&flags.to_be_bytes());
    let answers = u16::from(address.is_some());
    for count in [1, answers, 0, 0] {
        out.extend_from_slice(&count.to_be_bytes());
    }
    out.extend_from_slice(&message[HEADER_LEN..query.question_end]);
    if let Some(ip) = address {
        // The name: a pointer to the question's (offset 12).
        out.extend_from_slice(&[0xc0, 0x0c]);
        out.extend_from_slice(&TYPE_A.to_be_bytes());
        out.extend_from_slice(&CLASS_IN.to_be_bytes());
        out.extend_from_slice(&0u32.to_be_bytes());
        out.extend_from_slice(&4u16.to_be_bytes());
        out.extend_from_slice(&ip.octets());
    }
    out
}

/// A SERVFAIL for a message whose question could not be read: the header's
/// ID echoed, nothing else.
pub fn servfail_for(message: &[u8]) -> Option<Vec<u8>> {
    let id = message.get(..2)?;
    let mut out = id.to_vec();
    out.extend_from_slice(&(0x8000u16 | Rcode::ServFail as u16).to_be_bytes());
    out.extend_from_slice(&[0; 8]);
    Some(out)
}

/// A query for `name` (tests and `netd resolve`'s checks build them).
pub fn query(id: u16, name: &str, qtype: u16) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(&0x0100u16.to_be_bytes());
    for count in [1u16, 0, 0, 0] {
        out.extend_from_slice(&count.to_be_bytes());
    }
    for label in name.split('.').filter(|label| !label.is_empty()) {
        out.push(label.len() as u8);
        out.extend_from_slice(label.as_bytes());
    }
    out.push(0);
    out.extend_from_slice(&qtype.to_be_bytes());
    out.extend_from_slice(&CLASS_IN.to_be_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_query_is_parsed_with_its_name_in_lower_case() {
        let message = query(0x1234, "Web1.Prod.", TYPE_A);
        let parsed = parse_query(&message).unwrap();
        assert_eq!(parsed.id, 0x1234);
        assert_eq!(parsed.name, "web1.prod");
        assert_eq!((parsed.qtype, parsed.qclass), (TYPE_A, CLASS_IN));
        assert_eq!(parsed.question_end, message.len());
    }

    #[test]
    fn an_edns_record_after_the_question_is_left_alone() {
        let mut message = query(7, "a", TYPE_A);
        message[11] = 1; // ARCOUNT
        message.extend_from_slice(&[0, 0, 41, 4, 208, 0, 0, 0, 0, 0, 0]);
        let parsed = parse_query(&message).unwrap();
        assert_eq!(parsed.name, "a");
        let answer = response(&message, &parsed, Rcode::NoError, None);
        assert_eq!(
            &answer[10..12],
            &[0, 0],
            "no additional records in the answer"
        );
    }

    #[test]
    fn an_answer_echoes_the_question_and_carries_one_a_record() {
        let message = query(0xbeef, "db", TYPE_A);
        let parsed = parse_query(&message).unwrap();
        let answer = response(
            &message,
            &parsed,
            Rcode::NoError,
            Some(Ipv4Addr::new(172, 18, 0, 7)),
        );
        assert_eq!(&answer[..2], &[0xbe, 0xef]);
        assert_eq!(
            u16::from_be_bytes([answer[2], answer[3]]),
            0x8580,
            "QR AA RD RA"
        );
        assert_eq!(&answer[4..12], &[0, 1, 0, 1, 0, 0, 0, 0]);
        assert_eq!(&answer[12..message.len()], &message[12..]);
        assert_eq!(
            &answer[message.len()..],
            &[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 0, 0, 4, 172, 18, 0, 7]
        );
    }

    #[test]
    fn error_codes_go_in_the_low_bits_without_answers() {
        let message = query(1, "nope.web", TYPE_A);
        let parsed = parse_query(&message).unwrap();
        let answer = response(&message, &parsed, Rcode::NxDomain, None);
        assert_eq!(answer[3] & 0x0f, 3);
        assert_eq!(&answer[6..8], &[0, 0]);
        let refused = response(&message, &parsed, Rcode::Refused, None);
        assert_eq!(refused[3] & 0x0f, 5);
    }

    #[test]
    fn responses_other_opcodes_and_broken_messages_are_not_queries() {
        let mut response_message = query(1, "a", TYPE_A);
        response_message[2] |= 0x80;
        assert_eq!(parse_query(&response_message), Err(WireError::NotAQuery));
        let mut notify = query(1, "a", TYPE_A);
        notify[2] |= 4 << 3;
        assert_eq!(parse_query(&notify), Err(WireError::NotAQuery));
        assert_eq!(parse_query(&[0; 5]), Err(WireError::Truncated));
        let whole = query(1, "abc", TYPE_A);
        assert_eq!(
            parse_query(&whole[..whole.len() - 1]),
            Err(WireError::Truncated)
        );
        let mut compressed = query(1, "a", TYPE_A);
        compressed[12] = 0xc0;
        assert_eq!(parse_query(&compressed), Err(WireError::BadName));
    }

    #[test]
    fn an_unreadable_question_gets_a_servfail_with_its_id() {
        let answer = servfail_for(&[0xab, 0xcd, 0, 0, 0, 9]).unwrap();
        assert_eq!(answer, [0xab, 0xcd, 0x80, 2, 0, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(servfail_for(&[1]), None);
    }
}
