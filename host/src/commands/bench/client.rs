//! A keep-alive HTTP/1.1 load client for benchmarks: one connection per concurrent worker.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;

use crate::stats::Samples;

/// One request to repeat: path and JSON body.
#[derive(Clone)]
pub struct Probe {
    /// Target `host:port`.
    pub address: String,
    /// Request path.
    pub path: String,
    /// JSON body.
    pub body: Bytes,
    /// `Authorization` to send (an API key as a bearer token), if any.
    pub authorization: Option<String>,
}

async fn connect(address: &str) -> anyhow::Result<SendRequest<Full<Bytes>>> {
    let stream = tokio::net::TcpStream::connect(address).await?;
    stream.set_nodelay(true)?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    Ok(sender)
}

/// Sends one request on `sender` and checks for 200; `Ok(false)` when the server closes the
/// connection after it (a gunicorn sync worker does after every request).
async fn send(sender: &mut SendRequest<Full<Bytes>>, probe: &Probe) -> anyhow::Result<bool> {
    sender.ready().await?;
    let mut request = hyper::Request::post(&probe.path)
        .header(hyper::header::HOST, &probe.address)
        .header(hyper::header::CONTENT_TYPE, "application/json");
    if let Some(authorization) = &probe.authorization {
        request = request.header(hyper::header::AUTHORIZATION, authorization);
    }
    let request = request.body(Full::new(probe.body.clone()))?;
    let response = sender.send_request(request).await?;
    let status = response.status();
    let closes = response
        .headers()
        .get(hyper::header::CONNECTION)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"close"));
    response.into_body().collect().await?;
    anyhow::ensure!(status == 200, "status {status}");
    Ok(!closes)
}

/// Sends one request on a fresh connection (cold start probes).
pub async fn once(probe: &Probe) -> anyhow::Result<()> {
    send(&mut connect(&probe.address).await?, probe).await?;
    Ok(())
}

/// Runs `concurrency` workers back to back for `duration` (or `max_requests` in all) and
/// returns every request's latency (a reconnection, where the server closed the connection,
/// counts in the next request's).
pub async fn load(
    probe: &Probe,
    concurrency: usize,
    duration: Duration,
    max_requests: usize,
) -> anyhow::Result<(Samples, Duration)> {
    let started = Instant::now();
    let per_worker = max_requests.div_ceil(concurrency);
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        let probe = probe.clone();
        workers.push(tokio::spawn(async move {
            let mut sender = connect(&probe.address).await?;
            let mut open = true;
            let mut samples = Samples::default();
            while started.elapsed() < duration && samples.len() < per_worker {
                let t = Instant::now();
                if !open {
                    sender = connect(&probe.address).await?;
                }
                open = send(&mut sender, &probe).await?;
                samples.push(t.elapsed());
            }
            anyhow::Ok(samples)
        }));
    }
    let mut all = Samples::default();
    for w in workers {
        all.extend(w.await??);
    }
    Ok((all, started.elapsed()))
}
