//! The gate every function request passes before it runs: its key (401), the key's models (403),
//! budget (402) and rate (429), and the host's concurrency cap (503). An admitted request loses
//! its credentials and is attributed to the key's name; a refused one gets a JSON error naming
//! the rule and, where waiting helps, `Retry-After`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use ember_contract::{headers, ApiError, Code, Route};
use hyper::header::{HeaderMap, HeaderName, HeaderValue, RETRY_AFTER, WWW_AUTHENTICATE};

use super::keyring::{KeyRing, Tenant};
use super::limits::Allowance;
use super::secret::{self, SecretDigest};
use crate::in_flight::InFlight;
use crate::metering::meter::Arrival;
use crate::runtime::error_response;
use crate::runtime::remove_private_headers;

/// Seconds a client is told to wait when the host is at its concurrency cap.
const OVERLOADED_RETRY_S: u64 = 1;

/// Who may call the function and how much runs at once.
pub struct Gate {
    /// The live keys; `None` when any caller is admitted (`--auth none`).
    keys: Option<KeyRing>,
    /// The digest of the admin token for the host's data endpoints, when one is set.
    admin: Option<SecretDigest>,
    /// Function requests allowed to run at once, and those running.
    cap: Option<(u64, AtomicU64)>,
}

/// A request let through: the tenant it is billed to, what is left of its rate, and its place
/// under the concurrency cap (released on drop).
pub struct Admission<'a> {
    tenant: Option<Arc<Tenant>>,
    allowance: Option<Allowance>,
    _running: Option<InFlight<'a>>,
}

/// A request turned away before it ran.
#[derive(Debug)]
pub struct Refused {
    /// What to tell the client.
    pub error: ApiError,
    /// The key's name, when a live key was presented.
    pub key: Option<String>,
    /// Headers that go with the error (`Retry-After`, rate limit fields, `WWW-Authenticate`).
    pub headers: Vec<(HeaderName, u64)>,
}

impl Refused {
    fn new(code: Code, message: impl Into<String>) -> Self {
        Self {
            error: ApiError::new(code, message),
            key: None,
            headers: Vec::new(),
        }
    }

