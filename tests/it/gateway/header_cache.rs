//! The header cache for part-wise objects, and their HEAD sizes kept per ETag
//! (docs/GATEWAY.md "Limits and costs"): what every multipart upload of a real client
//! creates. Counted on the wire by a recording proxy between the gateway and moto.

use super::*;
use common::proxy::Proxy;

/// Ranged GETs of a part-wise object repeated within `--header-cache-seconds` cost one
/// upstream GetObject per part they touch (no HEAD, no manifest GET), and still see the
/// object as it is upstream: replaced behind the gateway's back (the GET pinned to the old
/// ETag is refused, header and manifest are loaded again) or deleted (NoSuchKey).
#[test]
#[ignore = "needs the emulator (scripts/test.sh runs it)"]
fn part_wise_ranged_gets_reuse_header_and_manifest() {
    const TEST: &str = "part_wise_ranged_gets_reuse_header_and_manifest";
    let proxy = Proxy::start(&endpoint(TEST).expect("emulator"));
    let via = [("AWS_ENDPOINT_URL", proxy.url.as_str())];
    // Kept for 10 minutes: the test must not depend on how fast it runs.
    let gw = Gateway::start_with_env(TEST, &["--header-cache-seconds", "600"], &via);
    let b = gw.bucket();
    // Two part-wise objects through the gateway, and a first (fresh) GET of "mp".
    gw.python(
        r#"
def upload(key, data):
    u = c.create_multipart_upload(Bucket=B, Key=key)["UploadId"]
    e1 = c.upload_part(Bucket=B, Key=key, UploadId=u, PartNumber=1, Body=data[:5 << 20])["ETag"]
    e2 = c.upload_part(Bucket=B, Key=key, UploadId=u, PartNumber=2, Body=data[5 << 20:])["ETag"]
    c.complete_multipart_upload(Bucket=B, Key=key, UploadId=u, MultipartUpload={"Parts": [
        {"PartNumber": 1, "ETag": e1}, {"PartNumber": 2, "ETag": e2}]})
for key in ("mp", "mp2"):
    data = os.urandom((5 << 20) + 300_000)
    upload(key, data)
    open(key + ".bin", "wb").write(data)
assert c.get_object(Bucket=B, Key="mp", Range="bytes=0-9")["Body"].read() == open("mp.bin", "rb").read()[:10]
print("ALL OK")
"#,
        &b,
        &[],
    );
    let hits = gw.metric("sealstream_gateway_header_cache_hits_total");
    proxy.reset_counters();
    // Within part 1, within part 2, across both: 1 + 1 + 2 body GETs, nothing else.
    gw.python(
        r#"
d = open("mp.bin", "rb").read()
for s, e in [(100, 65_635), (5_243_000, 5_243_999), (5_242_000, 5_243_999)]:
    g = c.get_object(Bucket=B, Key="mp", Range=f"bytes={s}-{e}")
    assert g["Body"].read() == d[s:e + 1], (s, e)
    assert g["ContentRange"] == f"bytes {s}-{e}/{len(d)}", g["ContentRange"]
print("ALL OK")
"#,
        &b,
        &[],
    );
    assert_eq!(
        gw.metric("sealstream_gateway_header_cache_hits_total"),
        hits + 3,
        "the header was not reused"
    );
    let seen: Vec<String> = proxy
        .requests()
        .iter()
        .map(|r| format!("{} {}", r.op, r.target))
        .collect();
    assert_eq!(
        (proxy.calls("GetObject"), proxy.calls("HeadObject")),
        (4, 0),
        "upstream requests of 3 cached ranged GETs: {seen:#?}"
    );
    // HEAD: the manifest's claimed size is kept per ETag, as listings keep it: the second
    // HEAD costs the upstream HEAD only.
    proxy.reset_counters();
    gw.python(
        r#"
for _ in range(2):
    assert c.head_object(Bucket=B, Key="mp")["ContentLength"] == (5 << 20) + 300_000
print("ALL OK")
"#,
        &b,
        &[],
    );
    assert_eq!(
        (proxy.calls("GetObject"), proxy.calls("HeadObject")),
        (1, 2),
        "upstream requests of 2 HEADs of a part-wise object"
    );
    // Replaced straight upstream (another part-wise object copied onto the key), then
    // deleted: each is seen by the next GET.
    let stale = gw.metric("sealstream_gateway_header_cache_stale_total");
    gw.python(
        r#"
up.copy_object(Bucket=B, Key="mp", CopySource={"Bucket": B, "Key": "mp2"})
d2 = open("mp2.bin", "rb").read()
g = c.get_object(Bucket=B, Key="mp", Range="bytes=5243000-5243999")
assert g["Body"].read() == d2[5243000:5244000], "served the replaced object's bytes"
up.delete_object(Bucket=B, Key="mp")
gone = err(lambda: c.get_object(Bucket=B, Key="mp", Range="bytes=0-9")["Body"].read())
assert gone == ("NoSuchKey", 404), gone
print("ALL OK")
"#,
        &b,
        &[],
    );
    assert_eq!(
        gw.metric("sealstream_gateway_header_cache_stale_total"),
        stale + 2,
        "a replaced and a deleted object were not both found stale"
    );
}
