"""The one refusal of the accounts library: worded for the person asking, with the HTTP
status it answers with, the seconds to wait for a 429, and the field it is about
(``param``: the JSON API names it; the CLI maps it to its flag)."""

from __future__ import annotations


class AccountError(ValueError):
    def __init__(self, message: str, status: int = 400, retry_after: float | None = None,
                 param: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = None if retry_after is None else max(1, int(retry_after + 0.999))
        self.param = param
