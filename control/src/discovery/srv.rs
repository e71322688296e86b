//! `kind = "srv"`: asks `srv_lookup_server` for the SRV records of `srv_lookup_pattern`, over
//! `srv_dns_protocol` (`udp`, the default, or `tcp`). Each SRV record is a backend: its target's
//! address, its port, and the record's priority and weight as the backend's; the target's name
//! (without the final dot) as its `sni`, as in gobetween.
//!
//! Addresses come from the answer's additional section, else from A then AAAA queries to the
//! same server; a target with no address is skipped with a warning. A UDP answer with the
//! truncation bit set is asked again over TCP. Queries are built and answers read with
//! hickory-proto; the runner's timeout bounds the whole fetch, every query included.

use super::{Found, SectionError, Source};
use crate::backend::{split_host_port, BackendSpec};
use crate::config::Discovery;
use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

/// The UDP payload size offered in EDNS, as gobetween offers.
const UDP_SIZE: u16 = 4096;

pub struct Srv {
    server: (String, u16),
    name: Name,
    tcp: bool,
}

impl Srv {
    pub fn from_section(d: &Discovery) -> Result<Srv, SectionError> {
        let server = d.srv_lookup_server.as_deref().unwrap_or("");
        if server.is_empty() {
            return Err(SectionError::new("srv_lookup_server", "required: the DNS server as host:port"));
        }
        let server = split_host_port(server).map_err(|e| SectionError::new("srv_lookup_server", e))?;
        let pattern = d.srv_lookup_pattern.as_deref().unwrap_or("");
        if pattern.is_empty() {
            return Err(SectionError::new("srv_lookup_pattern", "required: the name to look up"));
        }
        let mut name = Name::from_ascii(pattern)
            .map_err(|e| SectionError::new("srv_lookup_pattern", format!("not a DNS name: {e}")))?;
        // gobetween needs the final dot (its DNS library refuses the name without it).
        name.set_fqdn(true);
        let tcp = match d.srv_dns_protocol.as_deref() {
            None | Some("" | "udp") => false,
            Some("tcp") => true,
            Some(other) => {
                return Err(SectionError::new(
                    "srv_dns_protocol",
                    format!("unknown protocol {other:?} (use udp or tcp)"),
                ))
            }
        };
        Ok(Srv { server, name, tcp })
    }

    async fn server_address(&self) -> Result<SocketAddr, String> {
        let (host, port) = &self.server;
        let addrs = super::resolve(host, *port).await.map_err(|e| format!("cannot resolve {host}: {e}"))?;
        addrs.first().copied().ok_or_else(|| format!("{host} resolves to no address"))
    }

    /// One question to the server; a truncated UDP answer is asked again over TCP.
    async fn ask(&self, server: SocketAddr, name: &Name, kind: RecordType) -> Result<Message, String> {
        let id = RandomState::new().hash_one(name.to_ascii()) as u16;
        let query = question(id, name, kind).to_vec().map_err(|e| format!("cannot build the query: {e}"))?;
        if !self.tcp {
            let answer =
                over_udp(server, &query, id).await.map_err(|e| format!("{kind} {name} to {server}: {e}"))?;
            if !answer.truncated() {
                return Ok(answer);
            }
        }
        over_tcp(server, &query, id).await.map_err(|e| format!("{kind} {name} to {server} (tcp): {e}"))
    }

    /// The first A, else AAAA, address of `target`, asked of the server.
    async fn address_of(&self, server: SocketAddr, target: &Name, notes: &mut Vec<String>) -> Option<IpAddr> {
        for kind in [RecordType::A, RecordType::AAAA] {
            match self.ask(server, target, kind).await {
                Ok(answer) => {
                    if let Some(ip) = addresses(answer.answers()).remove(&key(target)) {
                        return Some(ip);
                    }
                }
                Err(e) => notes.push(e),
            }
        }
        None
    }
}

impl Source for Srv {
    const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
    const RETRY_WAIT: Duration = Duration::from_secs(2);

    async fn fetch(&self) -> Result<Found, String> {
        let server = self.server_address().await?;
        let answer = self.ask(server, &self.name, RecordType::SRV).await?;
        let records = srv_records(&answer)?;
        let mut hosts = addresses(answer.additionals());
        let mut notes = Vec::new();
        for record in &records {
            if !hosts.contains_key(&key(&record.target)) && !record.target.is_root() {
                if let Some(ip) = self.address_of(server, &record.target, &mut notes).await {
                    hosts.insert(key(&record.target), ip);
                }
            }
        }
        let mut found = backends(&records, &hosts);
        notes.append(&mut found.notes);
        found.notes = notes;
        Ok(found)
    }
}

