//! Instance reuse and its isolation contract.
//!
//! Instantiating a component for every request costs more than a small model's whole inference
//! (copy-on-write faults on the instance image, the language runtime's start-up, component-model
//! plumbing). So, as Spin 4 and `wasmtime serve` do for WASIp3, an instance may serve several
//! requests, one at a time. What a request can observe of an earlier one is bounded by these rules:
//!
//! - an instance only ever serves one **caller** — the `ember-caller-key` a request carries, or
//!   "no key" for requests that carry none — so one caller's request never runs in memory another
//!   caller's request wrote;
//! - it is dropped after any trap, deadline or memory-limit hit, or a reply it did not complete, so
//!   no request runs in an instance left in a broken state;
//! - it is dropped after `--instance-reuse N` requests (`1` is a fresh instance per request), and
//!   after `--idle-unload` seconds unused (scale to zero).
//!
//! Within one caller, the instance carries over: its linear memory and globals, its WASI context
//! (the models preopen, the environment) and resource table, and the graphs its wasi-nn view was
//! handed. Every request starts over on what it is limited and measured by: its deadline, fuel
//! count and inference meter (emptied after each request), its own incoming request and response
//! resources, and the memory cap (the instance's memory counts, including what earlier requests
//! grew it to). The caller is the header's exact bytes: what the client says under `--auth none`,
//! scoped to the API key's name under `--auth keys` ([`crate::tenants::gate`]).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use wasmtime::Store;
use wasmtime_wasi_http::p2::bindings::Proxy;

use super::HostState;
use crate::nn::metered::InferenceMeter;

/// Who an instance serves: the request's caller key (its exact bytes), or `None` for requests
/// without one.
pub type Caller = Option<hyper::header::HeaderValue>;

/// An instance that has served requests cleanly and may serve its caller again.
pub struct Warm {
    /// Its store: linear memory, globals and per-request state.
    pub store: Store<HostState>,
    /// Its `wasi:http` export.
    pub proxy: Proxy,
    /// The meter its wasi-nn view reports to (emptied after each request).
    pub meter: Arc<InferenceMeter>,
    /// Requests it has served.
    pub served: u32,
}

/// Warm instances waiting for their caller's next request, least recently used first.
pub struct InstancePool {
    idle: Mutex<VecDeque<(Caller, Warm, Instant)>>,
    reuse: u32,
    capacity: usize,
}

impl InstancePool {
    /// A pool keeping at most `capacity` idle instances, each serving at most `reuse` requests.
    pub fn new(reuse: u32, capacity: usize) -> Self {
        Self {
            idle: Mutex::new(VecDeque::new()),
            reuse: reuse.max(1),
            capacity,
        }
    }

    /// Whether instances serve more than one request.
    pub fn reuses(&self) -> bool {
        self.reuse > 1
    }

    fn idle(&self) -> MutexGuard<'_, VecDeque<(Caller, Warm, Instant)>> {
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The most recently used idle instance of `caller`, if any.
    pub fn take(&self, caller: &Caller) -> Option<Warm> {
        let mut idle = self.idle();
        let at = idle.iter().rposition(|(owner, _, _)| owner == caller)?;
        idle.remove(at).map(|(_, warm, _)| warm)
    }

    /// Returns an instance that served a request cleanly; it is dropped instead once it has served
    /// `--instance-reuse` requests. The least recently used idle instance makes room when full.
    pub fn give_back(&self, caller: Caller, warm: Warm) {
        if warm.served >= self.reuse || self.capacity == 0 {
            return;
        }
        let evicted = {
            let mut idle = self.idle();
            let evicted = (idle.len() >= self.capacity)
                .then(|| idle.pop_front())
                .flatten();
            idle.push_back((caller, warm, Instant::now()));
            evicted
        };
        // Dropped outside the lock: freeing an instance returns its memory to the pool.
        drop(evicted);
    }

    /// Drops instances unused for `max_idle` or longer; returns how many.
    pub fn expire(&self, max_idle: Duration) -> usize {
        let expired: Vec<_> = {
            let mut idle = self.idle();
            let keep = idle
                .iter()
                .position(|(_, _, at)| at.elapsed() < max_idle)
                .unwrap_or(idle.len());
            idle.drain(..keep).collect()
        };
        expired.len()
    }

    /// Instances waiting for a request.
    pub fn idle_count(&self) -> usize {
        self.idle().len()
    }
}
