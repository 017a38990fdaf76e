//! The management API ([`ember_contract::manage`]) over a deployment's state: one implementation
//! for every host. The Spin build serves it from Spin's key-value store and SQLite; Ember's host
//! serves it from its routing files and ledger. Each supplies a [`DeploymentState`]; this module
//! authenticates, parses, validates and answers.

use ember_contract::manage::{authorized, Endpoint, ModelState, Record, RecordQuery};
use ember_contract::{ApiError, Code};
use serde_json::json;

use crate::app::Response;
use crate::catalog::Catalog;
use crate::routing::Routing;

/// Where a deployment keeps what the management API changes and reads.
pub trait DeploymentState {
    /// Stores `model`'s routing, if its current revision is `expected` (when one is named; else
    /// 412 [`Code::StaleRevision`], see [`check_revision`]); the next request reads it.
    fn set_routing(
        &self,
        model: &str,
        routing: &Routing,
        expected: Option<&str>,
    ) -> Result<(), ApiError>;
    /// Records matching `query`, oldest first (the latest `limit` when it has one).
    fn records(&self, query: &RecordQuery) -> Result<Vec<Record>, ApiError>;
    /// One record by its invocation id.
    fn record(&self, id: &str) -> Result<Option<Record>, ApiError>;
}

/// A management call, as much of it as the API reads.
#[derive(Debug, Clone, Copy)]
pub struct ManageRequest<'a> {
    /// HTTP method, uppercase.
    pub method: &'a str,
    /// The path after [`ember_contract::manage::PREFIX`], with its query.
    pub path: &'a str,
    /// The `authorization` header.
    pub authorization: Option<&'a str>,
    /// The `if-match` header: the routing revision a `PUT` was made against.
    pub if_match: Option<&'a str>,
    /// The body (a routing policy for `PUT`).
    pub body: &'a [u8],
}

/// Answers a management call for a deployment whose admin token is `admin_token` (`None`: no
/// token configured, so every call is refused).
pub fn handle(
    catalog: &impl Catalog,
    state: &impl DeploymentState,
    admin_token: Option<&str>,
    request: &ManageRequest,
) -> Response {
    if let Err(refused) = authenticate(admin_token, request.authorization) {
        return Response::error(&refused, false);
    }
    let (path, query) = request.path.split_once('?').unwrap_or((request.path, ""));
    let Some(endpoint) = Endpoint::parse(path) else {
        return Response::error(
            &ApiError::new(Code::NoRoute, "no such management endpoint"),
            false,
        );
    };
    let allowed = endpoint.allow().split(", ").any(|m| m == request.method);
    if !allowed {
        return Response {
            allow: Some(endpoint.allow()),
            ..Response::error(
                &ApiError::new(
                    Code::MethodNotAllowed,
                    format!("use {} here", endpoint.allow()),
                ),
                false,
            )
        };
    }
    answer(catalog, state, endpoint, query, request)
        .unwrap_or_else(|error| Response::error(&error, false))
}

/// Admits the bearer of `admin_token` (`None` or empty: nobody, management is off); the refusal
/// says which it was.
pub fn authenticate(
    admin_token: Option<&str>,
    authorization: Option<&str>,
) -> Result<(), ApiError> {
    if authorized(admin_token, authorization) {
        return Ok(());
    }
    let message = if admin_token.is_some_and(|t| !t.is_empty()) {
        "send the deployment's admin token: Authorization: Bearer <admin_token>"
    } else {
        "management is off: the deployment has no admin_token set"
    };
    Err(ApiError::invalid(
        Code::Unauthenticated,
        "authorization",
        message,
    ))
}

