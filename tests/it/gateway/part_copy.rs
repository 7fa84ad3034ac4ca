//! UploadPartCopy through the gateway (docs/GATEWAY.md "Operations"): the AWS CLI's
//! managed copies and moves of objects over its 8 MiB multipart threshold, from every
//! object form (inline header, companion header, part-wise); boto3's `upload_part_copy`
//! with ranges, versions, conditions and errors; and a tampered source, which must leave
//! no part behind (nor replace one stored before).

use super::*;
use common::proxy::Proxy;

/// The "part copied" lines of the gateway's log (one per UploadPartCopy it answered).
fn copied_parts(gw: &Gateway) -> usize {
    gw.log().matches("part copied").count()
}

/// `sealstream` and whether the header is inline or in a companion, from the upstream
/// metadata of `key`.
fn form(gw: &Gateway, bucket: &str, key: &str) -> (String, &'static str) {
    let (_, meta, _) = moto::head_object(&gw.upstream, bucket, key).expect("head");
    let get = |k: &str| meta.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let place = if get("sealstream-companion").is_some() {
        "companion"
    } else if get("sealstream-header").is_some() {
        "inline"
    } else {
        "none"
    };
    (get("sealstream").unwrap_or_default(), place)
}

#[test]
#[ignore = "needs the emulator (scripts/test.sh runs it)"]
fn aws_cli_copies_and_moves_large_objects_part_by_part() {
    const TEST: &str = "aws_cli_copies_and_moves_large_objects_part_by_part";
    let proxy = Proxy::start(&endpoint(TEST).expect("emulator"));
    let gw = Gateway::start_with_env(TEST, &[], &[("AWS_ENDPOINT_URL", proxy.url.as_str())]);
    let b = gw.bucket();
    // Over the CLI's 8 MiB threshold: a copy is 3 UploadPartCopy of 8 MiB (the last shorter).
    let len = (20 << 20) + 12_345;
    let plain = data(len);
    write(&gw.scratch.path("big.bin"), &plain);
    // The three forms of a source: PutObject with the header in the metadata; PutObject
    // with a header too large for the metadata, in a companion object (here made large by
    // an encryption context: user metadata that crowds out the header would crowd out a
    // multipart copy's metadata too, docs/GATEWAY.md "Not done"); a multipart upload.
    let (c1, c2) = (
        format!("p1={}", "c".repeat(800)),
        format!("p2={}", "d".repeat(800)),
    );
    let gwc = Gateway::start_with_env(
        TEST,
        &["--context", &c1, "--context", &c2],
        &[("AWS_ENDPOINT_URL", proxy.url.as_str())],
    );
    write(&gwc.scratch.path("big.bin"), &plain);
    for (g, key) in [(&gw, "src/meta.bin"), (&gwc, "src/comp.bin")] {
        ok(
            &g.aws(
                &[
                    "s3api",
                    "put-object",
                    "--bucket",
                    &b,
                    "--key",
                    key,
                    "--body",
                    "big.bin",
                    "--metadata",
                    "color=blue",
                ],
                None,
            ),
            "put-object",
        );
    }
    ok(
        &gw.aws(
            &["s3", "cp", "big.bin", &format!("s3://{b}/src/parts.bin")],
            None,
        ),
        "aws s3 cp up (multipart)",
    );
    assert_eq!(form(&gw, &b, "src/meta.bin"), ("1".into(), "inline"));
    assert_eq!(form(&gw, &b, "src/comp.bin"), ("1".into(), "companion"));
    assert_eq!(form(&gw, &b, "src/parts.bin").0, "2");

    // Tags go with a multipart copy: the CLI reads the source's (GetObjectTagging) and
    // sends them with the new upload, or, over 2 KB of them, puts them afterwards.
    let small = r#"{"TagSet":[{"Key":"color","Value":"red"},{"Key":"n","Value":"1"}]}"#;
    let big = format!(
        r#"{{"TagSet":[{}]}}"#,
        (0..10)
            .map(|i| format!(
                r#"{{"Key":"k{i}{}","Value":"{}"}}"#,
                "k".repeat(100),
                "v".repeat(200)
            ))
            .collect::<Vec<_>>()
            .join(",")
    );
    for (key, tags) in [("src/meta.bin", small), ("src/comp.bin", big.as_str())] {
        ok(
            &gwc.aws(
                &[
                    "s3api",
                    "put-object-tagging",
                    "--bucket",
                    &b,
                    "--key",
                    key,
                    "--tagging",
                    tags,
                ],
                None,
            ),
            "put-object-tagging",
        );
    }
    let tags_of = |key: &str| {
        let o = gw.aws(
            &["s3api", "get-object-tagging", "--bucket", &b, "--key", key],
            None,
        );
        ok(&o, "get-object-tagging");
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
        v["TagSet"].clone()
    };
    assert_eq!(tags_of("src/comp.bin").as_array().map(Vec::len), Some(10));

    proxy.reset_counters();
    for (g, name) in [(&gw, "meta"), (&gwc, "comp"), (&gw, "parts")] {
        let before = copied_parts(g);
        let src = format!("s3://{b}/src/{name}.bin");
        let dst = format!("s3://{b}/dst/{name}.bin");
        ok(&g.aws(&["s3", "cp", &src, &dst], None), "aws s3 cp s3→s3");
        // A multipart copy: the CLI sent UploadPartCopy for each 8 MiB.
        assert_eq!(copied_parts(g) - before, 3, "{name}: {}", g.log());
        // The copy is a part-wise object of its own (its parts sealed under its own key).
        let want = if name == "comp" {
            "companion"
        } else {
            "inline"
        };
        assert_eq!(form(g, &b, &format!("dst/{name}.bin")), ("2".into(), want));
        let back = format!("back-{name}.bin");
        ok(&g.aws(&["s3", "cp", &dst, &back], None), "aws s3 cp down");
        assert!(
            std::fs::read(g.scratch.path(&back)).unwrap() == plain,
            "{name}: the copy reads back different bytes"
        );
        // The tags and user metadata came along (the CLI copies them to the new upload).
        let (src, dst) = (format!("src/{name}.bin"), format!("dst/{name}.bin"));
        assert_eq!(tags_of(&dst), tags_of(&src), "{name}");
        if name != "parts" {
            let h = g.aws(
                &["s3api", "head-object", "--bucket", &b, "--key", &dst],
                None,
            );
            ok(&h, "head-object");
            let h = String::from_utf8_lossy(&h.stdout).into_owned();
            assert!(h.contains(r#""color": "blue""#), "{h}");
        }
    }
    // Upstream, each part went as a read of the source and an ordinary UploadPart: never
    // a server-side copy of sealed bytes.
    assert_eq!(proxy.calls("UploadPartCopy"), 0);
    assert!(
        proxy.calls("UploadPart") >= 9,
        "{}",
        proxy.calls("UploadPart")
    );

    // mv: a multipart copy, then the source deleted (with its manifest object).
    let manifest = moto::head_object(&gw.upstream, &b, "src/parts.bin")
        .expect("head")
        .1
        .into_iter()
        .find(|(k, _)| k == "sealstream-parts")
        .map(|(_, v)| v)
        .expect("manifest named");
    let before = copied_parts(&gw);
    ok(
        &gw.aws(
            &[
                "s3",
                "mv",
                &format!("s3://{b}/src/parts.bin"),
                &format!("s3://{b}/moved/parts.bin"),
            ],
            None,
        ),
        "aws s3 mv",
    );
    assert_eq!(copied_parts(&gw) - before, 3);
    assert!(moto::get_object(&gw.upstream, &b, "src/parts.bin").is_none());
    assert!(moto::get_object(&gw.upstream, &b, &manifest).is_none());
    ok(
        &gw.aws(
            &[
                "s3",
                "cp",
                &format!("s3://{b}/moved/parts.bin"),
                "moved.bin",
            ],
            None,
        ),
        "aws s3 cp down",
    );
    assert!(std::fs::read(gw.scratch.path("moved.bin")).unwrap() == plain);
}

#[test]
#[ignore = "needs the emulator (scripts/test.sh runs it)"]
fn boto3_upload_part_copy() {
    let gw = Gateway::start("boto3_upload_part_copy", &[]);
    let b = gw.bucket();
    gw.python(
        &format!(
            "{PY_PARTS}{}",
            r#"
import datetime
MiB = 1 << 20
data = os.urandom(6 * MiB + 1000)
pad = {"m%02d" % i: "v" * 60 for i in range(25)}  # only the companion form fits
c.put_object(Bucket=B, Key="meta.bin", Body=data)
c.put_object(Bucket=B, Key="comp.bin", Body=data, Metadata=pad)
u = c.create_multipart_upload(Bucket=B, Key="parts.bin")["UploadId"]
es = [c.upload_part(Bucket=B, Key="parts.bin", UploadId=u, PartNumber=n + 1, Body=p)["ETag"]
      for n, p in enumerate([data[:5 * MiB], data[5 * MiB:]])]
c.complete_multipart_upload(Bucket=B, Key="parts.bin", UploadId=u, MultipartUpload={"Parts": [
    {"PartNumber": n + 1, "ETag": e} for n, e in enumerate(es)]})
meta = lambda k: up.head_object(Bucket=B, Key=k)["Metadata"]
assert meta("meta.bin")["sealstream"] == "1" and "sealstream-header" in meta("meta.bin")
assert "sealstream-companion" in meta("comp.bin")
assert meta("parts.bin")["sealstream"] == "2"
B2 = B + "-dst"
up.create_bucket(Bucket=B2)

# a range across chunk boundaries (and, in parts.bin, the boundary of its parts at 5 MiB),
# the whole source, then an ordinary part; into another bucket too
first, last = 100_000, 100_000 + 5 * MiB - 1
for src in ["meta.bin", "comp.bin", "parts.bin"]:
    for bk in [B, B2]:
        key = "dst-" + src
        u = c.create_multipart_upload(Bucket=bk, Key=key)["UploadId"]
        r1 = c.upload_part_copy(Bucket=bk, Key=key, UploadId=u, PartNumber=1,
                                CopySource={"Bucket": B, "Key": src},
                                CopySourceRange="bytes=%d-%d" % (first, last))
        cp = r1["CopyPartResult"]
        assert cp["ETag"] and isinstance(cp["LastModified"], datetime.datetime), r1
        r2 = c.upload_part_copy(Bucket=bk, Key=key, UploadId=u, PartNumber=2,
                                CopySource={"Bucket": B, "Key": src})
        e3 = c.upload_part(Bucket=bk, Key=key, UploadId=u, PartNumber=3, Body=b"tail")["ETag"]
        listed = c.list_parts(Bucket=bk, Key=key, UploadId=u)["Parts"]
        assert [(p["PartNumber"], p["Size"]) for p in listed] == [(1, 5 * MiB), (2, len(data)), (3, 4)], listed
        # (ListParts shows the upstream ETags, without the part salts: docs/GATEWAY.md)
        bare = lambda e: e.strip('"').rsplit("-", 1)[0]
        assert [bare(p["ETag"]) for p in listed] == [bare(cp["ETag"]), bare(r2["CopyPartResult"]["ETag"]), bare(e3)], listed
        c.complete_multipart_upload(Bucket=bk, Key=key, UploadId=u, MultipartUpload={"Parts": [
            {"PartNumber": 1, "ETag": cp["ETag"]},
            {"PartNumber": 2, "ETag": r2["CopyPartResult"]["ETag"]},
            {"PartNumber": 3, "ETag": e3}]})
        got = c.get_object(Bucket=bk, Key=key)["Body"].read()
        assert got == data[first:last + 1] + data + b"tail", (src, bk)
        # stored sealed: the upstream part holds no plaintext
        raw = up.get_object(Bucket=bk, Key=key)["Body"].read()
        assert data[200_000:200_064] not in raw

# boto3's managed copy (s3transfer): over its threshold, CreateMultipartUpload and
# UploadPartCopy of each chunk
from boto3.s3.transfer import TransferConfig
tc = TransferConfig(multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB, max_concurrency=4)
for src, extra in [("meta.bin", None), ("parts.bin", None), ("comp.bin", {"MetadataDirective": "REPLACE"})]:
    c.copy({"Bucket": B, "Key": src}, B2, "managed-" + src, ExtraArgs=extra, Config=tc)
    assert c.get_object(Bucket=B2, Key="managed-" + src)["Body"].read() == data, src
    assert up.head_object(Bucket=B2, Key="managed-" + src)["Metadata"]["sealstream"] == "2"
# comp.bin's 1850 bytes of user metadata, which s3transfer carries to the new upload, leave
# no room for a part-wise object's entries (docs/GATEWAY.md "Not done"): refused up front
try:
    c.copy({"Bucket": B, "Key": "comp.bin"}, B2, "managed-meta-comp.bin", Config=tc)
    raise AssertionError("copied")
except c.exceptions.ClientError as e:
    assert e.response["Error"]["Code"] == "InvalidArgument", e.response
    assert e.operation_name == "CreateMultipartUpload", e.operation_name

# errors, on a fresh upload that must stay empty
u = c.create_multipart_upload(Bucket=B, Key="e.bin")["UploadId"]
copy = lambda src="meta.bin", **kw: c.upload_part_copy(Bucket=B, Key="e.bin", UploadId=u, PartNumber=1,
                                                      CopySource={"Bucket": B, "Key": src}, **kw)
n = len(data)
for src in ["meta.bin", "comp.bin", "parts.bin"]:
    # past the end, even by one byte (a copy range is never cut short as a GET's is)
    assert err(lambda: copy(src, CopySourceRange="bytes=0-%d" % n)) == ("InvalidRange", 416), src
    assert err(lambda: copy(src, CopySourceRange="bytes=%d-%d" % (n, n + 10))) == ("InvalidRange", 416), src
for bad in ["bytes=0-", "bytes=-10", "0-10", "bytes=0-10,20-30"]:
    assert err(lambda: copy(CopySourceRange=bad)) == ("InvalidArgument", 400), bad
assert err(lambda: copy("nothing-here")) == ("NoSuchKey", 404)
assert err(lambda: c.upload_part_copy(Bucket=B, Key="e.bin", UploadId=u, PartNumber=1,
                                      CopySource={"Bucket": B + "-missing", "Key": "meta.bin"})) == ("NoSuchBucket", 404)
# the copy-source conditions, judged on the ETag and Last-Modified the gateway shows
etag = c.head_object(Bucket=B, Key="meta.bin")["ETag"]
past = datetime.datetime(2000, 1, 1, tzinfo=datetime.timezone.utc)
future = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=1)
PF = ("PreconditionFailed", 412)
assert err(lambda: copy(CopySourceIfMatch='"0123"')) == PF
assert err(lambda: copy(CopySourceIfNoneMatch=etag)) == PF
assert err(lambda: copy(CopySourceIfUnmodifiedSince=past)) == PF
assert err(lambda: copy(CopySourceIfModifiedSince=future)) == PF
assert not c.list_parts(Bucket=B, Key="e.bin", UploadId=u).get("Parts")
assert not up.list_parts(Bucket=B, Key="e.bin", UploadId=u.split("~")[0]).get("Parts")
# CopyObject judges the same four conditions the same way
cpo = lambda **kw: c.copy_object(Bucket=B, Key="cpo.bin", CopySource={"Bucket": B, "Key": "meta.bin"}, **kw)
assert err(lambda: cpo(CopySourceIfMatch='"0123"')) == PF
assert err(lambda: cpo(CopySourceIfNoneMatch=etag)) == PF
assert err(lambda: cpo(CopySourceIfUnmodifiedSince=past)) == PF
assert err(lambda: cpo(CopySourceIfModifiedSince=future)) == PF
assert "cpo.bin" not in upstream_keys()
cpo(CopySourceIfMatch=etag, CopySourceIfUnmodifiedSince=past)
cpo(CopySourceIfModifiedSince=past, CopySourceIfUnmodifiedSince=future)
assert c.get_object(Bucket=B, Key="cpo.bin")["Body"].read() == data
# conditions that hold (If-Match wins over a failing If-Unmodified-Since, as in S3)
r = copy(CopySourceIfMatch=etag, CopySourceIfUnmodifiedSince=past, CopySourceRange="bytes=0-9")
r = copy(CopySourceIfNoneMatch='"0123"', CopySourceIfModifiedSince=past, CopySourceRange="bytes=10-19")
r = copy(CopySourceIfUnmodifiedSince=future, CopySourceRange="bytes=20-29")
r = copy(CopySourceIfModifiedSince=past, CopySourceRange="bytes=30-39")
c.complete_multipart_upload(Bucket=B, Key="e.bin", UploadId=u, MultipartUpload={"Parts": [
    {"PartNumber": 1, "ETag": r["CopyPartResult"]["ETag"]}]})
assert c.get_object(Bucket=B, Key="e.bin")["Body"].read() == data[30:40]

# a plaintext object is refused as GetObject refuses it (no --serve-plaintext-objects)
up.put_object(Bucket=B, Key="plain.txt", Body=b"not encrypted")
u = c.create_multipart_upload(Bucket=B, Key="p.bin")["UploadId"]
assert err(lambda: c.upload_part_copy(Bucket=B, Key="p.bin", UploadId=u, PartNumber=1,
                                      CopySource={"Bucket": B, "Key": "plain.txt"})) == ("SealstreamNotEncrypted", 409)
# a bare upload id (or a bad part number) is refused before the source is read
assert err(lambda: c.upload_part_copy(Bucket=B, Key="p.bin", UploadId=u.split("~")[0], PartNumber=1,
                                      CopySource={"Bucket": B, "Key": "meta.bin"})) == ("InvalidArgument", 400)
assert not c.list_parts(Bucket=B, Key="p.bin", UploadId=u).get("Parts")
c.abort_multipart_upload(Bucket=B, Key="p.bin", UploadId=u)

# a version of the source by its id, in a versioned bucket (x-amz-copy-source ?versionId=)
BV = B + "-ver"
up.create_bucket(Bucket=BV)
up.put_bucket_versioning(Bucket=BV, VersioningConfiguration={"Status": "Enabled"})
old, new = os.urandom(5 * MiB + 7), os.urandom(5 * MiB + 9)
v1 = c.put_object(Bucket=BV, Key="k", Body=old)["VersionId"]
v2 = c.put_object(Bucket=BV, Key="k", Body=new)["VersionId"]
u = c.create_multipart_upload(Bucket=BV, Key="copy")["UploadId"]
r = c.upload_part_copy(Bucket=BV, Key="copy", UploadId=u, PartNumber=1,
                       CopySource={"Bucket": BV, "Key": "k", "VersionId": v1})
assert r.get("CopySourceVersionId") == v1, r
r2 = c.upload_part_copy(Bucket=BV, Key="copy", UploadId=u, PartNumber=2,
                        CopySource={"Bucket": BV, "Key": "k"}, CopySourceRange="bytes=0-99")
assert r2.get("CopySourceVersionId") == v2, r2
c.complete_multipart_upload(Bucket=BV, Key="copy", UploadId=u, MultipartUpload={"Parts": [
    {"PartNumber": 1, "ETag": r["CopyPartResult"]["ETag"]},
    {"PartNumber": 2, "ETag": r2["CopyPartResult"]["ETag"]}]})
assert c.get_object(Bucket=BV, Key="copy")["Body"].read() == old + new[:100]
print("ALL OK")
"#
        ),
        &b,
        &[],
    );
}

#[test]
#[ignore = "needs the emulator (scripts/test.sh runs it)"]
fn tampered_copy_source_stores_no_part() {
    let gw = Gateway::start("tampered_copy_source_stores_no_part", &[]);
    let b = gw.bucket();
    gw.python(
        &format!(
            "{PY_PARTS}{}",
            r#"
MiB = 1 << 20
AUTH = ("SealstreamAuthenticationFailed", 409)
data, good = os.urandom(12 * MiB), os.urandom(6 * MiB)
for k in ["late.bin", "early.bin"]:
    c.put_object(Bucket=B, Key=k, Body=data)
c.put_object(Bucket=B, Key="good.bin", Body=good)
# part-wise: a byte of its second part flipped (the object recomposed upstream)
u = c.create_multipart_upload(Bucket=B, Key="parts.bin")["UploadId"]
es = [c.upload_part(Bucket=B, Key="parts.bin", UploadId=u, PartNumber=n + 1, Body=p)["ETag"]
      for n, p in enumerate([data[:6 * MiB], data[6 * MiB:]])]
c.complete_multipart_upload(Bucket=B, Key="parts.bin", UploadId=u, MultipartUpload={"Parts": [
    {"PartNumber": n + 1, "ETag": e} for n, e in enumerate(es)]})
def flip(key, at):
    o = up.get_object(Bucket=B, Key=key)
    body = bytearray(o["Body"].read()); body[at] ^= 1
    up.put_object(Bucket=B, Key=key, Body=bytes(body), Metadata=o["Metadata"])
# late: 11 MiB of plaintext stream into the upstream UploadPart before the bad chunk
flip("late.bin", 11 * MiB)
flip("early.bin", 10)
o = up.get_object(Bucket=B, Key="parts.bin")
body = bytearray(o["Body"].read()); body[clen(6 * MiB) + 5 * MiB] ^= 1
u = up.create_multipart_upload(Bucket=B, Key="parts.bin", Metadata=o["Metadata"])["UploadId"]
split = clen(6 * MiB)
pe = [up.upload_part(Bucket=B, Key="parts.bin", UploadId=u, PartNumber=n + 1, Body=bytes(p))["ETag"]
      for n, p in enumerate([body[:split], body[split:]])]
up.complete_multipart_upload(Bucket=B, Key="parts.bin", UploadId=u, MultipartUpload={"Parts": [
    {"PartNumber": n + 1, "ETag": e} for n, e in enumerate(pe)]})

u = c.create_multipart_upload(Bucket=B, Key="dst.bin")["UploadId"]
copy = lambda n, src, **kw: c.upload_part_copy(Bucket=B, Key="dst.bin", UploadId=u, PartNumber=n,
                                               CopySource={"Bucket": B, "Key": src}, **kw)
e1 = copy(1, "good.bin")["CopyPartResult"]["ETag"]
# the same part number again from a source failing mid-way: refused, and part 1 is still
# the first copy (not replaced by a truncated part)
assert err(lambda: copy(1, "late.bin")) == AUTH
assert err(lambda: copy(2, "late.bin")) == AUTH
assert err(lambda: copy(3, "early.bin")) == AUTH
assert err(lambda: copy(4, "parts.bin")) == AUTH
assert err(lambda: copy(5, "parts.bin", CopySourceRange="bytes=%d-%d" % (6 * MiB, 12 * MiB - 1))) == AUTH
# ranges of intact chunks still copy (only the covering chunks are read)
e6 = copy(6, "late.bin", CopySourceRange="bytes=0-%d" % (5 * MiB - 1))["CopyPartResult"]["ETag"]
e7 = copy(7, "parts.bin", CopySourceRange="bytes=0-99")["CopyPartResult"]["ETag"]
# (ListParts shows the upstream ETags, without the part salts: docs/GATEWAY.md)
bare = lambda e: e.strip('"').rsplit("-", 1)[0]
listed = [(p["PartNumber"], p["ETag"].strip('"')) for p in c.list_parts(Bucket=B, Key="dst.bin", UploadId=u)["Parts"]]
assert listed == [(1, bare(e1)), (6, bare(e6)), (7, bare(e7))], listed
raw = [(p["PartNumber"], p["Size"]) for p in up.list_parts(Bucket=B, Key="dst.bin", UploadId=u.split("~")[0])["Parts"]]
assert raw == [(1, clen(6 * MiB)), (6, clen(5 * MiB)), (7, clen(100))], raw
c.complete_multipart_upload(Bucket=B, Key="dst.bin", UploadId=u, MultipartUpload={"Parts": [
    {"PartNumber": 1, "ETag": e1}, {"PartNumber": 6, "ETag": e6}, {"PartNumber": 7, "ETag": e7}]})
assert c.get_object(Bucket=B, Key="dst.bin")["Body"].read() == good + data[:5 * MiB] + data[:100]
print("ALL OK")
"#
        ),
        &b,
        &[],
    );
    assert!(gw.metric("sealstream_gateway_authentication_failures_total") >= 5);
    // Four of them failed mid-way, their plaintext already streaming into the upstream
    // UploadPart (the early one failed before it began).
    let log = gw.log();
    assert_eq!(
        log.matches("the copy source failed; the part is not stored")
            .count(),
        4,
        "{log}"
    );
}
