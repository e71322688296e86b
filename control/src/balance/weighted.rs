//! Smooth weighted round robin (as nginx does it), unrolled into a fixed sequence so a shard
//! only advances a cursor. Over one full sequence each member appears exactly `weight / g`
//! times (g = gcd of the weights), spread out rather than in bursts.
//!
//! nginx looks at every member for every step, O(steps × members): 100,000 backends took the
//! control thread seconds. Members of equal weight move in lockstep, though: their running
//! scores differ only by how often each was picked, and among them the pick goes round in
//! member order. So each weight class stands for all its members, and a step looks at the
//! classes only: O(steps × distinct weights), with the very same sequence. The number of
//! distinct weights is at most √(2 × steps), since distinct weights add up to at least
//! 1 + 2 + … + k.

/// Longest sequence we build; larger weight sums are scaled down proportionally.
const MAX_SEQUENCE: u64 = 1 << 16;

/// Members sharing one (scaled) weight, seen as the member whose turn it is.
struct Class {
    score: i64,
    weight: i64,
    member: u32,
    /// Index of `member` in the class's member list.
    turn: usize,
}

pub fn smooth_sequence(weights: &[u32]) -> Vec<u32> {
    if weights.is_empty() {
        return Vec::new();
    }
    let g = weights.iter().copied().fold(0, gcd).max(1);
    let mut weights: Vec<u64> = weights.iter().map(|&w| u64::from(w.max(1) / g)).collect();
    let sum: u64 = weights.iter().sum();
    if sum > MAX_SEQUENCE {
        for w in &mut weights {
            *w = (*w * MAX_SEQUENCE / sum).max(1);
        }
    }
    let total: i64 = weights.iter().sum::<u64>() as i64;
    let mut by_weight: std::collections::BTreeMap<u64, Vec<u32>> = Default::default();
    for (position, &w) in weights.iter().enumerate() {
        by_weight.entry(w).or_default().push(position as u32);
    }
    // Per class: nginx's running score of the member whose turn it is. A member's score grows
    // by its weight every step and drops by `total` when picked; in a class, the member whose
    // turn it is has been picked as often as any other, or once less, so the class's score
    // drops only when its turn wraps around.
    let mut classes: Vec<Class> = by_weight
        .iter()
        .map(|(&w, members)| Class { score: 0, weight: w as i64, member: members[0], turn: 0 })
        .collect();
    let lists: Vec<Vec<u32>> = by_weight.into_values().collect();
    let mut sequence = Vec::with_capacity(total as usize);
    for _ in 0..total {
        // The highest score wins; the lowest member position breaks ties, as in nginx.
        let mut best = 0;
        let mut top = (i64::MIN, 0);
        for (index, class) in classes.iter_mut().enumerate() {
            class.score += class.weight;
            if class.score > top.0 || (class.score == top.0 && class.member < top.1) {
                top = (class.score, class.member);
                best = index;
            }
        }
        sequence.push(top.1);
        let class = &mut classes[best];
        let list = &lists[best];
        class.turn += 1;
        if class.turn == list.len() {
            class.turn = 0;
            class.score -= total;
        }
        class.member = list[class.turn];
    }
    sequence
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(seq: &[u32], n: usize) -> Vec<usize> {
        let mut counts = vec![0; n];
        for &s in seq {
            counts[s as usize] += 1;
        }
        counts
    }

    #[test]
    fn proportions_are_exact() {
        let seq = smooth_sequence(&[1, 2, 3]);
        assert_eq!(seq.len(), 6);
        assert_eq!(counts(&seq, 3), vec![1, 2, 3]);
        let seq = smooth_sequence(&[40, 60, 100]);
        assert_eq!(counts(&seq, 3), vec![2, 3, 5]);
    }

    #[test]
    fn spreads_picks() {
        // nginx's classic example: weights 5,1,1 give a a a b a c a style interleaving, never 5 in a row.
        let seq = smooth_sequence(&[5, 1, 1]);
        assert_eq!(seq, vec![0, 0, 1, 0, 2, 0, 0]);
    }

    /// nginx's algorithm as written, member by member: the reference the classes must match.
    fn nginx(weights: &[u64]) -> Vec<u32> {
        let total: i64 = weights.iter().sum::<u64>() as i64;
        let mut current = vec![0i64; weights.len()];
        (0..total)
            .map(|_| {
                for (c, &w) in current.iter_mut().zip(weights) {
                    *c += w as i64;
                }
                let best = (0..current.len()).max_by_key(|&i| (current[i], std::cmp::Reverse(i))).unwrap();
                current[best] -= total;
                best as u32
            })
            .collect()
    }

    #[test]
    fn same_sequence_as_nginx() {
        let cases: &[&[u32]] = &[
            &[1],
            &[1, 1, 1],
            &[5, 1, 1],
            &[1, 5, 1, 5, 2],
            &[3, 3, 2, 2, 1, 7, 3, 1, 2],
            &[10, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 9, 2],
        ];
        for weights in cases {
            let plain: Vec<u64> = weights.iter().map(|&w| u64::from(w)).collect();
            assert_eq!(smooth_sequence(weights), nginx(&plain), "{weights:?}");
        }
    }

    /// 100,000 members took seconds member by member. Here 99,000 of weight 1 and 1,000 with
    /// weights up to 100,000, which scale to about 130 distinct weights: still well under a second.
    #[test]
    fn a_hundred_thousand_members_build_fast() {
        let weights: Vec<u32> =
            (0..100_000u32).map(|i| if i < 99_000 { 1 } else { (i - 98_999) * 100 }).collect();
        let started = std::time::Instant::now();
        let seq = smooth_sequence(&weights);
        let elapsed = started.elapsed();
        assert!(elapsed < std::time::Duration::from_secs(2), "{elapsed:?}");
        let c = counts(&seq, weights.len());
        assert!(c.iter().all(|&n| n >= 1), "every member appears");
        assert!(c[99_999] > 120 && c[99_999] / c[99_499] == 2, "{} {}", c[99_999], c[99_499]);
    }

    #[test]
    fn huge_weights_are_bounded() {
        let seq = smooth_sequence(&[1_000_000, 3_000_001]);
        assert!(seq.len() as u64 <= MAX_SEQUENCE + 2);
        let c = counts(&seq, 2);
        assert!((c[1] as f64 / c[0] as f64 - 3.0).abs() < 0.01);
    }
}
