"""Every relative link in the project's Markdown (README, docs, CHANGELOG, bench and firmware notes)
leads to a file that exists and, with ``#anchor``, to a heading of that file (GitHub's anchors)."""

from __future__ import annotations

import functools
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LINK = re.compile(r"\]\(([^)\s]+)\)")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")


def markdown_files() -> list[Path]:
    skip = {".venv", "node_modules", ".git"}
    return sorted(
        p for p in REPO.rglob("*.md") if not skip & set(p.relative_to(REPO).parts) and not p.name.startswith(".")
    )


def prose_lines(text: str):
    """(line number, line) outside fenced code blocks."""
    fenced = False
    for number, line in enumerate(text.splitlines(), 1):
        if line.lstrip().startswith("```"):
            fenced = not fenced
        elif not fenced:
            yield number, line


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a heading: links reduced to their text, code marks dropped, lower
    case, every character but letters, digits, ``_``, ``-`` and spaces dropped, spaces to ``-``."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).replace("`", "")
    return re.sub(r"[^\w\- ]", "", text.lower()).replace(" ", "-")


@functools.cache
def anchors(path: Path) -> frozenset[str]:
    found: set[str] = set()
    seen: dict[str, int] = {}
    text = path.read_text(encoding="utf-8")
    for _, line in prose_lines(text):
        m = HEADING.match(line)
        if m:
            slug = github_anchor(m.group(2))
            found.add(slug if slug not in seen else f"{slug}-{seen[slug]}")  # repeated headings: -1, -2, ...
            seen[slug] = seen.get(slug, 0) + 1
    found.update(re.findall(r'<a (?:name|id)="([^"]+)"', text))
    return frozenset(found)


def test_github_anchors_follow_githubs_rules():
    assert github_anchor("The back of thin paper, a rubbed-out digit (2026-11-28)") == (
        "the-back-of-thin-paper-a-rubbed-out-digit-2026-11-28"
    )
    assert github_anchor('Scanner apps\' filters: "document" and black and white') == (
        "scanner-apps-filters-document-and-black-and-white"
    )
    assert github_anchor("Segmenters (config `segmenter`, `--segmenter`)") == "segmenters-config-segmenter---segmenter"
    assert github_anchor("Custom digits ×20 and 12 epochs") == "custom-digits-20-and-12-epochs"


def test_every_relative_link_reaches_its_file_and_heading():
    files = markdown_files()
    assert REPO / "README.md" in files and REPO / "docs" / "results.md" in files
    broken = []
    for md in files:
        for number, line in prose_lines(md.read_text(encoding="utf-8")):
            for target in LINK.findall(line):
                if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # https:, mailto:, ...
                    continue
                path, _, anchor = target.partition("#")
                dest = (md.parent / path).resolve() if path else md
                where = f"{md.relative_to(REPO)}:{number}: {target}"
                if not dest.exists():
                    broken.append(f"{where} (no such file)")
                elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
                    broken.append(f"{where} (no such heading)")
    assert not broken, "\n".join(broken)
