"""docs/architecture.md's layout tree lists exactly the Python files of bindiff/ and adapters/.

The tree is the first ```text block under "## Layout". Each line starts with a name; a name
ending in "/" is a folder, and indentation gives nesting (a line belongs to the nearest line
above it that is indented less). What follows the name is its description and is ignored.
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "architecture.md"
PACKAGES = ("bindiff", "adapters")
TREE_DRAWING = " \t│├└─"  # leading characters that only indent, should the tree ever be drawn with them


def layout_block(text: str) -> list[str]:
    """The lines of the first ```text block after the "## Layout" heading."""
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if line.strip() == "## Layout"), None)
    assert start is not None, f"{DOC.name} has no '## Layout' heading"
    opening = next((i for i in range(start + 1, len(lines)) if lines[i].strip().startswith("```text")), None)
    assert opening is not None, f"{DOC.name}: no ```text block under '## Layout'"
    closing = next((i for i in range(opening + 1, len(lines)) if lines[i].strip().startswith("```")), None)
    assert closing is not None, f"{DOC.name}: the ```text block under '## Layout' is not closed"
    return lines[opening + 1:closing]


def tree_paths(lines: list[str]) -> list[str]:
    """Every entry of the tree as a path relative to the repository root ("bindiff/core/process.py")."""
    paths = []
    folders: list[tuple[int, str]] = []  # (indent, path) of the folders enclosing the current line
    for line in lines:
        name_start = len(line) - len(line.lstrip(TREE_DRAWING))
        if not line[name_start:].strip():
            continue
        name = line[name_start:].split()[0]
        while folders and folders[-1][0] >= name_start:
            folders.pop()
        path = (folders[-1][1] if folders else "") + name
        paths.append(path)
        if name.endswith("/"):
            folders.append((name_start, path))
    return paths


def listed_python_files() -> list[str]:
    return [p for p in tree_paths(layout_block(DOC.read_text(encoding="utf-8"))) if p.endswith(".py")]


def source_python_files() -> set[str]:
    return {path.relative_to(ROOT).as_posix()
            for top in PACKAGES for path in (ROOT / top).rglob("*.py")
            if "__pycache__" not in path.parts}


def test_the_parser_follows_indentation():
    lines = ["pkg/         the package", "  a.py       a file", "  sub/       a folder", "    b.py     deeper",
             "  c.py       back up", "other/", "top.py"]
    assert tree_paths(lines) == ["pkg/", "pkg/a.py", "pkg/sub/", "pkg/sub/b.py", "pkg/c.py", "other/", "top.py"]


def test_every_python_file_is_in_the_layout_tree():
    listed = set(listed_python_files())
    missing = sorted(source_python_files() - listed)
    assert not missing, f"docs/architecture.md's layout tree lacks (or misplaces): {missing}"


def test_every_python_file_in_the_layout_tree_exists():
    listed = listed_python_files()
    assert len(listed) == len(set(listed)), "docs/architecture.md's layout tree names a file twice"
    absent = sorted(p for p in listed if not (ROOT / p).is_file())
    assert not absent, f"docs/architecture.md's layout tree names files that do not exist: {absent}"
