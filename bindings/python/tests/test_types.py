"""Result objects: immutable, readable reprs, CRI JSON field names in to_dict()."""

from __future__ import annotations

import pytest

import imgsvc


@pytest.fixture
def pulled(svc: imgsvc.ImageService, registry: str):
    events: list[imgsvc.Progress] = []
    image_id = svc.pull(f"{registry}/fixture/small:a", progress=events.append)
    return svc, image_id, events


def test_image(pulled):
    svc, image_id, _ = pulled
    [image] = svc.list()
    assert isinstance(image.repo_tags, tuple) and isinstance(image.repo_digests, tuple)
    assert repr(image).startswith(f"Image(id={image_id!r}, repo_tags=(")
    assert "uid=1000" in repr(image) and "pinned=False" in repr(image)
    # Same as the CLI and C ABI: CRI protojson names, int64 as strings.
    assert image.to_dict() == {
        "id": image_id,
        "repoTags": list(image.repo_tags),
        "repoDigests": list(image.repo_digests),
        "size": str(image.size),
        "uid": {"value": "1000"},
        "username": "",
        "pinned": False,
    }
    assert image == svc.list()[0] and hash(image) == hash(svc.list()[0])
    assert image != image_id


def test_image_without_uid(svc: imgsvc.ImageService, registry: str):
    svc.pull(f"{registry}/fixture/named:latest")
    [image] = svc.list()
    assert "uid" not in image.to_dict()  # unset messages are omitted
    assert image.to_dict()["username"] == "nobody"


def test_frozen(pulled):
    svc, _, events = pulled
    [image] = svc.list()
    status = svc.status(image.id)
    usage = svc.fsinfo()
    for obj, attr in [(image, "id"), (image, "size"), (status, "image"), (usage, "used_bytes"), (events[0], "kind")]:
        with pytest.raises(AttributeError):
            setattr(obj, attr, 1)
    with pytest.raises(AttributeError):
        image.extra = 1  # type: ignore[attr-defined]
    # Containers handed out are copies: changing them changes nothing.
    info = status.info
    info["x"] = "y"
    assert status.info == {}
    for cls in (imgsvc.Image, imgsvc.ImageStatus, imgsvc.FilesystemUsage, imgsvc.Progress):
        with pytest.raises(TypeError):
            cls()


def test_image_status(pulled):
    svc, image_id, _ = pulled
    status = svc.status(image_id, verbose=True)
    assert status.image.id == image_id
    assert set(status.info) == {"info"}
    assert repr(status).startswith("ImageStatus(image=Image(") and "info_keys=['info']" in repr(status)
    d = status.to_dict()
    assert set(d) == {"status", "info"}
    assert d["status"] == status.image.to_dict()
    assert d["info"]["imageSpec"]["os"] == "linux"


def test_filesystem_usage(pulled):
    svc, _, _ = pulled
    usage = svc.fsinfo()
    assert usage.to_dict() == {
        "timestamp": str(usage.timestamp_ns),
        "fsId": {"mountpoint": usage.mountpoint},
        "usedBytes": {"value": str(usage.used_bytes)},
        "inodesUsed": {"value": str(usage.inodes_used)},
    }
    assert repr(usage).startswith(f"FilesystemUsage(timestamp_ns={usage.timestamp_ns}, mountpoint=")


def test_progress_events(pulled, registry: str):
    _, image_id, events = pulled
    kinds = [e.kind for e in events]
    assert kinds[0] == "resolved" and kinds[-1] == "committed"
    resolved, committed = events[0], events[-1]
    assert resolved.image == f"{registry}/fixture/small:a"
    assert resolved.manifest_digest.startswith("sha256:")
    assert resolved.layers >= 1 and resolved.total_bytes > 0
    assert resolved.digest is None and resolved.image_id is None
    assert committed.image_id == image_id and committed.digest is None
    assert resolved.to_dict() == {
        "type": "resolved",
        "image": resolved.image,
        "manifestDigest": resolved.manifest_digest,
        "totalBytes": resolved.total_bytes,
        "layers": resolved.layers,
    }
    assert committed.to_dict() == {"type": "committed", "imageId": image_id}
    started = [e for e in events if e.kind == "layer_started"]
    done = [e for e in events if e.kind == "layer_done"]
    # Config and every layer were fetched (fresh store), each started and done.
    assert len(started) == len(done) == resolved.layers + 1
    assert {e.digest for e in started} == {e.digest for e in done}
    assert sum(e.size for e in done) == resolved.total_bytes
    for e in events:
        if e.kind == "bytes":
            assert 0 < e.done <= e.total and e.to_dict()["type"] == "bytes"
    assert repr(committed) == f"Progress(kind='committed', image_id={image_id!r})"
    assert events[0] == resolved and hash(events[0]) == hash(resolved)


def test_layer_skipped_on_second_pull(svc: imgsvc.ImageService, registry: str):
    svc.pull(f"{registry}/fixture/small:a")
    events: list[imgsvc.Progress] = []
    svc.pull(f"{registry}/fixture/small-v2s2:latest", progress=events.append)
    skipped = [e for e in events if e.kind == "layer_skipped"]
    assert skipped, [e.kind for e in events]
    assert all(e.size > 0 and e.digest.startswith("sha256:") for e in skipped)
    assert skipped[0].to_dict() == {"type": "layer_skipped", "digest": skipped[0].digest, "size": skipped[0].size}


def test_auth_object():
    auth = imgsvc.Auth(username="alice", password="s3cret", server_address="r.example", identity_token="tok")
    assert auth.username == "alice" and auth.password == "s3cret" and auth.identity_token == "tok"
    assert auth.registry_token == "" and auth.auth == ""
    assert "s3cret" not in repr(auth) and "tok" not in repr(auth)
    assert repr(auth) == "Auth(username='alice', server_address='r.example', ...)"
    assert auth == imgsvc.Auth(username="alice", password="s3cret", server_address="r.example", identity_token="tok")
    assert auth != imgsvc.Auth(username="alice")
    assert len({auth, auth}) == 1
    with pytest.raises(AttributeError):
        auth.password = "x"  # type: ignore[misc]
    with pytest.raises(TypeError):
        imgsvc.Auth("alice")  # type: ignore[misc]
    with pytest.raises(TypeError):
        imgsvc.Auth(user="alice")  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        imgsvc.Auth(username=1)  # type: ignore[arg-type]