fn answer(
    catalog: &impl Catalog,
    state: &impl DeploymentState,
    endpoint: Endpoint,
    query: &str,
    request: &ManageRequest,
) -> Result<Response, ApiError> {
    match endpoint {
        Endpoint::Models => {
            let models: Vec<ModelState> = catalog
                .models()
                .into_iter()
                .map(|m| ModelState {
                    routing: json!(catalog.routing(&m.name)),
                    name: m.name,
                    versions: m.versions,
                })
                .collect();
            Ok(Response::ok(json!(models)))
        }
        Endpoint::Routing(name) => {
            let versions = versions_of(catalog, name)?;
            if request.method == "PUT" {
                let routing: Routing = serde_json::from_slice(request.body).map_err(|e| {
                    ApiError::new(Code::InvalidRouting, format!("not a routing policy: {e}"))
                })?;
                validate(&routing, &versions)?;
                state.set_routing(name, &routing, request.if_match)?;
            }
            let routing = catalog.routing(name);
            Ok(Response {
                etag: Some(routing.revision()),
                ..Response::ok(json!(routing))
            })
        }
        Endpoint::Records => {
            let query = RecordQuery::parse(query).map_err(|(field, message)| {
                ApiError::invalid(Code::UnsupportedParameter, field, message)
            })?;
            Ok(Response::ok(json!(state.records(&query)?)))
        }
        Endpoint::Record(id) => match state.record(id)? {
            Some(record) => Ok(Response::ok(json!(record))),
            None => Err(ApiError::new(
                Code::UnknownInvocation,
                format!("no record of invocation '{id}'"),
            )),
        },
    }
}

/// Refuses a change made against another revision than `current`'s (412, "read it again");
/// no `expected` revision: any.
pub fn check_revision(current: &Routing, expected: Option<&str>) -> Result<(), ApiError> {
    match expected {
        Some(expected) if expected.trim() != current.revision() && expected.trim() != "*" => {
            Err(ApiError::invalid(
                Code::StaleRevision,
                "if-match",
                "the routing changed since it was read; read it again and redo the change",
            ))
        }
        _ => Ok(()),
    }
}

/// `name`'s published versions; 404 for a model the deployment lacks.
fn versions_of(catalog: &impl Catalog, name: &str) -> Result<Vec<String>, ApiError> {
    catalog
        .models()
        .into_iter()
        .find(|m| m.name == name)
        .map(|m| m.versions)
        .ok_or_else(|| {
            ApiError::invalid(
                Code::UnknownModel,
                "model",
                format!("no model named '{name}'"),
            )
        })
}

/// Refuses a policy that names a version the model lacks, or declares a default answer that is
/// not a JSON object; the error names the field.
pub fn validate(routing: &Routing, versions: &[String]) -> Result<(), ApiError> {
    let named = routing
        .aliases
        .iter()
        .map(|(alias, v)| (format!("aliases.{alias}"), v))
        .chain(
            routing
                .split
                .iter()
                .enumerate()
                .map(|(i, w)| (format!("split[{i}].version"), &w.version)),
        )
        .chain(
            routing
                .history
                .iter()
                .enumerate()
                .map(|(i, v)| (format!("history[{i}]"), v)),
        )
        .chain(routing.shadow.iter().map(|v| ("shadow".to_string(), v)))
        .chain(routing.fallback.iter().map(|v| ("fallback".to_string(), v)));
    for (field, version) in named {
        if !versions.contains(version) {
            return Err(ApiError::invalid(
                Code::InvalidRouting,
                field,
                format!(
                    "no version '{version}' (the model has {})",
                    versions.join(", ")
                ),
            ));
        }
    }
    if routing
        .default_answer
        .as_ref()
        .is_some_and(|a| !a.is_object())
    {
        return Err(ApiError::invalid(
            Code::InvalidRouting,
            "default_answer",
            "a default answer must be a JSON object",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routing::Weighted;

    #[test]
    fn a_policy_naming_a_missing_version_is_refused_by_field() {
        let versions = vec!["1".to_string(), "2".to_string()];
        let mut routing = Routing::default();
        routing.promote("2");
        assert_eq!(validate(&routing, &versions), Ok(()));
        routing.split = vec![Weighted {
            version: "3".into(),
            weight: 5,
        }];
        let error = validate(&routing, &versions).unwrap_err();
        assert_eq!(error.code, Code::InvalidRouting);
        assert_eq!(error.field.as_deref(), Some("split[0].version"));
        routing.split.clear();
        let revision = routing.revision();
        assert_eq!(check_revision(&routing, Some(&revision)), Ok(()));
        assert_eq!(check_revision(&routing, None), Ok(()));
        assert_eq!(
            check_revision(&routing, Some("\"0\"")).unwrap_err().code,
            Code::StaleRevision
        );
        routing.default_answer = Some(json!([1]));
        assert_ne!(routing.revision(), revision);
        assert_eq!(
            validate(&routing, &versions).unwrap_err().field.as_deref(),
            Some("default_answer")
        );
    }
}
