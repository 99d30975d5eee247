"""The registry configuration files reach the core: a certs.d root, an
auth.json, Docker's config.json, a registries.conf (aliases, blocked
registries), and the system locations, against a real registry with TLS and
basic auth."""

from __future__ import annotations

import os
import pathlib

import pytest

import imgsvc
from conftest import run_python


def pull(root: pathlib.Path, ref: str, **options) -> str:
    with imgsvc.ImageService(root, **options) as svc:
        return svc.pull(ref)


def test_certs_dir_and_credential_files(tmp_path: pathlib.Path, secure_registry):
    ref = f"{secure_registry.addr}/fixture/small:a"
    # The CA but no credentials: the registry asks for them.
    with pytest.raises(imgsvc.AuthenticationError):
        pull(tmp_path / "a", ref, certs_dir=secure_registry.certs_dir)
    # Credentials but not the CA: a certificate error, never plain HTTP.
    with pytest.raises(imgsvc.RegistryUnavailableError, match="certificate"):
        pull(tmp_path / "b", ref, auth_file=secure_registry.auth_file)
    # Both, with the paths as str or path-like.
    image_id = pull(tmp_path / "c", ref, certs_dir=str(secure_registry.certs_dir), auth_file=secure_registry.auth_file)
    assert image_id.startswith("sha256:")
    # Docker's config.json does as well as auth.json.
    assert pull(tmp_path / "d", ref, certs_dir=secure_registry.certs_dir, docker_config=secure_registry.docker_config) == image_id
    # An empty path means no file.
    with pytest.raises(imgsvc.AuthenticationError):
        pull(tmp_path / "e", ref, certs_dir=secure_registry.certs_dir, auth_file="")


def test_registries_conf_alias(tmp_path: pathlib.Path, secure_registry):
    options = dict(
        registries_conf=secure_registry.registries_conf,
        certs_dir=secure_registry.certs_dir,
        auth_file=secure_registry.auth_file,
    )
    full = f"{secure_registry.addr}/fixture/small:a"
    with imgsvc.ImageService(tmp_path, **options) as svc:
        image_id = svc.pull("securesmall:a")
        [image] = svc.list()
        assert image.id == image_id and image.repo_tags == (full,)
        status = svc.status("securesmall:a")
        assert status is not None and status.image.id == image_id
        svc.remove("securesmall:a")
        assert svc.list() == []
    # A drop-in directory is read after the file: this one erases the alias,
    # and with no search registries the short name resolves to nothing.
    dropins = tmp_path / "none.d"
    dropins.mkdir()
    (dropins / "50-erase.conf").write_text('[aliases]\n"securesmall" = ""\n')
    with imgsvc.ImageService(tmp_path, registries_conf_d=dropins, **options) as svc:
        with pytest.raises(imgsvc.InvalidArgumentError, match="securesmall"):
            svc.pull("securesmall:a")


def test_blocked_registry(tmp_path: pathlib.Path, registry: str):
    conf = tmp_path / "registries.conf"
    conf.write_text(f'[[registry]]\nprefix = "{registry}/fixture"\nblocked = true\n')
    with imgsvc.ImageService(tmp_path / "store", registries_conf=conf) as svc:
        with pytest.raises(imgsvc.PermissionDeniedError, match="blocked"):
            svc.pull(f"{registry}/fixture/small:a")
        assert svc.list() == []


def test_bad_registries_conf(tmp_path: pathlib.Path):
    with pytest.raises(imgsvc.InvalidArgumentError, match="does not exist"):
        imgsvc.ImageService(tmp_path / "a", registries_conf=tmp_path / "missing.conf")
    conf = tmp_path / "registries.conf"
    conf.write_text('unqualified-search-registries = ["docker.io"]\nshort-name-mode = 3\n')
    with pytest.raises(imgsvc.InvalidArgumentError, match=f"{conf}:.*line 2"):
        imgsvc.ImageService(tmp_path / "b", registries_conf=conf)


def test_system_registry_config(tmp_path: pathlib.Path, secure_registry):
    # The usual locations: $REGISTRY_AUTH_FILE names the auth.json. A fresh
    # interpreter keeps this process's environment as it was.
    code = (
        "import sys, imgsvc\n"
        "root, ref, certs, auth_file = sys.argv[1:5]\n"
        "kwargs = {'certs_dir': certs, 'system_registry_config': True}\n"
        "if auth_file != '-': kwargs['auth_file'] = auth_file\n"
        "try:\n"
        "    print(imgsvc.ImageService(root, **kwargs).pull(ref))\n"
        "except imgsvc.ImgsvcError as e:\n"
        "    print(type(e).__name__)\n"
    )
    ref = f"{secure_registry.addr}/fixture/small:a"
    env = {**os.environ, "REGISTRY_AUTH_FILE": str(secure_registry.auth_file), "DOCKER_CONFIG": str(tmp_path / "nodocker")}
    args = (str(tmp_path / "store"), ref, str(secure_registry.certs_dir))
    out = run_python(code, *args, "-", env=env)
    assert out.returncode == 0 and out.stdout.startswith("sha256:"), out.stdout + out.stderr
    # An empty path turns that one file off: no credentials now.
    out = run_python(code, str(tmp_path / "store2"), *args[1:], "", env=env)
    assert out.stdout.strip() == "AuthenticationError", out.stdout + out.stderr
    # Without system_registry_config nothing is read from the environment.
    with pytest.raises(imgsvc.AuthenticationError):
        pull(tmp_path / "store3", ref, certs_dir=secure_registry.certs_dir)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"registries_conf": 3},
        {"registries_conf_d": ["/etc"]},
        {"auth_file": b"\x00"},
        {"docker_config": 1.5},
        {"certs_dir": {}},
        {"system_registry_config": "yes"},
        {"system_registry_config": 1},
        {"system_registry_config": None},
    ],
)
def test_wrong_types(tmp_path: pathlib.Path, kwargs):
    with pytest.raises(TypeError):
        imgsvc.ImageService(tmp_path, **kwargs)
