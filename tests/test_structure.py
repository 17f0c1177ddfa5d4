"""The layering of the project's packages: each imports only those below it, so there is no import cycle.

modeling (the Hub's remote code) <- training (the run) <- hub_card (cards, publishing) <- cli (the command);
space (the Space repo) stands on its own beside them.
"""

import ast

import pytest

from tests.conftest import REPO

PACKAGES = ("modeling", "training", "hub_card", "space", "cli")
# What each package may import of the project, at module level or inside a function alike.
ALLOWED = {
    "modeling": set(),
    "training": {"modeling"},
    "hub_card": {"modeling", "training"},
    "space": set(),
    "cli": {"modeling", "training", "hub_card", "space"},
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
        found |= {name.split(".")[0] for name in names} & set(PACKAGES)
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
    path.write_text("def later():\n    from hub_card.card import write_model_card\n")
    assert project_imports(path) == {"hub_card"}
