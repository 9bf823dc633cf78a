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

    def arn(self, region: str, account: str) -> str:
        return function_arn(self.region or region, self.account or account, self.name)

    def is_local(self, region: str, account: str) -> bool:
        """Whether the reference can name a function of this pointcast (its region and account, when it says)."""
        return self.region in (None, region) and self.account in (None, account)


def parse_ref(ref: str) -> FunctionRef | None:
    found = _REF.match(ref)
    if not found:
        return None
    return FunctionRef(found["name"], found["region"], found["account"] or found["short_account"], found["qualifier"])


def function_arn(region: str, account: str, name: str) -> str:
    return f"arn:aws:lambda:{region}:{account}:function:{name}"
