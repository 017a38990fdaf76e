//! The management API: how `ember models … --remote`, `ember audit --remote` and `ember usage
//! --remote` operate a deployment over HTTP. Whoever holds a deployment's state serves it under
//! [`PREFIX`]: Ember's host (routing files and its ledger), or the Spin build of the function
//! itself (Spin's key-value store and SQLite), so the same commands operate both.
//!
//! Every call carries `Authorization: Bearer <token>`; the token is the deployment's
//! [`ADMIN_TOKEN_VARIABLE`] (a secret Spin variable, `SPIN_VARIABLE_ADMIN_TOKEN` locally). Without
//! it, or with another one, the answer is 401.
//!
//! | method | path | body / answer |
//! |---|---|---|
//! | `GET` | `models` | `[`[`ModelState`]`]` |
//! | `GET` / `PUT` | `models/{name}/routing` | the model's routing policy (JSON) |
//! | `GET` | `records?model=&version=&since_us=&until_us=&limit=` | `[`[`Record`]`]`, oldest first |
//! | `GET` | `records/{id}` | [`Record`] |

use serde::{Deserialize, Serialize};

use crate::telemetry::Telemetry;

/// Where the management API lives on every host.
pub const PREFIX: &str = "/-/ember/";

/// The Spin variable (and manifest variable on Ember's host) holding the admin token.
pub const ADMIN_TOKEN_VARIABLE: &str = "admin_token";

/// The environment variable the CLI reads the admin token from.
pub const ADMIN_TOKEN_ENV: &str = "EMBER_ADMIN_TOKEN";

/// Most records one `records` call returns (the latest of those that match).
pub const MAX_RECORDS: usize = 10_000;

/// A management API call, parsed from the path after [`PREFIX`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint<'a> {
    /// `models`: every model with its versions and routing.
    Models,
    /// `models/{name}/routing`: one model's routing policy.
    Routing(&'a str),
    /// `records`: prediction records matching a [`RecordQuery`].
    Records,
    /// `records/{id}`: one prediction's record.
    Record(&'a str),
}

impl<'a> Endpoint<'a> {
    /// Parses the path after [`PREFIX`] (without its query); `None` for no endpoint.
    pub fn parse(rest: &'a str) -> Option<Self> {
        let segments: Vec<&str> = rest.split('/').collect();
        match segments[..] {
            ["models"] => Some(Self::Models),
            ["models", name, "routing"] if !name.is_empty() => Some(Self::Routing(name)),
            ["records"] => Some(Self::Records),
            ["records", id] if !id.is_empty() => Some(Self::Record(id)),
            _ => None,
        }
    }

    /// The methods this endpoint takes (for `Allow`).
    pub fn allow(&self) -> &'static str {
        match self {
            Self::Routing(_) => "GET, PUT",
            _ => "GET",
        }
    }

    /// The endpoint's path, [`PREFIX`] included.
    pub fn path(&self) -> String {
        match self {
            Self::Models => format!("{PREFIX}models"),
            Self::Routing(name) => format!("{PREFIX}models/{name}/routing"),
            Self::Records => format!("{PREFIX}records"),
            Self::Record(id) => format!("{PREFIX}records/{id}"),
        }
    }
}

/// Whether `authorization` (the request's header) presents `expected` as a bearer token (the
/// scheme in any case, as RFC 9110 has it). The comparison reads every byte of the longer token
/// whatever they hold, so its time tells nothing of where the tokens differ; no token configured
/// admits nobody.
pub fn authorized(expected: Option<&str>, authorization: Option<&str>) -> bool {
    let presented = authorization.and_then(|a| {
        let (scheme, token) = a.trim().split_once(' ')?;
        scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
    });
    let (Some(expected), Some(presented)) = (expected.filter(|t| !t.is_empty()), presented) else {
        return false;
    };
    let (expected, presented) = (expected.as_bytes(), presented.as_bytes());
    let longest = expected.len().max(presented.len());
    let differences = (0..longest).fold(expected.len() ^ presented.len(), |acc, i| {
        let a = expected.get(i).copied().unwrap_or(0);
        let b = presented.get(i).copied().unwrap_or(0);
        acc | usize::from(a ^ b)
    });
    std::hint::black_box(differences) == 0
}

/// A model as the management API lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelState {
    /// Model name.
    pub name: String,
    /// Published versions, ascending.
    pub versions: Vec<String>,
    /// Its routing policy as stored (JSON object).
    pub routing: serde_json::Value,
}

