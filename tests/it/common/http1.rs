//! HTTP/1.1 on the wire for the tests' raw clients and the fault proxy: reading a message
//! head and its body framing, in one place. The parsing itself is httparse's (the parser
//! hyper uses: request and status lines, header syntax, chunk-size lines); this module only
//! collects the bytes it parses from a `BufRead` and moves bodies as their framing says.
//!
//! Used by `proxy.rs` (which forwards heads and bodies, framing intact), by `moto.rs`'s
//! raw requests and by tests/it/examples.rs (which read whole responses). Those three each
//! had their own hand-written parser before.

use std::io::{self, BufRead, Read, Write};

/// Largest head accepted (request or status line plus headers).
pub const MAX_HEAD: usize = 64 * 1024;
/// Most header fields accepted in one head.
const MAX_HEADERS: usize = 128;

/// A parsed request or response head.
#[derive(Clone, Debug)]
pub struct Head {
    /// Request line or status line, as sent (without CRLF).
    pub start: String,
    /// Request method (`None` for a response).
    pub method: Option<String>,
    /// Request target: path and query (`None` for a response).
    pub target: Option<String>,
    /// Response status (`None` for a request).
    pub status: Option<u16>,
    /// Headers in order, names as sent.
    pub headers: Vec<(String, String)>,
    /// The head's bytes as read, through the empty line (for forwarding it verbatim).
    pub raw: Vec<u8>,
}

/// How a message's body is delimited (RFC 9112 §6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// No body.
    Empty,
    /// `Content-Length` bytes.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Until the connection closes (a response without length or chunking).
    UntilEof,
}

pub fn bad(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

impl Head {
    /// First value of header `name` (case-insensitive), trimmed.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim())
    }

    /// Whether the body is chunked (`Transfer-Encoding` names `chunked`).
    pub fn is_chunked(&self) -> bool {
        self.get("transfer-encoding")
            .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"))
    }

    /// `Content-Length`, if sent; an error if it is not a number.
    pub fn content_length(&self) -> io::Result<Option<u64>> {
        self.get("content-length")
            .map(|v| {
                v.parse()
                    .map_err(|_| bad(format!("bad Content-Length {v:?}")))
            })
            .transpose()
    }

    /// The framing of a request body: chunked, `Content-Length`, or none.
    pub fn request_framing(&self) -> io::Result<Framing> {
        Ok(if self.is_chunked() {
            Framing::Chunked
        } else {
            match self.content_length()? {
                Some(n) if n > 0 => Framing::Length(n),
                _ => Framing::Empty,
            }
        })
    }

    /// The framing of a response body to a request with `method` (a HEAD answer, 204 and
    /// 304 have none).
    pub fn response_framing(&self, method: &str) -> io::Result<Framing> {
        let status = self.status.unwrap_or(0);
        Ok(
            if method.eq_ignore_ascii_case("HEAD") || status == 204 || status == 304 {
                Framing::Empty
            } else if self.is_chunked() {
                Framing::Chunked
            } else {
                match self.content_length()? {
                    Some(n) => Framing::Length(n),
                    None => Framing::UntilEof,
                }
            },
        )
    }
}

/// Reads the bytes of one head (through the empty line), skipping stray CRLFs before it;
/// `None` on a clean EOF before any byte.
fn read_head_bytes(r: &mut impl BufRead) -> io::Result<Option<Vec<u8>>> {
    let mut buf = Vec::new();
    loop {
        let start = buf.len();
        let n = r.read_until(b'\n', &mut buf)?;
        if n == 0 {
            if buf.is_empty() {
                return Ok(None);
            }
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        if buf.len() > MAX_HEAD {
            return Err(bad("head too large".into()));
        }
        let line = &buf[start..];
        if line == b"\r\n" || line == b"\n" {
            if start == 0 {
                buf.clear(); // a stray CRLF before the start line
                continue;
            }
            return Ok(Some(buf));
        }
    }
}

fn headers_of(hs: &[httparse::Header<'_>]) -> Vec<(String, String)> {
    hs.iter()
        .map(|h| {
            (
                h.name.to_string(),
                String::from_utf8_lossy(h.value).trim().to_string(),
            )
        })
        .collect()
}

fn start_line(raw: &[u8]) -> String {
    let end = raw.iter().position(|&b| b == b'\n').unwrap_or(raw.len());
    String::from_utf8_lossy(&raw[..end])
        .trim_end_matches('\r')
        .to_string()
}

/// Reads and parses one request head; `None` on a clean EOF before any byte.
pub fn read_request_head(r: &mut impl BufRead) -> io::Result<Option<Head>> {
    let Some(raw) = read_head_bytes(r)? else {
        return Ok(None);
    };
    let mut hs = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut hs);
    match req.parse(&raw) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => return Err(bad("incomplete request head".into())),
        Err(e) => return Err(bad(format!("bad request head: {e}"))),
    }
    Ok(Some(Head {
        start: start_line(&raw),
        method: req.method.map(str::to_string),
        target: req.path.map(str::to_string),
        status: None,
        headers: headers_of(req.headers),
        raw: raw.clone(),
    }))
}

