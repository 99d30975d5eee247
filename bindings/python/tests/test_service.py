"""ImageService: construction, options, lifecycle and the non-pull verbs."""

from __future__ import annotations

import math
import os
import pathlib

import pytest

import imgsvc
from conftest import run_python


def test_root_none_is_default_root(tmp_path: pathlib.Path):
    # default_root() honours $IMGSVC_ROOT; a child process keeps our env clean.
    root = tmp_path / "via-env"
    code = "import imgsvc; s = imgsvc.ImageService(); print(s.root); print(imgsvc.default_root()); s.close()"
    out = run_python(code, env={**os.environ, "IMGSVC_ROOT": str(root)})
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == [str(root), str(root)]
    assert (root / "oci-layout").is_file()
    assert (root / "index.json").is_file()


def test_root_accepts_pathlike(tmp_path: pathlib.Path):
    with imgsvc.ImageService(tmp_path / "s") as svc:
        assert svc.root == str(tmp_path / "s")
        assert svc.list() == []
    with imgsvc.ImageService(str(tmp_path / "s")) as svc:
        assert svc.list() == []


def test_all_options(tmp_path: pathlib.Path):
    svc = imgsvc.ImageService(
        tmp_path, pinned=["docker.io/library/x:1"], max_parallel_downloads=2, progress_timeout=0, connect_timeout=1.5
    )
    svc.close()


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_parallel_downloads": 0},
        {"max_parallel_downloads": -1},
        {"max_parallel_downloads": 65},
        {"progress_timeout": -1},
        {"progress_timeout": math.nan},
        {"progress_timeout": math.inf},
        {"connect_timeout": 0},
        {"connect_timeout": -0.5},
        {"connect_timeout": math.inf},
    ],
)
def test_bad_option_values(tmp_path: pathlib.Path, kwargs):
    with pytest.raises(imgsvc.InvalidArgumentError) as info:
        imgsvc.ImageService(tmp_path, **kwargs)
    assert isinstance(info.value, ValueError)
    assert next(iter(kwargs)) in str(info.value)


def test_unknown_option_is_type_error(tmp_path: pathlib.Path):
    with pytest.raises(TypeError, match="unexpected keyword argument 'max_parallel'"):
        imgsvc.ImageService(tmp_path, max_parallel=3)
    with pytest.raises(TypeError):
        imgsvc.ImageService(tmp_path, 4)  # options are keyword-only


@pytest.mark.parametrize(
    "kwargs",
    [
        {"pinned": 5},
        {"pinned": "docker.io/library/x:1"},  # a str is not a list of names
        {"pinned": [1, 2]},
        {"max_parallel_downloads": "4"},
        {"max_parallel_downloads": 2.5},
        {"progress_timeout": "1"},
        {"connect_timeout": [1]},
    ],
)
def test_wrong_option_types(tmp_path: pathlib.Path, kwargs):
    with pytest.raises(TypeError):
        imgsvc.ImageService(tmp_path, **kwargs)


def test_root_wrong_type():
    with pytest.raises(TypeError):
        imgsvc.ImageService(42)  # type: ignore[arg-type]


def test_method_argument_types(svc: imgsvc.ImageService):
    with pytest.raises(TypeError):
        svc.status(3)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        svc.list(filter=b"x")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        svc.pull(None)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        svc.pull("x", auth={"username": "a"})  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="progress must be callable"):
        svc.pull("x", progress=3)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        svc.remove()  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        svc.untag(["a"])  # type: ignore[arg-type]


def test_context_manager_and_close(store_root: pathlib.Path):
    with imgsvc.ImageService(store_root) as svc:
        assert isinstance(svc, imgsvc.ImageService)
        assert not svc.closed
        assert repr(svc) == f"ImageService(root={str(store_root)!r})"
    assert svc.closed
    assert "closed=True" in repr(svc)
    for call in (svc.list, svc.fsinfo, lambda: svc.status("x"), lambda: svc.pull("x"), lambda: svc.remove("x")):
        with pytest.raises(imgsvc.InvalidArgumentError, match="closed"):
            call()
    svc.close()  # twice is fine


