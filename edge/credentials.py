"""Secrets from a file or the environment, never the command line, and URLs with them hidden.

Anything on a command line is world-readable (``ps``, ``/proc/PID/cmdline``); a file the
service alone can read (or a systemd ``LoadCredential``, which is one) or the process's
environment (readable by the same user and root only) are not. Box and HQ read passwords
through here; ``docs/security.md`` ("Secrets") lists every variable and option.
"""

from __future__ import annotations

import os
import urllib.parse
from collections.abc import Mapping
from pathlib import Path
from typing import Final

CREDENTIALS_DIR_ENV: Final = "CREDENTIALS_DIRECTORY"  # set by systemd for LoadCredential=


class SecretError(ValueError):
    """A secret could not be read, or was given where everyone can see it."""


def read_secret(path: Path | str, what: str) -> str:
    """The secret held in ``path``: its text without the trailing newline.

    Raises:
        SecretError: the file cannot be read or is empty (the message names the file,
            never its content).
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SecretError(f"{what}: cannot read {path}: {exc.__class__.__name__}") from None
    secret = text.rstrip("\r\n")
    if not secret:
        raise SecretError(f"{what}: {path} is empty")
    return secret


def credential(name: str, environ: Mapping[str, str] | None = None) -> str | None:
    """The systemd credential ``name`` (``LoadCredential=name:...``), if the unit passes one."""
    env = os.environ if environ is None else environ
    folder = env.get(CREDENTIALS_DIR_ENV)
    if not folder or not (Path(folder) / name).is_file():
        return None
    return read_secret(Path(folder) / name, f"credential {name}")


def has_password(url: str) -> bool:
    """Whether ``url`` carries a password (``scheme://user:password@host``)."""
    try:
        return urllib.parse.urlsplit(url).password is not None
    except ValueError:
        return False


def redact(url: str) -> str:
    """``url`` with any password replaced by ``***``, for messages and logs."""
    try:
        parts = urllib.parse.urlsplit(url)
        if parts.password is None:
            return url
    except ValueError:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return urllib.parse.urlunsplit(parts._replace(netloc=f"{user}:***@{netloc}"))
