"""ImageService.fsck(): re-hashes the blobs, names a corrupt one precisely,
and repair leaves a clean store the next pull fills again."""

from __future__ import annotations

import hashlib
import json
import pathlib

import pytest

import imgsvc


def blobs(svc: imgsvc.ImageService) -> pathlib.Path:
    return pathlib.Path(svc.root) / "blobs" / "sha256"


def test_clean_store(svc: imgsvc.ImageService, registry: str):
    report = svc.fsck()
    assert report.clean and report.problems == () and report.repaired == () and report.remaining == ()
    assert report.blobs_checked == 0
    svc.pull(f"{registry}/fixture/debian:v1")
    report = svc.fsck()
    assert report.clean and report.problems == ()
    assert report.blobs_checked == len(list(blobs(svc).iterdir()))
    assert report.to_dict() == {
        "clean": True,
        "problems": [],
        "repaired": [],
        "remaining": [],
        "blobsChecked": report.blobs_checked,
    }
    assert repr(report) == f"FsckReport(clean=True, problems=(), repaired=(), remaining=(), blobs_checked={report.blobs_checked})"
    assert report == svc.fsck() and hash(report) == hash(svc.fsck())
    with pytest.raises(AttributeError):
        report.clean = False  # type: ignore[misc]


def test_corrupt_layer_reported_and_repaired(svc: imgsvc.ImageService, registry: str):
    ref = f"{registry}/fixture/debian:v1"
    image_id = svc.pull(ref)
    [image] = svc.list()
    manifest_digest = image.repo_digests[0].split("@", 1)[1]
    manifest = json.loads((blobs(svc) / manifest_digest[7:]).read_bytes())
    layer = manifest["layers"][-1]["digest"]
    path = blobs(svc) / layer[7:]
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.chmod(0o644)
    path.write_bytes(bytes(data))
    actual = "sha256:" + hashlib.sha256(data).hexdigest()

    report = svc.fsck()
    assert not report.clean
    assert f"blob {layer} is corrupt: its content hashes to {actual}" in report.problems
    assert f"image {image_id} is incomplete" in report.problems
    assert report.repaired == () and report.remaining == report.problems
    assert path.read_bytes() == data  # a check alone changes nothing

    repaired = svc.fsck(repair=True)
    assert repaired.clean and repaired.remaining == ()
    assert f"deleted corrupt blob {layer}" in repaired.repaired
    assert any(r.startswith(f"removed incomplete image {image_id}") for r in repaired.repaired), repaired.repaired
    assert svc.list() == [] and svc.status(ref) is None
    assert svc.fsck().clean

    assert svc.pull(ref) == image_id
    assert svc.fsck().clean


def test_unreferenced_blob(svc: imgsvc.ImageService, registry: str):
    svc.pull(f"{registry}/fixture/small:a")
    stray = b"not part of any image\n"
    digest = "sha256:" + hashlib.sha256(stray).hexdigest()
    (blobs(svc) / digest[7:]).write_bytes(stray)
    report = svc.fsck()
    assert report.problems == (f"blob {digest} is not used by any image",)
    repaired = svc.fsck(repair=True)
    assert repaired.repaired == (f"deleted unreferenced blob {digest}",) and repaired.clean
    assert not (blobs(svc) / digest[7:]).exists()
    assert len(svc.list()) == 1


def test_wrong_types(svc: imgsvc.ImageService):
    for bad in ("yes", 1, None):
        with pytest.raises(TypeError):
            svc.fsck(bad)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        svc.fsck(repair=True, force=True)  # type: ignore[call-arg]
    svc.close()
    with pytest.raises(imgsvc.InvalidArgumentError, match="closed"):
        svc.fsck()
