"""The fenced code blocks of README.md and docs/*.md, found by the mark on the line before each.

A python or bash block is marked `<!-- runs: NAME -->` when a test runs it (the test asks `doc_block("NAME")`), or
`<!-- not run: why -->` when none does; tests/test_docs.py checks every block carries one of the two.
"""

import re
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# The languages a reader would paste into a shell or an interpreter: these must be marked.
RUNNABLE = frozenset({"python", "py", "bash", "sh", "shell", "console"})
FENCE = re.compile(r"^```(\S*)\s*$")
MARK = re.compile(r"^<!--\s*(runs:\s*(?P<name>[\w.-]+)|not run:\s*(?P<why>\S.*?))\s*-->$")


@dataclass(frozen=True)
class DocBlock:
    path: Path
    line: int  # of the opening fence, from 1
    language: str
    code: str
    runs: str | None  # the name a test asks for
    not_run: str | None  # why no test runs it

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(REPO)}:{self.line}"


def doc_files() -> list[Path]:
    return [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def doc_blocks(path: Path) -> list[DocBlock]:
    lines = path.read_text().splitlines()
    blocks, i = [], 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        end = next((j for j in range(i + 1, len(lines)) if lines[j].strip() == "```"), None)
        if end is None:
            raise ValueError(f"{path.relative_to(REPO)}:{i + 1}: a code block that is never closed")
        previous = next((lines[j].strip() for j in range(i - 1, -1, -1) if lines[j].strip()), "")
        mark = MARK.match(previous)
        blocks.append(
            DocBlock(
                path=path,
                line=i + 1,
                language=opening.group(1).lower(),
                code="\n".join(lines[i + 1 : end]) + "\n",
                runs=mark.group("name") if mark else None,
                not_run=mark.group("why") if mark else None,
            )
        )
        i = end + 1
    return blocks


def all_doc_blocks() -> list[DocBlock]:
    return [block for path in doc_files() for block in doc_blocks(path)]


def doc_block(name: str) -> str:
    """The code of the block marked `<!-- runs: NAME -->` in README.md or docs/*.md."""
    found = [block for block in all_doc_blocks() if block.runs == name]
    if len(found) != 1:
        raise LookupError(f"{len(found)} blocks are marked `<!-- runs: {name} -->` in README.md and docs/*.md")
    return found[0].code
