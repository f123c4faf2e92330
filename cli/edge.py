"""``edge``: the store box's command line.

Exit status: 0 accepted / done, 1 rejected / refused, 2 bad usage or configuration.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from edge import box as boxmod
from edge import i18n
from edge.box import Box
from edge.cards import CardError
from edge.config import DEFAULT_CARD_URL_BASE, ConfigError
from edge.keys import parse_trust
from edge.ledger import LedgerError
from edge.orders import OrderError, learn_pickup_code, orders
from edge.rules import VoidRefused
from edge.verdict import Verdict

EXIT_OK, EXIT_REJECTED, EXIT_USAGE = 0, 1, 2


def _print_json(data: Any) -> None:
    print(json.dumps(data, ensure_ascii=False, indent=None, separators=(",", ":")))


def _print_verdict(v: Verdict, as_json: bool, lang: str) -> int:
    if as_json:
        _print_json(v.to_dict())
    else:
        head, what, advice = i18n.verdict_lines(v, lang)
        print(f"{head}: {what}")
        if advice:
            print(advice)
        if not v.clock_trusted:
            print(i18n.t("clock_unsure", lang))
        if v.decision_id is not None:
            print(f"decision {v.decision_id}")
    return EXIT_OK if v.accepted else EXIT_REJECTED


def _code_arg(code: str) -> str:
    return sys.stdin.readline().rstrip("\r\n") if code == "-" else code


def cmd_init(args: argparse.Namespace) -> int:
    trust = []
    if args.trust:
        try:
            trust = parse_trust(json.loads(Path(args.trust).read_text()))
        except (OSError, ValueError) as exc:
            raise ConfigError(f"trust file {args.trust}: {exc}") from None
    boxmod.init_home(args.home, args.store, args.device, trust, args.name, args.url_base)
    box = Box.open(args.home)
    try:
        info = {"home": str(args.home), "store": args.store, "device": args.device,
                "public_key": box.device_key.public_key.hex(), "trusted_keys": len(trust)}
    finally:
        box.close()
    if args.json:
        _print_json(info)
    else:
        print(f"box home {args.home}: store {args.store}, device {args.device}, "
              f"{len(trust)} trusted HQ keys")
        print(f"device public key: {info['public_key']}")
    return EXIT_OK


def cmd_check(args: argparse.Namespace, box: Box) -> int:
    return _print_verdict(box.counter.check(_code_arg(args.code)), args.json, args.lang)


def cmd_redeem(args: argparse.Namespace, box: Box) -> int:
    verdict = box.counter.redeem(_code_arg(args.code), till=args.till, source="cli")
    return _print_verdict(verdict, args.json, args.lang)


def cmd_void(args: argparse.Namespace, box: Box) -> int:
    try:
        result = box.counter.void(args.decision, args.reason, till=args.till)
    except VoidRefused as exc:
        if args.json:
            _print_json({"voided": False, "refused": exc.code, "message": str(exc)})
        else:
            print(f"void refused: {exc}", file=sys.stderr)
        return EXIT_REJECTED
    if args.json:
        _print_json({"voided": True, **result})
    else:
        print(f"voided decision {result['decision_id']} ({result['code_id']})")
    return EXIT_OK


def cmd_events(args: argparse.Namespace, box: Box) -> int:
    events = box.ledger.pending_events(limit=args.limit)
    if args.json:
        _print_json({"backlog": box.ledger.backlog(),
                     "unconfirmed": box.ledger.unconfirmed(),
                     "events": [e.to_wire(box.identity.store_id, box.identity.device_id)
                                for e in events]})
    else:
        print(f"{box.ledger.backlog()} events waiting to sync, "
              f"{box.ledger.unconfirmed()} sent awaiting HQ's confirmation")
        for e in events:
            body = json.dumps(e.body, ensure_ascii=False)[:100]
            print(f"{e.seq:>8} {i18n.when(e.at)} {e.type:<16} {body}")
    return EXIT_OK


def cmd_card(args: argparse.Namespace, box: Box) -> int:
    card = box.issue_card(args.receipt)
    if args.json:
        _print_json({"serial": card.serial, "url": card.url, "issued_at": card.issued_at,
                     "clock_trusted": card.clock_trusted})
    else:
        print(card.url)
    return EXIT_OK


def cmd_orders(args: argparse.Namespace, box: Box) -> int:
    if args.action == "import":
        for code in args.codes:
            order = learn_pickup_code(box.ledger, box.identity.store_id, _code_arg(code))
            if not args.json:
                print(f"order {order.order_id} number {order.number}: {order.items}")
        return EXIT_OK
    now = time.time()
    start, end = (0.0, float("inf")) if args.all else (now - 86400, now + 86400)
    found = orders(box.ledger, start, end, box.clock().now)
    if args.json:
        _print_json(found)
    else:
        for o in found:
            print(f"{o['number']:>6} {o['status']:<9} {i18n.when(o['window_start'])}-"
                  f"{i18n.when(o['window_end'])[-5:]} {o['customer']} {o['items']}")
    return EXIT_OK


def cmd_run(args: argparse.Namespace) -> int:
    from edged.daemon import run_daemon

    if args.simulate:
        # The demo home (keys, sample codes) is the command line's to make, not the daemon's:
        # it needs HQ's issuing, which the daemon must not import.
        from provisioning.dev import ensure_demo_home

        try:
            if ensure_demo_home(args.home):
                print(f"demo home created in {args.home} (sample codes in "
                      f"{args.home}/samples.txt)", flush=True)
        except ConfigError as exc:
            print(f"edge run: {exc}", file=sys.stderr)
            return 2

    overrides = {
        "api": {"socket": args.socket, "group": args.group},
        "scanner": {"port": args.scanner, "baud": args.baud, "till": args.till},
        "camera": {"source": args.camera},
        "printer": {"url": args.printer, "paper": args.paper, "encoding": args.encoding},
    }
    return run_daemon(args.home, overrides, args.simulate, args.log_level)


def _api(args: argparse.Namespace, op: str, **req: Any) -> dict[str, Any]:
    """One local API request to the running daemon (raises DaemonUnavailable if none)."""
    import asyncio

    from edged import localapi

    path = args.socket or localapi.socket_path(args.home)
    return asyncio.run(localapi.call(path, op, **req))


def cmd_status(args: argparse.Namespace) -> int:
    from edged.localapi import ApiError

    try:
        st = _api(args, "status")
    except ApiError as exc:
        print(f"edge status: {exc}", file=sys.stderr)
        return EXIT_REJECTED
    if args.json:
        _print_json(st)
        return EXIT_OK
    online = "online" if st.get("online") else "offline"
    print(f"{st['store_id']} {st['store_name']} / {st['device_id']}  {online}, "
          f"{st['backlog']} events to sync, {st.get('unconfirmed', 0)} sent awaiting HQ's "
          f"confirmation, clock {'ok' if st['clock_trusted'] else 'UNSURE'}")
    for part in ("scanner", "camera", "printer", "sync"):
        p = st.get(part) or {}
        extra = f", {p['jobs_waiting']} jobs waiting" if part == "printer" else ""
        print(f"  {part:<8} {p.get('state', '?'):<9} {p.get('detail', '')}{extra}")
    print(f"  software {st['software_version']}, config v{st['config_version']}")
    return EXIT_OK


def cmd_scan(args: argparse.Namespace) -> int:
    from edged.localapi import ApiError, DaemonUnavailable

    code = _code_arg(args.code)
    if args.party is not None and not 1 <= args.party <= 100:
        print(f"edge scan: --party must be 1-100, not {args.party}", file=sys.stderr)
        return EXIT_USAGE
    try:
        extra = {} if args.party is None else {"party": args.party}
        verdict = Verdict.from_dict(_api(args, "scan", code=code, till=args.till,
                                         source="cli", **extra))
    except DaemonUnavailable as exc:
        print(f"edge scan: daemon not running ({exc}); deciding on the ledger directly",
              file=sys.stderr)
        box = Box.open(args.home)
        try:
            verdict = box.counter.redeem(code, till=args.till, source="cli", party=args.party)
        finally:
            box.close()
    except ApiError as exc:
        print(f"edge scan: {exc}", file=sys.stderr)
        return EXIT_USAGE
    return _print_verdict(verdict, args.json, args.lang)


def cmd_print_card(args: argparse.Namespace) -> int:
    from edged.localapi import ApiError

    try:
        result = _api(args, "print_card", receipt_ref=args.receipt)
    except ApiError as exc:
        print(f"edge print-card: {exc}", file=sys.stderr)
        return EXIT_REJECTED
    if args.json:
        _print_json(result)
    else:
        print(f"card {result['serial']} queued as job {result['job_id']}: {result['url']}")
    return EXIT_OK


def cmd_preview(args: argparse.Namespace) -> int:
    # Drivers and PIL load only for this command: the other commands stay light.
    from drivers.escpos_decode import DecodeError, decode, to_png
    from drivers.printer_profile import PAPER

    try:
        stream = Path(args.file).read_bytes()
        image = to_png(stream, args.encoding, PAPER[args.paper][0], args.last)
        image.save(args.png)
    except (OSError, DecodeError, LookupError) as exc:
        print(f"edge preview: {exc}", file=sys.stderr)
        return EXIT_USAGE
    decoded = decode(stream, args.encoding, strict=False)
    info = {"png": str(args.png), "bytes": len(stream), "lines": len(decoded.lines),
            "cuts": decoded.cuts, "qr": [q.data for q in decoded.qr_codes],
            "images": len(decoded.rasters), "height_mm": round(image.height / 8, 1)}
    if args.json:
        _print_json(info)
    else:
        print(f"{args.png}: {info['cuts']} slips, {info['lines']} text lines, "
              f"{info['images']} images, {info['height_mm']} mm of paper")
    return EXIT_OK
def cmd_sync(args: argparse.Namespace, box: Box) -> int:
    from sync import runner  # the sync service is glue around the box, loaded only here
    from sync.settings import SettingsError
    try:
        # The stop watchdog ends the process: only when this command is the process
        # (argv from the command line), never for a caller running main([...]) inside its own.
        return runner.main(box.config, args.host, args.port, args.root, args.until_drained,
                           args.timeout, args.json, args.verbose, args.until_confirmed,
                           runner.STOP_GRACE_S if args.own_process else None)
    except SettingsError as exc:
        raise ConfigError(str(exc)) from None


def cmd_doctor(args: argparse.Namespace) -> int:
    from provisioning import doctor  # probes devices and the broker: loaded only here

    findings = doctor.run(args.home)
    if args.json:
        _print_json({"ok": not doctor.failed(findings),
                     "checks": [f.to_dict(args.lang) for f in findings]})
    else:
        print("\n".join(doctor.report_lines(findings, args.lang)))
    return EXIT_REJECTED if doctor.failed(findings) else EXIT_OK


def cmd_backup(args: argparse.Namespace) -> int:
    from provisioning import backup

    try:
        manifest = backup.backup(args.home, args.file)
    except backup.BackupError as exc:
        print(f"edge backup: {exc}", file=sys.stderr)
        return EXIT_REJECTED
    if args.json:
        _print_json({"file": str(args.file), **backup.describe(manifest)})
    else:
        print(f"{args.file}: store {manifest.store}, device {manifest.device}, events up to "
              f"seq {manifest.last_seq} (mode 0600: it holds the device key)")
    return EXIT_OK


def cmd_restore(args: argparse.Namespace) -> int:
    from provisioning import backup

    try:
        manifest, next_seq = backup.restore(args.file, args.home, args.hq_last_seq)
    except backup.BackupError as exc:
        print(f"edge restore: {exc}", file=sys.stderr)
        return EXIT_REJECTED
    if args.json:
        _print_json({"home": str(args.home), "next_seq": next_seq,
                     **backup.describe(manifest)})
    else:
        print(f"restored store {manifest.store}, device {manifest.device} into {args.home}; "
              f"the backup had events up to seq {manifest.last_seq}, HQ up to "
              f"{args.hq_last_seq}: the next event is seq {next_seq}")
    return EXIT_OK


def cmd_provision(args: argparse.Namespace) -> int:
    from provisioning.enrol import ProvisionError, provision, read_bundle

    if args.factory_reset:
        return _factory_reset(args)
    if (args.bundle is None) == (args.scan is None):
        print("edge provision: give a bundle file or --scan SOURCE (one of them)",
              file=sys.stderr)
        return EXIT_USAGE
    if not args.device:
        print("edge provision: --device is required (this box's id, e.g. BJ001-T1)",
              file=sys.stderr)
        return EXIT_USAGE
    try:
        if args.scan is not None:
            bundle = _scan_bundle(args)
            if args.scanner is None:
                from provisioning.scanbundle import serial_port
                args.scanner = serial_port(args.scan)  # the scanner that read it is the box's
        else:
            bundle = read_bundle(args.bundle)
        done = provision(bundle, args.home, args.device, args.timeout, args.printer,
                         args.scanner)
    except ProvisionError as exc:
        words = i18n.t(f"provision.{exc.code}", args.lang, detail=exc) \
            if f"provision.{exc.code}" in i18n.CATALOGUE else str(exc)
        if args.json:
            _print_json({"enrolled": False, "code": exc.code, "message": str(exc)})
        else:
            print(f"edge provision: {words} ({exc})", file=sys.stderr)
        return EXIT_REJECTED
    from provisioning.devicecheck import check_and_print  # drivers load only here

    devices = check_and_print(args.home)
    if args.json:
        _print_json({"enrolled": True, "already": done.already, "store": done.store,
                     "device": done.device, "public_key": done.public_key,
                     "credentials": done.credentials, "test_card": devices.card_printed,
                     "devices": [f.to_dict(args.lang) for f in devices.findings]})
    else:
        print(i18n.t("provision.already" if done.already else "provision.ok", args.lang,
                     store=done.store, device=done.device))
        print("\n".join(devices.lines(args.lang)))
    return EXIT_OK


def _scan_bundle(args: argparse.Namespace) -> dict[str, Any]:
    import asyncio

    from provisioning.scanbundle import scan_bundle

    print(i18n.t("provision.scan_now", args.lang, source=args.scan, s=round(args.scan_timeout)),
          file=sys.stderr)
    return asyncio.run(scan_bundle(args.scan, args.scan_timeout,
                                   lambda note: print(f"  {note}", file=sys.stderr)))


def _factory_reset(args: argparse.Namespace) -> int:
    from provisioning.reset import ResetRefused, factory_reset, inspect

    def refused(exc: ResetRefused) -> int:
        key = f"reset.{exc.code}"
        words = i18n.t(key, args.lang, n=exc.unsent) if key in i18n.CATALOGUE else str(exc)
        if args.json:
            _print_json({"reset": False, "code": exc.code, "unsent": exc.unsent,
                         "message": str(exc)})
        else:
            print(f"edge provision: {words} ({exc})", file=sys.stderr)
        return EXIT_REJECTED

    try:
        state = inspect(args.home)
        if state.at_risk and args.discard_unsent:
            print(i18n.t("reset.warn_discard", args.lang, n=state.at_risk), file=sys.stderr)
        print(i18n.t("reset.prompt", args.lang, store=state.store, device=state.device),
              end="", file=sys.stderr, flush=True)
        typed = sys.stdin.readline()  # typed by a person: never an option on the command line
        state, removed = factory_reset(args.home, typed, args.discard_unsent)
    except ResetRefused as exc:
        return refused(exc)
    if args.json:
        _print_json({"reset": True, "store": state.store, "device": state.device,
                     "discarded": state.at_risk, "removed": removed})
    else:
        print(i18n.t("reset.done", args.lang, store=state.store))
    return EXIT_OK


def cmd_ui(args: argparse.Namespace) -> int:
    from edged.localapi import socket_path
    from ui.app import CashierApp  # Textual loads only when the cashier UI is asked for

    CashierApp(args.socket or socket_path(args.home), lang=args.lang, till=args.till).run()
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    """The ``edge`` argument parser."""
    p = argparse.ArgumentParser(prog="edge", description="store-edge box commands")
    p.add_argument("--home", type=Path, default=None,
                   help="box home folder (default $EDGE_HOME, /var/lib/store-edge for root)")
    p.add_argument("--lang", choices=i18n.LANGS, default=i18n.DEFAULT_LANG)
    sub = p.add_subparsers(dest="command", required=True)

    def command(name: str, help_: str) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help_)
        sp.add_argument("--json", action="store_true", help="machine-readable output")
        return sp

    sp = command("init", "create a box home (development and demo)")
    sp.add_argument("--store", required=True)
    sp.add_argument("--device", required=True)
    sp.add_argument("--name", default="")
    sp.add_argument("--trust", help="JSON file of trusted HQ public keys (edge-hq trust)")
    sp.add_argument("--url-base", default=DEFAULT_CARD_URL_BASE)
    sp = command("check", "decide on a code without recording anything")
    sp.add_argument("code", help="the code, or - to read one line from stdin")
    sp = command("redeem", "decide on a code and record the decision")
    sp.add_argument("code", help="the code, a pickup number, or - for stdin")
    sp.add_argument("--till", default="")
    sp = command("void", "void an accepted redemption")
    sp.add_argument("decision", type=int, help="decision number shown at redemption")
    sp.add_argument("--reason", required=True)
    sp.add_argument("--till", default="")
    sp = command("events", "events waiting to sync to HQ")
    sp.add_argument("--limit", type=int, default=20)
    sp = command("card", "mint a packaging card and print its URL")
    sp.add_argument("--receipt", default="", help="receipt / transaction reference")
    sp = command("orders", "pickup orders known to this store")
    sp.add_argument("action", choices=("list", "import"))
    sp.add_argument("codes", nargs="*", help="pickup codes to import")
    sp.add_argument("--all", action="store_true", help="every order, not just around today")
    sp = command("run", "run the store daemon (scanner, printer, local API)")
    sp.add_argument("--simulate", action="store_true",
                    help="pty scanner at <home>/run/scanner, file printer; demo home if empty")
    sp.add_argument("--socket", type=Path, help="local API socket (api.socket)")
    sp.add_argument("--group", help="group allowed on the socket (api.group)")
    sp.add_argument("--scanner", help="serial scanner port (scanner.port)")
    sp.add_argument("--baud", type=int, help="scanner.baud")
    sp.add_argument("--till", help="till label for device scans (scanner.till)")
    sp.add_argument("--camera", help="camera index, path or URL (camera.source)")
    sp.add_argument("--printer", help="printer URL (printer.url)")
    sp.add_argument("--paper", type=int, choices=(58, 80), help="printer.paper")
    sp.add_argument("--encoding", help="printer.encoding")
    sp.add_argument("--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING"))
    for name, help_ in (("status", "the running daemon's status"),
                        ("scan", "decide on a code through the daemon (or the ledger)"),
                        ("print-card", "print a packaging card through the daemon")):
        sp = command(name, help_)
        sp.add_argument("--socket", type=Path, help="local API socket")
        if name == "scan":
            sp.add_argument("code", help="the code, a pickup number, or - for stdin")
            sp.add_argument("--till", default="")
            sp.add_argument("--party", type=int, help="people checking in on a workshop "
                            "ticket (default: the ticket's party)")
        if name == "print-card":
            sp.add_argument("--receipt", default="", help="receipt / transaction reference")
    sp = command("preview", "render a (simulated) printer's ESC/POS output to a PNG of the paper")
    sp.add_argument("file", help="ESC/POS bytes, e.g. <home>/printer-sim.bin")
    sp.add_argument("--png", required=True, type=Path, help="where to write the picture")
    sp.add_argument("--encoding", default="gb18030", help="the printer's text encoding")
    sp.add_argument("--paper", type=int, choices=(58, 80), default=58)
    sp.add_argument("--last", type=int, default=0, help="only the last N slips")
    sp = command("sync", "run only the MQTT sync service (edge.toml [mqtt]) in the foreground")
    sp.add_argument("--host", help="broker host (overrides [mqtt] host)")
    sp.add_argument("--port", type=int, help="broker port")
    sp.add_argument("--root", help="topic root")
    sp.add_argument("--until-drained", action="store_true",
                    help="exit once online with nothing left to send")
    sp.add_argument("--until-confirmed", action="store_true",
                    help="exit once HQ has confirmed every event (nothing unsent or unconfirmed)")
    sp.add_argument("--timeout", type=float, help="give up after this many seconds (exit 1)")
    sp.add_argument("-v", "--verbose", action="store_true", help="log connection details")
    sp = command("ui", "the cashier's terminal (talks to the running daemon)")
    sp.add_argument("--till", default="", help="this till's name, recorded with each scan")
    sp.add_argument("--socket", type=Path, default=None, help="daemon socket (default in home)")
    sp.add_argument("--home", type=Path, default=argparse.SUPPRESS, help="as before the command")
    sp.add_argument("--lang", choices=i18n.LANGS, default=argparse.SUPPRESS)
    sp = command("backup", "copy the ledger (live), device key and config into one 0600 file")
    sp.add_argument("file", type=Path, help="the backup file to create (never overwritten)")
    sp = command("restore", "restore a backup into an empty home (a replacement box)")
    sp.add_argument("file", type=Path, help="a file made by edge backup")
    sp.add_argument("--hq-last-seq", type=int, required=True,
                    help="HQ's highest seq for this device (edge-hq report --json: "
                         "devices[].max_seq); new events are numbered after it")
    sp = command("provision", "join the store with a bundle from edge-hq enrol")
    sp.add_argument("bundle", type=Path, nargs="?", help="the enrolment bundle file")
    sp.add_argument("--scan", metavar="SOURCE",
                    help="read the bundle's QR instead: a serial scanner (/dev/ttyACM0) or "
                         "camera:N, camera:/dev/videoN")
    sp.add_argument("--scan-timeout", type=float, default=120.0,
                    help="seconds to wait for the QR (default %(default)s)")
    sp.add_argument("--device", help="this box's device id, e.g. BJ001-T1")
    sp.add_argument("--printer", help="a new box's [printer] url (tcp://..., usb:..., "
                                      "serial:...): checked with a test card")
    sp.add_argument("--scanner", help="a new box's serial scanner port (default: the --scan "
                                      "serial port)")
    sp.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for HQ")
    sp.add_argument("--factory-reset", action="store_true",
                    help="wipe keys and ledger (asks for the store id; refused while events "
                         "are not at HQ)")
    sp.add_argument("--discard-unsent", action="store_true",
                    help="with --factory-reset: go ahead although events are not at HQ")
    sp.add_argument("--lang", choices=i18n.LANGS, default=argparse.SUPPRESS)
    sp = command("doctor", "check this box (config, keys, clock, disk, ledger, devices, HQ link)")
    sp.add_argument("--lang", choices=i18n.LANGS, default=argparse.SUPPRESS)
    return p


# Commands that open no ledger themselves: the daemon, or its local API.
DAEMON_HANDLERS = {"run": cmd_run, "status": cmd_status, "scan": cmd_scan,
                   "print-card": cmd_print_card, "ui": cmd_ui, "doctor": cmd_doctor,
                   "backup": cmd_backup, "restore": cmd_restore, "provision": cmd_provision}
HANDLERS = {"check": cmd_check, "redeem": cmd_redeem, "void": cmd_void, "events": cmd_events,
            "card": cmd_card, "orders": cmd_orders, "sync": cmd_sync}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``edge`` command."""
    args = build_parser().parse_args(argv)
    args.own_process = argv is None  # the console script or python -m cli.edge
    args.home = args.home or boxmod.default_home()
    try:
        if args.command == "init":
            return cmd_init(args)
        if args.command in DAEMON_HANDLERS:
            return DAEMON_HANDLERS[args.command](args)
        if args.command == "preview":
            return cmd_preview(args)
        box = Box.open(args.home)
        try:
            return HANDLERS[args.command](args, box)
        finally:
            box.close()
    except (ConfigError, LedgerError, CardError, OrderError) as exc:
        print(f"edge: {exc}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
