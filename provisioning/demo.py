"""The whole store on one machine, for ``./run demo``: every service has an embedded default.

It starts, each in its own process and all on loopback:

* a mosquitto broker on a free 127.0.0.1 port (config, persistence and log in the demo
  folder; the system's mosquitto service is not used),
* HQ's ingest worker (``edge-hq ingest``, SQLite database in the demo folder, with fan-out),
* HQ's customer pages (``edge-hq web``, same database) on a free loopback port, the store
  and its welcome gift registered, and the box's card URL base pointed at it,
* the store daemon on simulated devices (``edge run --simulate``: a pseudo-terminal
  scanner, a file printer), its ``[mqtt]`` pointed at that broker,

pushes a signed store config and today's pickup orders from HQ, then opens the cashier's
terminal (``edge ui``) in front. Without a terminal (a pipe, CI, ``--scripted``) it plays
the counter instead: sample codes go through the scanner line, a card is printed and
rendered to a PNG, and the card's URL is printed (and fetched once, to show HQ's page
answers) so a person can open it in a browser. On the way out it stops the daemon
cleanly, waits for the store's events to reach HQ, and prints HQ's report. Everything
lives under ``--root`` (default ``demo-home/``); a second run reuses it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from edge import config, i18n
from edge.ledger import Ledger
from edge.tokens import Benefit, BenefitKind
from edge.verdict import Reason, Verdict
from edged.localapi import Op, call, socket_path
from hq.db import Database
from hq.issuing.codes import random_pickup_number
from hq.web.campaigns import Campaign, CampaignError, CampaignKind, create_campaign
from hq.web.stores import Store, put_store
from provisioning.dev import NAME, STORE, ensure_demo_home, hq_home, samples
from provisioning.localbroker import Broker

BIN = Path(sys.executable).parent


def _say(text: str) -> None:
    print(f"\033[1m== {text}\033[0m", flush=True)


def _wait(cond: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise SystemExit(f"demo: timed out waiting for {what}")
        time.sleep(0.1)


def set_mqtt(home: Path, host: str, port: int) -> None:
    """Point the box's ``[mqtt]`` table at the demo broker (replacing an older one)."""
    path = home / "edge.toml"
    text = path.read_text(encoding="utf-8")
    start = text.find("\n[mqtt]\n")
    if start >= 0:
        end = text.find("\n[", start + 1)
        text = text[:start] + (text[end:] if end >= 0 else "\n")
    path.write_text(text.rstrip("\n") + f'\n\n[mqtt]\nhost = "{host}"\nport = {port}\n',
                    encoding="utf-8")


def config_body(url_base: str = "HTTPS://Q.EDGE.CN/") -> dict[str, object]:
    """The store config HQ pushes: profile, card texts, campaigns.

    No key list: push-config adds the trust list the demo's trust root signed.
    """
    return {
        "schema": 1,
        "store": {"name": "望京店"},
        "printer": {"url_base": url_base, "headline": "扫码入群 领新人礼",
                    "gift": "新人礼: 到店免费咖啡一杯", "footer": "谢谢惠顾 · 望京店"},
        "campaigns": [{"id": "LIVE1125", "state": "active", "name": "双十一直播"},
                      {"id": "OLD0901", "state": "revoked", "name": "九月老活动"}],
        "void_window_s": 900,
    }


def orders_body(now: int, home: Path) -> dict[str, object]:
    """Today's pickup orders HQ assigns to the demo store (numbers: :func:`hq_orders`)."""
    return {"orders": [{"order_id": f"LIVE-{o['number']}", "number": o["number"],
                        "window_start": now - 1800, "window_end": now + 6 * 3600,
                        "items": o["items"], "customer": o["customer"]}
                       for o in hq_orders(home)]}


def hq_orders(home: Path) -> list[dict[str, str]]:
    """The livestream orders HQ pushes in the demo: random 6-digit numbers, chosen once.

    Kept in ``<home>/hq/demo-orders.json`` and listed in ``samples.txt``.
    """
    path = hq_home(home) / "demo-orders.json"
    if path.exists():
        listed: list[dict[str, str]] = json.loads(path.read_text(encoding="utf-8"))
        return listed
    orders = [{"number": random_pickup_number(), "items": items, "customer": who}
              for items, who in (("奶油蛋糕 6寸x1", "赵*"), ("全麦吐司x2", "钱*"),
                                 ("蛋挞x6 咖啡x2", "孙*"))]
    path.write_text(json.dumps(orders, ensure_ascii=False), encoding="utf-8")
    with (home / "samples.txt").open("a", encoding="utf-8") as f:
        f.writelines(f"number  {o['number']}  (HQ pushes it over MQTT in the demo)  "
                     f"{o['items']}\n" for o in orders)
    return orders


