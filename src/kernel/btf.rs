//! Where this kernel keeps the `struct tcp_sock` fields the verdict program reads, from the
//! kernel's own type description (BTF, `/sys/kernel/btf/vmlinux`). The layout of `tcp_sock`
//! changes between kernel builds; BTF is how a program learns it without headers, and the
//! verifier checks every such read against the same description, so a wrong offset is refused
//! at load rather than read.
//!
//! Only what that needs is parsed: the type section's records, to find one struct and the
//! byte offsets of named members (also inside unnamed nested structs and unions). Every read is
//! bounds-checked; a file that does not parse yields an error, and kernel forwarding stays off.

use std::io;

const VMLINUX: &str = "/sys/kernel/btf/vmlinux";
const MAGIC: u16 = 0xeb9f;

// Kinds (`BTF_KIND_*`) whose records have data after the common 12 bytes.
const KIND_INT: u32 = 1;
const KIND_ARRAY: u32 = 3;
const KIND_STRUCT: u32 = 4;
const KIND_UNION: u32 = 5;
const KIND_ENUM: u32 = 6;
const KIND_FUNC_PROTO: u32 = 13;
const KIND_VAR: u32 = 14;
const KIND_DATASEC: u32 = 15;
const KIND_DECL_TAG: u32 = 17;
const KIND_ENUM64: u32 = 19;

/// The `tcp_sock` fields that give every byte ever queued for sending on a socket:
/// `bytes_acked + (write_seq - snd_una)`, as `TCP_INFO` and `SIOCOUTQ` give them to user space.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpSockFields {
    /// `u64 bytes_acked`.
    pub bytes_acked: i16,
    /// `u32 write_seq`: the sequence number after the last byte queued.
    pub write_seq: i16,
    /// `u32 snd_una`: the first byte not yet acknowledged.
    pub snd_una: i16,
}

/// Reads the running kernel's offsets.
pub fn tcp_sock_fields() -> io::Result<TcpSockFields> {
    let data = std::fs::read(VMLINUX)?;
    let types = Types::parse(&data).ok_or_else(|| invalid("the kernel's BTF does not parse"))?;
    let id =
        types.find_struct("tcp_sock").ok_or_else(|| invalid("no struct tcp_sock in the kernel's BTF"))?;
    let at = |name: &str| {
        types
            .member_offset(id, name, 0)
            .and_then(|bytes| i16::try_from(bytes).ok())
            .ok_or_else(|| invalid(&format!("no tcp_sock.{name} in the kernel's BTF")))
    };
    Ok(TcpSockFields {
        bytes_acked: at("bytes_acked")?,
        write_seq: at("write_seq")?,
        snd_una: at("snd_una")?,
    })
}

fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_string())
}

fn u32_at(data: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(data.get(at..at.checked_add(4)?)?.try_into().ok()?))
}

/// One type record: its kind, name, and for structs and unions its members.
struct Type {
    kind: u32,
    name: u32,
    /// (name, type id, offset in bits) of each member.
    members: Vec<(u32, u32, u32)>,
}

struct Types<'a> {
    strings: &'a [u8],
    /// Indexed by type id; id 0 is `void`.
    types: Vec<Type>,
}

