//! KServe v2 over gRPC (`inference.GRPCInferenceService`: what `tritonclient.grpc` and
//! perf_analyzer speak), on the front's own port: HTTP/2 without TLS, told apart from REST by its
//! `application/grpc` content type. Every call becomes the function's REST v2 request (an infer
//! call in Triton's binary tensor data form, see [`infer`]) and runs through the same invocation
//! as REST, so it is metered, versioned and audited identically; the reply is translated back, and
//! an error reply becomes the gRPC status its code maps to ([`status`]).

mod infer;
mod status;

use std::sync::Arc;

use bytes::Bytes;
use ember_contract::route::{is_path_segment, ModelRef};
use ember_contract::{headers, Route};
use http_body_util::Full;
use tonic::metadata::MetadataMap;
use tonic::{Request, Response, Status};

use crate::front::Front;
use proto::grpc_inference_service_server::{GrpcInferenceService, GrpcInferenceServiceServer};
use proto::*;

/// The protocol's messages and service, generated from `host/proto/kserve_v2.proto`.
#[allow(missing_docs, clippy::all)]
pub mod proto {
    tonic::include_proto!("inference");
}

/// The gRPC service of a front, ready to be called with an HTTP/2 request.
pub type Server = GrpcInferenceServiceServer<InferenceService>;

/// Whether `request` is a gRPC call (its content type is `application/grpc` or a subtype).
pub fn is_grpc<B>(request: &http::Request<B>) -> bool {
    request
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("application/grpc"))
}

/// `request` with its URI's authority also as the `host` header: HTTP/2 carries it only in the
/// URI, which a gRPC service does not see, and the function's request needs one (its metadata
/// carries the header there).
pub fn with_host<B>(mut request: http::Request<B>) -> http::Request<B> {
    if let Some(authority) = request.uri().authority() {
        if let Ok(host) = http::HeaderValue::from_str(authority.as_str()) {
            request
                .headers_mut()
                .entry(http::header::HOST)
                .or_insert(host);
        }
    }
    request
}

/// KServe v2's gRPC service, answered by the function behind `front`.
pub struct InferenceService {
    front: Arc<Front>,
}

impl InferenceService {
    /// The gRPC server over `front`; it accepts messages as large as the function accepts bodies.
    pub fn server(front: Arc<Front>) -> Server {
        let limit = ember_function::app::predict::MAX_BODY_BYTES;
        GrpcInferenceServiceServer::new(Self { front })
            .max_decoding_message_size(limit)
            .max_encoding_message_size(limit)
    }

