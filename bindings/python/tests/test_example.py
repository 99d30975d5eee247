"""examples/python/pull_list_remove.py runs against the real registry."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import imgsvc
from conftest import REPO

EXAMPLE = REPO / "examples" / "python" / "pull_list_remove.py"


def run_example(root: pathlib.Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(EXAMPLE), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "IMGSVC_ROOT": str(root)},
    )


def test_example_pull_list_remove(tmp_path: pathlib.Path, registry: str):
    ref = f"{registry}/fixture/debian:v1"
    done = run_example(tmp_path, ref)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith(f"pulled {ref} as sha256:")
    image_id = lines[0].rsplit(" ", 1)[1]
    assert any(line.startswith(image_id[7:20]) and ref in line for line in lines), lines
    assert f"removed {image_id}" in lines
    assert lines[-1] == f"0 image(s) left in {tmp_path}"
    assert f"pulling {ref} (4 layers," in done.stderr
    assert "100.0%" in done.stderr.splitlines()[-1]
    with imgsvc.ImageService(tmp_path) as svc:  # it really used $IMGSVC_ROOT
        assert svc.list() == []
        assert (tmp_path / "index.json").is_file()


def test_example_errors(tmp_path: pathlib.Path, registry: str):
    done = run_example(tmp_path, f"{registry}/fixture/small:no-such-tag")
    assert done.returncode == 1
    assert "error (NotFoundError)" in done.stderr
    assert run_example(tmp_path).returncode == 2
