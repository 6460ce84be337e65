"""The search space: Hydra override syntax -> optuna distributions, and sampled values -> overrides.

The syntax is hydra-optuna-sweeper 1.3's, so its sweep configs carry over::

    interval(0.1, 2.0)              FloatDistribution(0.1, 2.0)
    tag(log, interval(1e-5, 1e-2))  FloatDistribution(1e-5, 1e-2, log=True)
    int(interval(1, 8))             IntDistribution(1, 8)            (both ends included)
    tag(log, int(interval(1, 64)))  IntDistribution(1, 64, log=True)
    range(0, 10, 2)                 IntDistribution(0, 8, step=2)    (Python's range: stop excluded)
    range(0.1, 0.5, 0.1)            FloatDistribution(0.1, 0.4, step=0.1)
    choice(a, b, c)  /  a,b,c       CategoricalDistribution(["a", "b", "c"])
    shuffle(range(3))               CategoricalDistribution([...]) (as the public plugin)
    anything else (``0.5``, ``resnet18``, ``+key=1``, ``~key``)   a fixed override for every trial

One difference from the public plugin: it read ``range(a, b)`` as including ``b``; here a range
means what it means everywhere else in Hydra's grammar (and in Python): ``b`` is excluded.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import (
    ChoiceSweep,
    IntervalSweep,
    Override,
    Quote,
    QuotedString,
    RangeSweep,
    Transformer,
)
from hydra.errors import HydraException
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

_SUPPORTED_TAGS = {"log"}
_PARSER = OverridesParser.create()


@dataclass
class SearchSpace:
    """What each trial samples and what every trial gets unchanged.

    Attributes:
        distributions: parameter (override key) -> optuna distribution.
        fixed: parameter -> the complete override line passed to every trial.
        fixed_values: parameter -> the parsed value of a fixed override.
        sources: parameter -> the override value as written (for logs and MLflow params).
        choice_texts: categorical parameter -> the override text of each choice, in order
            (lists and dicts are not valid optuna choices, so they are kept as their text).
    """

    distributions: dict[str, BaseDistribution] = field(default_factory=dict)
    fixed: dict[str, str] = field(default_factory=dict)
    fixed_values: dict[str, Any] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)
    choice_texts: dict[str, list[str]] = field(default_factory=dict)

    def overrides_for(self, params: Mapping[str, Any]) -> list[str]:
        """The override lines of one trial: the fixed ones, then ``key=value`` per sampled param."""
        lines = list(self.fixed.values())
        for name, value in params.items():
            distribution = self.distributions.get(name)
            if isinstance(distribution, CategoricalDistribution) and name in self.choice_texts:
                # The text as the user wrote the choice (a list or dict stays a list or dict).
                text = self.choice_texts[name][int(distribution.to_internal_repr(value))]
            else:
                text = format_value(value)
            lines.append(f"{name}={text}")
        return lines

    def grid(self) -> dict[str, list[Any]]:
        """Every value of each parameter, for ``GridSampler``; continuous ones raise."""
        return {name: grid_values(name, dist) for name, dist in self.distributions.items()}


def format_value(value: Any) -> str:
    """One value in override syntax that Hydra parses back to the same value and type.

    Strings stay unquoted when Hydra reads them back unchanged (``resnet18``: group choices
    must be plain names); otherwise they are quoted (``'12e4'`` must stay a string, and a
    storage URL keeps its ``:`` and ``@``).
    """
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value)  # shortest text that round-trips ('inf' and 'nan' parse as floats)
    if isinstance(value, str):
        plain = Transformer.str(value)  # escapes spaces, commas, brackets...
        try:
            parsed = _PARSER.parse_override(f"key={plain}").value()
        except HydraException:  # quotes and other characters that escaping does not cover
            parsed = None
        if isinstance(parsed, str) and parsed == value:
            return plain
        return QuotedString(text=value, quote=Quote.single).with_quotes()
    return Transformer.str(value)


def parse_params(params: Mapping[str, Any] | None, arguments: Iterable[str] = ()) -> SearchSpace:
    """Parse ``hydra.sweeper.params`` and the command-line overrides into a :class:`SearchSpace`.

    Command-line overrides come after ``params``; for a key given twice the later one wins, so
    ``loss.weights.gan=0.1`` on the command line pins a parameter that the preset searches, and
    ``loss.weights.gan='interval(0,0.2)'`` changes its range.

    Raises:
        ValueError: a form the sweeper cannot sample (``glob``, an empty range, an unknown tag),
            naming the key.
    """
    lines = [f"{key}={_config_value_as_override(value)}" for key, value in (params or {}).items()]
    lines.extend(arguments)
    space = SearchSpace()
    for override in _PARSER.parse_overrides(lines):
        name = override.get_key_element()
        for table in (
            space.distributions,
            space.fixed,
            space.fixed_values,
            space.sources,
            space.choice_texts,
        ):
            table.pop(name, None)
        assert override.input_line is not None
        if override.is_sweep_override():
            space.distributions[name], texts = _distribution(name, override)
            if texts is not None:
                space.choice_texts[name] = texts
            space.sources[name] = override.get_value_string()
        else:
            space.fixed[name] = override.input_line
            space.fixed_values[name] = override.value()
            space.sources[name] = (
                override.input_line.split("=", 1)[1] if "=" in override.input_line else "(deleted)"
            )
    return space


def _config_value_as_override(value: Any) -> str:
    """A ``params`` value from the config: strings are override syntax already; others are data."""
    if isinstance(value, str):
        return value
    return format_value(value)


def _distribution(name: str, override: Override) -> tuple[BaseDistribution, list[str] | None]:
    value = override.value()
    tags = set(getattr(value, "tags", set()))
    unknown = tags - _SUPPORTED_TAGS
    if unknown:
        raise ValueError(
            f"hydra.sweeper.params.{name}: unknown tag(s) {sorted(unknown)}; supported: {sorted(_SUPPORTED_TAGS)}"
        )
    log = "log" in tags
    if isinstance(value, IntervalSweep):
        assert value.start is not None and value.end is not None
        if value.start >= value.end:
            raise ValueError(f"hydra.sweeper.params.{name}: interval({value.start}, {value.end}) is empty")
        if log and value.start <= 0:
            raise ValueError(
                f"hydra.sweeper.params.{name}: tag(log, ...) needs a start > 0, got {value.start}"
            )
        if isinstance(value.start, int) and isinstance(value.end, int):  # int(interval(a, b))
            return IntDistribution(value.start, value.end, log=log), None
        return FloatDistribution(float(value.start), float(value.end), log=log), None
    if isinstance(value, ChoiceSweep) or (isinstance(value, RangeSweep) and value.shuffle):
        if log:
            raise ValueError(
                f"hydra.sweeper.params.{name}: tag(log, ...) applies to intervals and ranges, not choices"
            )
        # Unshuffled order: a stored study rejects a categorical whose choices changed order.
        elements = list(value.list) if isinstance(value, ChoiceSweep) else list(value.range())
        if not elements:
            raise ValueError(f"hydra.sweeper.params.{name}: the choice is empty")
        choices = [
            e if e is None or isinstance(e, (str, int, float, bool)) else Transformer.str(e) for e in elements
        ]
        texts = [format_value(e) for e in elements]
        return CategoricalDistribution(choices), texts
    if isinstance(value, RangeSweep):
        numbers: list[Any] = list(value.range())  # ints, or floats for a float range
        if not numbers:
            raise ValueError(
                f"hydra.sweeper.params.{name}: range({value.start}, {value.stop}, {value.step}) has no elements"
            )
        low, high, step = min(numbers), max(numbers), abs(value.step)
        if all(isinstance(e, int) for e in numbers):
            if log and step != 1:
                raise ValueError(
                    f"hydra.sweeper.params.{name}: tag(log, range(...)) needs step 1, got {step}"
                )
            return IntDistribution(low, high, log=log, step=1 if log else int(step)), None
        if log:
            raise ValueError(f"hydra.sweeper.params.{name}: tag(log, ...) is not supported on float ranges")
        return FloatDistribution(float(low), float(high), step=float(step)), None
    raise ValueError(
        f"hydra.sweeper.params.{name}={override.get_value_string()}: the Optuna sweeper samples interval(), "
        "range(), choice() and a,b,c lists; glob() is not supported (list the options with choice())"
    )


def grid_values(name: str, distribution: BaseDistribution) -> list[Any]:
    """All values of a discrete distribution (both ends included)."""
    if isinstance(distribution, CategoricalDistribution):
        return list(distribution.choices)
    if isinstance(distribution, IntDistribution) and not distribution.log:
        return list(range(distribution.low, distribution.high + 1, distribution.step))
    if isinstance(distribution, FloatDistribution) and distribution.step is not None:
        count = round((distribution.high - distribution.low) / distribution.step) + 1
        return [round(distribution.low + i * distribution.step, 12) for i in range(count)]
    raise ValueError(
        f"hydra.sweeper.params.{name}: sampler=grid needs a discrete space (choice, range, int(interval)), "
        f"got {distribution}"
    )
