"""One line describing the machine a benchmark ran on."""

from __future__ import annotations

import os
import platform
import sqlite3


def describe() -> str:
    """Platform, CPU model and count, memory, Python and SQLite versions."""
    cpu = platform.processor() or "?"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f
                        if line.startswith("model name")), cpu)
    except OSError:
        pass
    mem = ""
    try:
        with open("/proc/meminfo") as f:
            mem = f"{int(f.readline().split()[1]) // 1024} MiB RAM, "
    except (OSError, ValueError, IndexError):
        pass
    return (f"{platform.platform()}; {cpu}; {os.cpu_count()} cpus; {mem}"
            f"Python {platform.python_version()}; SQLite {sqlite3.sqlite_version}")
