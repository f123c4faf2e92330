"""Time on a box with no real-time clock.

The box never trusts a time earlier than the latest time it knew to be right (an HQ-signed
timestamp, or the moment the kernel said NTP had synchronised). When the wall clock reads
earlier than that, decisions use the trusted time instead and say the clock was unsure.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from dataclasses import dataclass

_TIME_ERROR = 5  # adjtimex() result when the kernel clock is not synchronised


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
