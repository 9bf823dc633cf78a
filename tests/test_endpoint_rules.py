"""Rules Pinpoint applies when endpoints are written, through boto3: at most 15 endpoints per user (a push endpoint
takes the place of the user's oldest push endpoint), and EndpointStatus ACTIVE on every write that does not say."""

from __future__ import annotations

import pytest


def sms(user: str, n: int, **extra: object) -> dict[str, object]:
    return {"ChannelType": "SMS", "Address": f"+1555{n:07d}", "User": {"UserId": user}, **extra}


def user_ids(pinpoint, app_id: str, user: str) -> list[str]:
    items = pinpoint.get_user_endpoints(ApplicationId=app_id, UserId=user)["EndpointsResponse"]["Item"]
    return sorted(item["Id"] for item in items)


def test_a_sixteenth_endpoint_of_a_user_is_refused(pinpoint, app_id) -> None:
    for n in range(15):
        pinpoint.update_endpoint(ApplicationId=app_id, EndpointId=f"s{n:02d}", EndpointRequest=sms("u1", n))
    with pytest.raises(pinpoint.exceptions.BadRequestException, match=r"EndpointRequest\.User\.UserId: user 'u1'"):
        pinpoint.update_endpoint(ApplicationId=app_id, EndpointId="s15", EndpointRequest=sms("u1", 15))
    assert user_ids(pinpoint, app_id, "u1") == [f"s{n:02d}" for n in range(15)]
    # Writing one of the 15 again is no new member; an endpoint of no user is not counted either.
    pinpoint.update_endpoint(
        ApplicationId=app_id, EndpointId="s03", EndpointRequest=sms("u1", 3, Attributes={"a": ["1"]})
    )
    pinpoint.update_endpoint(ApplicationId=app_id, EndpointId="lone", EndpointRequest={"ChannelType": "SMS"})
    # A batch that would make 16 names the item; nothing of it is written.
    batch = [{"Id": "b0", **sms("u2", 0)}] + [{"Id": f"b{n}", **sms("u2", n)} for n in range(1, 16)]
    with pytest.raises(pinpoint.exceptions.BadRequestException, match=r"Item\[15\]\.User\.UserId: user 'u2'"):
        pinpoint.update_endpoints_batch(ApplicationId=app_id, EndpointBatchRequest={"Item": batch})
    with pytest.raises(pinpoint.exceptions.NotFoundException):
        pinpoint.get_user_endpoints(ApplicationId=app_id, UserId="u2")
    # Moving an endpoint to another user frees its place.
    pinpoint.update_endpoint(ApplicationId=app_id, EndpointId="s00", EndpointRequest={"User": {"UserId": "u3"}})
    pinpoint.update_endpoint(ApplicationId=app_id, EndpointId="s15", EndpointRequest=sms("u1", 15))
    assert len(user_ids(pinpoint, app_id, "u1")) == 15


def test_a_push_endpoint_takes_the_place_of_the_oldest_push_endpoint(pinpoint, app_id) -> None:
    for n in range(13):
        pinpoint.update_endpoint(ApplicationId=app_id, EndpointId=f"s{n:02d}", EndpointRequest=sms("u", n))
    for name, day in (("old-gcm", "2024-01-01"), ("new-apns", "2025-01-01")):
        request = {"ChannelType": "GCM" if "gcm" in name else "APNS", "Address": name, "User": {"UserId": "u"}}
        request["EffectiveDate"] = f"{day}T00:00:00.000Z"
        pinpoint.update_endpoint(ApplicationId=app_id, EndpointId=name, EndpointRequest=request)
    fresh = {"ChannelType": "GCM", "Address": "token", "User": {"UserId": "u", "UserAttributes": {"x": ["1"]}}}
    pinpoint.update_endpoint(ApplicationId=app_id, EndpointId="fresh-gcm", EndpointRequest=fresh)
    members = user_ids(pinpoint, app_id, "u")
    assert len(members) == 15 and "fresh-gcm" in members and "old-gcm" not in members
    old = pinpoint.get_endpoint(ApplicationId=app_id, EndpointId="old-gcm")["EndpointResponse"]
    assert old["EndpointStatus"] == "INACTIVE" and "UserId" not in old.get("User", {})
    # With no push endpoint left to give up its place, a push endpoint is refused too.
    for n in range(13, 15):
        pinpoint.update_endpoint(
            ApplicationId=app_id,
            EndpointId="new-apns" if n == 13 else "fresh-gcm",
            EndpointRequest=sms("u", n, ChannelType="SMS"),
        )
    with pytest.raises(pinpoint.exceptions.BadRequestException, match="none of them is a push endpoint"):
        pinpoint.update_endpoint(
            ApplicationId=app_id, EndpointId="late", EndpointRequest={"ChannelType": "GCM", "User": {"UserId": "u"}}
        )


