//! The usage report `ember usage` prints: counts, error rate, cost totals and latency /
//! inference-time percentiles of ledger records, grouped by model, version, route, status, minute or API key.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use serde::Serialize;

use super::UsageRecord;
use crate::stats::Samples;

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
    /// Name of the API key billed (`-` when keys were not required).
    Key,
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
        GroupBy::Key => or_none(&record.key),
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

/// The columns of the table and CSV formats.
const COLUMNS: [&str; 9] = [
    "group",
    "count",
    "errors",
    "error_rate",
    "cost",
    "wall_p50_us",
    "wall_p99_us",
    "infer_p50_us",
    "infer_p99_us",
];

/// A group's cells in `COLUMNS` order; a percentile with no samples (a group that ran no
/// inference) is an empty cell, never `NaN`.
fn cells(s: &Summary) -> [String; 9] {
    let micros = |v: f64| {
        if v.is_finite() {
            format!("{v:.1}")
        } else {
            String::new()
        }
    };
    [
        s.group.clone(),
        s.count.to_string(),
        s.errors.to_string(),
        format!("{:.6}", s.error_rate),
        format!("{:.12}", s.cost),
        micros(s.wall_p50_us),
        micros(s.wall_p99_us),
        micros(s.infer_p50_us),
        micros(s.infer_p99_us),
    ]
}

/// Renders summaries in a format.
pub fn render(summaries: &[Summary], format: Format) -> anyhow::Result<String> {
    Ok(match format {
        Format::Json => serde_json::to_string_pretty(summaries)?,
        Format::Csv => {
            let mut out = csv::Writer::from_writer(Vec::new());
            out.write_record(COLUMNS)?;
            for s in summaries {
                out.write_record(cells(s))?;
            }
            String::from_utf8(out.into_inner()?)?
        }
        Format::Table => {
            let mut table = comfy_table::Table::new();
            table
                .load_preset(comfy_table::presets::NOTHING)
                .set_header(COLUMNS);
            for s in summaries {
                table.add_row(cells(s).map(|cell| if cell.is_empty() { "-".into() } else { cell }));
            }
            for column in 1..COLUMNS.len() {
                if let Some(column) = table.column_mut(column) {
                    column.set_cell_alignment(comfy_table::CellAlignment::Right);
                }
            }
            format!("{table}\n")
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(group: &str) -> Summary {
        Summary {
            group: group.into(),
            count: 2,
            errors: 1,
            error_rate: 0.5,
            cost: 0.000001,
            wall_p50_us: 250.0,
            wall_p99_us: 900.0,
            infer_p50_us: f64::NAN,
            infer_p99_us: f64::NAN,
        }
    }

    #[test]
    fn csv_quotes_a_route_with_a_comma_and_leaves_missing_percentiles_empty() {
        let out = render(&[summary("POST /a,b")], Format::Csv).unwrap();
        let mut lines = out.lines();
        assert_eq!(lines.next(), Some(COLUMNS.join(",").as_str()));
        assert_eq!(
            lines.next(),
            Some("\"POST /a,b\",2,1,0.500000,0.000001000000,250.0,900.0,,")
        );
    }

    #[test]
    fn table_shows_a_dash_where_there_is_no_value() {
        let out = render(&[summary("credit-risk")], Format::Table).unwrap();
        assert!(!out.contains("NaN"), "{out}");
        let row = out.lines().nth(1).unwrap();
        assert!(row.trim_end().ends_with('-'), "{row}");
        assert!(row.contains("credit-risk"), "{row}");
    }
}
