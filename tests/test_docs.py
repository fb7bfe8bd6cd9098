"""The documentation keeps its promises: the API example runs, and links lead somewhere.

The example in docs/api.md is executed exactly as a reader would copy it, so a change to
the library that breaks the documented usage fails here instead of in a user's hands.
"""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path
from urllib.parse import unquote

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
MARKER = "# docs-example: api"

FENCE = re.compile(r"^(```|~~~)([^\n]*)\n(.*?)^\1[ \t]*$", re.MULTILINE | re.DOTALL)
INLINE_CODE = re.compile(r"`[^`\n]*`")
# [text](target) and ![alt](target), with an optional "title" after the target.
INLINE_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
# [label]: target  (reference-style definitions)
REFERENCE_LINK = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+.*)?$", re.MULTILINE)
HEADING = re.compile(r"^#{1,6}[ \t]+(.+?)[ \t#]*$", re.MULTILINE)


def markdown_files() -> list[Path]:
    files = sorted(DOCS.glob("*.md"))
    readme = ROOT / "README.md"
    if readme.is_file():
        files.append(readme)
    return files


def api_example() -> str:
    text = (DOCS / "api.md").read_text(encoding="utf-8")
    blocks = [body for fence, info, body in FENCE.findall(text)
              if info.strip() == "python" and body.lstrip().startswith(MARKER)]
    assert blocks, f"docs/api.md has no ```python block starting with {MARKER!r}"
    assert len(blocks) == 1, f"docs/api.md has {len(blocks)} blocks marked {MARKER!r}; keep exactly one"
    return blocks[0]


def test_api_example_runs():
    code = compile(api_example(), str(DOCS / "api.md") + " (docs-example: api)", "exec")
    # The example's tensors are tiny: with several threads, torch spends longer handing
    # work between them than computing, and on a busy machine far longer. One thread keeps
    # the example within its promised few seconds; the caller's setting is restored after.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        exec(code, {"__name__": "__docs_example__"})
    finally:
        torch.set_num_threads(threads)


def prose(text: str) -> str:
    """The text with code blocks and inline code removed: links inside code are not links."""
    text = FENCE.sub("", text)
    return INLINE_CODE.sub("", text)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped but for hyphens and
    underscores (`ml1m_diffrec.yaml` keeps its underscore), spaces to hyphens."""
    heading = re.sub(r"[`*]", "", heading).strip().lower()
    kept = "".join(ch for ch in heading
                   if ch in " -_" or unicodedata.category(ch)[0] in ("L", "N"))
    return kept.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    return {slug(h) for h in HEADING.findall(FENCE.sub("", path.read_text(encoding="utf-8")))}


def relative_links(path: Path) -> list[str]:
    text = prose(path.read_text(encoding="utf-8"))
    targets = INLINE_LINK.findall(text) + REFERENCE_LINK.findall(text)
    # Absolute URLs and mail addresses are not checked here: the test must run offline.
    return [t for t in targets if not re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:", t)]


@pytest.mark.parametrize("path", markdown_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(path: Path):
    broken = []
    for target in relative_links(path):
        file_part, _, fragment = target.partition("#")
        dest = (path.parent / unquote(file_part)).resolve() if file_part else path
        if not dest.exists():
            broken.append(f"{target} (no such file)")
        elif fragment and dest.suffix == ".md" and fragment not in anchors(dest):
            broken.append(f"{target} (no heading with anchor #{fragment} in {dest.name})")
    assert not broken, f"{path.relative_to(ROOT)} has broken links: " + "; ".join(broken)


def flatten(config: dict, prefix: str = "") -> dict:
    """Dotted key -> value; free-form sections are walked too, so their entries are keys."""
    out = {}
    for name, value in config.items():
        if isinstance(value, dict):
            out.update(flatten(value, f"{prefix}{name}."))
        else:
            out[f"{prefix}{name}"] = value
    return out


def table_rows(text: str, heading: str) -> list[list[str]]:
    """Cells of the first table after ``heading`` (header and separator rows skipped)."""
    section = text.split(heading, 1)[1]
    rows = []
    for line in section.splitlines()[1:]:
        if line.startswith("|"):
            rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
        elif rows:
            break
    return rows[2:]


def test_recipe_page_documents_every_schema_key():
    from bindiff.config import COMMON, TASKS, schema_for

    def dotted(schema: dict, prefix: str = "") -> set[str]:
        out = set()
        for name, spec in schema.items():
            out |= dotted(spec, f"{prefix}{name}.") if isinstance(spec, dict) else {f"{prefix}{name}"}
        return out

    keys = dotted(COMMON).union(*(dotted(schema_for(task)) for task in TASKS))
    text = (DOCS / "recipes.md").read_text(encoding="utf-8")
    section = text.split("## Sections and keys", 1)[1].split("## Free-form sections", 1)[0]
    # Every key has a table row "| `section.key` |", so a new schema key cannot go
    # undocumented and a removed one cannot linger.
    documented = set(re.findall(r"^\|\s*`([a-z_.]+)`\s*\|", section, re.MULTILINE))
    assert not keys - documented, f"docs/recipes.md lacks rows for: {sorted(keys - documented)}"
    assert not documented - keys, f"docs/recipes.md documents unknown keys: {sorted(documented - keys)}"


def test_recipe_page_lists_how_the_shipped_recipes_differ():
    import yaml

    from bindiff.config import load_recipe

    strong = flatten(load_recipe(ROOT / "recipes" / "ml1m.yaml"))
    diffrec = flatten(load_recipe(ROOT / "recipes" / "ml1m_diffrec.yaml"))
    actual = {k: (strong.get(k), diffrec.get(k)) for k in strong.keys() | diffrec.keys()
              if strong.get(k) != diffrec.get(k)}
    text = (DOCS / "recipes.md").read_text(encoding="utf-8")
    cell = lambda c: yaml.safe_load(c.strip("`"))  # noqa: E731  cells hold YAML in backticks
    documented = {row[0].strip("`"): (cell(row[1]), cell(row[2]))
                  for row in table_rows(text, "### How the two recipes differ")}
    assert documented == actual, (
        "docs/recipes.md, 'How the two recipes differ', is out of date: the recipes differ in "
        f"{dict(sorted(actual.items()))}"
    )


def test_using_a_trained_model_example_runs(tmp_path):
    """docs/using-a-trained-model.md's command-line example, run as written, in a fresh folder."""
    import os
    import shutil
    import subprocess
    import sys

    text = (DOCS / "using-a-trained-model.md").read_text(encoding="utf-8")
    (script,) = [body for fence, info, body in FENCE.findall(text)
                 if info.strip() == "bash" and body.lstrip().startswith("# docs-example: using")]
    shutil.copytree(ROOT / "recipes", tmp_path / "recipes")
    bin_dir = str(Path(sys.executable).parent)
    env = {**os.environ, "PATH": bin_dir + os.pathsep + os.environ.get("PATH", "")}
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=240)
    assert done.returncode == 0, done.stderr
    out = done.stdout.splitlines()
    assert out[0].startswith("run directory: runs/ml100k/")
    ranked = [line.split("\t") for line in out[1:21]]
    assert [int(r[0]) for r in ranked] == list(range(1, 21))
    assert not {"50", "172", "181"} & {r[1] for r in ranked}
    assert out[21] == "2 users, 10 items each: recs.csv" and out[22] == "user,rank,item,score"
    assert out[-1] == "torch.Size([1, 300])"


