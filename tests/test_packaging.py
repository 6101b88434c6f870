"""pyproject.toml (ranges, for `pip install -e .` in an existing torch/vLLM environment) agrees with
requirements.txt (exact pins, for the README's two commands and CI)."""

import re
import tomllib

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.conftest import REPO


def _pins() -> dict[str, str]:
    pins = {}
    for line in (REPO / "requirements.txt").read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            m = re.fullmatch(r"([A-Za-z0-9_.\-\[\]]+)==([^\s;]+)", line)
            assert m, f"requirements.txt: {line!r} is not an exact pin"
            pins[canonicalize_name(m.group(1).split("[")[0])] = m.group(2)
    return pins


def _project() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]


def test_every_pin_lies_in_its_pyproject_range():
    pins = _pins()
    project = _project()
    reqs = [Requirement(r) for r in project["dependencies"]]
    reqs += [Requirement(r) for extra in project["optional-dependencies"].values() for r in extra]
    for req in reqs:
        name = canonicalize_name(req.name)
        assert name in pins, f"pyproject.toml needs {req.name} but requirements.txt does not pin it"
        assert req.specifier.contains(pins[name], prereleases=True), \
            f"requirements.txt pins {name}=={pins[name]}, outside pyproject.toml's range {req.specifier}"


def test_every_pin_is_a_dependency_or_a_test_extra():
    project = _project()
    declared = {canonicalize_name(Requirement(r).name) for r in project["dependencies"]}
    declared |= {canonicalize_name(Requirement(r).name) for extra in project["optional-dependencies"].values()
                 for r in extra}
    missing = sorted(set(_pins()) - declared)
    assert not missing, f"pinned in requirements.txt but absent from pyproject.toml: {missing}"


def test_console_entry_point_is_the_cli_main():
    from src import cli

    target = _project()["scripts"]["image-edit-benchmark"]
    module, func = target.split(":")
    assert module == "src.cli" and getattr(cli, func) is cli.main