/// What one answered prediction leaves behind: who answered, from what, with what, in how long.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// The invocation id (the `ember-invocation-id` reply header).
    pub id: String,
    /// When the request arrived, µs since the Unix epoch.
    pub started_at_us: i64,
    /// The model that answered.
    pub model: String,
    /// Its version.
    pub version: String,
    /// The request path.
    pub route: String,
    /// The reply's HTTP status.
    pub status: u16,
    /// Time from request to reply, µs.
    pub wall_us: u64,
    /// Time spent in inference, µs.
    pub infer_us: u64,
    /// SHA-256 of the request body, hex.
    pub input_sha256: String,
    /// Features, prediction, shadow and fallback.
    #[serde(flatten)]
    pub telemetry: Telemetry,
    /// The reply body.
    pub output: String,
    /// The invocation's price where the host meters one (Ember's host); `None` on Spin.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost: Option<f64>,
}

/// Which records a `records` call asks for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecordQuery {
    /// Only this model.
    pub model: Option<String>,
    /// Only this version.
    pub version: Option<String>,
    /// Arrived at or after, µs since the epoch.
    pub since_us: Option<i64>,
    /// Arrived before, µs since the epoch.
    pub until_us: Option<i64>,
    /// At most this many, the latest (at most [`MAX_RECORDS`]).
    pub limit: Option<usize>,
}

impl RecordQuery {
    /// The query string (without `?`).
    pub fn to_query(&self) -> String {
        let mut pairs = Vec::new();
        if let Some(model) = &self.model {
            pairs.push(format!("model={model}"));
        }
        if let Some(version) = &self.version {
            pairs.push(format!("version={version}"));
        }
        if let Some(since) = self.since_us {
            pairs.push(format!("since_us={since}"));
        }
        if let Some(until) = self.until_us {
            pairs.push(format!("until_us={until}"));
        }
        if let Some(limit) = self.limit {
            pairs.push(format!("limit={limit}"));
        }
        pairs.join("&")
    }

    /// Parses a query string written by [`RecordQuery::to_query`]; the error names the field.
    pub fn parse(query: &str) -> Result<Self, (String, String)> {
        let mut parsed = Self::default();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let number = |what: &str| {
                value
                    .parse::<i64>()
                    .map_err(|_| (key.to_string(), format!("{key} must be {what}")))
            };
            match key {
                "model" => parsed.model = Some(value.to_string()),
                "version" => parsed.version = Some(value.to_string()),
                "since_us" => parsed.since_us = Some(number("an integer")?),
                "until_us" => parsed.until_us = Some(number("an integer")?),
                "limit" => {
                    let limit = number("a positive integer")?;
                    if limit < 1 {
                        return Err((key.into(), "limit must be a positive integer".into()));
                    }
                    parsed.limit = Some((limit as usize).min(MAX_RECORDS));
                }
                _ => return Err((key.to_string(), format!("unknown query parameter '{key}'"))),
            }
        }
        Ok(parsed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_parse_from_their_paths() {
        for endpoint in [
            Endpoint::Models,
            Endpoint::Routing("credit-risk"),
            Endpoint::Records,
            Endpoint::Record("0193"),
        ] {
            let path = endpoint.path();
            assert_eq!(Endpoint::parse(&path[PREFIX.len()..]), Some(endpoint));
        }
        for bad in ["", "models/", "models//routing", "records/a/b", "audit"] {
            assert_eq!(Endpoint::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn only_the_configured_token_is_authorized() {
        assert!(authorized(Some("s3cret"), Some("Bearer s3cret")));
        assert!(authorized(Some("s3cret"), Some("bearer  s3cret ")));
        assert!(!authorized(Some("s3cret"), Some("Bearer s3cre")));
        assert!(!authorized(Some("s3cret"), Some("Bearer s3cret2")));
        assert!(!authorized(Some("s3cret"), Some("s3cret")));
        assert!(!authorized(Some("s3cret"), None));
        assert!(!authorized(None, Some("Bearer ")));
        assert!(!authorized(Some(""), Some("Bearer ")));
    }

    #[test]
    fn record_queries_round_trip_and_name_a_bad_field() {
        let query = RecordQuery {
            model: Some("credit-risk".into()),
            version: Some("2".into()),
            since_us: Some(-5),
            until_us: Some(10),
            limit: Some(7),
        };
        assert_eq!(RecordQuery::parse(&query.to_query()), Ok(query));
        assert_eq!(RecordQuery::parse(""), Ok(RecordQuery::default()));
        assert_eq!(RecordQuery::parse("limit=0").unwrap_err().0, "limit");
        assert_eq!(RecordQuery::parse("since_us=x").unwrap_err().0, "since_us");
        assert_eq!(RecordQuery::parse("color=red").unwrap_err().0, "color");
    }
}
