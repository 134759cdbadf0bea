//! `dfserve store ...`: the fleet's PostgreSQL database from the command line (`pgstore`),
//! and moving a data dir's hash lists and decisions into it.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};

use crate::decisions::Decisions;
use crate::hashlists::{HashLists, ListError};
use crate::pgstore::{Db, SCHEMA_VERSION};

#[derive(Debug, Clone, Args)]
pub struct StoreArgs {
    /// The fleet's database (libpq URL or key=value string; `sslmode` and `sslrootcert` as in libpq).
    #[arg(long, env = "DFSERVE_DATABASE_URL", hide_env_values = true, global = true)]
    pub database_url: Option<String>,
    #[command(subcommand)]
    pub command: StoreCommand,
}

#[derive(Debug, Clone, Subcommand)]
pub enum StoreCommand {
    /// Bring the database's schema up to date (servers also do this at start).
    Migrate,
    /// Copy a data dir's contents (a stopped server's) into the database: every hash list,
    /// each in one transaction, and every decision. Entries with an id the database's list
    /// already has, and decisions by the same reviewer on the same item, are replaced, so a
    /// copy can be run again.
    Copy {
        /// The data dir to copy from.
        #[arg(long)]
        data_dir: PathBuf,
    },
    /// Prune the hash lists' change log of transactions older than this (`24h`, `0s`), as
    /// servers do every few minutes by --hashlist-log-retention. Replicas whose position falls
    /// behind the pruned log load every list afresh.
    Prune {
        #[arg(long, value_parser = humantime::parse_duration)]
        older_than: std::time::Duration,
    },
}

pub fn store(args: &StoreArgs) -> anyhow::Result<()> {
    let url = args.database_url.as_deref().context("--database-url (or DFSERVE_DATABASE_URL) names the database")?;
    let db = Db::connect(url).context("connecting to --database-url")?;
    match &args.command {
        StoreCommand::Migrate => {
            db.migrate()?;
            eprintln!("dfserve store: the schema is at version {SCHEMA_VERSION}");
        }
        StoreCommand::Copy { data_dir } => {
            anyhow::ensure!(
                crate::datastore::exists(data_dir),
                "{} holds no dfserve database: name a server's --data-dir",
                data_dir.display()
            );
            let local = crate::datastore::DataStore::open(data_dir)?;
            let lists = HashLists::from_db(local.clone(), Default::default())?;
            let pg = crate::hashlists::pg::PgStore::new(db.clone());
            for summary in lists.summaries() {
                let entries = lists.export(&summary.name)?.unwrap_or_default();
                let n = entries.len();
                let (mut added, mut replaced) = (0usize, 0usize);
                pg.put_all(&summary.name, entries.into_iter().map(Ok::<_, ListError>), |_, old| {
                    if old.is_some() {
                        replaced += 1;
                    } else {
                        added += 1;
                    }
                    Ok(())
                })?;
                eprintln!("dfserve store: '{}': {n} entries copied ({added} new, {replaced} replaced)", summary.name);
            }
            let from = Decisions::from_db(local, u64::MAX)?;
            let n = from.copy_into(&Decisions::from_postgres(db, u64::MAX))?;
            eprintln!("dfserve store: {n} decisions copied");
        }
        StoreCommand::Prune { older_than } => {
            let (rows, horizon) = crate::hashlists::pg::PgStore::new(db).prune(*older_than)?;
            eprintln!("dfserve store: {rows} change-log rows pruned; the log now starts after {horizon}");
        }
    }
    Ok(())
}
