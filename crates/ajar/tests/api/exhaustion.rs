//! Clients that would exhaust a server, against a real `ajar serve` over TLS on loopback: connections
//! that never finish their handshake, request heads sent a byte at a time, idle and stalled connections,
//! too many connections from one address, and failed sign-ins from many addresses. Each is cut off or
//! contained, and a normal client is served meanwhile.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode, redirect};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::common::Server;
use crate::dashboard::hidden_csrf;

/// How much later than its timeout a connection may be closed and still pass: generous, for a busy machine.
const SLACK: Duration = Duration::from_secs(5);
const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

fn socket_addr(s: &Server) -> SocketAddr {
    s.url.strip_prefix("https://").unwrap().parse().unwrap()
}

fn ca(s: &Server) -> Vec<u8> {
    std::fs::read(s.ca_path()).unwrap()
}

/// A client of its own (so its own connections), from `local`, trusting only the server's CA.
fn https_client(ca: &[u8], local: IpAddr) -> reqwest::Client {
    reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca).unwrap())
        .local_address(local)
        .redirect(redirect::Policy::none())
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

/// The status of `GET /healthz` from a new client at `local`.
async fn health_from(s: &Server, local: IpAddr) -> StatusCode {
    https_client(&ca(s), local).get(format!("{}/healthz", s.url)).send().await.expect("a normal client is served").status()
}

fn tls_config(s: &Server, alpn: &[u8]) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(s.ca_path()).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![alpn.to_vec()];
    Arc::new(config)
}

/// A TCP connection to `to` from `local`, with an optional receive buffer size.
async fn connect_from(local: IpAddr, to: SocketAddr, recv_buffer: Option<u32>) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    if let Some(size) = recv_buffer {
        socket.set_recv_buffer_size(size).unwrap();
    }
    socket.bind(SocketAddr::new(local, 0)).unwrap();
    tokio::time::timeout(Duration::from_secs(5), socket.connect(to)).await.expect("connected within 5 s").unwrap()
}

/// A TLS connection that agreed on `alpn` (b"http/1.1" or b"h2").
async fn tls_connect(s: &Server, alpn: &[u8], recv_buffer: Option<u32>) -> TlsStream<TcpStream> {
    let tcp = connect_from(LOCALHOST, socket_addr(s), recv_buffer).await;
    let connect = TlsConnector::from(tls_config(s, alpn)).connect(ServerName::try_from("localhost").unwrap(), tcp);
    let tls = tokio::time::timeout(Duration::from_secs(5), connect).await.expect("handshake within 5 s").unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(alpn));
    tls
}

/// The first bytes a TLS client sends: its ClientHello.
fn client_hello(s: &Server) -> Vec<u8> {
    let mut conn = rustls::ClientConnection::new(tls_config(s, b"http/1.1"), ServerName::try_from("localhost").unwrap()).unwrap();
    let mut hello = Vec::new();
    conn.write_tls(&mut hello).unwrap();
    hello
}

/// Reads (and discards) until the server closes `stream`, with an end of stream or an error: how long
/// after `since` that was. Panics if it has not by `since + limit`.
async fn closed_by_server(mut stream: impl AsyncRead + Unpin, since: Instant, limit: Duration) -> Duration {
    let mut buf = vec![0u8; 64 * 1024];
    let closed = async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout_at((since + limit).into(), closed).await.expect("the server did not close the connection in time");
    since.elapsed()
}

