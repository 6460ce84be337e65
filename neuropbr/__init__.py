"""NeuroPBR: train multi-view networks that turn a few photos of a material into PBR maps.

Entry points (each ``python -m neuropbr.X``): ``train``, ``synth``, ``data.check``, ``infer``,
``evaluate``, ``export``, ``bench``, ``models.summary``. The package layout follows the
architecture: ``data`` -> ``models`` (encoder, fusion, decoder, discriminator) -> ``losses`` ->
``training`` (loop, checkpoints, tracking), with ``render`` (a differentiable PBR renderer)
serving the synthetic data, the rendering loss and the render-space metrics.
"""

__version__ = "0.1.0"
