"""SigV4 at the door: unsigned, wrongly signed, expired, tampered and mis-scoped requests get 403 in the envelope."""

from __future__ import annotations

import json
import socket
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from pointcast.boot import private_data_dir
from tests.support.functions import deploy
from tests.support.server import Server, client, server_env
from tests.support.signing import signed_request


def assert_forbidden(response: httpx.Response, text: str) -> None:
    assert response.status_code == 403, response.text
    assert response.headers["x-amzn-ErrorType"] == "ForbiddenException"
    body = response.json()
    assert body["RequestID"] == response.headers["x-amzn-RequestId"]
    assert text in body["Message"], body["Message"]


def test_signed_request_passes(server: Server) -> None:
    response = signed_request("GET", f"{server.url}/v1/apps")
    assert response.status_code == 200 and "Item" in response.json()


def test_unsigned_request_is_refused(server: Server) -> None:
    assert_forbidden(httpx.get(f"{server.url}/v1/apps"), "Missing Authentication Token")


@pytest.mark.parametrize("path", ["/v1/apps", "/2015-03-31/functions", "/pointcast/clock"])
def test_an_unsigned_request_is_refused_before_its_body_is_read(server: Server, path: str) -> None:
    """The headers alone refuse it: before, the server read a body of up to 70 MB first, for anyone on the port
    (20 such connections took its memory from 123 MB to 1.4 GB). Here only 1 byte of a 60 MB body is sent."""
    url = httpx.URL(server.url)
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {url.netloc.decode()}\r\nContent-Type: application/json\r\n"
        "Content-Length: 60000000\r\n\r\n{"
    )
    with socket.create_connection((url.host, url.port), timeout=5) as sock:
        sock.sendall(head.encode())
        answer = b""
        for _ in range(10):  # the answer comes without the rest of the body (else: a timeout)
            answer += sock.recv(65536)
            if b"\r\n\r\n" in answer and answer.endswith(b"}"):
                break
    assert answer.startswith(b"HTTP/1.1 403 "), answer[:200]
    assert b"Missing Authentication Token" in answer


def test_an_unsigned_payload_is_refused(server: Server) -> None:
    """UNSIGNED-PAYLOAD is S3's: with it, a Pinpoint request's signature covered no body, and a captured request
    could be sent again with another one (it made an application named as the replayer chose)."""
    headers = {"X-Amz-Content-SHA256": "UNSIGNED-PAYLOAD"}
    response = signed_request("POST", f"{server.url}/v1/apps", b'{"Name": "evil"}', headers=headers)
    assert_forbidden(response, "UNSIGNED-PAYLOAD is for S3 only")


def test_wrong_secret_and_unknown_key(server: Server) -> None:
    bad = client("pinpoint", server.url, secret="not-the-secret")
    with pytest.raises(bad.exceptions.ForbiddenException, match="signature we calculated does not match"):
        bad.get_apps()
    stranger = client("pinpoint", server.url, key="AKIDUNKNOWN")
    with pytest.raises(stranger.exceptions.ForbiddenException, match="AKIDUNKNOWN"):
        stranger.get_apps()


@pytest.mark.parametrize("minutes", [-16, 16])
def test_expired_or_future_signature(server: Server, minutes: int) -> None:
    when = datetime.now(UTC) + timedelta(minutes=minutes)
    assert_forbidden(signed_request("GET", f"{server.url}/v1/apps", when=when), "Signature expired")


def test_within_skew_passes(server: Server) -> None:
    when = datetime.now(UTC) - timedelta(minutes=14)
    assert signed_request("GET", f"{server.url}/v1/apps", when=when).status_code == 200


def test_tampered_body_is_refused(server: Server) -> None:
    url = f"{server.url}/v1/apps"
    good = signed_request("POST", url, json.dumps({"Name": "a"}).encode())
    assert good.status_code == 201
    # Re-send the signed headers with a different body.
    request = good.request
    tampered = httpx.post(url, content=json.dumps({"Name": "b"}).encode(), headers=dict(request.headers))
    assert_forbidden(tampered, "signature we calculated does not match")


def test_wrong_service_scope_is_refused(server: Server) -> None:
    assert_forbidden(signed_request("GET", f"{server.url}/v1/apps", service="lambda"), "mobiletargeting")


def test_garbled_authorization_header(server: Server) -> None:
    response = httpx.get(f"{server.url}/v1/apps", headers={"Authorization": "Bearer xyz"})
    assert_forbidden(response, "not a valid AWS4-HMAC-SHA256")


def test_generated_credentials_and_allow_any(tmp_path) -> None:
    env = server_env(None, None)
    del env["POINTCAST_CREDENTIALS"]
    server = Server(tmp_path / "fresh", env)
    server.start()
    try:
        stored = json.loads((tmp_path / "fresh" / "credentials.json").read_text())
        assert "export AWS_ACCESS_KEY_ID=" + stored["aws_access_key_id"] in server.log()
        pp = client("pinpoint", server.url, key=stored["aws_access_key_id"], secret=stored["aws_secret_access_key"])
        assert pp.get_apps()["ApplicationsResponse"]["Item"] == []
        lam = client("lambda", server.url, key=stored["aws_access_key_id"], secret=stored["aws_secret_access_key"])
        deploy(lam, "private", allow=None)
        assert lam.invoke(FunctionName="private", Payload=b"{}")["StatusCode"] == 200
        # Secrets live here (keys, webhook secrets, functions' environments and code): the owner's only.
        fresh = tmp_path / "fresh"
        kept = [fresh / "credentials.json", *fresh.glob("*.sqlite3*"), fresh / "functions", fresh / "workers"]
        modes = {path.name: path.stat().st_mode & 0o777 for path in kept}
        assert modes.pop("functions") == modes.pop("workers") == 0o700, modes
        assert len(modes) >= 2 and set(modes.values()) == {0o600}, modes
        private_data_dir(tmp_path / "new" / "data")  # a data dir pointcast makes (this one the test made first)
        assert (tmp_path / "new" / "data").stat().st_mode & 0o777 == 0o700
        server.stop()
        server.start()  # the same pair is reused, not replaced
        assert json.loads((tmp_path / "fresh" / "credentials.json").read_text()) == stored
        assert pp.get_apps()["ResponseMetadata"]["HTTPStatusCode"] == 200
    finally:
        server.stop()

    loose = Server(tmp_path / "loose", {**server_env(None, None), "POINTCAST_ALLOW_ANY_CREDENTIALS": "true"})
    loose.start()
    try:
        assert "NOT authenticated" in loose.log()
        anyone = client("pinpoint", loose.url, key="ANY", secret="thing")
        assert anyone.get_apps()["ResponseMetadata"]["HTTPStatusCode"] == 200
    finally:
        loose.stop()
