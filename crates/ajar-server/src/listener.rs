//! The HTTPS accept loop: TLS termination, HTTP/1.1 or HTTP/2 (by ALPN) via hyper, the limits that keep
//! slow and idle clients from exhausting the server, and graceful shutdown with a bounded drain.
//!
//! - At most [`ConnectionLimits::max_connections`] connections are open at once. At the limit the loop
//!   stops accepting, so new clients wait in the kernel's listen backlog (and are served as soon as a
//!   connection closes) rather than being refused: a refusal would cost an accept and a close per attempt
//!   and turn a burst into errors, while the timeouts below make every slot free up soon.
//! - At most [`ConnectionLimits::max_per_source`] of them from one source (an IPv4 address or an IPv6 /64),
//!   except the trusted proxies; a connection beyond that is closed as soon as it is accepted.
//! - The TLS handshake must finish within [`ConnectionLimits::tls_handshake_timeout`].
//! - While no request is being handled, a connection waits for its client at most
//!   [`ConnectionLimits::header_read_timeout`]: for a complete request head (after the handshake, and after
//!   each response, so it is also the keep-alive bound), or for the client to take what it is sent. For
//!   HTTP/1 hyper enforces the head part itself; the rest, and HTTP/2, is watched here: the time counts
//!   from the last byte written to the socket, and bytes the client trickles in do not stop it. The
//!   connection is then asked to end (HTTP/2: GOAWAY), and dropped if it has not after as long again.
//! - A request body must arrive within [`REQUEST_BODY_TIMEOUT`] of its head.
//! - An HTTP/2 connection carries at most [`MAX_CONCURRENT_STREAMS`] requests at once.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::{Body, Bytes, Frame, Incoming, SizeHint};
use hyper::server::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulConnection;
use hyper_util::service::TowerToHyperService;
use ipnet::IpNet;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use crate::client_addr::source_key;
use crate::config::ConnectionLimits;

/// Back-off after a failed `accept()` (e.g. EMFILE): retrying immediately
/// would spin a core while the condition persists.
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(50);
/// From a request's head to the end of its body. Bodies are at most `--max-body-bytes` (1 MiB by default)
/// and usually a few KiB.
pub const REQUEST_BODY_TIMEOUT: Duration = Duration::from_secs(30);
/// Requests one HTTP/2 connection may have under way at once (the least RFC 9113 recommends).
pub const MAX_CONCURRENT_STREAMS: u32 = 100;
/// The same warning about a limit at most this often, so a flood does not flood the log.
const WARN_EVERY: Duration = Duration::from_secs(60);
/// File descriptors kept for everything but client connections (the store, outgoing OIDC connections).
const RESERVED_FDS: u64 = 256;

