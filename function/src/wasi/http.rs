//! The `wasi:http/incoming-handler` export: reads the request, runs the [`App`], writes JSON.

use std::io::Write as _;

use wasip2::http::types::{
    Fields, IncomingBody, IncomingRequest, Method, OutgoingBody, OutgoingResponse, ResponseOutparam,
};
use wasip2::io::streams::StreamError;

use ember_contract::names::{DEFAULT_MODEL, DEFAULT_MODEL_ENV, TELEMETRY_ENV};
use ember_contract::route::is_v2_path;
use ember_contract::{headers, ApiError, Code};

#[cfg(feature = "spin")]
use super::spin::Arrival;
use super::{Engine, InstanceCatalog};
use crate::app::predict::{too_large, MAX_BODY_BYTES};
use crate::app::{App, Request, Response};
use crate::routing::Pick;

struct Handler;

wasip2::http::proxy::export!(Handler);

impl wasip2::exports::http::incoming_handler::Guest for Handler {
    fn handle(request: IncomingRequest, response_out: ResponseOutparam) {
        super::request(|| handle(request, response_out));
    }
}

/// Reads the request, runs the [`App`] (or, in the Spin build, the management API) and sends its
/// reply.
fn handle(request: IncomingRequest, response_out: ResponseOutparam) {
    #[cfg(feature = "spin")]
    let arrived = Arrival::now();
    let path = request.path_with_query().unwrap_or_default();
    let body = read_body(&request);
    let method = method_name(&request.method());
    #[cfg(feature = "spin")]
    if let Some(rest) = path.strip_prefix(ember_contract::manage::PREFIX) {
        let response = match &body {
            Ok(body) => super::spin::manage(
                &InstanceCatalog::default(),
                &crate::manage::ManageRequest {
                    method: &method,
                    path: rest,
                    authorization: header(&request, "authorization").as_deref(),
                    if_match: header(&request, headers::IF_MATCH).as_deref(),
                    body,
                },
            ),
            Err(error) => Response::error(error, false),
        };
        return send(response_out, &response, &[]);
    }
    let response = match &body {
        Ok(body) => {
            let content_type = header(&request, "content-type");
            let inference_header_length =
                header(&request, headers::INFERENCE_HEADER_CONTENT_LENGTH);
            let caller_key = header(&request, headers::CALLER_KEY);
            let allowed_models = header(&request, headers::ALLOWED_MODELS);
            let default_model =
                std::env::var(DEFAULT_MODEL_ENV).unwrap_or_else(|_| DEFAULT_MODEL.into());
            let app = App::new(InstanceCatalog::default(), Engine, default_model);
            app.handle(&Request {
                method: &method,
                path: &path,
                content_type: content_type.as_deref(),
                inference_header_length: inference_header_length.as_deref(),
                body,
                pick: Pick {
                    caller_key: caller_key.as_deref(),
                    entropy: wasip2::random::random::get_random_u64(),
                },
                allowed_models: allowed_models.as_deref(),
            })
        }
        Err(error) => Response::error(error, is_v2_path(&path)),
    };
    // The Spin build files the prediction's record, and tells a client of a host that did not
    // name the invocation the id it is filed under.
    #[cfg(feature = "spin")]
    let extra = arrived.record(
        // Only a host that strips clients' private headers names the invocation; elsewhere
        // (Spin) a client could, so the function names it.
        header(&request, headers::INVOCATION_ID_HINT).filter(|_| host_strips_private_headers()),
        &path,
        body.as_deref().unwrap_or_default(),
        &response,
    );
    #[cfg(not(feature = "spin"))]
    let extra = [];
    send(response_out, &response, &extra);
}

fn method_name(method: &Method) -> String {
    match method {
        Method::Get => "GET".into(),
        Method::Head => "HEAD".into(),
        Method::Post => "POST".into(),
        Method::Put => "PUT".into(),
        Method::Delete => "DELETE".into(),
        Method::Connect => "CONNECT".into(),
        Method::Options => "OPTIONS".into(),
        Method::Trace => "TRACE".into(),
        Method::Patch => "PATCH".into(),
        Method::Other(other) => other.to_ascii_uppercase(),
    }
}

