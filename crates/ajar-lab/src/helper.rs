//! The helper process: a listener, a probe or a client session, run inside a namespace.
//!
//! Spawned by the lab as `ip netns exec NS <test binary> ajar_lab_helper --ignored --nocapture` with the
//! command in the `AJAR_LAB_HELPER` environment variable. It reports on stdout in lines starting with
//! [`MARK`] (the test harness prints its own lines around them):
//!
//! - `listen tcp|udp ADDR PORT`: echo server; `READY` once bound. Exits when its stdin closes (the lab
//!   dropped it or died) or after [`MAX_LIFETIME`]. A TCP connection also gets a [`TICK`] line every
//!   [`TICK_EVERY`] unasked, as an SSH server's keepalives: a server that speaks first after a connection
//!   was cut is what tests that the cut holds.
//! - `probe tcp|udp SRC DST PORT TIMEOUT_MS`: `RESULT OPEN|REFUSED|TIMEOUT`. UDP is open when the
//!   datagram is echoed back.
//! - `session tcp SRC DST PORT TIMEOUT_MS`: connects (`CONNECTED`, or `RESULT …`), then answers each `echo`
//!   line on stdin with `ECHO OK` or `ECHO FAIL …` after one round trip over the connection.

use std::io::{self, BufRead, ErrorKind, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use socket2::{Domain, Protocol, SockAddr, Socket, Type};

pub(crate) const HELPER_ENV: &str = "AJAR_LAB_HELPER";
pub(crate) const HELPER_TEST: &str = "ajar_lab_helper";
pub(crate) const MARK: &str = "AJAR-LAB";
/// A listener never outlives this, even if nobody stops it.
pub(crate) const MAX_LIFETIME: Duration = Duration::from_secs(600);
const PING: &[u8] = b"ajar-lab-ping\n";
const TICK: &[u8] = b"ajar-lab-tick\n";
const TICK_EVERY: Duration = Duration::from_millis(250);

/// Runs the helper command named by `AJAR_LAB_HELPER` and exits the process; returns at once when the
/// variable is not set (the ignored test run by hand).
pub fn helper_main() {
    let Ok(spec) = std::env::var(HELPER_ENV) else {
        return;
    };
    let args: Vec<&str> = spec.split_whitespace().collect();
    let code = match run(&args) {
        Ok(()) => 0,
        Err(e) => {
            say(&format!("ERROR {e}"));
            1
        }
    };
    std::process::exit(code);
}

fn say(line: &str) {
    let mut out = io::stdout().lock();
    let _ = writeln!(out, "{MARK} {line}");
    let _ = out.flush();
}

type Res = Result<(), String>;

fn run(args: &[&str]) -> Res {
    match args {
        ["listen", proto, addr, port] => listen(proto, sock(addr, port)?),
        ["probe", "tcp", src, dst, port, ms] => {
            let result = match tcp_connect(ip(src)?, sock(dst, port)?, millis(ms)?) {
                Ok(_) => "OPEN".to_string(),
                Err(e) => classify(&e),
            };
            say(&format!("RESULT {result}"));
            Ok(())
        }
        ["probe", "udp", src, dst, port, ms] => {
            say(&format!("RESULT {}", udp_probe(ip(src)?, sock(dst, port)?, millis(ms)?)));
            Ok(())
        }
        ["session", "tcp", src, dst, port, ms] => session(ip(src)?, sock(dst, port)?, millis(ms)?),
        _ => Err(format!("unknown helper command {args:?}")),
    }
}

fn ip(s: &str) -> Result<IpAddr, String> {
    s.parse().map_err(|e| format!("bad address {s:?}: {e}"))
}

fn sock(addr: &str, port: &str) -> Result<SocketAddr, String> {
    Ok(SocketAddr::new(ip(addr)?, port.parse().map_err(|e| format!("bad port {port:?}: {e}"))?))
}

fn millis(s: &str) -> Result<Duration, String> {
    s.parse().map(Duration::from_millis).map_err(|e| format!("bad timeout {s:?}: {e}"))
}

fn classify(e: &io::Error) -> String {
    match e.kind() {
        ErrorKind::ConnectionRefused => "REFUSED".into(),
        ErrorKind::TimedOut | ErrorKind::WouldBlock => "TIMEOUT".into(),
        _ => format!("ERROR {e}"),
    }
}

/// Exit when the lab closes our stdin (it dropped us, or died), and in any case after MAX_LIFETIME.
fn exit_with_parent() {
    thread::spawn(|| {
        let mut sink = Vec::new();
        let _ = io::stdin().read_to_end(&mut sink);
        std::process::exit(0);
    });
    thread::spawn(|| {
        thread::sleep(MAX_LIFETIME);
        std::process::exit(0);
    });
}

fn listen(proto: &str, addr: SocketAddr) -> Res {
    match proto {
        "tcp" => {
            let listener = TcpListener::bind(addr).map_err(|e| format!("binding tcp {addr}: {e}"))?;
            exit_with_parent();
            say("READY");
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { continue };
                let Ok(ticker) = conn.try_clone() else { continue };
                // One writer at a time, so a tick never lands inside an echoed line.
                let writer = Arc::new(Mutex::new(ticker));
                let tick_writer = Arc::clone(&writer);
                thread::spawn(move || {
                    loop {
                        thread::sleep(TICK_EVERY);
                        let Ok(mut w) = tick_writer.lock() else { break };
                        if w.write_all(TICK).is_err() {
                            break;
                        }
                    }
                });
                thread::spawn(move || {
                    let _ = conn.set_read_timeout(Some(MAX_LIFETIME));
                    let mut buf = [0u8; 4096];
                    while let Ok(n) = conn.read(&mut buf) {
                        let echoed = writer.lock().map(|mut w| w.write_all(&buf[..n]).is_ok()).unwrap_or(false);
                        if n == 0 || !echoed {
                            break;
                        }
                    }
                    let _ = conn.shutdown(std::net::Shutdown::Both);
                });
            }
            Ok(())
        }
        "udp" => {
            let socket = UdpSocket::bind(addr).map_err(|e| format!("binding udp {addr}: {e}"))?;
            exit_with_parent();
            say("READY");
            let mut buf = [0u8; 2048];
            loop {
                if let Ok((n, peer)) = socket.recv_from(&mut buf) {
                    let _ = socket.send_to(&buf[..n], peer);
                }
            }
        }
        other => Err(format!("unknown protocol {other:?}")),
    }
}

