"""The ``segmentation`` task: masks from images by conditional Bernoulli diffusion, with a per-voxel
uncertainty, beside a deterministic U-Net trained in the same run.

``schema.py`` the recipe sections, ``data.py`` images and label maps on one grid placed from the
image, ``model.py`` both models on one U-Net backbone and their probability maps, ``job.py`` the
task in the shared lifecycle, ``evaluation.py`` the per-case scores; ``decision.py`` turns a
probability map into a mask, ``placement.py`` brings maps back to a scan's voxels, ``panels.py``
draws the PNG panels and ``segment.py`` segments one's own unlabelled images.
"""
