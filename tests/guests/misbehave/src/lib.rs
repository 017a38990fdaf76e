//! A guest that misbehaves on purpose, so tests can prove the host survives it:
//! `/loop` (or any path with the query `?loop`) spins forever, `/trap` hits `unreachable`,
//! `/grow` allocates until memory runs out, anything else answers 200.

#![cfg(all(target_arch = "wasm32", target_os = "wasi"))]

use std::io::Write as _;

use wasip2::http::types::{
    Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam,
};

struct Misbehave;

wasip2::http::proxy::export!(Misbehave);

impl wasip2::exports::http::incoming_handler::Guest for Misbehave {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        match request.path_with_query().unwrap_or_default().as_str() {
            p if p == "/loop" || p.ends_with("?loop") => {
                let mut n: u64 = 0;
                loop {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            }
            "/trap" => core::arch::wasm32::unreachable(),
            "/grow" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1u8; 1 << 20]);
                    std::hint::black_box(&hoard);
                }
            }
            _ => {
                let response = OutgoingResponse::new(Fields::new());
                let body = response.body().expect("body");
                ResponseOutparam::set(out, Ok(response));
                let mut stream = body.write().expect("stream");
                let _ = stream.write_all(b"{\"ok\":true}");
                drop(stream);
                let _ = OutgoingBody::finish(body, None);
            }
        }
    }
}
