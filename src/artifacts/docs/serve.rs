//! `tidemark docs serve`: the generated site over HTTP on 127.0.0.1, one request at a time
//! (GET and HEAD of files under `target/docs/`; nothing else is readable).

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Component, Path, PathBuf};

/// A listening docs server.
pub struct DocsServer {
    listener: TcpListener,
    root: PathBuf,
}

impl DocsServer {
    /// Listens on 127.0.0.1:`port` (0: any free port) for the site in `root`.
    pub fn bind(root: PathBuf, port: u16) -> std::io::Result<DocsServer> {
        let listener = TcpListener::bind(("127.0.0.1", port))?;
        Ok(DocsServer { listener, root })
    }

    /// The address people open.
    pub fn url(&self) -> String {
        match self.listener.local_addr() {
            Ok(address) => format!("http://{address}/"),
            Err(_) => "http://127.0.0.1/".to_string(),
        }
    }

    /// Serves until the process ends, each connection on its own thread (a browser keeps idle
    /// connections open).
    pub fn serve(self) {
        let port = self.listener.local_addr().map(|address| address.port()).unwrap_or(0);
        let root = std::sync::Arc::new(self.root);
        for stream in self.listener.incoming().flatten() {
            let root = root.clone();
            // A broken connection is the browser's business, not the server's.
            std::thread::spawn(move || {
                let _ = respond(&root, port, stream);
            });
        }
    }
}

fn respond(root: &Path, port: u16, mut stream: TcpStream) -> std::io::Result<()> {
    stream.set_read_timeout(Some(std::time::Duration::from_secs(10)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request = String::new();
    reader.read_line(&mut request)?;
    // Read the headers; only this machine's own names may be the host (no DNS rebinding).
    let mut host = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line == "\r\n" || line == "\n" {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.trim().eq_ignore_ascii_case("host") {
                host = Some(value.trim().to_string());
            }
        }
    }
    let allowed = [format!("127.0.0.1:{port}"), format!("localhost:{port}")];
    if !host.is_some_and(|host| allowed.contains(&host)) {
        return write_response(&mut stream, "403 Forbidden", "text/plain", b"unknown host\n", false);
    }
    let mut parts = request.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or("/"));
    if method != "GET" && method != "HEAD" {
        return write_response(
            &mut stream,
            "405 Method Not Allowed",
            "text/plain",
            b"GET only\n",
            method == "HEAD",
        );
    }
    let path = target.split(['?', '#']).next().unwrap_or("/");
    let relative = percent_decode(path.trim_start_matches('/'));
    let relative = if relative.is_empty() || relative.ends_with('/') {
        format!("{relative}index.html")
    } else {
        relative
    };
    let candidate = Path::new(&relative);
    let inside = candidate.components().all(|part| matches!(part, Component::Normal(_)));
    match inside.then(|| std::fs::read(root.join(candidate))) {
        Some(Ok(body)) => write_response(&mut stream, "200 OK", content_type(candidate), &body, method == "HEAD"),
        _ => write_response(
            &mut stream,
            "404 Not Found",
            "text/plain",
            b"not found\n",
            method == "HEAD",
        ),
    }
}

fn write_response(stream: &mut TcpStream, status: &str, kind: &str, body: &[u8], head: bool) -> std::io::Result<()> {
    write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n",
        body.len()
    )?;
    if !head {
        stream.write_all(body)?;
    }
    stream.flush()
}

fn content_type(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()) {
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("json") => "application/json",
        Some("svg") => "image/svg+xml",
        _ => "application/octet-stream",
    }
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        let hex = |at: usize| bytes.get(at).and_then(|b| (*b as char).to_digit(16));
        match (bytes[index], hex(index + 1), hex(index + 2)) {
            (b'%', Some(high), Some(low)) => {
                out.push((high * 16 + low) as u8);
                index += 3;
            }
            (byte, _, _) => {
                out.push(byte);
                index += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
