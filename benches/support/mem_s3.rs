//! `mem_s3`: an in-memory S3 server for benchmarks (scripts/bench_gateway.sh), so that the
//! upstream is never the bottleneck when the gateway is measured against direct access.
//! moto is far too slow and s3s-fs hashes every part (docs/BENCHMARKS.md, "Gateway").
//!
//! Built on s3s (the crate the gateway uses), serving: PutObject, GetObject (Range),
//! HeadObject, ListObjectsV2, DeleteObject(s), CopyObject, multipart create / upload /
//! complete / abort / list parts / list uploads, and the bucket calls clients make first.
//! Every bucket exists. Objects are kept as the received bodies (one `Bytes` per PUT or
//! part, no copy on Complete); ETags are counters, **nothing is hashed**: a request whose
//! `x-amz-content-sha256` is a payload hash has its `Authorization` dropped before s3s sees
//! it (s3s would otherwise SHA-256 the body to check it), and anonymous requests are
//! allowed. Streaming (aws-chunked) bodies keep their signature so that s3s decodes them.
//! Not a general S3: no versions, no ACLs, conditions only `If-None-Match: *` on PUT and
//! `If-Match` on GET/HEAD. For benchmarks on loopback only.
//!
//! Usage: `mem_s3 [ADDR [CERT KEY]]` (default `127.0.0.1:0`); prints `listening on
//! http://ADDR`, or `https://ADDR` when given a PEM certificate and key. HTTPS matters for
//! what is measured: over plain HTTP the AWS SDKs sign every payload byte (SHA-256, and
//! s3s checks it), which real S3, always HTTPS, does not make them do.
//! Clients sign with any access key listed in `MEM_S3_ACCESS_KEY` / `MEM_S3_SECRET_KEY`
//! (default `testing` / `testing`).
//! `MEM_S3_VERIFY_PAYLOAD=1` keeps every signature, so s3s checks signed payloads'
//! SHA-256 as S3 does: the upstream then does the work real S3 does for a signed payload
//! (on this machine's cores), for comparing direct access with the gateway on equal work.

#![forbid(unsafe_code)]

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt as _;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use s3s::dto::*;
use s3s::service::S3ServiceBuilder;
use s3s::{S3, S3Error, S3ErrorCode, S3Request, S3Response, S3Result};

/// One stored object: its body as received pieces, and what S3 returns about it.
#[derive(Clone)]
struct Obj {
    pieces: Arc<Vec<Bytes>>,
    len: u64,
    etag: String,
    modified: std::time::SystemTime,
    content_type: Option<String>,
    metadata: Option<Metadata>,
}

/// An upload in progress: its key, metadata and parts by number.
struct Upload {
    bucket: String,
    key: String,
    content_type: Option<String>,
    metadata: Option<Metadata>,
    parts: BTreeMap<i32, (Bytes, String)>,
}

#[derive(Default)]
struct State {
    objects: BTreeMap<(String, String), Obj>,
    uploads: HashMap<String, Upload>,
}

#[derive(Default, Clone)]
struct Mem {
    state: Arc<Mutex<State>>,
    counter: Arc<AtomicU64>,
}

fn err(code: S3ErrorCode, msg: &'static str) -> S3Error {
    S3Error::with_message(code, msg)
}

fn poisoned<T>(_: T) -> S3Error {
    err(S3ErrorCode::InternalError, "state lock poisoned")
}

impl Mem {
    fn next(&self) -> u64 {
        self.counter.fetch_add(1, Ordering::Relaxed) + 1
    }

    fn etag(&self) -> String {
        format!("{:032x}", self.next())
    }

    fn get(&self, bucket: &str, key: &str) -> S3Result<Obj> {
        let st = self.state.lock().map_err(poisoned)?;
        st.objects
            .get(&(bucket.to_string(), key.to_string()))
            .cloned()
            .ok_or_else(|| err(S3ErrorCode::NoSuchKey, "The specified key does not exist."))
    }
}

