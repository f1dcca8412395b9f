"""Image files named in a CSV: where a cell's file is, and whether its first bytes are an image.

An `image` feature column holds file names, relative to the images folder (`data.images`,
default: the CSV's folder); an absolute path or a URL (gs://...) is used as it is. ExampleGen
(components.csv_example_gen) reads each named file into the tf.Example and decodes it once to
validate it; the pre-flight check (headwise.data_check) only reads each file's first
HEADER_BYTES, to stop a wrong folder or a stray file in about a second, before Beam starts.
TensorFlow-free, like everything the pre-flight check imports.
"""

from __future__ import annotations

import os

FORMATS = "PNG, JPEG, GIF or BMP"  # what tf.io.decode_image reads, and so what the model takes
HEADER_BYTES = 16  # enough for every signature below
SIGNATURES = (  # the first bytes of each format; also checked in the graph (trainer.images)
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"\xff\xd8\xff", "JPEG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"BM", "BMP"),
)


def image_path(images_dir: str, name: str) -> str:
    """The file a cell names: `name` under `images_dir`, or `name` itself if it is an absolute
    path or a URL."""
    if "://" in name or os.path.isabs(name):
        return name
    if "://" in images_dir:  # a bucket: always "/" (os.path.join would too, on POSIX only)
        return images_dir.rstrip("/") + "/" + name
    return os.path.join(images_dir, name)


def image_format(head: bytes) -> str | None:
    """"PNG", "JPEG", "GIF" or "BMP" from a file's first bytes; None for anything else."""
    return next((kind for magic, kind in SIGNATURES if head.startswith(magic)), None)
