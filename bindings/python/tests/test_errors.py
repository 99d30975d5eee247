"""The exception hierarchy, and every error kind the core produces, reached
through real servers."""

from __future__ import annotations

import builtins
import os
import pathlib
import socket
import subprocess
import threading
import time

import pytest

import imgsvc
from conftest import SCRIPTS, run_python
from servers import FakeRegistry, SilentServer, StallAfterTlsServer

HIERARCHY = {
    "InvalidArgumentError": ValueError,
    "NotFoundError": LookupError,
    "AuthenticationError": None,
    "PermissionDeniedError": None,
    "RegistryUnavailableError": None,
    "IntegrityError": None,
    "UnsupportedError": None,
    "StorageFullError": None,
    "StoreError": OSError,
    "CancelledError": None,
    "TimeoutError": builtins.TimeoutError,
}


def test_hierarchy():
    assert issubclass(imgsvc.ImgsvcError, Exception)
    assert imgsvc.ImgsvcError.__module__ == "imgsvc"
    for name, builtin in HIERARCHY.items():
        cls = getattr(imgsvc, name)
        assert cls.__module__ == "imgsvc" and cls.__name__ == name
        assert cls.__bases__ == ((imgsvc.ImgsvcError, builtin) if builtin else (imgsvc.ImgsvcError,)), name
        assert cls.__doc__
    # Built-in families catch ours too.
    assert issubclass(imgsvc.TimeoutError, OSError)
    assert imgsvc.TimeoutError is not builtins.TimeoutError
    # Raisable and catchable from Python like any exception.
    with pytest.raises(imgsvc.ImgsvcError):
        raise imgsvc.StoreError("x")


def no_image(svc: imgsvc.ImageService) -> None:
    assert svc.list() == []


@pytest.mark.parametrize("ref", ["UPPER/case:1", "a:b:c", "", "x@sha256:123"])
def test_invalid_reference(svc: imgsvc.ImageService, ref: str):
    with pytest.raises(imgsvc.InvalidArgumentError) as info:
        svc.pull(ref)
    assert isinstance(info.value, ValueError)
    assert str(info.value)


def test_invalid_argument_lookup(svc: imgsvc.ImageService):
    with pytest.raises(imgsvc.InvalidArgumentError):
        svc.status("Not A Reference")


def test_not_found(svc: imgsvc.ImageService, registry: str):
    with pytest.raises(imgsvc.NotFoundError) as info:
        svc.pull(f"{registry}/fixture/small:no-such-tag")
    assert isinstance(info.value, LookupError)
    no_image(svc)
    with pytest.raises(imgsvc.NotFoundError):
        svc.pull(f"{registry}/fixture/no-such-repo:1")


@pytest.mark.parametrize("name", ["fixture/artifact:latest", "fixture/noplatform:latest"])
def test_unsupported(svc: imgsvc.ImageService, registry: str, name: str):
    with pytest.raises(imgsvc.UnsupportedError):
        svc.pull(f"{registry}/{name}")
    no_image(svc)


def closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_unavailable(svc: imgsvc.ImageService):
    with pytest.raises(imgsvc.RegistryUnavailableError):
        svc.pull(f"127.0.0.1:{closed_port()}/fixture/small:a")
    no_image(svc)


def test_cancelled_by_returning_false(svc: imgsvc.ImageService, registry: str):
    seen: list[str] = []

    def progress(event: imgsvc.Progress):
        seen.append(event.kind)
        return False

    with pytest.raises(imgsvc.CancelledError, match="returned False"):
        svc.pull(f"{registry}/fixture/debian:v1", progress=progress)
    assert seen == ["resolved"]  # no event after the one that cancelled
    no_image(svc)
    # None and other values do not cancel; only False does.
    assert svc.pull(f"{registry}/fixture/small:a", progress=lambda e: None)
    assert svc.pull(f"{registry}/fixture/small:b", progress=lambda e: 0)


