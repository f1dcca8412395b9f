"""Does this environment run exactly what the lock file says? `python -m headwise.parity [LOCK]`.

Every local run and test installs requirements.lock; the pipeline image (Dockerfile) installs the
same file and runs this check while it is built, so production runs the versions the tests ran
(the code carries workarounds for specific Beam, TFT and TFMA versions). Exit 0 when every pinned
distribution is installed at its pinned version, 1 with one line per difference otherwise.
No TensorFlow import: it reads package metadata only.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import re
import sys

LOCK = "requirements.lock"
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?==([^\s;#]+)\s*(;\s*([^#]+))?")


def canonical(name: str) -> str:
    """PEP 503 name normalisation: case, runs of - _ . are the same."""
    return re.sub(r"[-_.]+", "-", name).lower()


def pins(lock_path: str) -> dict[str, str]:
    """{canonical name: version} of every `name==version` line whose environment marker (if
    any) holds here."""
    from packaging.markers import Marker

    out = {}
    with open(lock_path, encoding="utf-8") as fh:
        for line in fh:
            m = _PIN.match(line.strip())
            if not m:
                continue
            if m.group(5) and not Marker(m.group(5).strip()).evaluate():
                continue
            out[canonical(m.group(1))] = m.group(3)
    return out


def installed() -> dict[str, str]:
    """{canonical name: version} of what `import` would find: the first of each name on
    sys.path (a process can also see vendored copies, e.g. setuptools' own, further down)."""
    out: dict[str, str] = {}
    for d in importlib.metadata.distributions():
        if d.metadata["Name"]:
            out.setdefault(canonical(d.metadata["Name"]), d.version)
    return out


def check(lock_path: str = LOCK, have: dict[str, str] | None = None) -> list[str]:
    """One line per pinned distribution that is missing or at another version."""
    have = installed() if have is None else have
    problems = []
    for name, want in sorted(pins(lock_path).items()):
        got = have.get(name)
        if got is None:
            problems.append(f"{name}: pinned {want} in {lock_path}, not installed")
        elif got != want:
            problems.append(f"{name}: pinned {want} in {lock_path}, installed {got}")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m headwise.parity", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("lock", nargs="?", default=LOCK)
    args = parser.parse_args(argv)
    problems = check(args.lock)
    if problems:
        print(f"headwise.parity: {len(problems)} distribution(s) differ from {args.lock}:",
              file=sys.stderr)
        for p in problems:
            print(f"  {p}", file=sys.stderr)
        print(f"Install the lock exactly: python -m pip install --no-deps -r {args.lock}",
              file=sys.stderr)
        return 1
    print(f"headwise.parity: all {len(pins(args.lock))} pinned distributions match {args.lock}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
