"""Argon2id interop with argon2-cffi, driven by tests/argon2_interop.rs.

  python3 argon2_interop.py verify   stdin: "<hash>\t<key>" lines; prints "match" or
                                     "mismatch" per line (any other failure exits 1)
  python3 argon2_interop.py hash     stdin: one key per line; prints two hashes per key:
                                     OWASP parameters (m=19456,t=2,p=1), then argon2-cffi's
                                     defaults
"""

import sys

import argon2
from argon2.exceptions import VerifyMismatchError


def verify() -> None:
    ph = argon2.PasswordHasher()
    for line in sys.stdin.read().splitlines():
        stored, key = line.split("\t")
        try:
            ph.verify(stored, key)
            print("match")
        except VerifyMismatchError:
            print("mismatch")


def hash_keys() -> None:
    owasp = argon2.PasswordHasher(
        time_cost=2, memory_cost=19456, parallelism=1, hash_len=32, salt_len=16
    )
    default = argon2.PasswordHasher()
    for key in sys.stdin.read().splitlines():
        print(owasp.hash(key))
        print(default.hash(key))


if __name__ == "__main__":
    {"verify": verify, "hash": hash_keys}[sys.argv[1]]()
