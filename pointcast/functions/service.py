"""Functions as the Lambda API manages them: create, read, list, update code and configuration, delete; permissions.

Only ``$LATEST`` exists (no published versions or aliases): a function's ``RevisionId`` changes with every write,
and the pool runs the newest revision.
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from functools import cache
from typing import Any

import orjson
import sqlalchemy as sa

from pointcast.aws.shapes import service_model
from pointcast.functions import policy
from pointcast.functions import repository as repo
from pointcast.functions.code import decode_zip, sha256_b64
from pointcast.functions.errors import (
    InvalidParameterValue,
    PolicyLengthExceeded,
    PreconditionFailed,
    ResourceConflict,
    ResourceNotFound,
)
from pointcast.functions.names import function_arn, parse_ref
from pointcast.store import lock

DEFAULT_TIMEOUT = 3
DEFAULT_MEMORY = 128
_ENV_KEY = re.compile(r"^[a-zA-Z][a-zA-Z0-9_]+\Z")
_RESERVED_ENV = {
    "_HANDLER",
    "_X_AMZN_TRACE_ID",
    "AWS_DEFAULT_REGION",
    "AWS_REGION",
    "AWS_EXECUTION_ENV",
    "AWS_LAMBDA_FUNCTION_NAME",
    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
    "AWS_LAMBDA_FUNCTION_VERSION",
    "AWS_LAMBDA_INITIALIZATION_TYPE",
    "AWS_LAMBDA_LOG_GROUP_NAME",
    "AWS_LAMBDA_LOG_STREAM_NAME",
    "AWS_ACCESS_KEY",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_LAMBDA_RUNTIME_API",
    "LAMBDA_TASK_ROOT",
    "LAMBDA_RUNTIME_DIR",
}
_ENV_MAX_BYTES = 4096
_UNSUPPORTED = (
    "VpcConfig",
    "Layers",
    "FileSystemConfigs",
    "ImageConfig",
    "CodeSigningConfigArn",
    "SnapStart",
    "DeadLetterConfig",  # pointcast has no queue or topic to send a failed event invocation to
    "TenancyConfig",
    "CapacityProviderConfig",
    "DurableConfig",
    "RuntimeConfig",
    "AcceleratorConfig",
)
"""Request members (CreateFunction, UpdateFunctionConfiguration) that ask for what pointcast does not do: refused
when given, never stored and dropped. Every other member of the two requests in botocore's model is stored and
returned, acted on, or refused by ``_check_settings``/``_check_publish`` with its own reason."""
_ONLY_LATEST = "pointcast keeps only $LATEST and publishes no versions"
_CODE_MEMBERS = ("S3Bucket", "S3Key", "S3ObjectVersion", "S3ObjectStorageMode", "ImageUri", "SourceKMSKeyArn")


def _timestamp() -> str:
    """``LastModified`` in Lambda's own form, ``2026-11-23T10:00:00.000+0000``."""
    now = datetime.now(UTC)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}+0000"


def local_name(ref: str, region: str, account: str) -> str:
    """The function name a Lambda API reference names on this pointcast (name, partial or full ARN, $LATEST)."""
    parsed = parse_ref(ref)
    if parsed is None:
        raise InvalidParameterValue(
            f"FunctionName '{ref}' is not a function name, partial ARN (ACCOUNT:function:NAME) or ARN"
        )
    if not parsed.is_local(region, account):
        raise ResourceNotFound(f"Function not found: {ref} (pointcast hosts functions of {account} in {region})")
    if parsed.qualifier not in (None, "$LATEST"):
        raise ResourceNotFound(
            f"Function not found: {parsed.arn(region, account)}:{parsed.qualifier} (only $LATEST exists on pointcast)"
        )
    return parsed.name


def require(
    conn: sa.Connection, name: str, region: str, account: str, *, with_code: bool = False, hold: bool = False
) -> sa.Row[Any]:
    """The function's row (ResourceNotFound if there is none); ``hold`` locks the function first (``_hold``), for a
    write that rewrites what it read."""
    if hold:
        _hold(conn, name)
    row = repo.get(conn, name, with_code=with_code)
    if row is None:
        raise ResourceNotFound(f"Function not found: {function_arn(region, account, name)}")
    return row


