//! `--upstream-signed-payload`: what the gateway's upstream uploads carry, seen on the wire
//! by a recording proxy between the gateway and moto (docs/GATEWAY.md "Limits and costs",
//! upstream uploads).

use super::*;
use common::proxy::Proxy;

/// The upstream PutObject and UploadPart requests the proxy saw for keys under `prefix`
/// (object bodies: not the small companion and manifest objects, which go as the SDK sends
/// them): (operation, `x-amz-content-sha256`, `content-encoding`, `x-amz-trailer`).
fn uploads(proxy: &Proxy, prefix: &str) -> Vec<(String, String, String, String)> {
    proxy
        .requests()
        .into_iter()
        .filter(|r| matches!(r.op.as_str(), "PutObject" | "UploadPart"))
        .filter(|r| r.target.contains(&format!("/{prefix}")))
        .filter(|r| !r.target.contains(".sealstream-"))
        .map(|r| {
            let h = |n: &str| r.header(n).unwrap_or_default().to_string();
            (
                r.op.clone(),
                h("x-amz-content-sha256"),
                h("content-encoding"),
                h("x-amz-trailer"),
            )
        })
        .collect()
}

#[test]
#[ignore = "needs the emulator (scripts/test.sh runs it)"]
fn upstream_payload_signing_follows_the_flag() {
    const TEST: &str = "upstream_payload_signing_follows_the_flag";
    let proxy = Proxy::start(&endpoint(TEST).expect("emulator"));
    let via = [("AWS_ENDPOINT_URL", proxy.url.as_str())];
    let unsigned = Gateway::start_with_env(TEST, &[], &via);
    let signed = Gateway::start_with_env(TEST, &["--upstream-signed-payload"], &via);
    let b = unsigned.bucket();
    // The same uploads through each gateway: a PutObject and a two-part upload.
    unsigned.python(
        r#"
cs = boto3.client("s3", endpoint_url=os.environ["GW2"], region_name="us-east-1", config=cfg)
small, big = os.urandom(300_000), os.urandom((5 << 20) + 100)
for cl, name in [(c, "unsigned"), (cs, "signed")]:
    cl.put_object(Bucket=B, Key=name + "-put", Body=small)
    key = name + "-mp"
    u = cl.create_multipart_upload(Bucket=B, Key=key)["UploadId"]
    e1 = cl.upload_part(Bucket=B, Key=key, UploadId=u, PartNumber=1, Body=big[:5 << 20])["ETag"]
    e2 = cl.upload_part(Bucket=B, Key=key, UploadId=u, PartNumber=2, Body=big[5 << 20:])["ETag"]
    cl.complete_multipart_upload(Bucket=B, Key=key, UploadId=u, MultipartUpload={"Parts": [
        {"PartNumber": 1, "ETag": e1}, {"PartNumber": 2, "ETag": e2}]})
    # either gateway reads what the other wrote
    for other in (c, cs):
        assert other.get_object(Bucket=B, Key=name + "-put")["Body"].read() == small
        assert other.get_object(Bucket=B, Key=key)["Body"].read() == big
print("ALL OK")
"#,
        &b,
        &[("GW2", signed.url.clone())],
    );
    let plain = uploads(&proxy, &format!("{b}/unsigned-"));
    let with_sig = uploads(&proxy, &format!("{b}/signed-"));
    eprintln!("upstream uploads: default {plain:?}\nsigned {with_sig:?}");
    let ops: Vec<&str> = plain.iter().map(|u| u.0.as_str()).collect();
    assert_eq!(ops, ["PutObject", "UploadPart", "UploadPart"], "{plain:?}");
    for (op, sha, encoding, trailer) in &plain {
        assert_eq!(sha, "STREAMING-UNSIGNED-PAYLOAD-TRAILER", "{op}");
        assert!(encoding.contains("aws-chunked"), "{op}: {encoding}");
        assert_eq!(trailer, "x-amz-checksum-crc32", "{op}");
    }
    // Signed: the SDK's default over plain HTTP, a SHA-256 of the payload in the
    // signature (whole, or per chunk with a signed trailer).
    let ops: Vec<&str> = with_sig.iter().map(|u| u.0.as_str()).collect();
    assert_eq!(
        ops,
        ["PutObject", "UploadPart", "UploadPart"],
        "{with_sig:?}"
    );
    for (op, sha, _, _) in &with_sig {
        let hex = sha.len() == 64 && sha.bytes().all(|c| c.is_ascii_hexdigit());
        assert!(
            hex || sha.starts_with("STREAMING-AWS4-HMAC-SHA256-PAYLOAD"),
            "{op}: x-amz-content-sha256 {sha:?} is not a signed payload"
        );
    }
}
