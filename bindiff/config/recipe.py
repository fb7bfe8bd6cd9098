"""Load a recipe: YAML file + ``key=value`` overrides → a validated, fully resolved dict.

Values are parsed with ``yaml.safe_load`` only (``train.lr=3e-4`` is a float, ``[600]`` a
list, ``null`` None); nothing in a recipe is ever evaluated as code.
"""

from __future__ import annotations

import copy
import difflib
import hashlib
import math
import re
from collections.abc import Hashable
from pathlib import Path
from typing import Any, Iterable

import yaml

from ..arguments import COMMAND_MARK, argument  # noqa: F401  (re-exported: bindiff.config.argument)
from .schema import FOLDER_NAME_RULE, FREE, RENAMED, TASKS, Key, defaults, is_folder_name, schema_for


class RecipeError(ValueError):
    """A recipe or override that cannot be used; the message names the file and key."""


def refuse_one_string(overrides, name: str = "overrides") -> None:
    """TypeError for one string where a list of ``key=value`` strings is meant: its characters
    would be read as overrides, one by one ("override 't' is not of the form key=value"); and for
    what holds no strings at all (None or 5: "'NoneType' object is not iterable")."""
    if isinstance(overrides, (str, bytes)):
        raise TypeError(f"{name} must be a list of key=value strings, not one string: write [{overrides!r}]")
    if not isinstance(overrides, Iterable):
        raise TypeError(f"{name} must be a list of key=value strings (empty: none), got {overrides!r}")


def whole_count(value, name: str, flag: str):
    """``value`` (None, or a whole number, numpy's too) as a plain int; TypeError naming it otherwise."""
    if value is None:
        return None
    import operator

    if isinstance(value, bool):
        raise TypeError(f"{argument(name, flag)} must be a whole number, got {value!r}")
    try:
        return operator.index(value)  # np.int64(3) -> 3: recipe.yaml and the folder's hash hold plain ints
    except TypeError:
        raise TypeError(f"{argument(name, flag)} must be a whole number, got {value!r}") from None


def _type_name(types: tuple) -> str:
    names = {str: "string", int: "integer", float: "number", bool: "true/false", list: "list",
             dict: "mapping", type(None): "null"}
    if float in types:
        types = tuple(t for t in types if t is not int)
    return " or ".join(dict.fromkeys(names.get(t, t.__name__) for t in types))


def _valid_keys(schema: dict, prefix: str = "") -> list[str]:
    keys = []
    for name, spec in schema.items():
        if isinstance(spec, dict):
            keys += _valid_keys(spec, f"{prefix}{name}.")
        else:
            keys.append(f"{prefix}{name}" + (".*" if spec is FREE else ""))
    return keys


def _check_value(dotted: str, spec: Key, value: Any, source: str) -> Any:
    # YAML 1.1 reads "1e-3" (no dot) as a string; accept it where only numbers make sense, and where a
    # key takes text too (a time: a number or a date) when it is written as a number
    if isinstance(value, str) and float in spec.types and (str not in spec.types or (
            _SCIENTIFIC.match(value) and spec.check is not None and not spec.check(value))):
        try:
            value = float(value)
        except ValueError:
            pass
    # bool is a subclass of int: refuse True where a number is expected and vice versa.
    ok = any(
        (value is None and t is type(None))
        or (t is bool and isinstance(value, bool))
        or (t is not bool and t is not type(None) and isinstance(value, t) and not isinstance(value, bool))
        for t in spec.types
    )
    if isinstance(value, int) and not isinstance(value, bool) and float in spec.types and int not in spec.types:
        ok, value = True, float(value)
    if not ok:
        quote = " (quote the value to mean it as text)" if str in spec.types and value is not None else ""
        raise RecipeError(f"{source}: key '{dotted}' must be of type {_type_name(spec.types)}, got {value!r}{quote}")
    if isinstance(value, float) and not math.isfinite(value):
        raise RecipeError(f"{source}: key '{dotted}' must be a finite number, got {value!r}")
    if spec.check is not None and value is not None and not spec.check(value):
        raise RecipeError(f"{source}: key '{dotted}' {spec.requirement}, got {value!r}")
    return value


_SCIENTIFIC = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)[eE][+-]?\d+$")


