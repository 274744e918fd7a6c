"""`tunery serve`, `tunery deploy` and `tunery deployments ...`."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import click

from tunery.cli._common import Group, console, precision_option, print_json, print_list, threads_option
from tunery.compiled.cache import PRECISION_HELP, PRECISIONS


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Interface to listen on (0.0.0.0 for every interface: that needs an API key, or "
                   "--insecure-no-key).")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535), help="Port to listen on.")
@click.option("--api-key", "api_keys", multiple=True, metavar="KEY",
              help="Require this key as 'Authorization: Bearer KEY' on /v1 routes (repeatable; "
                   "TUNERY_API_KEY may also hold comma-separated keys).")
@click.option("--insecure-no-key", is_flag=True,
              help="Listen on a non-loopback --host without an API key: anyone who can reach it can use it.")
@click.option("--allowed-host", "allowed_hosts", multiple=True, metavar="NAME[:PORT]",
              help="Also answer requests sent to this host name (repeatable; '*' for any; TUNERY_ALLOWED_HOSTS "
                   "may hold more, comma-separated). Loopback names and the --host address always work; "
                   "other names are refused so that a DNS-rebinding web page cannot reach the server.")
@click.option("--cors-origin", "cors_origins", multiple=True, metavar="ORIGIN",
              help="Let web pages of this origin (e.g. http://localhost:3000) call the API from a browser, "
                   "with CORS headers (repeatable; '*' for any site; TUNERY_CORS_ORIGINS). Other sites' "
                   "pages are refused.")
@click.option("--no-worker", is_flag=True, help="Do not run fine-tuning jobs in this process.")
@click.option("--allow-flow-code", is_flag=True,
              help="Let every client (not only those on this machine) open local flow folders and write and "
                   "run a prompt flow's Python: every key holder can then run code as you.")
@threads_option("CPU threads per forward pass, PyTorch and ONNX engines alike, and for the training jobs "
                "of the worker (default: every CPU this process may use; TUNERY_NUM_THREADS).")
@precision_option("models and deployments (a deployment made with --precision keeps its own)",
                  process_default=True)
@click.option("--log-level", default="info", show_default=True,
              type=click.Choice(["critical", "error", "warning", "info", "debug"]), help="Server log level.")
def serve(host: str, port: int, api_keys: tuple[str, ...], insecure_no_key: bool, allowed_hosts: tuple[str, ...],
          cors_origins: tuple[str, ...], no_worker: bool, allow_flow_code: bool, log_level: str) -> None:
    """Serve the OpenAI-compatible API, the job worker and the web studio.

    Point any OpenAI client at the API base, e.g. openai.OpenAI(base_url="http://127.0.0.1:8000/v1").
    """
    from tunery.server.auth import check_exposure, configured_keys
    from tunery.server.run import serve as run

    shown = f"[{host}]" if ":" in host else ("127.0.0.1" if host in ("0.0.0.0", "") else host)
    url = f"http://{shown}:{port}"
    keys = configured_keys(api_keys)
    check_exposure(host, keys, insecure_no_key=insecure_no_key)  # before the banner says it serves
    if allow_flow_code:
        os.environ["TUNERY_ALLOW_FLOW_CODE"] = "1"  # read by create_app
    console.print(f"[bold]tunery[/] serving on {url}")
    console.print(f"  studio    {url}/")
    console.print(f"  API base  {url}/v1   (docs: {url}/docs)")
    console.print(f"  API keys  {len(keys)} required" if keys else "  API keys  none (anyone who can reach the port can use it)")
    console.print(f"  worker    {'off' if no_worker else 'on: fine-tuning jobs run in this process'}")
    if allow_flow_code:
        console.print("  flows     --allow-flow-code: every client may run Python in this server")
    run(host, port, api_keys=api_keys, worker=not no_worker, log_level=log_level, allowed_hosts=allowed_hosts,
        cors_origins=cors_origins, insecure_no_key=insecure_no_key)


@click.command()
@click.argument("model")
@click.option("--name", required=True, help="Deployment name, used as `model` in chat requests.")
@click.option("--tpm", type=click.IntRange(min=1), default=None, help="Tokens-per-minute limit (none by default).")
@click.option("--rpm", type=click.IntRange(min=1), default=None,
              help="Requests-per-minute limit (none by default); over either limit a request gets a 429.")
@click.option("--content-filter", type=click.Choice(["off", "default", "strict"]), default="default",
              show_default=True, help="Blocklist filter on prompts and answers: off; default (phrases asking for "
              "or giving serious harm); strict (default plus profanity and slurs). A blocked prompt gets a 400, "
              "a blocked answer is cut.")
@click.option("--block", "blocklist", multiple=True, metavar="TERM", help="Extra blocked term (repeatable).")
@click.option("--precision", type=click.Choice(["auto", *PRECISIONS]), default=None,
              help=f"Serve this deployment at this precision whatever the server's default: {PRECISION_HELP}; "
                   "auto: the server's default.")
@click.option("--json", "as_json", is_flag=True, help="Print the deployment as JSON.")
def deploy(model: str, name: str, tpm: int | None, rpm: int | None, content_filter: str,
           blocklist: tuple[str, ...], precision: str | None, as_json: bool) -> None:
    """Deploy MODEL (a base model, fine-tune, checkpoint, or an ONNX export folder) under a name.

    A running server picks the deployment up at once.
    """
    from tunery.errors import InvalidInput, TuneryError
    from tunery.export import MANIFEST, is_export_dir, register_export
    from tunery.models import registry
    from tunery.serving import deployments

    registered = None  # the model this command registers for an export folder
    if is_export_dir(model):  # an ONNX export folder: served by the ONNX Runtime engine
        known = {r.id for r in registry.list_models()}
        model = register_export(model).id
        registered = model if model not in known else None
    elif Path(model).expanduser().is_dir() and registry.find(model) is None:
        raise InvalidInput(f"{model} is a folder but not a tunery export (it has no {MANIFEST})", param="model",
                           hint=f"export a model into it with `tunery export MODEL -f onnx -o {model}`, or add "
                                "a Hugging Face folder first with `tunery models add NAME FOLDER`")
    try:
        dep = deployments.create(name, model, tpm=tpm, content_filter=content_filter, blocklist=list(blocklist),
                                 precision=precision, rpm=rpm)
    except TuneryError:
        # a refused deployment leaves no model behind: it would hold the folder (`tunery export
        # --force` refuses a registered one) under a name the user never chose
        if registered is not None:
            with contextlib.suppress(TuneryError):  # deployed meanwhile by another command: it stays
                registry.remove(registered, delete_files=False)
        raise
    if as_json:
        print_json(dep.to_openai())
        return
    console.print(f"[green]deployed[/] {dep.model} as [bold]{dep.name}[/] ({_describe(dep)})")


def _describe(dep) -> str:
    """A deployment's limits, filter and precision, in words."""
    limits = [f"{dep.tpm} tokens/minute"] * bool(dep.tpm) + [f"{dep.rpm} requests/minute"] * bool(dep.rpm)
    return f"{', '.join(limits) or 'no rate limit'}, content filter {dep.content_filter}" + (
        f", {dep.precision}" if dep.precision else "")


