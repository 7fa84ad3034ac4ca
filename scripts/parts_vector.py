#!/usr/bin/env python3
"""Independent implementation of the FORMAT.md §17 worked example (part-wise body).

Written from the specification text only (HMAC-SHA-256 HKDF, AES-256-GCM from the
`cryptography` package), not from the Rust code. tests/it/parts.rs `part_wise_worked_example`
asserts the same values; scripts/test.sh runs this with the emulator venv's Python.
"""
import hashlib
import hmac
import struct
import sys

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

# Inputs of §14 (AES-256-GCM object): its header digest H, DEK and salt.
H = bytes.fromhex("43ea0e50407278c49d478981e8520a9a9fc76f7ada2fe1aeebde6f55024ff785")
DEK = bytes(range(0x20, 0x40))
SALT = bytes(range(0x40, 0x60))
CHUNK = 4096

PRK = hmac.new(SALT, DEK, hashlib.sha256).digest()  # HKDF-Extract


def expand(info: bytes) -> bytes:  # HKDF-Expand, L = 32 (one block)
    return hmac.new(PRK, info + b"\x01", hashlib.sha256).digest()


def part_key(number: int, part_salt: bytes) -> bytes:
    return expand(b"sealstream v1 part key" + H + struct.pack(">I", number) + part_salt)


def seal_part(key: bytes, pt: bytes) -> bytes:
    aead = AESGCM(key)
    chunks = [pt[i : i + CHUNK] for i in range(0, len(pt), CHUNK)] or [b""]
    out = b""
    for i, c in enumerate(chunks):
        flag = b"\x01" if i == len(chunks) - 1 else b"\x00"
        out += aead.encrypt(b"\0" * 3 + struct.pack(">Q", i) + flag, c, b"")
    return out


plaintext = bytes(i % 251 for i in range(5000))
s2, s3 = bytes(range(0x80, 0x90)), bytes(range(0x90, 0xA0))
part2 = seal_part(part_key(2, s2), plaintext)
part3 = seal_part(part_key(3, s3), b"")
manifest = b"SEALPRTS" + b"\x01" + b"\0\0\0" + struct.pack(">I", 2)
manifest += struct.pack(">I", 2) + s2 + struct.pack(">Q", len(plaintext))
manifest += struct.pack(">I", 3) + s3 + struct.pack(">Q", 0)
manifest += hmac.new(expand(b"sealstream v1 part manifest key" + H), manifest, hashlib.sha256).digest()

got = {
    "part 2 key (SECRET test value)": part_key(2, s2).hex(),
    "part 2 ciphertext[0..32]": part2[:32].hex(),
    "part 2 chunk 0 tag": part2[4096:4112].hex(),
    "part 2 chunk 1 tag (final)": part2[-16:].hex(),
    "SHA-256(part 2)": hashlib.sha256(part2).hexdigest(),
    "part 3 (empty: one final tag)": part3.hex(),
    "manifest": manifest.hex(),
}
want = {
    "part 2 key (SECRET test value)": "99416d0606140b757488d3ada2fb63ac1cd3d0be2ad147f090cfc5b10947a73d",
    "part 2 ciphertext[0..32]": "32809de243c62071da0d53b0d405635bbc800e27539a42367d111bc2973d16a6",
    "part 2 chunk 0 tag": "954ddf021b69cd024065bdea5c03278c",
    "part 2 chunk 1 tag (final)": "8a6bd3a1e2cc0f1c32b5e4c1300430a7",
    "SHA-256(part 2)": "6c1b23f9c176b664731a1a49fa43ed6e3826fbcfd5a9e346ab57ba8aa5728f36",
    "part 3 (empty: one final tag)": "85fdc7b44f7508573026f3e39df68276",
    "manifest": "5345414c50525453010000000000000200000002808182838485868788898a8b8c8d8e8f"
    "000000000000138800000003909192939495969798999a9b9c9d9e9f0000000000000000"
    "f8b2eab65d56ca3e1aa45805f730df485ffa11d7b07b629e3a72f9c6459cbff6",
}
for k, v in got.items():
    print(f"  {k:32} {v}")
bad = [k for k in want if got[k] != want[k]]
if bad:
    print("MISMATCH:", ", ".join(bad), file=sys.stderr)
    sys.exit(1)
print("part-wise worked example: all values agree")
