#!/usr/bin/env python3
"""Pull an image with a progress bar, list the store, then remove the image.

    IMGSVC_ROOT=/tmp/store python3 pull_list_remove.py 127.0.0.1:5000/fixture/debian:v1

The store is $IMGSVC_ROOT (else imgsvc.default_root()). Ctrl-C during the
pull cancels it and leaves the store as it was.
"""

from __future__ import annotations

import sys

import imgsvc


class ProgressBar:
    """One line on stderr: bytes of the config and layers fetched or present."""

    WIDTH = 30

    def __init__(self) -> None:
        self.total = 0
        self.done: dict[str, int] = {}
        # Redrawing one line needs a terminal; elsewhere draw per finished blob.
        self.live = sys.stderr.isatty()

    def __call__(self, event: imgsvc.Progress) -> None:
        if event.kind == "resolved":
            self.total = event.total_bytes or 0
            print(f"pulling {event.image} ({event.layers} layers, {human(self.total)})", file=sys.stderr)
        elif event.kind in ("bytes", "layer_done", "layer_skipped"):
            # Fields that do not apply to an event's kind are None.
            assert event.digest is not None
            self.done[event.digest] = (event.done if event.kind == "bytes" else event.size) or 0
        elif event.kind == "committed":
            if self.live:
                print(file=sys.stderr)
            return
        if self.live or event.kind in ("layer_done", "layer_skipped"):
            self.draw()

    def draw(self) -> None:
        done = sum(self.done.values())
        fraction = done / self.total if self.total else 0.0
        filled = int(fraction * self.WIDTH)
        bar = "#" * filled + "-" * (self.WIDTH - filled)
        line = f"[{bar}] {fraction:6.1%} {human(done)} / {human(self.total)}"
        if self.live:
            print(f"\r{line}", end="", file=sys.stderr, flush=True)
        else:
            print(line, file=sys.stderr)


def human(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB"):
        if size < 1024:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"


def main() -> int:
    if len(sys.argv) != 2:
        print(f"usage: {sys.argv[0]} IMAGE", file=sys.stderr)
        return 2
    reference = sys.argv[1]
    try:
        with imgsvc.ImageService() as service:
            image_id = service.pull(reference, progress=ProgressBar())
            print(f"pulled {reference} as {image_id}")

            print(f"{'IMAGE ID':<15} {'SIZE':>10}  TAGS")
            for image in service.list():
                tags = ", ".join(image.repo_tags) or "<none>"
                print(f"{image.id[7:20]:<15} {human(image.size):>10}  {tags}")

            service.remove(image_id)
            print(f"removed {image_id}")
            assert service.status(image_id) is None
            print(f"{len(service.list())} image(s) left in {service.root}")
    except imgsvc.ImgsvcError as e:
        print(f"error ({type(e).__name__}): {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
