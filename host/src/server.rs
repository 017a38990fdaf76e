//! The HTTP front: accepts connections (HTTP/1.1, keep-alive), serves the host's own endpoints
//! under the reserved `/-/` prefix, and runs everything else through the function, metering each
//! invocation before its reply leaves.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::drift::DriftMonitor;
use crate::manifest::Route;
use crate::metering::ledger::Ledger;
use crate::metering::metrics::Metrics;
use crate::metering::prices::PriceTable;
use crate::metering::UsageRecord;
use crate::runtime::{error_response, json_response, Invocation, Runtime};
use crate::static_files::StaticSite;
use ember_contract::telemetry::Fallback;
use ember_contract::{headers, ApiError, Code, ModelVersion, Route as FunctionRoute, Telemetry};
use ember_function::app::reply::fallback_answer;
use ember_function::catalog::{Catalog as _, DirCatalog};
use ember_function::routing::Pick;

/// The prefix of host endpoints; function routes never start with it.
pub const HOST_PREFIX: &str = "/-/";

/// Everything the front needs to serve and meter.
pub struct Host {
    /// The function runtime.
    pub runtime: Runtime,
    /// Name of the function, as recorded in the ledger.
    pub function: String,
    /// Where usage records go; `None` serves without a ledger (no cost headers).
    pub ledger: Option<Ledger>,
    /// Prices for the cost of each invocation.
    pub prices: PriceTable,
    /// Prometheus metrics.
    pub metrics: Metrics,
    /// Live drift windows per model version.
    pub drift: DriftMonitor,
    /// The models directory, for routing (declared default answers on timeouts).
    pub catalog: DirCatalog,
    /// The model `POST /predict` serves.
    pub default_model: String,
    /// Paths routed to the function (spin.toml's HTTP routes); others get 404 from the host.
    pub routes: Vec<Route>,
    /// The manifest's static file servers (the browser demo), served by the host.
    pub sites: Vec<StaticSite>,
    /// Milliseconds since `epoch` at the last request's arrival (for idle exit).
    pub last_request_ms: AtomicU64,
    /// When the host started.
    pub epoch: Instant,
}

impl Host {
    /// Milliseconds since the last request arrived (or since start).
    pub fn idle_ms(&self) -> u64 {
        (self.epoch.elapsed().as_millis() as u64)
            .saturating_sub(self.last_request_ms.load(Ordering::Relaxed))
    }

    async fn handle(&self, request: hyper::Request<Incoming>) -> hyper::Response<Full<Bytes>> {
        self.last_request_ms
            .store(self.epoch.elapsed().as_millis() as u64, Ordering::Relaxed);
        let path = request.uri().path().to_string();
        let response = if let Some(endpoint) = path.strip_prefix(HOST_PREFIX) {
            self.host_endpoint(endpoint)
        } else if let Some(site) = self.static_site(&path) {
            site.serve(request.method(), &path).await
        } else if !self.routes.iter().any(|r| r.matches(&path)) {
            error_response(&ApiError::new(
                Code::NoRoute,
                format!("no route for '{path}'"),
            ))
        } else {
            self.invoke(request, path).await
        };
        response.map(Full::new)
    }

    /// The static site serving `path`, when its route is more specific than every function route
    /// that matches it.
    fn static_site(&self, path: &str) -> Option<&StaticSite> {
        let function = self
            .routes
            .iter()
            .filter(|r| r.matches(path))
            .map(Route::specificity)
            .max();
        self.sites
            .iter()
            .filter(|s| s.route.matches(path))
            .max_by_key(|s| s.route.specificity())
            .filter(|s| Some(s.route.specificity()) > function)
    }

    fn host_endpoint(&self, endpoint: &str) -> hyper::Response<Bytes> {
        match endpoint {
            "metrics" => hyper::Response::builder()
                .header(
                    hyper::header::CONTENT_TYPE,
                    "text/plain; version=0.0.4; charset=utf-8",
                )
                .body(Bytes::from(self.metrics.render(
                    self.runtime.graphs().loaded_count(),
                    self.runtime.active(),
                    &self.drift.reports(),
                )))
                .expect("static response parts are valid"),
            "health" => json_response(
                200,
                serde_json::json!({
                    "status": "ok",
                    "graphs": self.runtime.graphs().names(),
                    "graphs_loaded": self.runtime.graphs().loaded_count(),
                    "ledger": self.ledger.as_ref().map(|l| l.path().display().to_string()),
                }),
            ),
            _ => error_response(&ApiError::new(Code::NoRoute, "no such host endpoint")),
        }
    }

