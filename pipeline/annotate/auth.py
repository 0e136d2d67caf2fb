"""Annotator tokens: random secrets shown once, stored only as a hash.

Tokens are 192-bit random strings, so a plain SHA-256 is enough (no dictionary to
attack) and verification stays cheap on every API call.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")


def check_name(name: str) -> str:
    """An annotator name is a short identifier: it ends up in label files and exports."""
    if not NAME_PATTERN.match(name):
        raise ValueError(
            f"invalid annotator name '{name}': use 1-64 letters, digits, '_', '.', '@' or '-', "
            "starting with a letter or digit")
    return name


def new_token() -> str:
    return secrets.token_urlsafe(24)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def token_matches(token: str, stored_hash: str | None) -> bool:
    """Constant-time comparison; an unknown annotator never matches."""
    if stored_hash is None:
        return False
    return hmac.compare_digest(hash_token(token), stored_hash)
