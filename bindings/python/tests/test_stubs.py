"""The stubs agree with the module beyond what mypy.stubtest checks
(tests/python.sh runs stubtest itself): exception bases, exports, and the
example type-checks against them."""

from __future__ import annotations

import ast
import importlib.resources
import subprocess
import sys

import imgsvc
from conftest import REPO


def stub_tree() -> ast.Module:
    text = importlib.resources.files("imgsvc").joinpath("_native.pyi").read_text()
    return ast.parse(text)


def test_stubs_and_marker_ship_in_the_package():
    files = importlib.resources.files("imgsvc")
    assert files.joinpath("py.typed").is_file()
    assert files.joinpath("_native.pyi").is_file()


def test_exception_bases_match_stubs():
    # stubtest does not compare base classes; a wrong base would mislead type checkers.
    classes = [n for n in stub_tree().body if isinstance(n, ast.ClassDef) and n.name.endswith("Error")]
    assert {c.name for c in classes} == {n for n in imgsvc.__all__ if n.endswith("Error")}
    for c in classes:
        runtime = getattr(imgsvc, c.name)
        stub_bases = [ast.unparse(b) for b in c.bases]
        runtime_bases = []
        for b in runtime.__bases__:
            if b.__module__ == "imgsvc":
                runtime_bases.append(b.__name__)
            elif b.__name__ == c.name:  # imgsvc.TimeoutError shadows the built-in
                runtime_bases.append(f"builtins.{b.__name__}")
            else:
                runtime_bases.append(b.__name__)
        assert stub_bases == runtime_bases, c.name


def test_all_matches_stub_all():
    stub_all = next(
        ast.literal_eval(n.value)
        for n in stub_tree().body
        if isinstance(n, ast.Assign) and any(getattr(t, "id", None) == "__all__" for t in n.targets)
    )
    assert sorted(stub_all) == sorted(imgsvc._native.__all__)
    assert sorted(imgsvc.__all__) == sorted(stub_all)


def test_example_type_checks(tmp_path):
    example = REPO / "examples" / "python" / "pull_list_remove.py"
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--cache-dir", str(tmp_path / "mypy"), str(example)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