/// Reads a request body into one buffer (sized by its length when known).
async fn collect(body: Option<StreamingBlob>, len: Option<i64>) -> S3Result<Bytes> {
    let Some(mut body) = body else {
        return Ok(Bytes::new());
    };
    let cap = len.and_then(|n| usize::try_from(n).ok()).unwrap_or(0);
    let mut buf = BytesMut::with_capacity(cap);
    while let Some(piece) = body.next().await {
        let piece = piece.map_err(|_| err(S3ErrorCode::IncompleteBody, "body read failed"))?;
        buf.extend_from_slice(&piece);
    }
    Ok(buf.freeze())
}

/// The bytes `[start, end)` of an object, as zero-copy slices of its pieces (≤ 1 MiB each).
fn slices(pieces: &[Bytes], start: u64, end: u64) -> Vec<Bytes> {
    const MAX: usize = 1 << 20;
    let mut out = Vec::new();
    let mut off = 0u64;
    for p in pieces {
        let (ps, pe) = (off, off + p.len() as u64);
        off = pe;
        if pe <= start || ps >= end {
            continue;
        }
        let a = (start.max(ps) - ps) as usize;
        let b = (end.min(pe) - ps) as usize;
        let mut s = p.slice(a..b);
        while s.len() > MAX {
            out.push(s.split_to(MAX));
        }
        if !s.is_empty() {
            out.push(s);
        }
    }
    out
}

fn quoted(etag: &str) -> ETag {
    ETag::Strong(etag.to_string())
}

fn check_if_match(o: &Obj, c: &Option<IfMatch>) -> S3Result<()> {
    if let Some(c) = c
        && !c.is_any()
        && c.as_etag().map(ETag::value) != Some(o.etag.as_str())
    {
        return Err(err(
            S3ErrorCode::PreconditionFailed,
            "At least one of the pre-conditions you specified did not hold",
        ));
    }
    Ok(())
}

#[async_trait::async_trait]
impl S3 for Mem {
    async fn create_bucket(
        &self,
        _req: S3Request<CreateBucketInput>,
    ) -> S3Result<S3Response<CreateBucketOutput>> {
        Ok(S3Response::new(CreateBucketOutput::default()))
    }

    async fn head_bucket(
        &self,
        _req: S3Request<HeadBucketInput>,
    ) -> S3Result<S3Response<HeadBucketOutput>> {
        Ok(S3Response::new(HeadBucketOutput::default()))
    }

    async fn get_bucket_location(
        &self,
        _req: S3Request<GetBucketLocationInput>,
    ) -> S3Result<S3Response<GetBucketLocationOutput>> {
        Ok(S3Response::new(GetBucketLocationOutput::default()))
    }

    async fn put_object(
        &self,
        req: S3Request<PutObjectInput>,
    ) -> S3Result<S3Response<PutObjectOutput>> {
        let mut i = req.input;
        let data = collect(i.body.take(), i.content_length).await?;
        let etag = self.etag();
        let obj = Obj {
            len: data.len() as u64,
            pieces: Arc::new(vec![data]),
            etag: etag.clone(),
            modified: std::time::SystemTime::now(),
            content_type: i.content_type,
            metadata: i.metadata,
        };
        let mut st = self.state.lock().map_err(poisoned)?;
        let k = (i.bucket, i.key);
        if i.if_none_match.as_ref().is_some_and(ETagCondition::is_any)
            && st.objects.contains_key(&k)
        {
            return Err(err(
                S3ErrorCode::PreconditionFailed,
                "At least one of the pre-conditions you specified did not hold",
            ));
        }
        st.objects.insert(k, obj);
        Ok(S3Response::new(PutObjectOutput {
            e_tag: Some(quoted(&etag)),
            ..Default::default()
        }))
    }

