//! A loopback fault-injecting HTTP proxy in front of the emulator (KMS and S3): it names
//! each request's operation, counts calls and response-body bytes per operation, records
//! the `Range` of every `GetObject`, holds chosen operations for a while (or one call until
//! the test releases it, [`Proxy::pause`]), and answers chosen
//! errors instead of forwarding — throttling, 5xx and per-key or per-part failures that moto
//! itself never produces. Everything else is forwarded verbatim.
//!
//! Operations: a request with `X-Amz-Target` is KMS (`TrentService.Decrypt` → `Decrypt`);
//! any other request is S3 (path-style), named by [`operation_name`].
//!
//! One request per connection (`Connection: close` both ways) keeps it simple and makes the
//! client's retries visible as separate requests; a thread serves each connection. Bodies
//! are streamed in both directions (framed by `Content-Length`, or `Transfer-Encoding:
//! chunked` forwarded with its framing intact), so multi-MiB parts cost no extra memory.
//! `Content-Encoding: aws-chunked` bodies are just bytes framed by `Content-Length` and pass
//! through untouched. `Expect: 100-continue` is answered by the proxy itself.
//!
//! HTTP/1.1 heads, body framing and chunk-size lines are read by `http1.rs` (httparse).
//!
//! Set `SEALSTREAM_PROXY_LOG=1` to print one line per request to stderr.