def _hold(conn: sa.Connection, name: str) -> None:
    """Hold the function until the transaction ends (``pointcast.store.lock``): its writers (code, configuration,
    policy, ``RevisionId``) take turns, each reading what the previous one committed."""
    lock(conn, ("function", name))


# Runtimes whose function creation and update AWS Lambda has blocked (its runtime deprecation policy): AWS's answer.
RETIRED_RUNTIMES = frozenset(
    {"python2.7", "python3.6", "python3.7", "python3.8"}
    | {"nodejs", "nodejs4.3", "nodejs4.3-edge", "nodejs6.10", "nodejs8.10", "nodejs10.x", "nodejs12.x"}
    | {"nodejs14.x", "nodejs16.x"}
)


def _check_runtime(runtime: str, node_available: bool) -> None:
    if runtime in RETIRED_RUNTIMES:
        raise InvalidParameterValue(
            f"The runtime parameter of {runtime} is no longer supported for creating or updating AWS Lambda "
            "functions. We recommend you use a supported runtime while creating or updating functions."
        )
    if runtime.startswith("python3"):
        return
    if runtime.startswith("nodejs"):
        if not node_available:
            raise InvalidParameterValue(
                f"Runtime {runtime} needs Node.js, and 'node' is not on this pointcast server's PATH"
            )
        return
    raise InvalidParameterValue(f"Runtime {runtime} is not supported by pointcast (python3.x and nodejs* are)")


def _check_settings(request: dict[str, Any], prefix: str) -> None:
    role = request.get("Role")
    if role is not None and not ROLE.fullmatch(role):
        raise InvalidParameterValue(
            f"{prefix}.Role '{role[:200]}' is not an IAM role ARN (arn:aws:iam::ACCOUNT:role/NAME; the model's "
            f"pattern is {ROLE.pattern})"
        )
    timeout = request.get("Timeout")
    if timeout is not None and not 1 <= timeout <= 900:
        raise InvalidParameterValue(f"{prefix}.Timeout must be between 1 and 900 seconds (got {timeout})")
    memory = request.get("MemorySize")
    if memory is not None and not 128 <= memory <= 10240:
        raise InvalidParameterValue(f"{prefix}.MemorySize must be between 128 and 10240 MB (got {memory})")
    handler = request.get("Handler")
    if handler is not None and not re.fullmatch(r"[^\s]+\.[^\s.]+", handler):
        raise InvalidParameterValue(f"{prefix}.Handler '{handler}' must be FILE.FUNCTION, e.g. index.lambda_handler")
    variables = (request.get("Environment") or {}).get("Variables") or {}
    bad = [k for k in variables if not _ENV_KEY.match(k)]
    if bad:
        raise InvalidParameterValue(f"{prefix}.Environment.Variables: '{bad[0]}' is not a valid variable name")
    reserved = sorted(k for k in variables if k in _RESERVED_ENV)
    if reserved:
        raise InvalidParameterValue(
            "Lambda was unable to configure your environment variables because the environment variables you have "
            f"provided contains reserved keys that are currently not supported for modification. Reserved keys used "
            f"in this request: {', '.join(reserved)}"
        )
    if len(orjson.dumps(variables)) > _ENV_MAX_BYTES:
        raise InvalidParameterValue(f"{prefix}.Environment.Variables exceed Lambda's limit of 4 KB")
    storage = (request.get("EphemeralStorage") or {}).get("Size")
    if storage is not None and not 512 <= storage <= 10240:
        raise InvalidParameterValue(f"{prefix}.EphemeralStorage.Size must be between 512 and 10240 MB (got {storage})")
    for member in _UNSUPPORTED:
        if _given(request.get(member)):
            raise InvalidParameterValue(f"{prefix}.{member} is not supported by pointcast")
    _check_publish(request, prefix)


def _check_publish(request: dict[str, Any], prefix: str) -> None:
    """``Publish`` and ``PublishTo`` (CreateFunction, UpdateFunctionCode) ask for a published version."""
    for member in ("Publish", "PublishTo"):
        if _given(request.get(member)):
            raise InvalidParameterValue(f"{prefix}.{member} is not supported: {_ONLY_LATEST}")


