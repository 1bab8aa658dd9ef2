"""Sealed reasoning items: they open only here, exactly as sealed."""

from __future__ import annotations

import base64
import secrets

import pytest

from proxy.protocol.reasoning_seal import PREFIX, ReasoningSeal, derive_key

THINKING = {"type": "thinking", "thinking": "step ☃ 😀 \"quoted\" \ud800", "signature": "EqSigSim" + "x" * 200}
REDACTED = {"type": "redacted_thinking", "data": "EmwKSimR" + "y" * 100}


def seal() -> ReasoningSeal:
    return ReasoningSeal(b"0123456789abcdef0123456789abcdef", secrets.token_bytes)


@pytest.mark.parametrize("block", [THINKING, REDACTED])
def test_round_trip_is_exact(block):
    sealer = seal()
    sealed = sealer.seal(block)
    assert sealed.startswith(PREFIX) and "step" not in sealed
    assert sealer.open(sealed) == block
    assert sealer.seal(block) != sealed  # a fresh nonce every time
    assert ReasoningSeal(b"0123456789abcdef0123456789abcdef", secrets.token_bytes).open(sealed) == block  # restarts


def test_foreign_forged_and_malformed_items_do_not_open():
    sealer = seal()
    sealed = sealer.seal(THINKING)
    other = ReasoningSeal(b"another gateway's secret value!!", secrets.token_bytes)
    raw = bytearray(base64.urlsafe_b64decode(sealed[len(PREFIX):]))
    raw[20] ^= 1
    flipped = PREFIX + base64.urlsafe_b64encode(bytes(raw)).decode()
    for value in (other.seal(THINKING), flipped, sealed[:-4], PREFIX, PREFIX + "!!!", "gAAAAABopenai-encrypted",
                  None, 42, "", PREFIX + "é", sealed + "A"):
        assert sealer.open(value) is None, value


def test_only_thinking_blocks_are_sealed_and_opened():
    sealer = seal()
    with pytest.raises(ValueError):
        sealer.seal({"type": "text", "text": "hi"})
    with pytest.raises(ValueError):
        sealer.seal({**THINKING, "extra": 1})
    with pytest.raises(ValueError):
        derive_key(b"short")