use std::collections::HashMap;
use std::io::{self, BufReader, BufWriter, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use super::http1::{Framing, Head, copy_body, read_final_response_head, read_request_head};

/// Read/write timeout on both sockets (a stalled peer fails the exchange after this).
const IO_TIMEOUT: Duration = Duration::from_secs(120);

/// What to answer instead of forwarding.
#[derive(Clone, Debug)]
pub struct Fault {
    /// HTTP status, e.g. 400 or 503.
    pub status: u16,
    /// AWS error code, e.g. `ThrottlingException` or `SlowDown` (empty: no body at all).
    pub error: String,
}

impl Fault {
    /// A fault with this status and AWS error code. KMS calls get a JSON body
    /// (`{"__type": error, ...}`), S3 calls an XML `<Error><Code>error</Code>...` body.
    pub fn aws(status: u16, error: &str) -> Fault {
        Fault {
            status,
            error: error.to_string(),
        }
    }

    /// S3's throttling answer: 503 `SlowDown`.
    pub fn slow_down() -> Fault {
        Fault::aws(503, "SlowDown")
    }
}

/// One request the proxy saw, for assertions and debugging ([`Proxy::requests`]).
#[derive(Clone, Debug)]
pub struct Seen {
    /// Operation name (see the module docs).
    pub op: String,
    pub method: String,
    /// Request target as sent: path and query.
    pub target: String,
    /// Request headers in order, names lowercased.
    pub headers: Vec<(String, String)>,
    /// Status answered to the client (0 if the exchange failed before a response).
    pub status: u16,
    /// Whether the proxy answered a fault instead of forwarding.
    pub faulted: bool,
    /// Request body bytes received from the client (chunked payload without framing).
    pub request_bytes: u64,
    /// Response body bytes returned to the client (chunked payload without framing).
    pub response_bytes: u64,
}

impl Seen {
    /// First value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Default)]
struct Rules {
    /// Operation (or "*") → (remaining count, fault).
    first_n: Vec<(String, u32, Fault)>,
    /// (operation, substring) → fault, for every such call naming it: the JSON `KeyId` of a
    /// KMS call, the decoded `bucket/key` path of an S3 call.
    per_key: Vec<(String, String, Fault)>,
    /// UploadPart part number → (remaining count, None = always; fault).
    per_part: Vec<(u32, Option<u32>, Fault)>,
    /// Operation (or "*") → how long to hold each such request before answering.
    delays: Vec<(String, Duration)>,
    calls: HashMap<String, u32>,
    response_bytes: HashMap<String, u64>,
    ranges: Vec<String>,
    seen: Vec<Seen>,
    /// Bumped by `reset_counters`, so a request in flight across a reset updates nothing.
    generation: u64,
    /// Operation → (calls of it to let through first, then hold one: see [`Proxy::pause`]).
    pauses: Vec<PauseRule>,
}

/// A request to hold once: `(operation, calls to let through first, arrived, release)`.
type PauseRule = (String, u32, mpsc::Sender<()>, mpsc::Receiver<()>);

/// One request held by [`Proxy::pause`] until [`Paused::release`] (or drop): the test acts
/// while the client waits, deterministically (no timing involved).
pub struct Paused {
    arrived: mpsc::Receiver<()>,
    release: mpsc::Sender<()>,
}

impl Paused {
    /// Blocks until the held request has arrived at the proxy (it is not forwarded yet).
    /// Panics after two minutes: the client never sent it.
    pub fn wait(&self) {
        self.arrived
            .recv_timeout(Duration::from_secs(120))
            .expect("the paused request never arrived");
    }

    /// Lets the held request go on (faulted or forwarded as usual).
    pub fn release(self) {
        let _ = self.release.send(());
    }
}

impl Rules {
    fn fault_for(&mut self, op: &str, key: &str, part: Option<u32>) -> Option<Fault> {
        for (o, n, f) in self.first_n.iter_mut() {
            if (o == op || o == "*") && *n > 0 {
                *n -= 1;
                return Some(f.clone());
            }
        }
        if let Some(p) = part.filter(|_| op == "UploadPart") {
            for (pn, left, f) in self.per_part.iter_mut() {
                if *pn != p {
                    continue;
                }
                match left {
                    None => return Some(f.clone()),
                    Some(n) if *n > 0 => {
                        *n -= 1;
                        return Some(f.clone());
                    }
                    Some(_) => {}
                }
            }
        }
        if !key.is_empty() {
            return self
                .per_key
                .iter()
                .find(|(o, k, _)| (o == op || o == "*") && key.contains(k.as_str()))
                .map(|(_, _, f)| f.clone());
        }
        None
    }

    /// The pause rule this call of `op` hits, if any (removed: each holds one call).
    fn take_pause(&mut self, op: &str) -> Option<(mpsc::Sender<()>, mpsc::Receiver<()>)> {
        let i = self.pauses.iter().position(|(o, ..)| o == op || o == "*")?;
        if self.pauses[i].1 > 0 {
            self.pauses[i].1 -= 1;
            return None;
        }
        let (_, _, arrived, release) = self.pauses.remove(i);
        Some((arrived, release))
    }

    fn delay_for(&self, op: &str) -> Duration {
        self.delays
            .iter()
            .rev()
            .find(|(o, _)| o == op || o == "*")
            .map_or(Duration::ZERO, |(_, d)| *d)
    }
}

struct Shared {
    rules: Mutex<Rules>,
    stop: AtomicBool,
    request_ids: AtomicU64,
    log: bool,
}

impl Shared {
    fn rules(&self) -> std::sync::MutexGuard<'_, Rules> {
        // A panicking connection thread must not take every later assertion down with it.
        self.rules.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A running proxy; stops accepting when dropped.
pub struct Proxy {
    /// `http://127.0.0.1:PORT`, for `AWS_ENDPOINT_URL*`.
    pub url: String,
    shared: Arc<Shared>,
    port: u16,
}

impl Proxy {
    /// Starts a proxy forwarding to `upstream` (`host:port`).
    pub fn start(upstream: &str) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let port = listener.local_addr().unwrap().port();
        let shared = Arc::new(Shared {
            rules: Mutex::new(Rules::default()),
            stop: AtomicBool::new(false),
            request_ids: AtomicU64::new(0),
            log: std::env::var("SEALSTREAM_PROXY_LOG").as_deref() == Ok("1"),
        });
        let (sh, up) = (Arc::clone(&shared), upstream.to_string());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if sh.stop.load(Ordering::Relaxed) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let (sh, up) = (Arc::clone(&sh), up.clone());
                std::thread::spawn(move || {
                    if let Err(e) = handle(conn, &up, &sh)
                        && sh.log
                    {
                        eprintln!("proxy: connection failed: {e}");
                    }
                });
            }
        });
        Proxy {
            url: format!("http://127.0.0.1:{port}"),
            shared,
            port,
        }
    }

    /// `127.0.0.1:PORT`, for the raw helpers in `moto.rs`.
    pub fn authority(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Answers `fault` to the first `n` calls of `op` (`"*"` for any operation).
    pub fn fail_first(&self, op: &str, n: u32, fault: Fault) {
        self.shared.rules().first_n.push((op.into(), n, fault));
    }

    /// Answers `fault` to every call of `op` (`"*"` for any) naming `key`: a KMS call whose
    /// `KeyId` contains it, or an S3 call whose decoded `bucket/key` path contains it.
    pub fn fail_key(&self, op: &str, key: &str, fault: Fault) {
        self.shared
            .rules()
            .per_key
            .push((op.into(), key.into(), fault));
    }

    /// Answers `fault` to `UploadPart` of part `part_number`: the next `n` such calls for
    /// `Some(n)`, every one for `None`.
    pub fn fail_part(&self, part_number: u32, times: Option<u32>, fault: Fault) {
        self.shared
            .rules()
            .per_part
            .push((part_number, times, fault));
    }

    /// Holds every request of `op` (`"*"` for any) for `d` before faulting or forwarding it
    /// (before its body is read, so the client is still sending). The latest call for an
    /// operation wins; `Duration::ZERO` removes the delay.
    pub fn delay(&self, op: &str, d: Duration) {
        self.shared.rules().delays.push((op.into(), d));
    }

    /// Holds the `(skip + 1)`-th next call of `op` (`"*"` for any) before it is faulted or
    /// forwarded, until the returned [`Paused`] is released or dropped; e.g. to change an
    /// object between two GETs of one download.
    pub fn pause(&self, op: &str, skip: u32) -> Paused {
        let (arrived_tx, arrived) = mpsc::channel();
        let (release, release_rx) = mpsc::channel();
        self.shared
            .rules()
            .pauses
            .push((op.into(), skip, arrived_tx, release_rx));
        Paused { arrived, release }
    }

    /// Removes every fault and delay rule (counters are kept).
    pub fn clear_rules(&self) {
        let mut r = self.shared.rules();
        r.first_n.clear();
        r.per_key.clear();
        r.per_part.clear();
        r.delays.clear();
    }

    /// Calls seen for `op` (faulted or forwarded).
    pub fn calls(&self, op: &str) -> u32 {
        *self.shared.rules().calls.get(op).unwrap_or(&0)
    }

    /// Total response-body bytes returned to clients for `op` (faults included; chunked
    /// bodies counted without their framing).
    pub fn response_bytes(&self, op: &str) -> u64 {
        *self.shared.rules().response_bytes.get(op).unwrap_or(&0)
    }

    /// `Range` header values of the `GetObject` requests seen, in arrival order (requests
    /// without `Range` are not listed; `calls("GetObject")` counts all).
    pub fn ranges(&self) -> Vec<String> {
        self.shared.rules().ranges.clone()
    }

    /// Every request seen so far, in arrival order (the status and byte counts of a request
    /// still in flight are not final).
    pub fn requests(&self) -> Vec<Seen> {
        self.shared.rules().seen.clone()
    }

    /// Zeroes `calls`, `response_bytes`, `ranges` and `requests` (rules are kept).
    pub fn reset_counters(&self) {
        let mut r = self.shared.rules();
        r.calls.clear();
        r.response_bytes.clear();
        r.ranges.clear();
        r.seen.clear();
        r.generation += 1;
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        let _ = TcpStream::connect(("127.0.0.1", self.port)); // wake the accept loop
    }
}

