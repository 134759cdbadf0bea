//! `dfserve hashes bench`: the PDQ index against the linear scan, on generated hashes.
//!
//! Both searches answer the same queries, interleaved, so the machine's noise falls on both
//! alike. Every answer is compared, and a difference is an error, because the scan is the
//! oracle. Memory is given two ways: the bytes the structures hold, and the process's resident
//! size as it grows.

use std::time::Instant;

use clap::{Args, ValueEnum};

use super::pdq_index::PdqIndex;
use super::rng::Rng;

#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    /// Hashes in the list.
    #[arg(long, default_value_t = 1_000_000)]
    entries: usize,
    /// Queries timed (half near a listed hash, half random).
    #[arg(long, default_value_t = 400)]
    queries: usize,
    /// How the listed hashes are spread.
    #[arg(long, value_enum, default_value_t = Spread::Random)]
    set: Spread,
    /// The match limit in bits (the server's --pdq-max-distance).
    #[arg(long, default_value_t = 31)]
    max_distance: u32,
    /// In-place inserts and removals timed after the queries.
    #[arg(long, default_value_t = 10_000)]
    changes: usize,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Spread {
    /// Uniformly random hashes.
    Random,
    /// Around 1,000 centres, each hash up to 48 bits from its centre.
    Clustered,
    /// Up to 40 bits from one of 10 hashes (many copies of a few images, edited).
    Near,
}

fn rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmRSS")).and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .map_or(0.0, |kib: f64| kib / 1024.0)
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    sorted[((sorted.len() as f64 * q) as usize).min(sorted.len() - 1)]
}

fn mib(bytes: usize) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

pub fn run(a: &BenchArgs) -> anyhow::Result<()> {
    anyhow::ensure!(a.entries > 0 && a.queries > 0, "--entries and --queries must be at least 1");
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let centres: Vec<[u64; 4]> = (0..match a.set {
        Spread::Random => 0,
        Spread::Clustered => 1000,
        Spread::Near => 10,
    })
        .map(|_| rng.hash())
        .collect();
    let make = |rng: &mut Rng| match a.set {
        Spread::Random => rng.hash(),
        Spread::Clustered => {
            let c = centres[(rng.next() % 1000) as usize];
            let bits = rng.next() % 49;
            rng.near(&c, bits)
        }
        Spread::Near => {
            let c = centres[(rng.next() % 10) as usize];
            let bits = rng.next() % 41;
            rng.near(&c, bits)
        }
    };

    let rss0 = rss_mib();
    let mut ix = PdqIndex::default();
    for _ in 0..a.entries {
        let h = make(&mut rng);
        ix.push(h);
    }
    let rss_hashes = rss_mib() - rss0;
    let t = Instant::now();
    ix.build();
    let build_s = t.elapsed().as_secs_f64();
    let rss_tables = rss_mib() - rss0 - rss_hashes;
    let (hash_bytes, table_bytes) = ix.bytes();

    let (mut mih, mut scan) = (Vec::with_capacity(a.queries), Vec::with_capacity(a.queries));
    // Dihedral matching looks up eight hashes per image (the upload's and seven turned or
    // mirrored variants, which for an unlisted image are as good as random).
    let mut dihedral = Vec::with_capacity(a.queries);
    let mut matches = 0usize;
    for q in 0..a.queries {
        let query = if q % 2 == 0 {
            let listed = *ix.get((rng.next() as usize) % ix.len());
            let bits = rng.next() % (u64::from(a.max_distance) + 1);
            rng.near(&listed, bits)
        } else {
            rng.hash()
        };
        let t = Instant::now();
        let got = ix.within(&query, a.max_distance);
        mih.push(t.elapsed().as_secs_f64() * 1e3);
        let t = Instant::now();
        let want = ix.scan(&query, a.max_distance);
        scan.push(t.elapsed().as_secs_f64() * 1e3);
        anyhow::ensure!(got == want, "query {q}: the index found {got:?}, the scan {want:?}");
        matches += want.len();
        let variants: Vec<[u64; 4]> = std::iter::once(query).chain((0..7).map(|_| rng.hash())).collect();
        let t = Instant::now();
        let found: usize = variants.iter().map(|v| ix.within(v, a.max_distance).len()).sum();
        dihedral.push(t.elapsed().as_secs_f64() * 1e3);
        anyhow::ensure!(found >= want.len(), "query {q}: the variants found less than the upload alone");
    }
    mih.sort_by(f64::total_cmp);
    scan.sort_by(f64::total_cmp);
    dihedral.sort_by(f64::total_cmp);

    // In-place changes: inserts, then as many removals at random positions.
    let t = Instant::now();
    for _ in 0..a.changes {
        let h = make(&mut rng);
        ix.push(h);
    }
    let insert_us = t.elapsed().as_secs_f64() * 1e6 / a.changes.max(1) as f64;
    let t = Instant::now();
    for _ in 0..a.changes {
        ix.swap_remove((rng.next() as usize) % ix.len());
    }
    let remove_us = t.elapsed().as_secs_f64() * 1e6 / a.changes.max(1) as f64;
    let raw = a.entries * 32;
    let out = serde_json::json!({
        "entries": a.entries,
        "set": format!("{:?}", a.set).to_lowercase(),
        "max_distance": a.max_distance,
        "queries": a.queries,
        "matches": matches,
        "identical_to_scan": true,
        "index_ms": {"p50": quantile(&mih, 0.5), "p99": quantile(&mih, 0.99), "max": quantile(&mih, 1.0)},
        "scan_ms": {"p50": quantile(&scan, 0.5), "p99": quantile(&scan, 0.99)},
        "dihedral_index_ms": {"p50": quantile(&dihedral, 0.5), "p99": quantile(&dihedral, 0.99)},
        "speedup_p50": quantile(&scan, 0.5) / quantile(&mih, 0.5),
        "build_s": build_s,
        "memory": {
            "raw_hashes_mib": mib(raw),
            "hashes_mib": mib(hash_bytes),
            "tables_mib": mib(table_bytes),
            "total_over_raw": (hash_bytes + table_bytes) as f64 / raw as f64,
            "rss_hashes_mib": rss_hashes,
            "rss_tables_mib": rss_tables,
            "rss_total_over_raw": (rss_hashes + rss_tables) / mib(raw),
        },
        "insert_us": insert_us,
        "remove_us": remove_us,
    });
    println!("{out}");
    Ok(())
}
