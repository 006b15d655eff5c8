"""The README's commands are the ones CI runs."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def readme_commands() -> list[str]:
    return re.findall(r"```bash\n(.+?)\n```", (ROOT / "README.md").read_text())


def test_readme_opens_with_run_and_test_commands():
    run, test = readme_commands()[:2]
    setup = "python3 -m venv .venv && . .venv/bin/activate && pip install torch==2.13.0 && "
    assert run.startswith(setup) and test.startswith(setup)
    assert run.endswith("pip install -e . && stylelens serve")  # the app, on the embedded model
    assert "pytest" in test and "ruff check" in test


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert readme_commands()[1] in ci


def readme_layout() -> str:
    text = (ROOT / "README.md").read_text()
    return text.split("## Layout", 1)[1].split("```", 2)[1]


def test_the_readme_layout_names_every_module_and_benchmark():
    layout = readme_layout()
    package = ROOT / "backend" / "stylelens"
    missing = []
    for entry in sorted(package.iterdir()):
        if entry.is_dir() and (entry / "__init__.py").exists():
            name = f"{entry.name}/"
        elif entry.suffix == ".py" and entry.name != "__init__.py":
            name = entry.name
        else:
            continue
        if name not in layout:
            missing.append(name)
    for script in sorted((ROOT / "benchmarks").glob("*.py")):
        if script.name not in layout:
            missing.append(f"benchmarks/{script.name}")
    assert not missing, f"README's Layout does not name: {missing}"


def test_every_route_of_the_app_is_in_the_protocol_doc():
    from stylelens.api.routes import build_router
    from stylelens.settings import Settings

    doc = (ROOT / "docs" / "protocol.md").read_text()
    routes = {getattr(r, "path", "") for r in build_router(Settings()).routes}
    assert len(routes) >= 6  # the session, upload, mask, file... routes were read
    documented = [r for r in sorted(routes) if f" {r}`" in doc or f"`{r}`" in doc]
    assert documented == sorted(routes), sorted(routes - set(documented))
    assert "`/api/ws" in doc and "/healthz" in doc


# Layers that must not import upward: package -> the packages it may never import.
FORBIDDEN_IMPORTS = {
    "sessions": ("api", "jobs", "cluster"),
    "jobs": ("api", "cluster"),
    "api": ("cluster",),
    "cluster": ("api",),  # the app's factory is handed in (cluster/serve.py)
    "checkpoints": ("api", "jobs", "training", "evaluation"),
    "networks": ("api", "jobs", "data", "training", "evaluation", "checkpoints"),
}


def test_only_the_cluster_package_imports_ray():
    """Cluster mode is an extra: `stylelens serve` and everything else run without Ray."""
    package = ROOT / "backend" / "stylelens"
    users = sorted(
        str(p.relative_to(package))
        for p in package.rglob("*.py")
        if re.search(r"^\s*(import ray\b|from ray\b)", p.read_text(), re.M)
    )
    assert users and all(u.startswith("cluster/") or u == "api/cli.py" for u in users), users


def test_the_model_runtime_is_a_pipeline_of_values():
    """jobs/runtime.py runs the models on values: sessions' files, URLs and the wire's images
    are the session layer's (sessions.files, sessions.frames), put together in
    jobs/session_model.py."""
    import ast

    path = ROOT / "backend" / "stylelens" / "jobs" / "runtime.py"
    imported = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module)
        elif isinstance(node, ast.Import):
            imported |= {a.name for a in node.names}
    session_io = {"stylelens.sessions.storage", "stylelens.sessions.files",
                  "stylelens.sessions.urls", "stylelens.sessions.frames", "io"}  # fmt: skip
    assert not imported & session_io, imported & session_io
    assert "Storage" not in path.read_text() and "file_url" not in path.read_text()


def test_the_layers_do_not_import_upward():
    import ast

    package = ROOT / "backend" / "stylelens"
    broken = []
    for low, high in FORBIDDEN_IMPORTS.items():
        for path in sorted((package / low).rglob("*.py")):
            if path.name == "cli.py":  # a command registers itself; it is the top, not a layer
                continue
            for node in ast.walk(ast.parse(path.read_text())):
                names = []
                if isinstance(node, ast.ImportFrom) and node.module:
                    names = [node.module]
                elif isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                for name in names:
                    parts = name.split(".")
                    if parts[0] == "stylelens" and len(parts) > 1 and parts[1] in high:
                        broken.append(f"{path.relative_to(package)} imports {name}")
    assert not broken, broken
