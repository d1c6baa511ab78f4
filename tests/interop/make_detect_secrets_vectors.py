"""Makes tests/interop/detect_secrets_vectors.json, the known answers of tests/detect_secrets.rs.

  python3 tests/interop/make_detect_secrets_vectors.py          write the file (needs
                                                                 detect-secrets)
  python3 tests/interop/make_detect_secrets_vectors.py --check  compare the committed file
                                                                 with what the installed
                                                                 detect-secrets and the
                                                                 contrib files give now; exit
                                                                 1 with a diff if they differ

The file holds, for fixed keys (tests/interop/keys.py):

* ``scans``: the findings of contrib/secret-scanning/keyward_plugin.py run by the real
  detect-secrets (``python3 -m detect_secrets scan --plugin keyward_plugin.py FILE...`` in the
  files' directory, as tests/detect_secrets.rs runs it live) on the files and environment of
  each case. tests/detect_secrets.rs builds the same files from the same keys and refuses a
  case whose recorded input differs from what it builds.
* ``plugin_regex``: the plugin's ``build_regex`` for the prefixes and tail lengths the test
  compares with ``KeyFormat::regex()``.
* ``gitleaks``: what the rule in contrib/secret-scanning/gitleaks.toml matches (Python's
  ``re``, as the rule's own regex) in each input string.
* ``sources``: SHA-256 of the plugin and the gitleaks rule (CRLF read as LF), so that the
  Rust test fails when either changes and this file was not made again.

Everything is deterministic: ``--check`` (run by tests/detect_secrets.rs when
KEYWARD_TEST_INTEROP=1) makes the whole file again and compares; ``tools`` is informational
and not compared.
"""

import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
import tomllib
from importlib.metadata import version
from pathlib import Path

sys.dont_write_bytecode = True  # no __pycache__ beside keys.py or the plugin

from keys import make_key, wrong_checksum

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
OUT = HERE / "detect_secrets_vectors.json"
CONTRIB = ROOT / "contrib" / "secret-scanning"
PLUGIN = CONTRIB / "keyward_plugin.py"
GITLEAKS = CONTRIB / "gitleaks.toml"
SECRET_TYPE = "keyward API key"
ENV_VARS = ("KEYWARD_PREFIXES", "KEYWARD_TAIL_LENGTHS")
MANY = 200


def many_keys() -> list:
    """200 ``tak`` keys whose checksums end in each of the 62 characters and include one
    with three leading zeros (the padding of a small CRC), then plain ones."""
    chosen, last, zeros, i = [], set(), False, 0
    while len(last) < 62 or not zeros:
        key = make_key("tak", f"many/{i}")
        i += 1
        sum_ = key[-6:]
        if sum_[-1] not in last or (not zeros and sum_.startswith("000")):
            chosen.append(key)
            last.add(sum_[-1])
            zeros = zeros or sum_.startswith("000")
    j = 0
    while len(chosen) < MANY:
        chosen.append(make_key("tak", f"many-more/{j}"))
        j += 1
    return chosen


def keys() -> dict:
    return {
        "tak": make_key("tak", "detect-secrets"),
        "sk_live": make_key("sk_live", "detect-secrets"),
        "tak_secret_40": make_key("tak", "detect-secrets/secret 40", secret_len=40),
        "acme_test": make_key("acme_test", "detect-secrets"),
        "many": many_keys(),
    }


def cases(k: dict) -> list:
    """(name, [(file name, text)], env) per scan, built as tests/detect_secrets.rs builds them."""
    out = []
    for prefix in ("tak", "sk_live"):
        good = k[prefix]
        bad = wrong_checksum(good)
        out.append((f"valid_and_wrong/{prefix}", [
            ("valid.txt", f"deploy notes\n{good}\nend\n"),
            ("wrong.txt", f"deploy notes\n{bad}\nend\n"),
        ], {}))
    good = k["tak"]
    text = f"{good[:-1]}\n{good}x\n{good.replace('tak_', 'TAK_')}\nmy-{good}-suffix\n"
    out.append(("look_alikes", [("look_alikes.txt", text)], {}))
    text = "".join(f"{key}\n{wrong_checksum(key)}\n" for key in k["many"])
    out.append(("many", [("many.txt", text)], {}))
    text = f"{k['tak']}\n{k['sk_live']}\n{k['tak_secret_40']}\n"
    for name, env in [
        ("configured/default", {}),
        ("configured/prefixes", {"KEYWARD_PREFIXES": "sk_live"}),
        ("configured/tail_lengths", {"KEYWARD_TAIL_LENGTHS": "58"}),
        ("configured/both", {"KEYWARD_PREFIXES": "tak", "KEYWARD_TAIL_LENGTHS": "50,58"}),
    ]:
        out.append((name, [("keys.txt", text)], env))
    return out


