"""Passwords the project generates for its own servers (the managed PostgreSQL roles, Redis),
kept under ``<state_dir>/secrets`` (0700), one file each (0600), never logged or printed."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

SECRETS_DIRNAME = "secrets"


def secret_path(state_dir: Path, name: str) -> Path:
    return state_dir / SECRETS_DIRNAME / f"{name}.password"


def read_secret(state_dir: Path, name: str) -> str | None:
    """The stored password, or None when none was generated yet."""
    try:
        return secret_path(state_dir, name).read_text(encoding="ascii").strip() or None
    except FileNotFoundError:
        return None


def ensure_secret(state_dir: Path, name: str) -> str:
    """The stored password, generated (URL-safe, 192 bits) and written 0600 on first use."""
    found = read_secret(state_dir, name)
    if found is not None:
        return found
    folder = state_dir / SECRETS_DIRNAME
    folder.mkdir(parents=True, exist_ok=True)
    os.chmod(folder, 0o700)
    value = secrets.token_urlsafe(24)
    fd = os.open(secret_path(state_dir, name), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as out:
        out.write(value + "\n")
    return value
