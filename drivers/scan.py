"""What every scan source hands the daemon, and the one bridge from a reader thread to asyncio.

The serial scanner and the camera both read from blocking libraries (pyserial, OpenCV), so
each runs its device session in one worker thread started by :func:`run_in_thread`; the
worker calls ``post(fn, *args)`` and ``fn`` runs on the event loop thread, as pyserial's
``ReaderThread`` / ``LineReader`` hand lines over. Everything the daemon sees arrives through
three callbacks, always on the event loop thread:

* ``on_scan(ScanInput)``: a decoded code, with a source label;
* ``on_state(DeviceStatus)``: the device came, went, or failed (with a detail to show);
* ``on_drop(DropReason, preview)``: input that was read and thrown away, and why.

The keyboard-wedge scanner (the UI's input) reaches the same pipeline as
``ScanInput(text, source=KEYBOARD_SOURCE)``.

This module imports neither pyserial nor OpenCV.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import enum
import logging
import random
import threading
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, TypeVar

log = logging.getLogger(__name__)

KEYBOARD_SOURCE: Final = "keyboard"
PREVIEW_BYTES: Final = 32  # how much of a dropped input is kept for the log and the record


@dataclass(frozen=True, slots=True)
class ScanInput:
    """One scanned code, as text, and where it came from.

    ``source`` is ``serial:<port or URL>``, ``camera:<index, path or URL>`` or ``keyboard``.
    """

    text: str
    source: str


class DeviceState(enum.StrEnum):
    """Where a device is in its life: each driver reports every change."""

    ABSENT = "absent"  # nothing at the configured port or path (unplugged, not yet plugged)
    CONNECTING = "connecting"  # opening it now
    READY = "ready"  # open and reading
    FAILED = "failed"  # present but unusable (permission, I/O error, stream ended): retrying


@dataclass(slots=True)
class DeviceStatus:
    """A device's state with a human-readable detail (the error text, the port opened)."""

    name: str
    state: DeviceState
    detail: str = ""


class DropReason(enum.StrEnum):
    """Why input read from a device was not delivered as a scan."""

    TOO_LONG = "too_long"  # a frame over the configured bound; it was never buffered whole
    INVALID_TEXT = "invalid_text"  # bytes not valid in the configured encoding
    CONTROL_CHARS = "control_chars"  # control characters a code never holds: line noise
    EMPTY = "empty"  # nothing left after stripping prefix, suffix and symbology id
    UNFINISHED = "unfinished"  # the device went away in the middle of a frame

    def describe(self) -> str:
        """One English line for the log."""
        return _DROP_TEXT[self]


_DROP_TEXT: Final = {
    DropReason.TOO_LONG: "frame longer than the configured maximum",
    DropReason.INVALID_TEXT: "bytes are not valid text in the configured encoding",
    DropReason.CONTROL_CHARS: "control characters in the frame (line noise)",
    DropReason.EMPTY: "nothing left after stripping prefix, suffix and symbology identifier",
    DropReason.UNFINISHED: "the device went away in the middle of a frame",
}


@dataclass(frozen=True, slots=True)
class ScanDropped:
    """A dropped input, as the driver logs it: the reason, its size and its first bytes."""

    source: str
    reason: DropReason
    size: int
    preview: bytes

    def __str__(self) -> str:
        """The log line's text."""
        return f"{self.source}: dropped {self.size} bytes: {self.reason.describe()} " \
               f"(starts {self.preview!r})"


class ScannerError(Exception):
    """Base of every error the scan drivers raise."""


class ScannerConfigError(ScannerError, ValueError):
    """A scanner or camera setting is wrong; the message names the key and what it takes."""


_C = TypeVar("_C")


def config_from_mapping(cls: type[_C], section: Mapping[str, Any], where: str) -> _C:
    """Build a driver's config dataclass from a TOML table whose keys are its field names.

    Enum fields take their value (``eol = "crlf"``), tuple fields a TOML array, float
    fields an integer too. ``where`` names the table in messages (``[scanner]``).

    Raises:
        ScannerConfigError: an unknown key, a value of the wrong type, or a value the
            config class itself rejects (the message says which).
    """
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls!r} is not a dataclass")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(section) - known)
    if unknown:
        raise ScannerConfigError(f"{where}: unknown key(s) {', '.join(unknown)}; "
                                 f"known: {', '.join(sorted(known))}")
    values: dict[str, Any] = {}
    for key, raw in section.items():
        values[key] = _convert(f"{where} {key}", hints[key], raw)
    try:
        return cls(**values)
    except (TypeError, ValueError) as exc:
        raise ScannerConfigError(f"{where}: {exc}") from None


def _convert(what: str, hint: Any, raw: Any) -> Any:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        options = typing.get_args(hint)
        if raw is None and type(None) in options:
            return None
        for option in options:  # the first member the value already is, else the first
            if isinstance(option, type) and isinstance(raw, option) and not isinstance(raw, bool):
                return _convert(what, option, raw)
        return _convert(what, options[0], raw)
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        try:
            return hint(raw)
        except ValueError:
            allowed = ", ".join(repr(m.value) for m in hint)
            raise ScannerConfigError(f"{what} = {raw!r}: must be one of {allowed}") from None
    if typing.get_origin(hint) is tuple:
        if not isinstance(raw, list | tuple):
            raise ScannerConfigError(f"{what} must be an array, not {type(raw).__name__}")
        return tuple(raw)
    if hint is float and isinstance(raw, int) and not isinstance(raw, bool):
        return float(raw)
    if hint is int and isinstance(raw, bool):
        raise ScannerConfigError(f"{what} must be an integer, not a boolean")
    if isinstance(hint, type) and not isinstance(raw, hint):
        raise ScannerConfigError(f"{what} must be {hint.__name__}, not {type(raw).__name__}")
    return raw


