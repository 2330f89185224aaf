"""`python -m study.train`: one trial without Ray, Optuna or MLflow — the trial core's own command
line (`trainer/train.py`), reachable under the launcher's name the README has always used."""

import sys

from trainer.train import main

if __name__ == "__main__":
    sys.exit(main())
