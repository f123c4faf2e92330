"""Claim throughput of HQ's customer pages against the same framework's bare endpoint.

One uvicorn process (one worker) serves the real app (``hq.web.app.build_app``, SQLite in
WAL with synchronous=FULL, every claim one transaction that mints and signs a coupon) plus
a bare Starlette endpoint that returns a constant: the floor, what Starlette + uvicorn +
this client allow on this machine. The client keeps ``--concurrency`` requests in flight
(each a phone with its own cookie, CSRF token and a fresh idempotency key per claim),
alternating bare and claim rounds; the best round of each is compared.

Run: ``PYTHONPATH=. .venv/bin/python bench/web_claims.py [--n 2000] [--concurrency 32]``
"""

from __future__ import annotations

import argparse
import asyncio
import re
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx2

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.machine import describe
from edge import tokens
from edge.keys import Purpose
from hq.db import Database
from hq.issuing import keystore
from hq.web.campaigns import Campaign, CampaignKind, create_campaign

FLOOR = 0.5  # claims/s at least half the bare endpoint's requests/s
CAMPAIGN = "BENCH"


def serve(home: Path, port: int) -> None:
    """The child: the real app plus ``POST /bare`` on one uvicorn worker."""
    import uvicorn
    from starlette.requests import Request
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    from hq.web.app import WebSettings, build_app

    async def bare(request: Request) -> PlainTextResponse:
        return PlainTextResponse("ok")

    app = build_app(WebSettings(home, f"sqlite:///{home / 'hq.sqlite'}", check_limit=10**9,
                                claim_limit=10**9))
    app.router.routes.insert(0, Route("/bare", bare, methods=["POST"]))
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def prepare(home: Path) -> None:
    keystore.create_key(home, "HQC", [Purpose.COUPON])
    db = Database(f"sqlite:///{home / 'hq.sqlite'}")
    now = int(time.time())
    create_campaign(db, Campaign(CAMPAIGN, CampaignKind.LINK, "bench", tokens.Benefit(
        tokens.BenefitKind.AMOUNT_OFF, 500), now - 60, now + 86400, 7, (), False, 0, 0))
    db.close()


async def rounds(base: str, n: int, concurrency: int, repeat: int) -> tuple[float, float, int]:
    """(best bare req/s, best claims/s, coupons claimed)."""
    phones = [httpx2.AsyncClient(base_url=base, timeout=60) for _ in range(concurrency)]
    csrf = []
    for p in phones:
        page = (await p.get(f"/c/{CAMPAIGN}")).text
        m = re.search(r'name="csrf" value="([^"]+)"', page)
        assert m, page[:500]
        csrf.append(m.group(1))

    async def drive(path: str, claim: bool) -> float:
        todo = iter(range(n))

        async def worker(i: int) -> None:
            for _ in todo:
                data = {"csrf": csrf[i], "idem": secrets.token_urlsafe(16)} if claim else {}
                r = await phones[i].post(path, data=data)
                assert r.status_code == (303 if claim else 200), r.text[:300]

        t0 = time.perf_counter()
        await asyncio.gather(*(worker(i) for i in range(concurrency)))
        return n / (time.perf_counter() - t0)

    bare, claims = [], []
    for _ in range(repeat):
        bare.append(await drive("/bare", False))
        claims.append(await drive(f"/c/{CAMPAIGN}", True))
    for p in phones:
        await p.aclose()
    return max(bare), max(claims), n * repeat


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=2000, help="requests per round")
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--serve", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        serve(args.serve, args.port)
        return
    print(f"machine: {describe()}")
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        prepare(home)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        child = subprocess.Popen([sys.executable, __file__, "--serve", str(home), "--port",
                                  str(port)])
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    httpx2.post(f"http://127.0.0.1:{port}/bare", timeout=2)
                    break
                except httpx2.TransportError:
                    if child.poll() is not None or time.monotonic() > deadline:
                        raise SystemExit("bench: the server did not start") from None
                    time.sleep(0.1)
            bare, claims, total = asyncio.run(rounds(f"http://127.0.0.1:{port}", args.n,
                                                     args.concurrency, args.repeat))
        finally:
            child.terminate()
            child.wait(15)
        db = Database(f"sqlite:///{home / 'hq.sqlite'}")
        minted = db.query("SELECT COUNT(*) FROM web_coupon")[0][0]
        db.close()
    print(f"bare Starlette endpoint (POST, constant reply): {bare:.0f} req/s "
          f"({args.concurrency} in flight, best of {args.repeat} x {args.n})")
    print(f"claims (CSRF, rate limits, one SQLite transaction, coupon signed): {claims:.0f}/s; "
          f"{minted} coupons minted for {total} claims")
    ratio = claims / bare
    verdict = "meets" if ratio >= FLOOR else "BELOW"
    print(f"claims/floor: {ratio:.2f} ({verdict} the {FLOOR} bar)")


if __name__ == "__main__":
    main()
