//! The PDQ part of a list's index: the hashes in one flat array and, once a list is large, a
//! multi-index hashing (MIH) search over them (Norouzi, Punjani and Fleet, "Fast Search in
//! Hamming Space with Multi-Index Hashing", CVPR 2012), kept up to date in place.
//!
//! Why the search is exact. A PDQ hash is 16 words of 16 bits. Write the distance limit as
//! `max = 16·r + a` with `0 ≤ a < 16`. If a listed hash is within `max` bits of the query,
//! then one of the first `a + 1` words differs in at most `r` bits, or one of the other words
//! differs in at most `r − 1` bits. Otherwise the distance would be at least
//! `(a + 1)(r + 1) + (15 − a)·r = max + 1`. Table `j` maps every value of word `j` to the
//! positions of the hashes that have it. A query probes, in each table, every value within
//! that radius of its own word, and checks each candidate's full distance. For the default
//! limit of 31 that is `r = 1` in all 16 tables: 17 buckets each. Equal words alone would not
//! be enough, because a hash 31 bits away may differ by one or two bits in every word. A hash
//! is reported once, from the first table whose probe reaches it.
//!
//! Why this layout. Each table keeps its buckets in one slot array, so a list costs three
//! `u32` per bucket plus one `u32` per hash in each table, with no allocation per bucket.
//! A bucket that outgrows its room moves to the end of the slot array. Once the space left
//! behind passes a quarter of the array, the table is compacted. Inserts and deletes change
//! the tables in place, so a single-entry edit costs microseconds, not a rebuild. Small lists
//! are scanned linearly: below [`MIN_INDEXED`] hashes a scan is already fast, and the tables'
//! fixed 12.6 MB would dwarf the hashes. The linear scan is also the tests' oracle.

use crate::hashing::pdq::{hamming, within as scan};

const WORDS: usize = 16;
const BUCKETS: usize = 1 << 16;
/// Lists with at least this many PDQ hashes get tables (a scan of this many takes about 70 µs
/// here); they lose them below half of it.
pub const MIN_INDEXED: usize = 1 << 16;
/// Per-word radii above this probe more buckets (697 each at radius 3) than a scan is worth:
/// limits of 48 bits and more are scanned.
const MAX_RADIUS: u32 = 2;

/// Word `j` of a hash held as four 64-bit lanes ([`crate::hashing::pdq::Pdq::lanes`]).
#[inline(always)]
fn word(h: &[u64; 4], j: usize) -> u16 {
    (h[j >> 2] >> ((j & 3) * 16)) as u16
}

/// The probe radius of table `j` for the limit `max`, or `None` when the table need not be
/// probed (see the module's doc comment).
#[inline(always)]
fn radius(j: usize, max: u32) -> Option<u32> {
    let (r, a) = (max / WORDS as u32, (max % WORDS as u32) as usize);
    if j <= a {
        Some(r)
    } else {
        r.checked_sub(1)
    }
}

/// One word's table: bucket `v` is `slots[start[v] .. start[v] + len[v]]`, with room up to
/// `cap[v]`.
struct Table {
    start: Vec<u32>,
    len: Vec<u32>,
    cap: Vec<u32>,
    slots: Vec<u32>,
    /// Slots no bucket uses (left behind by buckets that moved).
    dead: usize,
}

impl Table {
    /// The table of word `j` over `hashes`, by counting sort, with no spare room.
    fn build(hashes: &[[u64; 4]], j: usize) -> Table {
        let mut len = vec![0u32; BUCKETS];
        for h in hashes {
            len[word(h, j) as usize] += 1;
        }
        let mut start = vec![0u32; BUCKETS];
        let mut at = 0u32;
        for (s, n) in start.iter_mut().zip(&len) {
            *s = at;
            at += n;
        }
        let mut fill = start.clone();
        let mut slots = vec![0u32; hashes.len()];
        for (pos, h) in hashes.iter().enumerate() {
            let v = word(h, j) as usize;
            slots[fill[v] as usize] = pos as u32;
            fill[v] += 1;
        }
        Table { cap: len.clone(), start, len, slots, dead: 0 }
    }

