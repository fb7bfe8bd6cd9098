"""The ``recommend`` task: a user's history as a bit vector over items, ranked by a trained model.

``schema.py`` the recipe sections, ``data.py`` recipe → split, ``models.py`` the model kinds
(bindiff's binomial diffusion and the baselines) behind one scoring interface,
``evaluation.py`` ranking metrics on a split part, ``job.py`` the task in the shared lifecycle,
``serve.py`` top-k items for a user, ``compare.py`` and ``tune.py`` the multi-run commands.
"""