/// Reads and parses one response head (interim 1xx answers included: see
/// [`read_final_response_head`]); `None` on a clean EOF before any byte.
pub fn read_response_head(r: &mut impl BufRead) -> io::Result<Option<Head>> {
    let Some(raw) = read_head_bytes(r)? else {
        return Ok(None);
    };
    let mut hs = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut hs);
    match resp.parse(&raw) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => return Err(bad("incomplete response head".into())),
        Err(e) => return Err(bad(format!("bad response head: {e}"))),
    }
    Ok(Some(Head {
        start: start_line(&raw),
        method: None,
        target: None,
        status: resp.code,
        headers: headers_of(resp.headers),
        raw: raw.clone(),
    }))
}

/// The first response head that is not an interim answer (`100 Continue` and the like;
/// `101` is final); `None` on a clean EOF before any byte.
pub fn read_final_response_head(r: &mut impl BufRead) -> io::Result<Option<Head>> {
    loop {
        let Some(head) = read_response_head(r)? else {
            return Ok(None);
        };
        let status = head.status.unwrap_or(0);
        if !(100..200).contains(&status) || status == 101 {
            return Ok(Some(head));
        }
    }
}

/// Copies exactly `n` bytes.
fn copy_exact(r: &mut impl BufRead, w: &mut impl Write, n: u64) -> io::Result<u64> {
    let copied = io::copy(&mut r.take(n), w)?;
    if copied != n {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("body ended after {copied} of {n} bytes"),
        ));
    }
    Ok(n)
}

/// One line through `\n`, at most `MAX_HEAD` bytes; an error at EOF.
fn read_line(r: &mut impl BufRead) -> io::Result<Vec<u8>> {
    let mut line = Vec::new();
    if r.take(MAX_HEAD as u64).read_until(b'\n', &mut line)? == 0 {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    Ok(line)
}

/// A chunked body from `r` into `out`: the payload only, or (`keep_framing`) the bytes
/// exactly as read (sizes, extensions, trailers). Returns the payload size.
fn chunked(r: &mut impl BufRead, out: &mut impl Write, keep_framing: bool) -> io::Result<u64> {
    let mut total = 0;
    loop {
        let line = read_line(r)?;
        if keep_framing {
            out.write_all(&line)?;
        }
        let size = match httparse::parse_chunk_size(&line) {
            Ok(httparse::Status::Complete((_, size))) => size,
            _ => {
                return Err(bad(format!(
                    "bad chunk size line {:?}",
                    String::from_utf8_lossy(&line)
                )));
            }
        };
        if size == 0 {
            // Trailer fields, then the empty line.
            loop {
                let t = read_line(r)?;
                if keep_framing {
                    out.write_all(&t)?;
                }
                if t == b"\r\n" || t == b"\n" {
                    return Ok(total);
                }
            }
        }
        total += copy_exact(r, out, size)?;
        let crlf = read_line(r)?;
        if crlf != b"\r\n" && crlf != b"\n" {
            return Err(bad("chunk not followed by CRLF".into()));
        }
        if keep_framing {
            out.write_all(&crlf)?;
        }
    }
}

/// Copies a body as it is on the wire (a chunked body with its framing and trailers
/// intact, for forwarding); returns the payload size (without chunk framing).
pub fn copy_body(r: &mut impl BufRead, w: &mut impl Write, f: Framing) -> io::Result<u64> {
    match f {
        Framing::Empty => Ok(0),
        Framing::Length(n) => copy_exact(r, w, n),
        Framing::Chunked => chunked(r, w, true),
        Framing::UntilEof => io::copy(r, w),
    }
}

/// Reads a body's payload (de-chunked) into `out`, keeping what arrived: true if it ended
/// as its framing says, false if the connection ended or broke first (an aborted transfer).
pub fn read_body(r: &mut impl BufRead, f: Framing, out: &mut Vec<u8>) -> bool {
    match f {
        Framing::Empty => true,
        Framing::Length(n) => r.take(n).read_to_end(out).is_ok_and(|g| g as u64 == n),
        Framing::Chunked => chunked(r, out, false).is_ok(),
        Framing::UntilEof => r.read_to_end(out).is_ok(),
    }
}

/// A whole HTTP response as a raw client saw it.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    /// Headers in order, names lowercased.
    pub headers: Vec<(String, String)>,
    /// The body (de-chunked if it came chunked).
    pub body: Vec<u8>,
    /// The body ended as its framing says (false for an aborted transfer).
    pub complete: bool,
}

impl Response {
    /// First value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as (lossy) UTF-8.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Reads one whole response to a request with `method` (interim 1xx answers skipped);
/// `None` if the connection closed before any byte of it.
pub fn read_response(r: &mut impl BufRead, method: &str) -> io::Result<Option<Response>> {
    let Some(head) = read_final_response_head(r)? else {
        return Ok(None);
    };
    let framing = head.response_framing(method)?;
    let mut body = Vec::new();
    let complete = read_body(r, framing, &mut body);
    Ok(Some(Response {
        status: head.status.unwrap_or(0),
        headers: head
            .headers
            .into_iter()
            .map(|(n, v)| (n.to_ascii_lowercase(), v))
            .collect(),
        body,
        complete,
    }))
}
