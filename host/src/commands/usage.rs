//! `ember usage`: the usage report of the ledger's records (see [`crate::metering::usage`]).

use crate::metering::ledger::{self, LedgerArg};

use crate::metering::usage::{parse_time, render, summarize, Format, GroupBy};

/// Options of `ember usage`.
#[derive(clap::Args, Debug, Clone)]
pub struct UsageArgs {
    /// The usage ledger.
    #[command(flatten)]
    pub ledger: LedgerArg,
    /// Start: RFC 3339 time, or a duration ago such as `15m`.
    #[arg(long)]
    pub since: Option<String>,
    /// End (exclusive): RFC 3339 time, or a duration ago.
    #[arg(long)]
    pub until: Option<String>,
    /// How to group invocations.
    #[arg(long, value_enum, default_value_t = GroupBy::Model)]
    pub by: GroupBy,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
}

/// Runs `ember usage`.
pub fn run(args: UsageArgs) -> anyhow::Result<()> {
    let conn = args.ledger.open_current()?;
    // An open end of the window is the whole ledger on that side.
    let bound = |time: &Option<String>, open: i64| -> anyhow::Result<i64> {
        Ok(time.as_deref().map(parse_time).transpose()?.unwrap_or(open))
    };
    let since = bound(&args.since, i64::MIN)?;
    let until = bound(&args.until, i64::MAX)?;
    let records = ledger::read(&conn, since, until)?;
    print!("{}", render(&summarize(&records, args.by), args.format)?);
    Ok(())
}