def _check_code(code: dict[str, Any], prefix: str) -> None:
    """The zip comes with the request: a member naming code elsewhere (S3, an image) or its key is refused."""
    for member in _CODE_MEMBERS:
        if _given(code.get(member)):
            raise InvalidParameterValue(
                f"{prefix}.{member} is not supported by pointcast: it takes the zip with the request (ZipFile)"
            )


def _given(value: Any) -> bool:
    """A member that asks for something: ``VpcConfig: {SubnetIds: [], SecurityGroupIds: []}`` is how tools say
    "no VPC", ``DeadLetterConfig: {}`` "no queue" and ``SnapStart: {ApplyOn: None}`` "no SnapStart" (the enum's own
    value, which Terraform sends when a ``snap_start`` block is removed), which is what pointcast has."""
    if isinstance(value, dict) and value == {"ApplyOn": "None"}:
        return False
    if isinstance(value, dict):
        return any(_given(v) for v in value.values())
    return bool(value)


def _stored_settings(request: dict[str, Any], doc: dict[str, Any]) -> None:
    """The members pointcast keeps and reports without acting on them (as Lambda would, but for their effect)."""
    if request.get("EphemeralStorage"):
        doc["EphemeralStorage"] = {"Size": request["EphemeralStorage"]["Size"]}
    if request.get("LoggingConfig"):
        doc["LoggingConfig"] = {**doc["LoggingConfig"], **request["LoggingConfig"]}
    if "KMSKeyArn" in request:
        if request["KMSKeyArn"]:
            doc["KMSKeyArn"] = request["KMSKeyArn"]
        else:
            doc.pop("KMSKeyArn", None)


def create(
    conn: sa.Connection,
    request: dict[str, Any],
    region: str,
    account: str,
    *,
    node_available: bool,
    data: bytes | None = None,
) -> dict[str, Any]:
    """A new function; ``data`` is ``Code.ZipFile`` already decoded and checked, if the caller did that first."""
    parsed = parse_ref(request["FunctionName"])
    if parsed is None or not parsed.is_local(region, account) or parsed.qualifier:
        raise InvalidParameterValue(f"FunctionName '{request['FunctionName']}' is not a valid function name")
    name = parsed.name
    if request.get("PackageType", "Zip") != "Zip":
        raise InvalidParameterValue("PackageType Image is not supported by pointcast; upload a Zip package")
    code = request.get("Code") or {}
    if not code.get("ZipFile"):
        raise InvalidParameterValue("Code.ZipFile is required (pointcast takes the zip with the request, not from S3)")
    for member in ("Runtime", "Handler"):
        if not request.get(member):
            raise InvalidParameterValue(f"{member} is required for a Zip package")
    _check_code(code, "CreateFunctionRequest.Code")
    _check_runtime(request["Runtime"], node_available)
    _check_settings(request, "CreateFunctionRequest")
    data = decode_zip(code["ZipFile"]) if data is None else data
    _hold(conn, name)
    if repo.get(conn, name) is not None:
        raise ResourceConflict(f"Function already exist: {name}")
    arn = function_arn(region, account, name)
    doc: dict[str, Any] = {
        "FunctionName": name,
        "FunctionArn": arn,
        "Runtime": request["Runtime"],
        "Role": request["Role"],
        "Handler": request["Handler"],
        "CodeSize": len(data),
        "Description": request.get("Description", ""),
        "Timeout": request.get("Timeout", DEFAULT_TIMEOUT),
        "MemorySize": request.get("MemorySize", DEFAULT_MEMORY),
        "LastModified": _timestamp(),
        "CodeSha256": sha256_b64(data),
        "Version": "$LATEST",
        "TracingConfig": {"Mode": (request.get("TracingConfig") or {}).get("Mode", "PassThrough")},
        "RevisionId": str(uuid.uuid4()),
        "State": "Active",
        "LastUpdateStatus": "Successful",
        "PackageType": "Zip",
        "Architectures": request.get("Architectures") or ["x86_64"],
        "EphemeralStorage": {"Size": 512},
        "LoggingConfig": {"LogFormat": "Text", "LogGroup": f"/aws/lambda/{name}"},
    }
    if request.get("Environment"):
        doc["Environment"] = {"Variables": dict(request["Environment"].get("Variables") or {})}
    _stored_settings(request, doc)
    try:
        repo.insert(conn, name, doc, data, dict(request.get("Tags") or {}))
    except sa.exc.IntegrityError:  # created meanwhile by a writer that did not hold the function
        raise ResourceConflict(f"Function already exist: {name}") from None
    return doc


