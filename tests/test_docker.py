"""docker/: the compose file and the Dockerfile, checked without a Docker engine.

Every service built from the regsweep image must run a console script the
image installs (``regsweep``, ``dask``, ``mlflow``) with arguments that the
real command-line parser of that script accepts (click's ``make_context``
parses and validates without running anything), and a regsweep command's
config (mounted from ``configs/``) must validate with its ``--set``
overrides. Every published port binds 127.0.0.1.
"""

from __future__ import annotations

import re
import shlex
import sys
from importlib.metadata import entry_points
from pathlib import Path

import click
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DOCKER = ROOT / "docker"
IMAGE_SCRIPTS = {"regsweep", "dask", "mlflow"}


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((DOCKER / "compose.yaml").read_text())


def _image_services(compose: dict) -> dict[str, dict]:
    return {name: s for name, s in compose["services"].items() if s.get("image") == "regsweep:latest"}


def _argv(service: dict) -> list[str]:
    """The regsweep/dask/mlflow command line a service runs (from a ``sh -c`` loop: the command in it)."""
    command = service["command"]
    entry = service.get("entrypoint")
    if entry is None:
        return list(command)
    assert entry == ["/bin/sh", "-c"], entry
    script = " ".join(command).replace("$$", "$")  # compose's escape for a literal $
    lex = shlex.shlex(script, posix=True, punctuation_chars=";|&")
    lex.whitespace_split = True
    tokens = list(lex)
    start = next(i for i, t in enumerate(tokens) if t in IMAGE_SCRIPTS)
    stop = next((i for i in range(start, len(tokens)) if tokens[i] in {";", "||", "&&", "|"}), len(tokens))
    return tokens[start:stop]


def _parse(cmd: click.Command, prog: str, args: list[str]) -> click.Context:
    """Parse ``args`` as ``prog`` would, down to the sub-command; raises click's usage errors."""
    ctx = cmd.make_context(prog, list(args), resilient_parsing=False)
    if isinstance(cmd, click.Group):
        rest = [*ctx._protected_args, *ctx.args]
        name, sub, sub_args = cmd.resolve_command(ctx, rest)
        return _parse(sub, f"{prog} {name}", sub_args)
    return ctx


def _console_script(name: str) -> click.Command:
    (ep,) = {e.value: e for e in entry_points(group="console_scripts") if e.name == name}.values()
    script = ep.load()
    if not isinstance(script, click.Command):  # regsweep's `entry` runs the click group `main`, then exits fast
        script = getattr(sys.modules[script.__module__], "main")
    assert isinstance(script, click.Command), ep.value
    return script


def _dask_subcommand(name: str) -> click.Command:
    (ep,) = [e for e in entry_points(group="dask_cli") if e.name == name]
    return ep.load()


def _check_argv(argv: list[str]) -> click.Context:
    script, args = argv[0], argv[1:]
    assert script in IMAGE_SCRIPTS, f"{script!r} is not a console script of the image"
    if script == "dask":  # `dask` dispatches its first argument to the dask_cli entry points
        return _parse(_dask_subcommand(args[0]), f"dask {args[0]}", args[1:])
    return _parse(_console_script(script), script, args)


def test_every_service_runs_an_entry_point_of_the_image_with_valid_arguments(compose):
    services = _image_services(compose)
    assert {"mlflow", "scheduler", "worker-1", "worker-2", "sweep", "retrain"} <= set(services)
    seen = {}
    for name, service in services.items():
        argv = _argv(service)
        ctx = _check_argv(argv)
        seen[name] = (argv[:2], ctx)
    assert seen["scheduler"][0] == ["dask", "scheduler"] and seen["worker-1"][0] == ["dask", "worker"]
    assert seen["mlflow"][0] == ["mlflow", "server"] and seen["retrain"][0] == ["regsweep", "retrain"]
    workers = [n for n, (argv, _) in seen.items() if argv == ["dask", "worker"]]
    assert len(workers) == 2
    for n in workers:
        assert seen[n][1].params["scheduler"] == "tcp://scheduler:8786"