    #[inline(always)]
    fn bucket(&self, v: u16) -> &[u32] {
        let (s, n) = (self.start[v as usize] as usize, self.len[v as usize] as usize);
        &self.slots[s..s + n]
    }

    fn insert(&mut self, v: u16, pos: u32) {
        let v = v as usize;
        let (s, n, c) = (self.start[v] as usize, self.len[v] as usize, self.cap[v] as usize);
        if n == c {
            // Move the bucket to the end with a quarter more room.
            let room = n + n / 4 + 4;
            let at = self.slots.len();
            self.slots.extend_from_within(s..s + n);
            self.slots.resize(at + room, u32::MAX);
            self.start[v] = u32::try_from(at).expect("a PDQ table holds fewer than 2^32 slots");
            self.cap[v] = room as u32;
            self.dead += c;
        }
        let s = self.start[v] as usize;
        self.slots[s + n] = pos;
        self.len[v] += 1;
        if self.dead > self.slots.len() / 4 {
            self.compact();
        }
    }

    /// Removes `pos` from bucket `v` (the bucket's order does not matter).
    fn remove(&mut self, v: u16, pos: u32) {
        let (s, n) = (self.start[v as usize] as usize, self.len[v as usize] as usize);
        let b = &mut self.slots[s..s + n];
        let i = b.iter().position(|&p| p == pos).expect("an indexed hash is in its bucket");
        b[i] = b[n - 1];
        self.len[v as usize] -= 1;
    }

    /// Renames `from` to `to` in bucket `v` (the hash at `from` moved to `to`).
    fn rename(&mut self, v: u16, from: u32, to: u32) {
        let (s, n) = (self.start[v as usize] as usize, self.len[v as usize] as usize);
        let b = &mut self.slots[s..s + n];
        let i = b.iter().position(|&p| p == from).expect("an indexed hash is in its bucket");
        b[i] = to;
    }

    /// Lays the buckets out again in order, each with an eighth more room than it holds.
    fn compact(&mut self) {
        let total: usize = self.len.iter().map(|&n| n as usize + n as usize / 8 + 1).sum();
        let mut slots = Vec::with_capacity(total);
        for v in 0..BUCKETS {
            let (s, n) = (self.start[v] as usize, self.len[v] as usize);
            let room = n + n / 8 + 1;
            self.start[v] = slots.len() as u32;
            self.cap[v] = room as u32;
            slots.extend_from_slice(&self.slots[s..s + n]);
            slots.resize(slots.len() + room - n, u32::MAX);
        }
        self.slots = slots;
        self.dead = 0;
    }

    fn bytes(&self) -> usize {
        4 * (self.start.capacity() + self.len.capacity() + self.cap.capacity() + self.slots.capacity())
    }
}

/// A list's PDQ hashes, searched by MIH when there are enough of them.
pub struct PdqIndex {
    hashes: Vec<[u64; 4]>,
    tables: Option<Box<[Table]>>,
    /// [`MIN_INDEXED`], lower in tests.
    min_indexed: usize,
}

impl Default for PdqIndex {
    fn default() -> Self {
        PdqIndex::with_min_indexed(MIN_INDEXED)
    }
}

impl PdqIndex {
    /// An index that builds its tables at `min_indexed` hashes.
    pub fn with_min_indexed(min_indexed: usize) -> PdqIndex {
        PdqIndex { hashes: Vec::new(), tables: None, min_indexed }
    }

    pub fn len(&self) -> usize {
        self.hashes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.hashes.is_empty()
    }

    /// The hash at `pos`.
    pub fn get(&self, pos: usize) -> &[u64; 4] {
        &self.hashes[pos]
    }

