"""Small builders the storage tests share: usage rows, a funded user with a key."""

from __future__ import annotations

from storage.base import UsageRow

LEASE = 60.0


def row(request_id: str, key_id: int, cost: int, **kw) -> UsageRow:
    kw.setdefault("status", 200)
    return UsageRow(request_id=request_id, key_id=key_id, model="claude-sonnet-4.5", endpoint="messages",
                    stream=False, cost=cost, **kw)


def partial_row(request_id: str, key_id: int, cost: int) -> UsageRow:
    return row(request_id, key_id, cost, output_tokens=cost, status=499, error_type="client_disconnected",
               partial=True)


async def new_key(store, username="u"):
    return await store.create_key(username, "sk-cl-" + username[:8].ljust(8, "x"), "hash", "k", None, True, (),
                                  None)


async def funded(store, amount: int):
    """User "u" with a key and ``amount`` credited: (key, account)."""
    await store.create_user("u")
    key = await new_key(store)
    await store.credit("u", amount, "credit")
    return key, await store.get_account("u")
