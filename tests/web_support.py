"""HQ's customer pages under test: an HQ home, a registered box, a store, a welcome gift."""

from __future__ import annotations

import base64
import io
import re
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import uvicorn
from PIL import Image
from starlette.applications import Starlette
from starlette.testclient import TestClient

from drivers.camera import Decoder, FrameDecoder, Symbology
from drivers.escpos_decode import decode, qr_symbol
from drivers.escpos_render import render
from drivers.printer_profile import PrinterProfile
from drivers.printer_transport.file import FileTransport
from edge import slips, tokens
from edge.box import Box, init_home
from edge.keys import Purpose
from hq.db import Database
from hq.issuing import keystore
from hq.web.app import WebSettings, build_app
from hq.web.campaigns import Campaign, CampaignKind, create_campaign
from hq.web.stores import Store, put_store
from tests.factory import DEVICE, STORE, Hq

GIFT = tokens.Benefit(tokens.BenefitKind.FREE_ITEM, 1, "咖啡一杯")
JOIN_URL = "https://work.weixin.qq.com/ca/cawcde1234"
RECEIPT = "RCPT0042"


@dataclass
class WebHq:
    """HQ's home and database, the web app over them, and a registered store box."""

    home: Path
    db: Database
    box: Box
    app: Starlette
    printer: Path
    db_url: str

    def client(self, lang: str = "zh-CN,zh;q=0.9") -> TestClient:
        """A phone: its own cookie jar; does not follow redirects (tests look at them)."""
        return TestClient(self.app, base_url="http://testserver", follow_redirects=False,
                          headers={"Accept-Language": lang})

    def print_card(self, receipt: str = RECEIPT) -> str:
        """The box prints a card on a file printer; the URL is read back off the paper."""
        issued = self.box.issue_card(receipt)
        doc = slips.card_slip("望京店", "扫码入群 领新人礼", "新人礼: 到店免费咖啡一杯",
                              issued.url, issued.serial, issued.issued_at, "谢谢惠顾")
        FileTransport(self.printer).write(render(doc, PrinterProfile(58)))
        paper = decode(self.printer.read_bytes(), "gb18030", strict=False)
        qr = paper.qr_codes[-1]
        image = qr_symbol(qr.data, qr.module_dots, qr.ecc)
        (url,) = read_qr(image)
        return url

    def coupons(self) -> list[tuple[str, ...]]:
        """Every coupon minted, with its customer and card."""
        return [tuple(r) for r in self.db.query(
            "SELECT coupon_id, customer, card_device, card_serial, code FROM web_coupon")]


def read_qr(image: Image.Image) -> list[str]:
    """The QR texts in an image, read by the box's camera decoder."""
    grey = np.asarray(image.convert("L"), dtype=np.uint8)
    return FrameDecoder(Decoder.ZXING, [Symbology.QR]).decode(grey, thorough=True)


def qr_from_page(html: str, qr_id: str = "coupon-qr") -> str:
    """The code in a page's QR image ``qr_id`` (a data: PNG), decoded."""
    m = re.search(rf'id="{re.escape(qr_id)}" src="data:image/png;base64,([^"]+)"', html)
    assert m, f"no QR {qr_id} on the page"
    image = Image.open(io.BytesIO(base64.b64decode(m.group(1))))
    big = image.convert("L").resize((image.width * 6, image.height * 6), Image.Resampling.NEAREST)
    (code,) = read_qr(big)
    return code


def path_of(url: str) -> str:
    """The path of a card URL (``HTTP://TESTSERVER/SEK1...`` -> ``/SEK1...``)."""
    return "/" + url.split("/", 3)[3]


def form_fields(html: str) -> dict[str, str]:
    """The hidden fields of the first form on a page."""
    return dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)"', html))


def make_card_box(home: Path, hq: Hq, url_base: str) -> Box:
    """A box trusting ``hq`` whose card URL base points at the web service under test."""
    init_home(home, STORE, DEVICE, [hq.trusted], store_name="望京店", url_base=url_base)
    box = Box.open(home)
    with box.ledger.immediate() as conn:
        box.ledger.advance_trusted_time(conn, time.time() - 60, "test")
    return box


def make_web_hq(root: Path, *, claim_limit: int = 1000, check_limit: int = 1000,
                card_days: int = 30, db_url: str | None = None,
                url_base: str = "HTTP://TESTSERVER/") -> WebHq:
    """A ready HQ: coupon key, the box's device registered, the store, a welcome gift.

    ``db_url``: the ``hq_db_url`` fixture's (SQLite or PostgreSQL); SQLite in ``root`` if None.
    """
    home = root / "hq"
    keystore.create_key(home, "HQC", [Purpose.COUPON, Purpose.PICKUP, Purpose.CONFIG])
    keystore.create_key(home, "HQD", [Purpose.DATA])  # signs the orders HQ pushes
    key = keystore.signing_key(home, Purpose.COUPON)
    box = make_card_box(root / "box", Hq(key), url_base)
    keystore.register_device(home, DEVICE, STORE, box.device_key.public_key)
    db_url = db_url or f"sqlite:///{home / 'hq.sqlite'}"
    db = Database(db_url)
    put_store(db, Store(STORE, "望京店", "望京街1号", 39.99, 116.47, JOIN_URL))
    put_store(db, Store("SH002", "静安店", "南京西路2号", 31.23, 121.45, ""))
    now = int(time.time())
    create_campaign(db, Campaign("WELCOME", CampaignKind.CARD, "新人礼", GIFT, now - 60,
                                 now + 365 * 86400, 30, (), True, 0, 0))
    settings = WebSettings(home, db_url, card_days, check_limit, claim_limit)
    return WebHq(home, db, box, build_app(settings, db), root / "printer.bin", db_url)


def loopback_socket() -> socket.socket:
    """A listening-ready socket on a free 127.0.0.1 port (bound now, so the port is known)."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


@contextmanager
def serving(app: Starlette, sock: socket.socket | None = None) -> Iterator[str]:
    """``app`` under a real uvicorn on loopback (``sock``, or a free port);
    yields ``http://127.0.0.1:PORT``."""
    sock = sock or loopback_socket()
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="uvicorn",
                              daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not (server.started and server.servers):
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(15)
        sock.close()
