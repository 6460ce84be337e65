"""Summarise an Optuna study: optimisation-history plot (PNG) and a Markdown table of its trials.

    python experiments/optuna_loss_weights/report.py --storage sqlite:///optuna.db \
        --study loss_weights --out experiments/optuna_loss_weights/optimization_history.png
"""

from __future__ import annotations

import argparse
import logging
import math
import sys

import matplotlib

matplotlib.use("Agg")  # no display on servers and CI
import matplotlib.pyplot as plt
import optuna
from matplotlib.ticker import MaxNLocator

log = logging.getLogger(__name__)


def plot_history(study: optuna.Study, path: str, metric: str) -> None:
    """Every finished trial's value and the best-so-far curve, in trial order."""
    maximize = study.direction == optuna.study.StudyDirection.MAXIMIZE
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    pruned = [t for t in study.trials if t.state == optuna.trial.TrialState.PRUNED and t.intermediate_values]
    best, running = [], -math.inf if maximize else math.inf
    for trial in complete:
        running = max(running, trial.value) if maximize else min(running, trial.value)
        best.append(running)
    figure, axis = plt.subplots(figsize=(7, 4), dpi=120)
    axis.plot([t.number for t in complete], [t.value for t in complete], "o", label="complete trial")
    axis.plot(
        [t.number for t in pruned],
        [t.intermediate_values[max(t.intermediate_values)] for t in pruned],
        "x",
        color="tab:red",
        label="pruned trial (last report)",
    )
    last = study.trials[-1].number
    axis.step(
        [t.number for t in complete] + [last],
        best + best[-1:],
        where="post",
        color="tab:green",
        label="best so far",
    )
    for trial in study.trials[1:]:  # where a re-run of the command opened the next sweep
        if trial.user_attrs.get("sweep") != study.trials[trial.number - 1].user_attrs.get("sweep"):
            axis.axvline(trial.number - 0.5, color="grey", linestyle="--", linewidth=1)
            axis.text(
                trial.number - 0.4,
                axis.get_ylim()[0],
                f" sweep {trial.user_attrs.get('sweep')}",
                color="grey",
                va="bottom",
            )
    axis.xaxis.set_major_locator(MaxNLocator(integer=True))
    axis.set_xlabel("trial")
    axis.set_ylabel(metric)
    axis.set_title(f"Optuna study '{study.study_name}' ({'max' if maximize else 'min'}imised)")
    axis.grid(alpha=0.3)
    axis.legend()
    figure.tight_layout()
    figure.savefig(path)
    log.info("wrote %s", path)


def trials_table(study: optuna.Study) -> str:
    """The trials as a Markdown table: number, state, value, epochs reported, params, MLflow run."""
    names = sorted({name for t in study.trials for name in t.params})
    header = [
        "trial",
        "state",
        "value",
        "epochs",
        *(n.removeprefix("loss.weights.") for n in names),
        "MLflow run",
    ]
    rows = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for t in study.trials:
        value = f"{t.value:.4f}" if t.value is not None else ""
        params = [f"{t.params[n]:.4g}" if n in t.params else "" for n in names]
        cells = [
            str(t.number),
            t.state.name,
            value,
            str(len(t.intermediate_values)),
            *params,
            f"`{t.user_attrs.get('mlflow_run_id', '')}`",
        ]
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--storage", default="sqlite:///optuna.db")
    parser.add_argument("--study", default="loss_weights")
    parser.add_argument("--out", default="optimization_history.png")
    parser.add_argument("--metric", default="val/overall_psnr", help="the objective's name, for the y axis")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    study = optuna.load_study(study_name=args.study, storage=args.storage)
    plot_history(study, args.out, args.metric)
    sys.stdout.write(trials_table(study))


if __name__ == "__main__":
    main()
