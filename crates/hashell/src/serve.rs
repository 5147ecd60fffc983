//! Serving the REST API over plain TCP or TLS: one accept loop, one HTTP/1 connection
//! task per client, with the client's address (and whether it presented a verified
//! certificate) attached to every request for the allow-list and client-certificate
//! checks.

use axum::Router;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tracing::{debug, warn};

/// Who sent a request: its address, and whether it presented a client certificate the
/// server verified (TLS with `client_ca_file`).
#[derive(Clone, Copy, Debug)]
pub struct Peer {
    /// Client address.
    pub addr: SocketAddr,
    /// A verified client certificate came with the connection.
    pub verified_cert: bool,
}

/// A slow client gets this long to send its request headers (and its TLS handshake).
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// Accepts connections forever.
pub async fn serve(listener: TcpListener, app: Router, tls: Option<Arc<rustls::ServerConfig>>) {
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    loop {
        let (tcp, addr) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                // Out of file descriptors, typically: back off instead of spinning.
                warn!(error = %e, "REST API: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let app = app.clone();
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            match acceptor {
                None => connection(tcp, app, Peer { addr, verified_cert: false }).await,
                Some(a) => match tokio::time::timeout(HEADER_TIMEOUT, a.accept(tcp)).await {
                    Ok(Ok(tls)) => {
                        let verified_cert = tls.get_ref().1.peer_certificates().is_some_and(|c| !c.is_empty());
                        connection(tls, app, Peer { addr, verified_cert }).await
                    }
                    Ok(Err(e)) => debug!(%addr, error = %e, "REST API: TLS handshake failed"),
                    Err(_) => debug!(%addr, "REST API: TLS handshake timed out"),
                },
            }
        });
    }
}

async fn connection<S>(stream: S, app: Router, peer: Peer)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    use tower::ServiceExt;
    let svc = hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
        req.extensions_mut().insert(peer);
        app.clone().oneshot(req.map(axum::body::Body::new))
    });
    let r = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
        .await;
    if let Err(e) = r {
        debug!(addr = %peer.addr, error = %e, "REST API connection");
    }
}
