"""Demo datasets written to disk as headwise reads data: a CSV, and for images a folder of files.

`write_digits`: scikit-learn's bundled handwritten digits (`sklearn.datasets.load_digits`:
1,797 greyscale 8 x 8 images, shipped inside the package, so nothing is downloaded) as PNG files
plus a labels CSV with three heads' labels, for pipeline/configs/digits.yaml:

  image   the PNG's file name, relative to images/ (`data.images`)
  ink     mean pixel intensity in [0, 1]: a tabular feature beside the image
  digit   0-9: the main multiclass label
  loops   closed loops in the digit's shape (0 for 1, 2, 3, 5, 7; 1 for 0, 4, 6, 9; 2 for 8):
          an auxiliary multiclass label that shares what the image backbone learns
  even    1 for an even digit, else 0: a binary label

The pixel values 0..16 are scaled to 0..255 (round(v * 255 / 16)) so that the PNGs look like
ordinary greyscale images; `ink` is computed from the original 0..16 values (mean / 16).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import os
import shutil
import tempfile

DIGITS_DIR = os.path.join("data", "digits")
IMAGES, LABELS = "images", "labels.csv"
DIGITS_COLUMNS = ("image", "ink", "digit", "loops", "even")
LOOPS = {0: 1, 1: 0, 2: 0, 3: 0, 4: 1, 5: 0, 6: 1, 7: 0, 8: 2, 9: 1}
DIGITS_MAX = 16  # load_digits' pixel values are 0..16


@dataclasses.dataclass(frozen=True)
class Written:
    """What write_* left on disk; `written` is False where an identical copy was already there."""

    out_dir: str
    labels_csv: str
    images_dir: str
    images: int
    written: bool


def digits_files() -> dict[str, bytes]:
    """The digits dataset as {relative path: content}: images/<index:04d>.png and labels.csv.
    Deterministic (same pixels, same PNG bytes), so a second call can tell whether a copy on
    disk is identical."""
    import numpy as np
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    files: dict[str, bytes] = {}
    rows = io.StringIO()
    writer = csv.writer(rows, lineterminator="\n")
    writer.writerow(DIGITS_COLUMNS)
    for index, (pixels, digit) in enumerate(zip(digits.images, digits.target, strict=True)):
        name = f"{index:04d}.png"
        grey = np.rint(pixels * 255.0 / DIGITS_MAX).astype(np.uint8)
        png = io.BytesIO()
        Image.fromarray(grey).save(png, format="PNG")
        files[f"{IMAGES}/{name}"] = png.getvalue()
        digit = int(digit)
        writer.writerow([name, f"{pixels.mean() / DIGITS_MAX:.4f}", digit, LOOPS[digit],
                         int(digit % 2 == 0)])
    files[LABELS] = rows.getvalue().encode("utf-8")
    return files


def _present(out_dir: str) -> set[str]:
    return {os.path.relpath(os.path.join(d, f), out_dir).replace(os.sep, "/")
            for d, _, names in os.walk(out_dir) for f in names}


def _holds(out_dir: str, files: dict[str, bytes]) -> bool:
    """Whether out_dir holds exactly these files, byte for byte."""
    if _present(out_dir) != set(files):
        return False
    for rel, content in files.items():
        with open(os.path.join(out_dir, rel), "rb") as fh:
            if fh.read() != content:
                return False
    return True


def _write_atomically(out_dir: str, files: dict[str, bytes]) -> None:
    """Write the files into a temporary folder beside out_dir, then rename it into place: a
    killed write never leaves a half dataset that the pipeline would read as whole."""
    parent = os.path.dirname(out_dir) or "."
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(out_dir)}.", dir=parent)
    try:
        for rel, content in files.items():
            path = os.path.join(tmp, rel)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "wb") as fh:
                fh.write(content)
        old = None
        if os.path.exists(out_dir):  # a rename cannot replace a non-empty folder: move it aside
            old = tempfile.mkdtemp(prefix=f".{os.path.basename(out_dir)}.old.", dir=parent)
            os.replace(out_dir, os.path.join(old, "previous"))
        os.replace(tmp, out_dir)
        if old is not None:
            shutil.rmtree(old)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_digits(out_dir: str = DIGITS_DIR) -> Written:
    """Write the digits dataset to out_dir (images/ and labels.csv; see the module docstring),
    unless an identical copy is already there. A differing copy (an older or damaged one) is
    replaced; a folder that holds anything else is refused (ValueError), never deleted."""
    out_dir = os.path.abspath(out_dir)
    files = digits_files()
    images = sum(rel.startswith(IMAGES + "/") for rel in files)
    if os.path.exists(out_dir):
        if not os.path.isdir(out_dir):
            raise ValueError(f"{out_dir} is a file; give a new folder for the digits dataset")
        other = sorted(_present(out_dir) - set(files))
        if other:
            raise ValueError(
                f"{out_dir} holds files that are not the digits dataset ({', '.join(other[:3])}"
                f"{' ...' if len(other) > 3 else ''}); give a new or empty folder, or remove "
                "them")
    written = not (os.path.isdir(out_dir) and _holds(out_dir, files))
    if written:
        _write_atomically(out_dir, files)
    return Written(out_dir=out_dir, labels_csv=os.path.join(out_dir, LABELS),
                   images_dir=os.path.join(out_dir, IMAGES), images=images, written=written)
