//! `ember keys`: create, list, revoke and rotate API keys in the ledger (see [`crate::tenants`]).
//! A serving `ember up --auth keys` applies every change on its next request.

use clap::Subcommand;

use crate::metering::ledger::LedgerArg;
use crate::metering::meter::Arrival;
use crate::tenants::limits::{month_start_us, parse_budget, parse_rate, Limits};
use crate::tenants::store;

/// Options of `ember keys`.
#[derive(clap::Args, Debug, Clone)]
pub struct KeysArgs {
    /// The usage ledger, which holds the keys.
    #[command(flatten)]
    pub ledger: LedgerArg,
    #[command(subcommand)]
    action: Action,
}

#[derive(Subcommand, Debug, Clone)]
enum Action {
    /// Create a key and print it (once: only its hash is stored).
    Create {
        /// The key's name: usage, audit and metrics carry it.
        #[arg(long)]
        name: String,
        /// Models it may call, comma-separated (default: all).
        #[arg(long, value_delimiter = ',')]
        models: Option<Vec<String>>,
        /// Sustained request rate: `R`, `R/s`, `R/m` or `R/h`.
        #[arg(long, value_parser = parse_rate)]
        rate: Option<f64>,
        /// Requests at once above the rate (default: a second's worth).
        #[arg(long, requires = "rate")]
        burst: Option<u32>,
        /// Spend per calendar month (UTC) in the price table's currency: `25` or `25/month`.
        #[arg(long, value_parser = parse_budget)]
        budget: Option<f64>,
    },
    /// List the keys: name, prefix, scope, limits, this month's spend, status.
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a key: refused from the next request on.
    Revoke {
        /// The key's name.
        name: String,
    },
    /// Replace a key's secret (same name, scope and limits) and print the new one.
    Rotate {
        /// The key's name.
        name: String,
    },
}

/// Runs `ember keys`.
pub fn run(args: KeysArgs) -> anyhow::Result<()> {
    let conn = store::open(&args.ledger.path)?;
    match args.action {
        Action::Create {
            name,
            models,
            rate,
            burst,
            budget,
        } => {
            anyhow::ensure!(
                !name.is_empty()
                    && name
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)),
                "a key's name is letters, digits, '-', '_' and '.' (it labels metrics)"
            );
            let limits = Limits {
                rate,
                burst,
                budget,
            };
            let key = store::create(&conn, &name, models.as_deref(), &limits)?;
            eprintln!("created key '{name}'; it is shown once, store it now:");
            println!("{}", key.secret);
        }
        Action::Rotate { name } => {
            let key = store::rotate(&conn, &name)?;
            eprintln!("rotated key '{name}'; the old secret no longer works. The new one:");
            println!("{}", key.secret);
        }
        Action::Revoke { name } => {
            store::revoke(&conn, &name)?;
            println!("revoked key '{name}'");
        }
        Action::List { json } => {
            let month = month_start_us(Arrival::now_us());
            let mut rows = Vec::new();
            for key in store::list(&conn)? {
                let spent = store::spent_since(&conn, &key.name, month)?;
                rows.push((key, spent));
            }
            if json {
                let listed: Vec<_> = rows
                    .iter()
                    .map(|(key, spent)| {
                        let mut value = serde_json::to_value(key).unwrap_or_default();
                        value["spent_this_month"] = serde_json::json!(spent);
                        value
                    })
                    .collect();
                println!("{}", serde_json::to_string_pretty(&listed)?);
            } else {
                print!("{}", table(&rows));
            }
        }
    }
    Ok(())
}

fn table(rows: &[(store::KeyRecord, f64)]) -> String {
    let or_dash = |v: Option<String>| v.unwrap_or_else(|| "-".into());
    let mut table = comfy_table::Table::new();
    table
        .load_preset(comfy_table::presets::NOTHING)
        .set_header([
            "name", "prefix", "models", "rate/s", "burst", "budget", "spent", "status",
        ]);
    for (key, spent) in rows {
        table.add_row([
            key.name.clone(),
            format!("{}…", key.prefix),
            key.models.as_ref().map_or("all".into(), |m| m.join(",")),
            or_dash(key.limits.rate.map(|r| format!("{r}"))),
            or_dash(key.limits.burst.map(|b| b.to_string())),
            or_dash(key.limits.budget.map(|b| format!("{b}"))),
            format!("{spent:.6}"),
            if key.revoked_at_us.is_some() {
                "revoked".into()
            } else {
                "live".into()
            },
        ]);
    }
    format!("{table}\n")
}