def test_timeout(tmp_path: pathlib.Path):
    with StallAfterTlsServer() as server, imgsvc.ImageService(tmp_path, progress_timeout=1) as svc:
        started = time.monotonic()
        with pytest.raises(imgsvc.TimeoutError) as info:
            svc.pull(f"{server.addr}/fixture/debian:v1")
        elapsed = time.monotonic() - started
        assert isinstance(info.value, builtins.TimeoutError)
        assert 0.9 < elapsed < 10, elapsed
        assert server.accepted >= 2  # the TLS probe, then the stalled HTTP request
        no_image(svc)


def test_connect_timeout_is_honoured(tmp_path: pathlib.Path):
    # A server that never completes the TLS handshake of the scheme probe: the
    # probe is bounded by connect_timeout (default 30 s), not progress_timeout.
    with SilentServer() as server, imgsvc.ImageService(tmp_path, connect_timeout=1, progress_timeout=0) as svc:
        started = time.monotonic()
        with pytest.raises((imgsvc.TimeoutError, imgsvc.RegistryUnavailableError)):
            svc.pull(f"{server.addr}/fixture/debian:v1")
        assert time.monotonic() - started < 8
        no_image(svc)


def test_progress_timeout_zero_means_never(tmp_path: pathlib.Path):
    # Against the same stalling server, 0 waits on; Ctrl-C-like cancel ends it.
    with StallAfterTlsServer() as server, imgsvc.ImageService(tmp_path, progress_timeout=0) as svc:
        started = time.monotonic()

        def give_up(_event):
            raise AssertionError("no event expected from a stalled registry")

        result: list[BaseException] = []

        def pull():
            try:
                svc.pull(f"{server.addr}/fixture/debian:v1", progress=give_up)
            except BaseException as e:  # noqa: BLE001 - recorded for the assert
                result.append(e)

        t = threading.Thread(target=pull, daemon=True)
        t.start()
        t.join(3)
        assert t.is_alive(), f"pull ended after {time.monotonic() - started:.1f}s: {result}"
        svc.close()  # the running pull keeps its service; the thread stays a daemon


def test_integrity(svc: imgsvc.ImageService):
    with FakeRegistry() as fake:
        with pytest.raises(imgsvc.IntegrityError) as info:
            svc.pull(f"{fake.addr}/corrupt:latest")
        assert fake.layer_digest in str(info.value) or "digest" in str(info.value).lower()
        assert fake.blob_gets.get(fake.layer_digest, 0) >= 1  # the bad bytes were really fetched
    no_image(svc)
    # Nothing unverified reached the blob store.
    blobs = list((pathlib.Path(svc.root) / "blobs" / "sha256").glob("*"))
    assert fake.layer_digest[7:] not in {b.name for b in blobs}


def test_permission_denied(svc: imgsvc.ImageService):
    with FakeRegistry() as fake:
        with pytest.raises(imgsvc.PermissionDeniedError):
            svc.pull(f"{fake.addr}/denied:latest")
    no_image(svc)


@pytest.fixture(scope="module")
def auth_registry(registry: str, tmp_path_factory: pytest.TempPathFactory):
    """A real registry with basic auth (htpasswd), holding fixture/small:a."""
    d = tmp_path_factory.mktemp("authreg")
    htpasswd = d / "htpasswd"
    out = subprocess.run(["htpasswd", "-Bbn", "alice", "wonderland"], capture_output=True, text=True, check=True)
    htpasswd.write_text(out.stdout)
    start = subprocess.run(
        [str(SCRIPTS / "registry.sh"), "start", str(d / "reg"), "--htpasswd", str(htpasswd)],
        capture_output=True, text=True, check=True,
    )
    addr = start.stdout.strip().splitlines()[-1]
    try:
        subprocess.run(
            ["skopeo", "copy", "--quiet", "--src-tls-verify=false", "--dest-tls-verify=false",
             "--dest-creds", "alice:wonderland",
             f"docker://{registry}/fixture/small:a", f"docker://{addr}/fixture/small:a"],
            check=True, capture_output=True, timeout=120,
        )
        yield addr
    finally:
        subprocess.run([str(SCRIPTS / "registry.sh"), "stop", str(d / "reg")], check=False)


