"""Domain errors that carry DHIS2's status and text; the HTTP edge renders them as WebMessages."""

from __future__ import annotations


class HeraldError(Exception):
    """A request cannot be served; `status` is the HTTP status, `message` DHIS2's text."""

    status: int = 400

    def __init__(self, message: str, error_code: str | None = None, response: object = None) -> None:
        super().__init__(message, error_code, response)
        self.message, self.error_code, self.response = message, error_code, response


class BadRequest(HeraldError):
    """400: the request is malformed."""

    status = 400


class Unauthorized(HeraldError):
    """401: no or wrong credentials."""

    status = 401


class Forbidden(HeraldError):
    """403: authenticated but not allowed."""

    status = 403


class NotFound(HeraldError):
    """404: the object does not exist."""

    status = 404


class Conflict(HeraldError):
    """409: the request conflicts with the data (DHIS2's catch-all for invalid input)."""

    status = 409


class PayloadTooLarge(HeraldError):
    """413: the body exceeds the configured limit."""

    status = 413


class UnsupportedMediaType(HeraldError):
    """415: the content type is not accepted here."""

    status = 415


class TooManyRequests(HeraldError):
    """429: too many failed logins; `headers` carries Retry-After (issue 8)."""

    status = 429

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s
        self.headers = {"Retry-After": str(retry_after_s)}
