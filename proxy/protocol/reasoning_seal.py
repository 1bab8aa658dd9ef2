"""Thinking blocks sealed into a Responses reasoning item's ``encrypted_content``. Pure.

The gateway keeps no responses. A thinking block (its text and signature) or a
redacted_thinking block (its data) travels to the client inside the reasoning item,
encrypted and authenticated (AES-256-GCM) under a key only this gateway holds, and
comes back verbatim on the next turn; ``open`` rebuilds the exact signed block, so a
tool loop with thinking satisfies Anthropic's rule across restarts and nodes without
any server state. An item that was forged, edited, sealed by another gateway (another
secret) or by OpenAI itself opens to None and is dropped: nothing a client makes up
reaches the upstream as a thinking block.

Layout: ``"clm1." + base64url(nonce 12 bytes || ciphertext || tag 16 bytes)``; the
associated data names the format, so a sealed value of some other purpose does not
open here. The nonce source is passed in (the caller's CSPRNG), which keeps this pure.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any, Callable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

PREFIX = "clm1."
_AAD = b"cheaplm responses reasoning item v1"
_INFO = b"cheaplm responses reasoning key v1"
_NONCE = 12
_TAG = 16
MIN_SECRET_BYTES = 16


def derive_key(secret: bytes) -> bytes:
    """The AES-256 key for a configured secret (any length from 16 bytes), by HKDF-SHA256."""
    if len(secret) < MIN_SECRET_BYTES:
        raise ValueError(f"the reasoning secret must be at least {MIN_SECRET_BYTES} bytes")
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_INFO).derive(secret)


def _block_ok(block: Any) -> bool:
    if not isinstance(block, dict):
        return False
    if block.get("type") == "thinking":
        return isinstance(block.get("thinking"), str) and isinstance(block.get("signature"), str) and len(block) == 3
    if block.get("type") == "redacted_thinking":
        return isinstance(block.get("data"), str) and len(block) == 2
    return False


class ReasoningSeal:
    __slots__ = ("_aead", "_random")

    def __init__(self, secret: bytes, random_bytes: Callable[[int], bytes]) -> None:
        self._aead = AESGCM(derive_key(secret))
        self._random = random_bytes

    def seal(self, block: dict[str, Any]) -> str:
        """``encrypted_content`` for a thinking or redacted_thinking block."""
        if not _block_ok(block):
            raise ValueError("only a thinking {type, thinking, signature} or redacted_thinking {type, data} "
                             "block can be sealed")
        nonce = self._random(_NONCE)
        # (ASCII JSON: any string the upstream's JSON held, even a lone surrogate, round-trips exactly)
        sealed = self._aead.encrypt(nonce, json.dumps(block, separators=(",", ":")).encode(), _AAD)
        return PREFIX + base64.urlsafe_b64encode(nonce + sealed).decode("ascii")

    def open(self, content: Any) -> dict[str, Any] | None:
        """The block ``content`` was sealed from, or None when it does not open here."""
        if not isinstance(content, str) or not content.startswith(PREFIX):
            return None
        try:
            raw = base64.urlsafe_b64decode(content[len(PREFIX):].encode("ascii"))
        except (binascii.Error, ValueError, UnicodeEncodeError):
            return None
        if base64.urlsafe_b64encode(raw).decode("ascii") != content[len(PREFIX):]:
            return None  # not as sealed (trailing or non-canonical characters)
        if len(raw) < _NONCE + _TAG:
            return None
        try:
            plain = self._aead.decrypt(raw[:_NONCE], raw[_NONCE:], _AAD)
            block = json.loads(plain)
        except (InvalidTag, ValueError):
            return None
        return block if _block_ok(block) else None