impl<'a> Types<'a> {
    fn parse(data: &'a [u8]) -> Option<Types<'a>> {
        if u16::from_le_bytes(data.get(0..2)?.try_into().ok()?) != MAGIC {
            return None;
        }
        let header = u32_at(data, 4)? as usize;
        let (type_off, type_len) = (u32_at(data, 8)? as usize, u32_at(data, 12)? as usize);
        let (str_off, str_len) = (u32_at(data, 16)? as usize, u32_at(data, 20)? as usize);
        let section = |off: usize, len: usize| {
            let start = header.checked_add(off)?;
            data.get(start..start.checked_add(len)?)
        };
        let (records, strings) = (section(type_off, type_len)?, section(str_off, str_len)?);
        let mut types = vec![Type { kind: 0, name: 0, members: Vec::new() }];
        let mut at = 0;
        while at < records.len() {
            let (name, info) = (u32_at(records, at)?, u32_at(records, at + 4)?);
            let (kind, count) = ((info >> 24) & 0x1f, (info & 0xffff) as usize);
            let bitfields = info >> 31 == 1;
            at += 12;
            let mut members = Vec::new();
            let extra = match kind {
                KIND_INT | KIND_VAR | KIND_DECL_TAG => 4,
                KIND_ARRAY => 12,
                KIND_STRUCT | KIND_UNION => {
                    for m in 0..count {
                        let base = at + m * 12;
                        let offset = u32_at(records, base + 8)?;
                        // With bitfields the low 24 bits are the offset, the high 8 the size.
                        let offset = if bitfields { offset & 0x00ff_ffff } else { offset };
                        members.push((u32_at(records, base)?, u32_at(records, base + 4)?, offset));
                    }
                    12 * count
                }
                KIND_ENUM | KIND_FUNC_PROTO => 8 * count,
                KIND_DATASEC | KIND_ENUM64 => 12 * count,
                _ => 0,
            };
            at += extra;
            types.push(Type { kind, name, members });
        }
        Some(Types { strings, types })
    }

    fn name(&self, offset: u32) -> &[u8] {
        let rest = self.strings.get(offset as usize..).unwrap_or(&[]);
        &rest[..rest.iter().position(|&b| b == 0).unwrap_or(rest.len())]
    }

    fn find_struct(&self, name: &str) -> Option<usize> {
        self.types.iter().position(|t| t.kind == KIND_STRUCT && self.name(t.name) == name.as_bytes())
    }

    /// Byte offset of member `name` of type `id`, looking into unnamed nested structs and
    /// unions (`depth` bounds that).
    fn member_offset(&self, id: usize, name: &str, depth: u32) -> Option<u32> {
        let record = self.types.get(id)?;
        if depth > 8 || !matches!(record.kind, KIND_STRUCT | KIND_UNION) {
            return None;
        }
        for &(member, of_type, bits) in &record.members {
            if self.name(member) == name.as_bytes() {
                return (bits % 8 == 0).then_some(bits / 8);
            }
            if member == 0 {
                if let Some(inner) = self.member_offset(of_type as usize, name, depth + 1) {
                    return Some(bits / 8 + inner);
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A hand-built BTF blob: `struct s { u32 a; union { u64 b; }; }` with `b` at byte 8.
    fn blob() -> Vec<u8> {
        let strings = b"\0s\0a\0b\0u32\0".to_vec();
        let mut types = Vec::new();
        let mut record = |words: &[u32]| words.iter().for_each(|w| types.extend(w.to_le_bytes()));
        record(&[7, KIND_INT << 24, 4, 32]); // id 1: u32
        record(&[0, (KIND_UNION << 24) | 1, 8, 5, 1, 0]); // id 2: union { b: type 1 at 0 }
        record(&[1, (KIND_STRUCT << 24) | 2, 16, 3, 1, 0, 0, 2, 64]); // id 3: struct s
        let mut data = Vec::new();
        data.extend(MAGIC.to_le_bytes());
        data.extend([1u8, 0]);
        for word in [24u32, 0, types.len() as u32, types.len() as u32, strings.len() as u32] {
            data.extend(word.to_le_bytes());
        }
        data.extend(types);
        data.extend(strings);
        data
    }

    #[test]
    fn members_are_found_directly_and_inside_unnamed_unions() {
        let data = blob();
        let types = Types::parse(&data).unwrap();
        let id = types.find_struct("s").unwrap();
        assert_eq!(types.member_offset(id, "a", 0), Some(0));
        assert_eq!(types.member_offset(id, "b", 0), Some(8));
        assert_eq!(types.member_offset(id, "c", 0), None);
    }

    #[test]
    fn truncated_or_foreign_data_does_not_parse() {
        let data = blob();
        for cut in 0..data.len() - 4 {
            // Whatever the cut, no panic; a cut inside the header is refused.
            let parsed = Types::parse(&data[..cut]);
            assert!(cut >= 24 || parsed.is_none());
        }
        assert!(Types::parse(b"not btf at all, not at all").is_none());
    }

    #[test]
    fn this_kernel_describes_tcp_sock() {
        let Ok(fields) = tcp_sock_fields() else {
            eprintln!("no readable /sys/kernel/btf/vmlinux here; nothing to check");
            return;
        };
        // Distinct, and past `struct inet_connection_sock` at the start.
        assert!(fields.write_seq > 512 && fields.snd_una > 512 && fields.bytes_acked > 512, "{fields:?}");
        assert_ne!(fields.write_seq, fields.snd_una);
    }
}
