//! The Spin build's operations half (feature `spin`), through spin-sdk: a model's routing lives in
//! Spin's key-value store (key `routing/<model>`, read on every request, so `ember models promote
//! --remote` applies to the next request of a deployed app), each answered prediction's
//! [`Record`] goes into Spin's SQLite database `default`, and the management API
//! ([`crate::manage`]) is served under [`ember_contract::manage::PREFIX`], authenticated by the Spin variable
//! [`ADMIN_TOKEN_VARIABLE`].
//!
//! A host without a store (pre-initialization, or a manifest that grants none) leaves the packaged
//! `routing.json` in charge and records nothing; predictions never fail for it.

use sha2::Digest as _;
use spin_sdk::key_value::Store;
use spin_sdk::sqlite::{Connection, QueryResult, Value};

use crate::manage::{DeploymentState, ManageRequest};
use crate::routing::Routing;
use ember_contract::manage::{Record, RecordQuery, ADMIN_TOKEN_VARIABLE};
use ember_contract::{ApiError, Code, Telemetry};

/// The key-value key of a model's routing.
fn routing_key(model: &str) -> String {
    format!("routing/{model}")
}

/// The routing stored for `model`, if a store is granted and holds one.
pub fn stored_routing(model: &str) -> Option<Routing> {
    let bytes = Store::open_default()
        .ok()?
        .get(&routing_key(model))
        .ok()??;
    serde_json::from_slice(&bytes).ok()
}

/// Answers a management call with this deployment's state.
pub fn manage(
    catalog: &impl crate::catalog::Catalog,
    request: &ManageRequest,
) -> crate::app::Response {
    let token = spin_sdk::variables::get(ADMIN_TOKEN_VARIABLE).ok();
    crate::manage::handle(catalog, &SpinState { catalog }, token.as_deref(), request)
}

/// Files an answered prediction's record; a failure is logged, never the request's.
fn file(record: &Record) {
    if let Err(error) = insert(record) {
        eprintln!("ember: the prediction record could not be stored: {error}");
    }
}

/// Spin's key-value store and SQLite, as a [`DeploymentState`], over the catalog that reads them.
struct SpinState<'a, C> {
    catalog: &'a C,
}

fn unavailable(what: &str, error: impl std::fmt::Debug) -> ApiError {
    eprintln!("ember: {what}: {error:?}");
    ApiError::new(
        Code::StateUnavailable,
        format!("the deployment's {what} could not be used; check its spin.toml grants it"),
    )
}

impl<C: crate::catalog::Catalog> DeploymentState for SpinState<'_, C> {
    fn set_routing(
        &self,
        model: &str,
        routing: &Routing,
        expected: Option<&str>,
    ) -> Result<(), ApiError> {
        // Spin's key-value store has no compare-and-swap: the check narrows the race to the
        // moment between this read and the write.
        crate::manage::check_revision(&self.catalog.routing(model), expected)?;
        let store = Store::open_default().map_err(|e| unavailable("key-value store", e))?;
        let json = serde_json::to_vec(routing).unwrap_or_default();
        store
            .set(&routing_key(model), &json)
            .map_err(|e| unavailable("key-value store", e))
    }

    fn records(&self, query: &RecordQuery) -> Result<Vec<Record>, ApiError> {
        let mut clauses = Vec::new();
        let mut params = Vec::new();
        for (clause, value) in [
            ("model = ?", query.model.clone().map(Value::Text)),
            ("version = ?", query.version.clone().map(Value::Text)),
            ("started_at_us >= ?", query.since_us.map(Value::Integer)),
            ("started_at_us < ?", query.until_us.map(Value::Integer)),
        ] {
            if let Some(value) = value {
                clauses.push(clause);
                params.push(value);
            }
        }
        let filter = if clauses.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", clauses.join(" AND "))
        };
        params.push(Value::Integer(
            query.limit.unwrap_or(ember_contract::manage::MAX_RECORDS) as i64,
        ));
        let sql = format!(
            "SELECT {COLUMNS} FROM ember_records {filter} ORDER BY started_at_us DESC LIMIT ?"
        );
        let mut records = select(&sql, &params)?;
        records.reverse();
        Ok(records)
    }

    fn record(&self, id: &str) -> Result<Option<Record>, ApiError> {
        let sql = format!("SELECT {COLUMNS} FROM ember_records WHERE id = ?");
        Ok(select(&sql, &[Value::Text(id.to_string())])?.pop())
    }
}