def get_function(conn: sa.Connection, name: str, region: str, account: str, code_url: str) -> dict[str, Any]:
    row = require(conn, name, region, account)
    result: dict[str, Any] = {
        "Configuration": row.doc,
        "Code": {"RepositoryType": "S3", "Location": code_url},
    }
    if row.tags:
        result["Tags"] = row.tags
    return result


def list_functions(conn: sa.Connection, marker: str | None, max_items: int | None) -> dict[str, Any]:
    limit = max(1, min(max_items or 50, 50))
    rows = repo.page(conn, marker, limit + 1)
    result: dict[str, Any] = {"Functions": [row.doc for row in rows[:limit]]}
    if len(rows) > limit:
        result["NextMarker"] = rows[limit - 1].name
    return result


def _check_revision(doc: dict[str, Any], request: dict[str, Any]) -> None:
    wanted = request.get("RevisionId")
    if wanted and wanted != doc["RevisionId"]:
        raise PreconditionFailed(
            "The Revision Id provided does not match the latest Revision Id. Call the GetFunction/GetAlias API to "
            "retrieve the latest Revision Id"
        )


def _touch(doc: dict[str, Any]) -> dict[str, Any]:
    return {**doc, "LastModified": _timestamp(), "RevisionId": str(uuid.uuid4())}


def update_code(
    conn: sa.Connection, name: str, request: dict[str, Any], region: str, account: str, *, data: bytes | None = None
) -> dict[str, Any]:
    row = require(conn, name, region, account, hold=True)
    _check_revision(row.doc, request)
    if not request.get("ZipFile"):
        raise InvalidParameterValue("ZipFile is required (pointcast takes the zip with the request, not from S3)")
    _check_code(request, "UpdateFunctionCodeRequest")
    _check_publish(request, "UpdateFunctionCodeRequest")
    data = decode_zip(request["ZipFile"]) if data is None else data
    doc = _touch({**row.doc, "CodeSize": len(data), "CodeSha256": sha256_b64(data)})
    if request.get("Architectures"):
        doc["Architectures"] = list(request["Architectures"])
    if request.get("DryRun"):
        return doc
    repo.update(conn, name, doc=doc, code=data)
    return doc


def update_configuration(
    conn: sa.Connection, name: str, request: dict[str, Any], region: str, account: str, *, node_available: bool
) -> dict[str, Any]:
    row = require(conn, name, region, account, hold=True)
    _check_revision(row.doc, request)
    if request.get("Runtime"):
        _check_runtime(request["Runtime"], node_available)
    _check_settings(request, "UpdateFunctionConfigurationRequest")
    doc = dict(row.doc)
    for member in ("Role", "Handler", "Description", "Timeout", "MemorySize", "Runtime"):
        if member in request:
            doc[member] = request[member]
    if "Environment" in request:
        variables = (request["Environment"] or {}).get("Variables") or {}
        if variables:
            doc["Environment"] = {"Variables": dict(variables)}
        else:
            doc.pop("Environment", None)
    if "TracingConfig" in request:
        doc["TracingConfig"] = {"Mode": request["TracingConfig"].get("Mode", "PassThrough")}
    _stored_settings(request, doc)
    doc = _touch(doc)
    repo.update(conn, name, doc=doc)
    return doc


def delete(conn: sa.Connection, name: str, region: str, account: str) -> None:
    require(conn, name, region, account, hold=True)
    repo.delete(conn, name)


