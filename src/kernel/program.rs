//! The stream-verdict program, hand-assembled (no BPF toolchain is needed to build betwixt).
//!
//! For every chunk of bytes (`skb`) arriving on a socket in the sockmap it:
//!  1. takes the socket's cookie as the key;
//!  2. adds the chunk's length to the key's entry in the counter map (when there is one), so
//!     user space knows how many bytes were handed on from each socket (see `forward`);
//!  3. redirects the chunk to the socket the peer map holds under the same key, the
//!     connection's other socket, to be sent out on it (`bpf_sk_redirect_hash`, flags 0:
//!     egress).
//!
//! It returns the helper's verdict: `SK_PASS` when the peer is in the map, else `SK_DROP`
//! (possible only once betwixt has removed the peer, i.e. while closing).
//!
//! An empty chunk (the segment that carried a bare FIN) is dropped, not redirected: it holds
//! no byte, and sent to the peer after betwixt has shut the peer's sending side down it would
//! fail there, and the kernel would report that failure as an error of the peer.

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
pub const LDX_W: u8 = 0x01 | 0x60; // BPF_LDX | BPF_MEM | BPF_W
pub const STX_DW: u8 = 0x03 | 0x60 | 0x18; // BPF_STX | BPF_MEM | BPF_DW
pub const ATOMIC_DW: u8 = 0x03 | 0xc0 | 0x18; // BPF_STX | BPF_ATOMIC | BPF_DW (imm BPF_ADD)
pub const LD_IMM64: u8 = 0x18; // BPF_LD | BPF_DW | BPF_IMM, two instructions long
pub const JEQ_IMM: u8 = 0x05 | 0x10; // BPF_JMP | BPF_JEQ | BPF_K
pub const JNE_IMM: u8 = 0x05 | 0x50; // BPF_JMP | BPF_JNE | BPF_K
pub const CALL: u8 = 0x05 | 0x80; // BPF_JMP | BPF_CALL
pub const EXIT: u8 = 0x05 | 0x90; // BPF_JMP | BPF_EXIT

/// `BPF_PSEUDO_MAP_FD`: the source register of a 64-bit load whose immediate is a map's fd.
pub const PSEUDO_MAP_FD: u8 = 1;

/// Helper numbers (`enum bpf_func_id`).
pub const MAP_LOOKUP_ELEM: i32 = 1;
pub const GET_SOCKET_COOKIE: i32 = 46;
pub const SK_REDIRECT_HASH: i32 = 72;

/// The verdict that frees a chunk (`enum sk_action`).
const SK_DROP: i32 = 0;

/// `offsetof(struct __sk_buff, len)`.
const SKB_LEN: i16 = 0;

const R0: u8 = 0;
const R1: u8 = 1;
const R2: u8 = 2;
const R3: u8 = 3;
const R4: u8 = 4;
const R6: u8 = 6;
const R7: u8 = 7;
const R10: u8 = 10;

fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn { code, regs: dst | (src << 4), off, imm }
}

/// `dst = map` (a map fd, resolved by the kernel at load): two instructions.
fn load_map(dst: u8, map_fd: i32) -> [Insn; 2] {
    [insn(LD_IMM64, dst, PSEUDO_MAP_FD, 0, map_fd), insn(0, 0, 0, 0, 0)]
}

