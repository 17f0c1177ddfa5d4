"""The layering of the project's packages: each imports only those below it, so there is no import cycle.

modeling (the Hub's remote code) <- training (the run) <- hub_card (cards, publishing) <- music_genre (the command);
space (the Space repo) stands on its own beside them. All are installed under one namespace, `music_genre`
(`modeling/` as `music_genre.modeling`, ...), so an import names its package second.
"""

import ast

import pytest

from tests.conftest import REPO

PACKAGES = ("modeling", "training", "hub_card", "space", "music_genre")
# What each package may import of the project, at module level or inside a function alike.
ALLOWED = {
    "modeling": set(),
    "training": {"modeling"},
    "hub_card": {"modeling", "training"},
    "space": set(),
    "music_genre": {"modeling", "training", "hub_card", "space"},
}


def project_imports(path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] == "music_genre":
                found.add(parts[1] if len(parts) > 1 and parts[1] in PACKAGES else "music_genre")
    return found


@pytest.mark.parametrize("package", PACKAGES)
def test_a_package_imports_only_the_packages_below_it(package):
    for path in sorted((REPO / package).rglob("*.py")):
        if "model" in path.relative_to(REPO).parts[1:-1]:
            continue  # space/model holds the bundled copy of modeling's remote code
        imported = project_imports(path) - {package}
        assert imported <= ALLOWED[package], f"{path.relative_to(REPO)} imports {sorted(imported - ALLOWED[package])}"


def test_the_check_sees_a_function_level_import(tmp_path):
    path = tmp_path / "probe.py"
    path.write_text("def later():\n    from music_genre.hub_card.card import write_model_card\n")
    assert project_imports(path) == {"hub_card"}
