"""The layering: the library never imports the λ search built on it, and no library module imports a CLI module."""

import ast
from pathlib import Path

ROOT = Path(__file__).parents[2]


def imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_lambda_dpo_never_imports_search():
    offenders = {str(p.relative_to(ROOT)): sorted(m for m in imported_modules(p) if m.split(".")[0] == "search") for p in (ROOT / "lambda_dpo").rglob("*.py")}
    assert not {path: found for path, found in offenders.items() if found}


def test_library_modules_do_not_import_command_modules():
    commands = {"lambda_dpo.commands", "lambda_dpo.cli", "lambda_dpo.data.commands", "search.commands"}
    library = [p for p in [*(ROOT / "lambda_dpo").rglob("*.py"), *(ROOT / "search").rglob("*.py")] if p.stem not in ("commands", "cli")]
    offenders = {str(p.relative_to(ROOT)): sorted(imported_modules(p) & commands) for p in library}
    assert not {path: found for path, found in offenders.items() if found}
