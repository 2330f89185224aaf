"""The mutation score of one module after `mutmut run` in a scratch copy (run by mutation/run.sh).

    python mutation/score.py SCRATCH_DIR MODULE [EQUIVALENT_LIST]

Counts mutmut's verdicts from SCRATCH_DIR/mutants/MODULE.meta. Killed = a test failed, or the tests
ran past mutmut's CPU-time limit (timeout) or died (segfault): the mutant was detected. Not killed =
survived, no tests (no test of the module's test files reaches the function), suspicious.
Equivalent mutants (mutation/equivalent.txt) are left out of the denominator, but only while the
mutated line recorded there still is the mutant's: an entry gone stale after an edit of the source
is reported and not applied.

Prints one summary line and writes SCRATCH_DIR/survivors-MODULE.txt (the diff of every mutant not
killed and not listed as equivalent).
"""

from __future__ import annotations

import os
import sys
from collections import Counter
from pathlib import Path

KILLED = {"killed", "timeout", "segfault", "caught by type check"}


def load_equivalents(path: Path) -> dict[str, tuple[str, str]]:
    """name -> (mutated line, reason) from `NAME | MUTATED LINE | REASON` lines."""
    entries = {}
    if not path.exists():
        return entries
    for line in path.read_text().splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        name, mutated, reason = (part.strip() for part in line.split(" | ", 2))
        entries[name] = (mutated, reason)
    return entries


def added_lines(diff: str) -> list[str]:
    return [line[1:].strip() for line in diff.splitlines() if line.startswith("+") and not line.startswith("+++")]


def main(argv: list[str]) -> int:
    scratch, module = Path(argv[0]).resolve(), argv[1]
    equivalents_file = Path(argv[2]) if len(argv) > 2 else Path(__file__).with_name("equivalent.txt")
    equivalents = load_equivalents(equivalents_file.resolve())
    os.chdir(scratch)  # mutmut reads its config and the mutants/ tree from here
    from mutmut.mutation.diff_apply import get_diff_for_mutant
    from mutmut.mutation.data import SourceFileMutationData
    from mutmut.stats import status_by_exit_code

    data = SourceFileMutationData(path=Path(module))
    data.load()
    statuses = {name: status_by_exit_code[code] for name, code in data.exit_code_by_key.items()}
    if not statuses or any(code is None for code in data.exit_code_by_key.values()):
        print(f"{module}: no complete mutmut results in {scratch}/mutants", file=sys.stderr)
        return 1
    counts = Counter(statuses.values())
    equivalent, stale, survivors = [], [], []
    for name, status in sorted(statuses.items(), key=lambda item: (item[0].rsplit("_", 1)[0], int(item[0].rsplit("_", 1)[1]))):
        if status in KILLED:
            continue
        diff = get_diff_for_mutant(name, path=module)
        if name in equivalents:
            mutated, reason = equivalents[name]
            if mutated in added_lines(diff):
                equivalent.append(name)
                continue
            stale.append(name)
        survivors.append(f"# {name}: {status}\n{diff}\n")
    listed_for_module = [n for n in equivalents if n.startswith(module[:-3].replace("/", ".") + ".")]
    stale += [n for n in listed_for_module if n not in statuses]
    total = len(statuses)
    killed = sum(counts[s] for s in KILLED)
    considered = total - len(equivalent)
    score = 100.0 * killed / considered if considered else 100.0
    (scratch / f"survivors-{module.replace('/', '_')}.txt").write_text("".join(survivors))
    details = ", ".join(f"{counts[s]} {s}" for s in sorted(counts))
    print(f"{module}: {score:.1f}% killed ({killed}/{considered} non-equivalent; {total} mutants: {details}; "
          f"{len(equivalent)} equivalent)")
    for name in stale:
        print(f"  stale entry in {equivalents_file.name}, not applied: {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
