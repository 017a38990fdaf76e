//! TLS for the front: rustls (ring) with a certificate chain and key from PEM files, HTTP/2 and
//! HTTP/1.1 offered by ALPN (gRPC clients pick h2), reloaded from the same files on SIGHUP — a
//! renewed certificate takes effect for new connections without a restart.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use anyhow::Context as _;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::ServerConfig;
use tokio_rustls::TlsAcceptor;

/// TLS options of `ember up`.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct TlsArgs {
    /// Serve HTTPS with this certificate chain (PEM), re-read on SIGHUP.
    #[arg(long, requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The certificate's private key (PEM: PKCS#8, PKCS#1 or SEC1).
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
}

impl TlsArgs {
    /// The TLS setup, when a certificate is given.
    pub fn load(&self) -> anyhow::Result<Option<Tls>> {
        match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => Tls::load(cert, key).map(Some),
            _ => Ok(None),
        }
    }
}

/// The front's TLS configuration and where it was read from.
pub struct Tls {
    cert: PathBuf,
    key: PathBuf,
    config: RwLock<Arc<ServerConfig>>,
}

impl Tls {
    /// Reads the certificate chain and key.
    pub fn load(cert: &Path, key: &Path) -> anyhow::Result<Self> {
        Ok(Self {
            config: RwLock::new(Arc::new(server_config(cert, key)?)),
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
        })
    }

    /// An acceptor with the configuration of the moment.
    pub fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(
            self.config
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        )
    }

    /// Re-reads the files; a failure keeps the configuration in use.
    pub fn reload(&self) -> anyhow::Result<()> {
        let config = server_config(&self.cert, &self.key)?;
        *self.config.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(config);
        Ok(())
    }

    /// Reloads on every SIGHUP, logging the outcome; never returns.
    pub async fn reload_on_hangup(&self) {
        let mut hangups =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
                Ok(hangups) => hangups,
                Err(error) => {
                    tracing::error!(%error, "no SIGHUP handler: the certificate is not reloadable");
                    return std::future::pending().await;
                }
            };
        while hangups.recv().await.is_some() {
            match self.reload() {
                Ok(()) => {
                    tracing::info!(cert = %self.cert.display(), "reloaded the TLS certificate")
                }
                Err(error) => tracing::error!(
                    error = format!("{error:#}"),
                    "could not reload the TLS certificate: keeping the one in use"
                ),
            }
        }
        std::future::pending().await
    }
}

fn server_config(cert: &Path, key: &Path) -> anyhow::Result<ServerConfig> {
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .with_context(|| format!("reading the certificate chain {}", cert.display()))?;
    anyhow::ensure!(!chain.is_empty(), "{} holds no certificate", cert.display());
    let private = PrivateKeyDer::from_pem_file(key)
        .with_context(|| format!("reading the private key {}", key.display()))?;
    let mut config =
        ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(chain, private)
            .context("the certificate and key do not make a TLS identity")?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}
