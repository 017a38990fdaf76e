//! A prediction under the model's version policy (`routing.json`): the traffic split picks the
//! version, a failing version falls back to the declared fallback version or default answer, and
//! the shadow version sees a copy of the request without affecting the reply.

use ember_contract::telemetry::{Fallback, Shadow};
use ember_contract::{ApiError, Telemetry};
use serde_json::Value;

use super::predict::{self, Prepared};
use super::reply::{declared_answer, FallbackMark, Prediction, Response};
use super::{App, Inference, Request};
use crate::catalog::Catalog;
use crate::postprocess::Classification;
use crate::routing::{Pick, Routing};
use crate::spec::{ModelSpec, Task};

impl<C: Catalog, I: Inference> App<C, I> {
    /// `POST /predict` of `name` (at `version` when the path pins one).
    pub(super) fn predict(
        &self,
        request: &Request,
        name: &str,
        version: Option<&str>,
    ) -> Result<Response, ApiError> {
        let routing = self.catalog.routing(name);
        let spec = self
            .catalog
            .spec_routed(name, version, &routing, request.pick)?;
        self.remember(&spec);
        let body = predict::json_body(request.content_type, request.body)?;
        if spec.task == Task::Embedding {
            return self.predict_embeddings(&spec, &body);
        }
        let Prepared {
            input,
            features,
            top_k,
        } = predict::prepare(&spec, &body)?;
        let (spec, result, fallback) = match self.classify(&spec, input) {
            Ok(result) => (spec, result, None),
            Err(error) if error.status() >= 500 => {
                let failed = Fallback {
                    from_version: spec.version.clone(),
                    reason: error.code.to_string(),
                };
                match routing
                    .fallback
                    .as_deref()
                    .filter(|v| *v != spec.version)
                    .and_then(|v| self.run_version(name, v, &body).ok())
                {
                    Some((backup, result)) => (backup, result, Some(failed)),
                    None => return default_answer(&routing, &spec, failed, features).ok_or(error),
                }
            }
            Err(error) => return Err(error),
        };
        let shadow = routing
            .shadow
            .as_deref()
            .filter(|v| *v != spec.version)
            .and_then(|v| self.shadow(name, v, &body, result.prediction));
        let reply = Prediction {
            fallback: fallback.as_ref().map(FallbackMark::of),
            ..Prediction::new(&spec, &result, top_k)
        }
        .to_json();
        Ok(Response {
            telemetry: Some(Telemetry {
                features,
                prediction: Some(result.prediction),
                shadow,
                fallback,
            }),
            ..Response::from_model(&spec, reply)
        })
    }

    fn classify(
        &self,
        spec: &ModelSpec,
        input: crate::tensor::Tensor,
    ) -> Result<Classification, ApiError> {
        let outputs = self.inference.infer(spec, vec![input])?;
        predict::finish(spec, &outputs)
    }

    /// Preprocesses and classifies `body` with another version of the model (fallback, shadow).
    fn run_version(
        &self,
        name: &str,
        version: &str,
        body: &Value,
    ) -> Result<(ModelSpec, Classification), ApiError> {
        let spec = self.catalog.spec(name, Some(version), Pick::default())?;
        let result = self.classify(&spec, predict::prepare(&spec, body)?.input)?;
        Ok((spec, result))
    }

    /// Runs the shadow version on the same request; its failures never reach the caller.
    fn shadow(&self, name: &str, version: &str, body: &Value, returned: usize) -> Option<Shadow> {
        let (spec, result) = self.run_version(name, version, body).ok()?;
        Some(Shadow {
            version: spec.version,
            prediction: result.prediction,
            agrees: result.prediction == returned,
        })
    }
}

/// The model's declared default answer, marked as a fallback, when it has one.
fn default_answer(
    routing: &Routing,
    spec: &ModelSpec,
    failed: Fallback,
    features: Vec<f64>,
) -> Option<Response> {
    let answer = routing.default_answer.as_ref()?;
    let (body, telemetry) = declared_answer(answer, &spec.name, failed, features);
    Some(Response {
        telemetry: Some(telemetry),
        ..Response::from_model(spec, body)
    })
}
