"""Every relative link in README.md and docs/*.md leads somewhere: to a file or directory of
the checkout, and, with a `#fragment` into a markdown file (or a same-page `#anchor`), to a
heading of that page. Stdlib only.

    python3 -m unittest tests/local/test_docs_links.py -v
    .venv/bin/python -m unittest discover -s tests/local -p 'test_*.py'
"""

from __future__ import annotations

import re
import unittest
from pathlib import Path
from urllib.parse import unquote

ROOT = Path(__file__).resolve().parents[2]

# `[text](target)` and `![alt](target)`, the target optionally in <...> and followed by a
# "title"; the text may hold one level of brackets (`[`x`]`).
INLINE_LINK = re.compile(
    r"!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*(<[^>]*>|[^\s()]*(?:\([^\s()]*\)[^\s()]*)*)(?:\s+[\"'(][^)]*)?\s*\)"
)
# `[label]: target` reference definitions.
REFERENCE_DEFINITION = re.compile(r"^ {0,3}\[[^\]]+\]:\s*(<[^>]*>|\S+)")
ATX_HEADING = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.*?)(?:[ \t]+#+)?[ \t]*$")
HTML_ANCHOR = re.compile(r"<a\s+[^>]*(?:name|id)=[\"']([^\"']+)[\"']", re.IGNORECASE)
FENCE = re.compile(r"^\s*(`{3,}|~{3,})")
INLINE_CODE = re.compile(r"(`+)(?:(?!\1).)+?\1")
EXTERNAL = ("http:", "https:", "mailto:")


def outside_fences(text: str) -> list[tuple[int, str]]:
    """The (line number, line) pairs of `text` that are not inside a fenced code block."""
    lines: list[tuple[int, str]] = []
    fence: str | None = None
    for number, line in enumerate(text.splitlines(), start=1):
        match = FENCE.match(line)
        if fence is None:
            if match:
                fence = match.group(1)
                continue
            lines.append((number, line))
        elif match and match.group(1)[0] == fence[0] and len(match.group(1)) >= len(fence) \
                and not line.strip()[len(match.group(1)):].strip():
            fence = None
    return lines


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lowercase, punctuation dropped except `-` and `_`,
    each space a hyphen; the text of links and code spans counts, the markup does not."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)
    text = re.sub(r"<[^>]+>", "", text)
    text = text.replace("`", "").strip().lower()
    text = "".join(c for c in text if c.isalnum() or c in "-_ ")
    return text.replace(" ", "-")


def anchors(text: str) -> set[str]:
    """Every anchor a page offers: its headings' slugs (a repeated heading gets `-1`, `-2`,
    as on GitHub) and explicit `<a name=...>` / `id=...` anchors."""
    found: set[str] = set()
    seen: dict[str, int] = {}
    for _, line in outside_fences(text):
        heading = ATX_HEADING.match(line)
        if heading:
            base = slug(heading.group(2))
            count = seen.get(base, 0)
            seen[base] = count + 1
            found.add(base if count == 0 else f"{base}-{count}")
        found.update(HTML_ANCHOR.findall(line))
    return found


def links(text: str) -> list[tuple[int, str]]:
    """(line number, target) of every link outside code: inline links, images and
    reference definitions."""
    found: list[tuple[int, str]] = []
    for number, line in outside_fences(text):
        line = INLINE_CODE.sub("", line)
        targets = [m.group(1) for m in INLINE_LINK.finditer(line)]
        definition = REFERENCE_DEFINITION.match(line)
        if definition:
            targets.append(definition.group(1))
        for target in targets:
            if target.startswith("<") and target.endswith(">"):
                target = target[1:-1]
            found.append((number, target.strip()))
    return found


def broken_links(page: Path, text: str) -> list[str]:
    """What is wrong with the relative links of `text`, read as the page at `page`: each
    problem as `page:line: target (why)`."""
    problems: list[str] = []
    own_anchors: set[str] | None = None
    for number, target in links(text):
        where = f"{page.relative_to(ROOT) if page.is_relative_to(ROOT) else page}:{number}: {target}"
        if not target:
            problems.append(f"{where} (empty target)")
            continue
        if target.lower().startswith(EXTERNAL):
            continue
        path_part, _, fragment = target.partition("#")
        fragment = unquote(fragment)
        if not path_part:
            if own_anchors is None:
                own_anchors = anchors(text)
            if fragment not in own_anchors:
                problems.append(f"{where} (no heading #{fragment} on this page)")
            continue
        resolved = (page.parent / unquote(path_part)).resolve()
        if not resolved.exists():
            problems.append(f"{where} (no such file or directory)")
            continue
        if fragment and resolved.is_file() and resolved.suffix.lower() == ".md":
            if fragment not in anchors(resolved.read_text(encoding="utf-8")):
                problems.append(f"{where} (no heading #{fragment} in {path_part})")
    return problems


def pages() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


class DocsLinksTest(unittest.TestCase):
    def test_every_relative_link_resolves(self) -> None:
        problems = [p for page in pages() for p in broken_links(page, page.read_text(encoding="utf-8"))]
        self.assertEqual(problems, [], "broken links:\n" + "\n".join(problems))

    def test_the_pages_have_links_to_check(self) -> None:
        # A parser that found nothing would pass the test above vacuously.
        found = {page.name: len(links(page.read_text(encoding="utf-8"))) for page in pages()}
        self.assertGreater(found["README.md"], 10, found)
        self.assertGreater(sum(found.values()), 50, found)

    def test_the_checker_reports_a_broken_file_and_a_broken_anchor(self) -> None:
        sample = "\n".join([
            "# A sample page",
            "## Where `things` go",
            "Fine: [readme](README.md), [here](#where-things-go), [docs](docs/),",
            "[a heading](docs/README.md#understudy-the-reference), [web](https://example.com/nowhere.md),",
            "![picture](docs/README.md).",
            "Broken: [gone](no-such-file.md), [nowhere](#no-such-heading),",
            "[bad anchor](README.md#no-such-heading-either).",
            "Ignored: `[code](not-a-link.md)`.",
            "```sh",
            "[in a fence](fenced-away.md)",
            "```",
            "[definition]: also-gone.md",
        ])
        problems = broken_links(ROOT / "sample.md", sample)
        self.assertEqual(len(problems), 4, "\n".join(problems))
        for expected in ("no-such-file.md", "#no-such-heading ", "README.md#no-such-heading-either", "also-gone.md"):
            self.assertTrue(any(expected in p + " " for p in problems), f"{expected} not reported: {problems}")
        self.assertFalse(any("fenced-away" in p or "not-a-link" in p for p in problems), problems)

    def test_slugs_are_githubs(self) -> None:
        self.assertEqual(slug("Configuration: the stack, the document, the input"),
                         "configuration-the-stack-the-document-the-input")
        self.assertEqual(slug("Cold start (`make bench-coldstart`)"), "cold-start-make-bench-coldstart")
        self.assertEqual(slug("What `tests/local/stack.py` runs"), "what-testslocalstackpy-runs")
        self.assertEqual(slug("The functions' requests and answers"), "the-functions-requests-and-answers")
        self.assertEqual(anchors("## Requests\n## Requests\n"), {"requests", "requests-1"})

    def test_the_readme_is_a_front_door(self) -> None:
        readme = (ROOT / "README.md").read_text(encoding="utf-8")
        self.assertLess(len(readme.splitlines()), 400, "README.md: the reference belongs in docs/")
        self.assertNotIn("--config-env default", readme)

    def test_the_docs_index_lists_every_page(self) -> None:
        index = (ROOT / "docs" / "README.md").read_text(encoding="utf-8")
        listed = {Path(target.partition("#")[0]).name for _, target in links(index)}
        for page in sorted((ROOT / "docs").glob("*.md")):
            if page.name != "README.md":
                with self.subTest(page=page.name):
                    self.assertIn(page.name, listed)

    def test_the_cold_start_section_is_there(self) -> None:
        benchmarks = (ROOT / "docs" / "benchmarks.md").read_text(encoding="utf-8")
        self.assertIn("cold-start-make-bench-coldstart", anchors(benchmarks))


if __name__ == "__main__":
    unittest.main()