    async fn get_object(
        &self,
        req: S3Request<GetObjectInput>,
    ) -> S3Result<S3Response<GetObjectOutput>> {
        let i = req.input;
        let o = self.get(&i.bucket, &i.key)?;
        check_if_match(&o, &i.if_match)?;
        let (start, end, content_range) = match &i.range {
            None => (0, o.len, None),
            Some(r) => {
                let r = r.check(o.len).map_err(|_| {
                    err(
                        S3ErrorCode::InvalidRange,
                        "The requested range is not satisfiable",
                    )
                })?;
                let cr = format!("bytes {}-{}/{}", r.start, r.end.saturating_sub(1), o.len);
                (r.start, r.end, Some(cr))
            }
        };
        let body = slices(&o.pieces, start, end);
        let stream = futures_util::stream::iter(body.into_iter().map(Ok::<_, std::io::Error>));
        Ok(S3Response::new(GetObjectOutput {
            body: Some(StreamingBlob::wrap(stream)),
            content_length: Some((end - start) as i64),
            content_range,
            accept_ranges: Some("bytes".into()),
            e_tag: Some(quoted(&o.etag)),
            last_modified: Some(o.modified.into()),
            content_type: o.content_type,
            metadata: o.metadata,
            ..Default::default()
        }))
    }

    async fn head_object(
        &self,
        req: S3Request<HeadObjectInput>,
    ) -> S3Result<S3Response<HeadObjectOutput>> {
        let i = req.input;
        let o = self.get(&i.bucket, &i.key)?;
        check_if_match(&o, &i.if_match)?;
        Ok(S3Response::new(HeadObjectOutput {
            content_length: Some(o.len as i64),
            accept_ranges: Some("bytes".into()),
            e_tag: Some(quoted(&o.etag)),
            last_modified: Some(o.modified.into()),
            content_type: o.content_type,
            metadata: o.metadata,
            ..Default::default()
        }))
    }

    async fn delete_object(
        &self,
        req: S3Request<DeleteObjectInput>,
    ) -> S3Result<S3Response<DeleteObjectOutput>> {
        let i = req.input;
        let mut st = self.state.lock().map_err(poisoned)?;
        let k = (i.bucket, i.key);
        if let (Some(c), Some(o)) = (&i.if_match, st.objects.get(&k)) {
            check_if_match(o, &Some(c.clone()))?;
        }
        st.objects.remove(&k);
        Ok(S3Response::new(DeleteObjectOutput::default()))
    }

    async fn delete_objects(
        &self,
        req: S3Request<DeleteObjectsInput>,
    ) -> S3Result<S3Response<DeleteObjectsOutput>> {
        let i = req.input;
        let mut st = self.state.lock().map_err(poisoned)?;
        let mut deleted = Vec::new();
        for id in i.delete.objects {
            st.objects.remove(&(i.bucket.clone(), id.key.clone()));
            deleted.push(DeletedObject {
                key: Some(id.key),
                ..Default::default()
            });
        }
        Ok(S3Response::new(DeleteObjectsOutput {
            deleted: Some(deleted),
            ..Default::default()
        }))
    }

    async fn copy_object(
        &self,
        req: S3Request<CopyObjectInput>,
    ) -> S3Result<S3Response<CopyObjectOutput>> {
        let i = req.input;
        let CopySource::Bucket { bucket, key, .. } = &i.copy_source else {
            return Err(err(
                S3ErrorCode::NotImplemented,
                "access point copy sources",
            ));
        };
        let mut o = self.get(bucket, key)?;
        if let Some(c) = &i.copy_source_if_match
            && !c.is_any()
            && c.as_etag().map(ETag::value) != Some(o.etag.as_str())
        {
            return Err(err(
                S3ErrorCode::PreconditionFailed,
                "At least one of the pre-conditions you specified did not hold",
            ));
        }
        if i.metadata_directive
            .as_ref()
            .is_some_and(|d| d.as_str() == MetadataDirective::REPLACE)
        {
            o.metadata = i.metadata;
            o.content_type = i.content_type;
        }
        o.etag = self.etag();
        o.modified = std::time::SystemTime::now();
        let etag = o.etag.clone();
        let mut st = self.state.lock().map_err(poisoned)?;
        st.objects.insert((i.bucket, i.key), o);
        Ok(S3Response::new(CopyObjectOutput {
            copy_object_result: Some(CopyObjectResult {
                e_tag: Some(quoted(&etag)),
                last_modified: Some(std::time::SystemTime::now().into()),
                ..Default::default()
            }),
            ..Default::default()
        }))
    }

