"""Domain exceptions. The CLI turns them into one line and a non-zero exit; the server into an
OpenAI error object ``{"error": {"message", "type", "param", "code"}}``."""

from __future__ import annotations


class TuneryError(Exception):
    """Base class: a problem the user can fix, with a message that names the next step."""

    status_code = 400
    error_type = "invalid_request_error"
    code: str | None = None

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None,
                 hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message

    def to_openai(self) -> dict:
        return {"error": {"message": str(self), "type": self.error_type, "param": self.param,
                          "code": self.code}}


class InvalidInput(TuneryError):
    code = "invalid_value"


class NotFound(TuneryError):
    status_code = 404
    code = "not_found"


class Conflict(TuneryError):
    status_code = 409
    code = "conflict"


class OfflineError(TuneryError):
    """Something needed the network and the network is not there."""

    status_code = 503
    error_type = "service_unavailable"
    code = "offline"


class RateLimited(TuneryError):
    status_code = 429
    error_type = "rate_limit_exceeded"
    code = "rate_limit_exceeded"

    def __init__(self, message: str, *, retry_after: float, **kw) -> None:
        super().__init__(message, **kw)
        self.retry_after = retry_after
