//! `ember audit <invocation-id>`: the decision an invocation made, traceable to its model
//! version, input digest and output, with its usage record — from the durable ledger.

use std::path::PathBuf;

use anyhow::Context as _;
use rusqlite::OpenFlags;

use crate::metering::ledger;

/// Options of `ember audit`.
#[derive(clap::Args, Debug, Clone)]
pub struct AuditArgs {
    /// The invocation id (the `ember-invocation-id` reply header).
    pub id: String,
    /// The ledger database.
    #[arg(long, default_value = ".ember/usage.db")]
    pub ledger: PathBuf,
}

/// Prints the invocation as JSON.
pub fn run(args: AuditArgs) -> anyhow::Result<()> {
    let conn = ledger::open(&args.ledger, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    let record = ledger::read_one(&conn, &args.id)?
        .with_context(|| format!("no invocation {} in {}", args.id, args.ledger.display()))?;
    println!("{}", serde_json::to_string_pretty(&record)?);
    Ok(())
}
