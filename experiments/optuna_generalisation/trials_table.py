"""Markdown table of a sweep's trials from MLflow: each trial's held-out scores at its best epoch.

    python experiments/optuna_generalisation/trials_table.py --tracking-uri sqlite:///mlflow.db \
        --experiment optuna-generalisation [--study generalisation]

One row per trial (MLflow child run tagged ``optuna_trial``): its Optuna state, the epoch where
``val/skill_db`` was best, the skill, and each map's score beside its baselines (albedo beside the
constant, the view mean and the photo mean, nan where a run predates that baseline; roughness and
metallic beside the constant; the normal angle beside the flat normal's), then the sampled
parameters.
"""

from __future__ import annotations

import argparse
import sys

from mlflow.tracking import MlflowClient

#: (column, metric, baselines): the model's value first, then its baselines, at the same epoch.
COLUMNS = (
    (
        "albedo dB (model / const / view mean / photo mean)",
        "albedo_psnr",
        (
            "baseline_constant_albedo_psnr",
            "baseline_view_mean_albedo_psnr",
            "baseline_photo_mean_albedo_psnr",
        ),
    ),
    ("roughness dB (model / const)", "roughness_psnr", ("baseline_constant_roughness_psnr",)),
    ("metallic dB (model / const)", "metallic_psnr", ("baseline_constant_metallic_psnr",)),
    ("normal deg (model / flat)", "normal_angle_mean", ("baseline_flat_normal_angle_mean",)),
)


def trial_rows(client: MlflowClient, experiment_id: str, study: str) -> list[str]:
    runs = client.search_runs([experiment_id], f"tags.optuna_study = '{study}'")
    runs = [r for r in runs if "optuna_trial" in r.data.tags]
    runs.sort(key=lambda r: int(r.data.tags["optuna_trial"]))
    rows = []
    for run in runs:
        history = client.get_metric_history(run.info.run_id, "val/skill_db")
        if not history:
            continue
        history.sort(key=lambda m: m.step)
        best = max(history, key=lambda m: m.value)
        at_best = {}
        for _, key, baselines in COLUMNS:
            for name in (key, *baselines):
                values = {m.step: m.value for m in client.get_metric_history(run.info.run_id, f"val/{name}")}
                at_best[name] = values.get(best.step, float("nan"))  # nan: not logged then
        params = {k: v for k, v in run.data.params.items() if k in SEARCHED}
        cells = [
            run.data.tags["optuna_trial"],
            run.data.tags.get("optuna_state", "?"),
            f"{history.index(best) + 1} of {len(history)}",
            f"{best.value:+.2f}",
            *(" / ".join(f"{at_best[n]:.2f}" for n in (key, *bases)) for _, key, bases in COLUMNS),
            *(f"{float(params[k]):.3g}" if k in params else "-" for k in SEARCHED),
        ]
        rows.append("| " + " | ".join(cells) + " |")
    return rows


SEARCHED = (
    "loss.weights.l1",
    "loss.weights.ssim",
    "loss.weights.normal",
    "loss.weights.render",
    "loss.weights.mse",
    "optimizer.g_lr",
)


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tracking-uri", default="sqlite:///mlflow.db")
    parser.add_argument("--experiment", default="optuna-generalisation")
    parser.add_argument("--study", default="generalisation")
    args = parser.parse_args(argv)
    client = MlflowClient(tracking_uri=args.tracking_uri)
    experiment = client.get_experiment_by_name(args.experiment)
    if experiment is None:
        raise SystemExit(
            f"--experiment {args.experiment!r}: no such MLflow experiment at {args.tracking_uri}"
        )
    header = [
        "trial",
        "state",
        "best validation",
        "skill_db",
        *(c for c, _, _ in COLUMNS),
        *(k.split(".")[-1] for k in SEARCHED),
    ]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += trial_rows(client, experiment.experiment_id, args.study)
    print("\n".join(lines))  # noqa: T201 -- the table is the output


if __name__ == "__main__":
    main(sys.argv[1:])
