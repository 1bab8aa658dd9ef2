"""What people type, checked and worded for them: usernames and key names (printable
text), passwords, emails, reasons, dates and USD amounts; and text shown back safely
(control characters escaped, so a name cannot fake a line or a terminal code)."""

from __future__ import annotations

import re
import unicodedata
from datetime import date, datetime, timedelta, timezone

from ..money import MAX_AMOUNT, format_usd, parse_usd
from .errors import AccountError

MIN_PASSWORD = 8
MAX_PASSWORD = 1024        # argon2 takes any length; a megabyte "password" is a denial of service
MAX_EMAIL = 254
MAX_KEY_NAME = 64
MAX_REASON = 200
_USERNAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}")


def unprintable(text: str) -> bool:
    """Any control, format, separator-but-space or unassigned character."""
    return any(c != " " and unicodedata.category(c)[0] in "CZ" for c in text)


def shown(text: str) -> str:
    """``text`` for a terminal or a log line: control and invisible characters escaped."""
    return "".join(c if c == " " or unicodedata.category(c)[0] not in "CZ" else c.encode("unicode_escape").decode()
                   for c in text)


def check_username(username: object) -> str:
    if not isinstance(username, str) or not _USERNAME.fullmatch(username):
        raise AccountError(f"invalid username {shown(str(username))!r}: 1-64 of letters, digits, _ . @ - "
                           "(starting with a letter or digit)", param="username")
    return username


def check_key_name(name: object) -> str:
    """A key's name: 1-64 printable characters, no space at either end."""
    if not isinstance(name, str) or not 0 < len(name) <= MAX_KEY_NAME:
        raise AccountError(f"a key name must be 1 to {MAX_KEY_NAME} characters", param="name")
    if unprintable(name) or name != name.strip():
        raise AccountError(f"invalid key name {shown(name)!r}: printable characters only, no space at either end",
                           param="name")
    return name


def check_password(password: object) -> str:
    if not isinstance(password, str) or not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise AccountError(f"the password must be {MIN_PASSWORD} to {MAX_PASSWORD} characters", param="password")
    return password


def check_email(email: object) -> str | None:
    if email is None or email == "":
        return None
    if not isinstance(email, str) or len(email) > MAX_EMAIL or email.count("@") != 1 or unprintable(email) or any(
            c.isspace() for c in email) or email.startswith("@") or email.endswith("@"):
        raise AccountError("email must be an address such as name@example.com", param="email")
    return email


def check_reason(reason: object, required: bool = True) -> str | None:
    """An operator's reason: one line of printable text (runs of space folded), at most
    MAX_REASON characters; required unless ``required`` is false."""
    text = " ".join(reason.split()) if isinstance(reason, str) else ""
    if unprintable(text):
        raise AccountError("the reason must be printable text", param="reason")
    if not text and required:
        raise AccountError("a reason is required (it goes in the ledger with the amount)", param="reason")
    if len(text) > MAX_REASON:
        raise AccountError(f"the reason must be at most {MAX_REASON} characters", param="reason")
    return text or None


def usd(text: object, what: str, param: str, signed: bool = False) -> int:
    """A USD amount typed by a person -> micro-USD: positive (or, ``signed``, non-zero
    either way), to the micro-dollar, at most MAX_AMOUNT."""
    if not isinstance(text, str):
        raise AccountError(f"{what} must be a number of dollars", param=param)
    stripped = text.strip()
    negative = signed and stripped.startswith("-")
    try:
        amount = parse_usd(stripped[1:] if negative else stripped)
    except ValueError as exc:
        raise AccountError(f"{what}: {exc}", param=param) from None
    if amount <= 0:
        raise AccountError(f"{what} must be {'non-zero' if signed else 'positive'}, got {shown(stripped)!r}",
                           param=param)
    if amount > MAX_AMOUNT:
        raise AccountError(f"{what} of {format_usd(amount)} USD is more than the largest single credit, "
                           f"{format_usd(MAX_AMOUNT)} USD", param=param)
    return -amount if negative else amount


def parse_expiry(text: str, now: float) -> float:
    """A future moment: an ISO 8601 date (valid through that UTC day) or date-time (UTC
    unless it says otherwise) -> unix time."""
    text = (text or "").strip()
    try:
        if len(text) == 10:
            moment = datetime.combine(date.fromisoformat(text) + timedelta(days=1), datetime.min.time(),
                                      timezone.utc)
        else:
            moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=timezone.utc)
    except (ValueError, OverflowError):
        raise AccountError(f"not a date or date-time (ISO 8601, e.g. 2027-01-31): {shown(text[:40])!r}",
                           param="expires_at") from None
    when = moment.timestamp()
    if when <= now:
        raise AccountError(f"the expiry {shown(text)} is in the past", param="expires_at")
    return when


def iso(moment: float | None) -> str | None:
    return None if moment is None else datetime.fromtimestamp(moment, timezone.utc).isoformat(timespec="seconds")