/// Names an operation from the request line and headers: the KMS target for KMS calls;
/// for S3 (path-style) the SDK's own `x-id` query parameter when present, else the method,
/// path, query and `x-amz-copy-source`, e.g. `PUT /b/k?partNumber=2&uploadId=u` →
/// `UploadPart`. Unrecognised requests get a descriptive name such as `PutBucketTagging`
/// or `PATCH`.
pub fn operation_name(method: &str, target: &str, headers: &[(&str, &str)]) -> String {
    let header = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim())
    };
    if let Some(t) = header("x-amz-target") {
        // "TrentService.GenerateDataKey" → "GenerateDataKey"
        return t.rsplit('.').next().unwrap_or("").to_string();
    }
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let params: Vec<(&str, &str)> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| p.split_once('=').unwrap_or((p, "")))
        .collect();
    if let Some((_, id)) = params.iter().find(|(n, _)| *n == "x-id") {
        return id.to_string();
    }
    let has = |name: &str| params.iter().any(|(n, _)| *n == name);
    let path = path.strip_prefix('/').unwrap_or(path);
    let (bucket, key) = path.split_once('/').unwrap_or((path, ""));
    let copy = header("x-amz-copy-source").is_some();
    // The first query parameter that selects a sub-resource rather than listing options.
    const LIST_PARAMS: &[&str] = &[
        "prefix",
        "delimiter",
        "marker",
        "max-keys",
        "encoding-type",
        "continuation-token",
        "start-after",
        "fetch-owner",
        "list-type",
        "key-marker",
        "upload-id-marker",
        "max-uploads",
        "version-id-marker",
        "versionId",
        "x-id",
    ];
    let sub = params
        .iter()
        .map(|(n, _)| *n)
        .find(|n| !LIST_PARAMS.contains(n))
        .map(camel);
    let method = method.to_ascii_uppercase();
    if bucket.is_empty() {
        match method.as_str() {
            "GET" => "ListBuckets".to_string(),
            m => m.to_string(),
        }
    } else if key.is_empty() {
        match method.as_str() {
            "PUT" => sub.map_or("CreateBucket".into(), |s| format!("PutBucket{s}")),
            "HEAD" => "HeadBucket".into(),
            "DELETE" => sub.map_or("DeleteBucket".into(), |s| format!("DeleteBucket{s}")),
            "POST" if has("delete") => "DeleteObjects".into(),
            "GET" if has("uploads") => "ListMultipartUploads".into(),
            "GET" if has("versions") => "ListObjectVersions".into(),
            "GET" if has("location") => "GetBucketLocation".into(),
            "GET" if params.contains(&("list-type", "2")) => "ListObjectsV2".into(),
            "GET" => sub.map_or("ListObjects".into(), |s| format!("GetBucket{s}")),
            m => format!("{m}Bucket"),
        }
    } else {
        match method.as_str() {
            "HEAD" => "HeadObject".into(),
            "GET" if has("uploadId") => "ListParts".into(),
            "GET" if has("tagging") => "GetObjectTagging".into(),
            "GET" if has("acl") => "GetObjectAcl".into(),
            "GET" if has("attributes") => "GetObjectAttributes".into(),
            "GET" => "GetObject".into(),
            "PUT" if has("partNumber") && has("uploadId") => {
                if copy { "UploadPartCopy" } else { "UploadPart" }.into()
            }
            "PUT" if has("tagging") => "PutObjectTagging".into(),
            "PUT" if has("acl") => "PutObjectAcl".into(),
            "PUT" if copy => "CopyObject".into(),
            "PUT" => "PutObject".into(),
            "POST" if has("uploads") => "CreateMultipartUpload".into(),
            "POST" if has("uploadId") => "CompleteMultipartUpload".into(),
            "POST" if has("restore") => "RestoreObject".into(),
            "POST" if has("select") => "SelectObjectContent".into(),
            "DELETE" if has("uploadId") => "AbortMultipartUpload".into(),
            "DELETE" if has("tagging") => "DeleteObjectTagging".into(),
            "DELETE" => "DeleteObject".into(),
            m => format!("{m}Object"),
        }
    }
}

