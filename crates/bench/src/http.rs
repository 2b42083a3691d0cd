//! Plain HTTP/1.1 on loopback without a client library: one connection per request
//! (`Connection: close`), the answer read to its end; and server-sent event streams.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};

pub struct Response {
    pub status: u16,
    /// Header names in lower case, values trimmed, in the order they came.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Response {
    /// The first value of a header (`name` in lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

/// One request to `base` (`http://host:port`). `headers` are sent as given; a body is
/// sent with its `Content-Length` (set its `Content-Type` in `headers`).
pub fn request(base: &str, method: &str, path: &str, headers: &[(&str, &str)], body: Option<&str>) -> Result<Response> {
    let addr = base.strip_prefix("http://").context("not an http:// URL")?.trim_end_matches('/');
    let mut stream = TcpStream::connect(addr).with_context(|| format!("cannot connect to {addr}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    stream.set_write_timeout(Some(Duration::from_secs(30)))?;
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    if let Some(body) = body {
        request.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    request.push_str("\r\n");
    if let Some(body) = body {
        request.push_str(body);
    }
    stream.write_all(request.as_bytes())?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).with_context(|| format!("{method} {path}: cannot read the answer"))?;
    parse(&response).with_context(|| format!("{method} {path}"))
}

/// A GET with the `Accept: application/json` header and an optional Bearer token.
pub fn get_json(base: &str, path: &str, token: Option<&str>) -> Result<(u16, String)> {
    let bearer = token.map(|t| format!("Bearer {t}"));
    let mut headers = vec![("Accept", "application/json")];
    if let Some(bearer) = &bearer {
        headers.push(("Authorization", bearer.as_str()));
    }
    let r = request(base, "GET", path, &headers, None)?;
    Ok((r.status, r.body))
}

/// A stream of server-sent events (`text/event-stream`) read as it comes, over its own
/// connection: one GET, then [`EventStream::next_event`] until the caller has what it waits for.
pub struct EventStream {
    stream: TcpStream,
    chunked: bool,
    /// Bytes read and not yet decoded (chunk framing included).
    raw: Vec<u8>,
    /// Decoded text not yet split into events.
    text: String,
    ended: bool,
}

/// One server-sent event: its `event:` name (`message` when none) and its `data:` lines.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub name: String,
    pub data: String,
}

impl EventStream {
    /// GETs `path` with the headers given and reads the answer's head; a status other than
    /// 200 is an error carrying the body read so far.
    pub fn open(base: &str, path: &str, headers: &[(&str, &str)]) -> Result<EventStream> {
        let addr = base.strip_prefix("http://").context("not an http:// URL")?.trim_end_matches('/');
        let mut stream = TcpStream::connect(addr).with_context(|| format!("cannot connect to {addr}"))?;
        stream.set_nodelay(true)?;
        stream.set_write_timeout(Some(Duration::from_secs(30)))?;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        let mut request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n");
        for (name, value) in headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        request.push_str("\r\n");
        stream.write_all(request.as_bytes())?;
        let mut raw = Vec::new();
        let mut buf = [0u8; 4096];
        let head_end = loop {
            if let Some(i) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
                break i;
            }
            let n = stream.read(&mut buf).with_context(|| format!("GET {path}: cannot read the answer"))?;
            if n == 0 {
                let r = parse(&raw).with_context(|| format!("GET {path}"))?;
                bail!("GET {path} answered {} and closed: {}", r.status, r.body);
            }
            raw.extend_from_slice(&buf[..n]);
        };
        let head = parse(&raw[..head_end + 4]).with_context(|| format!("GET {path}"))?;
        let rest = raw[head_end + 4..].to_vec();
        if head.status != 200 {
            let mut body = rest;
            let _ = stream.read_to_end(&mut body);
            let mut full = raw[..head_end + 4].to_vec();
            full.extend_from_slice(&body);
            let r = parse(&full)?;
            bail!("GET {path} answered {}: {}", r.status, r.body);
        }
        let chunked = head.header("transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
        Ok(EventStream { stream, chunked, raw: rest, text: String::new(), ended: false })
    }

    /// The next event, waiting for it until `deadline`; comments (keep-alives) are skipped.
    pub fn next_event(&mut self, deadline: Instant) -> Result<Event> {
        loop {
            self.decode();
            while let Some(end) = self.text.find("\n\n") {
                let block: String = self.text.drain(..end + 2).collect();
                let mut name = String::from("message");
                let mut data = Vec::new();
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event:") {
                        name = v.trim().to_string();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push(v.strip_prefix(' ').unwrap_or(v).to_string());
                    }
                }
                if !data.is_empty() {
                    return Ok(Event { name, data: data.join("\n") });
                }
            }
            ensure!(!self.ended, "the event stream ended");
            let left = deadline.saturating_duration_since(Instant::now());
            ensure!(!left.is_zero(), "no event came in time");
            self.stream.set_read_timeout(Some(left.max(Duration::from_millis(1))))?;
            let mut buf = [0u8; 8192];
            match self.stream.read(&mut buf) {
                Ok(0) => self.ended = true,
                Ok(n) => self.raw.extend_from_slice(&buf[..n]),
                Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                    bail!("no event came in time")
                }
                Err(e) => return Err(e).context("cannot read the event stream"),
            }
        }
    }

    /// Moves whole chunks (or, without chunking, everything) from `raw` to `text`.
    fn decode(&mut self) {
        if self.chunked {
            self.ended |= decode_chunks(&mut self.raw, &mut self.text);
        } else {
            self.text.push_str(&String::from_utf8_lossy(&std::mem::take(&mut self.raw)).replace("\r\n", "\n"));
        }
    }
}

