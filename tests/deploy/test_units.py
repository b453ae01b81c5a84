"""The examples in deploy/: units that systemd accepts, running the commands the tests run, named in the READMEs."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import typer

from cli.main import app
from config import Settings
from tests.distributed.helpers import README, readme_block

DEPLOY = README.parent / "deploy"
VENV = "/opt/forumflow/.venv/bin/"
UNITS = sorted(p for p in DEPLOY.iterdir() if p.suffix in (".service", ".timer"))


def _unit(path: Path) -> dict[str, list[str]]:
    """``Key`` → values (keys may repeat) of a unit file, sections merged."""
    keys: dict[str, list[str]] = {}
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if line and not line.startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            keys.setdefault(key.strip(), []).append(value.strip())
    return keys


def _exec(name: str) -> list[str]:
    (command,) = _unit(DEPLOY / name)["ExecStart"]
    return shlex.split(command)


def test_the_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.skip("systemd-analyze is not installed")
    bindir = f"{Path(sys.executable).parent}/"
    for unit in UNITS:  # the same units, pointed at this virtualenv's commands (verify checks they exist)
        (tmp_path / unit.name).write_text(unit.read_text(encoding="utf-8").replace(VENV, bindir), encoding="utf-8")
    result = subprocess.run(
        [tool, "verify", *(str(tmp_path / u.name) for u in UNITS)], capture_output=True, text=True, timeout=120, check=False,
    )
    assert result.returncode == 0 and result.stdout + result.stderr == "", result.stdout + result.stderr


def test_the_prefect_units_run_the_readme_commands_the_distributed_test_runs() -> None:
    steps = {shlex.split(c)[1]: shlex.split(c) for c in readme_block("### Scale-out") if c.startswith("prefect ")}
    assert _exec("prefect-server.service") == [f"{VENV}prefect", *steps["server"][1:]]
    assert _exec("prefect-worker.service") == [f"{VENV}prefect", *steps["worker"][1:]]


@pytest.mark.parametrize("unit", [u.name for u in UNITS if u.name.startswith("forumflow-") and u.suffix == ".service"])
def test_the_forumflow_units_run_commands_and_options_that_exist(unit: str) -> None:
    argv = _exec(unit)
    assert argv[0] == f"{VENV}forumflow"
    command = getattr(typer.main.get_command(app), "commands", {}).get(argv[1])
    if command is None and argv[1] == "web":
        pytest.skip("forumflow web is not part of this checkout yet")
    assert command is not None, f"{unit}: no command forumflow {argv[1]}"
    with command.make_context(argv[1], argv[2:]) as ctx:  # parses the options (an unknown one fails), runs nothing
        assert set(ctx.params) >= {p.name for p in command.params if any(o in argv for o in p.opts)}


def test_the_proxy_forwards_to_the_addresses_the_units_listen_on() -> None:
    upstreams = set(re.findall(r"proxy_pass http://([\d.]+:\d+);", (DEPLOY / "nginx-forumflow.conf").read_text(encoding="utf-8")))
    listening = set()
    for name in ("forumflow-web.service", "prefect-server.service"):
        argv = _exec(name)
        listening.add(f"{argv[argv.index('--host') + 1]}:{argv[argv.index('--port') + 1]}")
    assert upstreams == listening == {"127.0.0.1:8000", "127.0.0.1:4200"}


def test_the_environment_files_name_settings_forumflow_reads() -> None:
    known = {Settings.variable(name) for name in Settings.model_fields} | {"FORUMFLOW_CODE_DIR"}  # prefect.yaml's pull step
    names = re.findall(r"^(FORUMFLOW_\w+)=", (DEPLOY / "forumflow.env").read_text(encoding="utf-8"), re.M)
    assert names and set(names) <= known, set(names) - known
    for unit in UNITS:
        for env_file in _unit(unit).get("EnvironmentFile", []):
            assert (DEPLOY / Path(env_file.lstrip("-")).name).is_file(), f"{unit.name}: {env_file} is not in deploy/"


def test_every_example_is_named_in_the_readmes() -> None:
    guide = (DEPLOY / "README.md").read_text(encoding="utf-8")
    main = README.read_text(encoding="utf-8")
    scale_out = main[main.index("### Scale-out"):main.index("\n## ", main.index("### Scale-out"))]
    for path in DEPLOY.iterdir():
        if path.name != "README.md":
            assert f"`{path.name}`" in guide or f"`{path.stem}`" in guide or f"`.{path.suffix[1:]}`" in guide, path.name
    for name in ("prefect-server.service", "prefect-worker.service", "forumflow-web.service", "forumflow-dispatch.service",
                 "nginx-forumflow.conf", "deploy/README.md"):
        assert name in scale_out, name