/// Sends `head` and then `a`s, one byte every 100 ms (30 s worth at most, which is never a complete
/// request head), until the server closes the connection: how long after `since` it did.
async fn trickle(tls: TlsStream<TcpStream>, head: Vec<u8>, since: Instant, limit: Duration) -> Duration {
    let (reader, mut writer) = tokio::io::split(tls);
    let bytes: Vec<u8> = head.into_iter().chain(std::iter::repeat(b'a')).take(300).collect();
    let write = async move {
        for byte in bytes {
            if writer.write_all(&[byte]).await.is_err() || writer.flush().await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        std::future::pending::<()>().await
    };
    tokio::select! {
        after = closed_by_server(reader, since, limit) => after,
        () = write => unreachable!(),
    }
}

#[tokio::test]
async fn connections_that_never_finish_their_handshake_are_closed_and_free_their_slots() {
    const TIMEOUT: Duration = Duration::from_secs(2);
    let s = Server::start(&["--max-connections", "8", "--tls-handshake-timeout", "2"]).await;
    let (to, hello) = (socket_addr(&s), client_hello(&s));
    let start = Instant::now();
    let mut held = Vec::new();
    for i in 0..8 {
        let mut tcp = connect_from(LOCALHOST, to, None).await;
        // Five send nothing; three send half a ClientHello.
        if i >= 5 {
            tcp.write_all(&hello[..hello.len() / 2]).await.unwrap();
        }
        held.push(tokio::spawn(closed_by_server(tcp, start, TIMEOUT + SLACK)));
    }
    // Every connection slot is taken: a normal client waits for one, and is served once one is free.
    let normal = {
        let (client, url) = (https_client(&ca(&s), LOCALHOST), format!("{}/healthz", s.url));
        tokio::spawn(async move {
            let status = client.get(url).send().await.expect("the waiting client is served").status();
            (status, start.elapsed())
        })
    };
    for closed in held {
        let after = closed.await.unwrap();
        assert!(after >= TIMEOUT, "closed after {after:?}, before the handshake timeout");
    }
    let (status, served_after) = normal.await.unwrap();
    assert_eq!(status, StatusCode::OK);
    assert!(served_after >= TIMEOUT, "served after {served_after:?}, while every slot was still held");
    assert_eq!(health_from(&s, LOCALHOST).await, StatusCode::OK);
    let log = std::fs::read_to_string(s.log_path()).unwrap();
    assert!(log.contains("connection limit reached"), "the operator is told:\n{log}");
}

#[tokio::test]
async fn one_address_holds_at_most_its_share_of_connections() {
    let s = Server::start(&["--max-connections-per-address", "4", "--tls-handshake-timeout", "60"]).await;
    let (to, greedy, other) = (socket_addr(&s), IpAddr::V4(Ipv4Addr::new(127, 0, 3, 1)), IpAddr::V4(Ipv4Addr::new(127, 0, 3, 2)));
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(connect_from(greedy, to, None).await);
    }
    // A fifth from the same address is closed at once, long before its handshake would time out.
    let start = Instant::now();
    let fifth = connect_from(greedy, to, None).await;
    closed_by_server(fifth, start, SLACK).await;
    assert_eq!(health_from(&s, other).await, StatusCode::OK, "another address is served");
    // The four are still open, waiting for their handshake.
    for tcp in &held {
        let mut byte = [0u8; 1];
        assert!(matches!(tcp.try_read(&mut byte), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock), "still open");
    }
    // Once one of them closes, the address may connect again (as soon as the server has seen it go).
    drop(held.pop());
    let client = https_client(&ca(&s), greedy);
    let deadline = Instant::now() + SLACK;
    loop {
        match client.get(format!("{}/healthz", s.url)).send().await {
            Ok(resp) => break assert_eq!(resp.status(), StatusCode::OK),
            Err(_) if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(100)).await,
            Err(e) => panic!("the address was not served again after closing a connection: {e}"),
        }
    }
}

#[tokio::test]
async fn slow_idle_and_stalled_clients_are_cut_off_after_the_header_timeout() {
    const TIMEOUT: Duration = Duration::from_secs(2);
    let s = Server::start(&["--header-read-timeout", "2"]).await;
    // HTTP/1 heads are hyper's to time out; an HTTP/2 connection is first sent GOAWAY, then dropped after
    // as long again.
    let (h1_limit, h2_limit) = (TIMEOUT + SLACK, 2 * TIMEOUT + SLACK);
    let start = Instant::now();
    let h1_slow = tls_connect(&s, b"http/1.1", None).await;
    let h1_silent = tls_connect(&s, b"http/1.1", None).await;
    let h2_silent = tls_connect(&s, b"h2", None).await;
    let h2_slow = tls_connect(&s, b"h2", None).await;
    let slow_head = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Slow: ";
    let h1_slow = tokio::spawn(trickle(h1_slow, slow_head.to_vec(), start, h1_limit));
    let h1_silent = tokio::spawn(closed_by_server(h1_silent, start, h1_limit));
    let h2_silent = tokio::spawn(closed_by_server(h2_silent, start, h2_limit));
    // The connection preface, an empty SETTINGS frame, and a HEADERS frame of 64 bytes that never all come.
    let mut h2_head = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    h2_head.extend_from_slice(&[0, 0, 0, 0x4, 0, 0, 0, 0, 0]);
    h2_head.extend_from_slice(&[0, 0, 64, 0x1, 0x4, 0, 0, 0, 1]);
    let h2_slow = tokio::spawn(trickle(h2_slow, h2_head, start, h2_limit));

    // Meanwhile a normal client is served, and a request that takes longer than the timeout (an agent's
    // long-poll) is not cut.
    assert_eq!(health_from(&s, LOCALHOST).await, StatusCode::OK);
    let (st, enrolled) = s.enroll_agent("web1", true).await;
    assert_eq!(st, StatusCode::CREATED, "{enrolled}");
    let agent = enrolled["token"].as_str().unwrap().to_owned();
    let (st, state, _) = s.send(Method::GET, "/ajar/v1/agent/desiredState", Some(&agent), None, "").await;
    assert_eq!(st, StatusCode::OK, "{state}");
    let waited_from = Instant::now();
    let poll = format!("/ajar/v1/agent/desiredState?etag={}&waitSeconds=4", state["etag"].as_str().unwrap());
    let (st, same, _) = s.send(Method::GET, &poll, Some(&agent), None, "").await;
    assert_eq!((st, &same["etag"]), (StatusCode::OK, &state["etag"]), "{same}");
    assert!(waited_from.elapsed() >= Duration::from_secs(4), "the long-poll ran its course");

    let cut_off = [
        ("HTTP/1 slow head", h1_slow, h1_limit),
        ("HTTP/1 silent", h1_silent, h1_limit),
        ("HTTP/2 silent", h2_silent, h2_limit),
        ("HTTP/2 slow head", h2_slow, h2_limit),
    ];
    for (name, cut, limit) in cut_off {
        let after = cut.await.unwrap();
        assert!(after >= TIMEOUT && after <= limit, "{name}: cut off after {after:?}");
    }

    assert_eq!(health_from(&s, LOCALHOST).await, StatusCode::OK);
}

