//! Smooth weighted round robin (as nginx does it), unrolled into a fixed sequence so a shard
//! only advances a cursor. Over one full sequence each member appears exactly `weight / g`
//! times (g = gcd of the weights), spread out rather than in bursts.

/// Longest sequence we build; larger weight sums are scaled down proportionally.
const MAX_SEQUENCE: u64 = 1 << 16;

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
    let mut current = vec![0i64; weights.len()];
    let mut sequence = Vec::with_capacity(total as usize);
    for _ in 0..total {
        for (c, &w) in current.iter_mut().zip(&weights) {
            *c += w as i64;
        }
        let best = (0..current.len()).max_by_key(|&i| (current[i], std::cmp::Reverse(i))).unwrap_or(0);
        current[best] -= total;
        sequence.push(best as u32);
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
        (0..n).map(|i| seq.iter().filter(|&&s| s as usize == i).count()).collect()
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

    #[test]
    fn huge_weights_are_bounded() {
        let seq = smooth_sequence(&[1_000_000, 3_000_001]);
        assert!(seq.len() as u64 <= MAX_SEQUENCE + 2);
        let c = counts(&seq, 2);
        assert!((c[1] as f64 / c[0] as f64 - 3.0).abs() < 0.01);
    }
}
