//! Runs the function: instances of a pre-instantiated component, each serving one caller for up to
//! `--instance-reuse` requests ([`pool`] states the isolation contract), with a deadline (epoch
//! interruption), a memory cap (ResourceLimiter), no outbound network, and the measurements
//! metering needs (fuel, CPU time, inference, peak memory, bytes in and out).

mod args;
mod cache;
mod cpu;
mod engine;
mod failure;
mod invocation;
pub(crate) use invocation::remove_private_headers;
pub mod pool;
mod state;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use bytes::Bytes;
use http_body_util::BodyExt as _;
use hyper::body::Body;
use sha2::{Digest, Sha256};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use wasmtime::component::{ComponentExportIndex, Linker, Resource};
use wasmtime::{Engine, Store, UpdateDeadline};
use wasmtime_wasi::{FsPerms, WasiCtx};
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::p2::bindings::{Proxy, ProxyPre};
use wasmtime_wasi_http::p2::types::{HostIncomingRequest, HostResponseOutparam};
use wasmtime_wasi_http::WasiHttpView as _;

pub use self::args::{RuntimeArgs, DEFAULT_CACHE_DIR};
pub(crate) use self::cache::prune;
pub use self::cache::{CacheOutcome, FileIdentity, Sha256Hasher};
use self::cpu::CpuTimed;
pub use self::failure::{error_response, json_response, Failure};
use self::invocation::{model_version, take_telemetry, BodyTap};
pub use self::invocation::{Invocation, InvocationStats};
use self::pool::{Caller, InstancePool, Warm};
pub use self::state::HostState;
use self::state::MemoryLimiter;
use crate::in_flight::InFlight;
use crate::nn::metered::InferenceMeter;
use crate::nn::registry::{GraphStore, RequestGraphs};
use crate::spin::SpinHost;
use ember_contract::headers::CALLER_KEY;
use ember_contract::names::{GUEST_MODELS_DIR, READY_EXPORT, TELEMETRY_ENV};

/// Fuel an invocation starts with: far beyond any request; the deadline is the real limit.
const FUEL_BUDGET: u64 = u64::MAX / 2;

/// Largest response body the host buffers (the function answers JSON).
const MAX_RESPONSE_BYTES: usize = 64 * 1024 * 1024;

/// How one function is run.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// The function component (`.wasm`).
    pub component: PathBuf,
    /// The cache directory and the sandbox's limits.
    pub limits: RuntimeArgs,
    /// Environment variables the function sees.
    pub env: Vec<(String, String)>,
    /// Count guest fuel (deterministic instruction counts) for metering.
    pub fuel: bool,
    /// Spin's APIs as the manifest grants them.
    pub spin: Arc<SpinHost>,
}

/// What the guest's task reports when it ends.
struct GuestRun {
    result: wasmtime::Result<()>,
    memory_exceeded: bool,
    fuel: u64,
    peak_memory_bytes: u64,
    /// The instance, when it ended cleanly and may serve its caller again.
    reusable: Option<Warm>,
    /// Its slot, held until the instance is back in the pool or dropped.
    permit: OwnedSemaphorePermit,
}

/// The instance a request runs in: a warm one of its caller's, or a store to instantiate in.
enum Instance {
    Warm(Warm),
    Fresh(Store<HostState>, Arc<InferenceMeter>),
}

/// What every function may import: WASI (p2), `wasi:http`, `wasi:nn` and Spin's APIs.
pub fn link(engine: &Engine) -> wasmtime::Result<Linker<HostState>> {
    let mut linker = Linker::<HostState>::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
    wasmtime_wasi_nn::wit::add_to_linker(&mut linker, |s: &mut HostState| {
        wasmtime_wasi_nn::wit::WasiNnView::new(&mut s.table, &mut s.nn)
    })?;
    crate::spin::add_to_linker(&mut linker, |s: &mut HostState| crate::spin::SpinView {
        host: &s.spin,
        table: &mut s.table,
    })?;
    Ok(linker)
}