def _numbers_from_strings(value: Any) -> Any:
    """Free-form sections: read "1e-3" as the number YAML 1.1 fails to see in it."""
    if isinstance(value, dict):
        return {k: _numbers_from_strings(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_numbers_from_strings(v) for v in value]
    if isinstance(value, str) and _SCIENTIFIC.match(value):
        return float(value)
    return value


def _merge(target: dict, incoming: dict, schema: dict, source: str, prefix: str = "", root: dict | None = None) -> None:
    root = schema if root is None else root
    if not isinstance(incoming, dict):
        raise RecipeError(f"{source}: section '{prefix.rstrip('.') or '<top>'}' must be a mapping, got {incoming!r}")
    for name, value in incoming.items():
        dotted = f"{prefix}{name}"
        value = value.value if isinstance(value, _Value) else value  # the override's path ends here
        if name not in schema:
            moved = [f"'{old}' is now '{new}'" for old, new in RENAMED.items()
                     if old == dotted or old.startswith(dotted + ".")]
            if moved:
                raise RecipeError(f"{source}: key '{dotted}' was renamed: {'; '.join(moved)}")
            valid = [k for k in _valid_keys(root) if k.startswith(prefix)]
            # the nearest name first: a typo's key is otherwise one among a hundred
            depth = dotted.count(".") + 1  # a name at the typo's own depth: a section for a section
            level = sorted({".".join(k.removesuffix(".*").split(".")[:depth]) for k in valid})
            near = difflib.get_close_matches(dotted, level, n=1, cutoff=0.78)
            hint = f" (did you mean '{near[0]}'?)" if near else ""
            raise RecipeError(f"{source}: unknown key '{dotted}'{hint}. Valid keys: {', '.join(valid)}")
        spec = schema[name]
        if spec is FREE:
            if not isinstance(value, dict):
                raise RecipeError(f"{source}: key '{dotted}' must be a mapping, got {value!r}")
            if bad := [k for k in value if not isinstance(k, str)]:  # passed on as keyword arguments
                raise RecipeError(f"{source}: key '{dotted}' has a name that is not text: {bad[0]!r}")
            _follow_path(target[name], value)
        elif isinstance(spec, dict):
            _merge(target[name], value, spec, source, f"{dotted}.", root)
        elif isinstance(value, dict) and _holds_a_value(value):  # `train.lr.x=1`: the path goes past a value
            raise RecipeError(f"{source}: key '{dotted}' is a value, not a section: "
                              f"'{dotted}.{next(iter(value))}' does not exist")
        else:
            target[name] = _check_value(dotted, spec, value, source)


def _follow_path(target: dict, incoming: dict) -> None:
    """Merge into a free-form section entry by entry. A mapping a file gives (or an override's value)
    replaces each entry it names; an override's dotted path is followed instead, so that
    ``compare.spaces.binomial.train.lr={float: [...]}`` replaces that entry of binomial's space and
    keeps its others."""
    for key, value in incoming.items():
        if isinstance(value, dict) and _holds_a_value(value):  # the path goes on below this key
            if not isinstance(target.get(key), dict):
                target[key] = {}
            _follow_path(target[key], value)
        else:
            value = value.value if isinstance(value, _Value) else value
            target[key] = _numbers_from_strings(copy.deepcopy(value))


def _holds_a_value(value: Any) -> bool:
    """True for the mappings ``_nest`` builds along an override's path (its value at the end)."""
    return isinstance(value, _Value) or (isinstance(value, dict) and any(map(_holds_a_value, value.values())))


class _UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a key given twice in one mapping (a second ``train:``
    section would otherwise replace the first without a word)."""

    def construct_mapping(self, node, deep=False):
        seen: dict = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *anchor`: its keys may be overridden here
                continue
            key = self.construct_object(key_node, deep=deep)
            if not isinstance(key, Hashable):
                raise RecipeError(f"line {key_node.start_mark.line + 1}: a key must be a name, got a "
                                  f"{type(key).__name__}")
            if key in seen:
                raise RecipeError(f"line {key_node.start_mark.line + 1}: key {key!r} appears twice in the same "
                                  f"section (first on line {seen[key] + 1})")
            seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep=deep)


# Integers as YAML 1.2 reads them, in decimal: YAML 1.1 (PyYAML's default) reads `010` as 8,
# `1:30` as 90 and `0x10` as 16. Those spellings stay strings here, which an integer key refuses.
# Floats likewise lose YAML 1.1's base 60 (`1:30.5` was 90.5). Dates stay text (`2024-01-01`, which
# YAML 1.1 makes a date object that no key takes): a time key reads ISO 8601 itself.
def _safe_resolvers_without(*tags: str) -> dict:
    """yaml.SafeLoader's implicit resolvers, less those of ``tags`` (a subclass's own table)."""
    return {first: [(tag, pattern) for tag, pattern in resolvers if tag not in tags]
            for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}


_UniqueKeyLoader.yaml_implicit_resolvers = _safe_resolvers_without(
    "tag:yaml.org,2002:int", "tag:yaml.org,2002:float", "tag:yaml.org,2002:timestamp")
_UniqueKeyLoader.add_implicit_resolver("tag:yaml.org,2002:int", re.compile(r"^[-+]?(?:0|[1-9][0-9_]*)$"),
                                       list("-+0123456789"))
_UniqueKeyLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+][0-9]+)?
                    |\.[0-9][0-9_]*(?:[eE][-+][0-9]+)?
                    |[-+]?\.(?:inf|Inf|INF)
                    |\.(?:nan|NaN|NAN))$""", re.X),
    list("-+0123456789."))
