"""`python -m study.bench`: the trainer timed by itself — the trial core's benchmark
(`trainer/bench.py`), reachable under the launcher's name the README has always used."""

import sys

from trainer.bench import main

if __name__ == "__main__":
    sys.exit(main())
