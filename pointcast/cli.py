"""The ``pointcast`` command: serve the APIs, run the demo, print the OpenAPI description."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

import orjson
import typer
from rich.console import Console
from rich.markup import escape

from pointcast import __version__

app = typer.Typer(add_completion=False, no_args_is_help=True, help="pointcast: Amazon Pinpoint's API, self-hosted.")
err = Console(stderr=True)


def _settings(**overrides: Any) -> Any:
    from pydantic import ValidationError

    from pointcast.settings import Settings

    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        first = exc.errors()[0]
        name = str(first["loc"][0]) if first["loc"] else ""
        given = f" (got {first['input']!r})" if "input" in first else ""
        where = f"POINTCAST_{name.upper()}" if name else "a setting"  # every setting has one; not every one a flag
        err.print(f"[red]error:[/red] {where}: {escape(first['msg'])}{escape(given)}")
        raise typer.Exit(2) from None


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Address to listen on (env POINTCAST_HOST)")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on (env POINTCAST_PORT)")] = None,
    data_dir: Annotated[
        Path | None, typer.Option(help="SQLite file and credentials live here (env POINTCAST_DATA_DIR)")
    ] = None,
    database_url: Annotated[
        str | None, typer.Option(help="PostgreSQL URL instead of SQLite (env POINTCAST_DATABASE_URL)")
    ] = None,
    account_id: Annotated[
        str | None, typer.Option(help="Account id in ARNs and webhook checks (env POINTCAST_ACCOUNT_ID)")
    ] = None,
    region: Annotated[str | None, typer.Option(help="Region in ARNs (env POINTCAST_REGION)")] = None,
    ca_bundle: Annotated[
        str | None, typer.Option(help="Extra trusted CAs for webhooks (env POINTCAST_CA_BUNDLE)")
    ] = None,
    allow_any_credentials: Annotated[
        bool | None,
        typer.Option("--allow-any-credentials", help="Accept any signature (throwaway local use only)"),
    ] = None,
    log_level: Annotated[
        str | None, typer.Option(help="critical, error, warning, info, debug, trace (env POINTCAST_LOG_LEVEL)")
    ] = None,
) -> None:
    """Serve every API pointcast speaks on one port.

    Every setting is also an environment variable (POINTCAST_*); README.md's Configuration table lists them all.
    """
    import uvicorn

    from pointcast.boot import build, credentials_path, limit_malloc_arenas, load_credentials

    settings = _settings(
        host=host,
        port=port,
        data_dir=data_dir,
        database_url=database_url,
        account_id=account_id,
        region=region,
        ca_bundle=ca_bundle,
        allow_any_credentials=allow_any_credentials,
        log_level=log_level,
    )
    if settings.malloc_arenas:
        limit_malloc_arenas(settings.malloc_arenas)
    try:
        keys, created = load_credentials(settings)
    except (OSError, ValueError) as exc:  # an unwritable data dir, a malformed POINTCAST_CREDENTIALS
        err.print(f"[red]error:[/red] cannot start: {escape(str(exc))}")
        raise typer.Exit(1) from None
    if settings.allow_any_credentials:
        err.print(
            "[bold red]WARNING: --allow-any-credentials: requests are NOT authenticated. "
            "Use this only for throwaway local work.[/bold red]"
        )
    elif created:
        akid, secret = next(iter(keys.items()))
        err.print(
            f"Created a key pair in {credentials_path(settings)}. Use it with:\n"
            f"  export AWS_ACCESS_KEY_ID={akid}\n  export AWS_SECRET_ACCESS_KEY={secret}"
        )
    try:
        asgi = build(settings, keys)
    except Exception as exc:  # a clean one-line error instead of a traceback
        err.print(f"[red]error:[/red] cannot start: {escape(str(exc))}")
        raise typer.Exit(1) from None
    store = "PostgreSQL" if settings.database_url else f"SQLite in {settings.data_dir}"
    err.print(
        f"pointcast {__version__} on http://{settings.host}:{settings.port} ({store}, account "
        f"{settings.account_id}, {settings.region})"
    )
    uvicorn.run(
        asgi,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        access_log=False,
        timeout_graceful_shutdown=10,
    )


@app.command()
def demo(
    data_dir: Annotated[
        Path,
        typer.Option(
            help="Where the demo keeps its store: a new or empty directory, or one an earlier demo made (it is "
            "deleted and remade); any other directory is refused"
        ),
    ] = Path("pointcast-data/demo"),
) -> None:
    """Start pointcast on SQLite with a local HTTPS webhook receiver and run a campaign tour against it."""
    from pointcast.demo import run_demo

    raise typer.Exit(run_demo(data_dir))


@app.command()
def openapi() -> None:
    """Print the OpenAPI description of the operations pointcast serves."""
    from pointcast.api import build_apis
    from pointcast.aws.openapi import openapi_document

    typer.echo(orjson.dumps(openapi_document(build_apis()), option=orjson.OPT_INDENT_2).decode())


campaigns_app = typer.Typer(no_args_is_help=True, help="Watch campaign runs and read their send events.")
apps_app = typer.Typer(no_args_is_help=True, help="Project settings that are pointcast's own.")
functions_app = typer.Typer(
    no_args_is_help=True, help="What functions did (their invocations and logs), and the Node.js runtime client."
)
app.add_typer(campaigns_app, name="campaigns")
app.add_typer(apps_app, name="apps")
app.add_typer(functions_app, name="functions")

EndpointUrl = Annotated[
    str, typer.Option("--endpoint-url", envvar="POINTCAST_URL", help="pointcast's URL (env POINTCAST_URL)")
]
Profile = Annotated[str | None, typer.Option(help="AWS profile with the credentials pointcast accepts")]


@contextmanager
def _one_line_errors() -> Iterator[None]:
    """A client error (or an error envelope from the server) becomes one red line and exit status 1."""
    from pointcast.client import ClientError

    try:
        yield
    except ClientError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from None


def _client(endpoint_url: str, profile: str | None) -> Any:
    from pointcast.client import PointcastClient

    with _one_line_errors():
        return PointcastClient(endpoint_url, profile=profile)


@campaigns_app.command("watch")
def campaigns_watch(
    application_id: str,
    campaign_id: str,
    endpoint_url: EndpointUrl = "http://127.0.0.1:8787",
    profile: Profile = None,
    timeout: Annotated[float, typer.Option(help="Stop watching after this many seconds")] = 3600.0,
) -> None:
    """Live progress of a campaign: endpoints planned / sent / failed, rate and ETA, until its run completes."""
    from pointcast.watch import watch

    with _one_line_errors():
        status = watch(_client(endpoint_url, profile), application_id, campaign_id, timeout)
    raise typer.Exit(status)


@campaigns_app.command("events")
def campaigns_events(
    application_id: str,
    campaign_id: str,
    endpoint_url: EndpointUrl = "http://127.0.0.1:8787",
    profile: Profile = None,
    outcomes: Annotated[bool, typer.Option("--outcomes", help="Per-endpoint outcomes instead of events")] = False,
) -> None:
    """Print the campaign's _campaign.send events (Pinpoint's event-stream format), one JSON object per line."""
    client = _client(endpoint_url, profile)
    kind = "outcomes" if outcomes else "events"
    with _one_line_errors():
        for item in client.pages(f"/pointcast/v1/apps/{application_id}/campaigns/{campaign_id}/{kind}"):
            typer.echo(orjson.dumps(item).decode())


@campaigns_app.command("attempts")
def campaigns_attempts(
    application_id: str,
    campaign_id: str,
    batch_id: Annotated[str, typer.Argument(help="A BatchId, as /outcomes and --outcomes give it")],
    endpoint_url: EndpointUrl = "http://127.0.0.1:8787",
    profile: Profile = None,
) -> None:
    """Every attempt on one batch of the campaign (hook calls and deliveries): status, error, the response's start."""
    client = _client(endpoint_url, profile)
    path = f"/pointcast/v1/apps/{application_id}/campaigns/{campaign_id}/batches/{batch_id}/attempts"
    with _one_line_errors():
        found = client.request("GET", path)
    for item in found["Attempts"]:
        typer.echo(orjson.dumps(item).decode())


