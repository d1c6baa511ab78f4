#!/usr/bin/env python3
"""Independent checker for keyward keys, written from README.md's "Key format" section alone.

It shares no code with the crate: only Python's standard library (re, sys, zlib.crc32).

Usage:
    keytool generate --prefix tak --count 2000 | python3 tests/independent_checker.py --prefix tak

Reads one key per line from stdin (only the line's final "\\n" is removed: anything else,
such as a "\\r", counts against the key, since keys are never trimmed).

Options:
    --prefix P        the key's prefix must be P (repeat for several accepted prefixes)
    --id-len N        key id length
    --secret-len N    secret length
With none of these, any valid prefix and any body length pass (GitHub's tokens too); with
any of them, a missing length takes the README's default (12 for the id, 32 for the secret).

Before reading, it checks itself on the README's test vectors. It prints each failure to
stderr (with a redacted preview, never the key), then a closing line "N passed, M failed",
and exits 0 only if every key passed and at least one was read.
"""

import re
import sys
import zlib

ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
PREFIX_RE = re.compile(r"[a-z][a-z0-9]*(_[a-z0-9]+)*")
BODY_RE = re.compile(r"[0-9A-Za-z]+")
MAX_PREFIX_LEN = 32
CHECKSUM_LEN = 6
DEFAULT_ID_LEN = 12
DEFAULT_SECRET_LEN = 32

# (key, valid?) from the README's test vectors.
VECTORS = [
    ("tak_bUiB7xK2pQ9mZk3VnR8sLq2WtY6uHd0cFj4gXe1aPo7M2VzXeN", True),
    ("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", True),
    ("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", True),
    ("ghp_M7H4jxUDDWHP4kZ6A4dxlQYsQIWJuq11T4V3", False),
]


def checksum(body):
    """CRC-32 (zlib) of the body's ASCII bytes, base62 MSB first, left-padded to 6."""
    n = zlib.crc32(body.encode("ascii"))
    digits = ""
    while n:
        n, digit = divmod(n, 62)
        digits = ALPHABET[digit] + digits
    return digits.rjust(CHECKSUM_LEN, "0")


def check(key, prefixes=None, body_len=None):
    """Returns None if `key` is valid, otherwise the reason it is not."""
    if key == "":
        return "empty"
    if key != key.strip():
        return "whitespace at the start or end"
    sep = key.rfind("_")
    if sep < 0:
        return "no '_' separating a prefix"
    prefix, tail = key[:sep], key[sep + 1 :]
    if not (1 <= len(prefix) <= MAX_PREFIX_LEN and PREFIX_RE.fullmatch(prefix)):
        return "invalid prefix"
    if prefixes is not None and prefix not in prefixes:
        return "prefix %r is not one of %s" % (prefix, ", ".join(prefixes))
    if not BODY_RE.fullmatch(tail):
        bad = next((i for i, c in enumerate(tail) if c not in ALPHABET), len(tail))
        return "character outside 0-9A-Za-z at position %d" % (sep + 1 + bad)
    if len(tail) <= CHECKSUM_LEN:
        return "too short for a body and a %d-character checksum" % CHECKSUM_LEN
    body, sum_ = tail[:-CHECKSUM_LEN], tail[-CHECKSUM_LEN:]
    if body_len is not None and len(body) != body_len:
        return "body has %d characters, expected %d" % (len(body), body_len)
    if checksum(body) != sum_:
        return "checksum mismatch"
    return None


def preview(key):
    """Prefix and up to four characters: enough to find the line, not the secret."""
    sep = key.rfind("_")
    return repr(key[: sep + 5] + "…") if sep >= 0 else repr(key[:4] + "…")


def self_test():
    problems = []
    for key, valid in VECTORS:
        reason = check(key)
        if (reason is None) != valid:
            expected = "valid" if valid else "invalid"
            problems.append("%s: expected %s, got %s" % (key, expected, reason or "valid"))
    if checksum("zQWBuTSOoRi4A9spHcVY5ncnsDkxkJ") != "0mLq17":
        problems.append("checksum does not zero-pad")
    for key, reason in [
        ("tak_bUiB7xK2pQ9mZk3VnR8sLq2WtY6uHd0cFj4gXe1aPo7M2VzXeN\r", "whitespace"),
        (" tak_bUiB7xK2pQ9mZk3VnR8sLq2WtY6uHd0cFj4gXe1aPo7M2VzXeN", "whitespace"),
        ("Tak_bUiB7xK2pQ9mZk3VnR8sLq2WtY6uHd0cFj4gXe1aPo7M2VzXeN", "invalid prefix"),
        ("tak_bUiB7xK2pQ9mZk3VnR8-Lq2WtY6uHd0cFj4gXe1aPo7M2VzXeN", "position 23"),
    ]:
        got = check(key)
        if got is None or reason not in got:
            problems.append("%r: expected %r, got %r" % (key, reason, got))
    if check(VECTORS[0][0], ["sk"]) is None or check(VECTORS[0][0], ["tak"], 45) is None:
        problems.append("prefix or length expectation ignored")
    return problems


def parse_args(argv):
    prefixes, id_len, secret_len = None, None, None
    args = list(argv)
    while args:
        flag = args.pop(0)
        if flag in ("-h", "--help"):
            print(__doc__)
            sys.exit(0)
        if flag not in ("--prefix", "--id-len", "--secret-len") or not args:
            sys.exit("independent_checker: unexpected argument %r (see --help)" % flag)
        value = args.pop(0)
        if flag == "--prefix":
            if not PREFIX_RE.fullmatch(value) or len(value) > MAX_PREFIX_LEN:
                sys.exit("independent_checker: invalid --prefix %r" % value)
            prefixes = (prefixes or []) + [value]
        else:
            try:
                number = int(value)
            except ValueError:
                sys.exit("independent_checker: %s needs a number, got %r" % (flag, value))
            if flag == "--id-len":
                id_len = number
            else:
                secret_len = number
    if prefixes is None and id_len is None and secret_len is None:
        return None, None
    # Any expectation means keyward keys: missing lengths take the README's defaults.
    id_len = DEFAULT_ID_LEN if id_len is None else id_len
    secret_len = DEFAULT_SECRET_LEN if secret_len is None else secret_len
    return prefixes, id_len + secret_len


def main(argv):
    prefixes, body_len = parse_args(argv)
    problems = self_test()
    if problems:
        for problem in problems:
            print("independent_checker: self-test failed: %s" % problem, file=sys.stderr)
        return 2
    passed = failed = 0
    # Bytes, split on b"\n" only: text mode would turn "\r\n" into "\n" and hide it.
    for number, raw in enumerate(sys.stdin.buffer, start=1):
        raw = raw[:-1] if raw.endswith(b"\n") else raw
        key = raw.decode("utf-8", errors="replace")
        reason = check(key, prefixes, body_len)
        if reason is None:
            passed += 1
        else:
            failed += 1
            print("line %d (%s): %s" % (number, preview(key), reason), file=sys.stderr)
    if passed + failed == 0:
        print("independent_checker: no keys on stdin", file=sys.stderr)
    print("%d passed, %d failed" % (passed, failed))
    return 0 if failed == 0 and passed > 0 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
