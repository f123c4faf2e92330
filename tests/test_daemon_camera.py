"""The daemon's camera part on a video file: a coupon held up to the camera is redeemed."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from drivers import synthetic
from drivers.synthetic import Kind, Symbol
from provisioning.dev import issue_coupons, samples
from tests.daemon_fixtures import make_home, next_event, running, wait_scanner, write_scanner


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return make_home(tmp_path)


async def test_coupon_in_view_is_redeemed_once(home: Path, tmp_path: Path) -> None:
    """GIVEN a camera configured on a video of a counter where a coupon QR is held up
    WHEN the daemon runs (the video replays at its end)
    THEN one verdict arrives from source camera:<video>, accepted; the hold-off and the
    single-use rule keep it at one acceptance while the code stays in view; the serial
    scanner keeps working beside it."""
    (coupon,) = issue_coupons(home, 1, prefix="CAM")
    back = synthetic.background(640, 480)
    frames = [synthetic.scene(back, None, seed=i) for i in range(3)]
    frames += [synthetic.scene(back, Symbol(Kind.QR, coupon, 3), seed=10 + i) for i in range(6)]
    video = tmp_path / "counter.avi"
    synthetic.write_video(video, frames, fps=15)
    over = {"camera": {"source": str(video), "holdoff_s": 30.0}}
    async with running(home, overrides=over) as r:
        await r.client.subscribe()
        first = await next_event(r.client, "verdict", timeout=30)
        await asyncio.sleep(1.5)  # the video replays: the code is seen again
        recent = (await r.client.request("recent", limit=10))["decisions"]
        await wait_scanner(r.client)
        write_scanner(home, samples(home)["pickups"][0]["number"].encode() + b"\n")
        while (serial := await next_event(r.client, "verdict"))["source"] == first["source"]:
            pass
    assert first["source"] == f"camera:{video}" and first["accepted"] is True
    assert first["facts"]["coupon_id"] == "CAM-00000"
    assert sum(d["accepted"] for d in recent) == 1  # seen again: at most rejected as used
    assert serial["source"].startswith("serial:") and serial["kind"] == "pickup"
