"""pyproject.toml declares the same packages and ranges as the requirements files the
set-up installs from, so `pip install .` and scripts/setup.sh give the same environment."""

import tomllib

from crypto_pipeline.core.paths import PROJECT_ROOT


def requirements(name: str) -> list[str]:
    lines = (PROJECT_ROOT / name).read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def test_pyproject_lists_the_requirements():
    project = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["project"]
    assert project["dependencies"] == requirements("requirements.txt")
    assert project["optional-dependencies"]["dev"] == requirements("requirements-dev.txt")
