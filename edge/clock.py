"""Time on a box with no real-time clock.

The box never trusts a time earlier than the latest time it knew to be right (an HQ-signed
timestamp, or the moment the kernel said NTP had synchronised). When the wall clock reads
earlier than that, decisions use the trusted time instead and say the clock was unsure.

NTP is not believed blindly: a sync may move the trusted time at most :data:`NTP_MAX_STEP_S`
past the last reference (an HQ-signed time, or what the box knew when it started) plus the
time elapsed since on the monotonic clock (:func:`ntp_limit`); a jump beyond that is
flagged (a ``clock`` event) and the trusted time stays. One forged sync can therefore push
it at most that step ahead, and HQ can pull a trusted time that NTP set ahead back with a
new signed config (:data:`CORRECT_AHEAD_S`; ``edge.storeconfig.apply_config``).
"""

from __future__ import annotations

import ctypes
import ctypes.util
from dataclasses import dataclass
from typing import Final

_TIME_ERROR = 5  # adjtimex() result when the kernel clock is not synchronised
# How far past the reference (plus elapsed time) an NTP sync may move the trusted time. A box
# back from days off also exceeds it: flagged, and its trusted time waits for HQ's next
# signed time (decisions meanwhile use the wall clock, which is ahead of the trusted time).
NTP_MAX_STEP_S: Final = 3600.0
# A trusted time set by NTP this far ahead of a new HQ-signed config's issued_at is moved
# back to it (HQ's signed time outranks NTP's; a config's version makes it fresh).
CORRECT_AHEAD_S: Final = 3600.0


@dataclass(frozen=True, slots=True)
class Reading:
    """What time the box decides at, and whether it trusts it."""

    now: float  # the time decisions use: never earlier than the trusted time
    wall: float  # what the system clock said
    trusted: bool


def read(wall: float, last_trusted: float, skew_s: float) -> Reading:
    """Judge ``wall`` against ``last_trusted``.

    A wall clock more than ``skew_s`` behind the trusted time is wrong (a box booted
    without RTC and network often starts in 1970 or at its build date); a box that never
    learned a trusted time cannot vouch for its clock either.
    """
    if last_trusted <= 0:
        return Reading(wall, wall, False)
    if wall < last_trusted - skew_s:
        return Reading(last_trusted, wall, False)
    return Reading(max(wall, last_trusted), wall, True)


def ntp_limit(reference: float, reference_mono: float, mono_now: float,
              step: float = NTP_MAX_STEP_S) -> float:
    """The latest wall time an NTP sync may make trusted.

    ``reference`` is a trusted time the box had at monotonic time ``reference_mono``.
    """
    return reference + max(0.0, mono_now - reference_mono) + step


def kernel_synchronised() -> bool:
    """Whether the kernel says its clock is NTP-synchronised (``adjtimex``, read-only)."""
    libc_name = ctypes.util.find_library("c")
    if not libc_name:
        return False
    # struct timex is 208 bytes on 64-bit Linux; modes=0 (first field) only reads.
    buf = ctypes.create_string_buffer(256)
    try:
        state = ctypes.CDLL(libc_name, use_errno=True).adjtimex(buf)
    except (OSError, AttributeError):
        return False
    return bool(state >= 0 and state != _TIME_ERROR)