def _digits(loader, node) -> str:
    """An integer scalar's digits; more than 1000 are refused (int() refuses beyond 4300 with a
    ValueError, a traceback; no recipe value needs a tenth of that)."""
    digits = loader.construct_scalar(node).replace("_", "")
    if len(digits.lstrip("+-")) > 1000:
        raise RecipeError(f"line {node.start_mark.line + 1}: an integer of {len(digits.lstrip('+-'))} digits "
                          "(at most 1000)")
    return digits


_UniqueKeyLoader.add_constructor("tag:yaml.org,2002:int", lambda loader, node: int(_digits(loader, node), 10))


class _StoredConfigLoader(yaml.SafeLoader):
    """yaml.SafeLoader (a run's config.yaml, a checkpoint's config) with the same digit limit."""


def _construct_stored_int(loader, node):
    _digits(loader, node)
    return yaml.SafeLoader.construct_yaml_int(loader, node)


_StoredConfigLoader.add_constructor("tag:yaml.org,2002:int", _construct_stored_int)
_StoredConfigLoader.yaml_implicit_resolvers = _safe_resolvers_without("tag:yaml.org,2002:timestamp")  # as a recipe

# Null spellings: any other value that YAML reads as nothing (`#` starts a comment) is meant as text.
_NULLS = ("", "~", "null", "Null", "NULL")
# A value of one of these characters alone is YAML syntax (a comment, a tag, a block scalar, an
# anchor), but as an override it can only mean the character: `data.sep=|`.
_SYNTAX_CHARACTERS = set("#!|>&*%@`")


_MAX_EXPANDED = 100_000  # entries a recipe may hold once its aliases are expanded (a real one holds hundreds)


def _acyclic(value: Any, path: frozenset = frozenset(), done: dict | None = None) -> Any:
    """``value`` itself; RecipeError when a YAML anchor holds an alias of itself (``&a [*a]``): the
    value would contain itself without end, or when aliases of aliases expand it beyond
    _MAX_EXPANDED entries (the "billion laughs": every copy of the recipe, checking a free-form
    section, writing it out, would expand them). A container reached again through another alias
    is walked once (``done`` keeps its expanded size), so the check costs the aliases' number."""
    done = {} if done is None else done
    if not isinstance(value, (dict, list)):
        return value
    if id(value) not in done:
        if id(value) in path:
            raise RecipeError("a value refers to itself through a YAML anchor (&name ... *name inside it)")
        size = 1
        for item in (value.values() if isinstance(value, dict) else value):
            _acyclic(item, path | {id(value)}, done)
            size += done.get(id(item), 1)
        done[id(value)] = size
    if not path and done[id(value)] > _MAX_EXPANDED:
        raise RecipeError(f"YAML aliases expand the recipe to {done[id(value)]:,} entries (at most {_MAX_EXPANDED:,})")
    return value


def _load_yaml(text: str, loader=None):
    """``text`` parsed safely; nesting beyond Python's recursion limit is a RecipeError, not a traceback."""
    try:
        return _acyclic(yaml.load(text, Loader=loader or _UniqueKeyLoader))  # noqa: S506 - a SafeLoader subclass
    except RecursionError:
        raise RecipeError("values nested too deeply") from None


def read_yaml_file(path: Path):
    """A YAML file parsed safely, every problem one RecipeError line naming the file."""
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as err:
        raise RecipeError(f"{path}: not UTF-8 text (byte 0x{err.object[err.start]:02x} at offset {err.start})") \
            from None
    except OSError as err:
        raise RecipeError(f"{path}: cannot be read ({err.strerror})") from None
    try:
        return _load_yaml(text)
    except RecipeError as err:
        raise RecipeError(f"{path}: {err}") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        what = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise RecipeError(f"{path}: not valid YAML{where}: {what}") from None


