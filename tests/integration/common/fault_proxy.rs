//! A fault-injecting HTTP proxy on 127.0.0.1, in front of the test S3 server.
//!
//! Every connection carries one request: the proxy adds `Connection: close` to the request it
//! forwards and to the response it relays, so clients open a new connection per request and each
//! request can be judged on its own. A [`Rule`] matches requests by method and path and, a set
//! number of times, answers with a server error, cuts the connection halfway through the request
//! body, or holds the response back; the rest pass through untouched.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What a matching request gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fault {
    /// An HTTP error status, the request body read and thrown away.
    Status(u16),
    /// Half the request body forwarded, then both connections closed.
    DropMidUpload,
    /// The request forwarded, its response held back this long.
    Delay(Duration),
}

/// Requests a fault applies to, and how many more times.
#[derive(Debug, Clone)]
pub(crate) struct Rule {
    /// `PUT`, `GET`, …; any method when `None`.
    pub method: Option<&'static str>,
    /// A part of the request target (path and query) that must be present.
    pub path_contains: String,
    pub fault: Fault,
    pub times: usize,
}

#[derive(Default)]
struct State {
    rules: Vec<Rule>,
    /// Each fault injected: method, target and fault.
    injected: Vec<(String, String, Fault)>,
    requests: usize,
}

/// A running proxy; it stops accepting when dropped.
pub(crate) struct FaultProxy {
    pub endpoint: String,
    state: Arc<Mutex<State>>,
    stopped: Arc<AtomicBool>,
    port: u16,
}

impl FaultProxy {
    /// Starts a proxy to `upstream` (`http://127.0.0.1:port`).
    pub(crate) fn start(upstream: &str) -> FaultProxy {
        let upstream = upstream.trim_start_matches("http://").to_string();
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        let port = listener.local_addr().expect("proxy address").port();
        let state = Arc::new(Mutex::new(State::default()));
        let stopped = Arc::new(AtomicBool::new(false));
        {
            let (state, stopped) = (state.clone(), stopped.clone());
            std::thread::spawn(move || {
                for client in listener.incoming() {
                    if stopped.load(Ordering::Relaxed) {
                        return;
                    }
                    let Ok(client) = client else { continue };
                    let (state, upstream) = (state.clone(), upstream.clone());
                    std::thread::spawn(move || {
                        let _ = serve(client, &upstream, &state);
                    });
                }
            });
        }
        FaultProxy {
            endpoint: format!("http://127.0.0.1:{port}"),
            state,
            stopped,
            port,
        }
    }

    /// Adds a rule (rules are tried in the order they were added).
    pub(crate) fn inject(&self, rule: Rule) {
        self.lock().rules.push(rule);
    }

    /// Removes every rule that is left.
    pub(crate) fn clear(&self) {
        self.lock().rules.clear();
    }

    /// The faults injected so far: (method, target, fault).
    pub(crate) fn injected(&self) -> Vec<(String, String, Fault)> {
        self.lock().injected.clone()
    }

    /// Requests seen so far.
    pub(crate) fn requests(&self) -> usize {
        self.lock().requests
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.stopped.store(true, Ordering::Relaxed);
        // Wake the accepting thread so it sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// Reads from `stream` until the end of an HTTP head; returns the head and what came after it.
fn read_head(stream: &mut TcpStream) -> std::io::Result<(String, Vec<u8>)> {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            let rest = buffer.split_off(end + 4);
            return Ok((String::from_utf8_lossy(&buffer).into_owned(), rest));
        }
        let read = stream.read(&mut chunk)?;
        if read == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buffer.extend_from_slice(&chunk[..read]);
    }
}

/// The head with its `Connection` header replaced by `Connection: close`.
fn closing(head: &str) -> String {
    let mut lines: Vec<&str> = head
        .trim_end_matches("\r\n")
        .split("\r\n")
        .filter(|line| !line.to_ascii_lowercase().starts_with("connection:"))
        .collect();
    lines.push("Connection: close");
    format!("{}\r\n\r\n", lines.join("\r\n"))
}

fn content_length(head: &str) -> usize {
    head.split("\r\n")
        .filter_map(|line| line.split_once(':'))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, value)| value.trim().parse().ok())
        .unwrap_or(0)
}

fn serve(mut client: TcpStream, upstream: &str, state: &Mutex<State>) -> std::io::Result<()> {
    let (head, mut body) = read_head(&mut client)?;
    let mut words = head.split_whitespace();
    let method = words.next().unwrap_or_default().to_string();
    let target = words.next().unwrap_or_default().to_string();
    let fault = {
        let mut state = state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        state.requests += 1;
        let found = state.rules.iter_mut().find(|rule| {
            rule.times > 0 && rule.method.is_none_or(|m| m == method) && target.contains(&rule.path_contains)
        });
        let fault = found.map(|rule| {
            rule.times -= 1;
            rule.fault
        });
        if let Some(fault) = fault {
            state.injected.push((method.clone(), target.clone(), fault));
        }
        fault
    };
    let length = content_length(&head);
    match fault {
        Some(Fault::Status(status)) => {
            // Read the body, so the client is not cut off while it sends it.
            while body.len() < length {
                let mut chunk = vec![0u8; (length - body.len()).min(1 << 16)];
                let read = client.read(&mut chunk)?;
                if read == 0 {
                    break;
                }
                body.extend_from_slice(&chunk[..read]);
            }
            let text = format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>InternalError</Code><Message>fault injected by the test proxy (HTTP {status})</Message></Error>");
            let response = format!(
                "HTTP/1.1 {status} Injected Fault\r\nContent-Type: application/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
                text.len()
            );
            client.write_all(response.as_bytes())?;
            client.flush()?;
            let _ = client.shutdown(Shutdown::Both);
            Ok(())
        }
        Some(Fault::DropMidUpload) => {
            let mut server = TcpStream::connect(upstream)?;
            server.write_all(closing(&head).as_bytes())?;
            let half = length / 2;
            while body.len() < half {
                let mut chunk = vec![0u8; (half - body.len()).min(1 << 16)];
                let read = client.read(&mut chunk)?;
                if read == 0 {
                    break;
                }
                body.extend_from_slice(&chunk[..read]);
            }
            server.write_all(&body[..body.len().min(half)])?;
            let _ = server.shutdown(Shutdown::Both);
            let _ = client.shutdown(Shutdown::Both);
            Ok(())
        }
        Some(Fault::Delay(delay)) => relay(client, upstream, &head, &body, Some(delay)),
        None => relay(client, upstream, &head, &body, None),
    }
}

/// Forwards the request and relays the response (after `delay`, when given).
fn relay(
    mut client: TcpStream,
    upstream: &str,
    head: &str,
    body: &[u8],
    delay: Option<Duration>,
) -> std::io::Result<()> {
    let mut server = TcpStream::connect(upstream)?;
    server.write_all(closing(head).as_bytes())?;
    server.write_all(body)?;
    // The rest of the request body, as the client sends it.
    let mut upload = (client.try_clone()?, server.try_clone()?);
    let pump = std::thread::spawn(move || {
        let _ = std::io::copy(&mut upload.0, &mut upload.1);
    });
    let (response_head, rest) = read_head(&mut server)?;
    if let Some(delay) = delay {
        std::thread::sleep(delay);
    }
    client.write_all(closing(&response_head).as_bytes())?;
    client.write_all(&rest)?;
    std::io::copy(&mut server, &mut client)?;
    client.flush()?;
    let _ = client.shutdown(Shutdown::Both);
    let _ = server.shutdown(Shutdown::Both);
    let _ = pump.join();
    Ok(())
}