def test_the_check_rejects_a_bad_argument():
    """The parser check is real: a misspelt option or a missing argument fails."""
    with pytest.raises(click.UsageError):
        _check_argv(["dask", "worker", "tcp://scheduler:8786", "--nthread", "2"])
    with pytest.raises(click.UsageError):
        _check_argv(["regsweep", "retrain", "--summary-json", "x.json"])  # CONFIG missing
    with pytest.raises(click.UsageError):
        _check_argv(["mlflow", "server", "--port", "five"])


def test_regsweep_commands_use_mounted_configs_that_validate(compose):
    from pipeline.config import load_config

    for name, service in _image_services(compose).items():
        argv = _argv(service)
        if argv[0] != "regsweep":
            continue
        ctx = _check_argv(argv)
        mounts = {m.split(":")[1]: m.split(":")[0] for m in service["volumes"]}
        assert (DOCKER / mounts["/configs"]).resolve() == ROOT / "configs"
        config = Path(ctx.params["config"])
        assert config.parent == Path("/configs")
        local = ROOT / "configs" / config.name
        cfg = load_config(local, ctx.params["overrides"])
        # the host names of the config are this compose file's services
        assert cfg.cluster.address == "tcp://scheduler:8786"
        assert "@postgres:5432/" in cfg.search.storage and cfg.tracking.uri == "http://mlflow:5000"
        assert re.search(r"/state/", ctx.params["summary_json"]), name


def test_published_ports_bind_127_0_0_1_and_services_have_healthchecks(compose):
    for name, service in compose["services"].items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} on every interface"
        if "profiles" not in service and name != "retrain":  # long-running servers
            assert service.get("healthcheck", {}).get("test"), f"{name} has no healthcheck"
    ports = {name: [p.split(":")[1] for p in s.get("ports", [])] for name, s in compose["services"].items()}
    assert ports["mlflow"] == ["5000"] and set(ports["scheduler"]) == {"8786", "8787"}


def test_dependencies_wait_for_healthy_services(compose):
    services = compose["services"]
    for name, service in services.items():
        for dep, cond in (service.get("depends_on") or {}).items():
            assert dep in services, f"{name} depends on unknown service {dep}"
            assert cond == {"condition": "service_healthy"} and services[dep].get("healthcheck"), (name, dep)


def test_dockerfile_slim_base_non_root_and_installs_the_repository():
    lines = []
    for raw in (DOCKER / "Dockerfile").read_text().replace("\\\n", " ").splitlines():
        if raw.strip() and not raw.lstrip().startswith("#"):
            lines.append(raw.strip())
    instructions = [(ln.split(None, 1)[0].upper(), ln.split(None, 1)[1] if " " in ln else "") for ln in lines]
    base = [arg for ins, arg in instructions if ins == "FROM"]
    assert len(base) == 1 and re.fullmatch(r"python:3\.1[1-9]-slim", base[0]), base
    users = [arg.strip() for ins, arg in instructions if ins == "USER"]
    assert users and users[-1] not in ("root", "0"), users
    copies = [arg.split() for ins, arg in instructions if ins == "COPY"]
    for args in copies:
        for src in args[:-1]:
            assert (ROOT / src).exists(), f"COPY source {src} is not in the repository"
    # what building the package reads besides pipeline/ (readme, licence) is copied and not ignored
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    needed = {project["readme"], *project.get("license-files", [])}
    copied = {src for args in copies for src in args[:-1]}
    ignore = (DOCKER / "Dockerfile.dockerignore").read_text().splitlines()
    for name in needed:
        assert name in copied and f"!{name}" in ignore, f"{name} is needed to build the package"
    installs = [arg for ins, arg in instructions if ins == "RUN" and "pip install" in arg]
    assert any('"/src[postgres]"' in arg for arg in installs), installs
    import tomllib

    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert any(dep.startswith("psycopg2") for dep in extras["postgres"])
    cmd = yaml.safe_load(next(arg for ins, arg in instructions if ins == "CMD"))  # JSON form
    assert cmd == ["regsweep", "--help"]
    with pytest.raises(click.exceptions.Exit) as info:  # the real parser prints the help and exits 0
        _check_argv(cmd)
    assert info.value.exit_code == 0
