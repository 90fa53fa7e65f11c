"""An Optuna worker process for the shared-study test (run as a script, not collected).

usage: optuna_worker.py STORAGE_URL STUDY_SCOPE TRIALS OUT_FILE
Opens the scope's study through the trainer (PostgreSQL storage), runs TRIALS trials of a cheap
objective, and writes the numbers of the trials it ran, one per line.
"""

from __future__ import annotations

import sys
from pathlib import Path

import optuna

from ats_pipelines.training.trainer import TrainerConfig, open_study


def main(url: str, scope: str, trials: int, out: Path) -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = open_study(scope, url, request="shared", cfg=TrainerConfig(n_startup_trials=2))
    ran: list[int] = []

    def objective(trial: optuna.Trial) -> float:
        trial.set_user_attr("request", "shared")
        x = trial.suggest_float("x", -3.0, 3.0)
        ran.append(trial.number)
        return (x - 1.0) ** 2

    study.optimize(objective, n_trials=trials)
    out.write_text("".join(f"{n}\n" for n in ran))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), Path(sys.argv[4]))
