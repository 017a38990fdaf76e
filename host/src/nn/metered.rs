//! Inference metering inside `wasi:nn`: every graph a request reaches is wrapped so its compute
//! time and multiply-accumulate count land in that request's [`InferenceMeter`]. Guest fuel does
//! not see host-side compute, so it is measured here, in the backend call.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use wasmtime_wasi_nn::backend::{
    BackendError, BackendExecutionContext, BackendGraph, Id, NamedTensor,
};
use wasmtime_wasi_nn::{ExecutionContext, Graph, Tensor};

/// One request's inference totals.
#[derive(Debug, Default)]
pub struct InferenceMeter {
    calls: AtomicU64,
    micros: AtomicU64,
    macs: AtomicU64,
}

/// A snapshot of an [`InferenceMeter`].
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct InferenceTotals {
    /// `compute` calls.
    pub calls: u64,
    /// Wall time inside the backend, µs.
    pub micros: u64,
    /// Multiply-accumulates for the shapes given (deterministic).
    pub macs: u64,
}

impl InferenceMeter {
    /// The totals so far, and zero from now on (an instance's meter serves one request at a time).
    pub fn take(&self) -> InferenceTotals {
        InferenceTotals {
            calls: self.calls.swap(0, Ordering::Relaxed),
            micros: self.micros.swap(0, Ordering::Relaxed),
            macs: self.macs.swap(0, Ordering::Relaxed),
        }
    }

    fn record(&self, micros: u64, macs: u64) {
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.micros.fetch_add(micros, Ordering::Relaxed);
        self.macs.fetch_add(macs, Ordering::Relaxed);
    }
}

/// A graph whose executions report to a request's meter.
pub struct MeteredGraph {
    inner: Graph,
    macs_per_row: u64,
    meter: Arc<InferenceMeter>,
}

impl MeteredGraph {
    /// Wraps `inner` for one request.
    pub fn wrap(inner: Graph, macs_per_row: u64, meter: Arc<InferenceMeter>) -> Graph {
        Graph::from(Box::new(MeteredGraph {
            inner,
            macs_per_row,
            meter,
        }) as Box<dyn BackendGraph>)
    }
}

impl BackendGraph for MeteredGraph {
    fn init_execution_context(&self) -> Result<ExecutionContext, BackendError> {
        Ok(ExecutionContext::from(Box::new(MeteredContext {
            inner: self.inner.init_execution_context()?,
            macs_per_row: self.macs_per_row,
            meter: self.meter.clone(),
            batch: 1,
        })
            as Box<dyn BackendExecutionContext>))
    }
}

struct MeteredContext {
    inner: ExecutionContext,
    macs_per_row: u64,
    meter: Arc<InferenceMeter>,
    batch: u64,
}

impl BackendExecutionContext for MeteredContext {
    fn set_input(&mut self, id: Id, tensor: &Tensor) -> Result<(), BackendError> {
        self.batch = batch_of(tensor);
        self.inner.set_input(id, tensor)
    }

    fn get_output(&mut self, id: Id) -> Result<Tensor, BackendError> {
        self.inner.get_output(id)
    }

    fn compute(
        &mut self,
        inputs: Option<Vec<NamedTensor>>,
    ) -> Result<Option<Vec<NamedTensor>>, BackendError> {
        if let Some(first) = inputs.as_ref().and_then(|i| i.first()) {
            self.batch = batch_of(&first.tensor);
        }
        let started = Instant::now();
        let result = match inputs {
            Some(inputs) => self.inner.compute_with_io(inputs).map(Some),
            None => self.inner.compute().map(|()| None),
        };
        if result.is_ok() {
            self.meter.record(
                started.elapsed().as_micros() as u64,
                self.macs_per_row * self.batch,
            );
        }
        result
    }
}

fn batch_of(tensor: &Tensor) -> u64 {
    tensor.dimensions.first().copied().unwrap_or(1) as u64
}