    /// Whether queries use the tables (else they scan).
    pub fn has_tables(&self) -> bool {
        self.tables.is_some()
    }

    /// Appends `h`; its position (the last).
    pub fn push(&mut self, h: [u64; 4]) -> usize {
        let pos = self.hashes.len();
        assert!(pos < u32::MAX as usize, "a PDQ index holds fewer than 2^32 hashes");
        self.hashes.push(h);
        if let Some(tables) = &mut self.tables {
            for (j, t) in tables.iter_mut().enumerate() {
                t.insert(word(&h, j), pos as u32);
            }
        }
        pos
    }

    /// Removes the hash at `pos`; the last hash moves into its place (as `Vec::swap_remove`),
    /// so positions held elsewhere must follow the same move.
    pub fn swap_remove(&mut self, pos: usize) {
        let last = self.hashes.len() - 1;
        if let Some(tables) = &mut self.tables {
            let (gone, moved) = (self.hashes[pos], self.hashes[last]);
            for (j, t) in tables.iter_mut().enumerate() {
                t.remove(word(&gone, j), pos as u32);
                if pos != last {
                    t.rename(word(&moved, j), last as u32, pos as u32);
                }
            }
        }
        self.hashes.swap_remove(pos);
    }

    /// Builds the tables once the list has [`MIN_INDEXED`] hashes, and drops them below half
    /// of that. Called at the end of each change, so that an import into a small list builds
    /// them once, in bulk, rather than entry by entry.
    pub fn settle(&mut self) {
        match &self.tables {
            None if self.hashes.len() >= self.min_indexed => self.build(),
            Some(_) if self.hashes.len() < self.min_indexed / 2 => self.tables = None,
            _ => {}
        }
    }

    /// (Re)builds every table from the hashes.
    pub fn build(&mut self) {
        self.tables = None;
        let tables: Vec<Table> = (0..WORDS).map(|j| Table::build(&self.hashes, j)).collect();
        self.tables = Some(tables.into_boxed_slice());
    }

    /// Bytes held: the hashes (32 each; a grown array's unused capacity is not resident until
    /// written) and the tables (by capacity).
    pub fn bytes(&self) -> (usize, usize) {
        let tables = self.tables.iter().flat_map(|t| t.iter()).map(Table::bytes).sum();
        (self.hashes.len() * 32, tables)
    }

    /// Every hash within `max` bits of `query`: its position and distance, by position, as
    /// [`scan`] gives them.
    pub fn within(&self, query: &[u64; 4], max: u32) -> Vec<(usize, u32)> {
        match &self.tables {
            Some(tables) if max / WORDS as u32 <= MAX_RADIUS && !self.crowded(tables, query, max) => {
                self.search(tables, query, max)
            }
            _ => scan(query, &self.hashes, max),
        }
    }

    /// The linear scan, whatever the list's size (the oracle, and the benchmark's baseline).
    pub fn scan(&self, query: &[u64; 4], max: u32) -> Vec<(usize, u32)> {
        scan(query, &self.hashes, max)
    }

    /// Whether the buckets a query would probe hold more than an eighth of the list (many
    /// near-copies of a few images, or a query like them): checking that many positions one by
    /// one costs more than the scan, which reads the array in order (measured: 10 times slower
    /// at p99 on `dfserve hashes bench --set near` before this check).
    fn crowded(&self, tables: &[Table], query: &[u64; 4], max: u32) -> bool {
        let mut total = 0usize;
        probes(query, max, |j, v| total += tables[j].len[v as usize] as usize);
        total > self.hashes.len() / 8
    }

    fn search(&self, tables: &[Table], query: &[u64; 4], max: u32) -> Vec<(usize, u32)> {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("popcnt") {
            // SAFETY: the CPU has just been checked to support the instruction.
            return unsafe { search_popcnt(&self.hashes, tables, query, max) };
        }
        search(&self.hashes, tables, query, max)
    }
}

