//! `dfserve hashes ...`: the hash lists from the command line, on the database itself.

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use clap::{Args, Subcommand};

use super::HashLists;
use crate::hashing::pdq::{within, within_baseline};

#[derive(Debug, Clone, Args)]
pub struct HashesArgs {
    /// The server's data directory.
    #[arg(long, env = "DFSERVE_DATA_DIR", default_value_os_t = crate::layout::data_dir(), global = true)]
    pub data_dir: PathBuf,
    #[command(subcommand)]
    pub command: HashesCommand,
}

#[derive(Debug, Clone, Subcommand)]
pub enum HashesCommand {
    /// Add the entries of FILE (JSON Lines, or CSV with a kind,hash,id[,label,source] header)
    /// to a list, creating it if new.
    Import {
        #[arg(long)]
        list: String,
        file: PathBuf,
    },
    /// Every list and its entry counts.
    List,
    /// A list's entries as JSON Lines on stdout.
    Export {
        #[arg(long)]
        list: String,
    },
    /// Delete a list.
    Delete {
        #[arg(long)]
        list: String,
    },
    /// Time PDQ queries against N random hashes held in memory (no database), and report the
    /// memory they take.
    Bench {
        #[arg(long, default_value_t = 1_000_000)]
        entries: usize,
        #[arg(long, default_value_t = 200)]
        queries: usize,
    },
}

pub fn run(args: &HashesArgs) -> anyhow::Result<()> {
    if let HashesCommand::Bench { entries, queries } = &args.command {
        return bench(*entries, *queries);
    }
    let lists = HashLists::open(&args.data_dir, Default::default())?;
    match &args.command {
        HashesCommand::Import { list, file } => {
            let text = std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
            let r = lists.import_text(list, &text).with_context(|| format!("{}", file.display()))?;
            eprintln!(
                "dfserve hashes: '{list}' in {}: {} added, {} replaced, {} duplicate lines; {} entries now",
                args.data_dir.display(),
                r.added,
                r.replaced,
                r.duplicates,
                r.entries
            );
        }
        HashesCommand::List => {
            for s in lists.summaries() {
                println!("{}", serde_json::to_string(&s)?);
            }
        }
        HashesCommand::Export { list } => {
            let entries = lists.export(list)?.with_context(|| format!("no hash list '{list}'"))?;
            let mut out = std::io::stdout().lock();
            for e in entries {
                serde_json::to_writer(&mut out, &e)?;
                out.write_all(b"\n")?;
            }
        }
        HashesCommand::Delete { list } => {
            let n = lists.delete_list(list)?;
            eprintln!("dfserve hashes: '{list}' deleted ({n} entries)");
        }
        HashesCommand::Bench { .. } => unreachable!("handled above"),
    }
    Ok(())
}

fn rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmRSS")).and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .map_or(0.0, |kib: f64| kib / 1024.0)
}

/// Random hashes, a linear scan per query (the matcher's), median and p99 time.
fn bench(n: usize, queries: usize) -> anyhow::Result<()> {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let before = rss_mib();
    let hashes: Vec<[u64; 4]> = (0..n).map(|_| [next(), next(), next(), next()]).collect();
    let memory = rss_mib() - before;
    // The same queries through the dispatched scan and the baseline build, interleaved.
    let (mut times, mut baseline) = (Vec::with_capacity(queries), Vec::with_capacity(queries));
    let mut found = 0usize;
    for q in 0..queries {
        // Half the queries are near a listed hash (5 bits flipped), half random.
        let query = if q % 2 == 0 {
            let mut h = hashes[(next() as usize) % n];
            h[0] ^= 0b11111;
            h
        } else {
            [next(), next(), next(), next()]
        };
        let t = Instant::now();
        found += within(&query, &hashes, 31).len();
        times.push(t.elapsed().as_secs_f64() * 1e3);
        let t = Instant::now();
        std::hint::black_box(within_baseline(&query, &hashes, 31));
        baseline.push(t.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    baseline.sort_by(f64::total_cmp);
    println!(
        "{{\"entries\": {n}, \"queries\": {queries}, \"median_ms\": {:.3}, \"p99_ms\": {:.3}, \"baseline_median_ms\": {:.3}, \"hash_memory_mib\": {memory:.1}, \"matches\": {found}}}",
        times[times.len() / 2],
        times[(times.len() * 99 / 100).min(times.len() - 1)],
        baseline[baseline.len() / 2],
    );
    Ok(())
}
