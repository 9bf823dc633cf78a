"""The resource-policy check Pinpoint makes before invoking a function (seeds 000 and 001), case by case."""

from __future__ import annotations

import pytest

from pointcast.functions.policy import arn_like, pinpoint_may_invoke, statement

REGION, ACCOUNT = "us-east-1", "111122223333"
APP, CAMPAIGN = "dbaf6ec2226f0a9a8615e3ea5example", "95fee4cd1d7f5cd67987c1436example"
CAMPAIGN_ARN = f"arn:aws:mobiletargeting:{REGION}:{ACCOUNT}:apps/{APP}/campaigns/{CAMPAIGN}"
FUNCTION = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:myFunction"
PREFIX = f"arn:aws:mobiletargeting:{REGION}:{ACCOUNT}:"


def allow(source_arn: str | None, principal: str = f"pinpoint.{REGION}.amazonaws.com", **extra: str) -> dict:
    return statement(
        sid="sid0",
        action=extra.get("action", "lambda:InvokeFunction"),
        principal=principal,
        resource=FUNCTION,
        source_arn=source_arn,
        source_account=extra.get("source_account"),
    )


@pytest.mark.parametrize(
    "pattern",
    [
        PREFIX + "apps/*",  # seed 000
        PREFIX + "/apps/*",  # seed 003's older form
        PREFIX + "/apps/*/campaigns/*",  # seed 001
        PREFIX + f"apps/{APP}/*",  # project-restricted
        PREFIX + f"apps/{APP}",  # seed 000's project restriction: "replace the * ... with the unique ID of the project"
        PREFIX + f"/apps/{APP}",
        PREFIX + f"apps/{APP}/campaigns/{CAMPAIGN}",  # campaign-restricted (seed 000)
        PREFIX + f"/apps/{APP}/campaigns/{CAMPAIGN}",
        PREFIX + f"apps/{APP}/campaigns/95fee4cd1d7f5cd67987c1436exampl?",
        f"arn:aws:mobiletargeting:*:{ACCOUNT}:apps/*",
        "arn:aws:mobiletargeting:us-east-?:*:apps/*",
    ],
)
def test_allowed_forms(pattern: str) -> None:
    assert pinpoint_may_invoke([allow(pattern)], REGION, CAMPAIGN_ARN, ACCOUNT) is None


@pytest.mark.parametrize(
    "pattern",
    [
        PREFIX + "apps/otherapp/*",
        PREFIX + f"apps/{APP}/campaigns/someothercampaign",
        PREFIX + f"apps/{APP}/campaigns/95fee4cd1d7f5cd67987c1436exampl",  # no wildcard: must match whole
        f"arn:aws:mobiletargeting:{REGION}:999999999999:apps/*",
        f"arn:aws:mobiletargeting:eu-west-1:{ACCOUNT}:apps/*",
        f"arn:aws:lambda:{REGION}:{ACCOUNT}:apps/*",
    ],
)
def test_refused_forms(pattern: str) -> None:
    reason = pinpoint_may_invoke([allow(pattern)], REGION, CAMPAIGN_ARN, ACCOUNT)
    assert reason and CAMPAIGN_ARN in reason


def test_a_refusal_says_what_each_statement_lacks() -> None:
    statements = [
        {**allow(PREFIX + "apps/*", principal="sns.amazonaws.com"), "Sid": "sns"},
        {**allow(PREFIX + "apps/otherapp/*"), "Sid": "other"},
        {**allow(None), "Sid": "bare"},
        {**allow(PREFIX + "apps/*", action="lambda:GetFunction"), "Sid": "get"},
    ]
    reason = str(pinpoint_may_invoke(statements, REGION, CAMPAIGN_ARN, ACCOUNT))
    assert "statement 'sns' is for sns.amazonaws.com, not pinpoint.us-east-1.amazonaws.com" in reason
    assert f"statement 'other': ArnLike AWS:SourceArn {PREFIX}apps/otherapp/* does not match {CAMPAIGN_ARN}" in reason
    assert "statement 'bare' has no AWS:SourceArn condition" in reason
    assert "statement 'get' allows 'lambda:GetFunction', not lambda:InvokeFunction" in reason
    org = statement(sid="org", action="lambda:InvokeFunction", principal="*", resource=FUNCTION,
                    source_arn=PREFIX + "apps/*", principal_org_id="o-abc")  # fmt: skip
    assert "cannot hold for Pinpoint" in str(pinpoint_may_invoke([org], REGION, CAMPAIGN_ARN, ACCOUNT))


