"""detect-secrets plugin for keyward API keys.

Finds keys of the form ``{prefix}_{key id}{secret}{checksum}`` (README, "Key format") and
reports a match only when its last six characters are the base62 CRC-32 of the body, so
look-alike strings (random identifiers, hashes, truncated or mistyped keys) are not
reported.

Use it with ``detect-secrets scan --plugin path/to/keyward_plugin.py FILE...``.

Configuration, first found wins:

* baseline: the ``KeywardDetector`` entry of ``plugins_used`` may carry
  ``"prefixes": ["sk_live", "sk_test"]`` and ``"tail_lengths": [50]``;
* environment: ``KEYWARD_PREFIXES=sk_live,sk_test`` and ``KEYWARD_TAIL_LENGTHS=50``;
* default: any valid prefix, and 50 characters after the ``_`` (a 12-character key id, a
  32-character secret and the 6-character checksum: keyward's default shape).

Python's standard library only (``re``, ``zlib``) besides detect-secrets itself.
"""

import os
import re
import zlib
from typing import Generator, Iterable, List, Optional, Pattern

from detect_secrets.plugins.base import RegexBasedDetector

ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
CHECKSUM_LEN = 6
DEFAULT_TAIL_LENGTHS = (50,)
# Body = key id (11 to 32) + secret (22 to 128); the tail adds the checksum.
MIN_TAIL = 11 + 22 + CHECKSUM_LEN
MAX_TAIL = 32 + 128 + CHECKSUM_LEN
MAX_PREFIX_LEN = 32
PREFIX = r"[a-z][a-z0-9]*(?:_[a-z0-9]+)*"
_PREFIX_RE = re.compile(PREFIX, re.ASCII)


def checksum(body: str) -> str:
    """The six base62 characters of the CRC-32 (zlib's) of ``body``."""
    n = zlib.crc32(body.encode("ascii"))
    digits = ""
    while n:
        n, digit = divmod(n, 62)
        digits = ALPHABET[digit] + digits
    return digits.rjust(CHECKSUM_LEN, "0")


def is_valid_key(key: str, prefixes: Optional[Iterable[str]] = None) -> bool:
    """Whether ``key`` has a valid prefix (one of ``prefixes`` if given) and checksum."""
    prefix, sep, tail = key.rpartition("_")
    if not sep or len(tail) <= CHECKSUM_LEN:
        return False
    if prefixes is not None and prefix not in set(prefixes):
        return False
    if len(prefix) > MAX_PREFIX_LEN or not _PREFIX_RE.fullmatch(prefix):
        return False
    if any(c not in ALPHABET for c in tail):
        return False
    body, presented = tail[:-CHECKSUM_LEN], tail[-CHECKSUM_LEN:]
    return checksum(body) == presented


def _split_env(name: str) -> Optional[List[str]]:
    value = os.environ.get(name, "").strip()
    return [v.strip() for v in value.split(",") if v.strip()] or None


def build_regex(prefixes: Optional[Iterable[str]], tail_lengths: Iterable[int]) -> str:
    """The tightest pattern for these prefixes and tail lengths (like ``KeyFormat::regex()``)."""
    if prefixes:
        head = "(?:" + "|".join(re.escape(p) for p in prefixes) + ")"
    else:
        head = PREFIX
    lengths = sorted(set(tail_lengths))
    if len(lengths) == 1:
        count = "{%d}" % lengths[0]
    else:
        count = "{%d,%d}" % (lengths[0], lengths[-1])
    return r"\b" + head + r"_[0-9A-Za-z]" + count + r"\b"


class KeywardDetector(RegexBasedDetector):
    """keyward API key (prefix, base62 body, CRC-32 checksum verified)."""

    secret_type = "keyward API key"

    def __init__(
        self,
        prefixes: Optional[List[str]] = None,
        tail_lengths: Optional[List[int]] = None,
    ) -> None:
        if prefixes is None:
            prefixes = _split_env("KEYWARD_PREFIXES")
        if tail_lengths is None:
            env = _split_env("KEYWARD_TAIL_LENGTHS")
            tail_lengths = [int(v) for v in env] if env else list(DEFAULT_TAIL_LENGTHS)
        for p in prefixes or []:
            if len(p) > MAX_PREFIX_LEN or not _PREFIX_RE.fullmatch(p):
                raise ValueError(f"invalid keyward prefix {p!r}")
        for n in tail_lengths:
            if not MIN_TAIL <= n <= MAX_TAIL:
                raise ValueError(
                    f"tail length {n} out of range ({MIN_TAIL} to {MAX_TAIL} characters)"
                )
        self.prefixes = list(prefixes) if prefixes else None
        self.tail_lengths = sorted(set(tail_lengths))
        self._denylist = (re.compile(build_regex(self.prefixes, self.tail_lengths), re.ASCII),)

    @property
    def denylist(self) -> Iterable[Pattern]:
        return self._denylist

    def analyze_string(self, string: str) -> Generator[str, None, None]:
        for regex in self.denylist:
            for match in regex.finditer(string):
                key = match.group(0)
                tail = key.rpartition("_")[2]
                if len(tail) in self.tail_lengths and is_valid_key(key, self.prefixes):
                    yield key

    def json(self) -> dict:
        out = {"name": self.__class__.__name__, "tail_lengths": self.tail_lengths}
        if self.prefixes is not None:
            out["prefixes"] = self.prefixes
        return out
