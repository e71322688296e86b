//! Maglev lookup tables (Eisenbud et al., NSDI 2016): every slot of a prime-sized table names
//! one entry, each entry owns an almost equal share of slots, and a slot is found by hashing
//! the client in O(1). Each entry fills slots along its own permutation of the table, derived
//! from its identity only. Ties between entries wanting the same slot go to the earlier
//! entry, so callers pass entries in a canonical order.

use super::hash::fnv1a;

/// Table sizes: primes, so that every `skip` is coprime with the size and each permutation
/// visits every slot.
const SIZES: &[usize] = &[251, 509, 1021, 2039, 4093, 8191, 16381, 32749, 65521];

/// Slots per entry aimed for; with 100 the shares differ by about 1%.
const SLOTS_PER_ENTRY: usize = 100;

/// Builds a table whose slots hold positions into `identities`; empty when there are none.
pub fn build(identities: &[String]) -> Vec<u32> {
    let n = identities.len();
    match n {
        0 => return Vec::new(),
        // One slot says the same as a full table, without its cost (think of 100,000 priority
        // groups of one backend each).
        1 => return vec![0],
        _ => {}
    }
    let wanted = n.saturating_mul(SLOTS_PER_ENTRY);
    let size = SIZES.iter().copied().find(|&s| s >= wanted).unwrap_or(SIZES[SIZES.len() - 1]);
    let permutations: Vec<(usize, usize)> = identities
        .iter()
        .map(|id| {
            let offset = fnv1a(0, id.as_bytes()) as usize % size;
            let skip = fnv1a(1, id.as_bytes()) as usize % (size - 1) + 1;
            (offset, skip)
        })
        .collect();
    const EMPTY: u32 = u32::MAX;
    let mut table = vec![EMPTY; size];
    let mut next = vec![0usize; n];
    let mut filled = 0;
    // Entries take turns claiming their next free preferred slot until the table is full.
    while filled < size {
        for (entry, &(offset, skip)) in permutations.iter().enumerate() {
            loop {
                let slot = (offset + next[entry] * skip) % size;
                next[entry] += 1;
                if table[slot] == EMPTY {
                    table[slot] = entry as u32;
                    filled += 1;
                    break;
                }
            }
            if filled == size {
                break;
            }
        }
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("10.0.0.{i}:80")).collect()
    }

    #[test]
    fn shares_are_even() {
        let table = build(&ids(10));
        assert_eq!(table.len(), 1021);
        for entry in 0..10 {
            let share = table.iter().filter(|&&e| e == entry).count();
            assert!((100..=104).contains(&share), "entry {entry} owns {share} slots");
        }
    }

    #[test]
    fn empty_and_single() {
        assert!(build(&[]).is_empty());
        assert!(build(&ids(1)).iter().all(|&e| e == 0));
    }
}
