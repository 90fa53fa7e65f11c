"""Passwords the project generates for its own servers (the managed PostgreSQL roles, Redis),
kept under ``<state_dir>/secrets`` (0700), one file each (0600), never logged or printed."""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

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


def without_password(url: str) -> str:
    """``url`` with any password removed (the user stays): safe to show in config and UIs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    user = f"{parts.username}@" if parts.username else ""
    return urlunsplit(parts._replace(netloc=user + host))


def with_password(url: str, password_file: str | None) -> str:
    """``url`` with the password read *now* from ``password_file`` (a file of this module's);
    unchanged when no file is named or none was generated (a server without passwords)."""
    if not password_file:
        return url
    try:
        password = Path(password_file).read_text(encoding="ascii").strip()
    except FileNotFoundError:
        return url
    if not password:
        return url
    parts = urlsplit(without_password(url))
    host = parts.netloc.rsplit("@", 1)[-1]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:{quote(password, safe='')}@{host}"))
