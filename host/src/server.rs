//! The HTTP front: accepts loopback or network connections (HTTP/1.1, keep-alive) and hands each
//! request to the runtime.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::runtime::Runtime;

/// Serves `runtime` on `listener` until the process ends.
pub async fn serve(listener: TcpListener, runtime: Arc<Runtime>) -> anyhow::Result<()> {
    loop {
        let (stream, peer) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        let runtime = runtime.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| {
                let runtime = runtime.clone();
                async move { Ok::<_, Infallible>(runtime.handle(request).await) }
            });
            if let Err(error) = http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                log_connection_error(peer, &error);
            }
        });
    }
}

fn log_connection_error(peer: SocketAddr, error: &hyper::Error) {
    if !error.is_incomplete_message() {
        tracing::debug!(%peer, %error, "connection ended with an error");
    }
}
