"""Unpacked layers from Python: rootfs, export_rootfs and the unpack options."""

from __future__ import annotations

import os
import pathlib

import pytest

import imgsvc


def test_rootfs_and_export_on_demand(registry: str, tmp_path: pathlib.Path):
    image = f"{registry}/fixture/small:a"
    with imgsvc.ImageService(tmp_path / "store", unpack=False) as svc:
        image_id = svc.pull(image)
        assert not os.listdir(tmp_path / "store" / "layers" / "sha256"), "unpack=False unpacks nothing while pulling"
        dirs = svc.rootfs(image_id)
        assert dirs and all(isinstance(d, str) and os.path.isdir(d) for d in dirs)
        assert all(d.startswith(str(tmp_path / "store" / "layers")) for d in dirs)
        dest = tmp_path / "rootfs"
        svc.export_rootfs(image, dest)
        assert any(dest.iterdir())
        with pytest.raises(imgsvc.InvalidArgumentError, match="not empty"):
            svc.export_rootfs(image, dest)
        with pytest.raises(imgsvc.NotFoundError):
            svc.rootfs(f"{registry}/fixture/absent:x")
        with pytest.raises(TypeError):
            svc.export_rootfs(image, 42)  # type: ignore[arg-type]


def test_debian_exports_a_working_root(registry: str, tmp_path: pathlib.Path):
    with imgsvc.ImageService(tmp_path / "store") as svc:
        image_id = svc.pull(f"{registry}/fixture/debian:v1")
        assert len(svc.rootfs(image_id)) == 4
        info = svc.status(image_id, verbose=True).info
        assert '"unpackedSize"' in info["info"]
        dest = tmp_path / "rootfs"
        svc.export_rootfs(image_id, str(dest))
        assert (dest / "etc/imgsvc-fixture/hello.txt").read_text() == "hello from imgsvc fixture layer b\n"
        assert not (dest / "etc/imgsvc-fixture/remove-me.txt").exists()


def test_max_layer_bytes_is_checked(tmp_path: pathlib.Path):
    with pytest.raises(imgsvc.InvalidArgumentError, match="max_layer_bytes"):
        imgsvc.ImageService(tmp_path, max_layer_bytes=0)
    with pytest.raises(TypeError):
        imgsvc.ImageService(tmp_path, max_layer_bytes="big")  # type: ignore[arg-type]
    imgsvc.ImageService(tmp_path, max_layer_bytes=1 << 20, unpack=False).close()
