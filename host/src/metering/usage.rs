//! `ember usage`: counts, error rate, cost totals and latency / inference-time percentiles from
//! the ledger, grouped by model, version, route, status or minute.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use rusqlite::OpenFlags;
use serde::Serialize;

use super::{ledger, UsageRecord};
use crate::stats::Samples;

/// Options of `ember usage`.
#[derive(clap::Args, Debug, Clone)]
pub struct UsageArgs {
    /// The ledger database.
    #[arg(long, default_value = ".ember/usage.db")]
    pub ledger: PathBuf,
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

/// Grouping key.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupBy {
    /// Model name.
    Model,
    /// Model and version.
    Version,
    /// Request path.
    Route,
    /// HTTP status.
    Status,
    /// Minute of arrival (UTC).
    Minute,
}

/// Output format.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Aligned columns.
    Table,
    /// Comma-separated values with a header.
    Csv,
    /// A JSON array.
    Json,
}

/// One group's totals.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Summary {
    /// The group's key.
    pub group: String,
    /// Invocations.
    pub count: u64,
    /// Invocations answered 400 or above.
    pub errors: u64,
    /// `errors / count`.
    pub error_rate: f64,
    /// Sum of costs.
    pub cost: f64,
    /// Wall time p50, µs.
    pub wall_p50_us: f64,
    /// Wall time p99, µs.
    pub wall_p99_us: f64,
    /// Inference time p50 over invocations that ran inference, µs.
    pub infer_p50_us: f64,
    /// Inference time p99, µs.
    pub infer_p99_us: f64,
}

/// Groups records and totals each group.
pub fn summarize(records: &[UsageRecord], by: GroupBy) -> Vec<Summary> {
    let mut groups: BTreeMap<String, Vec<&UsageRecord>> = BTreeMap::new();
    for record in records {
        groups
            .entry(group_key(record, by))
            .or_default()
            .push(record);
    }
    groups
        .into_iter()
        .map(|(group, members)| {
            let mut wall = Samples::default();
            let mut infer = Samples::default();
            for r in &members {
                wall.push_us(r.wall_us);
                if r.infer_calls > 0 {
                    infer.push_us(r.infer_us);
                }
            }
            let count = members.len() as u64;
            let errors = members.iter().filter(|r| !r.succeeded()).count() as u64;
            Summary {
                group,
                count,
                errors,
                error_rate: errors as f64 / count as f64,
                cost: members.iter().map(|r| r.cost).sum(),
                wall_p50_us: wall.p50_us(),
                wall_p99_us: wall.p99_us(),
                infer_p50_us: infer.p50_us(),
                infer_p99_us: infer.p99_us(),
            }
        })
        .collect()
}

fn group_key(record: &UsageRecord, by: GroupBy) -> String {
    let or_none = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
    match by {
        GroupBy::Model => or_none(&record.model),
        GroupBy::Version => format!(
            "{}/{}",
            or_none(&record.model),
            or_none(&record.model_version)
        ),
        GroupBy::Route => format!("{} {}", record.method, record.route),
        GroupBy::Status => record.status.to_string(),
        GroupBy::Minute => {
            let minute =
                UNIX_EPOCH + Duration::from_secs((record.started_at_us / 60_000_000 * 60) as u64);
            humantime::format_rfc3339_seconds(minute).to_string()
        }
    }
}

/// Parses an RFC 3339 time or a duration ago into µs since the epoch.
pub fn parse_time(text: &str) -> anyhow::Result<i64> {
    let time = match humantime::parse_rfc3339_weak(text) {
        Ok(t) => t,
        Err(_) => {
            SystemTime::now()
                - humantime::parse_duration(text).with_context(|| {
                    format!("'{text}' is neither an RFC 3339 time nor a duration")
                })?
        }
    };
    Ok(time.duration_since(UNIX_EPOCH)?.as_micros() as i64)
}

/// Renders summaries in a format.
pub fn render(summaries: &[Summary], format: Format) -> String {
    match format {
        Format::Json => serde_json::to_string_pretty(summaries).unwrap_or_default(),
        Format::Csv => {
            let mut out = String::from(
                "group,count,errors,error_rate,cost,wall_p50_us,wall_p99_us,infer_p50_us,infer_p99_us\n",
            );
            for s in summaries {
                out += &format!(
                    "{},{},{},{:.6},{:.12},{:.1},{:.1},{:.1},{:.1}\n",
                    s.group,
                    s.count,
                    s.errors,
                    s.error_rate,
                    s.cost,
                    s.wall_p50_us,
                    s.wall_p99_us,
                    s.infer_p50_us,
                    s.infer_p99_us
                );
            }
            out
        }
        Format::Table => {
            let mut out = format!(
                "{:<28} {:>8} {:>7} {:>7} {:>16} {:>10} {:>10} {:>10} {:>10}\n",
                "group",
                "count",
                "errors",
                "err%",
                "cost",
                "wall p50",
                "wall p99",
                "infer p50",
                "infer p99"
            );
            for s in summaries {
                out += &format!(
                    "{:<28} {:>8} {:>7} {:>6.2}% {:>16.9} {:>10.1} {:>10.1} {:>10.1} {:>10.1}\n",
                    s.group,
                    s.count,
                    s.errors,
                    s.error_rate * 100.0,
                    s.cost,
                    s.wall_p50_us,
                    s.wall_p99_us,
                    s.infer_p50_us,
                    s.infer_p99_us
                );
            }
            out
        }
    }
}

/// Runs `ember usage`.
pub fn run(args: UsageArgs) -> anyhow::Result<()> {
    let conn = ledger::open(&args.ledger, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    let since = args
        .since
        .as_deref()
        .map(parse_time)
        .transpose()?
        .unwrap_or(i64::MIN);
    let until = args
        .until
        .as_deref()
        .map(parse_time)
        .transpose()?
        .unwrap_or(i64::MAX);
    let records = ledger::read(&conn, since, until)?;
    print!("{}", render(&summarize(&records, args.by), args.format));
    Ok(())
}
