"""Makes tests/interop/argon2_cffi_vectors.json, the known answers of tests/argon2_interop.rs.

  python3 tests/interop/make_argon2_vectors.py          write the file (needs argon2-cffi,
                                                         and cargo for keyward's hashes)
  python3 tests/interop/make_argon2_vectors.py --check  compare the committed file with what
                                                         the installed argon2-cffi gives now;
                                                         exit 1 with a diff if they differ

The file holds, for fixed keys (tests/interop/keys.py):

* ``argon2_cffi``: hashes made by argon2-cffi's ``PasswordHasher`` with fixed salts, for each
  parameter set tests/argon2_interop.rs uses, OWASP's (the hasher tests/argon2_interop.py
  uses) and argon2-cffi's defaults, with argon2-cffi's own verdicts for the key and a wrong
  key. keyward must verify them the same way.
* ``keyward``: hashes made by keyward (``Hasher::argon2``, printed by the ignored test
  ``keyward_hashes_for_the_vectors`` in tests/argon2_interop.rs) and argon2-cffi's verdicts on
  them for the key and a wrong key.

Salts are fixed, so argon2-cffi's hashes are the same on every run: ``--check`` (run by
tests/argon2_interop.rs when KEYWARD_TEST_INTEROP=1) recomputes them and argon2-cffi's
verdicts on keyward's committed hashes, and so finds any drift. keyward's hashes have random
salts and are kept as committed; ``tools`` is informational and not compared.

tests/argon2_interop.rs includes the file at compile time, so it must exist (any content, even
``{}``) for cargo to build the test that prints keyward's hashes.
"""

import json
import os
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import argon2
from argon2.exceptions import VerifyMismatchError

sys.dont_write_bytecode = True  # no __pycache__ beside keys.py or the plugin

from keys import derive_bytes, make_key

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
OUT = HERE / "argon2_cffi_vectors.json"
# keyward's Argon2Params::DEFAULT (OWASP's m=19456, t=2, p=1) and the other parameter sets of
# tests/argon2_interop.rs, as (m_cost KiB, t_cost, p_cost).
PARAMS = [(19456, 2, 1), (64, 1, 1), (256, 3, 2), (1024, 1, 4)]
# The hash tests/argon2_interop.py makes with OWASP's parameters.
OWASP = dict(time_cost=2, memory_cost=19456, parallelism=1, hash_len=32, salt_len=16)
MARK = "keyward-argon2\t"


def keys() -> dict:
    return {
        "tak": make_key("tak", "argon2"),
        "sk_live": make_key("sk_live", "argon2"),
        "wrong": make_key("tak", "argon2-wrong"),
    }


def verdict(stored: str, key: str) -> str:
    try:
        argon2.PasswordHasher().verify(stored, key)
        return "match"
    except VerifyMismatchError:
        return "mismatch"
    except Exception as e:  # recorded, so that --check reports it as a difference
        return f"error: {type(e).__name__}: {e}"


def verdicts(stored: str, key: str, wrong: str) -> dict:
    return {"key": verdict(stored, key), "wrong_key": verdict(stored, wrong)}


def cffi_hashes(k: dict) -> list:
    hashers = [
        ("owasp", "PasswordHasher(%s)" % ", ".join(f"{n}={v}" for n, v in OWASP.items()),
         argon2.PasswordHasher(**OWASP)),
    ]
    for m, t, p in PARAMS[1:]:
        kw = dict(time_cost=t, memory_cost=m, parallelism=p, hash_len=32, salt_len=16)
        hashers.append((f"m={m},t={t},p={p}",
                        "PasswordHasher(%s)" % ", ".join(f"{n}={v}" for n, v in kw.items()),
                        argon2.PasswordHasher(**kw)))
    hashers.append(("argon2-cffi default", "PasswordHasher()", argon2.PasswordHasher()))
    out = []
    for i, (name, text, ph) in enumerate(hashers):
        key = k["tak"] if i % 2 == 0 else k["sk_live"]
        salt = derive_bytes(f"argon2-cffi salt/{name}", ph.salt_len)
        stored = ph.hash(key, salt=salt)
        out.append({
            "name": name,
            "hasher": text,
            "m_cost": ph.memory_cost,
            "t_cost": ph.time_cost,
            "p_cost": ph.parallelism,
            "key": key,
            "hash": stored,
            "argon2_cffi_verify": verdicts(stored, key, k["wrong"]),
        })
    return out


def keyward_hashes(k: dict) -> list:
    """Asks keyward for one hash per parameter set, through the ignored test."""
    jobs = [(m, t, p, k["tak"] if i % 2 == 0 else k["sk_live"]) for i, (m, t, p) in enumerate(PARAMS)]
    env = dict(os.environ)
    env["KEYWARD_ARGON2_VECTOR_INPUT"] = "\n".join(f"{m},{t},{p}\t{key}" for m, t, p, key in jobs)
    cmd = ["cargo", "test", "--quiet", "--test", "argon2_interop", "--",
           "--ignored", "--exact", "keyward_hashes_for_the_vectors", "--nocapture"]
    out = subprocess.run(cmd, cwd=ROOT, env=env, check=True, capture_output=True, text=True).stdout
    hashes = [line[len(MARK):] for line in out.splitlines() if line.startswith(MARK)]
    if len(hashes) != len(jobs):
        sys.exit(f"expected {len(jobs)} hashes from `{' '.join(cmd)}`, got: {out}")
    return [
        {"m_cost": m, "t_cost": t, "p_cost": p, "key": key, "hash": stored}
        for (m, t, p, key), stored in zip(jobs, hashes)
    ]


def build(committed_keyward) -> dict:
    k = keys()
    recorded = committed_keyward if committed_keyward is not None else keyward_hashes(k)
    keyward = [
        {**{n: e[n] for n in ("m_cost", "t_cost", "p_cost", "key", "hash")},
         "argon2_cffi_verify": verdicts(e["hash"], e["key"], k["wrong"])}
        for e in recorded
    ]
    return {
        "made_by": "python3 tests/interop/make_argon2_vectors.py",
        "tools": {
            "argon2-cffi": version("argon2-cffi"),
            "argon2-cffi-bindings": version("argon2-cffi-bindings"),
            "python": sys.version.split()[0],
        },
        "wrong_key": k["wrong"],
        "argon2_cffi": cffi_hashes(k),
        "keyward": keyward,
    }


def dump(vectors: dict) -> str:
    return json.dumps(vectors, indent=2) + "\n"


def main() -> None:
    if sys.argv[1:] == ["--check"]:
        committed = json.loads(OUT.read_text())
        fresh = build(committed["keyward"])
        for v in (committed, fresh):
            v.pop("tools")
        if committed != fresh:
            import difflib
            diff = difflib.unified_diff(dump(committed).splitlines(), dump(fresh).splitlines(),
                                        "committed", "argon2-cffi now", lineterm="")
            sys.exit(f"{OUT.relative_to(ROOT)} is out of date with the installed argon2-cffi; "
                     f"rerun `python3 tests/interop/make_argon2_vectors.py` and review:\n"
                     + "\n".join(diff))
        print(f"{OUT.relative_to(ROOT)}: up to date with argon2-cffi {version('argon2-cffi')}")
    elif sys.argv[1:] == []:
        OUT.write_text(dump(build(None)))
        print(f"wrote {OUT.relative_to(ROOT)}")
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
