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

/// `dfserve store ...`: the PostgreSQL store of a fleet.
#[derive(Debug, Clone, Args)]
pub struct StoreArgs {
    /// The fleet's database (libpq URL or key=value string).
    #[arg(long, env = "DFSERVE_DATABASE_URL", hide_env_values = true, global = true)]
    pub database_url: Option<String>,
    #[command(subcommand)]
    pub command: StoreCommand,
}

#[derive(Debug, Clone, Subcommand)]
pub enum StoreCommand {
    /// Bring the database's schema up to date (servers also do this at start).
    Migrate,
    /// Copy every hash list of a data dir (a stopped server's) into the database, each list
    /// in one transaction; entries with an id the database's list already has are replaced.
    /// Decisions stay in the data dir (PostgreSQL does not hold them yet).
    Copy {
        /// The data dir to copy from.
        #[arg(long)]
        data_dir: PathBuf,
    },
}

pub fn store(args: &StoreArgs) -> anyhow::Result<()> {
    let url = args.database_url.as_deref().context("--database-url (or DFSERVE_DATABASE_URL) names the database")?;
    let pg = super::pg::PgStore::connect(url).context("connecting to --database-url")?;
    match &args.command {
        StoreCommand::Migrate => {
            pg.migrate()?;
            eprintln!("dfserve store: the schema is at version {}", super::pg::SCHEMA_VERSION);
        }
        StoreCommand::Copy { data_dir } => {
            anyhow::ensure!(
                crate::datastore::exists(data_dir),
                "{} holds no dfserve database: name a server's --data-dir",
                data_dir.display()
            );
            let lists = HashLists::open(data_dir, Default::default())?;
            for summary in lists.summaries() {
                let entries = lists.export(&summary.name)?.unwrap_or_default();
                let n = entries.len();
                let (mut added, mut replaced) = (0usize, 0usize);
                pg.put_all(&summary.name, entries.into_iter().map(Ok::<_, super::ListError>), |_, old| {
                    if old.is_some() {
                        replaced += 1;
                    } else {
                        added += 1;
                    }
                    Ok(())
                })?;
                eprintln!("dfserve store: '{}': {n} entries copied ({added} new, {replaced} replaced)", summary.name);
            }
        }
    }
    Ok(())
}