# `bindiff train|compare|tune|show-config recipes/X.yaml key=value ...` as the pages write it
DOCUMENTED_COMMAND = re.compile(r"bindiff (?:train|compare|tune|show-config) (recipes/[\w.]+\.yaml)([^`\n]*)")
PLACEHOLDER = re.compile(r"=(?:S|LR|N|D|W|VALUE)$|KEY|\$|…|<|\.\.\.")


def documented_commands() -> list[tuple[str, str, list[str]]]:
    """Every documented command's page, recipe and overrides; commands with placeholders
    (``seed=S``, ``$TUNED``, ``KEY=VALUE``) are left out, since they are templates."""
    import shlex

    found = []
    for path in markdown_files():
        text = re.sub(r"\\\n\s*", " ", path.read_text(encoding="utf-8"))  # shell line continuations
        for match in DOCUMENTED_COMMAND.finditer(text):
            words = shlex.split(match.group(2).split("#")[0].split("|")[0])
            overrides = [w for w in words if "=" in w and not w.startswith("-") and not w.startswith("BINDIFF_")
                         and ("." in w.split("=")[0] or w.split("=")[0] in ("seed", "name", "task"))]
            if not any(PLACEHOLDER.search(o) for o in overrides):
                found.append((path.name, match.group(1), overrides))
    return found


def test_every_documented_recipe_command_resolves():
    from bindiff.config import load_recipe

    commands = documented_commands()
    assert len(commands) > 50  # the pages hold dozens; a broken pattern would find none
    for page, recipe, overrides in commands:
        try:
            load_recipe(ROOT / recipe, overrides)
        except ValueError as err:  # RecipeError: a key renamed or removed since the page was written
            pytest.fail(f"{page}: `bindiff ... {recipe} {' '.join(overrides)}` no longer resolves: {err}")


def test_every_function_of_the_interaction_adapters_page_imports_from_bindiff_adapters():
    """The page presents them as ``bindiff.adapters``'s; ``train_test_split`` was not there."""
    import bindiff.adapters

    text = (ROOT / "docs" / "api.md").read_text()
    section = text[text.index("## Adapters: interaction data"):text.index("## Masks: files")]
    named = set(re.findall(r"`([A-Za-z_][A-Za-z_0-9]*)\(", section))
    assert len(named) >= 10 and "train_test_split" in named
    assert sorted(n for n in named if n not in bindiff.adapters.__all__) == []


