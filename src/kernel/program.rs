//! The stream-verdict program, hand-assembled (no BPF toolchain is needed to build betwixt).
//!
//! For every chunk of bytes (`skb`) arriving on a socket in the sockmap it finds the socket's
//! state (the state map, keyed by the socket's cookie; see `State`) and either:
//!  - redirects the chunk to the connection's other socket (`bpf_sk_redirect_hash` through the
//!    peer map, flags 0: sent out of the peer), counting it as handed on; or
//!  - passes it (`SK_PASS`): the chunk stays with its own socket, charged to that socket's
//!    receive memory like any unread byte, so TCP closes the sender's window; betwixt reads it
//!    there and writes it on itself; or
//!  - drops it, once the connection is condemned (below); betwixt then resets both sides.
//!
//! Why not always redirect: a redirected chunk leaves the sender's socket at once (its window
//! opens again) and waits in a queue of the receiving socket's that the kernel does not bound,
//! so a receiver that does not read would let a sender fill memory. The program therefore
//! measures that queue, every `STEP` bytes, as bytes handed on minus bytes the peer socket has
//! queued for sending since the attach (`bytes_acked + write_seq - snd_una`, read through the
//! kernel's own type description: see `btf`). Past `CREDIT` it stops redirecting and passes,
//! for good: from then on the connection's direction is forwarded by betwixt (`forward`).
//!
//! A pass only lands in the sender's receive memory when the socket's own kernel queue is
//! empty; that queue holds the other direction's redirected bytes, so the program also measures
//! the other direction's backlog, and passes only when it is zero. While it is not, it keeps
//! redirecting; should this direction's backlog reach `HARD`, or bytes passed while the other
//! backlog stays non-zero reach `HARD` (both directions stuck behind receivers that do not
//! read), the connection is condemned: every further chunk is dropped, and betwixt resets both
//! sides at its next look (within a second).
//!
//! An empty chunk (the segment that carried a bare FIN) is dropped: it holds no byte, and
//! sent to the peer after betwixt has shut the peer's sending side down it would fail there.

use super::btf::TcpSockFields;

/// One BPF instruction as the kernel reads it (`struct bpf_insn`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Insn {
    pub code: u8,
    /// Destination register in the low nibble, source register in the high nibble.
    pub regs: u8,
    pub off: i16,
    pub imm: i32,
}

// Opcodes (linux/bpf.h, linux/bpf_common.h), spelled out as the kernel combines them.
pub const MOV64_REG: u8 = 0x07 | 0xb0 | 0x08; // BPF_ALU64 | BPF_MOV | BPF_X
pub const MOV64_IMM: u8 = 0x07 | 0xb0; // BPF_ALU64 | BPF_MOV | BPF_K
pub const ADD64_IMM: u8 = 0x07; // BPF_ALU64 | BPF_ADD | BPF_K
pub const ADD64_REG: u8 = 0x07 | 0x08; // BPF_ALU64 | BPF_ADD | BPF_X
pub const SUB64_REG: u8 = 0x07 | 0x10 | 0x08; // BPF_ALU64 | BPF_SUB | BPF_X
pub const SUB32_REG: u8 = 0x04 | 0x10 | 0x08; // BPF_ALU | BPF_SUB | BPF_X (zero-extends)
pub const LDX_W: u8 = 0x01 | 0x60; // BPF_LDX | BPF_MEM | BPF_W
pub const LDX_DW: u8 = 0x01 | 0x60 | 0x18; // BPF_LDX | BPF_MEM | BPF_DW
pub const STX_DW: u8 = 0x03 | 0x60 | 0x18; // BPF_STX | BPF_MEM | BPF_DW
pub const ATOMIC_DW: u8 = 0x03 | 0xc0 | 0x18; // BPF_STX | BPF_ATOMIC | BPF_DW (imm BPF_ADD)
pub const LD_IMM64: u8 = 0x18; // BPF_LD | BPF_DW | BPF_IMM, two instructions long
pub const JA: u8 = 0x05; // BPF_JMP | BPF_JA
pub const JEQ_IMM: u8 = 0x05 | 0x10; // BPF_JMP | BPF_JEQ | BPF_K
pub const JLT_IMM: u8 = 0x05 | 0xa0; // BPF_JMP | BPF_JLT | BPF_K (unsigned)
pub const JSGT_IMM: u8 = 0x05 | 0x60; // BPF_JMP | BPF_JSGT | BPF_K (signed)
pub const JSLE_IMM: u8 = 0x05 | 0xd0; // BPF_JMP | BPF_JSLE | BPF_K (signed)
pub const CALL: u8 = 0x05 | 0x80; // BPF_JMP | BPF_CALL
pub const EXIT: u8 = 0x05 | 0x90; // BPF_JMP | BPF_EXIT

