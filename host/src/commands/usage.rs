//! `ember usage`: the usage report of the ledger's records (see [`crate::metering::usage`]), or
//! with `--remote URL` of a deployment's prediction records (on Spin: wall and inference time,
//! no price — fuel is counted by Ember's host only).

use ember_contract::manage::{RecordQuery, MAX_RECORDS};

use crate::metering::ledger::{self, LedgerArg};
use crate::metering::UsageRecord;
use crate::remote::RemoteArg;

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
    /// A deployment to report on instead.
    #[command(flatten)]
    pub remote: RemoteArg,
}

/// Runs `ember usage`.
pub fn run(args: UsageArgs) -> anyhow::Result<()> {
    let since = args.since.as_deref().map(parse_time).transpose()?;
    let until = args.until.as_deref().map(parse_time).transpose()?;
    let records = match args.remote.connect()? {
        Some(remote) => {
            let records = remote.records(&RecordQuery {
                since_us: since,
                until_us: until,
                ..Default::default()
            })?;
            if records.len() >= MAX_RECORDS {
                eprintln!(
                    "note: the deployment answers at most {MAX_RECORDS} records per call; \
                     this report covers the latest {MAX_RECORDS} (narrow it with --since/--until)"
                );
            }
            records.iter().map(UsageRecord::from_record).collect()
        }
        // An open end of the window is the whole ledger on that side.
        None => ledger::read(
            &args.ledger.open_current()?,
            since.unwrap_or(i64::MIN),
            until.unwrap_or(i64::MAX),
        )?,
    };
    print!("{}", render(&summarize(&records, args.by), args.format)?);
    Ok(())
}