/// [`search`] compiled with the POPCNT instruction (a distance is then 4 instructions, not 40).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "popcnt")]
unsafe fn search_popcnt(hashes: &[[u64; 4]], tables: &[Table], query: &[u64; 4], max: u32) -> Vec<(usize, u32)> {
    search(hashes, tables, query, max)
}

/// Calls `f(j, v)` for every bucket `v` of every table `j` that a query for `query` within
/// `max` bits probes: the query's own word, and each value within the table's radius of it.
#[inline(always)]
fn probes(query: &[u64; 4], max: u32, mut f: impl FnMut(usize, u16)) {
    for j in 0..WORDS {
        let Some(r) = radius(j, max) else { continue };
        let w = word(query, j);
        f(j, w);
        if r >= 1 {
            for b in 0..16 {
                f(j, w ^ (1 << b));
            }
        }
        if r >= 2 {
            for b in 0..16 {
                for c in b + 1..16 {
                    f(j, w ^ (1 << b) ^ (1 << c));
                }
            }
        }
    }
}

/// Asks for the cache line holding `h` (a hint; no effect on the result).
#[inline(always)]
fn prefetch(h: &[u64; 4]) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch never faults, and SSE is part of x86-64.
    unsafe {
        std::arch::x86_64::_mm_prefetch(h.as_ptr().cast(), std::arch::x86_64::_MM_HINT_T0)
    };
}

/// How many candidates ahead of the one checked are fetched: the candidates' hashes are
/// scattered over the whole array, so each check waits on memory unless it was asked for
/// early (measured: most of a query's time at 10 M hashes).
const AHEAD: usize = 16;

