"""What a training run is called, which params it logs and how it is tagged in MLflow.

- :func:`default_run_name`: ``<experiment or task>-<encoder>-<loss>-<YYYYmmdd-HHMMSS>`` from the
  Hydra choices (``quick_test-resnet18-default-20261204-171500``), so the run list and the compare
  view say what each run is. MLflow's own random names come from Python's ``random``, which the
  run has seeded by then: every run of one seed used to get the same name.
- :func:`child_run_name`: a multirun job's name, ``trial3-loss.weights.ssim=0.31`` (Optuna) or
  ``job1-optimizer.g_lr=0.001`` (a grid): its number and the values tried.
- :func:`config_params`: the resolved config as MLflow params, without the ``_target_`` /
  ``_partial_`` entries that say which class builds a node (the group choices say it better).
- :func:`source_tags`: the tags MLflow's UI reads (``mlflow.source.*``, ``mlflow.user``).
- :func:`user_tags`: the top-level ``tags=[...]`` key as MLflow tags.
"""

from __future__ import annotations

import datetime as dt
import getpass
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from neuropbr.utils.provenance import source_info

if TYPE_CHECKING:
    from hydra.core.override_parser.types import Override

#: Config entries that name the builder of a node, not a setting.
_BUILDER_KEYS = frozenset({"_target_", "_partial_", "_recursive_", "_convert_", "_args_"})
#: Characters MLflow accepts in tag keys (and that keep a tag searchable).
_TAG_KEY = re.compile(r"^[\w\-. /]+$")
#: Longest run name made from the values tried (MLflow's limit is far above what the UI shows).
_MAX_NAME_LENGTH = 250


def default_run_name(
    task_name: str,
    choices: Mapping[str, str | None],
    encoder: Mapping[str, Any],
    now: dt.datetime | None = None,
) -> str:
    """``<experiment or task>-<encoder>-<loss>-<YYYYmmdd-HHMMSS>``.

    Args:
        task_name: the config's ``task_name`` (used when no ``experiment=`` preset was chosen).
        choices: Hydra's config-group choices (``hydra.runtime.choices``); empty outside a
            Hydra app, then the encoder is read from ``encoder`` and the loss is left out.
        encoder: the resolved ``encoder`` node (``encoder=timm`` is named by ``encoder.name``).
        now: the start time (default: now, local time).
    """
    parts = [choices.get("experiment") or task_name]
    encoder_choice = choices.get("encoder")
    if encoder_choice is None or encoder_choice == "timm":
        encoder_choice = str(encoder.get("name") or _class_name(encoder.get("_target_")) or "encoder")
    parts.append(encoder_choice)
    if choices.get("loss"):
        parts.append(str(choices["loss"]))
    parts.append((now or dt.datetime.now()).strftime("%Y%m%d-%H%M%S"))
    return "-".join(_name_part(p) for p in parts)


def child_run_name(kind: str, number: int, values: Mapping[str, str]) -> str:
    """``<kind><number>-<key>=<value>-...``: a multirun job named by its number and values tried
    (floats at 4 significant digits)."""
    name = f"{kind}{number}"
    if values:
        name += "-" + "-".join(f"{key}={_short(value)}" for key, value in values.items())
    return name if len(name) <= _MAX_NAME_LENGTH else name[: _MAX_NAME_LENGTH - 3] + "..."


def _override_value(override: Override) -> str:
    """The text after the first ``=`` of a parsed override (``key=1e-3,1e-4`` -> ``1e-3,1e-4``)."""
    # The parser sets input_line on every override it returns; None only for hand-built ones.
    assert override.input_line is not None
    return override.input_line.split("=", 1)[1]


def sweeps(overrides: Sequence[str]) -> dict[str, str]:
    """``{key: values}`` of the sweep overrides in ``overrides`` (``optimizer.g_lr=1e-3,1e-4`` ->
    ``{"optimizer.g_lr": "1e-3,1e-4"}``); plain overrides are left out."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    return {
        o.key_or_group: _override_value(o)
        for o in OverridesParser.create().parse_overrides(list(overrides))
        if o.is_sweep_override()
    }


def swept_values(sweep_overrides: Sequence[str], job_overrides: Sequence[str]) -> dict[str, str]:
    """The values this job tried: its overrides of the keys the multirun sweeps.

    Args:
        sweep_overrides: the multirun's command line (``optimizer.g_lr=1e-3,1e-4 seed=1``).
        job_overrides: one job's overrides (``optimizer.g_lr=0.001 seed=1``).

    Returns:
        ``{key: value}`` of the swept keys, in the job's order (``{"optimizer.g_lr": "0.001"}``).
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser

    swept = sweeps(sweep_overrides)
    values: dict[str, str] = {}
    for override in OverridesParser.create().parse_overrides(list(job_overrides)):
        if override.key_or_group in swept:
            values[override.key_or_group] = _override_value(override)
    return values


