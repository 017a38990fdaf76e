//! What one request's store holds: WASI, wasi:http, wasi:nn and Spin API contexts, its resource
//! table and its memory limiter.

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use wasmtime::component::ResourceTable;
use wasmtime::ResourceLimiter;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{
    Error as HttpError, RequestOptions, WasiBody, WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks,
    WasiHttpView,
};
use wasmtime_wasi_nn::wit::WasiNnCtx;

use crate::spin::SpinHost;

/// Per-request host state.
pub struct HostState {
    /// WASI preview 2 (filesystem preopens, environment, clocks, random).
    pub wasi: WasiCtx,
    /// wasi:http incoming request / outgoing response plumbing.
    pub http: WasiHttpCtx,
    /// The shared graphs, by name.
    pub nn: WasiNnCtx,
    /// Spin's key-value store, SQLite and variables, as the manifest grants them.
    pub spin: Arc<SpinHost>,
    /// Resources handed to the guest.
    pub table: ResourceTable,
    /// Linear-memory cap, remembering whether it had to refuse.
    pub limiter: MemoryLimiter,
    /// Outbound HTTP policy.
    pub hooks: DenyOutbound,
    /// When the request started; the epoch callback enforces the deadline from it.
    pub started: Instant,
}

impl HostState {
    /// State for one instance: no memory cap beyond the engine's, outbound HTTP denied, started now.
    pub fn new(wasi: WasiCtx, nn: WasiNnCtx, spin: Arc<SpinHost>) -> Self {
        Self {
            wasi,
            http: WasiHttpCtx::new(),
            nn,
            spin,
            table: ResourceTable::new(),
            limiter: MemoryLimiter::new(usize::MAX),
            hooks: DenyOutbound,
            started: Instant::now(),
        }
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for HostState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.hooks,
        }
    }
}

/// Functions get no outbound network: every outgoing request is denied.
#[derive(Default)]
pub struct DenyOutbound;

impl WasiHttpHooks for DenyOutbound {
    fn send_request(
        &mut self,
        _request: http::Request<WasiBody>,
        _options: Option<RequestOptions>,
        _fut: Box<dyn Future<Output = Result<(), HttpError>> + Send>,
    ) -> Box<
        dyn Future<
                Output = Result<
                    (
                        http::Response<WasiBody>,
                        Box<dyn Future<Output = Result<(), HttpError>> + Send>,
                    ),
                    HttpError,
                >,
            > + Send,
    > {
        Box::new(async { Err(HttpError::HttpRequestDenied) })
    }
}

/// Caps linear memory per instance and records a refusal, so a trap that follows it can be
/// reported as "memory limit exceeded" rather than a generic failure.
pub struct MemoryLimiter {
    /// Most bytes of linear memory one instance may have.
    pub max_bytes: usize,
    /// Whether a growth was refused.
    pub exceeded: bool,
    /// Largest size reached, in bytes.
    pub peak_bytes: usize,
}

impl MemoryLimiter {
    /// A limiter allowing `max_bytes`.
    pub fn new(max_bytes: usize) -> Self {
        Self {
            max_bytes,
            exceeded: false,
            peak_bytes: 0,
        }
    }
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.max_bytes {
            self.exceeded = true;
            return Ok(false);
        }
        self.peak_bytes = self.peak_bytes.max(desired);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }
}
