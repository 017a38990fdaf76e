//! The HTTP front: accepts connections (HTTP/1.1 with keep-alive, or HTTP/2 without TLS), serves
//! the host's own endpoints under the reserved `/-/` prefix and the manifest's static sites, hands
//! gRPC calls to [`crate::grpc`], and runs everything else the manifest routes to the function,
//! metering each invocation before its reply leaves.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use ember_contract::telemetry::Fallback;
use ember_contract::{ApiError, Code, ModelVersion, Route};
use ember_function::app::reply::declared_answer;
use ember_function::catalog::Catalog as _;
use ember_function::routing::Pick;
use http_body_util::{BodyExt as _, Either, Full, LengthLimitError, Limited};
use hyper::body::{Body, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tonic::codegen::Service as _;

use self::manage::{HostDeployment, Management, StateOwner};
use self::router::{Router, Target};
use self::static_files::StaticSite;
use self::tls::Tls;
use crate::grpc::{self, InferenceService};
use crate::metering::exposition::Format;
use crate::metering::ledger::Ledger;
use crate::metering::meter::{Arrival, Meter};
use crate::outcomes::{feedback, Outcomes};
use crate::runtime::{error_response, json_response, Invocation, Runtime};
use crate::tenants::gate::Gate;

pub mod manage;
pub mod operator;
pub mod router;
pub mod static_files;
pub mod tls;

/// The prefix of host endpoints; function routes never start with it.
pub const HOST_PREFIX: &str = "/-/";

/// What the front serves: the function (its runtime, routes and models) and the static sites.
pub struct Front {
    /// The function runtime.
    pub runtime: Runtime,
    /// Metering of every invocation.
    pub meter: Meter,
    /// The model `POST /predict` serves.
    pub default_model: String,
    /// Which paths go to the function and which to a static site (spin.toml's HTTP routes);
    /// others get 404 from the host.
    pub router: Router,
    /// The manifest's static file servers (the browser demo), served by the host.
    pub sites: Vec<StaticSite>,
    /// The operator page's files, served under `/-/` ([`operator::page_site`]).
    pub operator_page: StaticSite,
    /// Who may call the function and how much runs at once; guards the host's data too.
    pub gate: Gate,
    /// Feedback, quality, alerts and rollouts; `None` without a ledger (`--no-metering`).
    pub outcomes: Option<Arc<Outcomes>>,
    /// When requests last arrived, for idle exit.
    pub idle: IdleClock,
    /// Who answers the management API (`/-/ember/…`).
    pub management: Management,
}

/// Time since the last request arrived (or since start).
#[derive(Debug)]
pub struct IdleClock {
    epoch: Instant,
    last_request_ms: AtomicU64,
}

impl Default for IdleClock {
    fn default() -> Self {
        Self {
            epoch: Instant::now(),
            last_request_ms: AtomicU64::new(0),
        }
    }
}

impl IdleClock {
    /// Notes a request's arrival.
    pub fn touch(&self) {
        self.last_request_ms
            .store(self.epoch.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    /// Milliseconds since the last arrival.
    pub fn idle_ms(&self) -> u64 {
        (self.epoch.elapsed().as_millis() as u64)
            .saturating_sub(self.last_request_ms.load(Ordering::Relaxed))
    }
}

impl Front {
    async fn handle(&self, request: hyper::Request<Incoming>) -> hyper::Response<Full<Bytes>> {
        self.idle.touch();
        let path = request.uri().path().to_string();
        let response = if path.starts_with(ember_contract::manage::PREFIX) {
            self.manage(request).await
        } else if let Some(endpoint) = path.strip_prefix(HOST_PREFIX) {
            self.host_endpoint(endpoint, request).await
        } else {
            match self.router.route(&path) {
                Some(Target::Function) => self.invoke(request, &path).await,
                Some(Target::Site(site)) => {
                    self.sites[site]
                        .serve(request.method(), &path, request.headers())
                        .await
                }
                None => error_response(&ApiError::new(
                    Code::NoRoute,
                    format!("no route for '{path}'"),
                )),
            }
        };
        response.map(Full::new)
    }

    async fn host_endpoint(
        &self,
        endpoint: &str,
        request: hyper::Request<Incoming>,
    ) -> hyper::Response<Bytes> {
        let graphs = self.runtime.graphs();
        let endpoint = HostEndpoint::parse(endpoint);
        if endpoint.holds_data() {
            if let Err(refused) = self.gate.admit_admin(request.headers()) {
                return refused.response();
            }
        }
        let reply = |answer: Result<serde_json::Value, ApiError>| match answer {
            Ok(body) => json_response(200, body),
            Err(error) => error_response(&error),
        };
        // SQLite reads and writes run off the runtime's async path for their duration.
        match endpoint {
            HostEndpoint::Audit(id) => reply(tokio::task::block_in_place(|| {
                operator::audit(&self.meter, id)
            })),
            HostEndpoint::Overview => reply(tokio::task::block_in_place(|| {
                operator::overview(&self.meter, graphs.catalog(), self.outcomes.as_deref())
            })),
            HostEndpoint::Quality(model) => {
                reply(tokio::task::block_in_place(|| self.quality(model)))
            }
            HostEndpoint::Feedback => {
                let mut response = reply(self.feedback(request).await);
                if response.status() == hyper::StatusCode::METHOD_NOT_ALLOWED {
                    response.headers_mut().insert(
                        hyper::header::ALLOW,
                        hyper::header::HeaderValue::from_static("POST"),
                    );
                }
                response
            }
            HostEndpoint::Metrics => {
                let accept = request.headers().get(hyper::header::ACCEPT);
                let format = Format::negotiate(accept.and_then(|a| a.to_str().ok()));
                hyper::Response::builder()
                    .header(hyper::header::CONTENT_TYPE, format.content_type())
                    .body(Bytes::from(self.meter.render_metrics(
                        format,
                        graphs.loaded_count(),
                        self.runtime.active(),
                    )))
                    .expect("static response parts are valid")
            }
            HostEndpoint::Health => json_response(
                200,
                serde_json::json!({
                    "status": "ok",
                    "graphs": graphs.names(),
                    "graphs_loaded": graphs.loaded_count(),
                    "instances_idle": self.runtime.idle_instances(),
                    "ledger": self.meter.ledger_path(),
                }),
            ),
            // The operator page and its assets; anything else under `/-/` is its 404.
            HostEndpoint::Page => {
                self.operator_page
                    .serve(request.method(), request.uri().path(), request.headers())
                    .await
            }
        }
    }

    /// `/-/ember/…`: the management API, answered by the function or by this host
    /// ([`Management`]) to the bearer of the admin token only; never metered, never behind API
    /// keys (its own token guards it).
    async fn manage(&self, mut request: hyper::Request<Incoming>) -> hyper::Response<Bytes> {
        let authorization = request
            .headers()
            .get(hyper::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        let admin_token = self.management.admin_token.as_deref();
        if let Err(refused) = ember_function::manage::authenticate(admin_token, authorization) {
            return error_response(&refused);
        }
        if self.management.answered_by == StateOwner::Function {
            crate::runtime::remove_private_headers(request.headers_mut());
            return self.runtime.invoke(request).await.response;
        }
        let (parts, body) = request.into_parts();
        let body = match read_limited(body, MANAGE_BODY_LIMIT).await {
            Ok(body) => body,
            Err(error) => return error_response(&error),
        };
        let path = parts
            .uri
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or_default();
        let request = ember_function::manage::ManageRequest {
            method: parts.method.as_str(),
            path: &path[ember_contract::manage::PREFIX.len()..],
            authorization: parts
                .headers
                .get(hyper::header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok()),
            if_match: parts
                .headers
                .get(hyper::header::IF_MATCH)
                .and_then(|v| v.to_str().ok()),
            body: &body,
        };
        let state = HostDeployment {
            catalog: self.runtime.graphs().catalog(),
            ledger: self.meter.ledger.as_ref(),
        };
        // Routing files and the ledger are read and written off the async path.
        let answer = tokio::task::block_in_place(|| {
            ember_function::manage::handle(state.catalog, &state, admin_token, &request)
        });
        let mut response = json_response(answer.status, answer.body);
        if let Some(allow) = answer.allow {
            response.headers_mut().insert(
                hyper::header::ALLOW,
                hyper::header::HeaderValue::from_static(allow),
            );
        }
        if let Some(etag) = answer.etag.and_then(|e| e.parse().ok()) {
            response.headers_mut().insert(hyper::header::ETAG, etag);
        }
        response
    }

    /// The outcomes unit and the ledger it reads, or why there are none.
    fn outcomes(&self) -> Result<(&Outcomes, &Ledger), ApiError> {
        match (self.outcomes.as_deref(), self.meter.ledger.as_ref()) {
            (Some(outcomes), Some(ledger)) => Ok((outcomes, ledger)),
            _ => Err(ApiError::new(
                Code::MeteringUnavailable,
                "outcomes need the usage ledger: serve without --no-metering",
            )),
        }
    }

    /// `GET /-/api/quality/{model}`.
    fn quality(&self, model: &str) -> Result<serde_json::Value, ApiError> {
        if !self
            .runtime
            .graphs()
            .catalog()
            .models()
            .iter()
            .any(|m| m.name == model)
        {
            return Err(ApiError::invalid(
                Code::UnknownModel,
                "model",
                format!("no model named '{model}'"),
            ));
        }
        let report = self.outcomes()?.0.quality(model).map_err(|error| {
            tracing::error!(error = format!("{error:#}"), "reading quality failed");
            ApiError::new(
                Code::MeteringUnavailable,
                "the ledger could not be read; retry",
            )
        })?;
        Ok(serde_json::json!({ "model": model, "versions": report }))
    }

    /// `POST /-/feedback`: one outcome, or an array of them, recorded whole or not at all.
    async fn feedback(
        &self,
        request: hyper::Request<Incoming>,
    ) -> Result<serde_json::Value, ApiError> {
        if request.method() != hyper::Method::POST {
            return Err(ApiError::new(
                Code::MethodNotAllowed,
                "POST the feedback to /-/feedback",
            ));
        }
        let json = request
            .headers()
            .get(hyper::header::CONTENT_TYPE)
            .and_then(|t| t.to_str().ok())
            .is_none_or(|t| {
                t.trim_start()
                    .to_ascii_lowercase()
                    .starts_with("application/json")
            });
        if !json {
            return Err(ApiError::new(
                Code::UnsupportedMediaType,
                "feedback is JSON: send content-type application/json",
            ));
        }
        let (outcomes, ledger) = self.outcomes()?;
        let body = read_limited(request.into_body(), FEEDBACK_BODY_LIMIT).await?;
        let items = feedback::from_json(&body)?;
        tokio::task::block_in_place(|| {
            // The decisions of replies sent a moment ago may still be on their way into SQLite.
            ledger.flush().map_err(|error| {
                tracing::error!(error = format!("{error:#}"), "flushing the ledger failed");
                ApiError::new(
                    Code::MeteringUnavailable,
                    "the ledger is unavailable; retry",
                )
            })?;
            let recorded = outcomes.record(&items)?;
            Ok(serde_json::json!({ "recorded": recorded }))
        })
    }

    /// Runs the function on a request the host made for a client (a gRPC call's REST twin), as
    /// [`Front::handle`] runs a client's own.
    pub async fn invoke_function<B>(
        &self,
        request: hyper::Request<B>,
        route: &str,
    ) -> hyper::Response<Bytes>
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<wasmtime_wasi_http::Error>,
    {
        self.idle.touch();
        self.invoke(request, route).await
    }

    /// Runs the function on `request` if the gate admits it, and meters it; the reply leaves
    /// once its record is durable.
    async fn invoke<B>(&self, mut request: hyper::Request<B>, route: &str) -> hyper::Response<Bytes>
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<wasmtime_wasi_http::Error>,
    {
        let started_at_us = Arrival::now_us();
        let admission = match self
            .gate
            .admit(request.headers_mut(), route, &self.default_model)
        {
            Ok(admission) => admission,
            Err(refused) => {
                self.meter
                    .metrics
                    .refused(refused.key.as_deref(), refused.error.code);
                return refused.response();
            }
        };
        let method = request.method().to_string();
        let id = uuid::Uuid::now_v7().to_string();
        // A function that files its own records (the Spin build) files them under this id.
        if self.management.answered_by == StateOwner::Function {
            if let Ok(value) = hyper::header::HeaderValue::from_str(&id) {
                request
                    .headers_mut()
                    .insert(ember_contract::headers::INVOCATION_ID_HINT, value);
            }
        }
        let mut invocation = self.runtime.invoke(request).await;
        if invocation.stats.failure == Some(Code::DeadlineExceeded) {
            self.answer_by_default(route, &mut invocation);
        }
        let arrival = Arrival {
            id,
            started_at_us,
            method: &method,
            route,
            key: admission.key(),
        };
        match self.meter.record(arrival, &mut invocation) {
            Ok(cost) => admission.charge(cost),
            Err(error) => {
                // Nothing billed is lost: a reply without a durable record is not sent.
                tracing::error!(error = ?error, "refusing the reply");
                return error_response(&ApiError::new(
                    Code::MeteringUnavailable,
                    "the usage ledger is unavailable; retry",
                ));
            }
        }
        admission.annotate(invocation.response.headers_mut());
        invocation.response
    }

    /// Replaces a timed-out prediction with the model's declared default answer, if it has one,
    /// attributed to the version the request pinned (else the stable version).
    fn answer_by_default(&self, route: &str, invocation: &mut Invocation) {
        let Some(Route::Predict(target)) = Route::parse(route) else {
            return;
        };
        let (model, pinned) = match &target {
            Some(target) => (target.model, target.version),
            None => (self.default_model.as_str(), None),
        };
        let catalog = self.runtime.graphs().catalog();
        let routing = catalog.routing(model);
        let Some(answer) = &routing.default_answer else {
            return;
        };
        let version = match pinned {
            Some(pinned) => {
                match catalog.resolve_version(model, Some(pinned), &routing, Pick::default()) {
                    Ok(version) => version,
                    // The function would have refused the version before running it.
                    Err(_) => return,
                }
            }
            None => routing.stable().unwrap_or_default().to_string(),
        };
        let failed = Fallback {
            from_version: version.clone(),
            reason: Code::DeadlineExceeded.as_str().to_string(),
        };
        let (body, telemetry) = declared_answer(answer, model, failed, Vec::new());
        invocation.response = json_response(200, body);
        let stats = &mut invocation.stats;
        stats.status = 200;
        stats.bytes_out = invocation.response.body().len() as u64;
        stats.model = Some(ModelVersion::new(model, version));
        stats.telemetry = Some(telemetry);
    }
}

/// Reads a host endpoint's whole body, refusing one past `limit` bytes (413) or cut short (400).
async fn read_limited(body: Incoming, limit: usize) -> Result<Bytes, ApiError> {
    match Limited::new(body, limit).collect().await {
        Ok(body) => Ok(body.to_bytes()),
        Err(error) if error.downcast_ref::<LengthLimitError>().is_some() => Err(ApiError::new(
            Code::BodyTooLarge,
            format!("this endpoint reads at most {limit} bytes"),
        )),
        Err(_) => Err(ApiError::new(
            Code::UnreadableBody,
            "the body could not be read",
        )),
    }
}

/// The largest body the management API reads (a routing policy).
const MANAGE_BODY_LIMIT: usize = 1 << 20;

/// The largest feedback body `POST /-/feedback` reads.
const FEEDBACK_BODY_LIMIT: usize = 8 << 20;

/// The host's own endpoints under `/-/`.
enum HostEndpoint<'a> {
    /// `health`: liveness, open to all.
    Health,
    /// `metrics`: Prometheus.
    Metrics,
    /// `api/overview`: the operator page's data.
    Overview,
    /// `api/quality/{model}`: live quality per version.
    Quality(&'a str),
    /// `audit/{id}`: one invocation's record.
    Audit(&'a str),
    /// `feedback`: outcomes of past invocations.
    Feedback,
    /// Anything else: the operator page and its assets.
    Page,
}

impl<'a> HostEndpoint<'a> {
    fn parse(endpoint: &'a str) -> Self {
        if let Some(id) = endpoint.strip_prefix("audit/") {
            return HostEndpoint::Audit(id);
        }
        if let Some(model) = endpoint.strip_prefix("api/quality/") {
            return HostEndpoint::Quality(model);
        }
        match endpoint {
            "health" => HostEndpoint::Health,
            "metrics" => HostEndpoint::Metrics,
            "api/overview" => HostEndpoint::Overview,
            "feedback" => HostEndpoint::Feedback,
            _ => HostEndpoint::Page,
        }
    }

    /// Whether it reads or writes the host's data (and so needs the admin token when one is set).
    fn holds_data(&self) -> bool {
        !matches!(self, HostEndpoint::Health | HostEndpoint::Page)
    }
}

/// How long a client has to complete the TLS handshake.
const TLS_HANDSHAKE: Duration = Duration::from_secs(10);

/// Serves `front` on `listener` until the future is dropped: HTTP/1.1 and HTTP/2 (prior
/// knowledge, as gRPC clients speak it, or ALPN under `tls`) on the same port.
pub async fn serve(
    listener: TcpListener,
    front: Arc<Front>,
    tls: Option<Arc<Tls>>,
) -> anyhow::Result<()> {
    let grpc = InferenceService::server(front.clone());
    loop {
        let (stream, peer) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        let connection = Connection {
            front: front.clone(),
            grpc: grpc.clone(),
            peer,
        };
        match &tls {
            None => {
                tokio::spawn(connection.serve(stream));
            }
            Some(tls) => {
                let acceptor = tls.acceptor();
                tokio::spawn(async move {
                    match tokio::time::timeout(TLS_HANDSHAKE, acceptor.accept(stream)).await {
                        Ok(Ok(stream)) => connection.serve(stream).await,
                        Ok(Err(error)) => tracing::debug!(%peer, %error, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                });
            }
        }
    }
}

/// One accepted connection and what serves it.
struct Connection {
    front: Arc<Front>,
    grpc: grpc::Server,
    peer: SocketAddr,
}

impl Connection {
    /// Serves the connection's requests until it closes: gRPC calls to the gRPC service, the
    /// rest to the front.
    async fn serve<Io>(self, io: Io)
    where
        Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let Self { front, grpc, peer } = self;
        let service = service_fn(move |request: hyper::Request<Incoming>| {
            let front = front.clone();
            let mut grpc = grpc.clone();
            async move {
                if grpc::is_grpc(&request) {
                    let reply = grpc.call(grpc::with_host(request)).await?;
                    Ok::<_, Infallible>(reply.map(Either::Right))
                } else {
                    Ok(front.handle(request).await.map(Either::Left))
                }
            }
        });
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder.http1().keep_alive(true);
        if let Err(error) = builder.serve_connection(TokioIo::new(io), service).await {
            log_connection_error(peer, &*error);
        }
    }
}

fn log_connection_error(peer: SocketAddr, error: &(dyn std::error::Error + 'static)) {
    let incomplete = error
        .downcast_ref::<hyper::Error>()
        .is_some_and(hyper::Error::is_incomplete_message);
    if !incomplete {
        tracing::debug!(%peer, %error, "connection ended with an error");
    }
}