    async fn invoke(
        &self,
        request: hyper::Request<Incoming>,
        route: String,
    ) -> hyper::Response<Bytes> {
        let started_at_us = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_micros() as i64)
            .unwrap_or_default();
        let method = request.method().to_string();
        let mut invocation = self.runtime.invoke(request).await;
        if invocation.stats.failure == Some(Code::DeadlineExceeded) {
            self.answer_by_default(&route, &mut invocation);
        }
        let id = uuid::Uuid::now_v7().to_string();
        let record = UsageRecord::new(
            id,
            started_at_us,
            &self.function,
            &method,
            &route,
            (&invocation.stats, invocation.response.body()),
            &self.prices,
        );
        self.metrics.observe(&record);
        self.drift.observe(&record);
        let mut response = invocation.response;
        if let Some(ledger) = &self.ledger {
            let cost = format!("{:.12} {}", record.cost, self.prices.currency);
            let (id, wall_us) = (record.id.clone(), record.wall_us);
            if let Err(error) = ledger.commit(record).await {
                // A reply is only sent once its record is durable: nothing billed is lost.
                tracing::error!(%error, "usage record not stored; refusing the reply");
                return error_response(&ApiError::new(
                    Code::MeteringUnavailable,
                    "the usage ledger is unavailable; retry",
                ));
            }
            let headers = response.headers_mut();
            for (name, value) in [
                (headers::INVOCATION_ID, id),
                (headers::COST, cost),
                (headers::DURATION_US, wall_us.to_string()),
            ] {
                if let Ok(value) = hyper::header::HeaderValue::from_str(&value) {
                    headers.insert(name, value);
                }
            }
        }
        response
    }
}

impl Host {
    /// Replaces a timed-out prediction with the model's declared default answer, if it has one,
    /// attributed to the version the request pinned (else the stable version).
    fn answer_by_default(&self, route: &str, invocation: &mut Invocation) {
        let Some(FunctionRoute::Predict(target)) = FunctionRoute::parse(route) else {
            return;
        };
        let model = target.model.unwrap_or(&self.default_model);
        let routing = self.catalog.routing(model);
        let Some(answer) = &routing.default_answer else {
            return;
        };
        let version = match target.version {
            Some(pinned) => {
                match self
                    .catalog
                    .resolve_version(model, Some(pinned), &routing, Pick::default())
                {
                    Ok(version) => version,
                    // The function would have refused the version before running it.
                    Err(_) => return,
                }
            }
            None => routing.stable().unwrap_or_default().to_string(),
        };
        let reason = Code::DeadlineExceeded.as_str();
        let body = fallback_answer(answer, model, &version, reason);
        invocation.response = json_response(200, body);
        let stats = &mut invocation.stats;
        stats.status = 200;
        stats.bytes_out = invocation.response.body().len() as u64;
        stats.model = Some(ModelVersion::new(model, &version));
        stats.telemetry = Some(Telemetry {
            features: Vec::new(),
            prediction: answer["prediction"].as_u64().unwrap_or_default() as usize,
            shadow: None,
            fallback: Some(Fallback {
                from_version: version,
                reason: reason.to_string(),
            }),
        });
    }
}

/// Serves `host` on `listener` until the future is dropped.
pub async fn serve(listener: TcpListener, host: Arc<Host>) -> anyhow::Result<()> {
    loop {
        let (stream, peer) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        let host = host.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| {
                let host = host.clone();
                async move { Ok::<_, Infallible>(host.handle(request).await) }
            });
            if let Err(error) = http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                log_connection_error(peer, &error);
            }
        });
    }
}

fn log_connection_error(peer: SocketAddr, error: &hyper::Error) {
    if !error.is_incomplete_message() {
        tracing::debug!(%peer, %error, "connection ended with an error");
    }
}