/// A loaded function, ready to serve requests.
pub struct Runtime {
    engine: Engine,
    pre: ProxyPre<HostState>,
    /// The function's [`READY_EXPORT`], when it has one.
    ready: Option<ComponentExportIndex>,
    graphs: Arc<GraphStore>,
    slots: Arc<Semaphore>,
    pool: InstancePool,
    config: RuntimeConfig,
    active: AtomicU64,
    /// Whether the compiled component came from the disk cache.
    pub cache: CacheOutcome,
}

impl Runtime {
    /// Builds the engine, loads (or compiles) the component and links WASI, wasi:http and wasi:nn.
    pub fn new(config: RuntimeConfig, graphs: Arc<GraphStore>) -> anyhow::Result<Self> {
        let engine = engine::build(&config.limits, config.fuel)?;
        let (component, cache) =
            cache::load_component(&engine, &config.component, &config.limits.cache_dir)
                .with_context(|| format!("loading component {}", config.component.display()))?;
        let pre = ProxyPre::new(link(&engine)?.instantiate_pre(&component)?)?;
        let ready = component.get_export_index(None, READY_EXPORT);
        Ok(Self {
            engine,
            pre,
            ready,
            graphs,
            slots: Arc::new(Semaphore::new(config.limits.max_instances as usize)),
            pool: InstancePool::new(
                config.limits.instance_reuse,
                config.limits.max_instances as usize,
            ),
            config,
            active: AtomicU64::new(0),
            cache,
        })
    }

    /// The graphs this runtime serves.
    pub fn graphs(&self) -> &GraphStore {
        &self.graphs
    }

    /// Invocations in flight.
    pub fn active(&self) -> u64 {
        self.active.load(Ordering::Relaxed)
    }

    /// Warm instances waiting for their caller's next request.
    pub fn idle_instances(&self) -> usize {
        self.pool.idle_count()
    }

    /// Drops instances unused for `max_idle`, checking a few times per period; runs until dropped.
    pub async fn expire_idle_instances(&self, max_idle: Duration) {
        let period = (max_idle / 4).clamp(Duration::from_millis(100), Duration::from_secs(10));
        loop {
            tokio::time::sleep(period).await;
            let expired = self.pool.expire(max_idle);
            if expired > 0 {
                tracing::info!(expired, "idle instances dropped");
            }
        }
    }

    /// Runs the function on one request, in a warm instance of its caller's or a fresh one, and
    /// measures it. Never fails: host-side failures become JSON error replies.
    pub async fn invoke<B>(&self, request: hyper::Request<B>) -> Invocation
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<wasmtime_wasi_http::Error>,
    {
        let started = Instant::now();
        // Counted until the reply is complete, also when a client hangs up midway.
        let _active = InFlight::enter(&self.active);
        let bytes_in = Arc::new(AtomicU64::new(0));
        let digest = Arc::new(Mutex::new(Sha256::new()));
        let input = BodyTap {
            bytes: bytes_in.clone(),
            digest: digest.clone(),
        };
        let mut stats = InvocationStats::default();
        let mut response = match self.run(request, started, input, &mut stats).await {
            Ok(response) => response,
            Err(failure) => {
                stats.failure = Some(failure.code());
                failure.response()
            }
        };
        stats.model = model_version(response.headers());
        stats.telemetry = take_telemetry(response.headers_mut());
        stats.input_sha256 = format!(
            "{:x}",
            std::mem::take(&mut *digest.lock().unwrap()).finalize()
        );
        stats.status = response.status().as_u16();
        stats.bytes_in = bytes_in.load(Ordering::Relaxed);
        stats.bytes_out = response.body().len() as u64;
        stats.wall_us = started.elapsed().as_micros() as u64;
        Invocation { response, stats }
    }

