"""The README and docs/: every code block marked as run is run by a test, links resolve, CITATION.cff names the
paper, and the README's two commands are what CI runs."""

import ast
import re
from pathlib import Path

import yaml

from music_genre.hub_card.card import PAPER_SOURCE
from tests.doc_blocks import REPO, RUNNABLE, all_doc_blocks, doc_block, doc_files

BUNDLED = REPO / "space" / "model"
LINK = re.compile(r"\]\(([^)\s]+)\)")


def test_every_runnable_block_is_marked_as_run_or_not():
    blocks = all_doc_blocks()
    assert blocks, "no code blocks found in README.md and docs/*.md"
    unnamed = [block.where for block in blocks if not block.language]
    assert not unnamed, f"code blocks without a language (name it, e.g. ```bash): {unnamed}"
    unmarked = [block.where for block in blocks if block.language in RUNNABLE and not (block.runs or block.not_run)]
    assert not unmarked, (
        f"code blocks with neither `<!-- runs: NAME -->` nor `<!-- not run: why -->` on the line before: {unmarked}"
    )


def test_every_block_marked_as_run_is_run_by_a_test():
    names = [block.runs for block in all_doc_blocks() if block.runs]
    assert len(names) == len(set(names)), f"a name marks two blocks: {sorted(names)}"
    tests = "\n".join(path.read_text() for path in (REPO / "tests").glob("*.py") if path.name != "doc_blocks.py")
    asked = set(re.findall(r"""doc_block\(\s*["']([\w.-]+)["']\s*\)""", tests))
    assert not set(names) - asked, f"marked as run, but no test calls doc_block(NAME): {sorted(set(names) - asked)}"
    assert not asked - set(names), f"tests ask for blocks no doc marks: {sorted(asked - set(names))}"


def test_the_readmes_pipeline_example_runs_on_the_bundled_model():
    code = doc_block("readme-pipeline-python").replace("path/or/hub-id", str(BUNDLED))
    *body, last = ast.parse(code).body
    assert isinstance(last, ast.Expr), "the example ends with the call whose result it shows"
    namespace: dict = {}
    exec(compile(ast.Module(body=body, type_ignores=[]), "README.md", "exec"), namespace)
    result = eval(compile(ast.Expression(last.value), "README.md", "eval"), namespace)
    labels = set(namespace["classifier"].model.config.id2label.values())
    assert len(result) == 3 and {genre["label"] for genre in result} <= labels
    scores = [genre["score"] for genre in result]
    assert scores == sorted(scores, reverse=True) and 0 < sum(scores) <= 1 + 1e-6


def test_the_readmes_two_commands_are_what_ci_runs():
    install_and_serve, tests = doc_block_lines("Two commands")
    install = install_and_serve.split("&&")[0].strip()
    ci = [line.strip() for line in (REPO / ".ci" / "run").read_text().splitlines()]
    assert f"python -m {install}" in ci, f"the README installs with `{install}`, .ci/run does not"
    assert tests.split("#")[0].strip() in ci, "the README's test command is not the one .ci/run runs"


def doc_block_lines(heading: str) -> list[str]:
    """The command lines of the first code block under README.md's `## heading`."""
    text = (REPO / "README.md").read_text().split(f"\n## {heading}\n", 1)[1]
    block = text.split("```bash\n", 1)[1].split("```", 1)[0]
    return [line for line in block.splitlines() if line.strip()]


def test_the_readme_stays_a_front_door():
    assert len((REPO / "README.md").read_text().splitlines()) <= 150, "guides go into docs/, figures into bench/"


def test_relative_links_resolve_to_files_and_headings():
    broken = []
    for path in [*doc_files(), REPO / "bench" / "README.md"]:
        for target in LINK.findall(path.read_text()):
            if re.match(r"[a-z]+:", target):
                continue  # a URL
            file, _, anchor = target.partition("#")
            linked = (path.parent / file).resolve() if file else path
            if not linked.exists():
                broken.append(f"{path.relative_to(REPO)}: {target} (no such file)")
            elif anchor and linked.suffix == ".md" and anchor not in heading_anchors(linked):
                broken.append(f"{path.relative_to(REPO)}: {target} (no such heading)")
    assert not broken, broken


def heading_anchors(path: Path) -> set[str]:
    """GitHub's anchors for the Markdown headings of `path`."""
    headings = re.findall(r"^#+ (.+)$", path.read_text(), flags=re.MULTILINE)
    return {re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-") for heading in headings}


def test_citation_cff_cites_this_project_and_the_paper():
    citation = yaml.safe_load((REPO / "CITATION.cff").read_text())
    assert citation["cff-version"] == "1.2.0"
    assert citation["authors"] == [{"name": "music-genre-ffn contributors"}]
    (paper,) = citation["references"]
    assert paper["title"] == PAPER_SOURCE["title"]
    assert [(a["given-names"], a["family-names"]) for a in paper["authors"]] == [("Yuze", "Jiang")]
    assert paper["repository-code"] == PAPER_SOURCE["code"] and paper["url"] == PAPER_SOURCE["model"]
    assert not {"year", "date-published", "journal", "conference"} & set(paper), "the paper states no venue or year"
