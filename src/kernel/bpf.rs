//! The few `bpf()` commands kernel forwarding needs, as raw system calls (no BPF library).
//! Each is a short, non-blocking call, safe to make on a shard.

use super::program::Insn;
use std::ffi::CStr;
use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

// Commands (`enum bpf_cmd`).
const MAP_CREATE: libc::c_long = 0;
const MAP_LOOKUP_ELEM: libc::c_long = 1;
const MAP_UPDATE_ELEM: libc::c_long = 2;
const MAP_DELETE_ELEM: libc::c_long = 3;
const PROG_LOAD: libc::c_long = 5;
const PROG_ATTACH: libc::c_long = 8;

pub const MAP_TYPE_HASH: u32 = 1;
pub const MAP_TYPE_SOCKHASH: u32 = 18;
const PROG_TYPE_SK_SKB: u32 = 14;
const SK_SKB_STREAM_VERDICT: u32 = 5;

/// `BPF_F_NO_PREALLOC`: a hash map allocating its entries as they are added.
pub const NO_PREALLOC: u32 = 1;

/// `union bpf_attr`, as zeroed bytes with the fields each command reads set by offset; the
/// kernel requires whatever it does not know of to be zero.
#[repr(C, align(8))]
struct Attr([u8; 128]);

impl Attr {
    fn new() -> Attr {
        Attr([0; 128])
    }

    fn u32(mut self, offset: usize, value: u32) -> Attr {
        self.0[offset..offset + 4].copy_from_slice(&value.to_ne_bytes());
        self
    }

    fn u64(mut self, offset: usize, value: u64) -> Attr {
        self.0[offset..offset + 8].copy_from_slice(&value.to_ne_bytes());
        self
    }

    fn call(&mut self, command: libc::c_long) -> io::Result<libc::c_long> {
        // SAFETY: `self` is a valid `bpf_attr` of the size passed; pointers in it outlive the
        // call (they are borrowed by the caller).
        let r = unsafe { libc::syscall(libc::SYS_bpf, command, self.0.as_mut_ptr(), self.0.len()) };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(r)
    }
}

fn fd(r: libc::c_long) -> OwnedFd {
    // SAFETY: the command returned a new descriptor that nothing else owns.
    unsafe { OwnedFd::from_raw_fd(r as RawFd) }
}

/// A new map: `BPF_MAP_CREATE`.
pub fn map_create(
    kind: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    flags: u32,
) -> io::Result<OwnedFd> {
    let mut attr =
        Attr::new().u32(0, kind).u32(4, key_size).u32(8, value_size).u32(12, max_entries).u32(16, flags);
    attr.call(MAP_CREATE).map(fd)
}

/// Loads an `SK_SKB` program; on refusal the verifier's log is in the error.
pub fn load_sk_skb(program: &[Insn]) -> io::Result<OwnedFd> {
    let license: &CStr = c"GPL";
    let mut log = vec![0u8; 64 * 1024];
    let mut attr = Attr::new()
        .u32(0, PROG_TYPE_SK_SKB)
        .u32(4, program.len() as u32)
        .u64(8, program.as_ptr() as u64)
        .u64(16, license.as_ptr() as u64)
        .u32(24, 1)
        .u32(28, log.len() as u32)
        .u64(32, log.as_mut_ptr() as u64);
    attr.call(PROG_LOAD).map(fd).map_err(|e| {
        let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
        let said = String::from_utf8_lossy(&log[..end]);
        // The reason is at the end of the verifier's trace, which can run to kilobytes.
        let lines: Vec<&str> = said.trim().lines().collect();
        let reason = lines[lines.len().saturating_sub(3)..].join(" | ");
        io::Error::new(e.kind(), format!("{e}; verifier: {reason}"))
    })
}

/// Attaches `program` as the stream verdict of every socket in `map`.
pub fn attach_verdict(map: RawFd, program: RawFd) -> io::Result<()> {
    let mut attr = Attr::new().u32(0, map as u32).u32(4, program as u32).u32(8, SK_SKB_STREAM_VERDICT);
    attr.call(PROG_ATTACH).map(drop)
}

/// `map[key] = value` (`BPF_ANY`: added or replaced).
pub fn update<V>(map: RawFd, key: u64, value: &V) -> io::Result<()> {
    let mut attr =
        Attr::new().u32(0, map as u32).u64(8, &key as *const u64 as u64).u64(16, value as *const V as u64);
    attr.call(MAP_UPDATE_ELEM).map(drop)
}

/// `map[key]`, for a plain-data value type `V` of the map's value size.
pub fn lookup<V: Copy + Default>(map: RawFd, key: u64) -> io::Result<V> {
    let mut value = V::default();
    let mut attr =
        Attr::new().u32(0, map as u32).u64(8, &key as *const u64 as u64).u64(16, &mut value as *mut V as u64);
    attr.call(MAP_LOOKUP_ELEM)?;
    Ok(value)
}

/// Removes `key` from `map` (not there: an error the callers ignore).
pub fn delete(map: RawFd, key: u64) -> io::Result<()> {
    let mut attr = Attr::new().u32(0, map as u32).u64(8, &key as *const u64 as u64);
    attr.call(MAP_DELETE_ELEM).map(drop)
}