def test_exit_does_not_swallow(store_root: pathlib.Path):
    with pytest.raises(KeyError):
        with imgsvc.ImageService(store_root):
            raise KeyError("boom")


def test_list_status_remove(svc: imgsvc.ImageService, registry: str):
    ref_a = f"{registry}/fixture/small:a"
    ref_b = f"{registry}/fixture/small:b"
    assert svc.status(ref_a) is None
    assert svc.list() == []
    image_id = svc.pull(ref_a)
    assert image_id.startswith("sha256:") and len(image_id) == 71
    assert svc.pull(ref_b) == image_id  # both tags name one manifest

    images = svc.list()
    assert len(images) == 1
    image = images[0]
    assert image.id == image_id
    assert set(image.repo_tags) == {ref_a, ref_b}
    assert len(image.repo_digests) == 1 and image.repo_digests[0].startswith(f"{registry}/fixture/small@sha256:")
    assert image.size > 0
    assert image.uid == 1000 and image.username == ""
    assert image.pinned is False

    assert svc.list(filter=ref_b) == [image]
    assert svc.list(filter=image_id[7:20]) == [image]  # id prefix, as crictl shows
    assert svc.list(filter=f"{registry}/fixture/other:1") == []

    status = svc.status(ref_a)
    assert status is not None and status.image == image and status.info == {}
    verbose = svc.status(image_id, verbose=True)
    assert verbose is not None
    spec = verbose.to_dict()["info"]["imageSpec"]
    assert spec["config"]["User"] == "1000:1000"

    svc.remove(ref_a)  # by any name: the image and all its names go
    assert svc.list() == []
    assert svc.status(ref_b) is None
    svc.remove(ref_a)  # idempotent
    svc.remove(image_id)


def test_untag(svc: imgsvc.ImageService, registry: str):
    ref_a = f"{registry}/fixture/small:a"
    ref_b = f"{registry}/fixture/small:b"
    image_id = svc.pull(ref_a)
    svc.pull(ref_b)
    svc.untag(ref_a)
    [image] = svc.list()
    assert image.repo_tags == (ref_b,)
    with pytest.raises(imgsvc.NotFoundError):
        svc.untag(ref_a)
    with pytest.raises(imgsvc.InvalidArgumentError):
        svc.untag(image_id)
    svc.untag(ref_b)  # the last name takes the image with it
    assert svc.list() == []


def test_pinned(tmp_path: pathlib.Path, registry: str):
    with imgsvc.ImageService(tmp_path, pinned=[f"{registry}/fixture/root*"]) as svc:
        svc.pull(f"{registry}/fixture/root:latest")
        svc.pull(f"{registry}/fixture/named:latest")
        by_tag = {i.repo_tags[0]: i for i in svc.list()}
        assert by_tag[f"{registry}/fixture/root:latest"].pinned is True
        assert by_tag[f"{registry}/fixture/root:latest"].uid == 0  # 0 is set, not absent
        assert by_tag[f"{registry}/fixture/named:latest"].pinned is False
        assert by_tag[f"{registry}/fixture/named:latest"].uid is None
        assert by_tag[f"{registry}/fixture/named:latest"].username == "nobody"


def test_fsinfo(svc: imgsvc.ImageService, registry: str):
    before = svc.fsinfo()
    assert before.mountpoint == svc.root
    svc.pull(f"{registry}/fixture/small:a")
    after = svc.fsinfo()
    assert after.used_bytes > before.used_bytes
    assert after.inodes_used > before.inodes_used
    assert after.timestamp_ns >= before.timestamp_ns > 0


def test_shared_store_between_services(tmp_path: pathlib.Path, registry: str):
    with imgsvc.ImageService(tmp_path) as one, imgsvc.ImageService(tmp_path) as two:
        image_id = one.pull(f"{registry}/fixture/small:a")
        assert [i.id for i in two.list()] == [image_id]
        two.remove(image_id)
        assert one.list() == []