    /// The error reply.
    pub fn response(&self) -> hyper::Response<bytes::Bytes> {
        let mut response = error_response(&self.error);
        let reply = response.headers_mut();
        for (name, value) in &self.headers {
            reply.insert(name.clone(), HeaderValue::from(*value));
        }
        if self.error.code == Code::Unauthenticated {
            reply.insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

impl Gate {
    /// A gate that admits with `keys` (or anyone), guards the host's data with `admin_token`
    /// (or not), and caps running function requests at `cap` (or not).
    pub fn new(keys: Option<KeyRing>, admin_token: Option<&str>, cap: Option<u64>) -> Self {
        Self {
            keys,
            admin: admin_token.map(SecretDigest::of),
            cap: cap.map(|cap| (cap, AtomicU64::new(0))),
        }
    }

    /// Whether function requests need an API key.
    pub fn requires_keys(&self) -> bool {
        self.keys.is_some()
    }

    /// Lets a function request for `route` through, or says why not. `default_model` is the one
    /// `POST /predict` serves. On admission the request's credentials are removed and its caller
    /// (for sticky splits and instance isolation) is scoped to the key's name.
    pub fn admit(
        &self,
        request: &mut HeaderMap,
        route: &str,
        default_model: &str,
    ) -> Result<Admission<'_>, Refused> {
        let tenant = match &self.keys {
            // Liveness and readiness are for load balancers and orchestrators, which hold no key.
            Some(_) if is_probe(route) => None,
            None => None,
            Some(keys) => Some(self.tenant(keys, request, route, default_model)?),
        };
        secret::strip(request);
        remove_private_headers(request);
        if let Some(tenant) = &tenant {
            scope_caller(request, tenant.name());
            if let Some(models) = tenant.models() {
                // Where the body names the model (`/v1/embeddings`), the function enforces it.
                if let Ok(value) = HeaderValue::from_str(&models.join(",")) {
                    request.insert(headers::ALLOWED_MODELS, value);
                }
            }
        }
        let allowance = match tenant.as_ref().and_then(|t| t.rate().map(|r| (t, r))) {
            None => None,
            Some((tenant, rate)) => Some(rate.check().map_err(|over| Refused {
                error: ApiError::new(
                    Code::RateLimited,
                    format!(
                        "key '{}' is over its rate limit of {} requests at once; retry after {} s",
                        tenant.name(),
                        over.limit,
                        over.retry_after_s
                    ),
                ),
                key: Some(tenant.name().to_string()),
                headers: vec![
                    (RETRY_AFTER, over.retry_after_s),
                    (
                        HeaderName::from_static(headers::RATELIMIT_LIMIT),
                        u64::from(over.limit),
                    ),
                    (HeaderName::from_static(headers::RATELIMIT_REMAINING), 0),
                    (
                        HeaderName::from_static(headers::RATELIMIT_RESET),
                        over.retry_after_s,
                    ),
                ],
            })?),
        };
        let running = match &self.cap {
            None => None,
            Some((cap, running)) => {
                let entered = InFlight::enter(running);
                if running.load(Ordering::Acquire) > *cap {
                    let mut refused = Refused::new(
                        Code::Overloaded,
                        format!("the host runs at most {cap} requests at once; retry"),
                    );
                    refused.key = tenant.as_ref().map(|t| t.name().to_string());
                    refused.headers.push((RETRY_AFTER, OVERLOADED_RETRY_S));
                    return Err(refused);
                }
                Some(entered)
            }
        };
        Ok(Admission {
            tenant,
            allowance,
            _running: running,
        })
    }

    /// The tenant of the request's key, if the key is live, may use the route's model and has
    /// budget left.
    fn tenant(
        &self,
        keys: &KeyRing,
        request: &HeaderMap,
        route: &str,
        default_model: &str,
    ) -> Result<Arc<Tenant>, Refused> {
        let Some(presented) = secret::presented(request) else {
            let mut refused = Refused::new(
                Code::Unauthenticated,
                "this endpoint needs an API key: send 'Authorization: Bearer <key>' or 'x-api-key: <key>'",
            );
            refused.error.field = Some("authorization".into());
            return Err(refused);
        };
        // Unknown, revoked and mistyped keys take the same path and get the same answer.
        let Some(tenant) = keys.find(presented) else {
            let mut refused = Refused::new(
                Code::Unauthenticated,
                "the API key is not valid (unknown, rotated or revoked)",
            );
            refused.error.field = Some("authorization".into());
            return Err(refused);
        };
        let refuse = |code, message: String| Refused {
            error: ApiError::new(code, message),
            key: Some(tenant.name().to_string()),
            headers: Vec::new(),
        };
        if let Some(model) = model_of(route, default_model) {
            if !tenant.may_use(model) {
                let allowed = tenant.models().unwrap_or_default().join(", ");
                return Err(refuse(
                    Code::Forbidden,
                    format!(
                        "key '{}' may not use model '{model}' (it may use: {allowed})",
                        tenant.name()
                    ),
                ));
            }
        }
        if let Some(budget) = tenant.budget() {
            let spent = tenant.spend().current(Arrival::now_us());
            if spent >= budget {
                return Err(refuse(
                    Code::BudgetExhausted,
                    format!(
                        "key '{}' has spent its budget of {budget} for this month ({spent:.6} billed)",
                        tenant.name()
                    ),
                ));
            }
        }
        Ok(tenant)
    }

    /// Lets a request to the host's data endpoints (`/-/metrics`, `/-/api/…`, `/-/audit/…`)
    /// through: with the admin token when one is set; without one, only when no keys are
    /// required (a host that needs keys never shows its data to anyone without a token).
    pub fn admit_admin(&self, request: &HeaderMap) -> Result<(), Refused> {
        let refused = |message: &str| {
            let mut refused = Refused::new(Code::Unauthenticated, message);
            refused.error.field = Some("authorization".into());
            Err(refused)
        };
        match (&self.admin, secret::presented(request)) {
            (None, _) if self.keys.is_none() => Ok(()),
            (None, _) => refused("the host's data needs the admin token, and none is set (ember up --admin-token or EMBER_ADMIN_TOKEN)"),
            (Some(admin), Some(presented)) if admin.matches(&SecretDigest::of(presented)) => {
                Ok(())
            }
            (Some(_), Some(_)) => refused("the admin token is not valid"),
            (Some(_), None) => refused(
                "the host's data needs the admin token: send 'Authorization: Bearer <token>'",
            ),
        }
    }
}

impl Admission<'_> {
    /// The name of the key the request is billed to.
    pub fn key(&self) -> Option<&str> {
        self.tenant.as_ref().map(|t| t.name())
    }

    /// Counts the invocation's cost against the key's budget.
    pub fn charge(&self, cost: f64) {
        if let Some(tenant) = &self.tenant {
            tenant.spend().charge(Arrival::now_us(), cost);
        }
    }

    /// Adds the key's rate limit fields to the reply.
    pub fn annotate(&self, reply: &mut HeaderMap) {
        let Some(allowance) = self.allowance else {
            return;
        };
        for (name, value) in [
            (headers::RATELIMIT_LIMIT, u64::from(allowance.limit)),
            (headers::RATELIMIT_REMAINING, u64::from(allowance.remaining)),
            (headers::RATELIMIT_RESET, allowance.reset_s),
        ] {
            reply.insert(name, HeaderValue::from(value));
        }
    }
}

/// The model a function route names (`/predict`: the default one); `None` for routes about no
/// model (health, listings, the API description).
fn model_of<'a>(route: &'a str, default_model: &'a str) -> Option<&'a str> {
    match Route::parse(route)? {
        Route::Predict(None) => Some(default_model),
        Route::Predict(Some(target))
        | Route::V2Metadata(target)
        | Route::V2Ready(target)
        | Route::V2Infer(target) => Some(target.model),
        // `/v1/embeddings` names its model in the body: the function checks it against the
        // key's models (`ember-x-allowed-models`).
        Route::Health
        | Route::Models
        | Route::OpenApi
        | Route::V2Server
        | Route::V2Health
        | Route::Embeddings => None,
    }
}

/// Whether `route` is a health probe (`/health`, `/v2/health/live|ready`): open to all.
fn is_probe(route: &str) -> bool {
    matches!(Route::parse(route), Some(Route::Health | Route::V2Health))
}

/// Scopes the request's caller to the key: `ember-caller-key` becomes `<key>` when absent, else
/// `<key>:<caller>`, so no tenant can claim another's caller identity (or instances).
fn scope_caller(request: &mut HeaderMap, key: &str) {
    let caller = match request
        .get(headers::CALLER_KEY)
        .and_then(|v| v.to_str().ok())
    {
        Some(given) => format!("{key}:{given}"),
        None => key.to_string(),
    };
    if let Ok(value) = HeaderValue::from_str(&caller) {
        request.insert(headers::CALLER_KEY, value);
    }
}

#[cfg(test)]
mod tests {
    use super::super::limits::Limits;
    use super::super::store;
    use super::*;