/// Serves `app` over HTTPS on `listener` until `shutdown` resolves, within `limits`.
///
/// Handlers can use the `ConnectInfo<SocketAddr>` extractor to see the peer.
/// On shutdown the listener is closed, live connections are asked to finish
/// their in-flight requests, and whatever is still open after
/// `drain_timeout` is dropped.
pub async fn serve_https(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    app: Router,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
    drain_timeout: Duration,
) -> anyhow::Result<()> {
    let local = listener.local_addr().ok();
    let acceptor = TlsAcceptor::from(tls);
    let setup = Arc::new(Setup::new(&limits));
    let slots = Arc::new(Semaphore::new(limits.max_connections.clamp(1, Semaphore::MAX_PERMITS)));
    let sources = Arc::new(SourceCounts::new(limits.max_per_source, limits.unlimited_sources.clone()));
    let (mut full_warned, mut source_warned) = (Warned::default(), Warned::default());

    // Tells every connection to wind down: finish what it is handling, take no more.
    let (stop, stopping) = watch::channel(false);
    // Owning the connection tasks lets us wait for them, and abort stragglers after the drain.
    let mut connections = JoinSet::new();
    let mut shutdown = std::pin::pin!(shutdown);

    tracing::info!(addr = ?local, max_connections = limits.max_connections, "HTTPS listener started");
    loop {
        // Reap finished connection tasks so the set does not grow unbounded.
        while connections.try_join_next().is_some() {}

        let slot = match Arc::clone(&slots).try_acquire_owned() {
            Ok(slot) => slot,
            Err(_) => {
                if full_warned.due() {
                    tracing::warn!(
                        max_connections = limits.max_connections,
                        "connection limit reached; new connections wait until one closes"
                    );
                }
                tokio::select! {
                    biased;
                    () = &mut shutdown => break,
                    slot = Arc::clone(&slots).acquire_owned() => match slot {
                        Ok(slot) => slot,
                        Err(_) => break,
                    },
                }
            }
        };
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
        let Some(source) = sources.admit(peer.ip()) else {
            if source_warned.due() {
                tracing::warn!(
                    source = %source_key(peer.ip()),
                    max_per_source = limits.max_per_source,
                    "too many connections from one source; closing its new ones"
                );
            }
            continue;
        };
        if let Err(err) = stream.set_nodelay(true) {
            tracing::debug!(%peer, error = %err, "setting TCP_NODELAY failed");
        }
        let held = Held { _slot: slot, _source: source };
        connections.spawn(serve_connection(stream, peer, acceptor.clone(), Arc::clone(&setup), app.clone(), stopping.clone(), held));
    }

    // Stop accepting before draining so new clients get a refusal, not a hang.
    drop(listener);
    tracing::info!(connections = connections.len(), ?drain_timeout, "shutting down HTTPS listener; draining connections");
    let _ = stop.send(true);
    let drained = async { while connections.join_next().await.is_some() {} };
    if tokio::time::timeout(drain_timeout, drained).await.is_err() {
        tracing::warn!(remaining = connections.len(), "drain timeout reached; closing remaining connections");
    }
    connections.shutdown().await;
    tracing::info!("HTTPS listener stopped");
    Ok(())
}

/// Lowers `limits.max_connections` to what the process may open files for, after raising its soft limit
/// on open files as far as the hard limit allows: beyond it, `accept` would fail with EMFILE, and so would
/// everything else that opens a file.
pub fn fit_to_open_files(limits: &mut ConnectionLimits) {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let Ok((mut soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else { return };
    let wanted = open_files_for(limits.max_connections);
    if soft < wanted && hard > soft {
        let raised = wanted.min(hard);
        match setrlimit(Resource::RLIMIT_NOFILE, raised, hard) {
            Ok(()) => soft = raised,
            Err(err) => tracing::debug!(error = %err, "raising the limit on open files failed"),
        }
    }
    let fits = connections_within(soft);
    if fits < limits.max_connections {
        tracing::warn!(
            wanted = limits.max_connections,
            allowed = fits,
            open_files = soft,
            "the limit on open files is too low for --max-connections; serving fewer (raise LimitNOFILE or ulimit -n)"
        );
        limits.max_connections = fits;
    }
}

/// The open files `connections` need, with what the rest of the server needs.
fn open_files_for(connections: usize) -> u64 {
    u64::try_from(connections).unwrap_or(u64::MAX).saturating_add(RESERVED_FDS)
}

/// The connections that fit in a limit of `open_files`.
fn connections_within(open_files: u64) -> usize {
    usize::try_from(open_files.saturating_sub(RESERVED_FDS).max(open_files / 2)).unwrap_or(usize::MAX).max(1)
}

/// When a warning was last logged.
#[derive(Default)]
struct Warned(Option<Instant>);

impl Warned {
    fn due(&mut self) -> bool {
        let now = Instant::now();
        if self.0.is_some_and(|at| now.duration_since(at) < WARN_EVERY) {
            return false;
        }
        self.0 = Some(now);
        true
    }
}

/// What a connection holds while it is open; dropping it frees both.
struct Held {
    _slot: OwnedSemaphorePermit,
    _source: Option<SourceGuard>,
}

/// Open connections per source. Only sources with an open connection have an entry, so the map is no
/// larger than the connection limit.
struct SourceCounts {
    max: usize,
    unlimited: Vec<IpNet>,
    open: Mutex<HashMap<IpAddr, usize>>,
}

/// One connection counted against its source; `None` inside for an unlimited source.
struct SourceGuard {
    counts: Arc<SourceCounts>,
    source: IpAddr,
}

impl SourceCounts {
    fn new(max: usize, unlimited: Vec<IpNet>) -> Self {
        SourceCounts { max: max.max(1), unlimited, open: Mutex::default() }
    }

    /// Counts a new connection from `peer`: `None` if its source already has the most it may,
    /// `Some(None)` for an unlimited source.
    fn admit(self: &Arc<Self>, peer: IpAddr) -> Option<Option<SourceGuard>> {
        let peer = peer.to_canonical();
        if self.unlimited.iter().any(|net| net.contains(&peer)) {
            return Some(None);
        }
        let source = source_key(peer);
        let mut open = self.open.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let count = open.entry(source).or_insert(0);
        if *count >= self.max {
            return None;
        }
        *count += 1;
        Some(Some(SourceGuard { counts: Arc::clone(self), source }))
    }

    #[cfg(test)]
    fn sources(&self) -> usize {
        self.open.lock().map(|o| o.len()).unwrap_or(0)
    }
}

impl Drop for SourceGuard {
    fn drop(&mut self) {
        let mut open = self.counts.open.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(count) = open.get_mut(&self.source) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                open.remove(&self.source);
            }
        }
    }
}