    async fn list_objects_v2(
        &self,
        req: S3Request<ListObjectsV2Input>,
    ) -> S3Result<S3Response<ListObjectsV2Output>> {
        let i = req.input;
        let prefix = i.prefix.clone().unwrap_or_default();
        let max = i.max_keys.unwrap_or(1000).clamp(1, 1000) as usize;
        let after = i
            .continuation_token
            .clone()
            .or_else(|| i.start_after.clone())
            .unwrap_or_default();
        let st = self.state.lock().map_err(poisoned)?;
        let from = (i.bucket.clone(), after.clone());
        let mut contents = Vec::new();
        let mut prefixes: Vec<String> = Vec::new();
        let mut next = None;
        for ((b, k), o) in st.objects.range(from..) {
            if *b != i.bucket {
                break;
            }
            if *k <= after && !after.is_empty() {
                continue;
            }
            if !k.starts_with(&prefix) {
                if k.as_str() > prefix.as_str() {
                    break;
                }
                continue;
            }
            if contents.len() + prefixes.len() >= max {
                next = Some(k.clone());
                break;
            }
            if let Some(d) = i.delimiter.as_deref().filter(|d| !d.is_empty())
                && let Some(pos) = k[prefix.len()..].find(d)
            {
                let cp = k[..prefix.len() + pos + d.len()].to_string();
                if prefixes.last() != Some(&cp) {
                    prefixes.push(cp);
                }
                continue;
            }
            contents.push(Object {
                key: Some(k.clone()),
                size: Some(o.len as i64),
                e_tag: Some(quoted(&o.etag)),
                last_modified: Some(o.modified.into()),
                ..Default::default()
            });
        }
        // The token is the last key returned: the next page starts after it.
        let token = next.as_ref().and(
            contents
                .last()
                .and_then(|o: &Object| o.key.clone())
                .or_else(|| prefixes.last().cloned()),
        );
        Ok(S3Response::new(ListObjectsV2Output {
            name: Some(i.bucket),
            prefix: i.prefix,
            delimiter: i.delimiter,
            max_keys: Some(max as i32),
            key_count: Some((contents.len() + prefixes.len()) as i32),
            is_truncated: Some(next.is_some()),
            next_continuation_token: token,
            continuation_token: i.continuation_token,
            start_after: i.start_after,
            contents: Some(contents),
            common_prefixes: Some(
                prefixes
                    .into_iter()
                    .map(|p| CommonPrefix { prefix: Some(p) })
                    .collect(),
            ),
            ..Default::default()
        }))
    }

    async fn create_multipart_upload(
        &self,
        req: S3Request<CreateMultipartUploadInput>,
    ) -> S3Result<S3Response<CreateMultipartUploadOutput>> {
        let i = req.input;
        let id = format!("upload{:016x}", self.next());
        let mut st = self.state.lock().map_err(poisoned)?;
        st.uploads.insert(
            id.clone(),
            Upload {
                bucket: i.bucket.clone(),
                key: i.key.clone(),
                content_type: i.content_type,
                metadata: i.metadata,
                parts: BTreeMap::new(),
            },
        );
        Ok(S3Response::new(CreateMultipartUploadOutput {
            bucket: Some(i.bucket),
            key: Some(i.key),
            upload_id: Some(id),
            ..Default::default()
        }))
    }

    async fn upload_part(
        &self,
        req: S3Request<UploadPartInput>,
    ) -> S3Result<S3Response<UploadPartOutput>> {
        let mut i = req.input;
        let data = collect(i.body.take(), i.content_length).await?;
        let etag = self.etag();
        let mut st = self.state.lock().map_err(poisoned)?;
        let up = st.uploads.get_mut(&i.upload_id).ok_or_else(|| {
            err(
                S3ErrorCode::NoSuchUpload,
                "The specified upload does not exist.",
            )
        })?;
        up.parts.insert(i.part_number, (data, etag.clone()));
        Ok(S3Response::new(UploadPartOutput {
            e_tag: Some(quoted(&etag)),
            ..Default::default()
        }))
    }

