"""The jobs bindiff runs, one package a task, each of the same shape.

Every ``bindiff/tasks/<task>/`` holds ``schema.py`` (the task's recipe sections), ``data.py``
(recipe → data, and the checks of the recipe against those data), ``job.py`` (the task: what
it builds, validates and evaluates, plugged into the shared lifecycle of ``base.py``) and
its evaluation and baselines. ``registry.py`` maps a recipe's ``task`` to its job.

This file imports nothing: the config package reads each task's ``schema.py``, and a package
``__init__`` runs before any module below it.
"""
