"""Errors of the sandbox: each API error knows its HTTP status and Stripe's error body."""

from __future__ import annotations

from typing import Any

from app.core.errors import PipelineError


class SandboxError(PipelineError):
    """Base class for everything the sandbox raises."""


class SandboxNotRunning(SandboxError):
    """A CLI command needs a running sandbox and none answers."""


class StripeError(SandboxError):
    """An error answered to the client with Stripe's body: `{"error": {type, code, message, param}}`."""

    status = 400
    error_type = "invalid_request_error"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.param = param
        self.extra = extra or {}

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {
            "type": self.error_type,
            "code": self.code,
            "message": self.message,
            "param": self.param,
        }
        if self.code:
            error["doc_url"] = f"https://stripe.com/docs/error-codes/{self.code.replace('_', '-')}"
        error.update(self.extra)
        return {"error": error}


class InvalidRequestError(StripeError):
    status = 400


class IdempotencyError(StripeError):
    status = 400
    error_type = "idempotency_error"


class AuthenticationError(StripeError):
    status = 401


class CardError(StripeError):
    status = 402
    error_type = "card_error"


class NotFoundError(StripeError):
    status = 404

    def __init__(self, message: str, *, param: str | None = "id") -> None:
        super().__init__(message, code="resource_missing", param=param)


class RateLimitError(StripeError):
    status = 429

    def __init__(self, message: str) -> None:
        super().__init__(message, code="rate_limit")


class ApiError(StripeError):
    status = 500
    error_type = "api_error"
