"""AddPermission and CreateFunction/UpdateFunctionConfiguration members: each is written as Lambda writes it, or
refused naming it; none is accepted and dropped. And the Pinpoint check reads actions as IAM does."""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

import botocore.session
import pytest

from pointcast.functions import service
from pointcast.functions.policy import pinpoint_may_invoke, statement
from tests.support.functions import ROLE, deploy, function_campaign_request, zip_code
from tests.support.server import ACCOUNT_ID, REGION

EVERY_APP = f"arn:aws:mobiletargeting:{REGION}:{ACCOUNT_ID}:apps/*"
PINPOINT = f"pinpoint.{REGION}.amazonaws.com"
KEY = f"arn:aws:kms:{REGION}:{ACCOUNT_ID}:key/1234abcd-12ab-34cd-56ef-1234567890ab"


def _name() -> str:
    return f"fn-{uuid.uuid4().hex[:10]}"


def _campaign(pinpoint: Any, app_id: str, function: str) -> dict[str, Any]:
    segment = pinpoint.create_segment(ApplicationId=app_id, WriteSegmentRequest={"Name": "s"})["SegmentResponse"]
    request = function_campaign_request(segment["Id"], function)
    return dict(pinpoint.create_campaign(ApplicationId=app_id, WriteCampaignRequest=request)["CampaignResponse"])


# --- AddPermission --------------------------------------------------------------------------------------------------


def test_invoked_via_function_url_becomes_a_condition_pinpoint_cannot_meet(lam, pinpoint, app_id: str) -> None:
    name = _name()
    deploy(lam, name, allow=None)
    added = lam.add_permission(FunctionName=name, StatementId="url-only", Action="lambda:InvokeFunction",
                               Principal=PINPOINT, SourceArn=EVERY_APP, InvokedViaFunctionUrl=True)  # fmt: skip
    condition = json.loads(added["Statement"])["Condition"]
    assert condition == {
        "ArnLike": {"AWS:SourceArn": EVERY_APP},
        "Bool": {"lambda:InvokedViaFunctionUrl": "true"},
    }
    stored = json.loads(lam.get_policy(FunctionName=name)["Policy"])["Statement"]
    assert [s["Condition"] for s in stored] == [condition]
    with pytest.raises(pinpoint.exceptions.BadRequestException, match="lambda:InvokedViaFunctionUrl"):
        _campaign(pinpoint, app_id, name)


def test_invoked_via_function_url_false_adds_no_condition(lam) -> None:
    name = _name()
    deploy(lam, name, allow=None)
    added = lam.add_permission(FunctionName=name, StatementId="s", Action="lambda:InvokeFunction",
                               Principal=PINPOINT, SourceArn=EVERY_APP, InvokedViaFunctionUrl=False)  # fmt: skip
    assert json.loads(added["Statement"])["Condition"] == {"ArnLike": {"AWS:SourceArn": EVERY_APP}}


@pytest.mark.parametrize(
    ("member", "value"),
    [
        ("SourceArn", "not-an-arn"),
        ("SourceArn", "arn:aws:mobiletargeting:us-east-1:123:apps/*"),  # an account id has 12 digits
        ("SourceAccount", "12345"),
        ("PrincipalOrgID", "o-ABCDEFGHIJ"),
        ("EventSourceToken", "a token"),
    ],
)
def test_a_member_that_does_not_match_its_pattern_is_refused(lam, member: str, value: str) -> None:
    name = _name()
    deploy(lam, name, allow=None)
    with pytest.raises(lam.exceptions.InvalidParameterValueException, match=re.escape(f"{member} '{value}'")):
        lam.add_permission(FunctionName=name, StatementId="s", Action="lambda:InvokeFunction", Principal=PINPOINT,
                           **{member: value})  # fmt: skip
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.get_policy(FunctionName=name)


