"""The READMEs quote verdicts, never paraphrase them: every verdict line in README.md and the study READMEs is
a sentence of a published `verdicts.md`, with its look, and only a `final` one stands under a findings heading.

A verdict line is a list item or quote whose text ends with a look label, such as `; interim (8 of 19 seeds)`
(the form `analysis` writes every sentence of `verdicts.md` in).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LABEL = re.compile(r"; (final|interim|unplanned|unregistered) \((\d+ of )?\d+ seeds\)$")
DOCS = [REPO / "README.md", *sorted((REPO / "experiments").glob("*/README.md"))]


def published_sentences() -> set[str]:
    sentences = set()
    for path in (REPO / "experiments").glob("*/*/verdicts.md"):
        sentences |= {line[2:] for line in path.read_text().splitlines() if line.startswith("- ")}
    return sentences


def verdict_lines(path: Path) -> list[tuple[str, str]]:
    """(heading above it, sentence) for each quoted verdict of a Markdown file."""
    heading, found = "", []
    for raw in path.read_text().splitlines():
        if raw.startswith("#"):
            heading = raw
            continue
        text = re.sub(r"^\s*(?:[-*]|>)\s+", "", raw).strip().strip("`")
        if text != raw.strip() and LABEL.search(text):
            found.append((heading, text))
    return found


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(REPO)))
def test_every_quoted_verdict_is_a_published_sentence(doc: Path) -> None:
    published = published_sentences()
    missing = [text for _, text in verdict_lines(doc) if text not in published]
    assert not missing, "quoted but not in any experiments/*/*/verdicts.md:\n" + "\n".join(missing)


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(REPO)))
def test_only_final_verdicts_stand_as_findings(doc: Path) -> None:
    wrong = [
        f"{heading}: {text}"
        for heading, text in verdict_lines(doc)
        if "finding" in heading.lower() and "not a finding" not in heading.lower() and "; final (" not in text
    ]
    assert not wrong, "an interim verdict under a findings heading:\n" + "\n".join(wrong)


def test_the_check_sees_quoted_verdicts() -> None:
    """The README quotes at least one published verdict, so the two tests above check something."""
    assert verdict_lines(REPO / "README.md")
