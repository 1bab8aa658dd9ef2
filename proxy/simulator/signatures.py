"""The simulated upstream's signatures: HMACs under a secret the simulator keeps, so a
thinking or redacted_thinking block that was edited, re-serialized or made up is refused
as Anthropic refuses it. Pure."""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Any

DEFAULT_SECRET = b"cheaplm-simulator"  # plan()'s default; a SimulatorState draws a random one
_SIGNATURE_HEAD = base64.b64decode("EqSigSim")   # 6 bytes: every signature starts "EqSigSim"
_REDACTED_HEAD = base64.b64decode("EmwKSimR")    # 6 bytes: every redacted data starts "EmwKSimR"
_NONCE, _TAG = 12, 32


def _mac(secret: bytes, *parts: bytes) -> bytes:
    return hmac.new(secret, b"\0".join(parts), hashlib.sha256).digest()


def thinking_signature(secret: bytes, thinking: str) -> str:
    """The signature the simulator gives a thinking block with this text (264 base64 characters)."""
    mac = _mac(secret, b"thinking", thinking.encode("utf-8", "surrogatepass"))
    filler = b"".join(_mac(secret, b"pad", mac, bytes([i])) for i in range(5))
    return base64.b64encode(_SIGNATURE_HEAD + mac + filler).decode("ascii")


def valid_signature(secret: bytes, thinking: Any, signature: Any) -> bool:
    if not isinstance(thinking, str) or not isinstance(signature, str):
        return False
    return hmac.compare_digest(thinking_signature(secret, thinking).encode(), signature.encode("utf-8", "replace"))


def _keystream(secret: bytes, nonce: bytes, size: int) -> bytes:
    blocks = (_mac(secret, b"stream", nonce, i.to_bytes(4, "big")) for i in range(-(-size // 32)))
    return b"".join(blocks)[:size]


def redacted_data(secret: bytes, hidden: str) -> str:
    """The ``data`` of a redacted_thinking block hiding ``hidden``."""
    plain = hidden.encode("utf-8", "surrogatepass")
    nonce = _mac(secret, b"nonce", plain)[:_NONCE]
    cipher = bytes(a ^ b for a, b in zip(plain, _keystream(secret, nonce, len(plain))))
    sealed = nonce + cipher
    return base64.b64encode(_REDACTED_HEAD + sealed + _mac(secret, b"redacted", sealed)).decode("ascii")


def valid_redacted(secret: bytes, data: Any) -> bool:
    if not isinstance(data, str):
        return False
    try:
        raw = base64.b64decode(data, validate=True)
    except ValueError:
        return False
    if base64.b64encode(raw).decode("ascii") != data:  # not canonical: some bits were changed
        return False
    if not raw.startswith(_REDACTED_HEAD) or len(raw) < len(_REDACTED_HEAD) + _NONCE + _TAG:
        return False
    sealed, tag = raw[len(_REDACTED_HEAD):-_TAG], raw[-_TAG:]
    return hmac.compare_digest(tag, _mac(secret, b"redacted", sealed))


def hidden_reasoning(serial: int, index: int) -> str:
    return f"Reasoning {serial}.{index} flagged by the safety systems and returned encrypted. " * 3


# --- Request checks ---------------------------------------------------------------------------------------