/// `BPF_PSEUDO_MAP_FD`: the source register of a 64-bit load whose immediate is a map's fd.
pub const PSEUDO_MAP_FD: u8 = 1;

/// Helper numbers (`enum bpf_func_id`).
pub const MAP_LOOKUP_ELEM: i32 = 1;
pub const GET_SOCKET_COOKIE: i32 = 46;
pub const SK_REDIRECT_HASH: i32 = 72;
pub const SK_RELEASE: i32 = 86;
pub const SKC_TO_TCP_SOCK: i32 = 137;

/// Verdicts (`enum sk_action`).
const SK_DROP: i32 = 0;
const SK_PASS: i32 = 1;

/// `offsetof(struct __sk_buff, len)`.
const SKB_LEN: i16 = 0;

/// How many bytes may wait in the kernel's queue for a receiver before a direction is handed
/// to betwixt.
pub const CREDIT: i32 = 1 << 20;
/// How far a direction's backlog may grow while the other direction's blocks the hand-over,
/// before the connection is condemned.
pub const HARD: i32 = 8 << 20;
/// The backlog is measured once every this many bytes of a direction (a measurement costs
/// four map or helper calls; chunks between are redirected after one lookup). The queue can
/// overshoot a limit by at most this much.
pub const STEP: i32 = 64 << 10;

/// The state map's value for one socket: what the program counts for the direction this
/// socket reads, and what betwixt set at the attach. Offsets in bytes.
pub struct State;

impl State {
    pub const SIZE: u32 = 64;
    /// Bytes redirected to the peer (program).
    pub const HANDED: i16 = 0;
    /// Bytes passed, left in this socket for betwixt to read (program).
    pub const PASSED: i16 = 8;
    /// `HANDED + PASSED` at the last measurement (program).
    pub const MEASURED: i16 = 16;
    /// Bytes passed while the other direction's backlog was not empty, since it last was
    /// (program).
    pub const STRAYS: i16 = 24;
    /// `MODE_*` (program).
    pub const MODE: i16 = 32;
    /// Bytes queued for sending on this socket before the attach (betwixt).
    pub const BASE_SELF: i16 = 40;
    /// Bytes queued for sending on the peer before the attach (betwixt).
    pub const BASE_PEER: i16 = 48;
    /// The peer socket's cookie: its key in the state map (betwixt).
    pub const PEER: i16 = 56;
}

/// The value betwixt writes for a socket at the attach, as the program reads it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StateValue {
    pub handed: u64,
    pub passed: u64,
    pub measured: u64,
    pub strays: u64,
    pub mode: u64,
    pub base_self: u64,
    pub base_peer: u64,
    pub peer: u64,
}

// Modes; 0 (the value at the attach) is redirecting.
/// Passing: betwixt forwards this direction.
pub const MODE_PASS: u64 = 1;
/// Condemned: chunks are dropped until betwixt resets the connection.
pub const MODE_CONDEMNED: u64 = 2;