# `name(param, param=default, *, param=default)` as docs/api.md writes a signature (one may wrap lines)
SIGNATURE = re.compile(r"`((?:[A-Za-z_]\w*\.)*[A-Za-z_]\w*)\(((?:[^`()]|\([^`()]*\))*)\)`")
METHOD_OWNERS = ("BernoulliProcess", "BinomialDiffusion", "ReverseScheduler", "Recommender", "RankingReport", "Split")


def documented_signatures(text: str) -> list[tuple[int, str, object, list[tuple[str, str | None]]]]:
    """(line, name, object, [(parameter, default as written)]) of every backticked call on the page
    that names a function or method of bindiff and lists its parameters as a signature does: a call
    example (``run_comparison(seeds=0)``) lacks the first parameter, and is left out."""
    import ast
    import importlib
    import inspect

    import bindiff

    found = []
    for match in SIGNATURE.finditer(text):
        name, params = match.group(1), re.sub(r"\s+", " ", match.group(2))
        try:
            args = ast.parse(f"def f({params}): pass").body[0].args
        except SyntaxError:
            continue  # prose in parentheses, `forward(x_t, t[, cond])`
        positional = args.posonlyargs + args.args
        defaults = [None] * (len(positional) - len(args.defaults)) + [ast.unparse(d) for d in args.defaults]
        written = list(zip([a.arg for a in positional], defaults))
        written += [(a.arg, None if d is None else ast.unparse(d)) for a, d in zip(args.kwonlyargs, args.kw_defaults)]
        if not written:
            continue
        *owner, leaf = name.split(".")
        candidates = []
        if owner:  # `bindiff.tasks.recommendation.tune.run_tuning`, `BernoulliProcess.from_config`
            try:
                holder = (getattr(bindiff, owner[0]) if len(owner) == 1 and owner[0] in bindiff.__all__
                          else importlib.import_module(".".join(owner)))
            except ImportError:
                continue
            candidates.append((getattr(holder, leaf, None), True))
        else:
            # a bare name could be a call (`run_comparison(seeds=0)`) or another class's method
            # (`score(histories)`, `step`): the first parameter tells which
            candidates.append((getattr(bindiff, leaf, None) if leaf in bindiff.__all__ else None, False))
            candidates += [(getattr(getattr(bindiff, cls), leaf, None), False) for cls in METHOD_OWNERS]
        for obj, named in candidates:
            if obj is None or not callable(obj):
                continue
            try:
                actual = [p for p in inspect.signature(obj).parameters.values() if p.name != "self"]
            except (TypeError, ValueError):
                continue
            if named or (actual and written[0][0] == actual[0].name):  # dotted: a renamed first parameter counts
                found.append((text[:match.start()].count("\n") + 1, name, obj, written))
                break
    return found


def test_the_api_pages_signatures_match_the_code():
    """Every signature docs/api.md and the pages write for a bindiff function or method names its
    parameters as the code does, with the code's defaults; the Jobs section, whose signatures the
    page says are given whole, lists every parameter."""
    import ast
    import inspect

    text = (DOCS / "api.md").read_text(encoding="utf-8")
    jobs_from = text[:text.index("\n## Jobs")].count("\n") + 2  # the section runs to the page's end
    checked, wrong = 0, []
    pages = {"api.md": text, "tuning.md": (DOCS / "tuning.md").read_text(encoding="utf-8"),
             "segmentation.md": (DOCS / "segmentation.md").read_text(encoding="utf-8")}
    for page, body in pages.items():
        for line, name, obj, written in documented_signatures(body):
            checked += 1
            params = {p.name: p for p in inspect.signature(obj).parameters.values() if p.name != "self"}
            takes_any = any(p.kind is p.VAR_KEYWORD for p in params.values())
            for param, default in written:
                if param not in params:
                    if not takes_any:
                        wrong.append(f"{page}:{line}: {name} has no parameter {param!r}")
                    continue
                actual = params[param].default
                if default is None or actual is inspect.Parameter.empty:
                    continue
                try:
                    value = ast.literal_eval(default)
                except ValueError:
                    continue  # a name such as SINGLE
                if value != actual and not (isinstance(value, str) and getattr(actual, "name", None) == value):
                    wrong.append(f"{page}:{line}: {name}: {param}={default} on the page, {actual!r} in the code")
            if page == "api.md" and line >= jobs_from:
                listed = {p for p, _ in written}
                missing = [p for p, q in params.items() if p not in listed and q.kind not in (q.VAR_KEYWORD, q.VAR_POSITIONAL)]
                if missing:
                    wrong.append(f"{page}:{line}: {name} is given whole but lacks {missing}")
    assert checked >= 60  # the pages hold dozens; a broken pattern would find none
    assert not wrong, "\n".join(wrong)
