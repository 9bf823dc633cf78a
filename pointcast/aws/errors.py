"""One error base carrying the AWS error type and HTTP status, rendered into the envelope botocore parses."""

from __future__ import annotations


class AwsError(Exception):
    """A domain error that reaches the client as ``x-amzn-ErrorType: <code>`` with ``{"Message", "RequestID"}``."""

    code = "InternalServerErrorException"
    status = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadRequest(AwsError):
    code, status = "BadRequestException", 400


class Forbidden(AwsError):
    code, status = "ForbiddenException", 403


class NotFound(AwsError):
    code, status = "NotFoundException", 404


class MethodNotAllowed(AwsError):
    code, status = "MethodNotAllowedException", 405


class Conflict(AwsError):
    code, status = "ConflictException", 409


class PayloadTooLarge(AwsError):
    code, status = "PayloadTooLargeException", 413


class TooManyRequests(AwsError):
    code, status = "TooManyRequestsException", 429


class InternalServerError(AwsError):
    code, status = "InternalServerErrorException", 500
