"""Makes tests/interop/legacy_sha256_vectors.json, the known answers of tests/import.rs.

  python3 tests/interop/make_legacy_vectors.py          write the file
  python3 tests/interop/make_legacy_vectors.py --check  compare the committed file with what
                                                         this Python computes now; exit 1
                                                         with a diff if they differ

SHA-256 comes from Python's hashlib, an implementation independent of the sha2 crate keyward
uses: the digests an old system would have stored. For each legacy token the file holds its
scheme, the digest in hex and in base64 (the forms `keytool import` reads), and the import
line (JSON) that tests/import.rs imports before verifying the token.

* ``sha256``: the digest of the whole token (Unkey, most home-grown systems).
* ``prefixed_api_key``: tokens ``prefix_short_long`` whose system kept the SHA-256 of the
  long token (seamapi / prefixed-api-key), looked up by the short token.

Everything is deterministic (the tokens are fixed below).
"""

import base64
import difflib
import hashlib
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE / "legacy_sha256_vectors.json"

# Whole-token SHA-256 tokens under the prefix `old_sk`, using every RFC 6750 b64token
# character class: letters, digits, - . _ ~ + / and trailing =.
SHA256_TOKENS = [
    "old_sk_4eC39HqLyjWDarjtT1zdp7dc",
    "old_sk_9f8e-7d6c.5b4a~3_2+1/0==",
    "old_sk_live_Zm9vYmFyYmF6cXV4",
    "old_sk_a",
    "old_sk_" + "x" * 200 + "=",
]

# prefixed-api-key tokens (prefix `acme`): short token, long token.
PREFIXED_TOKENS = [
    ("acme", "BRTRKFsL", "51FwqftsmMDHHbJAMEXXHCgG"),
    ("acme", "2kWeK7Nh", "8iKq1x1p4wW6RwNzMJ4w7pDr"),
]


def sha256(data: str) -> bytes:
    return hashlib.sha256(data.encode("ascii")).digest()


def line(fields: dict, n: int) -> str:
    fields.update({"name": f"legacy {n}", "owner": f"user_{n}", "scopes": ["read"]})
    return json.dumps(fields, sort_keys=True)


def vectors() -> dict:
    out = {"sha256": [], "prefixed_api_key": []}
    for n, token in enumerate(SHA256_TOKENS):
        digest = sha256(token)
        out["sha256"].append(
            {
                "token": token,
                "sha256_hex": digest.hex(),
                "sha256_base64": base64.b64encode(digest).decode(),
                "line": line({"sha256": digest.hex()}, n),
            }
        )
    for n, (prefix, short, long) in enumerate(PREFIXED_TOKENS):
        digest = sha256(long)
        out["prefixed_api_key"].append(
            {
                "token": f"{prefix}_{short}_{long}",
                "long_token_sha256_hex": digest.hex(),
                "line": line(
                    {
                        "prefixed_api_key": {
                            "prefix": prefix,
                            "short_token": short,
                            "long_token_sha256": digest.hex(),
                        }
                    },
                    100 + n,
                ),
            }
        )
    return out


def render() -> str:
    return json.dumps(vectors(), indent=2, sort_keys=True) + "\n"


def main() -> int:
    text = render()
    if sys.argv[1:] == ["--check"]:
        committed = OUT.read_text()
        if committed != text:
            sys.stdout.writelines(
                difflib.unified_diff(
                    committed.splitlines(True), text.splitlines(True), str(OUT), "hashlib"
                )
            )
            return 1
        print(f"{OUT.name}: the committed digests are hashlib's")
        return 0
    OUT.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
