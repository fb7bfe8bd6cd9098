"""Code of one's own that the ``bindiff`` command loads before any command runs: modules that register
denoisers (``register_denoiser``), recommendation models (``register_model``) or tasks
(``register_task``), so that recipes, runs and ``--nproc`` workers can name them.

Two ways to name such a module, both read by every ``bindiff`` process (torchrun's workers too):
an installed package's entry point in the group ``bindiff.plugins`` (in its pyproject.toml,
``[project.entry-points."bindiff.plugins"] mine = "my_package.bindiff_plugin"``), and the environment
variable ``BINDIFF_PLUGINS`` (module names, comma-separated, importable from ``sys.path``; e.g. a
module beside a notebook with ``PYTHONPATH=.``). From Python, importing the module is enough.
"""

from __future__ import annotations

import importlib
import os
from importlib.metadata import entry_points

GROUP = "bindiff.plugins"
ENV = "BINDIFF_PLUGINS"


class PluginError(ValueError):
    """A module ``BINDIFF_PLUGINS`` names cannot be found (bad input; an error inside it is a bug)."""


def load_plugins() -> list[str]:
    """Import every entry point of ``GROUP`` and every module ``BINDIFF_PLUGINS`` names; their names.

    A module that is not there is a PluginError naming the variable; an error raised while a module
    runs (including an import inside it that fails) keeps its traceback: it is the module's bug.
    """
    loaded = []
    for point in entry_points(group=GROUP):
        point.load()
        loaded.append(point.value)
    for name in (part.strip() for part in os.environ.get(ENV, "").split(",")):
        if not name:
            continue
        if name.startswith("."):  # relative to no package
            raise PluginError(f"{ENV}: {name!r} is a relative module name; give the module's full name")
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as err:
            if err.name is None or not (name == err.name or name.startswith(err.name + ".")):
                raise  # the module was found and imports something missing: its own error
            raise PluginError(f"{ENV}: no module named {name!r} on the path (sys.path; set PYTHONPATH, or install "
                              "it)") from None
        loaded.append(name)
    return loaded
