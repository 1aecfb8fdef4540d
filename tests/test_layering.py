"""The package's floors, read from its import statements (ast): no arrow runs upward.

Every module of remoteclip_jax belongs to a floor; a module may import its own floor's units and
lower ones, never a higher floor, and units that share a floor do not import each other (so
evaluate/ and inference/ stay independent). Imports inside functions count as well.
"""
import ast
import pathlib

import remoteclip_jax

# Low to high. A unit is a sub-package or a top-level module of remoteclip_jax.
FLOORS = [
    {"errors"},
    {"files", "compilation_cache"},
    {"tokenizer", "transforms", "models", "sharding", "checkpoint_manifest", "lazy"},
    {"encode", "weights", "checkpoint"},
    {"data"},
    {"prompts", "geo"},
    {"evaluate", "inference"},
    {"config"},
    {"recipes"},
    {"train", "wise_ft"},
    {"cli"},
    {"main", "__init__"},
]
RANK = {unit: rank for rank, units in enumerate(FLOORS) for unit in units}
PACKAGE = pathlib.Path(remoteclip_jax.__file__).parent


def _unit(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _imports(package=PACKAGE):
    """(importing unit, imported unit, file, line) for every import of a remoteclip_jax module."""
    for path in sorted(package.rglob("*.py")):
        module = ".".join(path.relative_to(package.parent).with_suffix("").parts)
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = ([f"{node.module}.{a.name}" for a in node.names]
                         if node.module == "remoteclip_jax" else [node.module])
            else:
                continue
            for name in names:
                if name.startswith("remoteclip_jax.") and _unit(name) != _unit(module):
                    yield _unit(module), _unit(name), path.relative_to(package.parent), node.lineno


def test_every_unit_has_a_floor():
    units = {_unit(".".join(p.relative_to(PACKAGE.parent).with_suffix("").parts))
             for p in PACKAGE.rglob("*.py")}
    assert units <= set(RANK), f"give these a floor in FLOORS: {sorted(units - set(RANK))}"


def _against(package=PACKAGE) -> list[str]:
    return [f"{file}:{line}: {a} imports {b}" for a, b, file, line in _imports(package)
            if RANK[b] >= RANK[a]]


def test_no_import_runs_upward_or_sideways():
    wrong = _against()
    assert not wrong, "imports against the layering:\n" + "\n".join(wrong)


def test_the_reader_sees_upward_and_sideways_imports(tmp_path):
    package = tmp_path / "remoteclip_jax"
    (package / "data").mkdir(parents=True)
    (package / "data" / "x.py").write_text("def f():\n    from remoteclip_jax.train import loop\n")
    (package / "evaluate").mkdir()
    (package / "evaluate" / "y.py").write_text("import remoteclip_jax.inference.encoder\n")
    assert _against(package) == ["remoteclip_jax/data/x.py:2: data imports train",
                                 "remoteclip_jax/evaluate/y.py:1: evaluate imports inference"]
