"""The ``masks`` task: a shape prior on binary segmentation masks, trained and evaluated end to end.

``schema.py`` the recipe sections, ``data.py`` recipe → cases → grids, ``model.py`` the
diffusion on the grid, ``job.py`` the task in the shared lifecycle; the three evaluations
(``completion.py``, ``denoising.py``, ``generation.py``) share ``evaluation.py`` and compare
with the classical methods of ``baselines.py``. Masks are read by ``bindiff.adapters.masks``;
the diffusion itself is the domain-agnostic core.
"""
