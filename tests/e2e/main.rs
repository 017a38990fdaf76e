//! End-to-end tests: the built `ember` binary, the real component and the real models, over HTTP
//! on 127.0.0.1.

mod bad_requests;
mod browser;
mod clients;
mod concurrency;
mod decisions;
mod embeddings;
mod fileserver;
mod imagenet;
mod isolation;
mod lifecycle;
mod metering;
mod operator;
mod outcomes;
mod prometheus;
mod reference;
mod scale_to_zero;
mod spin;
mod support;
mod tenants;
mod variants;