/// The record table; made on the first insert that finds it missing.
const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS ember_records (
    id            TEXT PRIMARY KEY,
    started_at_us INTEGER NOT NULL,
    model         TEXT NOT NULL,
    version       TEXT NOT NULL,
    route         TEXT NOT NULL,
    status        INTEGER NOT NULL,
    wall_us       INTEGER NOT NULL,
    infer_us      INTEGER NOT NULL,
    input_sha256  TEXT NOT NULL,
    telemetry     TEXT NOT NULL,
    output        TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS ember_records_by_model ON ember_records (model, version, started_at_us);
CREATE INDEX IF NOT EXISTS ember_records_by_time ON ember_records (started_at_us)";

const COLUMNS: &str =
    "id, started_at_us, model, version, route, status, wall_us, infer_us, input_sha256, telemetry, output";

fn insert(record: &Record) -> Result<(), spin_sdk::sqlite::Error> {
    let connection = Connection::open_default()?;
    let sql = format!(
        "INSERT OR IGNORE INTO ember_records ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    );
    let params = [
        Value::Text(record.id.clone()),
        Value::Integer(record.started_at_us),
        Value::Text(record.model.clone()),
        Value::Text(record.version.clone()),
        Value::Text(record.route.clone()),
        Value::Integer(record.status.into()),
        Value::Integer(record.wall_us as i64),
        Value::Integer(record.infer_us as i64),
        Value::Text(record.input_sha256.clone()),
        Value::Text(serde_json::to_string(&record.telemetry).unwrap_or_default()),
        Value::Text(record.output.clone()),
    ];
    // The usual case is one statement; the table is made once per database, when missing.
    if connection.execute(&sql, &params).is_err() {
        for statement in SCHEMA.split(';') {
            connection.execute(statement, &[])?;
        }
        connection.execute(&sql, &params)?;
    }
    Ok(())
}

fn select(sql: &str, params: &[Value]) -> Result<Vec<Record>, ApiError> {
    let connection = Connection::open_default().map_err(|e| unavailable("SQLite database", e))?;
    let result: QueryResult = match connection.execute(sql, params) {
        Ok(result) => result,
        // No record filed yet: no table yet.
        Err(spin_sdk::sqlite::Error::Io(message)) if message.contains("no such table") => {
            return Ok(Vec::new())
        }
        Err(error) => return Err(unavailable("SQLite database", error)),
    };
    Ok(result
        .rows
        .iter()
        .filter_map(|row| {
            let text = |i: usize| row.get::<&str>(i).map(str::to_string);
            let int = |i: usize| row.get::<i64>(i);
            Some(Record {
                id: text(0)?,
                started_at_us: int(1)?,
                model: text(2)?,
                version: text(3)?,
                route: text(4)?,
                status: int(5)? as u16,
                wall_us: int(6)? as u64,
                infer_us: int(7)? as u64,
                input_sha256: text(8)?,
                telemetry: serde_json::from_str::<Telemetry>(&text(9)?).ok()?,
                output: text(10)?,
                cost: None,
            })
        })
        .collect())
}

/// When a request arrived, for its record.
pub struct Arrival {
    started: std::time::Instant,
    started_at_us: i64,
}

impl Arrival {
    /// Now.
    pub fn now() -> Self {
        let since_epoch = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        Self {
            started: std::time::Instant::now(),
            started_at_us: since_epoch.as_micros() as i64,
        }
    }

    /// Files the record of an answered prediction (a reply with telemetry) under the host's
    /// invocation id (`hinted`) or a new one; returns the headers that tell the client the new one.
    pub fn record(
        self,
        hinted: Option<String>,
        route: &str,
        body: &[u8],
        response: &crate::app::Response,
    ) -> Vec<(&'static str, String)> {
        let infer_us = super::embedded::take_inference_us();
        let (Some(telemetry), Some(answered)) = (&response.telemetry, &response.model) else {
            return Vec::new();
        };
        let told = hinted.is_none();
        let id = hinted.unwrap_or_else(|| new_id(self.started_at_us));
        file(&Record {
            id: id.clone(),
            started_at_us: self.started_at_us,
            model: answered.model.clone(),
            version: answered.version.clone(),
            route: route.split('?').next().unwrap_or_default().to_string(),
            status: response.status,
            wall_us: self.started.elapsed().as_micros() as u64,
            infer_us,
            input_sha256: format!("{:x}", sha2::Sha256::digest(body)),
            telemetry: telemetry.clone(),
            output: serde_json::to_string(&response.body).unwrap_or_default(),
            cost: None,
        });
        if told {
            vec![(ember_contract::headers::INVOCATION_ID, id)]
        } else {
            Vec::new()
        }
    }
}

/// A UUIDv7 (time-ordered, as Ember's host makes them) from the arrival time and WASI's random.
fn new_id(started_at_us: i64) -> String {
    let random = wasip2::random::random::get_random_bytes(10);
    let mut bytes = [0u8; 10];
    bytes.copy_from_slice(&random[..10]);
    uuid::Builder::from_unix_timestamp_millis((started_at_us / 1000) as u64, &bytes)
        .into_uuid()
        .to_string()
}