/// A query as gobetween's DNS library sends it: recursion desired, EDNS with a 4096-byte payload.
fn question(id: u16, name: &Name, kind: RecordType) -> Message {
    let mut message = Message::new();
    message
        .set_id(id)
        .set_message_type(MessageType::Query)
        .set_op_code(OpCode::Query)
        .set_recursion_desired(true)
        .add_query(Query::query(name.clone(), kind));
    let mut edns = Edns::new();
    edns.set_max_payload(UDP_SIZE);
    message.set_edns(edns);
    message
}

/// Reads an answer; one for another query, or no answer at all, is an error.
pub(crate) fn answer_to(id: u16, bytes: &[u8]) -> Result<Message, String> {
    let message = Message::from_vec(bytes).map_err(|e| format!("unreadable answer: {e}"))?;
    if message.id() != id || message.message_type() != MessageType::Response {
        return Err("answer to another query".into());
    }
    Ok(message)
}

async fn over_udp(server: SocketAddr, query: &[u8], id: u16) -> Result<Message, String> {
    let local: SocketAddr = if server.is_ipv4() { ([0, 0, 0, 0], 0).into() } else { ([0u16; 8], 0).into() };
    let socket = UdpSocket::bind(local).await.map_err(|e| e.to_string())?;
    socket.connect(server).await.map_err(|e| e.to_string())?;
    socket.send(query).await.map_err(|e| e.to_string())?;
    let mut buffer = vec![0; 65_535];
    loop {
        let n = socket.recv(&mut buffer).await.map_err(|e| e.to_string())?;
        // A stray or late datagram is not the answer: wait on (the runner's timeout bounds it).
        if let Ok(answer) = answer_to(id, &buffer[..n]) {
            return Ok(answer);
        }
    }
}

async fn over_tcp(server: SocketAddr, query: &[u8], id: u16) -> Result<Message, String> {
    let mut stream = TcpStream::connect(server).await.map_err(|e| e.to_string())?;
    let length = u16::try_from(query.len()).map_err(|_| "query too long")?;
    let mut framed = length.to_be_bytes().to_vec();
    framed.extend_from_slice(query);
    stream.write_all(&framed).await.map_err(|e| e.to_string())?;
    let length = stream.read_u16().await.map_err(|e| e.to_string())?;
    let mut answer = vec![0; length.into()];
    stream.read_exact(&mut answer).await.map_err(|e| e.to_string())?;
    answer_to(id, &answer)
}

/// One SRV record of an answer.
#[derive(Debug, PartialEq)]
pub(crate) struct SrvRecord {
    target: Name,
    port: u16,
    priority: u16,
    weight: u16,
}

/// The SRV records of an answer. As in gobetween, a record of another type in the answer fails
/// the fetch and an empty answer (NXDOMAIN included) is an empty list; unlike gobetween, an
/// answer with another error code (SERVFAIL, REFUSED) fails the fetch rather than empty the list.
pub(crate) fn srv_records(answer: &Message) -> Result<Vec<SrvRecord>, String> {
    match answer.response_code() {
        ResponseCode::NoError | ResponseCode::NXDomain => {}
        code => return Err(format!("the DNS server answered {code}")),
    }
    answer
        .answers()
        .iter()
        .map(|record| match record.data() {
            RData::SRV(srv) => Ok(SrvRecord {
                target: srv.target().clone(),
                port: srv.port(),
                priority: srv.priority(),
                weight: srv.weight(),
            }),
            other => Err(format!("non-SRV record in SRV answer: {} {}", record.name(), other.record_type())),
        })
        .collect()
}

/// Names compare without case and final dot.
pub(crate) fn key(name: &Name) -> String {
    name.to_ascii().trim_end_matches('.').to_ascii_lowercase()
}

/// The A and AAAA addresses among `records`, by name (the first of each name).
pub(crate) fn addresses(records: &[Record]) -> HashMap<String, IpAddr> {
    let mut found = HashMap::new();
    for record in records {
        let ip = match record.data() {
            RData::A(a) => IpAddr::V4(a.0),
            RData::AAAA(aaaa) => IpAddr::V6(aaaa.0),
            _ => continue,
        };
        found.entry(key(record.name())).or_insert(ip);
    }
    found
}