def lines(text: str) -> list:
    """``text`` as its lines; every text here is lines each ending in a newline."""
    split = text.split("\n")
    assert split[-1] == "" and "\r" not in text, repr(text)
    return split[:-1]


def scan(files: list, env: dict) -> list:
    """The plugin's findings as [file name, line number] pairs, sorted."""
    with tempfile.TemporaryDirectory() as d:
        for name, text in files:
            Path(d, name).write_text(text)
        run_env = {n: v for n, v in os.environ.items() if n not in ENV_VARS}
        run_env.update(env)
        run_env["PYTHONDONTWRITEBYTECODE"] = "1"
        cmd = [sys.executable, "-m", "detect_secrets", "scan", "--plugin", str(PLUGIN)]
        cmd += [name for name, _ in files]
        done = subprocess.run(cmd, cwd=d, env=run_env, capture_output=True, text=True)
        if done.returncode != 0:
            sys.exit(f"{' '.join(cmd)} failed:\n{done.stderr}")
    report = json.loads(done.stdout)
    if not any(p["name"] == "KeywardDetector" for p in report["plugins_used"]):
        sys.exit(f"the keyward plugin was not loaded: {report}")
    found = sorted(
        (Path(file).name, r["line_number"])
        for file, results in report["results"].items()
        for r in results
        if r["type"] == SECRET_TYPE
    )
    return [[name, line] for name, line in found]


def plugin_regex() -> list:
    sys.path.insert(0, str(CONTRIB))
    import keyward_plugin

    out = []
    for prefixes, secret_len in [(["tak"], 32), (["sk_live", "sk_test"], 32), (["acme"], 22)]:
        tail = 12 + secret_len + 6
        out.append({
            "prefixes": prefixes,
            "tail_length": tail,
            "regex": keyward_plugin.build_regex(prefixes, [tail]),
        })
    return out


def gitleaks(k: dict) -> dict:
    rule = tomllib.loads(GITLEAKS.read_text())["rules"][0]
    pattern = re.compile(rule["regex"], re.ASCII)
    tak = k["tak"]
    inputs = [k["tak"], k["sk_live"], k["acme_test"], tak[:-1], f"{tak}A",
              tak.replace("tak_", "Tak_")]
    matches = []
    for s in inputs:
        m = pattern.search(s)
        matches.append(m.group(rule["secretGroup"]) if m else None)
    return {"rule": rule["id"], "regex": rule["regex"], "inputs": inputs, "matches": matches}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes().replace(b"\r\n", b"\n")).hexdigest()


def build() -> dict:
    k = keys()
    scans = []
    for name, files, env in cases(k):
        scans.append({
            "name": name,
            "files": [{"name": n, "lines": lines(t)} for n, t in files],
            "env": env,
            "findings": scan(files, env),
        })
    return {
        "made_by": "python3 tests/interop/make_detect_secrets_vectors.py",
        "tools": {"detect-secrets": version("detect-secrets"), "python": sys.version.split()[0]},
        "sources": {
            str(p.relative_to(ROOT)): sha256(p) for p in (PLUGIN, GITLEAKS)
        },
        "keys": k,
        "scans": scans,
        "plugin_regex": plugin_regex(),
        "gitleaks": gitleaks(k),
    }


def dump(vectors: dict) -> str:
    return json.dumps(vectors, indent=1) + "\n"


def main() -> None:
    if sys.argv[1:] == ["--check"]:
        committed = json.loads(OUT.read_text())
        fresh = build()
        for v in (committed, fresh):
            v.pop("tools")
        if committed != fresh:
            import difflib
            diff = difflib.unified_diff(dump(committed).splitlines(), dump(fresh).splitlines(),
                                        "committed", "detect-secrets now", lineterm="")
            sys.exit(f"{OUT.relative_to(ROOT)} is out of date with the installed detect-secrets "
                     f"or contrib/secret-scanning; rerun "
                     f"`python3 tests/interop/make_detect_secrets_vectors.py` and review:\n"
                     + "\n".join(diff))
        print(f"{OUT.relative_to(ROOT)}: up to date with detect-secrets "
              f"{version('detect-secrets')} and contrib/secret-scanning")
    elif sys.argv[1:] == []:
        OUT.write_text(dump(build()))
        print(f"wrote {OUT.relative_to(ROOT)}")
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