/// How every connection is served: its timeouts, and the HTTP/1 and HTTP/2 settings.
struct Setup {
    http1: http1::Builder,
    http2: http2::Builder<TokioExecutor>,
    tls_handshake_timeout: Duration,
    header_read_timeout: Duration,
}

impl Setup {
    fn new(limits: &ConnectionLimits) -> Self {
        let mut http1 = http1::Builder::new();
        http1.timer(TokioTimer::new()).header_read_timeout(limits.header_read_timeout);
        let mut http2 = http2::Builder::new(TokioExecutor::new());
        http2.timer(TokioTimer::new()).max_concurrent_streams(MAX_CONCURRENT_STREAMS);
        Setup { http1, http2, tls_handshake_timeout: limits.tls_handshake_timeout, header_read_timeout: limits.header_read_timeout }
    }
}

/// Handshakes and serves one connection. Failures only concern this client,
/// so they are logged at debug and never propagate to the accept loop.
async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    acceptor: TlsAcceptor,
    setup: Arc<Setup>,
    app: Router,
    stopping: watch::Receiver<bool>,
    _held: Held,
) {
    let activity = Arc::new(Activity::new());
    let stream = Tracked { inner: stream, activity: Arc::clone(&activity) };
    // A shutdown during the handshake waits for it (bounded), then winds the connection down at once.
    let tls = match tokio::time::timeout(setup.tls_handshake_timeout, acceptor.accept(stream)).await {
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
    activity.wrote();
    // HTTP/2 only when the handshake agreed on it (RFC 9113 section 3.2): guessing from the first bytes would
    // wait for them without a bound.
    let is_h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2".as_slice());

    // Inserting the extension per request (rather than layering the router
    // per connection) keeps connection setup O(1) in the number of routes.
    let handling = Arc::clone(&activity);
    let service = tower::service_fn(move |req: hyper::Request<Incoming>| {
        let guard = handling.handling();
        let deadline = Instant::now() + REQUEST_BODY_TIMEOUT;
        let mut req = req.map(|body| BodyDeadline { inner: body, deadline, timer: None });
        req.extensions_mut().insert(ConnectInfo(peer));
        let response = app.clone().oneshot(req);
        async move {
            let response = response.await;
            drop(guard);
            response
        }
    });
    let service = TowerToHyperService::new(service);
    let io = TokioIo::new(tls);
    let idle = setup.header_read_timeout;
    // Boxed, so that a connection still in its handshake (the cheapest to open) holds no room for hyper's.
    if is_h2 {
        Box::pin(drive(setup.http2.serve_connection(io, service), stopping, &activity, idle, peer)).await;
    } else {
        Box::pin(drive(setup.http1.serve_connection(io, service), stopping, &activity, idle, peer)).await;
    }
}

/// Runs `conn` until it ends. Once it has waited `idle` for its client with no request being handled, or
/// at shutdown, it is asked to end (HTTP/2: GOAWAY; HTTP/1: closed if between requests); if it has not after
/// waiting as long again, it is dropped.
async fn drive<C>(conn: C, mut stopping: watch::Receiver<bool>, activity: &Activity, idle: Duration, peer: SocketAddr)
where
    C: GracefulConnection<Error = hyper::Error>,
{
    let mut conn = std::pin::pin!(conn);
    let mut asked_to_end = false;
    loop {
        tokio::select! {
            ended = conn.as_mut() => {
                if let Err(err) = ended {
                    tracing::debug!(%peer, error = %err, "HTTP connection ended with an error");
                }
                return;
            }
            () = activity.idle_for(idle) => {
                if asked_to_end {
                    tracing::debug!(%peer, "dropping a connection that waited too long for its client");
                    return;
                }
                asked_to_end = true;
                conn.as_mut().graceful_shutdown();
            }
            _ = stopping.wait_for(|stop| *stop), if !asked_to_end => {
                asked_to_end = true;
                conn.as_mut().graceful_shutdown();
            }
        }
    }
}

/// What a connection is doing: how many of its requests are being handled, and when it last wrote.
struct Activity {
    start: Instant,
    /// Milliseconds from `start` to the last write to the socket.
    last_write: AtomicU64,
    handling: AtomicUsize,
    /// Told when the last request being handled is done.
    done: Notify,
}

impl Activity {
    fn new() -> Self {
        Activity { start: Instant::now(), last_write: AtomicU64::new(0), handling: AtomicUsize::new(0), done: Notify::new() }
    }

    fn wrote(&self) {
        let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_write.fetch_max(ms, Ordering::AcqRel);
    }

    fn handling(self: &Arc<Self>) -> Handling {
        self.handling.fetch_add(1, Ordering::AcqRel);
        Handling(Arc::clone(self))
    }

    /// Resolves once no request has been handled, and nothing written, for `limit`.
    async fn idle_for(&self, limit: Duration) {
        loop {
            let done = self.done.notified();
            let mut done = std::pin::pin!(done);
            // Registered before the count is read, so a request ending in between still wakes us.
            done.as_mut().enable();
            if self.handling.load(Ordering::Acquire) > 0 {
                done.await;
                continue;
            }
            let deadline = self.start + Duration::from_millis(self.last_write.load(Ordering::Acquire)) + limit;
            if Instant::now() >= deadline {
                return;
            }
            tokio::time::sleep_until(deadline).await;
        }
    }
}

/// A request being handled, from its head to its response's head.
struct Handling(Arc<Activity>);

impl Drop for Handling {
    fn drop(&mut self) {
        // The wait for the client starts now: the response is about to be written.
        self.0.wrote();
        if self.0.handling.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.done.notify_waiters();
        }
    }
}

