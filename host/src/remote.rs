//! A deployment operated over HTTP: the client side of the management API
//! ([`ember_contract::manage`]) that `ember models … --remote`, `ember audit --remote` and `ember
//! usage --remote` use. The same calls operate `ember up` on another machine and a Spin
//! deployment (Fermyon Cloud / Akamai Functions, SpinKube, `spin up`).

use anyhow::{bail, Context as _};
use ember_contract::manage::{Endpoint, ModelState, Record, RecordQuery, ADMIN_TOKEN_ENV};
use ember_function::routing::Routing;
use serde::de::DeserializeOwned;

/// The `--remote` option of the commands that can operate a deployment over HTTP.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct RemoteArg {
    /// Operate this deployment over HTTP (e.g. `https://ember.example.com`) instead of the local
    /// files; the admin token is read from `EMBER_ADMIN_TOKEN`.
    #[arg(long = "remote", global = true)]
    pub url: Option<String>,
}

impl RemoteArg {
    /// The deployment, when `--remote` was given.
    pub fn connect(&self) -> anyhow::Result<Option<Remote>> {
        self.url.as_deref().map(Remote::new).transpose()
    }
}

/// A deployment's management API.
pub struct Remote {
    base: String,
    token: String,
    agent: ureq::Agent,
}

/// How long one management call may take.
const TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Largest answer read (a long records listing).
const MAX_ANSWER_BYTES: u64 = 512 << 20;

impl Remote {
    /// The deployment at `url`, authenticated by `EMBER_ADMIN_TOKEN`.
    pub fn new(url: &str) -> anyhow::Result<Self> {
        let token = std::env::var(ADMIN_TOKEN_ENV).with_context(|| {
            format!("--remote needs the deployment's admin token in {ADMIN_TOKEN_ENV}")
        })?;
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(TIMEOUT))
            .build()
            .into();
        Ok(Self {
            base: url.trim_end_matches('/').to_string(),
            token,
            agent,
        })
    }

    /// Every model with its versions and routing.
    pub fn models(&self) -> anyhow::Result<Vec<ModelState>> {
        self.call("GET", &Endpoint::Models.path(), None)
    }

    /// One model's routing.
    pub fn routing(&self, model: &str) -> anyhow::Result<Routing> {
        self.call("GET", &Endpoint::Routing(model).path(), None)
    }

    /// Reads `model`'s routing, applies `change` and stores it; returns what the deployment stored.
    pub fn update(
        &self,
        model: &str,
        change: impl FnOnce(&mut Routing),
    ) -> anyhow::Result<Routing> {
        let mut routing = self.routing(model)?;
        change(&mut routing);
        let body = serde_json::to_vec(&routing)?;
        self.call("PUT", &Endpoint::Routing(model).path(), Some(body))
    }

    /// Records matching `query`, oldest first.
    pub fn records(&self, query: &RecordQuery) -> anyhow::Result<Vec<Record>> {
        let path = format!("{}?{}", Endpoint::Records.path(), query.to_query());
        self.call("GET", &path, None)
    }

    /// One record by invocation id.
    pub fn record(&self, id: &str) -> anyhow::Result<Record> {
        self.call("GET", &Endpoint::Record(id).path(), None)
    }

    fn call<T: DeserializeOwned>(
        &self,
        method: &str,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> anyhow::Result<T> {
        let url = format!("{}{path}", self.base);
        let request = ureq::http::Request::builder()
            .method(method)
            .uri(&url)
            .header("authorization", format!("Bearer {}", self.token))
            .header("content-type", "application/json")
            .body(body.unwrap_or_default())
            .context("building the request")?;
        let mut response = self
            .agent
            .run(request)
            .with_context(|| format!("{method} {url}"))?;
        let status = response.status().as_u16();
        let text = response
            .body_mut()
            .with_config()
            .limit(MAX_ANSWER_BYTES)
            .read_to_string()
            .with_context(|| format!("reading the answer of {method} {url}"))?;
        if status != 200 {
            let error = serde_json::from_str(&text)
                .ok()
                .and_then(|body| ember_contract::ApiError::from_json(&body));
            match error {
                Some(error) => bail!("{method} {url}: {error}"),
                None => bail!("{method} {url}: {status}: {text}"),
            }
        }
        serde_json::from_str(&text).with_context(|| format!("the answer of {method} {url}"))
    }
}
