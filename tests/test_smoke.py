def test_server_answers(pinpoint, app_id):
    got = pinpoint.get_app(ApplicationId=app_id)["ApplicationResponse"]
    assert got["Id"] == app_id and got["Name"] == "test"