def test_authentication(svc: imgsvc.ImageService, auth_registry: str):
    ref = f"{auth_registry}/fixture/small:a"
    with pytest.raises(imgsvc.AuthenticationError):
        svc.pull(ref)
    with pytest.raises(imgsvc.AuthenticationError):
        svc.pull(ref, auth=imgsvc.Auth(username="alice", password="wrong"))
    no_image(svc)
    image_id = svc.pull(ref, auth=imgsvc.Auth(username="alice", password="wonderland"))
    assert [i.id for i in svc.list()] == [image_id]


def test_auth_field_combined(svc: imgsvc.ImageService, auth_registry: str):
    import base64

    token = base64.b64encode(b"alice:wonderland").decode()
    image_id = svc.pull(f"{auth_registry}/fixture/small:a", auth=imgsvc.Auth(auth=token))
    assert image_id.startswith("sha256:")


def test_malformed_auth(svc: imgsvc.ImageService, registry: str):
    with pytest.raises(imgsvc.InvalidArgumentError):
        svc.pull(f"{registry}/fixture/small:a", auth=imgsvc.Auth(auth="%%% not base64"))


def test_store_error_root_is_a_file(tmp_path: pathlib.Path):
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    with pytest.raises(imgsvc.StoreError) as info:
        imgsvc.ImageService(not_a_dir)
    assert isinstance(info.value, OSError)
    with pytest.raises(imgsvc.StoreError):
        imgsvc.ImageService(not_a_dir / "below")


def test_integrity_corrupt_store(tmp_path: pathlib.Path):
    imgsvc.ImageService(tmp_path).close()
    (tmp_path / "index.json").write_text("{not json")
    with pytest.raises(imgsvc.IntegrityError, match="index.json"):
        imgsvc.ImageService(tmp_path)


@pytest.fixture
def small_tmpfs(tmp_path: pathlib.Path):
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a 1 MiB tmpfs here: {r.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_storage_full(small_tmpfs: pathlib.Path, registry: str):
    with imgsvc.ImageService(small_tmpfs / "store") as svc:
        with pytest.raises(imgsvc.StorageFullError):
            svc.pull(f"{registry}/fixture/debian:v1")
        no_image(svc)
        assert svc.status(f"{registry}/fixture/debian:v1") is None
        assert svc.fsck(repair=True).clean
    # The store is intact: it opens, and a small image fits.
    with imgsvc.ImageService(small_tmpfs / "store") as svc:
        assert svc.pull(f"{registry}/fixture/small:a").startswith("sha256:")


def test_storage_full_file_size_limit(tmp_path: pathlib.Path, registry: str):
    # Without root: a child whose files may not grow past 256 KiB. Python
    # ignores SIGXFSZ, so writes past the limit fail with EFBIG, which the
    # core reports as a full disk.
    code = (
        "import resource, sys, imgsvc\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (256 * 1024, 256 * 1024))\n"
        "svc = imgsvc.ImageService(sys.argv[1])\n"
        "try:\n"
        "    svc.pull(sys.argv[2])\n"
        "except imgsvc.StorageFullError as e:\n"
        "    print('StorageFullError', e)\n"
        "print('images', len(svc.list()))\n"
    )
    out = run_python(code, str(tmp_path / "store"), f"{registry}/fixture/debian:v1")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith("StorageFullError ") and lines[1] == "images 0", out.stdout
    with imgsvc.ImageService(tmp_path / "store") as svc:
        assert svc.list() == []
        assert svc.pull(f"{registry}/fixture/debian:v1").startswith("sha256:")