    /// Runs the function on `route` with the call's metadata as headers, plus `extra`; the
    /// reply's body and its public `ember-*` headers as metadata, or the error's status.
    async fn call(
        &self,
        metadata: &MetadataMap,
        route: Route<'_>,
        extra: &[(&'static str, String)],
        body: Bytes,
    ) -> Result<(http::HeaderMap, Bytes), Status> {
        let path = route.path();
        let mut request = http::Request::builder()
            .method(route.method())
            .uri(&path)
            .body(Full::new(body))
            .expect("a route's path and method are valid");
        for (name, value) in metadata.clone().into_headers() {
            let Some(name) = name else { continue };
            if !is_transport_header(name.as_str()) {
                request.headers_mut().append(name, value);
            }
        }
        for (name, value) in extra {
            let value = http::HeaderValue::from_str(value).expect("ASCII header value");
            request.headers_mut().insert(*name, value);
        }
        let reply = self.front.invoke_function(request, &path).await;
        let (parts, body) = reply.into_parts();
        if parts.status.is_success() {
            Ok((parts.headers, body))
        } else {
            Err(status::from_reply(parts.status, &parts.headers, &body))
        }
    }

    /// `call` for a route whose success is the whole answer (liveness, readiness): `answer`.
    async fn probe<T>(
        &self,
        metadata: &MetadataMap,
        route: Route<'_>,
        answer: T,
    ) -> Result<Response<T>, Status> {
        let (headers, _) = self.call(metadata, route, &[], Bytes::new()).await?;
        Ok(status::with_reply_metadata(Response::new(answer), &headers))
    }

    /// `call` for a route without a body, its reply as JSON.
    async fn get<T: serde::de::DeserializeOwned>(
        &self,
        metadata: &MetadataMap,
        route: Route<'_>,
    ) -> Result<Response<T>, Status> {
        let (headers, body) = self.call(metadata, route, &[], Bytes::new()).await?;
        let message = serde_json::from_slice(&body).map_err(|error| {
            tracing::error!(%error, "the function's v2 reply does not parse");
            Status::internal("the function's reply could not be translated")
        })?;
        Ok(status::with_reply_metadata(
            Response::new(message),
            &headers,
        ))
    }
}

/// Headers of the gRPC transport that are not the caller's to pass on.
fn is_transport_header(name: &str) -> bool {
    name.starts_with("grpc-") || matches!(name, "content-type" | "te" | "content-length")
}

/// The model and version a call names, checked to stand in a route's path.
fn model_ref<'a>(name: &'a str, version: &'a str) -> Result<ModelRef<'a>, Status> {
    if !is_path_segment(name) {
        return Err(Status::invalid_argument(format!(
            "model_name must name a model (non-empty, without '/', '?', '#' or '%'); got '{name}'"
        )));
    }
    let version = match version {
        "" => None,
        version if is_path_segment(version) => Some(version),
        version => {
            return Err(Status::invalid_argument(format!(
                "model_version must be empty or name a version or alias (without '/', '?', '#' or '%'); got '{version}'"
            )))
        }
    };
    Ok(ModelRef {
        model: name,
        version,
    })
}

#[tonic::async_trait]
impl GrpcInferenceService for InferenceService {
    async fn server_live(
        &self,
        request: Request<ServerLiveRequest>,
    ) -> Result<Response<ServerLiveResponse>, Status> {
        let live = ServerLiveResponse { live: true };
        self.probe(request.metadata(), Route::V2Health, live).await
    }

    async fn server_ready(
        &self,
        request: Request<ServerReadyRequest>,
    ) -> Result<Response<ServerReadyResponse>, Status> {
        let ready = ServerReadyResponse { ready: true };
        self.probe(request.metadata(), Route::V2Health, ready).await
    }

    async fn model_ready(
        &self,
        request: Request<ModelReadyRequest>,
    ) -> Result<Response<ModelReadyResponse>, Status> {
        let message = request.get_ref();
        let target = model_ref(&message.name, &message.version)?;
        let ready = ModelReadyResponse { ready: true };
        self.probe(request.metadata(), Route::V2Ready(target), ready)
            .await
    }

    async fn server_metadata(
        &self,
        request: Request<ServerMetadataRequest>,
    ) -> Result<Response<ServerMetadataResponse>, Status> {
        self.get(request.metadata(), Route::V2Server).await
    }

    async fn model_metadata(
        &self,
        request: Request<ModelMetadataRequest>,
    ) -> Result<Response<ModelMetadataResponse>, Status> {
        let message = request.get_ref();
        let target = model_ref(&message.name, &message.version)?;
        self.get(request.metadata(), Route::V2Metadata(target))
            .await
    }

    async fn model_infer(
        &self,
        request: Request<ModelInferRequest>,
    ) -> Result<Response<ModelInferResponse>, Status> {
        let message = request.get_ref();
        let target = model_ref(&message.model_name, &message.model_version)?;
        let rest = infer::to_rest(message)?;
        let header_length = [(
            headers::INFERENCE_HEADER_CONTENT_LENGTH,
            rest.header_length.to_string(),
        )];
        let (headers, body) = self
            .call(
                request.metadata(),
                Route::V2Infer(target),
                &header_length,
                rest.body.into(),
            )
            .await?;
        let reply = infer::from_rest(&headers, &body)?;
        Ok(status::with_reply_metadata(Response::new(reply), &headers))
    }
}