    async fn complete_multipart_upload(
        &self,
        req: S3Request<CompleteMultipartUploadInput>,
    ) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
        let i = req.input;
        let mut st = self.state.lock().map_err(poisoned)?;
        let up = st.uploads.remove(&i.upload_id).ok_or_else(|| {
            err(
                S3ErrorCode::NoSuchUpload,
                "The specified upload does not exist.",
            )
        })?;
        let named = i.multipart_upload.and_then(|m| m.parts).unwrap_or_default();
        let mut pieces = Vec::with_capacity(named.len());
        for p in &named {
            let n = p.part_number.unwrap_or(0);
            let Some((data, etag)) = up.parts.get(&n) else {
                st.uploads.insert(i.upload_id.clone(), up);
                return Err(err(
                    S3ErrorCode::InvalidPart,
                    "a named part was not uploaded",
                ));
            };
            if p.e_tag.as_ref().is_some_and(|e| e.value() != etag) {
                st.uploads.insert(i.upload_id.clone(), up);
                return Err(err(S3ErrorCode::InvalidPart, "a part's ETag differs"));
            }
            pieces.push(data.clone());
        }
        let etag = format!("{:032x}-{}", self.next(), pieces.len());
        let obj = Obj {
            len: pieces.iter().map(|p| p.len() as u64).sum(),
            pieces: Arc::new(pieces),
            etag: etag.clone(),
            modified: std::time::SystemTime::now(),
            content_type: up.content_type,
            metadata: up.metadata,
        };
        let k = (up.bucket.clone(), up.key.clone());
        if i.if_none_match.as_ref().is_some_and(ETagCondition::is_any)
            && st.objects.contains_key(&k)
        {
            return Err(err(
                S3ErrorCode::PreconditionFailed,
                "At least one of the pre-conditions you specified did not hold",
            ));
        }
        st.objects.insert(k, obj);
        Ok(S3Response::new(CompleteMultipartUploadOutput {
            bucket: Some(up.bucket),
            key: Some(up.key),
            e_tag: Some(quoted(&etag)),
            ..Default::default()
        }))
    }

    async fn abort_multipart_upload(
        &self,
        req: S3Request<AbortMultipartUploadInput>,
    ) -> S3Result<S3Response<AbortMultipartUploadOutput>> {
        let mut st = self.state.lock().map_err(poisoned)?;
        st.uploads.remove(&req.input.upload_id).ok_or_else(|| {
            err(
                S3ErrorCode::NoSuchUpload,
                "The specified upload does not exist.",
            )
        })?;
        Ok(S3Response::new(AbortMultipartUploadOutput::default()))
    }

    async fn list_parts(
        &self,
        req: S3Request<ListPartsInput>,
    ) -> S3Result<S3Response<ListPartsOutput>> {
        let i = req.input;
        let st = self.state.lock().map_err(poisoned)?;
        let up = st.uploads.get(&i.upload_id).ok_or_else(|| {
            err(
                S3ErrorCode::NoSuchUpload,
                "The specified upload does not exist.",
            )
        })?;
        let marker = i.part_number_marker.unwrap_or(0);
        let max = i.max_parts.unwrap_or(1000).clamp(1, 1000) as usize;
        let mut parts = Vec::new();
        let mut truncated = false;
        for (n, (data, etag)) in up.parts.range(marker + 1..) {
            if parts.len() == max {
                truncated = true;
                break;
            }
            parts.push(Part {
                part_number: Some(*n),
                size: Some(data.len() as i64),
                e_tag: Some(quoted(etag)),
                last_modified: Some(std::time::SystemTime::now().into()),
                ..Default::default()
            });
        }
        let next = parts.last().and_then(|p: &Part| p.part_number);
        Ok(S3Response::new(ListPartsOutput {
            bucket: Some(i.bucket),
            key: Some(i.key),
            upload_id: Some(i.upload_id),
            is_truncated: Some(truncated),
            next_part_number_marker: next,
            max_parts: Some(max as i32),
            parts: Some(parts),
            ..Default::default()
        }))
    }

    async fn list_multipart_uploads(
        &self,
        req: S3Request<ListMultipartUploadsInput>,
    ) -> S3Result<S3Response<ListMultipartUploadsOutput>> {
        let i = req.input;
        let st = self.state.lock().map_err(poisoned)?;
        let uploads = st
            .uploads
            .iter()
            .filter(|(_, u)| u.bucket == i.bucket)
            .map(|(id, u)| MultipartUpload {
                key: Some(u.key.clone()),
                upload_id: Some(id.clone()),
                ..Default::default()
            })
            .collect();
        Ok(S3Response::new(ListMultipartUploadsOutput {
            bucket: Some(i.bucket),
            is_truncated: Some(false),
            uploads: Some(uploads),
            ..Default::default()
        }))
    }
}

