"""Accounts and the people behind them: create, list, look up, set a password, disable
or enable. Part of ``Accounts`` (service.py)."""

from __future__ import annotations

from typing import Sequence

from . import audit
from .audit import Actor
from .checks import check_email, check_username
from .errors import AccountError
from storage.base import Account, AlreadyExists, Profile


ROLES = ("user", "admin")


class Users:
    async def create_user(self, username: str, password: str | None = None, email: str | None = None,
                          role: str = "user", credit: int = 0, actor: Actor | None = None) -> Profile:
        """A new account (its password hashed; ``credit``: a 'signup_credit' to start with).
        AlreadyExists when the name is taken."""
        check_username(username)
        if role not in ROLES:
            raise AccountError(f"the role must be one of {', '.join(ROLES)}", param="role")
        password_hash = None if password is None else await self.hash_password(password)
        profile = await self.store.create_profile(username, password_hash, check_email(email), role, credit)
        if actor is not None:
            audit.record("user create", actor, user=username, role=role)
        return profile

    async def claim_username(self, username: str, password: str, email: object, credit: int) -> Profile:
        """A signup's account: 409 when the name is taken."""
        try:
            return await self.create_user(username, password, email, "user", credit)  # type: ignore[arg-type]
        except AlreadyExists:
            raise AccountError(f"the username {username} is taken", 409, param="username") from None

    async def users(self) -> Sequence[tuple[Profile, Account]]:
        """Every account with its balance, by username."""
        return await self.store.list_profiles()

    async def profile(self, username: str) -> Profile:
        return await self.store.get_profile(username)

    async def account(self, username: str) -> Account:
        """The balance, held and available amounts."""
        return await self.store.get_account(username)

    async def paid_total(self, username: str) -> int:
        return await self.store.paid_total(username)

    async def set_password(self, username: str, password: str, actor: Actor | None = None) -> Profile:
        """Ends every session of the account."""
        profile = await self.store.set_password(username, await self.hash_password(password))
        if actor is not None:
            audit.record("user passwd", actor, user=username)
        return profile

    async def set_disabled(self, username: str, disabled: bool, actor: Actor | None = None) -> Profile:
        """Disabling ends the account's sessions and its keys are refused from then on (at
        once on this gateway, through the key hook; other gateways through the change
        feed, within their change_poll_interval). An admin cannot disable their own account."""
        if disabled and actor is not None and actor.username == username:
            raise AccountError("you cannot disable your own account", param="username")
        profile = await self.store.set_disabled(username, disabled)
        for key in await self.store.list_keys(username):
            self.key_changed(key.prefix)
        audit.record("user disable" if disabled else "user enable", actor, user=username)
        return profile