    async fn run<B>(
        &self,
        request: hyper::Request<B>,
        started: Instant,
        input: BodyTap,
        stats: &mut InvocationStats,
    ) -> Result<hyper::Response<Bytes>, Failure>
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<wasmtime_wasi_http::Error>,
    {
        let deadline = self.config.limits.deadline();
        let remaining = || deadline.saturating_sub(started.elapsed());
        let permit = tokio::time::timeout(deadline, self.slots.clone().acquire_owned())
            .await
            .map_err(|_| Failure::Overloaded)?
            .map_err(|_| Failure::Overloaded)?;
        let caller: Caller = request.headers().get(CALLER_KEY).cloned();
        let mut instance = match self.pool.take(&caller) {
            Some(mut warm) => {
                self.prepare(&mut warm.store, started)
                    .map_err(Failure::Host)?;
                Instance::Warm(warm)
            }
            None => {
                let meter = Arc::new(InferenceMeter::default());
                let store = self.store(started, meter.clone()).map_err(Failure::Host)?;
                Instance::Fresh(store, meter)
            }
        };
        let (store, meter) = match &mut instance {
            Instance::Warm(warm) => (&mut warm.store, warm.meter.clone()),
            Instance::Fresh(store, meter) => (store, meter.clone()),
        };
        let (sender, receiver) = tokio::sync::oneshot::channel();
        let request = request.map(|body| {
            body.map_frame(move |frame| {
                if let Some(data) = frame.data_ref() {
                    input.observe(data);
                }
                frame
            })
            .map_err(Into::<wasmtime_wasi_http::Error>::into)
        });
        let incoming = store
            .data_mut()
            .http()
            .new_incoming_request(Scheme::Http, request)
            .map_err(Failure::Host)?;
        let outparam = store
            .data_mut()
            .http()
            .new_response_outparam(sender)
            .map_err(Failure::Host)?;
        let guest = Guest {
            pre: self.pre.clone(),
            ready: self.ready,
            fuel: self.config.fuel,
            reuse: self.pool.reuses(),
        };
        let mut task = tokio::spawn(CpuTimed::new(
            guest.run(permit, instance, incoming, outparam),
        ));

        let head = match tokio::time::timeout(remaining(), receiver).await {
            Ok(Ok(Ok(response))) => Ok(response),
            Ok(Ok(Err(code))) => Err(Failure::GuestError(format!("{code:?}"))),
            Ok(Err(_)) => Err(Failure::NoResponse),
            Err(_) => {
                task.abort();
                return Err(Failure::Deadline);
            }
        };
        let body = match head {
            Ok(response) => {
                let (parts, body) = response.into_parts();
                let limited = http_body_util::Limited::new(body, MAX_RESPONSE_BYTES);
                match tokio::time::timeout(remaining(), limited.collect()).await {
                    Ok(Ok(collected)) => {
                        Ok(hyper::Response::from_parts(parts, collected.to_bytes()))
                    }
                    Ok(Err(_)) => Err(Failure::NoResponse),
                    Err(_) => {
                        task.abort();
                        return Err(Failure::Deadline);
                    }
                }
            }
            Err(failure) => Err(failure),
        };
        let run = match tokio::time::timeout(remaining().max(Duration::from_millis(50)), &mut task)
            .await
        {
            Ok(Ok(run)) => run,
            Ok(Err(join)) => return Err(Failure::Host(join.into())),
            Err(_) => {
                task.abort();
                return Err(Failure::Deadline);
            }
        };
        let (guest, cpu) = run;
        stats.cpu_us = cpu.as_micros() as u64;
        stats.fuel = guest.fuel;
        stats.peak_memory_bytes = guest.peak_memory_bytes;
        stats.inference = meter.take();
        match (body, guest.result) {
            (Ok(response), Ok(())) => {
                if let Some(warm) = guest.reusable {
                    self.pool.give_back(caller, warm);
                }
                // Only now may another instance take the slot: running plus idle instances stay
                // within the pool's size.
                drop(guest.permit);
                Ok(response)
            }
            (Ok(response), Err(_)) => Ok(response),
            (Err(_), Err(error)) => Err(Failure::classify(error, guest.memory_exceeded)),
            (Err(failure), Ok(())) => Err(failure),
        }
    }

    /// Readies a warm instance for its next request: the deadline and the fuel count start over.
    fn prepare(&self, store: &mut Store<HostState>, started: Instant) -> wasmtime::Result<()> {
        let state = store.data_mut();
        state.started = started;
        state.limiter.exceeded = false;
        if self.config.fuel {
            store.set_fuel(FUEL_BUDGET)?;
        }
        store.set_epoch_deadline(1);
        Ok(())
    }