@contextmanager
def _process(args: list[str], log: Path, name: str) -> Iterator[subprocess.Popen[bytes]]:
    """A child process logging to ``log``; SIGTERM on the way out, SIGKILL if it hangs."""
    with log.open("ab") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                print(f"demo: {name} did not stop; killing it", file=sys.stderr)
                proc.kill()
                proc.wait()


def _ingest_subscribed(log: Path, offset: int, proc: subprocess.Popen[bytes]) -> bool:
    """Whether the ingest worker started at ``offset`` of its log holds its subscriptions.

    Events the box publishes before that would be acknowledged by the broker with no
    subscriber to take them: a real HQ runs ingest all the time, the demo must wait for it.
    """
    if proc.poll() is not None:
        raise SystemExit(f"demo: HQ ingest stopped; see {log}")
    with log.open("rb") as f:
        f.seek(offset)
        return b"subscribed (group" in f.read()


def _hq_has_everything(home: Path, db: str) -> bool:
    """Whether HQ's database holds the box's newest event."""
    cfg = config.load(home)
    ledger = Ledger(cfg.path(cfg.ledger_path))
    try:
        device, last = cfg.device_id, ledger.last_seq()
    finally:
        ledger.close()
    hq_db = Database(db)
    try:
        rows = hq_db.query("SELECT max_seq FROM hq_device WHERE device=?", (device,))
    finally:
        hq_db.close()
    return bool(rows) and int(rows[0][0]) >= last


