"""Function references as the Lambda API and Pinpoint accept them: a name, ``ACCOUNT:function:NAME``, a full ARN,
each optionally qualified (``NAME:$LATEST``)."""

from __future__ import annotations

import re
from dataclasses import dataclass

NAME_RE = re.compile(r"^[a-zA-Z0-9_-]{1,64}\Z")
_REF = re.compile(
    r"^(?:arn:(?P<partition>aws[a-zA-Z-]*):lambda:(?P<region>[a-z0-9-]+):(?P<account>\d{12}):function:"
    r"|(?P<short_account>\d{12}):function:)?(?P<name>[a-zA-Z0-9_-]{1,64})(?::(?P<qualifier>[a-zA-Z0-9$_-]{1,128}))?\Z"
)


@dataclass(frozen=True, slots=True)
class FunctionRef:
    """A reference taken apart; ``region``/``account`` are None when the reference did not say."""

    name: str
    region: str | None
    account: str | None
    qualifier: str | None
    partition: str | None = None  # a full ARN's (aws, aws-cn, aws-us-gov, ...), kept when the ARN is made again

    def arn(self, region: str, account: str) -> str:
        return function_arn(self.region or region, self.account or account, self.name, self.partition or "aws")

    def is_local(self, region: str, account: str) -> bool:
        """Whether the reference can name a function of this pointcast (its region and account, when it says, in
        the aws partition: pointcast's own ARNs are arn:aws:...)."""
        return self.region in (None, region) and self.account in (None, account) and self.partition in (None, "aws")


def parse_ref(ref: str) -> FunctionRef | None:
    found = _REF.match(ref)
    if not found:
        return None
    account = found["account"] or found["short_account"]
    return FunctionRef(found["name"], found["region"], account, found["qualifier"], found["partition"])


def function_arn(region: str, account: str, name: str, partition: str = "aws") -> str:
    return f"arn:{partition}:lambda:{region}:{account}:function:{name}"