#[inline(always)]
fn search(hashes: &[[u64; 4]], tables: &[Table], query: &[u64; 4], max: u32) -> Vec<(usize, u32)> {
    let q: [u16; WORDS] = std::array::from_fn(|j| word(query, j));
    // Whether table `j`'s probe reaches `h`, which then is reported from the first such.
    let reached = |h: &[u64; 4], j: usize| radius(j, max).is_some_and(|r| (word(h, j) ^ q[j]).count_ones() <= r);
    let mut out = Vec::new();
    let mut by_table: [Vec<u32>; WORDS] = Default::default();
    probes(query, max, |j, v| by_table[j].extend_from_slice(tables[j].bucket(v)));
    for (j, candidates) in by_table.iter().enumerate() {
        for (i, &p) in candidates.iter().enumerate() {
            if let Some(&next) = candidates.get(i + AHEAD) {
                prefetch(&hashes[next as usize]);
            }
            let h = &hashes[p as usize];
            let d = hamming(query, h);
            if d <= max && !(0..j).any(|i| reached(h, i)) {
                out.push((p as usize, d));
            }
        }
    }
    out.sort_unstable();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::hashlists::rng::Rng;

    /// Random hashes, clusters around a few centres, and near-duplicates of one hash.
    fn sets(rng: &mut Rng) -> Vec<(&'static str, Vec<[u64; 4]>)> {
        let random: Vec<_> = (0..3000).map(|_| rng.hash()).collect();
        let centres: Vec<_> = (0..20).map(|_| rng.hash()).collect();
        let clustered: Vec<_> = (0..3000)
            .map(|i| {
                let bits = rng.next() % 48;
                rng.near(&centres[i % 20], bits)
            })
            .collect();
        let base = rng.hash();
        let near: Vec<_> = (0..3000)
            .map(|_| {
                let bits = rng.next() % 40;
                rng.near(&base, bits)
            })
            .collect();
        vec![("random", random), ("clustered", clustered), ("near-duplicates", near)]
    }

    fn queries(rng: &mut Rng, hashes: &[[u64; 4]]) -> Vec<[u64; 4]> {
        let mut out: Vec<[u64; 4]> = (0..30).map(|_| rng.hash()).collect();
        for i in 0..60 {
            let h = hashes[(rng.next() as usize) % hashes.len()];
            out.push(rng.near(&h, i % 40));
        }
        out
    }

    #[test]
    fn the_tables_find_exactly_what_the_scan_finds() {
        let mut rng = Rng(0x2545_f491_4f6c_dd1d);
        for (name, hashes) in sets(&mut rng) {
            let mut ix = PdqIndex::with_min_indexed(0);
            for h in &hashes {
                ix.push(*h);
            }
            ix.settle();
            assert!(ix.has_tables());
            let mut found = 0;
            for q in queries(&mut rng, &hashes) {
                for max in [0, 1, 5, 15, 16, 17, 20, 31, 32, 40, 47, 48, 64] {
                    let want = ix.scan(&q, max);
                    assert_eq!(ix.within(&q, max), want, "{name}, limit {max}");
                    if max / WORDS as u32 <= MAX_RADIUS {
                        // The tables themselves, also where `within` would scan a crowded query.
                        let tables = ix.tables.as_ref().unwrap();
                        assert_eq!(ix.search(tables, &q, max), want, "{name}, limit {max}, tables");
                    }
                    found += want.len();
                }
            }
            assert!(found > 0, "{name}: the queries must find something for the test to mean anything");
        }
    }

    #[test]
    fn in_place_inserts_and_removals_match_a_rebuild_and_the_scan() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let centres: Vec<_> = (0..8).map(|_| rng.hash()).collect();
        let mut ix = PdqIndex::with_min_indexed(100);
        let mut mirror: Vec<[u64; 4]> = Vec::new();
        for round in 0..40 {
            // Mostly inserts early, mostly removals late; a bucket grows, moves and is compacted.
            for _ in 0..300 {
                let remove = !mirror.is_empty() && rng.next() % 100 < (round * 2 + 10);
                if remove {
                    let pos = (rng.next() as usize) % mirror.len();
                    ix.swap_remove(pos);
                    mirror.swap_remove(pos);
                } else {
                    let bits = rng.next() % 40;
                    let c = centres[(rng.next() % 8) as usize];
                    let h = rng.near(&c, bits);
                    assert_eq!(ix.push(h), mirror.len());
                    mirror.push(h);
                }
            }
            ix.settle();
            assert_eq!(ix.hashes, mirror);
            let mut rebuilt = PdqIndex::with_min_indexed(0);
            for h in &mirror {
                rebuilt.push(*h);
            }
            rebuilt.settle();
            for q in queries(&mut rng, &centres) {
                let want = rebuilt.scan(&q, 31);
                assert_eq!(ix.within(&q, 31), want, "round {round}");
                if let Some(tables) = &ix.tables {
                    assert_eq!(ix.search(tables, &q, 31), want, "round {round}, tables");
                }
                assert_eq!(rebuilt.within(&q, 31), want, "round {round}, rebuilt");
            }
            if let Some(tables) = &ix.tables {
                for t in tables.iter() {
                    let mut all: Vec<u32> = (0..BUCKETS).flat_map(|v| t.bucket(v as u16).to_vec()).collect();
                    all.sort_unstable();
                    assert_eq!(all, (0..mirror.len() as u32).collect::<Vec<_>>(), "round {round}: every position once");
                }
            }
        }
    }

    #[test]
    fn small_lists_scan_and_tables_come_and_go_with_size() {
        let mut rng = Rng(7);
        let mut ix = PdqIndex::with_min_indexed(64);
        for _ in 0..63 {
            ix.push(rng.hash());
        }
        ix.settle();
        assert!(!ix.has_tables());
        ix.push(rng.hash());
        ix.settle();
        assert!(ix.has_tables());
        while ix.len() > 32 {
            ix.swap_remove(0);
        }
        ix.settle();
        assert!(ix.has_tables(), "kept down to half the threshold");
        ix.swap_remove(0);
        ix.settle();
        assert!(!ix.has_tables());
    }
}
