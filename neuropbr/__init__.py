"""NeuroPBR: train multi-view networks that turn a few photos of a material into PBR maps.

Entry points (each ``python -m neuropbr.X``): ``train``, ``synth``, ``check``, ``infer``,
``evaluate``, ``export``, ``align``, ``bench``, ``summary``. The parts, what flows between them
and the layer rule (``maps``/``utils`` -> ``render`` -> ``data``/``models``/``losses`` ->
``metrics`` -> ``training`` -> ``build`` -> the CLIs) are in docs/architecture.md.
"""

__version__ = "0.1.0"
