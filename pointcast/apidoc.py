"""docs/api.md, generated: every Pinpoint operation, and whether pointcast serves it (``pointcast api-table``)."""

from __future__ import annotations

from pointcast.api import build_apis

# Operations served with something missing: what is missing.
PARTIAL = {
    "CreateCampaign": "runs webhook custom channels; Lambda function delivery, CampaignHook and built-in channels "
    "(email, SMS, push) are accepted and stored but their endpoints end FAILED with a reason until they land",
    "UpdateCampaign": "as CreateCampaign",
    "CreateSegment": "dimensional segments and segment groups; imported segments come from CreateImportJob",
    "CreateImportJob": "S3Url is one file given as a local path, file:// or https:// URL (pointcast cannot reach S3; "
    "no S3 folders or prefixes); RegisterEndpoints false is refused",
    "PutEvents": "endpoints updated and events stored; event-triggered campaigns and event streams not yet",
}

HEADER = """# Supported operations

pointcast serves Amazon Pinpoint's REST API (botocore's `pinpoint` 2016-12-01 model, rest-json, signing name
`mobiletargeting`) on one port. Request and response bodies are the model's payload shapes; status codes are the
model's. **supported**: every member of the operation behaves as in Pinpoint (the decisions where the documents leave
room are in [contract.md](contract.md)). **partial**: served, with what is missing said. **not yet**: the call gets a
`BadRequestException` that says so.

{supported} supported, {partial} partial, {missing} not yet. The OpenAPI description of the served routes is
[openapi.json](openapi.json) (also served at `/openapi.json`). pointcast's own routes (run progress, outcomes,
send events, webhook secret) are under `/pointcast/v1/` and described in the README.

| operation | route | status | notes |
| --- | --- | --- | --- |
"""


def api_table() -> str:
    api = build_apis()[0]
    model, handlers = api.router.model, api.handlers
    rows = []
    for name in sorted(model.operation_names):
        http = model.operation_model(name).http
        if name not in handlers:
            status, note = "not yet", ""
        else:
            status, note = ("partial", PARTIAL[name]) if name in PARTIAL else ("supported", "")
        rows.append(f"| {name} | `{http['method']} {http['requestUri']}` | {status} | {note} |")
    partial = len([n for n in handlers if n in PARTIAL])
    counts = {
        "supported": len(handlers) - partial,
        "partial": partial,
        "missing": len(model.operation_names) - len(handlers),
    }
    return HEADER.format(**counts) + "\n".join(rows) + "\n"
