"""The AWS Lambda API's own error types (botocore's ``lambda`` model names them), on pointcast's one error base."""

from __future__ import annotations

from pointcast.aws.errors import AwsError


class ResourceNotFound(AwsError):
    code, status = "ResourceNotFoundException", 404


class ResourceConflict(AwsError):
    code, status = "ResourceConflictException", 409


class InvalidParameterValue(AwsError):
    code, status = "InvalidParameterValueException", 400


class InvalidRequestContent(AwsError):
    code, status = "InvalidRequestContentException", 400


class PolicyLengthExceeded(AwsError):
    code, status = "PolicyLengthExceededException", 400


class PreconditionFailed(AwsError):
    code, status = "PreconditionFailedException", 412


class RequestTooLarge(AwsError):
    code, status = "RequestTooLargeException", 413


class ServiceError(AwsError):
    code, status = "ServiceException", 500
