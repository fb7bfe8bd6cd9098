"""The ``segmentation`` task: masks from images by conditional Bernoulli diffusion, with a per-voxel
uncertainty. A first version: the diffusion model only (no deterministic baseline yet), trained and
evaluated on the shared lifecycle."""
