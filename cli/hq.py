"""``edge-hq``: HQ's end of every contract (keys, codes, cards).

Exit status: 0 done / valid, 1 a checked card is not valid, 2 bad usage.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Sequence
from contextlib import closing
from pathlib import Path

from edge import tokens
from edge.credentials import has_password, read_secret, redact
from edge.keys import Purpose
from edge.qrfit import CODE_MAX_VERSION, build_qr, qr_version
from edge.rules import PICKUP_NUMBER
from hq.broker import BrokerError, add_arguments, options_from_args
from hq.db import Database, DbError, default_url
from hq.ingest.eventstore import EventStore
from hq.ingest.worker import DEFAULT_GROUP, DEFAULT_SESSION_EXPIRY_S, IngestWorker
from hq.issuing import keystore
from hq.issuing.codes import CardCheck, random_pickup_number, sign_token, verify_card
from hq.issuing.issued import record_issued
from hq.issuing.registry import DeviceRegistry
from hq.issuing.trust import load_trust_list, sign_trust_list
from hq.orders import intake as order_intake
from hq.orders import placing as order_placing
from hq.publishing.push import (
    orders_from_body,
    push_config,
    push_orders,
    read_body,
    web_links_from_body,
)
from hq.reports import stores as hq_report
from hq.reports import workshops as workshop_report
from hq.storeregistry import format_hours, import_stores, parse_hours, stores_from_body
from hq.timeparse import parse_time
from hq.web import campaigns as web_campaigns
from hq.web import stores as web_stores
from hq.web import workshops as web_workshops
from provisioning import brokeraccounts, brokerauth
from sync.contract import DEFAULT_ROOT, Topics

CHANNELS = {c.name.lower(): c for c in tokens.Channel}


def _benefit(text: str) -> tokens.Benefit:
    """``free:咖啡`` (or ``free:咖啡:2``), ``percent:95`` (pay 95%), ``off:500`` (fen)."""
    kind, _, rest = text.partition(":")
    try:
        if kind == "free":
            item, _, count = rest.partition(":")
            if not item:
                raise ValueError("free needs an item")
            return tokens.Benefit(tokens.BenefitKind.FREE_ITEM, int(count or 1), item)
        if kind == "percent" and 1 <= int(rest) <= 99:
            return tokens.Benefit(tokens.BenefitKind.PERCENT_PRICE, int(rest))
        if kind == "off" and int(rest) > 0:
            return tokens.Benefit(tokens.BenefitKind.AMOUNT_OFF, int(rest))
    except ValueError:
        pass
    raise argparse.ArgumentTypeError(
        f"benefit {text!r}: use free:ITEM[:COUNT], percent:1-99 (price paid) or off:FEN")


def _time(text: str) -> int:
    try:
        return parse_time(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _emit_code(code: str, args: argparse.Namespace) -> int:
    version = qr_version(code)
    if version > CODE_MAX_VERSION:
        print(f"edge-hq: code needs QR version {version}, over {CODE_MAX_VERSION}: shorten "
              "the ids, items or store list", file=sys.stderr)
        return 2
    if args.png:
        build_qr(code, border=4, box_size=8).make_image().save(args.png)
    if args.json:
        print(json.dumps({"code": code, "qr_version": version}))
    else:
        print(code)
    return 0


def cmd_keygen(args: argparse.Namespace) -> int:
    purposes = [Purpose(p) for p in args.purposes.split(",")]
    key = keystore.create_key(args.home, args.key_id, purposes,
                              _time(args.not_after) if args.not_after else None)
    print(json.dumps({"key_id": key.key_id, "public_key": key.public_key.hex(),
                      "purposes": sorted(key.purposes), "not_after": key.not_after}))
    return 0


def cmd_trust(args: argparse.Namespace) -> int:
    print(json.dumps(keystore.public_keys(args.home), indent=1))
    return 0


def cmd_sign_trust(args: argparse.Namespace) -> int:
    keys = None
    if args.keys:
        try:
            keys = json.loads(args.keys.read_text())
        except (OSError, ValueError) as exc:
            raise ValueError(f"{args.keys}: {exc}") from None
    path, version = sign_trust_list(args.home, keys, args.key_id, args.version, args.out)
    print(json.dumps({"trust_list": str(path), "version": version}))
    return 0


def cmd_register(args: argparse.Namespace) -> int:
    keystore.register_device(args.home, args.device, args.store, bytes.fromhex(args.public_key))
    print(f"device {args.device} registered for store {args.store}")
    return 0


def cmd_issue_coupon(args: argparse.Namespace) -> int:
    key = keystore.signing_key(args.home, Purpose.COUPON, args.key_id)
    stores = tuple(s for s in args.stores.split(",") if s) if args.stores != "all" else ()
    coupon = tokens.Coupon(key.key_id, args.id, args.campaign, CHANNELS[args.channel],
                           args.benefit, args.valid_from, args.valid_until, args.max_uses, stores)
    code = sign_token(key, coupon)
    # HQ's own record of the limits, before the code leaves HQ (hq.issuing.issued)
    with closing(_db(args)) as db, db.tx() as cur:
        record_issued(cur, coupon, time.time())
    return _emit_code(code, args)


def cmd_issue_pickup(args: argparse.Namespace) -> int:
    if args.number is None:  # HQ's default: random, 6 digits
        args.number = random_pickup_number()
        print(f"edge-hq: pickup number {args.number}", file=sys.stderr)
    if not PICKUP_NUMBER.fullmatch(args.number):
        raise ValueError(f"pickup number {args.number!r} must be 3-8 digits")
    key = keystore.signing_key(args.home, Purpose.PICKUP, args.key_id)
    pickup = tokens.Pickup(key.key_id, args.order, args.store, args.number, args.window_start,
                           args.window_end, args.items, args.customer)
    return _emit_code(sign_token(key, pickup), args)


def _plain_passwords(path: Path | None) -> dict[str, str]:
    if path is None:
        return {}
    passwords = json.loads(read_secret(path, "--passwords"))
    if not isinstance(passwords, dict) or not all(
            isinstance(k, str) and isinstance(v, str) and v for k, v in passwords.items()):
        raise ValueError(f"{path}: a JSON object of user -> non-empty password")
    return passwords


def _accounts(args: argparse.Namespace, out: Path) -> brokeraccounts.BrokerAccounts:
    return brokeraccounts.BrokerAccounts(args.home, out, _plain_passwords(args.passwords),
                                         args.topic_root, args.broker_pid_file)


def cmd_broker_auth(args: argparse.Namespace) -> int:
    accounts = _accounts(args, args.out)
    registry = keystore.load_devices(args.home)
    issued = brokeraccounts.load_hashes(args.home)
    missing = sorted(set(registry) - set(accounts.passwords) - set(issued))
    if missing:
        raise ValueError(f"no broker password for registered device(s) {missing}")
    unknown = sorted(set(accounts.passwords) - set(registry) - set(brokerauth.HQ_USERS))
    if unknown:
        raise ValueError(f"{unknown}: neither a registered device nor an HQ user")
    pw_file, acl_file = accounts.write()
    print(json.dumps({"devices": len(registry),
                      "hq_users": sorted(set(accounts.passwords) & set(brokerauth.HQ_USERS)),
                      "password_file": str(pw_file), "acl_file": str(acl_file)}))
    return 0


def _broker_auth_arguments(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("--broker-auth", type=Path, metavar="DIR",
                    help="mosquitto's password file and ACL live here: HQ rewrites them "
                         "(claims for new bundles, credentials for enrolled boxes)")
    sp.add_argument("--passwords", type=Path,
                    help="with --broker-auth: JSON file {user: password} for HQ's users")
    sp.add_argument("--broker-pid-file", type=Path,
                    help="with --broker-auth: mosquitto's pid_file, sent SIGHUP to reload")


def cmd_verify_card(args: argparse.Namespace) -> int:
    result = verify_card(args.url, keystore.load_devices(args.home))
    card = result.card
    if args.json:
        print(json.dumps({"outcome": result.outcome.value, "detail": result.detail,
                          "card": None if card is None else {
                              "store": card.store_id, "device": card.device_id,
                              "serial": card.serial, "issued_at": card.issued_at,
                              "receipt_ref": card.receipt_ref}}, ensure_ascii=False))
    else:
        print(f"{result.outcome.value}: {result.detail}")
    return 0 if result.outcome is CardCheck.VALID else 1


DB_URL_ENV = "HQ_DB_URL"


def _db_url(args: argparse.Namespace) -> str:
    """The database URL from --db, HQ_DB_URL or --db-url-file, else SQLite in the HQ home.

    A URL with a password only from the last two: ps shows a command line to every user.
    """
    if args.db and has_password(args.db):
        raise ValueError(f"--db {redact(args.db)} carries a password, which ps shows to every "
                         f"user: set {DB_URL_ENV} or use --db-url-file")
    url = args.db or os.environ.get(DB_URL_ENV) or (
        read_secret(args.db_url_file, "--db-url-file") if args.db_url_file else None)
    return url or default_url(args.home)


def _db(args: argparse.Namespace) -> Database:
    """The database :func:`_db_url` names, opened."""
    return Database(_db_url(args))


def cmd_push_config(args: argparse.Namespace) -> int:
    body = read_body(args.file)
    trust = load_trust_list(args.home)
    if trust is not None and "trust" not in body:
        body["trust"] = trust  # boxes learn the newest trusted set with each config
    key = keystore.signing_key(args.home, Purpose.CONFIG, args.key_id)
    with closing(_db(args)) as db:
        done = push_config(db, options_from_args(args), key, args.store, body, args.version)
    print(json.dumps({"store": done.store, "kind": done.kind.value, "version": done.version,
                      "topic": done.topic, "retained": done.retained, "bytes": done.size}))
    return 0


def cmd_push_orders(args: argparse.Namespace) -> int:
    body = read_body(args.file)
    orders, links = orders_from_body(body), web_links_from_body(body)
    key = keystore.signing_key(args.home, Purpose.DATA, args.key_id)
    # HQ signs the pickup code a web customer's page shows, unless the file gives it
    pickup_key = (keystore.signing_key(args.home, Purpose.PICKUP)
                  if any(not link.pickup_code for link in links) else None)
    with closing(_db(args)) as db:
        done = push_orders(db, options_from_args(args), key, args.store, orders, links,
                           pickup_key)
    print(json.dumps({"store": done.store, "kind": done.kind.value, "version": done.version,
                      "topic": done.topic, "orders": len(orders), "bytes": done.size}))
    return 0


def cmd_ingest(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        signer = None if args.no_fanout else keystore.signing_key(args.home, Purpose.DATA,
                                                                  args.key_id)
    except keystore.KeystoreError as exc:
        raise keystore.KeystoreError(f"{exc}: fan-out signs with it (make one with keygen "
                                     "--purposes data, or run with --no-fanout)") from None
    if signer is not None and keystore.purposes_of(args.home, signer.key_id) != {Purpose.DATA}:
        # The always-online worker must hold nothing that can sign config or trust.
        raise keystore.KeystoreError(f"key {signer.key_id} has purposes other than data: the "
                                     "ingest worker holds a data-only key (docs/security.md)")
    opts = options_from_args(args)
    db = _db(args)
    devices = DeviceRegistry(args.home)  # whose signatures ingest believes
    store = EventStore(db, opts.topics, devices)
    store.add_stores(devices.stores())
    client_id = args.client_id or f"edge-hq-{args.group}-{socket.gethostname()}"
    worker = IngestWorker(store, opts, client_id, args.group, args.session_expiry, signer)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    worker.start()
    logging.info("ingesting as %s (pid %d) into %s", client_id, os.getpid(), db.url.dialect)
    stop.wait()
    worker.stop()
    db.close()
    print(json.dumps(dataclasses.asdict(worker.counters)))
    return 0


def cmd_enrol(args: argparse.Namespace) -> int:
    from hq.issuing import enrolment

    opts = options_from_args(args)
    ca = Path(opts.ca_file).read_text() if opts.ca_file else None
    accounts = _accounts(args, args.broker_auth) if args.broker_auth else None
    bundle = enrolment.make_bundle(
        args.home, args.store, enrolment.Broker(opts.host, opts.port, opts.tls, opts.root, ca),
        args.name, args.ttl, claim_hash=brokerauth.password_hash if accounts else None)
    text = json.dumps(bundle, ensure_ascii=False, separators=(",", ":"))
    # The bundle carries a live token: readable by the installer only.
    fd = os.open(args.out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text + "\n")
    png = args.out.with_name(args.out.name + ".png")
    build_qr(text, box_size=4).make_image().save(png)
    if accounts is not None:  # the token's claim account, in force before the box tries it
        accounts.write()
    print(json.dumps({"store": args.store, "bundle": str(args.out), "qr": str(png),
                      "expires_at": bundle["expires_at"]}))
    return 0


def cmd_enrol_serve(args: argparse.Namespace) -> int:
    from hq.issuing.enrol_service import EnrolService

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    issue = _accounts(args, args.broker_auth).issue if args.broker_auth else None
    service = EnrolService(args.home, options_from_args(args), credentials=issue)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    service.start()
    stop.wait()
    service.stop()
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    if args.what == "workshops":
        with closing(_db(args)) as db:
            figures = workshop_report.build(db, args.since or 0.0)
        print(json.dumps(workshop_report.to_json(figures), ensure_ascii=False, indent=1)
              if args.json else workshop_report.to_text(figures))
        return 0
    with closing(_db(args)) as db:
        reports = hq_report.build(db, args.since or 0.0)
    if args.json:
        print(json.dumps(hq_report.to_json(reports), ensure_ascii=False, indent=1))
    else:
        print(hq_report.to_text(reports))
    return 0


def cmd_web(args: argparse.Namespace) -> int:
    import uvicorn  # only this command serves HTTP

    from hq.web.app import WebSettings, build_app

    host, _, port = args.listen.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"--listen {args.listen!r}: use HOST:PORT")
    settings = WebSettings(args.home, _db_url(args), args.card_days,
                           args.check_limit, args.claim_limit, args.secure_cookies)
    app = build_app(settings)
    uvicorn.run(app, host=host.strip("[]"), port=int(port), log_level="info",
                proxy_headers=True, server_header=False)
    return 0


def cmd_workshop_add(args: argparse.Namespace) -> int:
    session = web_workshops.Session(
        args.id or web_workshops.new_session_id(int(args.starts)), args.store, args.title,
        int(args.starts), int(args.ends), args.capacity, args.party_max, args.note,
        args.early_min * 60, args.late_min * 60)
    with closing(_db(args)) as db:
        web_workshops.add_session(db, session, Topics(args.root))
    link = session.link(args.base_url)
    print(f"session {session.session_id} at {session.store}: {link}")
    build_qr(link, border=2).print_ascii(out=sys.stdout, invert=True)
    return 0


def cmd_workshop_cancel(args: argparse.Namespace) -> int:
    with closing(_db(args)) as db:
        was_open = web_workshops.cancel_session(db, args.id, Topics(args.root))
    print(f"session {args.id} cancelled: its box refuses every ticket for it"
          if was_open else f"session {args.id} was cancelled already (its state sent again)")
    return 0


def cmd_workshop_list(args: argparse.Namespace) -> int:
    with closing(_db(args)) as db:
        found = web_workshops.list_sessions(db, args.store)
    for s in found:
        start = time.strftime("%Y-%m-%d %H:%M", time.localtime(s.starts))
        print(f"{s.session_id}  {s.store}  {start}  {s.taken}/{s.capacity}  "
              f"{s.status.value}  {s.title}  {s.link(args.base_url)}")
    return 0


def cmd_store_set(args: argparse.Namespace) -> int:
    hours = parse_hours(args.hours) if args.hours is not None else None
    with closing(_db(args)) as db:
        old = web_stores.get_store(db, args.id)  # hours and places not given are kept
        web_stores.put_store(db, web_stores.Store(
            args.id, args.name, args.address, args.lat, args.lon, args.join_url,
            hours if args.hours is not None else old.hours if old else None,
            args.pickup_per_slot if args.pickup_per_slot is not None
            else old.pickup_per_slot if old else 0))
    print(f"store {args.id} saved")
    return 0


def cmd_store_import(args: argparse.Namespace) -> int:
    # every record checked before the database opens
    stores = stores_from_body(read_body(args.file), str(args.file))
    with closing(_db(args)) as db:
        n = import_stores(db, stores)
    print(json.dumps({"imported": n, "stores": [s.store for s in stores]}))
    return 0


def cmd_orders_assign(args: argparse.Namespace) -> int:
    if args.max_km <= 0:
        raise ValueError(f"--max-km {args.max_km}: must be above 0")
    lines = list(order_intake.read_orders(args.file))
    data_key = keystore.signing_key(args.home, Purpose.DATA, args.key_id)
    pickup_key = keystore.signing_key(args.home, Purpose.PICKUP, args.pickup_key_id)
    with closing(_db(args)) as db:
        placed = order_placing.place(db, lines, pickup_key, args.max_km * 1000)
        placed = order_placing.push_placed(db, options_from_args(args), data_key, placed)
    counts: dict[str, int] = {}
    for p in placed:
        print(json.dumps(p.to_json(), ensure_ascii=False))
        counts[p.outcome] = counts.get(p.outcome, 0) + 1
        counts["repeat"] = counts.get("repeat", 0) + p.repeat
        counts["push_failed"] = counts.get("push_failed", 0) + bool(p.push_error)
    print("edge-hq: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())),
          file=sys.stderr)
    settled = all(p.outcome == "assigned" and p.pushed for p in placed)
    return 0 if settled else 1


def cmd_store_list(args: argparse.Namespace) -> int:
    with closing(_db(args)) as db:
        found = web_stores.list_stores(db)
    if args.json:
        print(json.dumps([s.to_json() for s in found], ensure_ascii=False, indent=1))
        return 0
    for s in found:
        place = "" if s.lat is None else f" ({s.lat},{s.lon})"
        pickup = (f"  {format_hours(s.hours)} x{s.pickup_per_slot}" if s.hours
                  else "")
        print(f"{s.store}  {s.name}  {s.address}{place}{pickup}  {s.join_link()}".rstrip())
    return 0


def cmd_store_remove(args: argparse.Namespace) -> int:
    with closing(_db(args)) as db:
        gone = web_stores.remove_store(db, args.id)
    if not gone:
        raise ValueError(f"no store {args.id} in the registry")
    print(f"store {args.id} removed")
    return 0


def cmd_campaign_create(args: argparse.Namespace) -> int:
    kind = web_campaigns.CampaignKind(args.kind)
    stores = tuple(s for s in args.stores.split(",") if s) if args.stores != "all" else ()
    campaign = web_campaigns.Campaign(
        args.id, kind, args.name or args.id, args.benefit, args.starts, args.ends,
        args.coupon_days, stores, args.claim_store_only, args.per_customer, args.budget)
    with closing(_db(args)) as db:
        web_campaigns.create_campaign(db, campaign)
    if kind is web_campaigns.CampaignKind.CARD:
        print(f"campaign {args.id}: the welcome gift of cards printed at "
              f"{args.stores if stores else 'every store'}")
        return 0
    link = args.base_url.rstrip("/") + f"/c/{args.id}"
    qr = build_qr(link, border=2)
    if args.png:
        build_qr(link, border=4, box_size=8).make_image().save(args.png)
    print(link)
    qr.print_ascii(out=sys.stdout, invert=True)
    return 0


def cmd_campaign_list(args: argparse.Namespace) -> int:
    with closing(_db(args)) as db:
        found = web_campaigns.list_campaigns(db)
    for c in found:
        budget = f"{c.issued}/{c.budget}" if c.budget else f"{c.issued}/-"
        print(f"{c.campaign_id}  {c.kind.value}  {c.name}  issued {budget}")
    return 0


def cmd_operator_add(args: argparse.Namespace) -> int:
    from hq.web.operators import Role, add_operator

    # the password from standard input, never argv (ps shows a command line to every user)
    if sys.stdin.isatty():
        import getpass

        password = getpass.getpass(f"password for {args.name}: ")
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    with closing(_db(args)) as db:
        add_operator(db, args.name, Role(args.role), args.store, password)
    where = f" of store {args.store}" if args.store else ""
    print(f"operator {args.name}: {args.role}{where}")
    return 0


def cmd_dashboard_rebuild(args: argparse.Namespace) -> int:
    from hq.reports.aggregates import rebuild

    with closing(_db(args)) as db:
        counted = rebuild(db)
    print(f"dashboard aggregates rebuilt from {counted} events")
    return 0


def _db_arguments(sp: argparse.ArgumentParser, db_help: str) -> None:
    sp.add_argument("--db", help=db_help + f"; with a password: {DB_URL_ENV} or --db-url-file")
    sp.add_argument("--db-url-file", help="file holding the database URL")


def build_parser() -> argparse.ArgumentParser:
    """The ``edge-hq`` argument parser."""
    p = argparse.ArgumentParser(prog="edge-hq", description="store-edge HQ tool")
    p.add_argument("--home", type=Path, default=None,
                   help="HQ home folder (default $EDGE_HQ_HOME or ~/.store-edge-hq)")
    sub = p.add_subparsers(dest="command", required=True)
    sp = sub.add_parser("keygen", help="make an HQ signing key")
    sp.add_argument("--key-id", required=True)
    sp.add_argument("--purposes", default="coupon,pickup,config")
    sp.add_argument("--not-after", help="expiry (Unix, ISO 8601, +365d)")
    sp.set_defaults(func=cmd_keygen)
    sp = sub.add_parser("trust", help="print HQ public keys as a box's trust list")
    sp.set_defaults(func=cmd_trust)
    sp = sub.add_parser("sign-trust", help="sign the set of trusted keys with the trust root "
                                           "(push-config then carries it to the boxes)")
    sp.add_argument("--keys", type=Path, help="the set to sign, as `trust` prints it "
                                              "(default: every key in this HQ home)")
    sp.add_argument("--key-id", help="trust-root key (default: newest)")
    sp.add_argument("--version", type=int, help="explicit version (default: the last + 1)")
    sp.add_argument("--out", type=Path, help="where to write it (default HOME/trust.json)")
    sp.set_defaults(func=cmd_sign_trust)
    sp = sub.add_parser("register-device", help="record a box's public key")
    sp.add_argument("--device", required=True)
    sp.add_argument("--store", required=True)
    sp.add_argument("--public-key", required=True)
    sp.set_defaults(func=cmd_register)
    sp = sub.add_parser("broker-auth", help="mosquitto password file and ACL for the "
                                            "registered devices (docs/security.md)")
    sp.add_argument("--out", type=Path, required=True, help="folder for passwords and acl")
    sp.add_argument("--passwords", type=Path, required=True,
                    help="JSON file {user: password} for HQ's users and every device "
                         "not given its password at enrolment")
    sp.add_argument("--topic-root", default="se")
    sp.add_argument("--broker-pid-file", type=Path,
                    help="mosquitto's pid_file: send it SIGHUP to reload the files")
    sp.set_defaults(func=cmd_broker_auth)
    sp = sub.add_parser("verify-card", help="check a packaging-card URL as the landing page does")
    sp.add_argument("url")
    sp.add_argument("--json", action="store_true")
    sp.set_defaults(func=cmd_verify_card)

    issue = sub.add_parser("issue", help="issue a signed code").add_subparsers(
        dest="kind", required=True)
    for name in ("coupon", "pickup"):
        sp = issue.add_parser(name)
        sp.add_argument("--key-id", help="signing key (default: newest for this purpose)")
        sp.add_argument("--png", help="also write the QR code to this PNG file")
        sp.add_argument("--json", action="store_true")
        if name == "coupon":
            sp.add_argument("--id", required=True, help="coupon id")
            sp.add_argument("--campaign", required=True)
            sp.add_argument("--benefit", type=_benefit, required=True,
                            help="free:ITEM[:COUNT] | percent:95 | off:500 (fen)")
            sp.add_argument("--channel", choices=sorted(CHANNELS), default="livestream")
            sp.add_argument("--from", dest="valid_from", type=_time, default=_time("now"))
            sp.add_argument("--until", dest="valid_until", type=_time, default=_time("+30d"))
            sp.add_argument("--stores", default="all", help="comma-separated store ids, or all")
            sp.add_argument("--max-uses", type=int, default=1)
            _db_arguments(sp, "HQ database recording what was issued (default sqlite in "
                              "the HQ home)")
            sp.set_defaults(func=cmd_issue_coupon)
        else:
            sp.add_argument("--order", required=True)
            sp.add_argument("--store", required=True)
            sp.add_argument("--number", help="short pickup number, 3-8 digits (default: 6 "
                                              "random digits, printed on stderr)")
            sp.add_argument("--window-start", type=_time, default=_time("now"))
            sp.add_argument("--window-end", type=_time, default=_time("+4h"))
            sp.add_argument("--items", default="")
            sp.add_argument("--customer", default="")
            sp.set_defaults(func=cmd_issue_pickup)

    db_help = "sqlite:///PATH or postgresql://... (default sqlite in the HQ home)"
    for name, func in (("push-config", cmd_push_config), ("push-orders", cmd_push_orders)):
        sp = sub.add_parser(name, help=f"sign and publish a store's {name[5:]} (JSON or TOML)")
        sp.add_argument("file", type=Path)
        sp.add_argument("--store", required=True)
        sp.add_argument("--key-id", help=f"HQ {'config' if name == 'push-config' else 'data'}"
                                         " key (default: newest)")
        _db_arguments(sp, db_help)
        if name == "push-config":
            sp.add_argument("--version", type=int, help="explicit version (default: next)")
        add_arguments(sp)
        sp.set_defaults(func=func)
    sp = sub.add_parser("ingest", help="store events from the broker (shared subscription)")
    _db_arguments(sp, db_help)
    sp.add_argument("--group", default=DEFAULT_GROUP, help="shared-subscription group")
    sp.add_argument("--client-id", help="stable per worker (its session lives at the broker)")
    sp.add_argument("--session-expiry", type=int, default=DEFAULT_SESSION_EXPIRY_S,
                    help="seconds the broker keeps this worker's session (default a week)")
    sp.add_argument("--key-id", help="HQ data key to sign fan-out with (default: newest)")
    sp.add_argument("--no-fanout", action="store_true",
                    help="do not send fan-out (exactly one worker per HQ sends it; every "
                         "worker records it)")
    add_arguments(sp)
    sp.set_defaults(func=cmd_ingest)
    sp = sub.add_parser("enrol", help="an enrolment bundle (file and QR) for a new box")
    sp.add_argument("--store", required=True)
    sp.add_argument("--out", type=Path, required=True, help="bundle file (never overwritten)")
    sp.add_argument("--name", default="", help="the store's name")
    sp.add_argument("--ttl", type=float, default=7 * 86400,
                    help="seconds the token stays valid (default a week)")
    add_arguments(sp)
    _broker_auth_arguments(sp)
    sp.set_defaults(func=cmd_enrol)
    sp = sub.add_parser("enrol-serve", help="answer boxes' enrolment requests over MQTT")
    add_arguments(sp)
    _broker_auth_arguments(sp)
    sp.set_defaults(func=cmd_enrol_serve)
    sp = sub.add_parser("report", help="per-store figures from the HQ database")
    sp.add_argument("what", nargs="?", choices=["stores", "workshops"], default="stores",
                    help="stores (default) or workshops: sign-ups, check-ins, no-shows")
    _db_arguments(sp, db_help)
    sp.add_argument("--since", type=_time, help="only events from then (Unix, ISO, -7d)")
    sp.add_argument("--json", action="store_true")
    sp.set_defaults(func=cmd_report)

    sp = sub.add_parser("web", help="serve the customer pages (card landing, claims, coupons)")
    sp.add_argument("--listen", default="127.0.0.1:8080", help="HOST:PORT")
    _db_arguments(sp, db_help)
    sp.add_argument("--card-days", type=int, default=30,
                    help="a card can be claimed this many days after printing")
    sp.add_argument("--check-limit", type=int, default=60,
                    help="card and campaign page views per IP and per customer a minute")
    sp.add_argument("--claim-limit", type=int, default=10,
                    help="claims per IP and per customer a minute")
    sp.add_argument("--secure-cookies", action="store_true", help="behind HTTPS")
    sp.set_defaults(func=cmd_web)
    store = sub.add_parser("store", help="HQ's store registry (customer pages and order "
                           "assignment read it)"
                           ).add_subparsers(dest="action", required=True)
    sp = store.add_parser("set", help="add or replace a store")
    sp.add_argument("--id", required=True)
    sp.add_argument("--name", required=True)
    sp.add_argument("--address", default="")
    sp.add_argument("--lat", type=float)
    sp.add_argument("--lon", type=float)
    sp.add_argument("--join-url", default="", help="the store group's join link (WeCom "
                    "channel code: state=STORE is added)")
    sp.add_argument("--hours", help="opening hours for assigned pickups: 07:00-21:00 every "
                    "day, or seven comma-separated, Monday first, 'closed' for none "
                    "(default: as before)")
    sp.add_argument("--pickup-per-slot", type=int, help="assigned pickups per one-hour slot "
                    "(default: as before, else 0)")
    sp.set_defaults(func=cmd_store_set)
    sp = store.add_parser("import", help="add or replace the stores of a registry file "
                          "(JSON or TOML, docs/hq.md)")
    sp.add_argument("file", type=Path)
    sp.set_defaults(func=cmd_store_import)
    sp = store.add_parser("list")
    sp.add_argument("--json", action="store_true")
    sp.set_defaults(func=cmd_store_list)
    sp = store.add_parser("remove")
    sp.add_argument("--id", required=True)
    sp.set_defaults(func=cmd_store_remove)
    for sp in store.choices.values():
        _db_arguments(sp, db_help)
    orders = sub.add_parser("orders", help="orders that reach HQ without a store"
                            ).add_subparsers(dest="action", required=True)
    sp = orders.add_parser("assign", help="assign JSON-lines orders to the nearest open store "
                           "with a place, issue their pickup codes and push them")
    sp.add_argument("file", type=Path)
    sp.add_argument("--max-km", type=float, default=15.0,
                    help="no store further than this (default 15 km)")
    sp.add_argument("--key-id", help="HQ data key the pushes are signed with (default: newest)")
    sp.add_argument("--pickup-key-id", help="HQ pickup key for the codes (default: newest)")
    _db_arguments(sp, db_help)
    add_arguments(sp)
    sp.set_defaults(func=cmd_orders_assign)
    camp = sub.add_parser("campaign", help="campaigns the customer pages hand out"
                          ).add_subparsers(dest="action", required=True)
    sp = camp.add_parser("create", help="define a campaign; a link campaign prints its link "
                         "and QR")
    sp.add_argument("--id", required=True)
    sp.add_argument("--kind", choices=[k.value for k in web_campaigns.CampaignKind],
                    default="link", help="link (livestream, group) or card (welcome gift)")
    sp.add_argument("--name", default="")
    sp.add_argument("--benefit", type=_benefit, required=True,
                    help="free:ITEM[:COUNT] | percent:95 | off:500 (fen)")
    sp.add_argument("--from", dest="starts", type=_time, default=_time("now"))
    sp.add_argument("--until", dest="ends", type=_time, default=_time("+30d"))
    sp.add_argument("--coupon-days", type=int, default=30, help="each coupon's validity")
    sp.add_argument("--stores", default="all", help="comma-separated store ids, or all")
    sp.add_argument("--claim-store-only", action="store_true",
                    help="a card's coupon is good only at the store that printed the card")
    sp.add_argument("--per-customer", type=int, default=1, help="0: no limit")
    sp.add_argument("--budget", type=int, default=0, help="coupons in all (0: no limit)")
    sp.add_argument("--base-url", default="http://127.0.0.1:8080/",
                    help="where edge-hq web is reached")
    sp.add_argument("--png", help="also write the link's QR to this PNG file")
    sp.set_defaults(func=cmd_campaign_create)
    sp = camp.add_parser("list")
    sp.set_defaults(func=cmd_campaign_list)
    for sp in camp.choices.values():
        _db_arguments(sp, db_help)
    shop = sub.add_parser("workshop", help="workshop sessions the customer pages sign up for"
                          ).add_subparsers(dest="action", required=True)
    sp = shop.add_parser("add", help="define a session; prints its sign-up link and QR")
    sp.add_argument("--id", help="session id (default: W + date + 4 random characters)")
    sp.add_argument("--store", required=True)
    sp.add_argument("--title", required=True)
    sp.add_argument("--start", dest="starts", type=_time, required=True)
    sp.add_argument("--end", dest="ends", type=_time, required=True)
    sp.add_argument("--capacity", type=int, required=True, help="seats (people)")
    sp.add_argument("--party-max", type=int, default=4, help="people per sign-up")
    sp.add_argument("--note", default="")
    sp.add_argument("--early-min", type=int, default=web_workshops.DEFAULT_EARLY_S // 60,
                    help="check-in opens this many minutes before the start")
    sp.add_argument("--late-min", type=int, default=web_workshops.DEFAULT_LATE_S // 60,
                    help="check-in closes this many minutes after the end")
    sp.add_argument("--root", default=DEFAULT_ROOT, help="MQTT topic root of the store's box")
    sp.set_defaults(func=cmd_workshop_add)
    sp = shop.add_parser("cancel", help="call a session off: its tickets are refused")
    sp.add_argument("--id", required=True)
    sp.add_argument("--root", default=DEFAULT_ROOT, help="MQTT topic root of the store's box")
    sp.set_defaults(func=cmd_workshop_cancel)
    sp = shop.add_parser("list")
    sp.add_argument("--store")
    sp.set_defaults(func=cmd_workshop_list)
    for sp in shop.choices.values():
        sp.add_argument("--base-url", default="http://127.0.0.1:8080/",
                        help="where edge-hq web is reached")
        _db_arguments(sp, db_help)
    ops = sub.add_parser("operator", help="who may sign in to the dashboard (/hq/)"
                         ).add_subparsers(dest="action", required=True)
    sp = ops.add_parser("add", help="add or replace an operator; the password is read from "
                        "standard input")
    sp.add_argument("name")
    sp.add_argument("--role", choices=["admin", "manager"], required=True,
                    help="admin: every store; manager: --store only")
    sp.add_argument("--store", help="a manager's store id")
    sp.set_defaults(func=cmd_operator_add)
    _db_arguments(sp, db_help)
    dash = sub.add_parser("dashboard", help="the dashboard's aggregates"
                          ).add_subparsers(dest="action", required=True)
    sp = dash.add_parser("rebuild", help="recount the aggregates from every stored event")
    sp.set_defaults(func=cmd_dashboard_rebuild)
    _db_arguments(sp, db_help)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``edge-hq`` command."""
    args = build_parser().parse_args(argv)
    args.home = args.home or keystore.default_home()
    try:
        return int(args.func(args))
    except (keystore.KeystoreError, ValueError, BrokerError, DbError, OSError) as exc:
        print(f"edge-hq: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