@apps_app.command("webhook-secret")
def apps_webhook_secret(
    application_id: str,
    endpoint_url: EndpointUrl = "http://127.0.0.1:8787",
    profile: Profile = None,
    delete: Annotated[bool, typer.Option("--delete", help="Stop signing this project's webhooks")] = False,
) -> None:
    """Create or rotate the project's Standard Webhooks signing secret (printed once), or delete it."""
    client = _client(endpoint_url, profile)
    with _one_line_errors():
        result = client.request("DELETE" if delete else "POST", f"/pointcast/v1/apps/{application_id}/webhook-secret")
    typer.echo("deleted" if delete else result["Secret"])


@functions_app.command("logs")
def functions_logs(
    function: Annotated[str, typer.Argument(help="A hosted function's name, or the ARN of one in AWS Lambda")],
    endpoint_url: EndpointUrl = "http://127.0.0.1:8787",
    profile: Profile = None,
    limit: Annotated[int, typer.Option(help="How many of the newest invocations")] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per invocation")] = False,
) -> None:
    """The newest invocations of a function (Invoke, custom channel, FILTER and DELIVERY hooks) with their logs."""
    client = _client(endpoint_url, profile)
    with _one_line_errors():
        path = f"/pointcast/v1/functions/{quote(function, safe=':$')}/invocations"
        found = client.request("GET", path, {"limit": str(limit)})
    if not found["Invocations"]:
        typer.echo(f"no invocations of {function} are recorded", err=True)
    for item in found["Invocations"]:
        if as_json:
            typer.echo(orjson.dumps(item).decode())
            continue
        source = f" for {item['Source']}" if item["Source"] else ""
        typer.echo(
            f"{item['Started']}  {item['Kind']:<8} {item['Outcome']:<9} {item['DurationMs']:>9.1f} ms  "
            f"{item['RequestId']}{source}"
        )
        if item["Error"]:
            typer.echo(f"  error: {item['Error']}")
        for line in (item["Logs"] or "").splitlines():
            typer.echo(f"  | {line}")


