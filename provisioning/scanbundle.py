"""``edge provision --scan SOURCE``: the enrolment bundle read from its QR code.

The installer shows the box the QR ``edge-hq enrol`` made (``BUNDLE.png``, on paper or a
phone) with the box's own scanner: a serial one (``/dev/ttyACM0``, any pyserial URL) or
the camera (``camera:0``, ``camera:/dev/video0``, a stream or video file), read through
the same drivers the daemon uses (``drivers.scanner_serial``, ``drivers.camera`` with
zxing-cpp). The first code that is a bundle wins; anything else scanned meanwhile (a
coupon, a torn code) is reported and the wait goes on, until ``timeout``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Final

from drivers.camera import CameraConfig, CameraScanner, Symbology
from drivers.scan import DeviceState, DeviceStatus, DropReason, ScanInput
from drivers.scanner_serial import SerialScanner, SerialScannerConfig
from provisioning.enrol import ProvisionError, parse_bundle

CAMERA_PREFIX: Final = "camera:"
SERIAL_PREFIX: Final = "serial:"
# A bundle with HQ's CA and keys is 1-3 kB of JSON on one scanned line.
MAX_BUNDLE_LINE: Final = 16384


def serial_port(source: str) -> str | None:
    """The serial port ``source`` names, or ``None`` for a camera."""
    if source.startswith(CAMERA_PREFIX):
        return None
    return source.removeprefix(SERIAL_PREFIX)


async def scan_bundle(source: str, timeout: float,
                      note: Callable[[str], None] = lambda _m: None) -> dict[str, Any]:
    """Read codes from ``source`` until one is an enrolment bundle; that bundle.

    ``note`` hears what happens meanwhile (the device's state, a code that is not a bundle).

    Raises:
        ProvisionError: ``scan_timeout`` when no bundle was read within ``timeout`` seconds
            (the message says what was seen), ``bad_scanner`` for an unusable source.
    """
    loop = asyncio.get_running_loop()
    found: asyncio.Future[dict[str, Any]] = loop.create_future()
    seen: list[str] = []

    def on_scan(scan: ScanInput) -> None:
        try:
            bundle = parse_bundle(scan.text, "the scanned code")
        except ProvisionError:
            seen.append("a code that is not an enrolment bundle")
            note(f"{scan.source}: not an enrolment QR ({scan.text[:24]!r}...): "
                 "scan the one HQ made")
            return
        if not found.done():
            found.set_result(bundle)

    def on_state(status: DeviceStatus) -> None:
        if status.state in (DeviceState.ABSENT, DeviceState.FAILED):
            seen.append(f"{status.name} {status.state.value}: {status.detail}")
        note(f"{status.name}: {status.state.value} {status.detail}".rstrip())

    def on_drop(reason: DropReason, _preview: bytes) -> None:
        seen.append(f"a garbled scan ({reason.value})")
        note(f"scan dropped: {reason.describe()}")

    port = serial_port(source)
    try:
        scanner: SerialScanner | CameraScanner
        if port is not None:
            scanner = SerialScanner(SerialScannerConfig(port, max_line=MAX_BUNDLE_LINE,
                                                        name="scanner"),
                                    on_scan, on_state, on_drop)
        else:
            # Full-size decoding: a bundle's QR is dense (version 20-30), downscaling loses it.
            scanner = CameraScanner(CameraConfig(source.removeprefix(CAMERA_PREFIX),
                                                 symbologies=(Symbology.QR,), decode_width=0,
                                                 name="camera"), on_scan, on_state)
    except ValueError as exc:
        raise ProvisionError("bad_scanner", f"--scan {source}: {exc}") from None
    task = asyncio.create_task(scanner.run(), name=f"scan-{source}")
    try:
        async with asyncio.timeout(timeout):
            return await found
    except TimeoutError:
        what = "; ".join(dict.fromkeys(seen)) or "nothing"
        raise ProvisionError("scan_timeout", f"no enrolment QR read from {source} within "
                                             f"{timeout:.0f} s (seen: {what})") from None
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