/// `object-lock` → `ObjectLock`.
fn camel(s: &str) -> String {
    s.split('-')
        .map(|w| {
            let mut c = w.chars();
            c.next().map_or(String::new(), |f| {
                f.to_ascii_uppercase().to_string() + c.as_str()
            })
        })
        .collect()
}

/// `%XX`-decodes a path (invalid escapes are kept as they are).
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("");
            if let Ok(v) = u8::from_str_radix(hex, 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `head` re-serialised without hop-by-hop headers, with `Connection: close`.
fn serialise(head: &Head, chunked: bool) -> Vec<u8> {
    const DROP: &[&str] = &["connection", "keep-alive", "proxy-connection", "expect"];
    let mut out = format!("{}\r\n", head.start);
    for (n, v) in &head.headers {
        let lower = n.to_ascii_lowercase();
        // With chunked framing a Content-Length must not be passed on (RFC 9112 §6.3).
        if DROP.contains(&lower.as_str()) || (chunked && lower == "content-length") {
            continue;
        }
        out.push_str(&format!("{n}: {v}\r\n"));
    }
    out.push_str("Connection: close\r\n\r\n");
    out.into_bytes()
}

fn reason(status: u16) -> &'static str {
    match status {
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        409 => "Conflict",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Error",
    }
}

