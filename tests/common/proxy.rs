//! A loopback fault-injecting proxy in front of the emulator's KMS: it counts calls per
//! operation, answers chosen errors for chosen key ids, and fails the first N calls with
//! throttling or 5xx — what moto itself never does. Everything else is forwarded verbatim.
//!
//! One request per connection (`Connection: close` both ways) keeps it simple and makes the
//! client's retries visible as separate requests.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What to answer instead of forwarding.
#[derive(Clone, Debug)]
pub struct Fault {
    /// HTTP status, e.g. 400 or 503.
    pub status: u16,
    /// AWS error type, e.g. `ThrottlingException` (empty for a bare 5xx).
    pub error: String,
}

impl Fault {
    pub fn aws(status: u16, error: &str) -> Fault {
        Fault {
            status,
            error: error.to_string(),
        }
    }
}

#[derive(Default)]
struct Rules {
    /// Operation (or "*") → (remaining count, fault).
    first_n: Vec<(String, u32, Fault)>,
    /// (operation, KeyId substring) → fault, for every such call naming that key.
    per_key: Vec<(String, String, Fault)>,
    calls: HashMap<String, u32>,
}

/// A running proxy; stops when dropped.
pub struct Proxy {
    pub url: String,
    rules: Arc<Mutex<Rules>>,
    stop: Arc<AtomicBool>,
    port: u16,
}

impl Proxy {
    /// Starts a proxy forwarding to `upstream` (`host:port`).
    pub fn start(upstream: &str) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let port = listener.local_addr().unwrap().port();
        let rules = Arc::new(Mutex::new(Rules::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let (r, st, up) = (Arc::clone(&rules), Arc::clone(&stop), upstream.to_string());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if st.load(Ordering::Relaxed) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let (r, up) = (Arc::clone(&r), up.clone());
                std::thread::spawn(move || {
                    let _ = handle(conn, &up, &r);
                });
            }
        });
        Proxy {
            url: format!("http://127.0.0.1:{port}"),
            rules,
            stop,
            port,
        }
    }

    /// Answers `fault` to the first `n` calls of `op` (`"*"` for any operation).
    pub fn fail_first(&self, op: &str, n: u32, fault: Fault) {
        self.rules
            .lock()
            .unwrap()
            .first_n
            .push((op.into(), n, fault));
    }

    /// Answers `fault` to every call of `op` whose `KeyId` contains `key`.
    pub fn fail_key(&self, op: &str, key: &str, fault: Fault) {
        self.rules
            .lock()
            .unwrap()
            .per_key
            .push((op.into(), key.into(), fault));
    }

    /// Calls seen for `op` (faulted or forwarded).
    pub fn calls(&self, op: &str) -> u32 {
        *self.rules.lock().unwrap().calls.get(op).unwrap_or(&0)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = TcpStream::connect(("127.0.0.1", self.port)); // wake the accept loop
    }
}

fn handle(conn: TcpStream, upstream: &str, rules: &Mutex<Rules>) -> std::io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut head = Vec::new();
    let mut content_length = 0usize;
    let mut op = String::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        if line == "\r\n" {
            break;
        }
        let lower = line.to_ascii_lowercase();
        if let Some(v) = lower.strip_prefix("content-length:") {
            content_length = v.trim().parse().unwrap_or(0);
        }
        if lower.starts_with("x-amz-target:") {
            // "X-Amz-Target: TrentService.GenerateDataKey" → "GenerateDataKey"
            op = line.trim_end().rsplit('.').next().unwrap_or("").to_string();
        }
        if lower.starts_with("connection:") {
            continue;
        }
        head.push(line);
    }
    let mut body = vec![0u8; content_length];
    reader.read_exact(&mut body)?;
    let key_id = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v["KeyId"].as_str().map(str::to_string))
        .unwrap_or_default();

    let fault = {
        let mut r = rules.lock().unwrap();
        *r.calls.entry(op.clone()).or_insert(0) += 1;
        let mut chosen = None;
        for (o, n, f) in r.first_n.iter_mut() {
            if (*o == op || o == "*") && *n > 0 {
                *n -= 1;
                chosen = Some(f.clone());
                break;
            }
        }
        if chosen.is_none() && !key_id.is_empty() {
            chosen = r
                .per_key
                .iter()
                .find(|(o, k, _)| *o == op && key_id.contains(k.as_str()))
                .map(|(_, _, f)| f.clone());
        }
        chosen
    };

    let mut out = conn;
    if let Some(f) = fault {
        let body = if f.error.is_empty() {
            String::new()
        } else {
            serde_json::json!({"__type": f.error, "message": format!("injected {}", f.error)})
                .to_string()
        };
        let reason = match f.status {
            400 => "Bad Request",
            500 => "Internal Server Error",
            503 => "Service Unavailable",
            _ => "Error",
        };
        write!(
            out,
            "HTTP/1.1 {} {reason}\r\nContent-Type: application/x-amz-json-1.1\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            f.status,
            body.len()
        )?;
        return out.flush();
    }

    let mut up = TcpStream::connect(upstream)?;
    up.set_read_timeout(Some(Duration::from_secs(30)))?;
    for line in &head {
        up.write_all(line.as_bytes())?;
    }
    up.write_all(b"Connection: close\r\n\r\n")?;
    up.write_all(&body)?;
    let mut resp = Vec::new();
    up.read_to_end(&mut resp)?;
    // Pass the response through, forcing `Connection: close`.
    let split = resp
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(resp.len(), |p| p + 4);
    let head_text = String::from_utf8_lossy(&resp[..split]).into_owned();
    let mut new_head = String::new();
    for line in head_text.split("\r\n").filter(|l| !l.is_empty()) {
        if !line.to_ascii_lowercase().starts_with("connection:") {
            new_head.push_str(line);
            new_head.push_str("\r\n");
        }
    }
    new_head.push_str("Connection: close\r\n\r\n");
    out.write_all(new_head.as_bytes())?;
    out.write_all(&resp[split..])?;
    out.flush()
}