const R0: u8 = 0;
const R1: u8 = 1;
const R2: u8 = 2;
const R3: u8 = 3;
const R4: u8 = 4;
const R6: u8 = 6;
const R7: u8 = 7;
const R8: u8 = 8;
const R9: u8 = 9;
const R10: u8 = 10;

// Stack slots (offsets from the frame pointer).
/// The arriving socket's cookie: the key of its state, its peer and itself.
const KEY: i16 = -8;
/// Bytes since the last measurement.
const SINCE: i16 = -16;
/// Bytes ever queued on the peer, then this direction's backlog.
const FORWARD: i16 = -24;
/// The peer's cookie, as a key.
const PEER_KEY: i16 = -32;
/// Bytes the peer handed on (the other direction's count).
const PEER_HANDED: i16 = -40;
/// Bytes ever queued on the arriving socket, then the other direction's backlog.
const REVERSE: i16 = -48;

fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn { code, regs: dst | (src << 4), off, imm }
}

/// A program being assembled, with named jump targets resolved at the end.
struct Asm {
    code: Vec<Insn>,
    labels: Vec<(&'static str, usize)>,
    /// (instruction index, target label) of each jump.
    jumps: Vec<(usize, &'static str)>,
}

impl Asm {
    fn new() -> Asm {
        Asm { code: Vec::new(), labels: Vec::new(), jumps: Vec::new() }
    }

    fn op(&mut self, code: u8, dst: u8, src: u8, off: i16, imm: i32) -> &mut Asm {
        self.code.push(insn(code, dst, src, off, imm));
        self
    }

    fn call(&mut self, helper: i32) -> &mut Asm {
        self.op(CALL, 0, 0, 0, helper)
    }

    /// `dst = map` (a map fd, resolved by the kernel at load): two instructions.
    fn load_map(&mut self, dst: u8, map_fd: i32) -> &mut Asm {
        self.op(LD_IMM64, dst, PSEUDO_MAP_FD, 0, map_fd).op(0, 0, 0, 0, 0)
    }

    /// `dst = fp + slot`.
    fn slot_address(&mut self, dst: u8, slot: i16) -> &mut Asm {
        self.op(MOV64_REG, dst, R10, 0, 0).op(ADD64_IMM, dst, 0, 0, slot.into())
    }

    /// A conditional (or, with `JA`, unconditional) jump to `label`.
    fn jump(&mut self, code: u8, dst: u8, imm: i32, label: &'static str) -> &mut Asm {
        self.jumps.push((self.code.len(), label));
        self.op(code, dst, 0, 0, imm)
    }

    fn label(&mut self, name: &'static str) -> &mut Asm {
        debug_assert!(self.labels.iter().all(|(known, _)| *known != name), "label {name} defined twice");
        self.labels.push((name, self.code.len()));
        self
    }

    fn exit_with(&mut self, verdict: i32) -> &mut Asm {
        self.op(MOV64_IMM, R0, 0, 0, verdict).op(EXIT, 0, 0, 0, 0)
    }

    /// `*fp[out] = bytes ever queued for sending on map[*fp[key]]`, a socket map: looked up
    /// (which holds a reference), read through its `tcp_sock`, released. Jumps to `missing`
    /// when the socket is not there. `[release, done]` name its own two labels, distinct for
    /// each use. Clobbers r0-r5 and r9.
    fn queued(
        &mut self,
        map_fd: i32,
        [key, out]: [i16; 2],
        tcp: TcpSockFields,
        missing: &'static str,
        [release, done]: [&'static str; 2],
    ) -> &mut Asm {
        self.load_map(R1, map_fd)
            .slot_address(R2, key)
            .call(MAP_LOOKUP_ELEM)
            .jump(JEQ_IMM, R0, 0, missing)
            .op(MOV64_REG, R9, R0, 0, 0)
            .op(MOV64_REG, R1, R0, 0, 0)
            .call(SKC_TO_TCP_SOCK)
            .jump(JEQ_IMM, R0, 0, release)
            .op(LDX_DW, R1, R0, tcp.bytes_acked, 0)
            .op(LDX_W, R2, R0, tcp.write_seq, 0)
            .op(LDX_W, R3, R0, tcp.snd_una, 0)
            .op(SUB32_REG, R2, R3, 0, 0) // unsent and unacknowledged, modulo 2^32
            .op(ADD64_REG, R1, R2, 0, 0)
            .op(STX_DW, R10, R1, out, 0)
            .op(MOV64_REG, R1, R9, 0, 0)
            .call(SK_RELEASE)
            .jump(JA, 0, 0, done)
            .label(release)
            .op(MOV64_REG, R1, R9, 0, 0)
            .call(SK_RELEASE)
            .jump(JA, 0, 0, missing)
            .label(done)
    }

    fn finish(mut self) -> Vec<Insn> {
        for (at, label) in self.jumps {
            let target = self.labels.iter().find(|(name, _)| *name == label).expect("label defined").1;
            self.code[at].off = (target as i64 - at as i64 - 1) as i16;
        }
        self.code
    }
}

/// The verdict program over the given maps: `state` (a hash), `peers` (a sockhash: cookie →
/// the other socket) and `watched` (a sockhash: cookie → the socket itself), reading `tcp_sock`
/// at the offsets given.
pub fn verdict(state_fd: i32, peers_fd: i32, watched_fd: i32, tcp: TcpSockFields) -> Vec<Insn> {
    let mut a = Asm::new();
    a.op(MOV64_REG, R6, R1, 0, 0) // r6 = skb
        .op(LDX_W, R7, R1, SKB_LEN, 0) // r7 = skb->len
        .jump(JEQ_IMM, R7, 0, "drop") // empty: a bare FIN
        .call(GET_SOCKET_COOKIE)
        .op(STX_DW, R10, R0, KEY, 0)
        .load_map(R1, state_fd)
        .slot_address(R2, KEY)
        .call(MAP_LOOKUP_ELEM)
        .jump(JEQ_IMM, R0, 0, "redirect") // no state: the connection is being taken apart
        .op(MOV64_REG, R8, R0, 0, 0) // r8 = &state
        .op(LDX_DW, R1, R8, State::MODE, 0)
        .jump(JEQ_IMM, R1, MODE_CONDEMNED as i32, "drop")
        // Bytes since the last measurement, this chunk included.
        .op(LDX_DW, R2, R8, State::HANDED, 0)
        .op(LDX_DW, R3, R8, State::PASSED, 0)
        .op(ADD64_REG, R2, R3, 0, 0)
        .op(ADD64_REG, R2, R7, 0, 0)
        .op(LDX_DW, R3, R8, State::MEASURED, 0)
        .op(MOV64_REG, R4, R2, 0, 0)
        .op(SUB64_REG, R4, R3, 0, 0)
        .jump(JLT_IMM, R4, STEP, "unmeasured")
        .op(STX_DW, R8, R2, State::MEASURED, 0)
        .op(STX_DW, R10, R4, SINCE, 0)
        // This direction's backlog: handed + base of the peer - queued on the peer.
        .queued(peers_fd, [KEY, FORWARD], tcp, "redirect", ["forward_release", "forward_read"])
        .op(LDX_DW, R1, R8, State::HANDED, 0)
        .op(LDX_DW, R2, R8, State::BASE_PEER, 0)
        .op(ADD64_REG, R1, R2, 0, 0)
        .op(LDX_DW, R2, R10, FORWARD, 0)
        .op(SUB64_REG, R1, R2, 0, 0)
        .op(STX_DW, R10, R1, FORWARD, 0)
        // The other direction's: what the peer handed + own base - queued on this socket;
        // zero when the peer's state is gone.
        .op(MOV64_IMM, R1, 0, 0, 0)
        .op(STX_DW, R10, R1, REVERSE, 0)
        .op(LDX_DW, R1, R8, State::PEER, 0)
        .op(STX_DW, R10, R1, PEER_KEY, 0)
        .load_map(R1, state_fd)
        .slot_address(R2, PEER_KEY)
        .call(MAP_LOOKUP_ELEM)
        .jump(JEQ_IMM, R0, 0, "decide")
        .op(LDX_DW, R1, R0, State::HANDED, 0)
        .op(STX_DW, R10, R1, PEER_HANDED, 0)
        .queued(watched_fd, [KEY, REVERSE], tcp, "unmeasured_reverse", ["reverse_release", "reverse_read"])
        .op(LDX_DW, R1, R10, PEER_HANDED, 0)
        .op(LDX_DW, R2, R8, State::BASE_SELF, 0)
        .op(ADD64_REG, R1, R2, 0, 0)
        .op(LDX_DW, R2, R10, REVERSE, 0)
        .op(SUB64_REG, R1, R2, 0, 0)
        .op(STX_DW, R10, R1, REVERSE, 0)
        .jump(JA, 0, 0, "decide")
        .label("unmeasured_reverse")
        .op(MOV64_IMM, R1, 0, 0, 0)
        .op(STX_DW, R10, R1, REVERSE, 0)
        .label("decide")
        .op(LDX_DW, R1, R8, State::MODE, 0)
        .jump(JEQ_IMM, R1, MODE_PASS as i32, "passing")
        .op(LDX_DW, R1, R10, FORWARD, 0)
        .jump(JSLE_IMM, R1, CREDIT, "count_redirect")
        .op(LDX_DW, R2, R10, REVERSE, 0)
        .jump(JSLE_IMM, R2, 0, "start_passing")
        .jump(JSGT_IMM, R1, HARD, "condemn")
        .jump(JA, 0, 0, "count_redirect")
        .label("start_passing")
        .op(MOV64_IMM, R1, 0, 0, MODE_PASS as i32)
        .op(STX_DW, R8, R1, State::MODE, 0)
        .jump(JA, 0, 0, "pass")
        // Passing: count what may sit behind the other direction's backlog, uncharged.
        .label("passing")
        .op(LDX_DW, R2, R10, REVERSE, 0)
        .jump(JSGT_IMM, R2, 0, "stray")
        .op(MOV64_IMM, R1, 0, 0, 0)
        .op(STX_DW, R8, R1, State::STRAYS, 0)
        .jump(JA, 0, 0, "pass")
        .label("stray")
        .op(LDX_DW, R1, R8, State::STRAYS, 0)
        .op(LDX_DW, R2, R10, SINCE, 0)
        .op(ADD64_REG, R1, R2, 0, 0)
        .op(STX_DW, R8, R1, State::STRAYS, 0)
        .jump(JSGT_IMM, R1, HARD, "condemn")
        .jump(JA, 0, 0, "pass")
        .label("condemn")
        .op(MOV64_IMM, R1, 0, 0, MODE_CONDEMNED as i32)
        .op(STX_DW, R8, R1, State::MODE, 0)
        .label("drop")
        .exit_with(SK_DROP)
        // Between measurements the mode decides alone.
        .label("unmeasured")
        .op(LDX_DW, R1, R8, State::MODE, 0)
        .jump(JEQ_IMM, R1, MODE_PASS as i32, "pass")
        .label("count_redirect")
        .op(ATOMIC_DW, R8, R7, State::HANDED, 0) // lock state.handed += len
        .label("redirect")
        .op(MOV64_REG, R1, R6, 0, 0)
        .load_map(R2, peers_fd)
        .slot_address(R3, KEY)
        .op(MOV64_IMM, R4, 0, 0, 0) // flags 0: send out of the peer
        .call(SK_REDIRECT_HASH) // r0 = SK_PASS or SK_DROP
        .op(EXIT, 0, 0, 0, 0)
        .label("pass")
        .op(ATOMIC_DW, R8, R7, State::PASSED, 0) // lock state.passed += len
        .exit_with(SK_PASS);
    a.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TCP: TcpSockFields = TcpSockFields { bytes_acked: 1824, write_seq: 1576, snd_una: 1672 };

    #[test]
    fn instruction_is_eight_bytes_with_registers_in_nibbles() {
        assert_eq!(std::mem::size_of::<Insn>(), 8);
        let i = insn(MOV64_REG, R6, R1, 0, 0);
        assert_eq!((i.regs & 0x0f, i.regs >> 4), (6, 1));
        assert_eq!(MOV64_REG, 0xbf);
        assert_eq!(STX_DW, 0x7b);
        assert_eq!(LDX_DW, 0x79);
        assert_eq!(ATOMIC_DW, 0xdb);
        assert_eq!(EXIT, 0x95);
        assert_eq!(LDX_W, 0x61);
        assert_eq!((SUB32_REG, SUB64_REG, ADD64_REG), (0x1c, 0x1f, 0x0f));
        assert_eq!((JLT_IMM, JSGT_IMM, JSLE_IMM), (0xa5, 0x65, 0xd5));
        assert_eq!(std::mem::size_of::<StateValue>() as u32, State::SIZE);
        assert_eq!(std::mem::offset_of!(StateValue, peer) as i16, State::PEER);
        assert_eq!(std::mem::offset_of!(StateValue, mode) as i16, State::MODE);
        assert_eq!(std::mem::offset_of!(StateValue, base_peer) as i16, State::BASE_PEER);
    }

    #[test]
    fn every_jump_lands_inside_the_program_and_every_path_ends() {
        let p = verdict(7, 9, 11, TCP);
        for (at, i) in p.iter().enumerate() {
            if i.code & 0x07 == 0x05 && i.code != CALL && i.code != EXIT {
                let target = at as i64 + 1 + i64::from(i.off);
                assert!((0..p.len() as i64).contains(&target), "jump at {at} to {target}");
                assert!(i.off >= 0, "no backward jump (the verifier would refuse a loop)");
            }
        }
        assert_eq!(p.last().unwrap().code, EXIT);
        // Each map is referenced by fd through a two-instruction load whose second half is zero.
        for (n, i) in p.iter().enumerate().filter(|(_, i)| i.code == LD_IMM64) {
            assert_eq!(p[n + 1], insn(0, 0, 0, 0, 0));
            assert_eq!(i.regs >> 4, PSEUDO_MAP_FD);
            assert!([7, 9, 11].contains(&i.imm));
        }
        // Every socket looked up is released on both of skc_to_tcp_sock's outcomes.
        let calls: Vec<i32> = p.iter().filter(|i| i.code == CALL).map(|i| i.imm).collect();
        let count = |h| calls.iter().filter(|&&c| c == h).count();
        assert_eq!(count(SKC_TO_TCP_SOCK), 2);
        assert_eq!(count(SK_RELEASE), 4);
        assert_eq!(count(SK_REDIRECT_HASH), 1);
        // The tcp_sock fields are read at the offsets given.
        let reads: Vec<i16> = p.iter().filter(|i| i.code == LDX_W && i.off > 100).map(|i| i.off).collect();
        assert_eq!(reads, [TCP.write_seq, TCP.snd_una, TCP.write_seq, TCP.snd_una]);
    }

    #[test]
    fn the_fast_path_is_short() {
        // Between measurements a chunk costs the cookie, one lookup and the redirect.
        let p = verdict(7, 9, 11, TCP);
        let unmeasured = p.iter().position(|i| i.code == JLT_IMM).unwrap();
        assert_eq!(p[unmeasured].imm, STEP);
        let calls_before = p[..unmeasured].iter().filter(|i| i.code == CALL).count();
        assert_eq!(calls_before, 2);
    }
}