/// Sleeps `d` in slices, giving up early (false) if the proxy is dropped.
fn hold(d: Duration, shared: &Shared) -> bool {
    let end = Instant::now() + d;
    while let Some(left) = end.checked_duration_since(Instant::now()) {
        if left.is_zero() {
            break;
        }
        if shared.stop.load(Ordering::Relaxed) {
            return false;
        }
        std::thread::sleep(left.min(Duration::from_millis(20)));
    }
    true
}

fn handle(conn: TcpStream, upstream: &str, shared: &Shared) -> io::Result<()> {
    conn.set_read_timeout(Some(IO_TIMEOUT))?;
    conn.set_write_timeout(Some(IO_TIMEOUT))?;
    conn.set_nodelay(true)?;
    let mut client_in = BufReader::with_capacity(256 * 1024, conn.try_clone()?);
    let mut client_out = conn;
    let Some(req) = read_request_head(&mut client_in)? else {
        return Ok(()); // e.g. the accept loop's wake-up connection
    };
    let method = req.method.clone().unwrap_or_default();
    let target = req.target.clone().unwrap_or_default();
    let header_refs: Vec<(&str, &str)> = req
        .headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    let op = operation_name(&method, &target, &header_refs);
    let is_kms = req.get("x-amz-target").is_some();
    let chunked = req.is_chunked();
    let framing = req.request_framing()?;
    let mut expect_continue = req
        .get("expect")
        .is_some_and(|v| v.eq_ignore_ascii_case("100-continue"));
    let path = target.split('?').next().unwrap_or("");
    let part = target
        .split_once('?')
        .and_then(|(_, q)| {
            q.split('&')
                .find_map(|p| p.strip_prefix("partNumber="))
                .and_then(|v| v.parse().ok())
        })
        .filter(|_| op == "UploadPart");

    // KMS: the fault may depend on the KeyId in the (small) JSON body, so read it now.
    let mut kms_body = None;
    let mut request_bytes = 0;
    let key = if is_kms {
        send_continue(&mut client_out, &mut expect_continue)?;
        let mut body = Vec::new();
        request_bytes = copy_body(&mut client_in, &mut body, framing)?;
        let key = if chunked {
            String::new()
        } else {
            serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v["KeyId"].as_str().map(str::to_string))
                .unwrap_or_default()
        };
        kms_body = Some(body);
        key
    } else {
        percent_decode(path.strip_prefix('/').unwrap_or(path))
    };

    let (fault, delay, index, pause) = {
        let mut r = shared.rules();
        *r.calls.entry(op.clone()).or_insert(0) += 1;
        if let Some(range) = req.get("range").filter(|_| op == "GetObject") {
            r.ranges.push(range.to_string());
        }
        let pause = r.take_pause(&op);
        let fault = r.fault_for(&op, &key, part);
        let delay = r.delay_for(&op);
        r.seen.push(Seen {
            op: op.clone(),
            method: method.clone(),
            target: target.clone(),
            headers: req
                .headers
                .iter()
                .map(|(n, v)| (n.to_ascii_lowercase(), v.clone()))
                .collect(),
            status: 0,
            faulted: fault.is_some(),
            request_bytes: 0,
            response_bytes: 0,
        });
        (fault, delay, (r.generation, r.seen.len() - 1), pause)
    };
    if shared.log {
        eprintln!(
            "proxy: {op:<24} {method} {target} {}{}",
            fault.as_ref().map_or(String::new(), |f| format!(
                "FAULT {} {} ",
                f.status, f.error
            )),
            req.headers
                .iter()
                .filter(|(n, _)| {
                    let n = n.to_ascii_lowercase();
                    n.starts_with("content-")
                        || n.starts_with("transfer-")
                        || n == "expect"
                        || n == "range"
                        || n == "x-amz-content-sha256"
                        || n == "x-amz-decoded-content-length"
                        || n == "x-amz-trailer"
                })
                .map(|(n, v)| format!("[{n}: {v}]"))
                .collect::<Vec<_>>()
                .join(" ")
        );
    }
    if let Some((arrived, release)) = pause {
        let _ = arrived.send(());
        let _ = release.recv(); // released, or the Paused was dropped
    }
    if !delay.is_zero() && !hold(delay, shared) {
        return Ok(()); // proxy dropped while holding: abandon the request
    }

    // Called before the answer is released to the client (a client that has its answer
    // must see it counted: the copy below may go through the kernel, straight to the
    // socket), and again if the body turned out shorter. Idempotent: the per-operation
    // total moves by the difference.
    let record = |status: u16, req_bytes: u64, resp_bytes: u64| {
        let mut r = shared.rules();
        if r.generation != index.0 {
            return; // counters were reset while this request was in flight
        }
        let before = r.seen[index.1].response_bytes;
        let total = r.response_bytes.entry(op.clone()).or_insert(0);
        *total = *total - before + resp_bytes;
        let s = &mut r.seen[index.1];
        s.status = status;
        s.request_bytes = req_bytes;
        s.response_bytes = resp_bytes;
    };

    if let Some(f) = fault {
        // Take the whole request first: closing with unread data would reset the connection
        // and the client could lose the answer.
        if kms_body.is_none() {
            send_continue(&mut client_out, &mut expect_continue)?;
            request_bytes = copy_body(&mut client_in, &mut io::sink(), framing)?;
        }
        let n = shared.request_ids.fetch_add(1, Ordering::Relaxed);
        let request_id = format!("PROXY{n:012}");
        let (content_type, body) = if f.error.is_empty() {
            ("text/plain", String::new())
        } else if is_kms {
            (
                "application/x-amz-json-1.1",
                serde_json::json!({"__type": f.error, "message": format!("injected {}", f.error)})
                    .to_string(),
            )
        } else {
            (
                "application/xml",
                format!(
                    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{}</Code>\
                     <Message>injected {} by the sealstream test proxy</Message>\
                     <RequestId>{request_id}</RequestId><HostId>proxy</HostId></Error>",
                    f.error, f.error
                ),
            )
        };
        // A HEAD answer carries no body (S3 then has only the status to go on).
        let body = if method.eq_ignore_ascii_case("HEAD") {
            String::new()
        } else {
            body
        };
        record(f.status, request_bytes, body.len() as u64);
        write!(
            client_out,
            "HTTP/1.1 {} {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
             x-amz-request-id: {request_id}\r\nx-amzn-RequestId: {request_id}\r\n\
             Connection: close\r\n\r\n{body}",
            f.status,
            reason(f.status),
            body.len()
        )?;
        client_out.flush()?;
        let _ = client_out.shutdown(Shutdown::Write);
        return Ok(());
    }

    let up = match TcpStream::connect(upstream) {
        Ok(up) => up,
        Err(e) => {
            let msg = format!("proxy: cannot connect to {upstream}: {e}");
            record(502, request_bytes, msg.len() as u64);
            write!(
                client_out,
                "HTTP/1.1 502 Bad Gateway\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\
                 Connection: close\r\n\r\n{msg}",
                msg.len()
            )?;
            return Ok(());
        }
    };
    up.set_read_timeout(Some(IO_TIMEOUT))?;
    up.set_write_timeout(Some(IO_TIMEOUT))?;
    up.set_nodelay(true)?;
    let mut up_out = BufWriter::with_capacity(256 * 1024, up.try_clone()?);
    up_out.write_all(&serialise(&req, chunked))?;
    match kms_body {
        Some(body) => up_out.write_all(&body)?,
        None => {
            send_continue(&mut client_out, &mut expect_continue)?;
            request_bytes = copy_body(&mut client_in, &mut up_out, framing)?;
        }
    }
    up_out.flush()?;

    let mut up_in = BufReader::with_capacity(256 * 1024, up);
    // Interim answers (we asked for no 100-continue, but be safe) are not passed on.
    let resp = read_final_response_head(&mut up_in)?.ok_or(io::ErrorKind::UnexpectedEof)?;
    let status = resp.status.unwrap_or(0);
    let resp_chunked = resp.is_chunked();
    let framing = resp.response_framing(&method)?;
    // Counted as announced before anything reaches the client; corrected below if the
    // body is cut short. (Chunked and until-EOF bodies are counted when their copy ends.)
    if let Framing::Length(n) = framing {
        record(status, request_bytes, n);
    } else {
        record(status, request_bytes, 0);
    }
    let mut out = BufWriter::with_capacity(256 * 1024, &client_out);
    out.write_all(&serialise(&resp, resp_chunked))?;
    let result = copy_body(&mut up_in, &mut out, framing);
    let resp_bytes = match &result {
        Ok(n) => *n,
        Err(_) => 0,
    };
    record(status, request_bytes, resp_bytes);
    result?;
    out.flush()?;
    drop(out);
    let _ = client_out.shutdown(Shutdown::Write);
    Ok(())
}

