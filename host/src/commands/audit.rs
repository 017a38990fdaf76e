//! `ember audit <invocation-id>`: the decision an invocation made, traceable to its model
//! version, input digest and output, with its usage record — from the durable ledger, or with
//! `--remote URL` from a deployment's records (Ember's host or the Spin build's SQLite).

use anyhow::Context as _;

use crate::metering::ledger::{self, LedgerArg};
use crate::remote::RemoteArg;

/// Options of `ember audit`.
#[derive(clap::Args, Debug, Clone)]
pub struct AuditArgs {
    /// The invocation id (the `ember-invocation-id` reply header).
    pub id: String,
    /// The usage ledger.
    #[command(flatten)]
    pub ledger: LedgerArg,
    /// A deployment to read the record from instead.
    #[command(flatten)]
    pub remote: RemoteArg,
}

/// Prints the invocation as JSON.
pub fn run(args: AuditArgs) -> anyhow::Result<()> {
    if let Some(remote) = args.remote.connect()? {
        println!(
            "{}",
            serde_json::to_string_pretty(&remote.record(&args.id)?)?
        );
        return Ok(());
    }
    let conn = args.ledger.open_current()?;
    let record = ledger::read_one(&conn, &args.id)?.with_context(|| {
        format!(
            "no invocation {} in {}",
            args.id,
            args.ledger.path.display()
        )
    })?;
    println!("{}", serde_json::to_string_pretty(&record)?);
    Ok(())
}
