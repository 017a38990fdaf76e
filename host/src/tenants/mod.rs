//! Tenants: who may call the function, and how much. API keys live in the ledger's SQLite as
//! hashes ([`store`]); a serving process keeps the live ones in a [`keyring`] that follows every
//! change on the next request; each key may carry a model scope, a request rate and a monthly
//! budget ([`limits`]); the [`gate`] applies all of it, and the host's concurrency cap, to each
//! request before the function runs. Keys are made and matched as [`secret`]s.

pub mod gate;
pub mod keyring;
pub mod limits;
pub mod secret;
pub mod store;

use std::path::Path;

use serde::Deserialize;

use self::gate::Gate;
use self::keyring::KeyRing;

/// Who may call the function's routes.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    /// Anyone who can reach the port (the local default).
    None,
    /// Only requests with a live API key (`ember keys create`).
    Keys,
}

/// Tenancy options of `ember up`.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct TenantArgs {
    /// Who may call the function: `none` (anyone who can reach the port) or `keys` (an API key
    /// from `ember keys create`). Default: the manifest's `auth` in `[component.<id>.tool.ember]`,
    /// else `none`.
    #[arg(long, value_enum)]
    pub auth: Option<AuthMode>,
    /// The token `/-/metrics`, `/-/api/…` and `/-/audit/…` (the operator page's data) need as
    /// `Authorization: Bearer <token>`. `/-/health` stays open.
    #[arg(long, env = "EMBER_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// Function requests running at once; past it, 503 with `Retry-After` at once instead of a
    /// queue (default: no cap beyond `--max-instances`' wait).
    #[arg(long)]
    pub max_concurrency: Option<u64>,
}

impl TenantArgs {
    /// The gate for a host whose ledger is at `ledger` (already opened and migrated by the
    /// meter, when `metered`), with `manifest_auth` as the default mode.
    pub fn gate(
        &self,
        ledger: &Path,
        metered: bool,
        manifest_auth: Option<AuthMode>,
    ) -> anyhow::Result<Gate> {
        let mode = self.auth.or(manifest_auth).unwrap_or(AuthMode::None);
        let keys = match mode {
            AuthMode::None => {
                tracing::info!("auth: none — any caller that reaches the port may call every model (--auth keys requires API keys)");
                None
            }
            AuthMode::Keys => {
                anyhow::ensure!(
                    metered,
                    "--auth keys needs metering: budgets and per-key usage are read from the ledger"
                );
                let ring = KeyRing::open(ledger)?;
                tracing::info!(
                    live_keys = ring.live(),
                    ledger = %ledger.display(),
                    "auth: keys — every function route needs a live API key"
                );
                if ring.live() == 0 {
                    tracing::warn!(
                        "no live API keys yet: every request is refused until `ember keys create`"
                    );
                }
                Some(ring)
            }
        };
        if keys.is_some() && self.admin_token.is_none() {
            tracing::warn!("no admin token: /-/metrics and the operator page's data are refused (--admin-token or EMBER_ADMIN_TOKEN)");
        }
        Ok(Gate::new(
            keys,
            self.admin_token.as_deref(),
            self.max_concurrency,
        ))
    }
}
