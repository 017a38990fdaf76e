//! What both backends' graphs share: one execution of a graph loaded once, whose inputs are set by
//! name or index, run in one go, and whose outputs are read back by name or index.

use std::sync::Arc;

use wasmtime_wasi_nn::backend::{
    BackendError, BackendExecutionContext, BackendGraph, Id, NamedTensor,
};
use wasmtime_wasi_nn::{ExecutionContext, Tensor};

/// A loaded graph as an execution context sees it.
pub trait NamedGraph: Send + Sync + 'static {
    /// The graph's declared inputs, in order (what an index names).
    fn input_names(&self) -> &[String];
    /// Runs the graph; the outputs come in its declared order.
    fn run(&self, inputs: Vec<NamedTensor>) -> Result<Vec<NamedTensor>, BackendError>;
}

/// A graph shared by every execution context made from it.
pub struct SharedGraph<G>(pub Arc<G>);

impl<G: NamedGraph> BackendGraph for SharedGraph<G> {
    fn init_execution_context(&self) -> Result<ExecutionContext, BackendError> {
        Ok(ExecutionContext::from(Box::new(NamedContext {
            graph: self.0.clone(),
            inputs: Vec::new(),
            outputs: Vec::new(),
        })
            as Box<dyn BackendExecutionContext>))
    }
}

/// One execution of a shared graph.
struct NamedContext<G> {
    graph: Arc<G>,
    inputs: Vec<NamedTensor>,
    outputs: Vec<NamedTensor>,
}

impl<G: NamedGraph> BackendExecutionContext for NamedContext<G> {
    fn set_input(&mut self, id: Id, tensor: &Tensor) -> Result<(), BackendError> {
        let name = match id {
            Id::Name(name) => name,
            Id::Index(i) => self
                .graph
                .input_names()
                .get(i as usize)
                .cloned()
                .ok_or_else(|| invalid(format!("no input #{i}")))?,
        };
        self.inputs.retain(|t| t.name != name);
        self.inputs.push(NamedTensor {
            name,
            tensor: tensor.clone(),
        });
        Ok(())
    }

    fn get_output(&mut self, id: Id) -> Result<Tensor, BackendError> {
        let found = match &id {
            Id::Name(name) => self.outputs.iter().find(|t| &t.name == name),
            Id::Index(i) => self.outputs.get(*i as usize),
        };
        found
            .map(|t| t.tensor.clone())
            .ok_or_else(|| invalid(format!("no output {id:?}")))
    }

    fn compute(
        &mut self,
        inputs: Option<Vec<NamedTensor>>,
    ) -> Result<Option<Vec<NamedTensor>>, BackendError> {
        match inputs {
            Some(inputs) => self.graph.run(inputs).map(Some),
            None => {
                self.outputs = self.graph.run(std::mem::take(&mut self.inputs))?;
                Ok(None)
            }
        }
    }
}

/// A backend error for a request the graph cannot take.
pub fn invalid(message: String) -> BackendError {
    BackendError::BackendAccess(wasmtime::format_err!("{message}"))
}
