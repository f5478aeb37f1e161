"""Errors raised by rooms/. The signaling layer turns them into
`{"ok": false, "error": {"code", "message"}}` acks."""


class RoomError(Exception):
    """A refused or failed room operation. `code` is stable and machine-readable."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message

    def to_dict(self) -> dict:
        return {"code": self.code, "message": self.message}


class HookError(RuntimeError):
    """aiortc is not the version (or shape) that rooms/aiortc_hooks.py was written for."""