/// The backends of SRV records whose targets have addresses in `hosts`; a target `.` (the
/// service is not offered, RFC 2782) or without address is noted and skipped.
pub(crate) fn backends(records: &[SrvRecord], hosts: &HashMap<String, IpAddr>) -> Found {
    let mut found = Found::default();
    for record in records {
        let name = key(&record.target);
        let Some(ip) = hosts.get(&name) else {
            found.notes.push(format!("no address for SRV target {:?}: skipped", record.target.to_ascii()));
            continue;
        };
        let mut spec = BackendSpec::new(ip.to_string(), record.port);
        spec.priority = record.priority.into();
        spec.weight = record.weight.into();
        spec.sni = (!name.is_empty()).then_some(name);
        if let Some(same) = found.backends.iter_mut().find(|b| b.key() == spec.key()) {
            *same = spec;
        } else {
            found.backends.push(spec);
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::rr::rdata::{A, AAAA, SRV};

    fn name(text: &str) -> Name {
        Name::from_ascii(text).unwrap()
    }

    fn srv(target: &str, port: u16, priority: u16, weight: u16) -> Record {
        Record::from_rdata(
            name("_web._tcp.x."),
            60,
            RData::SRV(SRV::new(priority, weight, port, name(target))),
        )
    }

    #[test]
    fn srv_answers_become_backends() {
        let mut answer = question(7, &name("_web._tcp.x."), RecordType::SRV);
        answer.set_message_type(MessageType::Response);
        answer.add_answer(srv("a.x.", 80, 1, 10));
        answer.add_answer(srv("B.x.", 81, 2, 0));
        answer.add_answer(srv("c.x.", 82, 1, 5));
        answer.add_answer(srv(".", 83, 1, 5));
        answer.add_additional(Record::from_rdata(name("a.x."), 60, RData::A(A::new(10, 0, 0, 1))));
        answer.add_additional(Record::from_rdata(
            name("b.X"),
            60,
            RData::AAAA(AAAA::new(0xfd00, 0, 0, 0, 0, 0, 0, 2)),
        ));
        let answer = answer_to(7, &answer.to_vec().unwrap()).unwrap();
        let records = srv_records(&answer).unwrap();
        assert_eq!(records.len(), 4);
        let found = backends(&records, &addresses(answer.additionals()));
        let got: Vec<_> =
            found.backends.iter().map(|b| (b.address(), b.priority, b.weight, b.sni.as_deref())).collect();
        assert_eq!(
            got,
            [("10.0.0.1:80".into(), 1, 10, Some("a.x")), ("[fd00::2]:81".into(), 2, 0, Some("b.x"))]
        );
        assert_eq!(found.notes.len(), 2, "c.x has no address, '.' is no target: {:?}", found.notes);
        assert!(answer_to(8, &answer.to_vec().unwrap()).is_err(), "another query's answer");
    }

    #[test]
    fn what_fails_a_fetch() {
        let mut answer = question(1, &name("_web._tcp.x."), RecordType::SRV);
        answer.set_message_type(MessageType::Response);
        answer.set_response_code(ResponseCode::NXDomain);
        assert_eq!(srv_records(&answer).unwrap(), []);
        answer.set_response_code(ResponseCode::ServFail);
        assert!(srv_records(&answer).is_err());
        answer.set_response_code(ResponseCode::NoError);
        answer.add_answer(Record::from_rdata(name("_web._tcp.x."), 60, RData::A(A::new(10, 0, 0, 1))));
        assert!(srv_records(&answer).is_err(), "non-SRV record");
        assert!(answer_to(1, b"\x00\x01garbage").is_err());
        assert!(answer_to(1, b"").is_err());
    }

    #[test]
    fn sections_are_checked() {
        let section = |server: &str, pattern: &str, protocol: Option<&str>| {
            Srv::from_section(&Discovery {
                srv_lookup_server: Some(server.into()),
                srv_lookup_pattern: Some(pattern.into()),
                srv_dns_protocol: protocol.map(String::from),
                ..Discovery::default()
            })
        };
        let srv = section("127.0.0.1:53", "_web._tcp.example.com", None).unwrap();
        assert!(srv.name.is_fqdn() && !srv.tcp);
        assert!(section("127.0.0.1:53", "x.", Some("tcp")).unwrap().tcp);
        assert_eq!(section("127.0.0.1:53", "x.", Some("tls")).err().unwrap().field, "srv_dns_protocol");
        assert_eq!(section("127.0.0.1", "x.", None).err().unwrap().field, "srv_lookup_server");
        assert_eq!(section("127.0.0.1:53", "", None).err().unwrap().field, "srv_lookup_pattern");
    }
}
