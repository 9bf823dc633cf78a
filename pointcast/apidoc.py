"""docs/api.md, generated: every operation of the APIs pointcast speaks, and whether it is served (``api-table``)."""

from __future__ import annotations

from pointcast.api import Api, build_apis

# Operations served with something missing: what is missing.
PARTIAL = {
    "pinpoint": {
        "CreateCampaign": "runs custom channels (webhook or Lambda function) and CampaignHook FILTER and DELIVERY; "
        "built-in channels (email, SMS, push) are accepted and stored, and their endpoints end FAILED "
        "(CHANNEL_UNAVAILABLE) unless a DELIVERY hook delivers for them; Frequency EVENT and IN_APP_EVENT are "
        "refused (campaigns triggered by events: not yet)",
        "UpdateCampaign": "as CreateCampaign",
        "CreateSegment": "dimensional segments and segment groups; imported segments come from CreateImportJob",
        "CreateImportJob": "S3Url is one file given as a local path, file:// or https:// URL (pointcast cannot reach "
        "S3; no S3 folders or prefixes); RegisterEndpoints false is refused",
        "PutEvents": "endpoints updated and events stored; event-triggered campaigns and event streams not yet",
    },
    "lambda": {
        "CreateFunction": "Zip packages given as ZipFile (no S3, no images, no layers, no VPC); python3.x and nodejs* "
        "runtimes; Publish is refused (only $LATEST exists)",
        "UpdateFunctionCode": "ZipFile only; Publish is refused (only $LATEST exists)",
        "GetFunction": "Code.Location is a pointcast URL (with a token) instead of a presigned S3 URL",
        "Invoke": "InvocationType Event runs once in the background: a failure is recorded, not retried twice as in "
        "Lambda, and an event still waiting when the server stops is lost",
        "AddPermission": "statements are stored and returned as Lambda writes them; pointcast itself checks only "
        "what Pinpoint checks (lambda:InvokeFunction for the Pinpoint principal with AWS:SourceArn)",
    },
}

HEADER = """# Supported operations

pointcast serves, on one port, Amazon Pinpoint's REST API (botocore's `pinpoint` model, rest-json, signing name
`mobiletargeting`) and the part of AWS Lambda's API that deploying and permitting Pinpoint extensions takes
(botocore's `lambda` model, signing name `lambda`). Request and response bodies are the models' payload shapes;
status codes are the models'. **supported**: every member of the operation behaves as in AWS (the decisions where the
documents leave room are in [contract.md](contract.md)). **partial**: served, with what is missing said. **not yet**:
the call gets an error that says so.

The OpenAPI description of the served routes is [openapi.json](openapi.json) (also served at `/openapi.json`).
pointcast's own routes (run progress, outcomes, send events, webhook secret, function invocations) are under
`/pointcast/v1/` and described in the README.
"""

SECTION = """
## {title}

{supported} supported, {partial} partial, {missing} not yet.

| operation | route | status | notes |
| --- | --- | --- | --- |
"""

TITLES = {"pinpoint": "Amazon Pinpoint (`pinpoint`)", "lambda": "AWS Lambda (`lambda`)"}


def _section(api: Api) -> str:
    model, handlers, partial = api.router.model, api.handlers, PARTIAL.get(api.model, {})
    rows = []
    for name in sorted(model.operation_names):
        http = model.operation_model(name).http
        if name not in handlers:
            status, note = "not yet", ""
        else:
            status, note = ("partial", partial[name]) if name in partial else ("supported", "")
        rows.append(f"| {name} | `{http['method']} {http['requestUri']}` | {status} | {note} |")
    served_partial = len([n for n in handlers if n in partial])
    counts = {
        "title": TITLES.get(api.model, api.model),
        "supported": len(handlers) - served_partial,
        "partial": served_partial,
        "missing": len(model.operation_names) - len(handlers),
    }
    return SECTION.format(**counts) + "\n".join(rows) + "\n"


def api_table() -> str:
    return HEADER + "".join(_section(api) for api in build_apis())