fn header(request: &IncomingRequest, name: &str) -> Option<String> {
    let values = request.headers().get(name);
    values
        .first()
        .map(|v| String::from_utf8_lossy(v).into_owned())
}

/// Reads the whole body, refusing (413) once it passes [`MAX_BODY_BYTES`]. A refused body is
/// still drained (up to [`MAX_DRAIN_BYTES`]) so the client can read the 413 instead of a broken pipe.
fn read_body(request: &IncomingRequest) -> Result<Vec<u8>, ApiError> {
    let unreadable = || ApiError::new(Code::UnreadableBody, "the body could not be read");
    let declared = header(request, "content-length").and_then(|v| v.trim().parse::<usize>().ok());
    let body: IncomingBody = request.consume().map_err(|_| unreadable())?;
    let stream = body.stream().map_err(|_| unreadable())?;
    let mut bytes = Vec::with_capacity(declared.unwrap_or(0).min(MAX_BODY_BYTES));
    let mut seen = 0usize;
    let too_big = declared.is_some_and(|n| n > MAX_BODY_BYTES);
    loop {
        match stream.blocking_read(64 * 1024) {
            Ok(chunk) => {
                seen += chunk.len();
                if too_big || seen > MAX_BODY_BYTES {
                    if seen > MAX_DRAIN_BYTES {
                        return Err(too_large());
                    }
                    bytes = Vec::new();
                } else {
                    bytes.extend_from_slice(&chunk);
                }
            }
            Err(StreamError::Closed) => break,
            Err(StreamError::LastOperationFailed(_)) => return Err(unreadable()),
        }
    }
    drop(stream);
    IncomingBody::finish(body);
    if too_big || seen > MAX_BODY_BYTES {
        return Err(too_large());
    }
    Ok(bytes)
}

/// Most bytes of an oversized body read (and discarded) before answering 413 regardless.
const MAX_DRAIN_BYTES: usize = 64 * 1024 * 1024;

/// Whether the host asked for the telemetry header ([`TELEMETRY_ENV`]), and so strips private
/// headers both ways: Ember's host does; Spin and `wasmtime serve` pass headers through.
fn host_strips_private_headers() -> bool {
    std::env::var_os(TELEMETRY_ENV).is_some()
}

/// Sends `response`, with `extra` headers.
fn send(out: ResponseOutparam, response: &Response, extra: &[(&str, String)]) {
    let encoded = response.encode();
    let mut fields = vec![(
        "content-type".to_string(),
        encoded.content_type.as_bytes().to_vec(),
    )];
    for (name, value) in extra {
        fields.push((name.to_string(), value.as_bytes().to_vec()));
    }
    if let Some(allow) = response.allow {
        fields.push(("allow".to_string(), allow.as_bytes().to_vec()));
    }
    if let Some(etag) = &response.etag {
        fields.push((headers::ETAG.to_string(), etag.as_bytes().to_vec()));
    }
    if let Some(length) = encoded.header_length {
        fields.push((
            headers::INFERENCE_HEADER_CONTENT_LENGTH.to_string(),
            length.to_string().into_bytes(),
        ));
    }
    if let Some(model) = &response.model {
        fields.push((headers::MODEL.to_string(), model.model.as_bytes().to_vec()));
        fields.push((
            headers::MODEL_VERSION.to_string(),
            model.version.as_bytes().to_vec(),
        ));
    }
    // Only for a host that asked for it (and strips it): on others it would reach the client.
    if let Some(telemetry) = response
        .telemetry
        .as_ref()
        .filter(|_| host_strips_private_headers())
    {
        fields.push((
            headers::TELEMETRY.to_string(),
            telemetry.to_header().into_bytes(),
        ));
    }
    let headers = Fields::from_list(&fields).expect("model names are valid header values");
    let outgoing = OutgoingResponse::new(headers);
    let _ = outgoing.set_status_code(response.status);
    let body = outgoing.body().expect("body is taken once");
    ResponseOutparam::set(out, Ok(outgoing));
    if let Ok(mut stream) = body.write() {
        // A client that went away is not the function's failure.
        let _ = stream
            .write_all(&encoded.bytes)
            .and_then(|_| std::io::Write::flush(&mut stream));
    }
    let _ = OutgoingBody::finish(body, None);
}