def add_permission(
    conn: sa.Connection, name: str, request: dict[str, Any], region: str, account: str
) -> dict[str, Any]:
    row = require(conn, name, region, account, hold=True)
    _check_revision(row.doc, request)
    if request.get("Qualifier") not in (None, "$LATEST"):
        raise ResourceNotFound(f"Function not found: {row.doc['FunctionArn']}:{request['Qualifier']}")
    action = request["Action"]
    if not re.fullmatch(r"(lambda:[*]|lambda:[a-zA-Z]+|[*])", action):
        raise InvalidParameterValue(f"Action '{action}' is not a Lambda action (e.g. lambda:InvokeFunction)")
    sid = request["StatementId"]
    if not re.fullmatch(r"[a-zA-Z0-9_-]{1,100}", sid):
        raise InvalidParameterValue(f"StatementId '{sid}' must be 1 to 100 letters, digits, hyphens or underscores")
    for member in _PATTERNED:
        value = request.get(member)
        if value is not None and not _pattern("AddPermission", member).fullmatch(value):
            raise InvalidParameterValue(
                f"AddPermissionRequest.{member} '{value[:200]}' does not match the pattern "
                f"{_pattern('AddPermission', member).pattern} ({_PATTERNED[member]})"
            )
    statements = list(row.policy or [])
    if any(s.get("Sid") == sid for s in statements):
        raise ResourceConflict(
            f"The statement id ({sid}) provided already exists. Please provide a new statement id, or remove the "
            "existing statement."
        )
    stmt = policy.statement(
        sid=sid,
        action=action,
        principal=request["Principal"],
        resource=row.doc["FunctionArn"],
        source_arn=request.get("SourceArn"),
        source_account=request.get("SourceAccount"),
        principal_org_id=request.get("PrincipalOrgID"),
        event_source_token=request.get("EventSourceToken"),
        function_url_auth_type=request.get("FunctionUrlAuthType"),
        invoked_via_function_url=bool(request.get("InvokedViaFunctionUrl")),
    )
    statements.append(stmt)
    size = len(orjson.dumps(policy.document(statements)))
    if size > MAX_POLICY_BYTES:
        raise PolicyLengthExceeded(f"The final policy size ({size}) is bigger than the limit ({MAX_POLICY_BYTES}).")
    repo.update(conn, name, policy=statements, doc=_touch(row.doc))
    return {"Statement": orjson.dumps(stmt).decode()}


_PATTERNED = {
    "SourceArn": "an ARN",
    "SourceAccount": "a 12-digit account id",
    "PrincipalOrgID": "an organization id, o-...",
    "EventSourceToken": "letters, digits, '.', '_' and '-'",
    "Principal": "no white space",
}
"""AddPermission members whose model pattern pointcast checks (botocore's client checks none), and what it asks."""


@cache
def _pattern(operation: str, member: str) -> re.Pattern[str]:
    """The model's pattern for a member of an operation's request (a whole value must match it, as in Lambda)."""
    shape = service_model("lambda").operation_model(operation).input_shape.members[member]
    return re.compile(shape.metadata["pattern"])


ROLE = _pattern("CreateFunction", "Role")
MAX_POLICY_BYTES = 20 * 1024  # Lambda's limit on a function's resource-based policy


def remove_permission(
    conn: sa.Connection, name: str, sid: str, region: str, account: str, revision: str | None = None
) -> None:
    row = require(conn, name, region, account, hold=True)
    _check_revision(row.doc, {"RevisionId": revision})
    statements = [s for s in row.policy or [] if s.get("Sid") != sid]
    if len(statements) == len(row.policy or []):
        raise ResourceNotFound(f"Statement {sid} is not found in resource policy.")
    repo.update(conn, name, policy=statements, doc=_touch(row.doc))


def get_policy(conn: sa.Connection, name: str, region: str, account: str) -> dict[str, Any]:
    row = require(conn, name, region, account)
    if not row.policy:
        raise ResourceNotFound("The resource you requested does not exist.")
    return {"Policy": orjson.dumps(policy.document(row.policy)).decode(), "RevisionId": row.doc["RevisionId"]}


def invocation_rows(conn: sa.Connection, function: str, limit: int) -> list[dict[str, Any]]:
    """The newest invocations of a function, oldest of them first, as the CLI shows them."""
    rows = repo.invocations(conn, function, limit)
    return [
        {
            "RequestId": r.request_id,
            "Kind": r.kind,
            "Source": r.source,
            "Started": r.started,
            "DurationMs": round(r.duration_ms, 2),
            "Outcome": r.outcome,
            "Error": r.error,
            "Logs": r.logs,
        }
        for r in reversed(rows)
    ]