/// The verdict program for the given peer map (a sockhash) and counter map.
pub fn verdict(peers_fd: i32, counters_fd: i32) -> Vec<Insn> {
    let mut program = vec![
        insn(MOV64_REG, R6, R1, 0, 0),      // r6 = skb
        insn(LDX_W, R7, R1, SKB_LEN, 0),    // r7 = skb->len
        insn(JNE_IMM, R7, 0, 2, 0),         // bytes in it: on to the redirect
        insn(MOV64_IMM, R0, 0, 0, SK_DROP), // empty: dropped
        insn(EXIT, 0, 0, 0, 0),
        insn(CALL, 0, 0, 0, GET_SOCKET_COOKIE), // r0 = cookie of skb's socket
        insn(STX_DW, R10, R0, -8, 0),           // key (fp-8) = r0
    ];
    program.extend(load_map(R1, counters_fd));
    program.extend([
        insn(MOV64_REG, R2, R10, 0, 0),
        insn(ADD64_IMM, R2, 0, 0, -8),        // r2 = &key
        insn(CALL, 0, 0, 0, MAP_LOOKUP_ELEM), // r0 = &counters[key] or NULL
        insn(JEQ_IMM, R0, 0, 1, 0),           // no entry: skip the count
        insn(ATOMIC_DW, R0, R7, 0, 0),        // lock *(u64 *)r0 += r7
        insn(MOV64_REG, R1, R6, 0, 0),        // r1 = skb
    ]);
    program.extend(load_map(R2, peers_fd));
    program.extend([
        insn(MOV64_REG, R3, R10, 0, 0),
        insn(ADD64_IMM, R3, 0, 0, -8),         // r3 = &key
        insn(MOV64_IMM, R4, 0, 0, 0),          // flags 0: send out of the peer
        insn(CALL, 0, 0, 0, SK_REDIRECT_HASH), // r0 = SK_PASS or SK_DROP
        insn(EXIT, 0, 0, 0, 0),
    ]);
    program
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instruction_is_eight_bytes_with_registers_in_nibbles() {
        assert_eq!(std::mem::size_of::<Insn>(), 8);
        let i = insn(MOV64_REG, R6, R1, 0, 0);
        assert_eq!((i.regs & 0x0f, i.regs >> 4), (6, 1));
        assert_eq!(MOV64_REG, 0xbf);
        assert_eq!(STX_DW, 0x7b);
        assert_eq!(ATOMIC_DW, 0xdb);
        assert_eq!(EXIT, 0x95);
        assert_eq!(LDX_W, 0x61);
    }

    #[test]
    fn verdict_counts_then_redirects_and_exits() {
        let p = verdict(7, 9);
        assert_eq!(p.len(), 22);
        // An empty chunk ends the program at once, dropped.
        assert_eq!(p[2], insn(JNE_IMM, R7, 0, 2, 0));
        assert_eq!((p[3], p[4].code), (insn(MOV64_IMM, R0, 0, 0, SK_DROP), EXIT));
        assert_eq!(p.last().unwrap().code, EXIT);
        let calls: Vec<i32> = p.iter().filter(|i| i.code == CALL).map(|i| i.imm).collect();
        assert_eq!(calls, [GET_SOCKET_COOKIE, MAP_LOOKUP_ELEM, SK_REDIRECT_HASH]);
        // Both maps are referenced by fd, each through a two-instruction load whose second half
        // is zero.
        let maps: Vec<(usize, i32)> =
            p.iter().enumerate().filter(|(_, i)| i.code == LD_IMM64).map(|(n, i)| (n, i.imm)).collect();
        assert_eq!(maps.iter().map(|m| m.1).collect::<Vec<_>>(), [9, 7]);
        for (n, _) in &maps {
            assert_eq!(p[n + 1], insn(0, 0, 0, 0, 0));
            assert_eq!(p[*n].regs >> 4, PSEUDO_MAP_FD);
        }
        // The counter update is skipped, and only it, when the lookup finds nothing.
        let jump = p.iter().position(|i| i.code == JEQ_IMM).unwrap();
        assert_eq!(p[jump].off, 1);
        assert_eq!(p[jump + 1].code, ATOMIC_DW);
        assert_eq!(p[jump + 1].regs, R0 | (R7 << 4));
        // The key is stored at fp-8 and both helpers are given its address.
        assert_eq!(p[6], insn(STX_DW, R10, R0, -8, 0));
        let key_args = p.iter().filter(|i| i.code == ADD64_IMM && i.imm == -8).count();
        assert_eq!(key_args, 2);
    }
}