    fn store(
        &self,
        started: Instant,
        meter: Arc<InferenceMeter>,
    ) -> wasmtime::Result<Store<HostState>> {
        let mut wasi = WasiCtx::builder();
        // Model specs are small local files: reading them on the calling thread is far cheaper
        // than a `spawn_blocking` round trip per filesystem call.
        wasi.allow_blocking_current_thread(true);
        wasi.preopened_dir(
            self.graphs.catalog().root(),
            GUEST_MODELS_DIR,
            FsPerms::ReadOnly,
        )?;
        for (key, value) in &self.config.env {
            wasi.env(key, value);
        }
        // This host strips the function's private headers, so it asks for the telemetry record.
        wasi.env(TELEMETRY_ENV, "1");
        let mut state = HostState::new(
            wasi.build(),
            RequestGraphs::new(self.graphs.clone(), meter).into_context(),
            self.config.spin.clone(),
        );
        state.limiter = MemoryLimiter::new(self.config.limits.memory_limit());
        state.started = started;
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limiter);
        if self.config.fuel {
            store.set_fuel(FUEL_BUDGET)?;
        }
        let deadline = self.config.limits.deadline();
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

/// How to run the function in an instance.
struct Guest {
    pre: ProxyPre<HostState>,
    ready: Option<ComponentExportIndex>,
    fuel: bool,
    reuse: bool,
}

impl Guest {
    /// Runs the `wasi:http` handler on one request in `instance` (instantiating a fresh one), and
    /// reports how it ended, with the instance when it may serve its caller again.
    async fn run(
        self,
        permit: OwnedSemaphorePermit,
        instance: Instance,
        incoming: Resource<HostIncomingRequest>,
        outparam: Resource<HostResponseOutparam>,
    ) -> GuestRun {
        let instantiating = Instant::now();
        let (mut store, proxy, meter, served) = match instance {
            Instance::Warm(warm) => (warm.store, Some(warm.proxy), warm.meter, warm.served),
            Instance::Fresh(store, meter) => (store, None, meter, 0),
        };
        let result = async {
            let proxy = match proxy {
                Some(proxy) => proxy,
                None => self.instantiate(&mut store).await?,
            };
            proxy
                .wasi_http_incoming_handler()
                .call_handle(&mut store, incoming, outparam)
                .await?;
            Ok::<Proxy, wasmtime::Error>(proxy)
        }
        .await;
        tracing::debug!(
            run_us = instantiating.elapsed().as_micros() as u64,
            warm = served > 0,
            "instance finished"
        );
        let memory_exceeded = store.data().limiter.exceeded;
        let fuel = if self.fuel {
            FUEL_BUDGET - store.get_fuel().unwrap_or(FUEL_BUDGET)
        } else {
            0
        };
        let peak_memory_bytes = store.data().limiter.peak_bytes as u64;
        let (result, reusable) = match result {
            Ok(proxy) if self.reuse && !memory_exceeded => (
                Ok(()),
                Some(Warm {
                    meter,
                    store,
                    proxy,
                    served: served + 1,
                }),
            ),
            Ok(_) => (Ok(()), None),
            Err(error) => (Err(error), None),
        };
        GuestRun {
            result,
            memory_exceeded,
            fuel,
            peak_memory_bytes,
            reusable,
            permit,
        }
    }

    /// A new instance, readied by the function's [`READY_EXPORT`] when it has one; the fuel that
    /// took is not the request's.
    async fn instantiate(&self, store: &mut Store<HostState>) -> wasmtime::Result<Proxy> {
        let instance = self
            .pre
            .instance_pre()
            .instantiate_async(&mut *store)
            .await?;
        if let Some(ready) = &self.ready {
            let ready = instance.get_typed_func::<(), ()>(&mut *store, ready)?;
            ready.call_async(&mut *store, ()).await?;
            if self.fuel {
                store.set_fuel(FUEL_BUDGET)?;
            }
            // A reservation the limit refused is the function's choice, not this request's
            // overrun (the function then allocates as it goes).
            store.data_mut().limiter.exceeded = false;
        }
        Proxy::new(&mut *store, &instance)
    }
}