def test_a_write_that_does_not_say_makes_the_endpoint_active(pinpoint, app_id) -> None:
    pinpoint.update_endpoint(
        ApplicationId=app_id, EndpointId="e", EndpointRequest={"ChannelType": "SMS", "EndpointStatus": "INACTIVE"}
    )
    assert (
        pinpoint.get_endpoint(ApplicationId=app_id, EndpointId="e")["EndpointResponse"]["EndpointStatus"] == "INACTIVE"
    )
    pinpoint.update_endpoint(
        ApplicationId=app_id, EndpointId="e", EndpointRequest={"Attributes": {"a": ["b"]}, "EndpointStatus": "INACTIVE"}
    )
    assert (
        pinpoint.get_endpoint(ApplicationId=app_id, EndpointId="e")["EndpointResponse"]["EndpointStatus"] == "INACTIVE"
    )
    pinpoint.update_endpoint(ApplicationId=app_id, EndpointId="e", EndpointRequest={"Attributes": {"a": ["c"]}})
    assert pinpoint.get_endpoint(ApplicationId=app_id, EndpointId="e")["EndpointResponse"]["EndpointStatus"] == "ACTIVE"


def test_the_oldest_push_endpoint_is_the_oldest_in_time_not_in_text(pinpoint, app_id) -> None:
    """EffectiveDate is compared as an instant: 2024-06-01T00:00:00+14:00 is 2024-05-31T10:00Z, before 12:00Z."""
    for n in range(13):
        pinpoint.update_endpoint(ApplicationId=app_id, EndpointId=f"s{n:02d}", EndpointRequest=sms("u", n))
    for name, date in (("east", "2024-06-01T00:00:00+14:00"), ("west", "2024-05-31T12:00:00Z")):
        request = {"ChannelType": "GCM", "Address": name, "User": {"UserId": "u"}, "EffectiveDate": date}
        pinpoint.update_endpoint(ApplicationId=app_id, EndpointId=name, EndpointRequest=request)
    pinpoint.update_endpoint(
        ApplicationId=app_id, EndpointId="new", EndpointRequest={"ChannelType": "GCM", "User": {"UserId": "u"}}
    )
    members = user_ids(pinpoint, app_id, "u")
    assert "east" not in members and "west" in members and "new" in members


def test_an_import_leaves_out_the_rows_past_a_users_fifteen(pinpoint, app_id, tmp_path) -> None:
    from tests.test_imports import ndjson, run_import

    path = tmp_path / "many.json"
    path.write_text(
        ndjson(
            [
                {"Id": f"m{n:02d}", "ChannelType": "EMAIL", "Address": f"m{n}@x.example", "User": {"UserId": "crowd"}}
                for n in range(20)
            ]
        )
    )
    job = run_import(pinpoint, app_id, str(path), "JSON")
    assert job["JobStatus"] == "COMPLETED" and job["TotalProcessed"] == 20 and job["TotalFailures"] == 5, job
    assert all("user 'crowd' already has 15 endpoints" in f for f in job["Failures"]), job["Failures"]
    assert user_ids(pinpoint, app_id, "crowd") == [f"m{n:02d}" for n in range(15)]
