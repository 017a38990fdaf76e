//! The management API on Ember's host ([`ember_contract::manage`], under `/-/ember/`). Whoever
//! holds the deployment's state answers it: the Spin build of the function (its routing and
//! records are in the Spin key-value store and SQLite this host provides), or, for the other
//! builds, this host, from the routing files and the ledger — through the function's own
//! implementation ([`ember_function::manage`]), so both answer alike.

use ember_contract::manage::{Record, RecordQuery, MAX_RECORDS};
use ember_contract::{ApiError, Code};
use ember_function::catalog::DirCatalog;
use ember_function::manage::DeploymentState;
use ember_function::routing::Routing;

use crate::metering::ledger::{self, Ledger};
use crate::metering::UsageRecord;

/// Who answers `/-/ember/…`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Management {
    /// The function (the Spin build): requests pass through to it unmetered.
    Function,
    /// This host, admitting the bearer of `admin_token` (the manifest's `admin_token` variable;
    /// `None` or empty: nobody).
    Host {
        /// The token.
        admin_token: Option<String>,
    },
}

/// A deployment's state on this host: the models directory's routing files and the ledger.
pub struct HostDeployment<'a> {
    /// The models directory.
    pub catalog: &'a DirCatalog,
    /// The ledger, when metering is on.
    pub ledger: Option<&'a Ledger>,
}

fn unreadable(error: impl std::fmt::Debug) -> ApiError {
    tracing::error!(error = ?error, "the management API could not read the ledger");
    ApiError::new(
        Code::StateUnavailable,
        "the ledger could not be read; retry",
    )
}

impl HostDeployment<'_> {
    fn connection(&self) -> Result<rusqlite::Connection, ApiError> {
        let ledger = self.ledger.ok_or_else(|| {
            ApiError::new(
                Code::StateUnavailable,
                "this host keeps no records (--no-metering)",
            )
        })?;
        // Replies sent a moment ago may still be on their way into SQLite.
        ledger.flush().map_err(unreadable)?;
        ledger::open_current(ledger.path()).map_err(unreadable)
    }
}

impl DeploymentState for HostDeployment<'_> {
    fn set_routing(&self, model: &str, routing: &Routing) -> Result<(), ApiError> {
        crate::policy::update(self.catalog, model, |r| *r = routing.clone()).map_err(|error| {
            tracing::error!(error = format!("{error:#}"), "writing a routing policy");
            ApiError::new(
                Code::StateUnavailable,
                "the routing policy could not be written",
            )
        })
    }

    fn records(&self, query: &RecordQuery) -> Result<Vec<Record>, ApiError> {
        let connection = self.connection()?;
        let all = ledger::read(
            &connection,
            query.since_us.unwrap_or(i64::MIN),
            query.until_us.unwrap_or(i64::MAX),
        )
        .map_err(unreadable)?;
        let mut records: Vec<Record> = all
            .iter()
            .filter_map(UsageRecord::to_record)
            .filter(|r| query.model.as_ref().is_none_or(|m| *m == r.model))
            .filter(|r| query.version.as_ref().is_none_or(|v| *v == r.version))
            .collect();
        let keep = query.limit.unwrap_or(MAX_RECORDS);
        records.drain(..records.len().saturating_sub(keep));
        Ok(records)
    }

    fn record(&self, id: &str) -> Result<Option<Record>, ApiError> {
        let connection = self.connection()?;
        let record = ledger::read_one(&connection, id).map_err(unreadable)?;
        Ok(record.as_ref().and_then(UsageRecord::to_record))
    }
}
