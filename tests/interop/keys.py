"""Fixed keyward keys for the known-answer files in tests/interop/, made reproducibly.

A key is ``{prefix}_{body}{checksum}`` (README, "Key format"): the body is a 12-character
key id and the secret, base62; the checksum is the six base62 characters of the body's
CRC-32. Bodies come from SHA-256 of a label (rejection sampling on the low six bits of each
byte, as keyward's generator does), so the same label always gives the same key and running
a make script twice writes the same file. The Rust tests parse every key with keyward, so a
key made wrongly here fails there.

Python's standard library only.
"""

import hashlib
import zlib

ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
CHECKSUM_LEN = 6
ID_LEN = 12


def checksum(body: str) -> str:
    """The six base62 characters of the CRC-32 (zlib's) of ``body``."""
    n = zlib.crc32(body.encode("ascii"))
    digits = ""
    while n:
        n, digit = divmod(n, 62)
        digits = ALPHABET[digit] + digits
    return digits.rjust(CHECKSUM_LEN, "0")


def derive_bytes(label: str, n: int) -> bytes:
    """``n`` bytes from SHA-256 of ``label/0``, ``label/1``, ..."""
    out = b""
    counter = 0
    while len(out) < n:
        out += hashlib.sha256(f"{label}/{counter}".encode()).digest()
        counter += 1
    return out[:n]


def derive_body(label: str, n: int) -> str:
    """``n`` base62 characters drawn from SHA-256 of ``label``."""
    chars = []
    counter = 0
    while len(chars) < n:
        for byte in hashlib.sha256(f"{label}/{counter}".encode()).digest():
            v = byte & 0x3F
            if v < len(ALPHABET) and len(chars) < n:
                chars.append(ALPHABET[v])
        counter += 1
    return "".join(chars)


def make_key(prefix: str, label: str, secret_len: int = 32) -> str:
    """The keyward key with ``prefix`` whose body is drawn from ``label``."""
    body = derive_body(f"{prefix}/{label}", ID_LEN + secret_len)
    return f"{prefix}_{body}{checksum(body)}"


def wrong_checksum(key: str) -> str:
    """``key`` with its last character replaced by another base62 character (as
    ``wrong_checksum`` in tests/detect_secrets.rs): the checksum no longer matches."""
    head, last = key[:-1], key[-1]
    return head + ("1" if last == "0" else "0")