OnScan = Callable[[ScanInput], None]
OnState = Callable[[DeviceStatus], None]
OnDrop = Callable[[DropReason, bytes], None]
Post = Callable[..., None]


class StateReporter:
    """A device's current status, reported to the daemon once per change, with a log line.

    A failure that repeats with the same reason is logged at debug level only: an unplugged
    scanner retried every few seconds must not flood the journal or the UI.
    """

    def __init__(self, name: str, on_state: Callable[[DeviceStatus], None]) -> None:
        """Report changes of device ``name`` to ``on_state``."""
        self.name = name
        self.on_state = on_state
        self.current: DeviceStatus | None = None
        self.opened = False  # READY was reached since the last reconnect began
        self._last_detail = ""

    @property
    def status(self) -> DeviceStatus:
        """The latest status (ABSENT before the first report)."""
        return self.current or DeviceStatus(self.name, DeviceState.ABSENT, "not started")

    def report(self, status: DeviceStatus, note: str = "") -> None:
        """Tell the daemon, unless it is the same state and reason as last time."""
        if self.current is not None and self.current.state is status.state \
                and self._last_detail == status.detail:
            log.debug("%s: still %s: %s (%s)", status.name, status.state, status.detail, note)
            return
        self._last_detail = status.detail
        if note:
            status.detail = f"{status.detail}; {note}"
        self.current = status
        if status.state is DeviceState.READY:
            self.opened = True
        level = logging.WARNING if status.state in (DeviceState.ABSENT, DeviceState.FAILED) \
            else logging.INFO
        log.log(level, "%s: %s: %s", status.name, status.state, status.detail)
        self.on_state(status)


class Backoff:
    """Capped exponential backoff with full jitter (as aiomqtt and AWS recommend).

    ``next()`` is uniform in ``[first/2, min(cap, first * 2**n)]`` for the n-th failure
    in a row: devices that come back are found quickly, dead ones are not hammered, and
    several boxes that lose power together do not retry in step.
    """

    def __init__(self, first: float, cap: float, rng: random.Random | None = None) -> None:
        """Start at ``first`` seconds, never above ``cap``."""
        if first <= 0 or cap < first:
            raise ValueError(f"backoff needs 0 < first <= cap, got {first}, {cap}")
        self.first = first
        self.cap = cap
        self._failures = 0
        self._rng = rng or random.Random()

    def next(self) -> float:
        """Seconds to wait before the next attempt; each call counts one more failure."""
        high = min(self.cap, self.first * 2 ** min(self._failures, 32))
        self._failures += 1
        return self._rng.uniform(min(self.first / 2, high), high)

    def reset(self) -> None:
        """The device worked: the next failure starts from ``first`` again."""
        self._failures = 0


async def run_in_thread(worker: Callable[[threading.Event, Post], None], name: str,
                        stop_grace: float = 2.0) -> None:
    """Run a blocking device session in its own thread until it returns, raises or is cancelled.

    ``worker(stop, post)`` must return soon after ``stop`` is set (it should block at most
    a fraction of a second at a time). ``post(fn, *args)`` runs ``fn(*args)`` on the event
    loop thread; an exception from ``fn`` (user code) is logged and does not stop the worker,
    which keeps device errors apart from callback bugs, as pyserial's ``ReaderThread`` does.

    Raises:
        Exception: whatever ``worker`` raised (device trouble), re-raised on the loop.
        asyncio.CancelledError: when cancelled, after asking the worker to stop and waiting
            up to ``stop_grace`` seconds for it.
    """
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()
    stop = threading.Event()

    def call(fn: Callable[..., None], args: tuple[Any, ...]) -> None:
        try:
            fn(*args)
        except Exception:
            log.exception("%s: callback %r failed; the device keeps reading", name, fn)

    def post(fn: Callable[..., None], *args: Any) -> None:
        if not stop.is_set() and not loop.is_closed():
            loop.call_soon_threadsafe(call, fn, args)

    def finish(exc: BaseException | None) -> None:
        if done.done():
            return
        if exc is None:
            done.set_result(None)
        else:
            done.set_exception(exc)

    def body() -> None:
        error: BaseException | None = None
        try:
            worker(stop, post)
        except BaseException as exc:  # handed to the loop, which decides what it means
            error = exc
        if not loop.is_closed():
            # The loop may close between the check and the call at interpreter shutdown.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(finish, error)

    thread = threading.Thread(target=body, name=name, daemon=True)
    thread.start()
    try:
        await asyncio.shield(done)
    except asyncio.CancelledError:
        stop.set()
        try:
            async with asyncio.timeout(stop_grace):
                await asyncio.shield(done)
        except TimeoutError:
            log.warning("%s: worker thread did not stop within %.1f s", name, stop_grace)
        except Exception:
            pass  # the worker's error on the way out does not matter: we are stopping
        raise
