"""Test fixture for tests/it/s3ec.rs: objects written by the REAL Amazon S3 Encryption Client
for Python (PyPI amazon-s3-encryption-client-python, pinned in scripts/test.sh and installed
into .tools/s3ec-venv) against the local emulator (moto: S3 and KMS on one endpoint).

    python scripts/s3ec_fixture.py write BUCKET OUTDIR

creates BUCKET if needed, one KMS key (and a second one nobody wrapped for), writes every
object below, writes each object's plaintext to OUTDIR/<name>.plain, and prints one JSON
object: {"kms_key": ARN, "other_kms_key": ARN, "objects": [{"name", "key", "how",
"context", "content_type", "metadata", "tags", "readback"}...]}.

What the client writes itself (its public API only, as read in its installed source,
version 4.0.0: s3_encryption/__init__.py, pipelines.py, metadata.py, materials/):
  v3-put, v3-put-ctx, v3-empty   put_object with the default configuration (V3 metadata,
                                 ALG_AES_256_GCM_HKDF_SHA512_COMMIT_KEY), with and without
                                 an encryption context, and of an empty body
  v2-put, v2-put-ctx             put_object with ALG_AES_256_GCM_IV12_TAG16_NO_KDF and
                                 CommitmentPolicy.FORBID_ENCRYPT_ALLOW_DECRYPT (V2 metadata)
  v3-multipart, v2-multipart     upload_file with 5 MiB parts (CreateMultipartUpload, parts
                                 encrypted in order by one GCM stream, Complete)

What the client cannot write (4.0.0 reads instruction files but never writes them; its KMS
keyring must not wrap in the legacy `kms` mode; no client encrypts with CBC any more), built
here from the client's own output or with boto3's KMS + `cryptography`, and each then READ
BACK through the real client (readback = "client") or, for CBC, through the client with
enable_legacy_unauthenticated_modes=True (readback = "client-legacy"), so the fixture only
holds objects the client itself accepts:
  v2-instruction, v3-instruction the client's metadata moved to KEY.instruction (V2: all of
                                 it; V3: x-amz-3/-w/-t, while x-amz-c/-d/-i stay on the
                                 object, as the specification requires)
  v2-kms-legacy                  V2 metadata with x-amz-wrap-alg "kms" (KmsV1: KMS context
                                 {"kms_cmk_id": ARN}), read back with
                                 enable_legacy_wrapping_algorithms=True
  v2-cbc                         V2 metadata with x-amz-cek-alg AES/CBC/PKCS5Padding (must be
                                 refused by sealstream)
"""

import base64
import json
import os
import sys

import boto3
from botocore.config import Config
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from s3_encryption import S3EncryptionClient, S3EncryptionClientConfig
from s3_encryption.materials.kms_keyring import KmsKeyring
from s3_encryption.materials.materials import AlgorithmSuite, CommitmentPolicy

REGION = os.environ.get("AWS_DEFAULT_REGION") or os.environ.get("AWS_REGION") or "us-east-1"
ENDPOINT = os.environ["AWS_ENDPOINT_URL"]
PART = 5 * 1024 * 1024


def s3_plain():
    return boto3.client(
        "s3", region_name=REGION, endpoint_url=ENDPOINT, config=Config(s3={"addressing_style": "path"})
    )


def kms():
    return boto3.client("kms", region_name=REGION, endpoint_url=ENDPOINT)


def s3ec(key_arn, v2=False, legacy_wrap=False, legacy_modes=False):
    keyring = KmsKeyring(kms(), key_arn, enable_legacy_wrapping_algorithms=legacy_wrap)
    kwargs = {}
    if v2 or legacy_wrap or legacy_modes:
        kwargs["encryption_algorithm"] = AlgorithmSuite.ALG_AES_256_GCM_IV12_TAG16_NO_KDF
        kwargs["commitment_policy"] = CommitmentPolicy.FORBID_ENCRYPT_ALLOW_DECRYPT
    cfg = S3EncryptionClientConfig(
        keyring=keyring, enable_legacy_unauthenticated_modes=legacy_modes, **kwargs
    )
    return S3EncryptionClient(s3_plain(), cfg)


def plaintext(name, size):
    """Deterministic, incompressible-looking bytes, different per object."""
    out = bytearray()
    seed = name.encode()
    counter = 0
    import hashlib

    while len(out) < size:
        out += hashlib.sha256(seed + counter.to_bytes(8, "big")).digest()
        counter += 1
    return bytes(out[:size])


def readback(client, bucket, key, expect, context=None):
    kw = {"Bucket": bucket, "Key": key}
    if context:
        kw["EncryptionContext"] = context
    got = client.get_object(**kw)["Body"].read()
    if got != expect:
        raise SystemExit(f"s3ec_fixture: {key}: the client read back different bytes")