/// Anonymous requests are fine: they are the ones whose signature was dropped so that s3s
/// does not hash their payload (module doc).
struct AllowAll;

#[async_trait::async_trait]
impl s3s::access::S3Access for AllowAll {
    async fn check(&self, _cx: &mut s3s::access::S3AccessContext<'_>) -> S3Result<()> {
        Ok(())
    }
}

/// True when `x-amz-content-sha256` is a payload hash (64 hex digits) that s3s would verify.
fn hashed_payload(req: &http::Request<hyper::body::Incoming>) -> bool {
    req.headers()
        .get("x-amz-content-sha256")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.len() == 64 && v.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// A rustls acceptor for a PEM certificate chain and key (ring, as the gateway's).
fn tls_acceptor(
    cert: &str,
    key: &str,
) -> Result<tokio_rustls::TlsAcceptor, Box<dyn std::error::Error>> {
    use tokio_rustls::rustls;
    use tokio_rustls::rustls::pki_types::pem::PemObject as _;
    use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_file_iter(cert)?.collect::<Result<Vec<_>, _>>()?;
    let key = PrivateKeyDer::from_pem_file(key)?;
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_no_client_auth()
    .with_single_cert(certs, key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:0".to_string());
    let tls = match (std::env::args().nth(2), std::env::args().nth(3)) {
        (Some(cert), Some(key)) => Some(tls_acceptor(&cert, &key)?),
        _ => None,
    };
    let access = std::env::var("MEM_S3_ACCESS_KEY").unwrap_or_else(|_| "testing".into());
    let secret = std::env::var("MEM_S3_SECRET_KEY").unwrap_or_else(|_| "testing".into());
    let verify_payload = std::env::var("MEM_S3_VERIFY_PAYLOAD").is_ok_and(|v| v == "1");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let mut b = S3ServiceBuilder::new(Mem::default());
        b.set_auth(s3s::auth::SimpleAuth::from_single(access, secret));
        b.set_access(AllowAll);
        let s3s = Arc::new(b.build());
        let listener = tokio::net::TcpListener::bind(&addr).await?;
        let scheme = if tls.is_some() { "https" } else { "http" };
        println!("listening on {scheme}://{}", listener.local_addr()?);
        let conn = ConnBuilder::new(TokioExecutor::new());
        loop {
            let (stream, _) = listener.accept().await?;
            let _ = stream.set_nodelay(true);
            let s3s = s3s.clone();
            let svc = hyper::service::service_fn(move |mut req: http::Request<_>| {
                if !verify_payload && hashed_payload(&req) {
                    req.headers_mut().remove(http::header::AUTHORIZATION);
                }
                let s3s = s3s.clone();
                async move { s3s.call(req.map(s3s::Body::from)).await }
            });
            // HTTPS: the TLS handshake first (it used to be skipped, so the "HTTPS" port
            // spoke plain HTTP and TLS clients failed with WRONG_VERSION_NUMBER).
            let tls = tls.clone();
            let conn = conn.clone();
            tokio::spawn(async move {
                match tls {
                    Some(acceptor) => {
                        if let Ok(s) = acceptor.accept(stream).await {
                            let _ = conn.serve_connection(TokioIo::new(s), svc).await;
                        }
                    }
                    None => {
                        let _ = conn.serve_connection(TokioIo::new(stream), svc).await;
                    }
                }
            });
        }
    })
}
