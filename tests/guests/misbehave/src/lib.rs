//! A guest that misbehaves on purpose, so tests can prove the host survives it:
//! `/loop` (or any path with the query `?loop`) spins forever, `/trap` hits `unreachable`,
//! `/grow` allocates until memory runs out, anything else answers 200. It also tries to read what an
//! earlier request left in its memory: `/remember?TEXT` keeps `TEXT` in a global, `/recall` answers
//! `{"left": "<what the global holds>"}` — empty in a fresh instance.

#![cfg(all(target_arch = "wasm32", target_os = "wasi"))]

use std::io::Write as _;
use std::sync::Mutex;

use wasip2::http::types::{
    Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam,
};

struct Misbehave;

/// What `/remember` left behind for later requests in the same instance.
static LEFT: Mutex<String> = Mutex::new(String::new());

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
            p if p.starts_with("/remember?") => {
                *LEFT.lock().unwrap() = p["/remember?".len()..].to_string();
                answer(out, b"{\"ok\":true}");
            }
            "/recall" => {
                let left = LEFT.lock().unwrap().clone();
                answer(out, format!("{{\"left\":\"{left}\"}}").as_bytes());
            }
            _ => answer(out, b"{\"ok\":true}"),
        }
    }
}

fn answer(out: ResponseOutparam, json: &[u8]) {
    let response = OutgoingResponse::new(Fields::new());
    let body = response.body().expect("body");
    ResponseOutparam::set(out, Ok(response));
    let mut stream = body.write().expect("stream");
    let _ = stream.write_all(json);
    drop(stream);
    let _ = OutgoingBody::finish(body, None);
}
