//! `ember feedback FILE`: records the true outcomes of past invocations from a CSV file
//! (`invocation_id,label`) or a JSON Lines file, as `POST /-/feedback` does — all or nothing,
//! never overwriting an outcome already recorded.

use std::path::PathBuf;

use ember_function::catalog::DirCatalog;

use crate::metering::ledger::LedgerArg;
use crate::metering::meter::Arrival;
use crate::nn::registry::DEFAULT_MODELS_DIR;
use crate::outcomes::feedback;

/// Options of `ember feedback`.
#[derive(clap::Args, Debug, Clone)]
pub struct FeedbackArgs {
    /// `*.csv` with the header `invocation_id,label`, or JSON Lines
    /// (`{"invocation_id": "…", "label": "…"}` per line); a label is a name or a class index.
    pub file: PathBuf,
    /// Models directory (for each model version's labels).
    #[arg(long, default_value = DEFAULT_MODELS_DIR)]
    pub models: PathBuf,
    /// The usage ledger.
    #[command(flatten)]
    pub ledger: LedgerArg,
}

/// Records the file's outcomes and says how many.
pub fn run(args: FeedbackArgs) -> anyhow::Result<()> {
    let items = feedback::from_file(&args.file)?;
    let mut conn = args.ledger.open_current()?;
    let catalog = DirCatalog::new(&args.models);
    let recorded =
        feedback::record(&mut conn, &catalog, &items, Arrival::now_us()).map_err(|e| {
            match &e.field {
                Some(field) => anyhow::anyhow!("{} ({}: {})", e.message, e.code, field),
                None => anyhow::anyhow!("{} ({})", e.message, e.code),
            }
        })?;
    println!("recorded {recorded} outcomes");
    Ok(())
}
