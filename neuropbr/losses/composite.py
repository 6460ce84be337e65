"""The composite generator loss and its builder (``_target_`` of ``conf/loss/*.yaml``).

``total = sum(weights[term] * term(pred, target))`` over the terms whose weight is > 0; the GAN
generator term joins when the caller passes discriminator logits. Terms with weight 0 are never
built (perceptual off never loads VGG16) and never computed. Every weight is a config key,
``loss.weights.<term>``, so a sweep can set ``loss.weights.ssim`` directly.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence

import torch
from torch import Tensor, nn

from neuropbr.losses.adversarial import AdversarialLoss
from neuropbr.losses.perceptual import PerceptualLoss
from neuropbr.losses.precision import autocast_off
from neuropbr.losses.reconstruction import (
    LightDirectionLoss,
    NormalAngularLoss,
    SquaredErrorLoss,
    SSIMLoss,
    WeightedL1Loss,
    check_map_names,
)
from neuropbr.losses.rendering import RenderingLoss

logger = logging.getLogger(__name__)

#: Every term a composite loss knows, in the order they are computed and reported.
TERM_NAMES: tuple[str, ...] = ("l1", "mse", "ssim", "normal", "gan", "perceptual", "render", "light")
#: The guide's default weights (perceptual and rendering off).
DEFAULT_WEIGHTS: dict[str, float] = {
    "l1": 1.0,
    "mse": 0.0,
    "ssim": 0.3,
    "normal": 0.5,
    "gan": 0.05,
    "perceptual": 0.0,
    "render": 0.0,
    "light": 0.0,
}


def check_weights(weights: Mapping[str, float]) -> dict[str, float]:
    """Validate ``loss.weights`` and return it complete: every term of :data:`TERM_NAMES`, missing = 0.

    Raises:
        ValueError: an unknown term name (typo), or a negative or NaN weight.
    """
    unknown = sorted(set(weights) - set(TERM_NAMES))
    if unknown:
        raise ValueError(f"loss.weights: unknown term(s) {unknown}; valid terms: {list(TERM_NAMES)}")
    checked = {name: float(weights.get(name, 0.0)) for name in TERM_NAMES}
    for name, weight in checked.items():
        if not weight >= 0:  # also rejects NaN
            raise ValueError(f"loss.weights.{name} must be >= 0, got {weight}")
    return checked


class CompositeLoss(nn.Module):
    """Weighted sum of named loss terms, reporting each term's unweighted value.

    Args:
        terms: modules keyed by term name (any of :data:`TERM_NAMES` but ``gan``), each called as
            ``term(pred, target)`` and returning a scalar or ``(scalar, {sub_name: scalar})``
            (diagnostics reported as ``<term>_<sub_name>``, not added to the total), or None when
            its inputs are absent (the ``light`` term in validation, where the generator returns
            the maps only).
        weights: ``loss.weights``; terms left out count as 0. Every term with weight > 0 except
            ``gan`` needs a module in ``terms``; modules of zero-weight terms are dropped.
        gan_type: adversarial loss of the ``gan`` term and of :meth:`discriminator_loss`.

    Attributes:
        weights: ``{term: weight}`` for every name in :data:`TERM_NAMES`.
    """

    def __init__(
        self, terms: Mapping[str, nn.Module], weights: Mapping[str, float], gan_type: str = "hinge"
    ) -> None:
        super().__init__()
        self.weights = check_weights(weights)
        invalid = sorted(set(terms) - (set(TERM_NAMES) - {"gan"}))
        if invalid:
            raise ValueError(
                f"terms: invalid name(s) {invalid}; valid: {[n for n in TERM_NAMES if n != 'gan']}"
            )
        unbuilt = [name for name, w in self.weights.items() if w > 0 and name != "gan" and name not in terms]
        if unbuilt:
            raise ValueError(f"loss.weights gives {unbuilt} weight > 0 but no module was given for them")
        if not any(w > 0 for name, w in self.weights.items() if name != "gan"):
            raise ValueError(
                f"loss.weights: every reconstruction term is 0 ({self.weights}); at least one of "
                f"{[n for n in TERM_NAMES if n != 'gan']} must be > 0"
            )
        self.terms = nn.ModuleDict(
            {name: terms[name] for name in TERM_NAMES if name in terms and self.weights[name] > 0}
        )
        self.adversarial = AdversarialLoss(gan_type)

    @property
    def uses_gan(self) -> bool:
        """Whether the ``gan`` weight is > 0 (the trainer then runs a discriminator)."""
        return self.weights["gan"] > 0

    def forward(
        self,
        pred: Mapping[str, Tensor],
        target: Mapping[str, Tensor],
        fake_logits: Tensor | None = None,
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """Total loss and named terms.

        Args:
            pred: predicted maps (neuropbr/maps.py), each (B, C, H, W).
            target: target maps of the same shapes.
            fake_logits: discriminator logits on ``pred`` (e.g. (B, 1, h, w)); the ``gan`` term is
                computed only when given and its weight is > 0.

        Returns:
            ``(total, values)``: ``total`` a float32 scalar with gradient; ``values`` the
            UNWEIGHTED value of each computed term under its name (``l1``, ``mse``, ``ssim``,
            ``normal``, ``gan``, ``perceptual``, ``render``, ``light``) plus ``l1_albedo``,
            ``l1_roughness``, ``l1_metallic``, ``l1_normal`` when ``l1`` is on and ``mse_<map>``
            for each of ``mse_maps`` when ``mse`` is on. Tensors, not detached.
        """
        values: dict[str, Tensor] = {}
        weighted: list[Tensor] = []
        with autocast_off(next(iter(pred.values()))):  # every term in float32: finite under AMP
            for name, term in self.terms.items():
                out = term(pred, target)
                if out is None:
                    continue
                value, diagnostics = out if isinstance(out, tuple) else (out, {})
                values[name] = value
                values.update({f"{name}_{sub}": sub_value for sub, sub_value in diagnostics.items()})
                weighted.append(self.weights[name] * value)
            if fake_logits is not None and self.uses_gan:
                values["gan"] = self.adversarial(fake_logits)
                weighted.append(self.weights["gan"] * values["gan"])
        return torch.stack(weighted).sum(), values

    def discriminator_loss(self, real_logits: Tensor, fake_logits: Tensor) -> Tensor:
        """The discriminator loss of ``gan_type`` on real and (detached) fake logits; a scalar."""
        return self.adversarial.discriminator_loss(real_logits, fake_logits)

    def extra_repr(self) -> str:
        active = {name: w for name, w in self.weights.items() if w > 0}
        return f"weights={active}"


def build_loss(
    weights: Mapping[str, float] | None = None,
    map_weights: Mapping[str, float] | None = None,
    mse_maps: Sequence[str] = ("roughness", "metallic"),
    ssim_maps: Sequence[str] = ("albedo",),
    ssim_window: int = 11,
    gan_type: str = "hinge",
    perceptual_maps: Sequence[str] = ("albedo",),
    perceptual_weights: str | None = None,
    render_num_configs: int = 4,
    render_eps: float = 0.01,
) -> CompositeLoss:
    """Build the composite loss from ``LossConfig``'s fields (one keyword per field).

    Args:
        weights: ``{term: weight}`` over :data:`TERM_NAMES` (default :data:`DEFAULT_WEIGHTS`);
            missing terms are 0; unknown names and negative weights raise ``ValueError``.
        map_weights: per-map weights of the L1 term (the guide's ``w_albedo``, ...), missing = 1.
        mse_maps: maps the squared-error term compares.
        ssim_maps: maps the SSIM term compares.
        ssim_window: odd SSIM window size.
        gan_type: ``hinge``, ``bce`` or ``lsgan``.
        perceptual_maps: maps the perceptual term compares.
        perceptual_weights: local VGG16 weights file (needed offline when perceptual is on).
        render_num_configs: light/view configurations per step of the rendering term.
        render_eps: radiance offset inside the rendering term's log.

    Returns:
        The :class:`CompositeLoss`, holding only the terms with weight > 0.
    """
    checked = check_weights(DEFAULT_WEIGHTS if weights is None else weights)
    check_map_names(list(map_weights or {}), "loss.map_weights")  # even when l1 is off: a typo is a typo
    factories: dict[str, Callable[[], nn.Module]] = {
        "l1": lambda: WeightedL1Loss(map_weights),
        "mse": lambda: SquaredErrorLoss(mse_maps),
        "ssim": lambda: SSIMLoss(ssim_maps, ssim_window),
        "normal": NormalAngularLoss,
        "perceptual": lambda: PerceptualLoss(perceptual_maps, perceptual_weights),
        "render": lambda: RenderingLoss(render_num_configs, render_eps),
        "light": LightDirectionLoss,
    }
    terms = {name: make() for name, make in factories.items() if checked[name] > 0}
    loss = CompositeLoss(terms, checked, gan_type)
    logger.info("Loss: %s (gan_type=%s)", {n: w for n, w in checked.items() if w > 0}, gan_type)
    return loss