def _edge(home: Path, *args: str, check: bool = True,
          stdout: int | IO[bytes] | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([str(BIN / "edge"), "--home", str(home), *args], check=check,
                          stdout=stdout, timeout=60)


def _hq(*args: str) -> None:
    subprocess.run([str(BIN / "edge-hq"), *args], check=True, timeout=60)


def _daemon_up(home: Path) -> bool:
    return subprocess.run([str(BIN / "edge"), "--home", str(home), "status"], check=False,
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                          timeout=30).returncode == 0


def _orders_known(home: Path, prefix: str) -> int:
    out = subprocess.run([str(BIN / "edge"), "--home", str(home), "orders", "list", "--json"],
                         check=True, capture_output=True, timeout=30).stdout
    return sum(o["order_id"].startswith(prefix) for o in json.loads(out))


def free_port() -> int:
    """A loopback port nobody listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def prepare_web(db_url: str) -> None:
    """The demo store in HQ's store registry, and its welcome gift (once)."""
    db = Database(db_url)
    try:
        put_store(db, Store(STORE, NAME, "北京市朝阳区望京街1号", 39.9925, 116.4707,
                            "https://work.weixin.qq.com/ca/demo-bj001"))
        now = int(time.time())
        with contextlib.suppress(CampaignError):  # a second run keeps the first one's
            create_campaign(db, Campaign("WELCOME", CampaignKind.CARD, "新人礼", Benefit(
                BenefitKind.FREE_ITEM, 1, "咖啡一杯"), now - 60, now + 365 * 86400, 30, (),
                True, 1, 0))
    finally:
        db.close()


def _web_up(base: str, proc: subprocess.Popen[bytes], log: Path) -> bool:
    if proc.poll() is not None:
        raise SystemExit(f"demo: HQ web stopped; see {log}")
    try:
        with urllib.request.urlopen(base + "/me", timeout=2) as r:
            return int(r.status) == 200
    except OSError:
        return False


def show_card(url: str) -> None:
    """Say where the printed card leads, and that HQ's page answers there."""
    _say(f"The card's page (open it in a browser while the demo runs): {url}")
    with urllib.request.urlopen(url, timeout=10) as r:
        page = r.read().decode("utf-8")
    gift = "新人礼" in page and "立即领取" in page
    print(f"  HQ's page answers {r.status}: {NAME if NAME in page else '?'}, "
          f"{'welcome gift offered' if gift else 'no gift offered'}")


def print_card(home: Path) -> str:
    """Print a packaging card at the box; its URL."""
    out = _edge(home, "print-card", "--json", stdout=subprocess.PIPE).stdout
    return str(json.loads(out)["url"])


def play_counter(home: Path, root: Path) -> None:
    """Without a terminal: scan the sample codes through the simulated scanner line."""
    data = samples(home)
    codes = [data["coupons"][0], data["coupons"][0], data["pickups"][0]["code"],
             hq_orders(home)[0]["number"],
             "6901234567892", data["coupons"][1][:-1] + "0"]
    _say("The cashier scans: a coupon, the same coupon, a pickup code, a typed pickup "
         "number pushed by HQ, a shelf EAN-13, a damaged code")
    with (home / "run" / "scanner").open("w") as line:  # the scanner's side of the pty
        for code in codes:
            line.write(code + "\r\n")
            line.flush()
            time.sleep(0.3)
    time.sleep(1.0)
    decisions = asyncio.run(call(socket_path(home), Op.RECENT, limit=len(codes)))["decisions"]
    for d in reversed(decisions):  # as the cashier saw them, oldest first
        verdict = Verdict(d["accepted"], Reason(d["reason"]) if d["reason"] else None,
                          d["kind"], d["code_id"], d["at"], d["clock_trusted"], d["facts"])
        head, what, advice = i18n.verdict_lines(verdict)
        print(f"  {head}  {what}  {advice}".rstrip())
    _edge(home, "status")
    _say("A packaging card is printed; the paper is rendered to a PNG")
    show_card(print_card(home))
    time.sleep(2.0)
    png = root / "paper.png"
    _edge(home, "preview", str(home / "printer-sim.bin"), "--png", str(png), "--last", "3")


def main(argv: list[str] | None = None) -> int:
    """Run the demo."""
    ap = argparse.ArgumentParser(prog="python -m provisioning.demo", description=__doc__)
    ap.add_argument("--root", type=Path, default=Path("demo-home"))
    ap.add_argument("--scripted", action="store_true",
                    help="play the counter from a script even on a terminal")
    args = ap.parse_args(argv)
    root = args.root.resolve()
    home, logs = root / "store", root / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    if ensure_demo_home(home):
        hq_orders(home)  # the numbers HQ will push, listed in samples.txt
        print(f"demo: new store home {home} (sample codes in {home / 'samples.txt'})")
    hq = hq_home(home)
    broker = Broker(root / "broker")
    broker.start()
    stack = contextlib.ExitStack()
    url = f"mqtt://{broker.host}:{broker.port}"
    db = f"sqlite:///{root / 'hq.sqlite'}"
    web_port = free_port()
    web_base = f"http://127.0.0.1:{web_port}"
    try:
        set_mqtt(home, broker.host, broker.port)
        prepare_web(db)
        web_log = logs / "hq-web.log"
        web = stack.enter_context(_process(
            [str(BIN / "edge-hq"), "--home", str(hq), "web", "--listen", f"127.0.0.1:{web_port}",
             "--db", db], web_log, "HQ web"))
        _wait(lambda: _web_up(web_base, web, web_log), 30, "HQ web")
        _say(f"HQ's customer pages on {web_base} (log {web_log})")
        _say(f"Broker on {broker.host}:{broker.port}; HQ ingest with fan-out "
             f"(log {logs / 'hq-ingest.log'})")
        ingest_log = logs / "hq-ingest.log"
        offset = ingest_log.stat().st_size if ingest_log.exists() else 0
        with _process([str(BIN / "edge-hq"), "--home", str(hq), "ingest", "--broker", url,
                       "--db", db, "--client-id", "hq-demo-ingest"],
                      ingest_log, "HQ ingest") as ingest:
            _wait(lambda: _ingest_subscribed(ingest_log, offset, ingest), 30, "HQ ingest")
            _say("HQ signs and pushes the store config (retained: the box gets it on connect)")
            cfg, orders = root / "config.json", root / "orders.json"
            cfg.write_text(json.dumps(config_body(web_base.upper() + "/"), ensure_ascii=False,
                                      indent=1))
            _hq("--home", str(hq), "push-config", str(cfg), "--store", STORE, "--broker", url,
                "--db", db)
            _say(f"The store daemon on simulated devices (log {logs / 'daemon.log'})")
            with _process([str(BIN / "edge"), "--home", str(home), "run", "--simulate"],
                          logs / "daemon.log", "daemon") as daemon:
                _wait(lambda: _daemon_up(home) or daemon.poll() is not None, 20, "the daemon")
                if daemon.poll() is not None:
                    raise SystemExit(f"demo: the daemon stopped; see {logs / 'daemon.log'}")
                _say("HQ assigns today's livestream pickup orders to the store")
                orders.write_text(json.dumps(orders_body(int(time.time()), home),
                                             ensure_ascii=False))
                _hq("--home", str(hq), "push-orders", str(orders), "--store", STORE,
                    "--broker", url, "--db", db)
                _wait(lambda: _orders_known(home, "LIVE-") >= 3, 20, "the orders at the store")
                interactive = sys.stdin.isatty() and sys.stdout.isatty() and not args.scripted
                if interactive:
                    show_card(print_card(home))
                    print(f"Scan from another terminal: echo CODE > {home / 'run/scanner'} "
                          f"(codes in {home / 'samples.txt'}). F10 or Ctrl+C quits.")
                    time.sleep(1.5)
                    _edge(home, "ui", check=False)
                else:
                    play_counter(home, root)
            _say("Daemon stopped; what it had not sent yet goes to HQ now")
            _edge(home, "sync", "--until-drained", "--timeout", "20", check=False)
            _wait(lambda: _hq_has_everything(home, db), 20, "HQ to store the last event")
            _say("HQ's report")
            _hq("--home", str(hq), "report", "--db", db)
    finally:
        stack.close()
        broker.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