@pytest.mark.parametrize("source_arn", [EVERY_APP, "arn:aws-us-gov:sns:us-gov-west-1::topic", "arn:aws:s3:::bucket"])
def test_a_source_arn_of_the_model_pattern_is_accepted(lam, source_arn: str) -> None:
    name = _name()
    deploy(lam, name, allow=None)
    added = lam.add_permission(FunctionName=name, StatementId="s", Action="lambda:InvokeFunction",
                               Principal="s3.amazonaws.com", SourceArn=source_arn)  # fmt: skip
    assert json.loads(added["Statement"])["Condition"] == {"ArnLike": {"AWS:SourceArn": source_arn}}


# --- actions are compared as IAM compares them ------------------------------------------------------------------------


def test_a_lower_case_invoke_action_lets_pinpoint_invoke(lam, pinpoint, app_id: str) -> None:
    name = _name()
    deploy(lam, name, allow=None)
    lam.add_permission(FunctionName=name, StatementId="lower", Action="lambda:invokefunction", Principal=PINPOINT,
                       SourceArn=EVERY_APP)  # fmt: skip
    assert _campaign(pinpoint, app_id, name)["Version"] == 1


@pytest.mark.parametrize(
    ("action", "allowed"),
    [
        ("lambda:InvokeFunction", True),
        ("lambda:invokefunction", True),
        ("LAMBDA:INVOKEFUNCTION", True),
        ("Lambda:*", True),
        ("lambda:Invoke*", True),
        ("lambda:invoke?unction", True),
        ("*", True),
        (["lambda:GetFunction", "lambda:INVOKEFUNCTION"], True),
        ("lambda:InvokeFunctionUrl", False),
        ("lambda:GetFunction", False),
        ("lambda:InvokeFunction2", False),
        ("s3:InvokeFunction", False),
    ],
)
def test_actions_are_matched_without_regard_to_case(action: Any, allowed: bool) -> None:
    campaign = f"arn:aws:mobiletargeting:{REGION}:{ACCOUNT_ID}:apps/a1/campaigns/c1"
    stmt = statement(sid="s", action="lambda:InvokeFunction", principal=PINPOINT, resource="fn", source_arn=EVERY_APP)
    stmt["Action"] = action
    assert (pinpoint_may_invoke([stmt], REGION, campaign, ACCOUNT_ID) is None) is allowed


# --- CreateFunction and UpdateFunctionConfiguration: stored or refused ----------------------------------------------

