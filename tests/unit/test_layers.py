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
    commands = {"lambda_dpo.commands", "lambda_dpo.cli", "lambda_dpo.data.commands", "lambda_dpo.verifiable.commands", "search.commands"}
    library = [p for p in [*(ROOT / "lambda_dpo").rglob("*.py"), *(ROOT / "search").rglob("*.py")] if p.stem not in ("commands", "cli")]
    offenders = {str(p.relative_to(ROOT)): sorted(imported_modules(p) & commands) for p in library}
    assert not {path: found for path, found in offenders.items() if found}


def test_the_core_library_does_not_import_the_optional_dependencies():
    """lambda_dpo's loss, data and training loop work without the sweep, eval and real extras installed."""
    import subprocess
    import sys

    code = (
        "import sys, lambda_dpo.loss, lambda_dpo.train, lambda_dpo.preflight, lambda_dpo.verifiable.scoring, lambda_dpo.pretrained; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'ray', 'optuna', 'lm_eval', 'gguf', 'langdetect'}))"
    )
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT).stdout.strip()
    assert loaded == "[]"


def module_name(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")


def test_no_two_modules_import_each_other():
    """A pair that imports each other can only load in one order (and hid a layering mistake twice)."""
    paths = [*(ROOT / "lambda_dpo").rglob("*.py"), *(ROOT / "search").rglob("*.py")]
    imports = {module_name(p): imported_modules(p) for p in paths}
    pairs = sorted({tuple(sorted((a, b))) for a, found in imports.items() for b in found if b in imports and b != a and a in imports[b]})
    assert not pairs


def test_the_data_package_does_not_import_the_verifiable_sets():
    """lambda_dpo.data is what every dataset needs; the verifiable sets are built on it, not in it."""
    offenders = {str(p.relative_to(ROOT)): sorted(m for m in imported_modules(p) if m.startswith("lambda_dpo.verifiable")) for p in (ROOT / "lambda_dpo" / "data").rglob("*.py")}
    assert not {path: found for path, found in offenders.items() if found}
