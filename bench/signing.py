"""Ed25519 verify cost: PyNaCl (chosen) against cryptography, same messages, same run.

Run: .venv/bin/python bench/signing.py
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import nacl.signing
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bench.machine import describe

N = 20_000


def per_call_us(fn: object, n: int = N) -> float:
    assert callable(fn)
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - start) / n * 1e6


def main() -> None:
    print(f"machine: {describe()}")
    msg = os.urandom(120)
    nk = nacl.signing.SigningKey.generate()
    nsig, nvk = nk.sign(msg).signature, nk.verify_key
    ck = Ed25519PrivateKey.generate()
    csig, cpub = ck.sign(msg), ck.public_key()
    nacl_us = per_call_us(lambda: nvk.verify(msg, nsig))
    crypto_us = per_call_us(lambda: cpub.verify(csig, msg))
    # The box builds a VerifyKey per call (keys come from the ledger); measure that too.
    raw = bytes(nvk)
    nacl_fresh_us = per_call_us(lambda: nacl.signing.VerifyKey(raw).verify(msg, nsig))
    print(f"PyNaCl verify          {nacl_us:7.1f} us")
    print(f"PyNaCl verify (+key)   {nacl_fresh_us:7.1f} us")
    print(f"cryptography verify    {crypto_us:7.1f} us")
    print(f"ratio cryptography/PyNaCl {crypto_us / nacl_us:.2f}")


if __name__ == "__main__":
    main()