def config_params(
    config: Mapping[str, Any], choices: Mapping[str, str | None] | None = None
) -> dict[str, Any]:
    """The resolved config as MLflow params: builder entries (``_target_``, ``_partial_``) dropped,
    nodes left empty by that dropped too (``discriminator=none``), and the config-group choices
    as typed on the command line under ``choices.<group>`` (``choices.encoder``: ``resnet18``)."""
    params = _without_builders(config)
    picked = {
        group: option
        for group, option in (choices or {}).items()
        if option is not None and not group.startswith("hydra")
    }
    if picked:
        params["choices"] = picked
    return params


def _without_builders(node: Mapping[str, Any]) -> dict[str, Any]:
    cleaned: dict[str, Any] = {}
    for key, value in node.items():
        if key in _BUILDER_KEYS:
            continue
        if isinstance(value, Mapping):
            if not value:
                cleaned[key] = {}  # an empty setting (e.g. an empty dict) stays a param
                continue
            inner = _without_builders(value)
            if inner:
                cleaned[key] = inner
        else:
            cleaned[key] = value
    return cleaned


def source_tags(entry_point: str = "neuropbr/train.py") -> dict[str, str]:
    """``mlflow.source.*`` and ``mlflow.user``: the code a run used and who ran it.

    ``mlflow.source.git.commit`` is the commit of a source checkout, or of a ``pip install
    git+...`` (PEP 610 ``direct_url.json``); it is left out when neither is known (the package
    version is always in ``neuropbr_version``). ``git_dirty`` says whether a checkout had local
    edits.
    """
    info = source_info()
    tags = {
        "mlflow.source.name": entry_point,
        "mlflow.source.type": "LOCAL",
        "mlflow.user": _user(),
        "neuropbr_version": info.version,
    }
    if info.commit is not None:
        tags["mlflow.source.git.commit"] = info.commit
    if info.repo_url is not None:
        tags["mlflow.source.git.repoURL"] = info.repo_url
    if info.branch is not None:
        tags["mlflow.source.git.branch"] = info.branch
    if info.dirty is not None:
        tags["git_dirty"] = str(info.dirty).lower()
    return tags


def user_tags(tags: Iterable[str] | None) -> dict[str, str]:
    """The ``tags=[...]`` key as MLflow tags: ``name`` -> tag ``name`` = ``true``; ``key:value``
    -> tag ``key`` = ``value``; all of them also in the tag ``tags`` (comma-separated), so
    ``tags.tags LIKE '%baseline%'`` finds them.

    Raises:
        ValueError: an empty tag, a key MLflow refuses, or one key given twice (names the entry).
    """
    result: dict[str, str] = {}
    given = list(tags or [])
    for index, entry in enumerate(given):
        text = str(entry).strip()
        key, _, value = text.partition(":")
        key, value = key.strip(), value.strip() if _ else "true"
        if not key or not _TAG_KEY.match(key) or key.startswith("mlflow."):
            raise ValueError(
                f"tags[{index}]={entry!r}: expected 'name' or 'key:value' with a key of letters, digits, "
                "'_', '-', '.', ' ' or '/' (keys starting with 'mlflow.' are MLflow's own), e.g. "
                "tags=[baseline,owner:ana]"
            )
        if key in result:
            raise ValueError(f"tags[{index}]={entry!r}: the tag {key!r} is given twice in tags={given}")
        result[key] = value
    if result:
        result["tags"] = ",".join(str(entry).strip() for entry in given)
    return result


def hydra_choices() -> dict[str, str | None]:
    """Hydra's config-group choices of the running app; empty outside a Hydra app."""
    try:
        from hydra.core.hydra_config import HydraConfig

        return dict(HydraConfig.get().runtime.choices)
    except ValueError:  # not running under @hydra.main (tests, benchmarks)
        return {}


def _short(value: str) -> str:
    """A sampled float at 4 significant digits (``0.2051``, ``1e-05``); anything else as given."""
    try:
        number = float(value)
    except ValueError:
        return value
    if number.is_integer() or ("." not in value and "e" not in value.lower()):
        return value
    return f"{number:.4g}"


def _class_name(target: Any) -> str | None:
    if not target:
        return None
    name = str(target).rsplit(".", 1)[-1]
    return name.removesuffix("Encoder").lower() or None


def _name_part(text: str) -> str:
    return re.sub(r"[^\w.=+-]+", "_", str(text))


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no user name for this uid (some containers)
        return "unknown"