fn tcp_connect(src: IpAddr, dst: SocketAddr, timeout: Duration) -> io::Result<TcpStream> {
    let socket = Socket::new(Domain::for_address(dst), Type::STREAM, Some(Protocol::TCP))?;
    socket.bind(&SockAddr::from(SocketAddr::new(src, 0)))?;
    socket.connect_timeout(&SockAddr::from(dst), timeout)?;
    Ok(socket.into())
}

fn udp_probe(src: IpAddr, dst: SocketAddr, timeout: Duration) -> String {
    let attempt = || -> io::Result<bool> {
        let socket = UdpSocket::bind(SocketAddr::new(src, 0))?;
        socket.connect(dst)?;
        socket.set_read_timeout(Some(timeout))?;
        socket.send(PING)?;
        let mut buf = [0u8; 64];
        let n = socket.recv(&mut buf)?;
        Ok(&buf[..n] == PING)
    };
    match attempt() {
        Ok(true) => "OPEN".into(),
        Ok(false) => "ERROR unexpected reply".into(),
        Err(e) => classify(&e),
    }
}

fn session(src: IpAddr, dst: SocketAddr, timeout: Duration) -> Res {
    let mut conn = match tcp_connect(src, dst, timeout) {
        Ok(c) => c,
        Err(e) => {
            say(&format!("RESULT {}", classify(&e)));
            return Ok(());
        }
    };
    conn.set_read_timeout(Some(timeout)).map_err(|e| e.to_string())?;
    let mut reader = io::BufReader::new(conn.try_clone().map_err(|e| e.to_string())?);
    say("CONNECTED");
    for line in io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        if line.trim() != "echo" {
            say(&format!("ERROR unknown session command {line:?}"));
            continue;
        }
        // The echo must come back within `timeout`, however many ticks arrive meanwhile.
        let mut round_trip = || -> io::Result<()> {
            let deadline = std::time::Instant::now() + timeout;
            conn.write_all(PING)?;
            let mut got = Vec::new();
            loop {
                got.clear();
                if reader.read_until(b'\n', &mut got)? == 0 {
                    return Err(io::Error::from(ErrorKind::UnexpectedEof));
                }
                if got == PING {
                    return Ok(());
                }
                if got != TICK {
                    return Err(io::Error::other("echo differs"));
                }
                if std::time::Instant::now() >= deadline {
                    return Err(io::Error::from(ErrorKind::TimedOut));
                }
            }
        };
        match round_trip() {
            Ok(()) => say("ECHO OK"),
            Err(e) => say(&format!("ECHO FAIL {}", classify(&e))),
        }
    }
    Ok(())
}