def main(argv):
    if len(argv) != 3 or argv[0] != "write":
        raise SystemExit(__doc__)
    bucket, outdir = argv[1], argv[2]
    os.makedirs(outdir, exist_ok=True)
    s3 = s3_plain()
    try:
        s3.create_bucket(Bucket=bucket)
    except s3.exceptions.BucketAlreadyOwnedByYou:
        pass
    key_arn = kms().create_key(Description="s3ec fixture")["KeyMetadata"]["Arn"]
    other_arn = kms().create_key(Description="s3ec fixture, never used")["KeyMetadata"]["Arn"]
    v3 = s3ec(key_arn)
    v2 = s3ec(key_arn, v2=True)
    objects = []

    def record(name, key, how, data, context=None, content_type=None, metadata=None, tags=None, rb="client"):
        with open(os.path.join(outdir, name + ".plain"), "wb") as f:
            f.write(data)
        objects.append(
            {
                "name": name,
                "key": key,
                "how": how,
                "context": context or {},
                "content_type": content_type,
                "metadata": metadata or {},
                "tags": tags or {},
                "readback": rb,
            }
        )

    def put(client, name, size, context=None):
        data = plaintext(name, size)
        key = f"fixture/{name}"
        kw = {
            "Bucket": bucket,
            "Key": key,
            "Body": data,
            "ContentType": "application/x-" + name,
            "Metadata": {"owner": "alice", "case": name},
            "Tagging": "team=blue&case=" + name,
        }
        if context:
            kw["EncryptionContext"] = context
        client.put_object(**kw)
        readback(client, bucket, key, data, context)
        record(name, key, "put_object", data, context, kw["ContentType"], kw["Metadata"],
               {"team": "blue", "case": name})
        return key, data

    ctx = {"tenant": "acme", "purpose": "fixture"}
    put(v3, "v3-put", 300_000)
    put(v3, "v3-put-ctx", 200_001, ctx)
    put(v3, "v3-empty", 0)
    put(v2, "v2-put", 300_000)
    put(v2, "v2-put-ctx", 123_457, ctx)

    for client, name in ((v3, "v3-multipart"), (v2, "v2-multipart")):
        data = plaintext(name, 2 * PART + 777)
        path = os.path.join(outdir, name + ".plain")
        with open(path, "wb") as f:
            f.write(data)
        key = f"fixture/{name}"
        client.upload_file(path, bucket, key, multipart_threshold=PART, multipart_chunksize=PART,
                           EncryptionContext=ctx, Metadata={"owner": "bob"})
        readback(client, bucket, key, data, ctx)
        record(name, key, "upload_file (multipart, 5 MiB parts)", data, ctx, None, {"owner": "bob"})

    # Instruction files: the client's own object, its content metadata moved out.
    v3_object_keys = {"x-amz-c", "x-amz-d", "x-amz-i"}
    for client, name in ((v2, "v2-instruction"), (v3, "v3-instruction")):
        data = plaintext(name, 70_000)
        tmp = f"tmp/{name}"
        client.put_object(Bucket=bucket, Key=tmp, Body=data, EncryptionContext=ctx)
        got = s3.get_object(Bucket=bucket, Key=tmp)
        body, meta = got["Body"].read(), got["Metadata"]
        key = f"fixture/{name}"
        if name.startswith("v2"):
            stays = {}
            moves = meta
        else:
            stays = {k: v for k, v in meta.items() if k in v3_object_keys}
            moves = {k: v for k, v in meta.items() if k not in v3_object_keys}
        s3.put_object(Bucket=bucket, Key=key, Body=body, Metadata=stays)
        s3.put_object(Bucket=bucket, Key=key + ".instruction", Body=json.dumps(moves).encode(),
                      Metadata={"x-amz-crypto-instr-file": ""})
        s3.delete_object(Bucket=bucket, Key=tmp)
        readback(client, bucket, key, data, ctx)
        record(name, key, "put_object, metadata moved to KEY.instruction", data, ctx)

    # KmsV1 wrapping ("kms"), which the keyring only decrypts.
    name = "v2-kms-legacy"
    data = plaintext(name, 50_000)
    matdesc = {"kms_cmk_id": key_arn}
    dk = kms().generate_data_key(KeyId=key_arn, KeySpec="AES_256", EncryptionContext=matdesc)
    iv = os.urandom(12)
    body = AESGCM(dk["Plaintext"]).encrypt(iv, data, None)
    key = f"fixture/{name}"
    s3.put_object(Bucket=bucket, Key=key, Body=body, Metadata={
        "x-amz-key-v2": base64.b64encode(dk["CiphertextBlob"]).decode(),
        "x-amz-wrap-alg": "kms",
        "x-amz-matdesc": json.dumps(matdesc),
        "x-amz-iv": base64.b64encode(iv).decode(),
        "x-amz-cek-alg": "AES/GCM/NoPadding",
        "x-amz-tag-len": "128",
    })
    readback(s3ec(key_arn, legacy_wrap=True), bucket, key, data)
    record(name, key, "built with boto3 KMS + cryptography (KmsV1 wrapping)", data, {}, rb="client")

    # AES/CBC (unauthenticated): sealstream must refuse it.
    name = "v2-cbc"
    data = plaintext(name, 40_000)
    matdesc = {"aws:x-amz-cek-alg": "AES/CBC/PKCS5Padding"}
    dk = kms().generate_data_key(KeyId=key_arn, KeySpec="AES_256", EncryptionContext=matdesc)
    iv = os.urandom(16)
    padder = padding.PKCS7(128).padder()
    enc = Cipher(algorithms.AES(dk["Plaintext"]), modes.CBC(iv)).encryptor()
    body = enc.update(padder.update(data) + padder.finalize()) + enc.finalize()
    key = f"fixture/{name}"
    s3.put_object(Bucket=bucket, Key=key, Body=body, Metadata={
        "x-amz-key-v2": base64.b64encode(dk["CiphertextBlob"]).decode(),
        "x-amz-wrap-alg": "kms+context",
        "x-amz-matdesc": json.dumps(matdesc),
        "x-amz-iv": base64.b64encode(iv).decode(),
        "x-amz-cek-alg": "AES/CBC/PKCS5Padding",
    })
    readback(s3ec(key_arn, legacy_modes=True), bucket, key, data)
    record(name, key, "built with boto3 KMS + cryptography (AES/CBC)", data, {}, rb="client-legacy")

    json.dump({"kms_key": key_arn, "other_kms_key": other_arn, "objects": objects}, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main(sys.argv[1:])