#[tokio::test]
async fn a_client_that_takes_none_of_its_answers_is_cut_off() {
    const TIMEOUT: Duration = Duration::from_secs(2);
    const ASKED: usize = 200;
    let s = Server::start(&["--header-read-timeout", "2"]).await;
    let one_answer = https_client(&ca(&s), LOCALHOST).get(format!("{}/openapi.json", s.url)).send().await.unwrap();
    let all_answers = one_answer.bytes().await.unwrap().len() * ASKED;
    // It asks for the OpenAPI document many times over, with a small receive buffer, and reads nothing:
    // once nothing more can be written for the timeout, the connection is asked to end, and dropped
    // after as long again.
    let stalled_from = Instant::now();
    let mut stalled = tls_connect(&s, b"http/1.1", Some(4096)).await;
    let one = b"GET /openapi.json HTTP/1.1\r\nHost: localhost\r\n\r\n";
    stalled.write_all(&one.repeat(ASKED)).await.unwrap();
    stalled.flush().await.unwrap();
    assert_eq!(health_from(&s, LOCALHOST).await, StatusCode::OK, "others are served meanwhile");
    tokio::time::sleep(2 * TIMEOUT + SLACK).await;
    let mut received = Vec::new();
    let drained = tokio::time::timeout(SLACK, stalled.read_to_end(&mut received)).await;
    assert!(drained.is_ok(), "the stalled connection was still open {:?} after its requests", stalled_from.elapsed());
    assert!(received.len() < all_answers, "it was cut before it got every answer ({} of {all_answers} bytes)", received.len());
}

/// One sign-in attempt on the dashboard from `client` with `token`: the answer's status.
async fn sign_in(client: &reqwest::Client, url: &str, token: &str) -> StatusCode {
    let form = client.get(format!("{url}/ui/signin")).send().await.unwrap();
    let cookie =
        form.headers().get_all("set-cookie").iter().map(|v| v.to_str().unwrap().to_owned()).find(|c| c.starts_with("ajar_signin="));
    let cookie = cookie.expect("a sign-in cookie").split(';').next().unwrap().to_owned();
    let csrf = hidden_csrf(&form.text().await.unwrap());
    let resp = client
        .post(format!("{url}/ui/signin"))
        .header("cookie", cookie)
        .form(&[("csrf", csrf.as_str()), ("token", token)])
        .send()
        .await
        .unwrap();
    resp.status()
}

#[tokio::test]
async fn failed_sign_ins_from_many_addresses_lock_out_only_those_addresses() {
    let s = Server::start(&[]).await;
    let ca = ca(&s);
    let attackers: Vec<IpAddr> = (1..=100).map(|i| IpAddr::V4(Ipv4Addr::new(127, 0, 4, i))).collect();
    let attacks: Vec<_> = attackers
        .iter()
        .map(|&addr| {
            let (client, url) = (https_client(&ca, addr), s.url.clone());
            tokio::spawn(async move {
                let mut statuses = Vec::new();
                // Five failures are free and the sixth blocks the address for 1 s, then 2 s, 4 s, ...; an
                // attempt right after a failure is refused unread, unless the block has already passed.
                for _ in 0..10 {
                    let status = sign_in(&client, &url, "ajar_wrong").await;
                    statuses.push(status);
                    if status == StatusCode::TOO_MANY_REQUESTS {
                        break;
                    }
                }
                statuses
            })
        })
        .collect();
    // While they fail, someone at another address signs in, and a mistake there is only a mistake.
    let elsewhere = https_client(&ca, IpAddr::V4(Ipv4Addr::new(127, 0, 5, 1)));
    assert_eq!(sign_in(&elsewhere, &s.url, "ajar_wrong").await, StatusCode::UNAUTHORIZED);
    assert_eq!(sign_in(&elsewhere, &s.url, &s.token).await, StatusCode::SEE_OTHER, "signed in");
    let (st, me, _) = s.send(Method::GET, "/ajar/v1/me", Some(&s.token), None, "").await;
    assert_eq!(st, StatusCode::OK, "{me}");
    for (addr, attack) in attackers.iter().zip(attacks) {
        let statuses = attack.await.unwrap();
        assert_eq!(statuses[..6], [StatusCode::UNAUTHORIZED; 6], "from {addr}: {statuses:?}");
        assert_eq!(statuses.last(), Some(&StatusCode::TOO_MANY_REQUESTS), "from {addr}: {statuses:?}");
    }
    // And afterwards too.
    assert_eq!(sign_in(&https_client(&ca, IpAddr::V4(Ipv4Addr::new(127, 0, 5, 2))), &s.url, &s.token).await, StatusCode::SEE_OTHER);
}
