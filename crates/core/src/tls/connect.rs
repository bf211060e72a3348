//! The channel side: lazily connected tonic channels to peers, over TLS
//! for `https://` addresses, in plaintext for `http://` ones.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use anyhow::Context as _;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tonic::transport::{Channel, Endpoint, Uri};

use super::Tls;

/// A lazily connected channel to `address`, which the setting `setting`
/// gave (named in errors). `https://` addresses need `tls` with a CA to
/// trust; the certificate must carry `server_name`, or the address's host
/// when that is `None`.
pub fn channel(
    address: &str,
    setting: &str,
    tls: Option<&Arc<Tls>>,
    server_name: Option<&str>,
) -> anyhow::Result<Channel> {
    let endpoint = Endpoint::from_shared(address.to_string())
        .with_context(|| format!("invalid {setting} `{address}`"))?;
    if endpoint.uri().scheme_str() != Some("https") {
        return Ok(endpoint.connect_lazy());
    }
    let tls = tls.filter(|tls| tls.client_config().is_some()).ok_or_else(|| {
        anyhow::anyhow!(
            "{setting} `{address}` is https:// but no CA to trust is configured (tls.ca_file or tls.client_ca_file)"
        )
    })?;
    let host = server_name
        .or_else(|| endpoint.uri().host())
        .with_context(|| format!("{setting} `{address}` has no host"))?;
    // URIs write IPv6 hosts in brackets; certificates do not.
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let name = ServerName::try_from(host.to_string())
        .with_context(|| format!("{setting}: `{host}` is not a valid server name"))?;
    // The handshake is ours (`TlsConnector`), so tonic is given the
    // `http://` form of the address to dial, and the `https` one as the
    // origin its requests name. Were it given `https://`, tonic built with
    // its own TLS features (which any crate of the workspace may turn on)
    // would refuse the address for want of its own TLS settings.
    let origin = endpoint.uri().clone();
    let dial = Endpoint::from_shared(format!("http://{}", authority(&origin)?))
        .with_context(|| format!("invalid {setting} `{address}`"))?
        .origin(origin);
    Ok(dial.connect_with_connector_lazy(TlsConnector {
        tls: tls.clone(),
        name,
    }))
}

/// `uri`'s `host:port`, the port 443 when it names none.
fn authority(uri: &Uri) -> anyhow::Result<String> {
    let authority = uri.authority().context("the address has no host")?;
    Ok(match authority.port_u16() {
        Some(_) => authority.to_string(),
        None => format!("{authority}:443"),
    })
}

/// Opens TCP connections and does the TLS handshake with the client
/// configuration current at that moment (rotated certificates are used
/// from the next connection on).
#[derive(Clone)]
struct TlsConnector {
    tls: Arc<Tls>,
    name: ServerName<'static>,
}

type Connecting =
    Pin<Box<dyn Future<Output = std::io::Result<TokioIo<TlsStream<TcpStream>>>> + Send>>;

impl tower::Service<Uri> for TlsConnector {
    type Response = TokioIo<TlsStream<TcpStream>>;
    type Error = std::io::Error;
    type Future = Connecting;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let config = self.tls.client_config();
        let name = self.name.clone();
        Box::pin(async move {
            let config =
                config.ok_or_else(|| std::io::Error::other("no TLS client configuration"))?;
            let host = uri.host().unwrap_or_default();
            let host = host.trim_start_matches('[').trim_end_matches(']');
            let port = uri.port_u16().unwrap_or(443);
            let tcp = TcpStream::connect((host, port)).await?;
            tcp.set_nodelay(true)?;
            let stream = tokio_rustls::TlsConnector::from(config)
                .connect(name, tcp)
                .await?;
            Ok(TokioIo::new(stream))
        })
    }
}