@functions_app.command("install-node-ric")
def functions_install_node_ric(
    prefix: Annotated[
        Path | None,
        typer.Option(help="Install here (default: node-ric in this virtual environment, else in ~/.cache/pointcast)"),
    ] = None,
    if_missing: Annotated[bool, typer.Option("--if-missing", help="Do nothing if it is installed there")] = False,
    install_build_tools: Annotated[
        bool,
        typer.Option(
            "--install-build-tools",
            help="apt-get install the Debian packages the build needs that are missing (as root)",
        ),
    ] = False,
) -> None:
    """Install AWS's Node.js runtime interface client (npm aws-lambda-ric) for Node.js function workers.

    npm builds its native part, which needs node, npm, a C++ compiler, make, cmake and autotools. A server started
    after this runs Node.js functions under it (POINTCAST_NODE_RIC=auto; with --prefix elsewhere, set
    POINTCAST_NODE_RIC to that path); without it they run pointcast's bootstrap.js.
    """
    import os
    import shutil
    import subprocess

    from pointcast.functions.runtime import node_ric

    target = prefix or node_ric.default_prefix()
    found = node_ric.package_dir(target)
    node = shutil.which("node")
    if if_missing and found is not None and not (node and node_ric.check(found, node)):
        typer.echo(f"{node_ric.PACKAGE} is installed: {found}")
        return  # (one this node cannot load, built for another Node.js version, is built again)
    missing = node_ric.missing_tools()
    if missing and install_build_tools:
        apt = shutil.which("apt-get")
        if apt is None or os.geteuid() != 0:
            err.print("[red]error:[/red] --install-build-tools needs apt-get and root")
            raise typer.Exit(1)
        packages = sorted(set(missing.values()))
        err.print(f"apt-get install {' '.join(packages)}")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        if subprocess.run([apt, "install", "-y", "-q", *packages], env=env, check=False).returncode != 0:
            subprocess.run([apt, "update", "-q"], env=env, check=False)  # a fresh machine's package lists
            subprocess.run([apt, "install", "-y", "-q", *packages], env=env, check=False)
    err.print(f"installing {node_ric.PACKAGE} {node_ric.VERSION} into {target} (npm builds its native part) ...")
    try:
        found = node_ric.install(target)
    except node_ric.NodeRicError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from None
    typer.echo(f"{node_ric.PACKAGE} is installed: {found}")


@app.command("api-table")
def api_table() -> None:
    """Print docs/api.md: every Pinpoint operation and whether pointcast serves it."""
    from pointcast.apidoc import api_table as table

    typer.echo(table(), nl=False)


@app.command()
def version() -> None:
    """Print the version."""
    typer.echo(__version__)


def main() -> None:
    app()