/// Moves the whole chunks of a `Transfer-Encoding: chunked` body at the start of `raw` to
/// `text` (a partial chunk stays for the next read); says whether the body ended.
fn decode_chunks(raw: &mut Vec<u8>, text: &mut String) -> bool {
    let mut decoded = Vec::new();
    let mut ended = false;
    while let Some(eol) = raw.windows(2).position(|w| w == b"\r\n") {
        let size = String::from_utf8_lossy(&raw[..eol]).split(';').next().unwrap_or("").trim().to_string();
        let Ok(size) = usize::from_str_radix(&size, 16) else {
            ended = true;
            break;
        };
        if size == 0 {
            ended = true;
            raw.clear();
            break;
        }
        if raw.len() < eol + 2 + size + 2 {
            break;
        }
        decoded.extend_from_slice(&raw[eol + 2..eol + 2 + size]);
        raw.drain(..eol + 2 + size + 2);
    }
    text.push_str(&String::from_utf8_lossy(&decoded).replace("\r\n", "\n"));
    ended
}

fn parse(response: &[u8]) -> Result<Response> {
    let split = response.windows(4).position(|w| w == b"\r\n\r\n");
    let (head, body) = match split {
        Some(i) => (&response[..i], &response[i + 4..]),
        None => (response, &[][..]),
    };
    let head = String::from_utf8_lossy(head);
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("not an HTTP answer: {head}"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let chunked = headers.iter().any(|(n, v)| n == "transfer-encoding" && v.to_ascii_lowercase().contains("chunked"));
    let body = if chunked { dechunk(body) } else { body.to_vec() };
    Ok(Response { status, headers, body: String::from_utf8_lossy(&body).into_owned() })
}

/// The body of a `Transfer-Encoding: chunked` answer (sizes count bytes, not characters).
fn dechunk(mut body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = body.windows(2).position(|w| w == b"\r\n") {
        let size = String::from_utf8_lossy(&body[..eol]);
        let Ok(size) = usize::from_str_radix(size.split(';').next().unwrap_or("").trim(), 16) else {
            break;
        };
        let rest = &body[eol + 2..];
        if size == 0 || rest.len() < size {
            break;
        }
        out.extend_from_slice(&rest[..size]);
        body = rest[size..].strip_prefix(b"\r\n").unwrap_or(&rest[size..]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_answers() {
        assert_eq!(dechunk(b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"), b"hello world");
        // A chunk boundary inside a character: sizes count bytes.
        assert_eq!(dechunk(b"1\r\n\xc3\r\n1\r\n\xa9\r\n0\r\n\r\n"), "\u{e9}".as_bytes());
        let r = parse(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nServer-Timing: app;dur=1.250\r\n\
             transfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        )
        .unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.header("server-timing"), Some("app;dur=1.250"));
        assert_eq!(r.header("content-type"), Some("text/html"));
        assert_eq!(r.body, "hello");
    }

    #[test]
    fn decodes_event_stream_chunks_as_they_come() {
        let (mut raw, mut text) = (b"10\r\nevent: status\nda".to_vec(), String::new());
        assert!(!decode_chunks(&mut raw, &mut text));
        assert_eq!(text, "", "a partial chunk waits");
        raw.extend_from_slice(b"\r\n7\r\nta: x\n\n\r\n0\r\n\r\n");
        assert!(decode_chunks(&mut raw, &mut text));
        assert_eq!(text, "event: status\ndata: x\n\n");
    }
}
