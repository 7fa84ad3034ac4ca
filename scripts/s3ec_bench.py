"""Driver for scripts/bench_s3.sh: the Amazon S3 Encryption Client for Python (S3EC).

Runs in .tools/s3ec-venv (amazon-s3-encryption-client-python, pinned by bench_s3.sh) and
uses only the library's public API, as read in its installed source (s3_encryption/
__init__.py, pipelines.py, stream.py, materials/kms_keyring.py, version 4.0.0):

  version                          print the versions of the client and what it runs on
  create-key                       create a KMS key (in the KMS emulator), print its ARN
  put FILE BUCKET KEY              S3EncryptionClient.upload_file: CreateMultipartUpload,
                                   then one UploadPart after the other (each part encrypted
                                   in order with one AES-GCM stream for the whole object),
                                   CompleteMultipartUpload; a single PutObject when the file
                                   is smaller than one part
  get BUCKET KEY OUT               get_object with the default configuration (the body is
                                   read whole, decrypted and authenticated before any byte
                                   is returned), written to OUT in 1 MiB pieces
  get-delayed BUCKET KEY OUT       get_object with enable_delayed_authentication=True: the
                                   body is decrypted as it is read and plaintext is released
                                   before the GCM tag (at the end) is checked
  get-range BUCKET KEY RANGE       get_object with Range=RANGE; prints what happens

Settings come from the environment: AWS_ENDPOINT_URL (the S3 server), S3EC_KMS_ENDPOINT
(the KMS server), S3EC_KMS_KEY (key ARN, not needed for version/create-key), PART_SIZE
(e.g. 8MiB; the multipart part size and threshold), AWS credentials, and the region
(AWS_DEFAULT_REGION, else AWS_REGION, else us-east-1).
"""

import importlib.metadata as md
import os
import re
import shutil
import sys

import boto3
from botocore.config import Config
from s3_encryption import S3EncryptionClient, S3EncryptionClientConfig
from s3_encryption.materials.kms_keyring import KmsKeyring

COPY_BUF = 1 << 20


def parse_size(text):
    """Bytes from '8MiB', '16M', '5242880' (binary units, as sealstream takes them)."""
    m = re.fullmatch(r"\s*(\d+)\s*(|K|KiB|M|MiB|G|GiB)\s*", text)
    if not m:
        raise SystemExit(f"s3ec_bench: cannot parse size {text!r}")
    shift = {"": 0, "K": 10, "KiB": 10, "M": 20, "MiB": 20, "G": 30, "GiB": 30}[m.group(2)]
    return int(m.group(1)) << shift


# botocore reads AWS_DEFAULT_REGION, not AWS_REGION (which bench_s3.sh sets for sealstream).
REGION = os.environ.get("AWS_DEFAULT_REGION") or os.environ.get("AWS_REGION") or "us-east-1"


def kms_client():
    return boto3.client("kms", region_name=REGION, endpoint_url=os.environ["S3EC_KMS_ENDPOINT"])


def s3ec(delayed_authentication=False):
    # Path-style addressing, as sealstream and s3_plain use with an endpoint override.
    s3 = boto3.client(
        "s3",
        region_name=REGION,
        endpoint_url=os.environ["AWS_ENDPOINT_URL"],
        config=Config(s3={"addressing_style": "path"}),
    )
    keyring = KmsKeyring(kms_client(), os.environ["S3EC_KMS_KEY"])
    config = S3EncryptionClientConfig(
        keyring=keyring, enable_delayed_authentication=delayed_authentication
    )
    return S3EncryptionClient(s3, config)


def main(argv):
    cmd, args = argv[0], argv[1:]
    if cmd == "version":
        v = {p: md.version(p) for p in ("amazon-s3-encryption-client-python", "boto3", "botocore", "cryptography")}
        print(
            f"amazon-s3-encryption-client-python {v['amazon-s3-encryption-client-python']} "
            f"(boto3 {v['boto3']}, cryptography {v['cryptography']}, "
            f"Python {sys.version.split()[0]})"
        )
    elif cmd == "create-key":
        print(kms_client().create_key()["KeyMetadata"]["Arn"])
    elif cmd == "put":
        path, bucket, key = args
        part = parse_size(os.environ.get("PART_SIZE", "8MiB"))
        s3ec().upload_file(
            path, bucket, key, multipart_threshold=part, multipart_chunksize=part
        )
    elif cmd in ("get", "get-delayed"):
        bucket, key, out = args
        resp = s3ec(delayed_authentication=cmd == "get-delayed").get_object(Bucket=bucket, Key=key)
        with open(out, "wb") as f:
            shutil.copyfileobj(resp["Body"], f, COPY_BUF)
    elif cmd == "get-range":
        bucket, key, rng = args
        try:
            body = s3ec().get_object(Bucket=bucket, Key=key, Range=rng)["Body"].read()
        except Exception as e:  # report what the library does, whatever it is
            print(f"{type(e).__name__}: {e}")
        else:
            print(f"returned {len(body)} bytes")
    else:
        raise SystemExit(f"s3ec_bench: unknown command {cmd!r}\n{__doc__}")


if __name__ == "__main__":
    main(sys.argv[1:])
