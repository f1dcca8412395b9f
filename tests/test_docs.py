"""The README stays short and the documentation behind it holds together.

README.md is at most 300 lines; every relative Markdown link in README.md and docs/*.md
resolves: the file exists (relative to the linking file) and a `#anchor` (also a same-file
`(#anchor)`) matches a heading of the target file under GitHub's slug rule; every docs/*.md file
is linked from README.md. Links to http(s) and mailto addresses, and anything inside fenced code
blocks or inline code, are not checked.
"""

from __future__ import annotations

import glob
import os
import re

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = os.path.join(ROOT, "README.md")
DOCS = sorted(glob.glob(os.path.join(ROOT, "docs", "*.md")))
MAX_README_LINES = 300

FENCE = re.compile(r"^\s*(`{3,}|~{3,})")
HEADING = re.compile(r"^ {0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
CODE_SPAN = re.compile(r"(`+)(.+?)\1")  # within one line (a heading)
CODE_SPANS = re.compile(r"(`+)(?:(?!\n[ \t]*\n)[\s\S])+?\1")  # within a paragraph
# [text](target) or [text](target "title"); images (![alt](src)) are links too.
LINK = re.compile(r"\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
EXTERNAL = ("http://", "https://", "mailto:")


def prose_lines(text: str) -> list[tuple[int, str]]:
    """(line number, line) of every line outside fenced code blocks."""
    out, fence = [], None
    for number, line in enumerate(text.splitlines(), 1):
        m = FENCE.match(line)
        if fence is None and m:
            fence = m.group(1)[0] * len(m.group(1))
        elif fence is not None:
            if m and m.group(1).startswith(fence):
                fence = None
        else:
            out.append((number, line))
    return out


def slug(heading: str) -> str:
    """GitHub's anchor for a heading's text: markup and punctuation dropped (letters, digits,
    `_`, `-` and spaces kept), lowercase, each space a hyphen."""
    text = CODE_SPAN.sub(lambda m: m.group(2), heading)
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", text)  # a link in a heading: its text
    text = re.sub(r"<[^>]+>", "", text)  # inline HTML
    text = re.sub(r"[^\w\- ]", "", text.lower())
    return text.replace(" ", "-")


def anchors(path: str) -> set[str]:
    """Every heading anchor of a Markdown file; repeated headings get -1, -2, ... as on GitHub."""
    with open(path, encoding="utf-8") as fh:
        text = fh.read()
    seen: dict[str, int] = {}
    out = set()
    for _, line in prose_lines(text):
        m = HEADING.match(line)
        if not m:
            continue
        base = slug(m.group(2))
        n = seen.get(base, 0)
        seen[base] = n + 1
        out.add(base if n == 0 else f"{base}-{n}")
    return out


def links(path: str) -> list[tuple[int, str]]:
    """(line number, target) of every link outside code, external ones left out. A link's text
    may run over several lines, and so may an inline code span (never over a blank line)."""
    with open(path, encoding="utf-8") as fh:
        text = fh.read()
    kept = dict(prose_lines(text))
    prose = "\n".join(kept.get(n, "") for n in range(1, len(text.splitlines()) + 1))
    prose = CODE_SPANS.sub(lambda m: "\n" * m.group(0).count("\n"), prose)
    out = []
    for m in LINK.finditer(prose):
        target = m.group(1)
        if not target.lower().startswith(EXTERNAL):
            out.append((prose.count("\n", 0, m.start()) + 1, target))
    return out


def broken(path: str) -> list[str]:
    """What is wrong with each relative link of a Markdown file, one line per bad link."""
    problems = []
    rel = os.path.relpath(path, ROOT)
    for number, target in links(path):
        file_part, _, anchor = target.partition("#")
        dest = os.path.normpath(os.path.join(os.path.dirname(path), file_part)) if file_part \
            else path
        where = f"{rel}:{number}: ({target})"
        if not os.path.exists(dest):
            problems.append(f"{where}: no file {os.path.relpath(dest, ROOT)}")
        elif anchor and not os.path.isdir(dest):
            if not dest.endswith(".md"):
                problems.append(f"{where}: an anchor into a file that is not Markdown")
            elif anchor not in anchors(dest):
                problems.append(f"{where}: no heading #{anchor} in {os.path.relpath(dest, ROOT)}")
    return problems


def test_readme_is_short():
    with open(README, encoding="utf-8") as fh:
        lines = fh.read().splitlines()
    assert len(lines) <= MAX_README_LINES, (
        f"README.md has {len(lines)} lines, at most {MAX_README_LINES}: move detail to docs/")


def test_there_are_docs():
    assert DOCS, "docs/*.md: none found"


@pytest.mark.parametrize("path", [README, *DOCS], ids=lambda p: os.path.relpath(p, ROOT))
def test_every_link_resolves(path):
    assert not broken(path), "broken links:\n" + "\n".join(broken(path))


def test_every_doc_is_linked_from_readme():
    linked = {os.path.normpath(os.path.join(ROOT, t.partition("#")[0]))
              for _, t in links(README) if t.partition("#")[0]}
    missing = [os.path.relpath(d, ROOT) for d in DOCS if os.path.normpath(d) not in linked]
    assert not missing, f"docs not linked from README.md: {missing}"


# The checker itself, on made-up text.

def test_slug_follows_github():
    assert slug("What `make run` produces") == "what-make-run-produces"
    assert slug("Which backbone and balancing") == "which-backbone-and-balancing"
    assert slug("Failure behaviour") == "failure-behaviour"
    assert slug("A/B: x_y, (z) — w") == "ab-x_y-z--w"
    assert slug("Deploy on [Kubeflow](k.md)") == "deploy-on-kubeflow"


def test_checker_finds_broken_links(tmp_path, monkeypatch):
    monkeypatch.setattr(f"{__name__}.ROOT", str(tmp_path))
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.md").write_text(
        "# Title\n\n## Same\n\n## Same\n\n```\n[in code](nowhere.md)\n```\n"
        "`[inline](nowhere.md)` [web](https://example.com/x#y)\n", encoding="utf-8")
    good = ("[a](docs/a.md) [b](docs/a.md#title) [c](docs/a.md#same-1) [d](#top)\n\n# Top\n")
    bad = ("[a](docs/missing.md) [b](docs/a.md#same-2) [c](#nope) [d](docs/a.md#Title)\n")
    (tmp_path / "good.md").write_text(good, encoding="utf-8")
    (tmp_path / "bad.md").write_text(bad, encoding="utf-8")
    assert broken(str(tmp_path / "good.md")) == []
    assert broken(str(tmp_path / "docs" / "a.md")) == []
    problems = broken(str(tmp_path / "bad.md"))
    assert len(problems) == 4, problems
    assert "no file docs/missing.md" in problems[0]
