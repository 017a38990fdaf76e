//! Runs the function: one fresh instance per request from a pre-instantiated component, with a
//! deadline (epoch interruption), a memory cap (ResourceLimiter) and no outbound network.

mod cache;
mod engine;
mod failure;
mod state;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use http_body_util::BodyExt as _;
use hyper::body::Incoming;
use tokio::sync::Semaphore;
use wasmtime::component::{Linker, ResourceTable};
use wasmtime::{Engine, Store, UpdateDeadline};
use wasmtime_wasi::{FsPerms, WasiCtx};
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpView as _};

pub use self::cache::CacheOutcome;
pub use self::failure::Failure;
use self::state::{DenyOutbound, HostState, MemoryLimiter};
use crate::nn::registry::SharedGraphs;

/// Where the guest sees the models directory.
pub const GUEST_MODELS_DIR: &str = "/models";

/// How one function is run.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// The function component (`.wasm`).
    pub component: PathBuf,
    /// Host directory preopened read-only at [`GUEST_MODELS_DIR`].
    pub models: PathBuf,
    /// Where compiled components are cached.
    pub cache_dir: PathBuf,
    /// Longest a request may run.
    pub deadline: Duration,
    /// Largest linear memory per instance, in bytes.
    pub memory_limit: usize,
    /// Instances alive at once; further requests wait for a slot (up to the deadline).
    pub max_instances: u32,
    /// Environment variables the function sees.
    pub env: Vec<(String, String)>,
}

/// A loaded function, ready to serve requests.
pub struct Runtime {
    engine: Engine,
    pre: ProxyPre<HostState>,
    graphs: SharedGraphs,
    slots: Arc<Semaphore>,
    config: RuntimeConfig,
    /// Whether the compiled component came from the disk cache.
    pub cache: CacheOutcome,
}

/// The response type served to clients.
pub type HostResponse = hyper::Response<HyperOutgoingBody>;

impl Runtime {
    /// Builds the engine, loads (or compiles) the component and links WASI, wasi:http and wasi:nn.
    pub fn new(config: RuntimeConfig, graphs: SharedGraphs) -> anyhow::Result<Self> {
        let engine = engine::build(engine::EngineLimits {
            max_instances: config.max_instances,
            memory_limit: config.memory_limit,
        })?;
        let (component, cache) =
            cache::load_component(&engine, &config.component, &config.cache_dir)
                .with_context(|| format!("loading component {}", config.component.display()))?;
        let mut linker = Linker::<HostState>::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
        wasmtime_wasi_nn::wit::add_to_linker(&mut linker, |s: &mut HostState| {
            wasmtime_wasi_nn::wit::WasiNnView::new(&mut s.table, &mut s.nn)
        })?;
        let pre = ProxyPre::new(linker.instantiate_pre(&component)?)?;
        Ok(Self {
            engine,
            pre,
            graphs,
            slots: Arc::new(Semaphore::new(config.max_instances as usize)),
            config,
            cache,
        })
    }

    /// Runs the function on one request in a fresh instance; never fails: host-side failures
    /// become JSON error replies.
    pub async fn handle(&self, request: hyper::Request<Incoming>) -> HostResponse {
        let started = Instant::now();
        let deadline = self.config.deadline;
        let Ok(Ok(permit)) =
            tokio::time::timeout(deadline, self.slots.clone().acquire_owned()).await
        else {
            return Failure::Overloaded.response();
        };
        let mut store = match self.store(started) {
            Ok(store) => store,
            Err(error) => return Failure::Host(error).response(),
        };
        let (sender, receiver) = tokio::sync::oneshot::channel();
        let request = request.map(|body| body.map_err(wasmtime_wasi_http::Error::Hyper));
        let prepared = store
            .data_mut()
            .http()
            .new_incoming_request(Scheme::Http, request)
            .and_then(|req| Ok((req, store.data_mut().http().new_response_outparam(sender)?)));
        let (incoming, outparam) = match prepared {
            Ok(pair) => pair,
            Err(error) => return Failure::Host(error).response(),
        };
        let pre = self.pre.clone();
        let task = tokio::spawn(async move {
            let _permit = permit;
            let result = async {
                let instantiating = Instant::now();
                let proxy = pre.instantiate_async(&mut store).await?;
                let calling = Instant::now();
                let result = proxy
                    .wasi_http_incoming_handler()
                    .call_handle(&mut store, incoming, outparam)
                    .await;
                tracing::debug!(
                    instantiate_us = (calling - instantiating).as_micros() as u64,
                    call_us = calling.elapsed().as_micros() as u64,
                    "invocation finished"
                );
                result
            }
            .await;
            (result, store.data().limiter.exceeded)
        });
        match tokio::time::timeout(deadline, receiver).await {
            Ok(Ok(Ok(response))) => response,
            Ok(Ok(Err(code))) => Failure::GuestError(format!("{code:?}")).response(),
            Ok(Err(_)) => match task.await {
                Ok((Err(error), memory_exceeded)) => {
                    Failure::classify(error, memory_exceeded).response()
                }
                Ok((Ok(()), _)) => Failure::NoResponse.response(),
                Err(join) => Failure::Host(join.into()).response(),
            },
            Err(_) => {
                task.abort();
                Failure::Deadline.response()
            }
        }
    }

    fn store(&self, started: Instant) -> wasmtime::Result<Store<HostState>> {
        let mut wasi = WasiCtx::builder();
        // Model specs are small local files: reading them on the calling thread is far cheaper
        // than a `spawn_blocking` round trip per filesystem call.
        wasi.allow_blocking_current_thread(true);
        wasi.preopened_dir(&self.config.models, GUEST_MODELS_DIR, FsPerms::ReadOnly)?;
        for (key, value) in &self.config.env {
            wasi.env(key, value);
        }
        let state = HostState {
            wasi: wasi.build(),
            http: WasiHttpCtx::new(),
            nn: self.graphs.context(),
            table: ResourceTable::new(),
            limiter: MemoryLimiter::new(self.config.memory_limit),
            hooks: DenyOutbound,
            started,
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limiter);
        let deadline = self.config.deadline;
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |ctx| {
            Ok(if ctx.data().started.elapsed() >= deadline {
                UpdateDeadline::Interrupt
            } else {
                UpdateDeadline::Yield(1)
            })
        });
        Ok(store)
    }
}
