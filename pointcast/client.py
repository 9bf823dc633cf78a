"""A small signed client for pointcast's own routes (``/pointcast/...``), used by the CLI.

Credentials and region come from botocore's usual chain (environment, ``~/.aws`` files, profiles), exactly as
for boto3 and the AWS CLI pointed at pointcast.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import botocore.exceptions
import botocore.session
import httpx
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest

from pointcast.aws.errors import AwsError


class ClientError(Exception):
    """The server answered with an AWS error envelope (or not at all)."""


class PointcastClient:
    def __init__(self, endpoint_url: str, *, profile: str | None = None, region: str | None = None) -> None:
        try:
            url = httpx.URL(endpoint_url.strip())
        except httpx.InvalidURL:
            url = None
        if url is None or url.scheme not in ("http", "https") or not url.host:
            raise ClientError(
                "--endpoint-url must be an http:// or https:// URL, such as http://127.0.0.1:8787 "
                f"(got {endpoint_url!r})"
            )
        try:
            session = botocore.session.Session(profile=profile)
            credentials = session.get_credentials()
        except botocore.exceptions.BotoCoreError as exc:  # an unknown profile, a broken ~/.aws file
            raise ClientError(str(exc)) from None
        if credentials is None:
            raise ClientError(
                "no AWS credentials found: export AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
                "(pointcast serve prints them on first start)"
            )
        self.endpoint_url = endpoint_url.strip().rstrip("/")
        self.region = region or session.get_config_variable("region") or "us-east-1"
        self._credentials = credentials.get_frozen_credentials()
        self._http = httpx.Client(timeout=30)
        self.boto_session = session

    def pinpoint(self) -> Any:
        return self.boto_session.create_client("pinpoint", endpoint_url=self.endpoint_url, region_name=self.region)

    def request(self, method: str, path: str, params: dict[str, str] | None = None) -> Any:
        url = self.endpoint_url + path + (f"?{urlencode(params)}" if params else "")
        aws_request = AWSRequest(method=method, url=url, data=b"")
        SigV4Auth(self._credentials, "mobiletargeting", self.region).add_auth(aws_request)
        try:
            response = self._http.request(method, url, headers=dict(aws_request.headers.items()))
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            raise ClientError(f"cannot reach pointcast at {self.endpoint_url}: {exc}") from None
        try:
            body = response.json()
        except ValueError:
            raise ClientError(
                f"{self.endpoint_url} answered {method} {path} with HTTP {response.status_code} and no JSON: is it "
                "pointcast's URL?"
            ) from None
        if response.status_code >= 400:
            error = response.headers.get("x-amzn-ErrorType", AwsError.code)
            message = body.get("Message", response.text) if isinstance(body, dict) else response.text
            raise ClientError(f"{error}: {message}")
        return body

    def pages(self, path: str, page_size: int = 1000) -> Any:
        token = None
        while True:
            params = {"page-size": str(page_size), **({"token": token} if token else {})}
            page = self.request("GET", path, params)
            yield from page["Item"]
            token = page.get("NextToken")
            if not token:
                return
