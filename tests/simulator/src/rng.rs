//! Seeded randomness that stays the same across Rust and crate versions.
//!
//! The simulator promises "same seed, same data, same faults for the same call order".
//! `rand`'s `StdRng` explicitly does not promise a stable algorithm between releases, so
//! the simulator uses SplitMix64 (a dozen lines, well studied, fast) and FNV-1a to mix
//! names into seeds.

/// A SplitMix64 generator.
#[derive(Clone, Debug)]
pub(crate) struct SimRng(u64);

impl SimRng {
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// A generator for one named thing (an account, an order, a report), independent
    /// of how many other things were generated before it.
    pub(crate) fn derive(seed: u64, parts: &[&str]) -> Self {
        let mut h = FNV_OFFSET;
        for part in parts {
            h = fnv1a(h, part.as_bytes());
            h = fnv1a(h, &[0xff]);
        }
        let mut rng = Self(seed ^ h);
        // One step so that seeds differing in a few bits start far apart.
        rng.next_u64();
        rng
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n == 0` gives 0); the modulo bias is below 2^-40 for the
    /// small ranges used here.
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next_u64() % n
        }
    }

    /// Uniform in `[0, 1)`.
    pub(crate) fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// True with probability `p`; draws nothing when `p <= 0`, so turning a fault off
    /// does not shift the sequence other faults see.
    pub(crate) fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && self.unit() < p
    }

    /// `len` lowercase hex digits.
    pub(crate) fn hex(&mut self, len: usize) -> String {
        let mut out = String::with_capacity(len);
        while out.len() < len {
            out.push_str(&format!("{:016x}", self.next_u64()));
        }
        out.truncate(len);
        out
    }
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

fn fnv1a(mut h: u64, bytes: &[u8]) -> u64 {
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01B3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_and_name_give_the_same_sequence() {
        let a: Vec<u64> = (0..5)
            .map({
                let mut r = SimRng::derive(7, &["acct-1", "order", "3"]);
                move |_| r.next_u64()
            })
            .collect();
        let mut r = SimRng::derive(7, &["acct-1", "order", "3"]);
        let b: Vec<u64> = (0..5).map(|_| r.next_u64()).collect();
        assert_eq!(a, b);
        assert_ne!(
            SimRng::derive(7, &["acct-1", "order", "4"]).next_u64(),
            SimRng::derive(7, &["acct-1", "order", "3"]).next_u64()
        );
    }

    #[test]
    fn parts_are_separated_so_names_do_not_collide() {
        assert_ne!(
            SimRng::derive(1, &["ab", "c"]).next_u64(),
            SimRng::derive(1, &["a", "bc"]).next_u64()
        );
    }

    #[test]
    fn unit_stays_in_range_and_chance_zero_draws_nothing() {
        let mut r = SimRng::new(99);
        for _ in 0..10_000 {
            let u = r.unit();
            assert!((0.0..1.0).contains(&u));
        }
        let before = r.clone().next_u64();
        assert!(!r.chance(0.0));
        assert_eq!(r.next_u64(), before);
    }
}