@click.group(cls=Group)
def deployments() -> None:
    """List, show, update and delete deployments."""


@deployments.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def list_cmd(as_json: bool) -> None:
    """List deployments."""
    from tunery.serving import deployments as store

    print_list(store.list_deployments(), as_json=as_json, to_json=lambda d: d.to_openai(),
               empty="No deployments. Create one with [bold]tunery deploy MODEL --name NAME --tpm 10000[/].",
               columns=("name", "model", "tpm", "rpm", "content filter"),
               row=lambda d: (d.name, d.model, str(d.tpm or "-"), str(d.rpm or "-"), d.content_filter))


@deployments.command()
@click.argument("name")
def show(name: str) -> None:
    """Show one deployment as JSON."""
    from tunery.serving import deployments as store

    print_json(store.get(name).to_openai())


@deployments.command()
@click.argument("name")
@click.option("--tpm", type=click.IntRange(min=1), default=None, help="A new tokens-per-minute limit.")
@click.option("--no-tpm", is_flag=True, help="Lift the tokens-per-minute limit.")
@click.option("--rpm", type=click.IntRange(min=1), default=None, help="A new requests-per-minute limit.")
@click.option("--no-rpm", is_flag=True, help="Lift the requests-per-minute limit.")
@click.option("--content-filter", type=click.Choice(["off", "default", "strict"]), default=None,
              help="A new content-filter level (see `tunery deploy --help`).")
@click.option("--block", "blocklist", multiple=True, metavar="TERM",
              help="Blocked term (repeatable): the list replaces the deployment's.")
@click.option("--no-blocklist", is_flag=True, help="Clear the deployment's own blocked terms.")
@click.option("--precision", type=click.Choice(["auto", *PRECISIONS]), default=None,
              help="Serve it at this precision from now on; auto: the server's default.")
@click.option("--json", "as_json", is_flag=True, help="Print the deployment as JSON.")
def update(name: str, tpm: int | None, no_tpm: bool, rpm: int | None, no_rpm: bool, content_filter: str | None,
           blocklist: tuple[str, ...], no_blocklist: bool, precision: str | None, as_json: bool) -> None:
    """Change a deployment's limits, content filter, blocked terms or precision; what is not given
    stays. A running server applies it from the next request. The model stays: deploy it under
    another name to serve another."""
    from tunery.serving import deployments as store

    for value, lift, flag in ((tpm, no_tpm, "tpm"), (rpm, no_rpm, "rpm")):
        if value is not None and lift:
            raise click.BadParameter(f"give --{flag} N or --no-{flag}, not both", param_hint=f"--{flag}")
    if blocklist and no_blocklist:
        raise click.BadParameter("give --block TERM or --no-blocklist, not both", param_hint="--block")
    changes = {"tpm": None if no_tpm else tpm, "rpm": None if no_rpm else rpm, "content_filter": content_filter,
               "precision": precision, "blocklist": [] if no_blocklist else list(blocklist) or None}
    lifted = {"tpm": no_tpm, "rpm": no_rpm}
    given = {k: v for k, v in changes.items() if v is not None or lifted.get(k)}
    if not given:
        raise click.UsageError("nothing to change: give --tpm, --no-tpm, --rpm, --no-rpm, --content-filter, "
                               "--block, --no-blocklist or --precision")
    dep = store.update(name, **given)
    if as_json:
        print_json(dep.to_openai())
        return
    console.print(f"[green]updated[/] [bold]{dep.name}[/] ({dep.model}: {_describe(dep)})")


@deployments.command()
@click.argument("name")
def delete(name: str) -> None:
    """Delete a deployment (the model stays)."""
    from tunery.serving import deployments as store

    dep = store.delete(name)
    console.print(f"deleted deployment {dep.name}")
