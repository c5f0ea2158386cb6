"""Pinned versions: the esp-ppq release the ``.espdl`` reader and interpreter are verified against is
the one installed, and the lock file agrees with pyproject.toml."""

from __future__ import annotations

import re
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10
    import tomli as tomllib

REPO = Path(__file__).resolve().parents[1]


def pinned(requirement_name: str) -> str:
    """The exact version pyproject.toml pins ``requirement_name`` to (``name==X``)."""
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    for dep in deps:
        m = re.fullmatch(rf"{re.escape(requirement_name)}\s*==\s*([^;\s]+)\s*(;.*)?", dep)
        if m:
            return m.group(1)
    raise AssertionError(f"pyproject.toml does not pin {requirement_name} with ==; its dependencies: {deps}")


def locked() -> dict[str, str]:
    """``name -> version`` of every ``name==version`` line in requirements.lock."""
    lines = (REPO / "requirements.lock").read_text().splitlines()
    return {m.group(1).lower(): m.group(2) for m in (re.match(r"([A-Za-z0-9_.-]+)==(\S+)", ln) for ln in lines) if m}


def test_installed_esp_ppq_is_the_verified_release():
    verified = pinned("esp-ppq")
    try:
        installed = version("esp-ppq")
    except PackageNotFoundError:
        installed = "none"
    assert installed == verified, (
        f"esp-ppq {installed} is installed, but the .espdl reader and integer interpreter are verified bit for bit "
        f"against esp-ppq {verified} (the pin in pyproject.toml). Install the verified release with "
        f'`pip install esp-ppq=={verified}` (or `pip install -c requirements.lock -e ".[test]"`); to move to '
        f"esp-ppq {installed}, run tests/test_quant_espdl.py and tests/test_espdl_reader.py against it "
        f"(the interpreter must equal esp-ppq's simulator on every image) and then change the pin."
    )


def test_lock_file_pins_what_pyproject_pins():
    lock = locked()
    for name in ("esp-ppq", "torch"):
        assert lock.get(name) is not None, f"requirements.lock has no {name}==... line"
        assert lock[name].split("+")[0] == pinned(name), (
            f"requirements.lock pins {name}=={lock[name]}, "
            f"pyproject.toml {name}=={pinned(name)}: regenerate the lock file (see its first lines)"
        )
    assert lock["torch"].endswith("+cpu"), "the lock file pins the CPU build of torch"
    assert not [n for n in lock if n.startswith("nvidia-")], "the lock file pulls in CUDA packages"