fn send_continue(client: &mut TcpStream, expected: &mut bool) -> io::Result<()> {
    if std::mem::take(expected) {
        client.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
        client.flush()?;
    }
    Ok(())
}

/// A scratch directory with a plaintext `p.bin` and a [`Proxy`] in front of the emulator's
/// KMS: the setting of the KMS fault tests (tests/it/kms_faults.rs, tests/it/hardening_kms.rs).
pub struct KmsEnv {
    /// The test's directory.
    pub s: super::Scratch,
    /// The contents of `p.bin`.
    pub pt: Vec<u8>,
    /// The proxy the CLI's KMS traffic goes through.
    pub proxy: Proxy,
    /// The emulator itself (`host:port`), for creating keys behind the proxy's back.
    pub upstream: String,
}

impl KmsEnv {
    /// `None` without the emulator (see [`super::moto::endpoint`]); `p.bin` holds
    /// `pt_len` bytes of [`super::data`].
    pub fn start(test: &str, pt_len: usize) -> Option<KmsEnv> {
        let upstream = super::moto::endpoint(test)?;
        let s = super::Scratch::new();
        let pt = super::data(pt_len);
        super::write(&s.path("p.bin"), &pt);
        Some(KmsEnv {
            s,
            pt,
            proxy: Proxy::start(&upstream),
            upstream,
        })
    }

    /// The CLI with its KMS traffic sent to `kms_url` (the proxy, or another endpoint).
    pub fn cmd_via(&self, kms_url: &str) -> std::process::Command {
        let mut c = self.s.cmd();
        c.env("AWS_ENDPOINT_URL_KMS", kms_url);
        c
    }
}
