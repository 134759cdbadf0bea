//! `dfserve hashes ...`: the hash lists from the command line, on the database itself.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};

use super::HashLists;

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
    /// Time PDQ queries against N generated hashes held in memory (no database): the
    /// multi-index search and the linear scan side by side, their results compared, the memory
    /// each takes, and in-place inserts and removals.
    Bench(super::bench::BenchArgs),
}

pub fn run(args: &HashesArgs) -> anyhow::Result<()> {
    if let HashesCommand::Bench(b) = &args.command {
        return super::bench::run(b);
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
        HashesCommand::Bench(_) => unreachable!("handled above"),
    }
    Ok(())
}
