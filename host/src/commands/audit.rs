//! `ember audit <invocation-id>`: the decision an invocation made, traceable to its model
//! version, input digest and output, with its usage record — from the durable ledger.

use anyhow::Context as _;

use crate::metering::ledger::{self, LedgerArg};

/// Options of `ember audit`.
#[derive(clap::Args, Debug, Clone)]
pub struct AuditArgs {
    /// The invocation id (the `ember-invocation-id` reply header).
    pub id: String,
    /// The usage ledger.
    #[command(flatten)]
    pub ledger: LedgerArg,
}

/// Prints the invocation as JSON.
pub fn run(args: AuditArgs) -> anyhow::Result<()> {
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
