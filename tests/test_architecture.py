"""`docs/architecture.md` is the map, and the tree keeps to it.

Read the way a newcomer reads it: every folder and module the map names
exists, every package in the tree is on the map, each module imports only its
own layer and the layers below (imports inside functions too), no module
passes 600 lines, no file name repeats a sibling's name or a scheme's prefix,
and every name the docs and examples import still imports.
"""

from __future__ import annotations

import ast
import importlib
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
MAP = REPO / "docs" / "architecture.md"
# Each source folder and the import name it installs as (pyproject package-dir).
SOURCES = {
    "farthing": "farthing",
    "wallet": "farthing.wallet",
    "ledger": "farthing.ledger",
    "paywall": "farthing.paywall",
    "agents": "farthing.agents",
    "inference": "farthing.inference",
    "contracts": "farthing.contracts",
    "dashboard": "farthing.dashboard",
    "jobs": "farthing.jobs",
}
MAX_LINES = 600
ROLE_PREFIXES = (
    "channel_",
    "authcapture_",
    "auth_capture_",
    "facilitator_",
    "exact_",
    "upto_",
    "mcp_",
)
SIBLINGS_APART = "farthing.paywall.schemes."


@dataclass(frozen=True)
class Module:
    name: str
    path: Path


def _modules() -> list[Module]:
    found = []
    for folder, package in SOURCES.items():
        for path in sorted((REPO / folder).rglob("*.py")):
            relative = path.relative_to(REPO / folder)
            if "migrations" in relative.parts or "__pycache__" in relative.parts:
                continue
            parts = list(relative.with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found.append(Module(".".join([package, *parts]), path))
    return found


def _layers() -> list[tuple[int, str]]:
    """(layer, module prefix) rows of the map's layer table."""
    text = MAP.read_text()
    table = text.split("## The layers", 1)[1].split("\n## ", 1)[0]
    rows = []
    for line in table.splitlines():
        match = re.match(r"\|\s*(\d+)\s*\|(.*)\|\s*$", line)
        if match:
            for prefix in re.findall(r"`([a-z_.]+)`", match.group(2)):
                rows.append((int(match.group(1)), prefix))
    return rows


def _layer_of(name: str, layers: list[tuple[int, str]]) -> tuple[int, str] | None:
    best: tuple[int, str] | None = None
    for layer, prefix in layers:
        if (name == prefix or name.startswith(prefix + ".")) and (
            best is None or len(prefix) > len(best[1])
        ):
            best = (layer, prefix)
    return best


def _imports(module: Module) -> list[tuple[int, str]]:
    """(line, imported module) for every ``farthing`` import, at any depth."""
    tree = ast.parse(module.path.read_text(), filename=str(module.path))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.split(".")[0] == "farthing":
                out.append((node.lineno, node.module))
        elif isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names if a.name.startswith("farthing.")]
    return out


def test_every_path_the_map_names_exists() -> None:
    # Paths are written from the repository's top (`paywall/edge/`) or, in the
    # walks, from a package's folder (`edge/paths.py`): each must end a real path.
    named = set(re.findall(r"`((?:[a-z_]+/)*(?:[a-z_0-9]+\.py)?)`", MAP.read_text())) - {""}
    assert len(named) > 40, "the map names too few paths"
    real = [str(p.relative_to(REPO)) for p in REPO.rglob("*") if ".venv" not in p.parts]
    real += [f"{r}/" for r in real]
    missing = sorted(n for n in named if not any(r == n or r.endswith("/" + n) for r in real))
    assert not missing, f"docs/architecture.md names paths that do not exist: {missing}"


def test_every_package_is_on_the_map() -> None:
    text = MAP.read_text()
    packages = sorted(
        str(init.parent.relative_to(REPO)) + "/"
        for folder in SOURCES
        for init in (REPO / folder).rglob("__init__.py")
        # Alembic's migrations/ is on the map; the revision scripts under it are not packages of ours.
        if "migrations" not in init.parent.parts[:-1]
    )
    unnamed = [p for p in packages if f"`{p}`" not in text]
    assert not unnamed, f"packages missing from docs/architecture.md: {unnamed}"


def test_imports_follow_the_layers() -> None:
    layers = _layers()
    assert len(layers) > 20, "the map's layer table did not parse"
    wrong = []
    for module in _modules():
        own = _layer_of(module.name, layers)
        assert own is not None, f"{module.name} is in no layer of docs/architecture.md"
        for line, imported in _imports(module):
            theirs = _layer_of(imported, layers)
            if theirs is None:
                continue  # the `farthing` package itself
            where = f"{module.path.relative_to(REPO)}:{line} imports {imported}"
            if theirs[0] > own[0]:
                wrong.append(f"{where} (layer {theirs[0]} above {own[0]})")
            elif (
                theirs[0] == own[0]
                and theirs[1] != own[1]
                and own[1].startswith(SIBLINGS_APART)
                and theirs[1].startswith(SIBLINGS_APART)
            ):
                wrong.append(f"{where} (one scheme importing another)")
    assert not wrong, "imports against docs/architecture.md's layers:\n" + "\n".join(wrong)


def test_no_module_passes_600_lines() -> None:
    paths = [m.path for m in _modules()] + sorted((REPO / "benchmarks").glob("*.py"))
    lines = {str(p.relative_to(REPO)): len(p.read_text().splitlines()) for p in paths}
    long = {path: n for path, n in lines.items() if n > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines: {long}"


def test_no_file_name_repeats_a_prefix() -> None:
    wrong = []
    for module in _modules():
        path = module.path
        stem = path.stem
        if stem.startswith("_"):
            continue  # __init__, __main__
        if stem.startswith(ROLE_PREFIXES):
            wrong.append(f"{path.relative_to(REPO)} (a scheme's or role's prefix: use a folder)")
            continue
        head = stem.split("_", 1)[0]
        if "_" in stem and ((path.parent / f"{head}.py").exists() or (path.parent / head).is_dir()):
            wrong.append(f"{path.relative_to(REPO)} (starts with its sibling {head!r})")
    assert not wrong, "file names carrying the architecture:\n" + "\n".join(wrong)


IMPORT_LINE = re.compile(
    r"^\s*from\s+(farthing(?:\.[a-z_0-9]+)*)\s+import\s+(\([^)]*\)|[^\n]+)", re.MULTILINE
)


def _documented_imports() -> list[tuple[str, str, str]]:
    sources = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
    sources += sorted((REPO / "examples").rglob("*.py"))
    found = []
    for source in sources:
        for match in IMPORT_LINE.finditer(source.read_text()):
            names = match.group(2).strip("()").split("#", 1)[0]
            for raw in names.replace("\n", ",").split(","):
                name = raw.split(" as ", 1)[0].strip()
                if name and name.isidentifier():
                    found.append((str(source.relative_to(REPO)), match.group(1), name))
    return found


DOCUMENTED = _documented_imports()


def test_the_docs_show_imports() -> None:
    assert len(DOCUMENTED) > 30


@pytest.mark.parametrize(("source", "module", "name"), DOCUMENTED)
def test_every_documented_import_works(source: str, module: str, name: str) -> None:
    imported = importlib.import_module(module)
    if not hasattr(imported, name):
        importlib.import_module(f"{module}.{name}")  # a submodule, imported by name
