from __future__ import annotations


class ApplicationError(Exception):
    """A service refused: the message tells a user what to do about it."""

    def __init__(self, message: str, *, errors: list[str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.errors = errors or []
