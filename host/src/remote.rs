//! A deployment operated over HTTP: the client side of the management API
//! ([`ember_contract::manage`]) that `ember models … --remote`, `ember audit --remote` and `ember
//! usage --remote` use. The same calls operate `ember up` on another machine and a Spin
//! deployment (Fermyon Cloud / Akamai Functions, SpinKube, `spin up`).

use anyhow::{bail, Context as _};
use ember_contract::manage::{Endpoint, ModelState, Record, RecordQuery, ADMIN_TOKEN_ENV};
use ember_contract::{headers, ApiError, Code};
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
        Ok(self.call("GET", &Endpoint::Models.path(), None, None)?.0)
    }

    /// One model's routing.
    pub fn routing(&self, model: &str) -> anyhow::Result<Routing> {
        Ok(self
            .call("GET", &Endpoint::Routing(model).path(), None, None)?
            .0)
    }

    /// Reads `model`'s routing, applies `change` and stores it, made against the revision read:
    /// when another change came first, reads that and applies `change` again (a few times).
    /// Returns what the deployment stored.
    pub fn update(
        &self,
        model: &str,
        mut change: impl FnMut(&mut Routing),
    ) -> anyhow::Result<Routing> {
        let path = Endpoint::Routing(model).path();
        let mut attempts = 0;
        loop {
            let (mut routing, revision): (Routing, _) = self.call("GET", &path, None, None)?;
            change(&mut routing);
            let body = serde_json::to_vec(&routing)?;
            match self.call("PUT", &path, Some(body), revision.as_deref()) {
                Err(error) if is_stale(&error) && attempts < MAX_ATTEMPTS => attempts += 1,
                result => return Ok(result?.0),
            }
        }
    }

    /// Records matching `query`, oldest first.
    pub fn records(&self, query: &RecordQuery) -> anyhow::Result<Vec<Record>> {
        let path = format!("{}?{}", Endpoint::Records.path(), query.to_query());
        Ok(self.call("GET", &path, None, None)?.0)
    }

    /// One record by invocation id.
    pub fn record(&self, id: &str) -> anyhow::Result<Record> {
        Ok(self
            .call("GET", &Endpoint::Record(id).path(), None, None)?
            .0)
    }

    /// One call: the answer and its `ETag`.
    fn call<T: DeserializeOwned>(
        &self,
        method: &str,
        path: &str,
        body: Option<Vec<u8>>,
        if_match: Option<&str>,
    ) -> anyhow::Result<(T, Option<String>)> {
        let url = format!("{}{path}", self.base);
        let mut request = ureq::http::Request::builder()
            .method(method)
            .uri(&url)
            .header("authorization", format!("Bearer {}", self.token))
            .header("content-type", "application/json");
        if let Some(revision) = if_match {
            request = request.header(headers::IF_MATCH, revision);
        }
        let request = request
            .body(body.unwrap_or_default())
            .context("building the request")?;
        let mut response = self
            .agent
            .run(request)
            .with_context(|| format!("{method} {url}"))?;
        let status = response.status().as_u16();
        let etag = response
            .headers()
            .get(headers::ETAG)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let text = response
            .body_mut()
            .with_config()
            .limit(MAX_ANSWER_BYTES)
            .read_to_string()
            .with_context(|| format!("reading the answer of {method} {url}"))?;
        if status != 200 {
            let error = serde_json::from_str(&text)
                .ok()
                .and_then(|body| ApiError::from_json(&body));
            match error {
                Some(error) => {
                    return Err(anyhow::Error::new(error).context(format!("{method} {url}")))
                }
                None => bail!("{method} {url}: {status}: {text}"),
            }
        }
        let answer =
            serde_json::from_str(&text).with_context(|| format!("the answer of {method} {url}"))?;
        Ok((answer, etag))
    }
}

/// Tries of a change that keeps meeting newer revisions before it gives up.
const MAX_ATTEMPTS: u32 = 5;

/// Whether a call failed because the routing changed since it was read.
fn is_stale(error: &anyhow::Error) -> bool {
    error
        .downcast_ref::<ApiError>()
        .is_some_and(|e| e.code == Code::StaleRevision)
}