REFUSED: dict[str, Any] = {
    "TenancyConfig": {"TenantIsolationMode": "PER_TENANT"},
    "CapacityProviderConfig": {
        "LambdaManagedInstancesCapacityProviderConfig": {
            "CapacityProviderArn": f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:capacity-provider:cp"
        }
    },
    "DurableConfig": {"RetentionPeriodInDays": 7, "ExecutionTimeout": 60},
    "RuntimeConfig": {"RuntimeArn": f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:runtime:my-runtime", "RuntimeAlias": "v1"},
    "AcceleratorConfig": {"AcceleratorMemorySize": 1024},
    "PublishTo": "LATEST_PUBLISHED",
    "Publish": True,
    "VpcConfig": {"SubnetIds": ["subnet-1"]},
    "Layers": [f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:layer:l:1"],
    "FileSystemConfigs": [
        {"Arn": f"arn:aws:elasticfilesystem:{REGION}:{ACCOUNT_ID}:access-point/fsap-1", "LocalMountPath": "/mnt/efs"}
    ],
    "ImageConfig": {"Command": ["x"]},
    "SnapStart": {"ApplyOn": "PublishedVersions"},
    "DeadLetterConfig": {"TargetArn": f"arn:aws:sqs:{REGION}:{ACCOUNT_ID}:dlq"},
    "CodeSigningConfigArn": f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:code-signing-config:csc-0123456789abcdefg",
}
"""A member pointcast refuses, with a value that asks for what it names."""

STORED = {
    "FunctionName", "Runtime", "Role", "Handler", "Code", "Description", "Timeout", "MemorySize", "PackageType",
    "Environment", "KMSKeyArn", "TracingConfig", "Tags", "Architectures", "EphemeralStorage", "LoggingConfig",
    "RevisionId",
}  # fmt: skip
"""Members pointcast stores and returns, checks, or acts on."""


def _members(shape: str) -> set[str]:
    model = botocore.session.get_session().get_service_model("lambda")
    return set(model.shape_for(shape).members)


@pytest.mark.parametrize("shape", ["CreateFunctionRequest", "UpdateFunctionConfigurationRequest"])
def test_every_member_of_the_model_is_stored_or_refused(shape: str) -> None:
    refused = set(service._UNSUPPORTED) | {"Publish", "PublishTo"}
    assert _members(shape) - STORED - refused == set(), "in botocore's model; pointcast neither keeps nor refuses it"
    assert set(REFUSED) == refused


@pytest.mark.parametrize("member", sorted(set(REFUSED) & _members("CreateFunctionRequest")))
def test_create_function_refuses_a_member_it_would_drop(lam, member: str) -> None:
    name = _name()
    with pytest.raises(lam.exceptions.InvalidParameterValueException, match=f"CreateFunctionRequest.{member} "):
        deploy(lam, name, allow=None, **{member: REFUSED[member]})
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.get_function(FunctionName=name)


@pytest.mark.parametrize("member", sorted(set(REFUSED) & _members("UpdateFunctionConfigurationRequest")))
def test_update_function_configuration_refuses_a_member_it_would_drop(lam, member: str) -> None:
    name = _name()
    revision = deploy(lam, name, allow=None)["RevisionId"]
    with pytest.raises(
        lam.exceptions.InvalidParameterValueException, match=f"UpdateFunctionConfigurationRequest.{member} "
    ):
        lam.update_function_configuration(FunctionName=name, **{member: REFUSED[member]})
    assert lam.get_function_configuration(FunctionName=name)["RevisionId"] == revision


def test_empty_or_false_members_ask_for_nothing_and_are_accepted(lam) -> None:
    name = _name()
    deploy(lam, name, allow=None, Publish=False, DurableConfig={}, Layers=[])
    lam.update_function_configuration(FunctionName=name, DurableConfig={}, Layers=[], DeadLetterConfig={})


@pytest.mark.parametrize(
    ("code", "member"),
    [
        ({"S3Bucket": "bucket", "S3Key": "key.zip"}, "Code.S3Bucket"),
        ({"ImageUri": f"{ACCOUNT_ID}.dkr.ecr.{REGION}.amazonaws.com/repo:1"}, "Code.ImageUri"),
        ({"SourceKMSKeyArn": KEY}, "Code.SourceKMSKeyArn"),
    ],
)
def test_create_function_refuses_code_members_beside_the_zip(lam, code: dict[str, str], member: str) -> None:
    zipped = zip_code({"index.py": "def handler(e, c):\n    return 1\n"})
    with pytest.raises(lam.exceptions.InvalidParameterValueException, match=f"CreateFunctionRequest.{member} "):
        lam.create_function(FunctionName=_name(), Runtime="python3.12", Role=ROLE, Handler="index.handler",
                            Code={"ZipFile": zipped, **code})  # fmt: skip


@pytest.mark.parametrize(
    ("change", "member"),
    [
        ({"Publish": True}, "Publish"),
        ({"PublishTo": "LATEST_PUBLISHED"}, "PublishTo"),
        ({"S3Bucket": "bucket", "S3Key": "key.zip"}, "S3Bucket"),
        ({"SourceKMSKeyArn": KEY}, "SourceKMSKeyArn"),
    ],
)
def test_update_function_code_refuses_what_it_would_drop(lam, change: dict[str, Any], member: str) -> None:
    name = _name()
    created = deploy(lam, name, allow=None)
    zipped = zip_code({"index.py": "def handler(e, c):\n    return 2\n"})
    with pytest.raises(lam.exceptions.InvalidParameterValueException, match=f"UpdateFunctionCodeRequest.{member} "):
        lam.update_function_code(FunctionName=name, ZipFile=zipped, **change)
    assert lam.get_function_configuration(FunctionName=name)["CodeSha256"] == created["CodeSha256"]
