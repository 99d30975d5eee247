"""imgsvc: an embeddable container image service.

List, inspect, pull (with progress), remove and measure container images in
a local store that is a valid OCI image layout, the way the image side of a
CRI runtime does. The work happens in the Rust core (``imgsvc._native``);
every call that does I/O releases the GIL.

    import imgsvc

    with imgsvc.ImageService("/tmp/store") as svc:
        image_id = svc.pull("127.0.0.1:5000/fixture/debian:v1")
        for image in svc.list():
            print(image.id, image.repo_tags, image.size)
        svc.remove(image_id)

Every error is an ``imgsvc.ImgsvcError``; see its subclasses.
"""

from ._native import (
    Auth,
    AuthenticationError,
    CancelledError,
    FilesystemUsage,
    FsckReport,
    Image,
    ImageService,
    ImageStatus,
    ImgsvcError,
    IntegrityError,
    InvalidArgumentError,
    NotFoundError,
    PermissionDeniedError,
    Progress,
    RegistryUnavailableError,
    StorageFullError,
    StoreError,
    TimeoutError,
    UnsupportedError,
    __version__,
    default_root,
)

__all__ = [
    "Auth",
    "AuthenticationError",
    "CancelledError",
    "FilesystemUsage",
    "FsckReport",
    "Image",
    "ImageService",
    "ImageStatus",
    "ImgsvcError",
    "IntegrityError",
    "InvalidArgumentError",
    "NotFoundError",
    "PermissionDeniedError",
    "Progress",
    "RegistryUnavailableError",
    "StorageFullError",
    "StoreError",
    "TimeoutError",
    "UnsupportedError",
    "__version__",
    "default_root",
]
