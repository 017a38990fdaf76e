//! The management API on Ember's host ([`ember_contract::manage`], under `/-/ember/`). Whoever
//! holds the deployment's state answers it: the Spin build of the function (its routing and
//! records are in the Spin key-value store and SQLite this host provides), or, for the other
//! builds, this host, from the routing files and the ledger — through the function's own
//! implementation ([`ember_function::manage`]), so both answer alike.

use ember_contract::manage::{Record, RecordQuery};
use ember_contract::{ApiError, Code};
use ember_function::catalog::Catalog as _;
use ember_function::catalog::DirCatalog;
use ember_function::manage::{check_revision, DeploymentState};
use ember_function::routing::Routing;

use crate::metering::ledger::{self, Ledger};
use crate::metering::UsageRecord;

/// How `/-/ember/…` is answered on this host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Management {
    /// Who holds the deployment's state and answers.
    pub answered_by: StateOwner,
    /// The bearer admitted (`None` or empty: nobody). Checked by this host before anything
    /// runs, also when the function answers, so an unauthenticated call never starts an instance.
    pub admin_token: Option<String>,
}

/// Who holds a deployment's routing and records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateOwner {
    /// The function (the Spin build, in the Spin key-value store and SQLite this host provides):
    /// calls pass through to it, unmetered.
    Function,
    /// This host: the routing files and the ledger.
    Host,
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
    fn set_routing(
        &self,
        model: &str,
        routing: &Routing,
        expected: Option<&str>,
    ) -> Result<(), ApiError> {
        let unwritable = |error: anyhow::Error| {
            tracing::error!(error = format!("{error:#}"), "writing a routing policy");
            ApiError::new(
                Code::StateUnavailable,
                "the routing policy could not be written",
            )
        };
        // Checked and written under the policy's lock: no rollout step or local command slips in
        // between.
        let lock = crate::policy::lock(self.catalog, model).map_err(unwritable)?;
        check_revision(&self.catalog.routing(model), expected)?;
        lock.update(|r| *r = routing.clone()).map_err(unwritable)
    }

    fn records(&self, query: &RecordQuery) -> Result<Vec<Record>, ApiError> {
        let decided = ledger::decided(&self.connection()?, query).map_err(unreadable)?;
        Ok(decided.iter().filter_map(UsageRecord::to_record).collect())
    }

    fn record(&self, id: &str) -> Result<Option<Record>, ApiError> {
        let connection = self.connection()?;
        let record = ledger::read_one(&connection, id).map_err(unreadable)?;
        Ok(record.as_ref().and_then(UsageRecord::to_record))
    }
}
