//! Generated PDQ-like hashes for the index's benchmark and tests.

/// xorshift64: reproducible, and fast enough that generating 10 M hashes takes no time (also
/// the PDQ index's tests' generator).
pub(super) struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    pub fn hash(&mut self) -> [u64; 4] {
        [self.next(), self.next(), self.next(), self.next()]
    }
    /// `h` with up to `bits` bits flipped.
    pub fn near(&mut self, h: &[u64; 4], bits: u64) -> [u64; 4] {
        let mut out = *h;
        for _ in 0..bits {
            let b = (self.next() % 256) as usize;
            out[b / 64] ^= 1 << (b % 64);
        }
        out
    }
}