def override_key(text: str) -> str:
    """The dotted key of a ``key=value`` override, its value left unread."""
    return text.split("=", 1)[0].strip()


def parse_override(text: str) -> tuple[list[str], Any]:
    if "=" not in text:
        raise RecipeError(f"override {text!r} is not of the form key=value")
    dotted, raw = text.split("=", 1)
    if not dotted or any(not part for part in dotted.split(".")):
        raise RecipeError(f"override {text!r} has an empty key")
    if raw.strip() in _SYNTAX_CHARACTERS:
        return dotted.split("."), raw.strip()
    if raw.lstrip().startswith("!"):  # a YAML tag (`!!binary aGk=`, `!!python/...`): never constructed
        raise RecipeError(f"override {text!r}: YAML tags are not read; quote the value to mean it as text")
    try:
        value = _load_yaml(raw) if raw != "" else None
        if value is None and raw.split(" #")[0].strip() not in _NULLS:  # `data.sep=#`: a comment to YAML
            value = raw.strip()
        elif _ends_in_a_comment(raw, value):
            raise RecipeError("' #' starts a YAML comment, so the text after it would be dropped; quote the "
                              "value to keep it (key='a #b')")
    except RecipeError as err:
        raise RecipeError(f"override {text!r}: {err}") from None
    except yaml.YAMLError as err:
        raise RecipeError(f"override {text!r}: value is not valid YAML ({getattr(err, 'problem', None) or err})") \
            from None
    return dotted.split("."), value


def _ends_in_a_comment(raw: str, value: Any) -> bool:
    """Whether YAML read ``raw`` up to a ``" #"`` only (`output.root=/tmp/runs #2` is /tmp/runs)."""
    cut = re.split(r"\s#", raw, maxsplit=1)
    if len(cut) == 1:
        return False
    try:
        return _load_yaml(cut[0]) == value  # a # inside quotes or brackets does not cut the value
    except (RecipeError, yaml.YAMLError):
        return False


class _Value:
    """An override's value, told apart from the mappings ``_nest`` builds along its dotted path: in
    a free-form section the path is followed (the entries beside it kept) and the value at its end
    replaces the entry there, even when the value is itself a mapping."""

    def __init__(self, value: Any):
        self.value = value


def _nest(path: list[str], value: Any) -> dict:
    out: Any = _Value(value)
    for part in reversed(path):
        out = {part: out}
    return out


def _task_schema(task: Any, source: str) -> tuple[dict, dict]:
    """The schema and defaults of a task; the task is chosen before any other key is checked."""
    if not isinstance(task, str) or task not in TASKS:  # a list or mapping is unhashable: a TypeError
        raise RecipeError(f"{source}: key 'task' must be one of {', '.join(TASKS)}, got {task!r} (one of your own "
                          "is registered first: register_task, run by a plugin for the bindiff command)")
    schema = schema_for(task)
    config = defaults(schema)
    config["task"] = task
    return schema, config


def load_recipe(path: str | Path | None = None, overrides: Iterable[str] = ()) -> dict:
    """Defaults ← recipe file ← overrides, each validated against the task's schema."""
    refuse_one_string(overrides)
    loaded: dict = {}
    if path is not None:
        path = find_recipe(path)
        loaded = read_yaml_file(path)
        if loaded is None:
            raise RecipeError(f"{path}: recipe is empty")
        if not isinstance(loaded, dict):
            raise RecipeError(f"{path}: a recipe must be a mapping of sections, got {type(loaded).__name__}")
    parsed = [(text, *parse_override(text)) for text in overrides]
    task, task_source = loaded.get("task", "recommend"), str(path)
    for text, keys, value in parsed:
        if keys == ["task"]:
            task, task_source = value, f"override {text!r}"
    schema, config = _task_schema(task, task_source)
    if path is not None:
        _merge(config, loaded, schema, str(path))
        if "name" not in loaded:
            config["name"] = path.stem
    for text, keys, value in parsed:
        _merge(config, _nest(keys, value), schema, f"override {text!r}")
    _check_run_name(config["name"], path, loaded, parsed)
    return config


