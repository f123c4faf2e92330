"""``edge-hq store``, ``edge-hq campaign`` and ``edge-hq web`` as commands and a process."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx2
import pytest
from PIL import Image

from cli import hq as hq_cli
from tests.web_support import loopback_socket, read_qr


def run(home: Path, *argv: str) -> int:
    return hq_cli.main(["--home", str(home), *argv])


def test_store_registry_commands(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """GIVEN an HQ home
    WHEN a store is set, listed, set with bad coordinates, removed, and removed again
    THEN the list shows it with its join link carrying state=the store id; bad input and a
    missing store exit 2 with a clear message."""
    assert run(tmp_path, "store", "set", "--id", "BJ001", "--name", "望京店", "--lat", "39.99",
               "--lon", "116.47", "--join-url", "https://work.weixin.qq.com/ca/x?a=1") == 0
    assert run(tmp_path, "store", "list", "--json") == 0
    out = capsys.readouterr().out
    (store,) = json.loads(out[out.index("["):])
    assert store["name"] == "望京店" and store["lat"] == 39.99
    assert run(tmp_path, "store", "list") == 0
    assert "https://work.weixin.qq.com/ca/x?a=1&state=BJ001" in capsys.readouterr().out
    assert run(tmp_path, "store", "set", "--id", "X", "--name", "X", "--lat", "99",
               "--lon", "0") == 2
    assert "out of range" in capsys.readouterr().err
    assert run(tmp_path, "store", "set", "--id", "望京", "--name", "X") == 2
    assert "store id" in capsys.readouterr().err
    assert run(tmp_path, "store", "remove", "--id", "BJ001") == 0
    assert run(tmp_path, "store", "remove", "--id", "BJ001") == 2
    assert "no store BJ001" in capsys.readouterr().err


def test_campaign_create_prints_link_and_qr(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    """GIVEN an HQ home
    WHEN a link campaign is created with a PNG, then again with the same id
    THEN its link and a terminal QR are printed, the PNG decodes to the link, and the
    second create exits 2 saying it exists."""
    png = tmp_path / "live.png"
    assert run(tmp_path, "campaign", "create", "--id", "LIVE1201", "--benefit", "off:500",
               "--budget", "100", "--base-url", "https://q.edge.cn/", "--png", str(png)) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == "https://q.edge.cn/c/LIVE1201" and "█" in out
    assert read_qr(Image.open(png)) == ["https://q.edge.cn/c/LIVE1201"]
    assert run(tmp_path, "campaign", "create", "--id", "LIVE1201", "--benefit", "off:5") == 2
    assert "already exists" in capsys.readouterr().err
    assert run(tmp_path, "campaign", "create", "--id", "W1", "--kind", "card", "--benefit",
               "free:咖啡") == 0
    assert run(tmp_path, "campaign", "list") == 0
    listed = capsys.readouterr().out
    assert "LIVE1201  link" in listed and "issued 0/100" in listed and "W1  card" in listed


def test_web_serves_as_a_process(tmp_path: Path) -> None:
    """GIVEN an HQ home with a coupon key
    WHEN ``edge-hq web --listen 127.0.0.1:PORT`` runs, is asked for a page, then gets SIGTERM
    THEN the page comes with its security headers, and the server shuts down gracefully
    (uvicorn re-raises the signal it handled, so the exit status is the signal's)."""
    assert run(tmp_path, "keygen", "--key-id", "HQC") == 0
    sock = loopback_socket()
    port = sock.getsockname()[1]
    sock.close()
    proc = subprocess.Popen([sys.executable, "-m", "cli.hq", "--home", str(tmp_path), "web",
                             "--listen", f"127.0.0.1:{port}"], stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                r = httpx2.get(f"http://127.0.0.1:{port}/me", timeout=5)
                break
            except httpx2.TransportError:
                assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
                assert time.monotonic() < deadline, "edge-hq web did not answer"
                time.sleep(0.1)
        assert r.status_code == 200 and "我的券" in r.text
        assert "nonce-" in r.headers["content-security-policy"]
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) in (0, -signal.SIGTERM)
    assert proc.stderr is not None and b"Finished server process" in proc.stderr.read()


def test_web_without_a_coupon_key_explains(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    """GIVEN an HQ home with no keys WHEN edge-hq web starts THEN exit 2 naming the key."""
    assert run(tmp_path, "web", "--listen", "127.0.0.1:1") == 2
    assert "no HQ key for coupon" in capsys.readouterr().err