    fn bearer(secret: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            hyper::header::AUTHORIZATION,
            HeaderValue::from_str(&format!("Bearer {secret}")).unwrap(),
        );
        headers
    }

    #[test]
    fn each_rule_refuses_with_its_code_and_admission_scopes_the_caller() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("usage.db");
        let admin = store::open(&path).unwrap();
        let digits_only = ["digits".to_string()];
        let key = store::create(
            &admin,
            "team-a",
            Some(&digits_only),
            &Limits {
                rate: Some(0.1),
                burst: Some(1),
                budget: None,
            },
        )
        .unwrap();
        let gate = Gate::new(Some(KeyRing::open(&path).unwrap()), Some("root"), Some(8));
        let code = |headers: &mut HeaderMap, route| {
            gate.admit(headers, route, "credit-risk")
                .err()
                .map(|r| r.error.code)
        };
        assert_eq!(
            code(&mut HeaderMap::new(), "/predict"),
            Some(Code::Unauthenticated)
        );
        assert_eq!(
            code(&mut bearer("ek_wrong"), "/predict"),
            Some(Code::Unauthenticated)
        );
        assert_eq!(
            code(&mut bearer(&key.secret), "/predict"),
            Some(Code::Forbidden)
        );
        assert_eq!(
            code(&mut bearer(&key.secret), "/v2/models/credit-risk/infer"),
            Some(Code::Forbidden)
        );
        let mut admitted = bearer(&key.secret);
        admitted.insert(headers::CALLER_KEY, HeaderValue::from_static("user-7"));
        let admission = gate
            .admit(&mut admitted, "/models/digits/predict", "credit-risk")
            .unwrap();
        assert_eq!(admission.key(), Some("team-a"));
        assert!(admitted.get(hyper::header::AUTHORIZATION).is_none());
        assert_eq!(admitted[headers::CALLER_KEY], "team-a:user-7");
        drop(admission);
        let over = gate
            .admit(
                &mut bearer(&key.secret),
                "/models/digits/predict",
                "credit-risk",
            )
            .err()
            .unwrap();
        assert_eq!(over.error.code, Code::RateLimited);
        assert!(over
            .headers
            .iter()
            .any(|(name, s)| name == RETRY_AFTER && *s >= 1));

        assert!(gate.admit_admin(&bearer("root")).is_ok());
        assert!(gate.admit_admin(&bearer(&key.secret)).is_err());
        assert!(gate.admit_admin(&HeaderMap::new()).is_err());
    }

    #[test]
    fn past_the_cap_requests_are_refused_at_once_and_admitted_again_once_one_ends() {
        let gate = Gate::new(None, None, Some(1));
        let first = gate.admit(&mut HeaderMap::new(), "/predict", "m").unwrap();
        let refused = gate
            .admit(&mut HeaderMap::new(), "/predict", "m")
            .err()
            .unwrap();
        assert_eq!(refused.error.code, Code::Overloaded);
        drop(first);
        assert!(gate.admit(&mut HeaderMap::new(), "/predict", "m").is_ok());
        assert!(
            gate.admit_admin(&HeaderMap::new()).is_ok(),
            "no keys, no token: open"
        );
    }
}