/// The TCP stream, noting each write that makes progress.
struct Tracked {
    inner: TcpStream,
    activity: Arc<Activity>,
}

impl Tracked {
    fn note(&self, written: &Poll<io::Result<usize>>) {
        if matches!(written, Poll::Ready(Ok(n)) if *n > 0) {
            self.activity.wrote();
        }
    }
}

impl AsyncRead for Tracked {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let written = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.note(&written);
        written
    }

    fn poll_write_vectored(self: Pin<&mut Self>, cx: &mut Context<'_>, bufs: &[io::IoSlice<'_>]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let written = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.note(&written);
        written
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// A request body that fails once its deadline has passed.
struct BodyDeadline<B> {
    inner: B,
    deadline: Instant,
    /// Made the first time the body is not ready, so a request without one costs no timer.
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<B> Body for BodyDeadline<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        let deadline = this.deadline;
        let timer = this.timer.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => {
                Poll::Ready(Some(Err(
                    format!("the request body did not arrive within {} s of its head", REQUEST_BODY_TIMEOUT.as_secs()).into()
                )))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
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
            ConnectionLimits::default(),
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

    #[test]
    fn sources_are_limited_except_the_unlimited_ones() {
        let counts = Arc::new(SourceCounts::new(2, vec!["10.9.0.0/16".parse().unwrap()]));
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let a1 = counts.admit(ip("192.0.2.1")).unwrap();
        let a2 = counts.admit(ip("::ffff:192.0.2.1")).unwrap();
        assert!(counts.admit(ip("192.0.2.1")).is_none(), "a third from one address");
        assert!(counts.admit(ip("192.0.2.2")).is_some(), "another address");
        let v6 = [counts.admit(ip("2001:db8::1")).unwrap(), counts.admit(ip("2001:db8::2")).unwrap()];
        assert!(counts.admit(ip("2001:db8::ffff")).is_none(), "one /64 is one source");
        let proxied: Vec<_> = (0..10).map(|_| counts.admit(ip("10.9.1.1")).unwrap()).collect();
        assert!(proxied.iter().all(Option::is_none), "a trusted proxy is not counted");
        drop(a1);
        let a3 = counts.admit(ip("192.0.2.1")).unwrap();
        assert!(a3.is_some(), "a closed connection frees its place");
        drop((a2, a3, v6));
        assert_eq!(counts.sources(), 0, "only sources with open connections are kept");
    }

    #[test]
    fn connections_fit_in_the_limit_on_open_files() {
        assert_eq!(open_files_for(4096), 4096 + RESERVED_FDS);
        assert_eq!(connections_within(open_files_for(4096)), 4096);
        assert_eq!(connections_within(1024), 1024 - RESERVED_FDS as usize);
        assert_eq!(connections_within(300), 150, "half of a small limit");
        assert_eq!(connections_within(0), 1);
        assert!(connections_within(u64::MAX) > 4096);
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_is_idle_only_while_no_request_is_handled() {
        let activity = Arc::new(Activity::new());
        let limit = Duration::from_secs(10);
        let start = Instant::now();
        activity.idle_for(limit).await;
        assert_eq!(start.elapsed(), limit, "idle from the start");

        let handling = activity.handling();
        let before = Instant::now();
        assert!(tokio::time::timeout(Duration::from_secs(3600), activity.idle_for(limit)).await.is_err(), "never idle while handling");
        drop(handling);
        let after = Instant::now();
        activity.idle_for(limit).await;
        assert_eq!(after.elapsed(), limit, "idle again from the request's end");
        assert!(after > before);

        // A write pushes the deadline back; the wait resolves only a full limit after the last one.
        activity.wrote();
        let watched = tokio::spawn({
            let activity = Arc::clone(&activity);
            async move {
                activity.idle_for(limit).await;
                Instant::now()
            }
        });
        tokio::time::sleep(Duration::from_secs(5)).await;
        activity.wrote();
        let wrote_at = Instant::now();
        assert_eq!(watched.await.unwrap() - wrote_at, limit);
    }

    /// A request body that never comes.
    struct Silent;

    impl Body for Silent {
        type Data = Bytes;
        type Error = std::convert::Infallible;
        fn poll_frame(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            Poll::Pending
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_body_fails_at_its_deadline() {
        let start = Instant::now();
        let mut body = BodyDeadline { inner: Silent, deadline: start + REQUEST_BODY_TIMEOUT, timer: None };
        let err = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await.unwrap().unwrap_err();
        assert_eq!(start.elapsed(), REQUEST_BODY_TIMEOUT);
        assert!(err.to_string().contains("did not arrive within 30 s"), "{err}");
        let mut complete = BodyDeadline { inner: String::from("{}"), deadline: start, timer: None };
        let frame = std::future::poll_fn(|cx| Pin::new(&mut complete).poll_frame(cx)).await.unwrap().unwrap();
        assert_eq!(frame.into_data().unwrap(), "{}", "what has arrived is not refused");
    }
}
