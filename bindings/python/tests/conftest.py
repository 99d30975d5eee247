"""Shared fixtures: the real registry under test and fresh stores.

The registry is named by IMGSVC_TEST_REGISTRY (host:port, plain HTTP on
loopback, fixtures pushed by scripts/fixtures.sh); tests/python.sh starts
one when it is not given.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import sys

import pytest

import imgsvc

REPO = pathlib.Path(__file__).resolve().parents[3]
SCRIPTS = REPO / "scripts"


@pytest.fixture(scope="session")
def registry() -> str:
    addr = os.environ.get("IMGSVC_TEST_REGISTRY")
    if not addr:
        pytest.fail("IMGSVC_TEST_REGISTRY is not set; run tests/python.sh, which starts a registry with fixtures")
    return addr


@pytest.fixture
def store_root(tmp_path: pathlib.Path) -> pathlib.Path:
    return tmp_path / "store"


@pytest.fixture
def svc(store_root: pathlib.Path):
    with imgsvc.ImageService(store_root) as service:
        yield service


def run_python(code: str, *args: str, timeout: float = 60, **kwargs) -> subprocess.CompletedProcess:
    """Run `code` in a fresh interpreter (the one running the tests)."""
    return subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=timeout, **kwargs
    )


class FreshRegistry:
    """A registry of our own (scripts/registry.sh), for tests that read its
    access log; images are copied into it from the registry under test."""

    def __init__(self, directory: pathlib.Path, source: str) -> None:
        self.dir = directory
        self.source = source
        out = subprocess.run(
            [str(SCRIPTS / "registry.sh"), "start", str(directory)], capture_output=True, text=True, check=True
        )
        self.addr = out.stdout.strip().splitlines()[-1]
        self.log = directory / "registry.log"

    def copy(self, name: str) -> None:
        subprocess.run(
            [
                "skopeo",
                "copy",
                "--quiet",
                "--src-tls-verify=false",
                "--dest-tls-verify=false",
                f"docker://{self.source}/{name}",
                f"docker://{self.addr}/{name}",
            ],
            check=True,
            capture_output=True,
            timeout=300,
        )

    def stop(self) -> None:
        subprocess.run([str(SCRIPTS / "registry.sh"), "stop", str(self.dir)], check=False)


@pytest.fixture(scope="module")
def fresh_registry(registry: str, tmp_path_factory: pytest.TempPathFactory):
    if shutil.which("skopeo") is None:
        pytest.fail("skopeo is required (apt-get install -y skopeo)")
    reg = FreshRegistry(tmp_path_factory.mktemp("registry"), registry)
    try:
        yield reg
    finally:
        reg.stop()


class SecureRegistry:
    """A registry with TLS (a CA of its own) and basic auth, holding
    fixture/small:a, and the files a user points imgsvc at
    (tests/c/secure-registry.sh writes them)."""

    def __init__(self, directory: pathlib.Path, source: str) -> None:
        self.dir = directory
        out = subprocess.run(
            [str(REPO / "tests" / "c" / "secure-registry.sh"), "start", str(directory), source],
            capture_output=True,
            text=True,
        )
        if out.returncode != 0:
            raise RuntimeError(f"secure-registry.sh failed: {out.stderr}")
        self.addr = out.stdout.strip().splitlines()[-1]
        self.certs_dir = directory / "certs.d"
        self.auth_file = directory / "auth.json"
        self.docker_config = directory / "docker" / "config.json"
        self.registries_conf = directory / "registries.conf"  # alias securesmall -> ADDR/fixture/small

    def stop(self) -> None:
        subprocess.run([str(REPO / "tests" / "c" / "secure-registry.sh"), "stop", str(self.dir)], check=False)


@pytest.fixture(scope="session")
def secure_registry(registry: str, tmp_path_factory: pytest.TempPathFactory):
    reg = SecureRegistry(tmp_path_factory.mktemp("secure"), registry)
    try:
        yield reg
    finally:
        reg.stop()