def _check_run_name(name: str, path: Path | None, loaded: dict, parsed: list) -> None:
    """RecipeError unless a new run's ``name`` is a folder every system can hold, naming where it came from."""
    if is_folder_name(name):
        return
    given = [text for text, keys, _ in parsed if keys == ["name"]]
    if given:
        where = f"override {given[-1]!r}: key 'name'"
    elif path is not None and "name" not in loaded:
        raise RecipeError(f"{path}: the file's name gives the run name {name!r}, which {FOLDER_NAME_RULE}; "
                          "set name: in the recipe")
    else:
        where = f"{path}: key 'name'"
    raise RecipeError(f"{where} {FOLDER_NAME_RULE}, got {name!r}")


def shipped_recipes() -> dict[str, Path]:
    """The recipes installed with bindiff, by name."""
    from importlib import resources

    folder = resources.files("bindiff.recipes")
    return {Path(str(entry)).stem: Path(str(entry)) for entry in sorted(folder.iterdir(), key=lambda e: e.name)
            if entry.name.endswith(".yaml")}


def find_recipe(path: str | Path) -> Path:
    """A recipe file: the path itself, or a shipped recipe's name (``ml1m`` or ``ml1m.yaml``)."""
    candidate = Path(path)
    if candidate.is_file():
        return candidate
    shipped = shipped_recipes()
    name = candidate.name[:-5] if candidate.name.endswith(".yaml") else candidate.name
    # `recipes/ml1m.yaml`, as the README writes it, works from any folder; a missing file in a
    # project's own recipes/ folder (/home/x/proj/recipes/ml1m.yaml) is not swapped for ours
    if name in shipped and (len(candidate.parts) == 1 or candidate.parts[:-1] == ("recipes",)):
        return shipped[name]
    raise RecipeError(f"{path}: recipe file not found, and not the name of a shipped recipe "
                      f"({', '.join(shipped)}; `bindiff recipes` lists them)")


def describe_recipe(path: Path) -> str:
    """The first sentence of a recipe's leading comment."""
    words = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.startswith("#"):
            break
        words.append(line.lstrip("# ").strip())
        if words[-1].endswith((".", ":")):
            break
    text = " ".join(words)
    return re.split(r"\.\s+(?=[A-Z])", text)[0].rstrip(".:")


def with_key(config: dict, dotted: str, value: Any, source: str) -> dict:
    """A copy of a resolved config with one dotted key set, checked exactly as an override is.

    ``source`` starts the message of a refusal, which then names the key (and, for an unknown
    key, the valid keys of its section) in the words ``load_recipe`` uses.
    """
    updated = copy.deepcopy(config)
    _merge(updated, _nest(dotted.split("."), value), schema_for(config["task"]), source)
    return updated


def dump_recipe(config: dict) -> str:
    return yaml.safe_dump(config, sort_keys=False, default_flow_style=None)


def recipe_from_text(text: str, source: str = "checkpoint") -> dict:
    """Re-validate a resolved config stored as YAML text (in a run dir or a checkpoint)."""
    try:
        loaded = _load_yaml(text, _StoredConfigLoader) or {}
    except RecipeError as err:
        raise RecipeError(f"{source}: {err}") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise RecipeError(f"{source}: not valid YAML{where}: {getattr(err, 'problem', None) or err}") from None
    if not isinstance(loaded, dict):
        raise RecipeError(f"{source}: a config must be a mapping of sections, got {type(loaded).__name__}")
    loaded = _renamed_keys_moved(loaded)
    schema, config = _task_schema(loaded.get("task", "recommend"), source)
    _merge(config, loaded, schema, source)
    return config


def _renamed_keys_moved(loaded: dict) -> dict:
    """A stored config with every key of ``RENAMED`` under its new name (runs made before the rename)."""
    loaded = copy.deepcopy(loaded)
    for old, new in RENAMED.items():
        *old_path, old_name = old.split(".")
        section = loaded
        for part in old_path:
            section = section.get(part) if isinstance(section, dict) else None
        if not isinstance(section, dict) or old_name not in section:
            continue
        value = section.pop(old_name)
        *new_path, new_name = new.split(".")
        target = loaded
        for part in new_path:
            target = target.setdefault(part, {})
        target[new_name] = value
    for old in RENAMED:  # sections left empty by the moves
        top = old.split(".")[0]
        if loaded.get(top) == {}:
            del loaded[top]
    return loaded


def config_hash(config: dict) -> str:
    return hashlib.sha256(dump_recipe(config).encode()).hexdigest()[:8]