def test_no_policy_and_missing_source_arn_are_refused() -> None:
    assert "no resource policy" in str(pinpoint_may_invoke([], REGION, CAMPAIGN_ARN, ACCOUNT))
    # The seeds: "Your function policy requires a Condition block that includes an AWS:SourceArn key".
    assert pinpoint_may_invoke([allow(None)], REGION, CAMPAIGN_ARN, ACCOUNT) is not None


@pytest.mark.parametrize(
    ("principal", "allowed"),
    [
        (f"pinpoint.{REGION}.amazonaws.com", True),
        ("pinpoint.amazonaws.com", True),
        ("pinpoint.eu-west-1.amazonaws.com", False),
        ("s3.amazonaws.com", False),
        (ACCOUNT, False),
    ],
)
def test_principal(principal: str, allowed: bool) -> None:
    reason = pinpoint_may_invoke([allow(PREFIX + "apps/*", principal)], REGION, CAMPAIGN_ARN, ACCOUNT)
    assert (reason is None) is allowed


def test_action_source_account_and_deny() -> None:
    assert pinpoint_may_invoke([allow(PREFIX + "apps/*", action="lambda:GetFunction")], REGION, CAMPAIGN_ARN, ACCOUNT)
    assert pinpoint_may_invoke([allow(PREFIX + "apps/*", action="lambda:*")], REGION, CAMPAIGN_ARN, ACCOUNT) is None
    right = allow(PREFIX + "apps/*", source_account=ACCOUNT)
    wrong = allow(PREFIX + "apps/*", source_account="999999999999")
    assert pinpoint_may_invoke([right], REGION, CAMPAIGN_ARN, ACCOUNT) is None
    assert pinpoint_may_invoke([wrong], REGION, CAMPAIGN_ARN, ACCOUNT) is not None
    deny = {**allow(PREFIX + f"apps/{APP}/*"), "Sid": "no", "Effect": "Deny"}
    reason = pinpoint_may_invoke([allow(PREFIX + "apps/*"), deny], REGION, CAMPAIGN_ARN, ACCOUNT)
    assert reason and "denies" in reason


def test_statement_matches_seed_output() -> None:
    """Seed 000's add-permission output, member by member."""
    made = statement(
        sid="sid",
        action="lambda:InvokeFunction",
        principal="pinpoint.us-east-1.amazonaws.com",
        resource=FUNCTION,
        source_arn=PREFIX + "apps/*",
    )
    assert made == {
        "Sid": "sid",
        "Effect": "Allow",
        "Principal": {"Service": "pinpoint.us-east-1.amazonaws.com"},
        "Action": "lambda:InvokeFunction",
        "Resource": FUNCTION,
        "Condition": {"ArnLike": {"AWS:SourceArn": PREFIX + "apps/*"}},
    }


def test_arn_like_parts_are_matched_separately() -> None:
    assert arn_like("arn:aws:*", "arn:aws:x:y:z:w") is False  # six parts on both sides, or no match
    assert arn_like("arn:aws:mobiletargeting:*:*:*", CAMPAIGN_ARN) is True
    assert arn_like(PREFIX + "apps/*", CAMPAIGN_ARN.replace("apps/", "/apps/")) is True
    assert arn_like(PREFIX + "apps/[a-z]*", CAMPAIGN_ARN) is False  # only * and ? are wildcards
