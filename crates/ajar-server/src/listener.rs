//! The HTTPS accept loop: TLS termination, HTTP/1.1 + HTTP/2 via hyper, and
//! graceful shutdown with a bounded drain.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

/// A client that has not finished the TLS handshake by then is dropped, so
/// idle or slow sockets cannot pile up before any HTTP timeout applies.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Back-off after a failed `accept()` (e.g. EMFILE): retrying immediately
/// would spin a core while the condition persists.
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(50);

/// Serves `app` over HTTPS on `listener` until `shutdown` resolves.
///
/// Handlers can use the `ConnectInfo<SocketAddr>` extractor to see the peer.
/// On shutdown the listener is closed, live connections are asked to finish
/// their in-flight requests, and whatever is still open after
/// `drain_timeout` is dropped.
pub async fn serve_https(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
    drain_timeout: Duration,
) -> anyhow::Result<()> {
    let local = listener.local_addr().ok();
    let acceptor = TlsAcceptor::from(tls);
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // A timer enables hyper's default HTTP/1 header-read timeout (slowloris)
    // and HTTP/2 keep-alive handling.
    builder.http1().timer(TokioTimer::new());
    builder.http2().timer(TokioTimer::new());
    let builder = Arc::new(builder);

    let graceful = GracefulShutdown::new();
    // Owning the connection tasks lets us abort stragglers after the drain.
    let mut connections = JoinSet::new();
    let mut shutdown = std::pin::pin!(shutdown);

    tracing::info!(addr = ?local, "HTTPS listener started");
    loop {
        // Reap finished connection tasks so the set does not grow unbounded.
        while connections.try_join_next().is_some() {}

        let accepted = tokio::select! {
            biased;
            () = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(conn) => conn,
            Err(err) => {
                if is_connection_error(&err) {
                    // The peer went away between SYN and accept: nothing to do.
                    tracing::debug!(error = %err, "accept failed");
                } else {
                    tracing::warn!(error = %err, "accept failed; backing off");
                    tokio::time::sleep(ACCEPT_ERROR_BACKOFF).await;
                }
                continue;
            }
        };
        if let Err(err) = stream.set_nodelay(true) {
            tracing::debug!(%peer, error = %err, "setting TCP_NODELAY failed");
        }
        connections.spawn(serve_connection(stream, peer, acceptor.clone(), Arc::clone(&builder), app.clone(), graceful.watcher()));
    }

    // Stop accepting before draining so new clients get a refusal, not a hang.
    drop(listener);
    tracing::info!(connections = connections.len(), ?drain_timeout, "shutting down HTTPS listener; draining connections");
    if tokio::time::timeout(drain_timeout, graceful.shutdown()).await.is_err() {
        tracing::warn!(remaining = connections.len(), "drain timeout reached; closing remaining connections");
    }
    connections.shutdown().await;
    tracing::info!("HTTPS listener stopped");
    Ok(())
}

/// Handshakes and serves one connection. Failures only concern this client,
/// so they are logged at debug and never propagate to the accept loop.
async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    acceptor: TlsAcceptor,
    builder: Arc<auto::Builder<TokioExecutor>>,
    app: Router,
    watcher: Watcher,
) {
    // The watcher is held through the handshake so a shutdown during it
    // still waits for (and then immediately winds down) this connection.
    let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(err)) => {
            tracing::debug!(%peer, error = %err, "TLS handshake failed");
            return;
        }
        Err(_) => {
            tracing::debug!(%peer, "TLS handshake timed out");
            return;
        }
    };

    // Inserting the extension per request (rather than layering the router
    // per connection) keeps connection setup O(1) in the number of routes.
    let service = tower::service_fn(move |mut req: hyper::Request<Incoming>| {
        req.extensions_mut().insert(ConnectInfo(peer));
        app.clone().oneshot(req)
    });
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(tls), TowerToHyperService::new(service));
    if let Err(err) = watcher.watch(conn).await {
        tracing::debug!(%peer, error = %err, "HTTP connection ended with an error");
    }
}

/// Errors that concern a single aborted connection rather than the listener.
fn is_connection_error(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionRefused | io::ErrorKind::Interrupted
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::ensure_self_signed;
    use axum::routing::get;
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, ServerName};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_rustls::TlsConnector;

    async fn get_over_tls(connector: &TlsConnector, addr: SocketAddr, path: &str) -> String {
        let tcp = TcpStream::connect(addr).await.unwrap();
        let name = ServerName::try_from("localhost").unwrap();
        let mut tls = connector.connect(name, tcp).await.unwrap();
        let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
        tls.write_all(request.as_bytes()).await.unwrap();
        let mut response = Vec::new();
        tls.read_to_end(&mut response).await.unwrap();
        String::from_utf8(response).unwrap()
    }

    #[tokio::test]
    async fn serves_https_with_connect_info_and_shuts_down() {
        let data = tempfile::tempdir().unwrap();
        let setup = ensure_self_signed(data.path(), &[]).unwrap();

        let app = Router::new().route("/peer", get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move { peer.ip().to_string() }));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve_https(
            listener,
            Arc::clone(&setup.server_config),
            app,
            async move {
                let _ = stop_rx.await;
            },
            Duration::from_secs(1),
        ));

        // A client speaking garbage must not take the loop down.
        let mut junk = TcpStream::connect(addr).await.unwrap();
        junk.write_all(b"definitely not a TLS ClientHello\r\n\r\n").await.unwrap();
        let mut sink = Vec::new();
        let _ = junk.read_to_end(&mut sink).await;

        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(&setup.ca_pem_path).unwrap() {
            roots.add(cert.unwrap()).unwrap();
        }
        let mut client = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        // We hand-write HTTP/1.1 below, so do not let the server pick h2.
        client.alpn_protocols = vec![b"http/1.1".to_vec()];
        let connector = TlsConnector::from(Arc::new(client));

        let response = get_over_tls(&connector, addr, "/peer").await;
        assert!(response.starts_with("HTTP/1.1 200 "), "{response}");
        let (_, body) = response.split_once("\r\n\r\n").unwrap();
        assert_eq!(body, "127.0.0.1");

        // A connection that never handshakes must not block shutdown past
        // the drain timeout.
        let _idle = TcpStream::connect(addr).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;

        stop_tx.send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(5), server).await.expect("serve_https did not return after shutdown").unwrap().unwrap();

        // The listener is closed once serve_https has returned.
        assert!(TcpStream::connect(addr).await.is_err());
    }
}
