"""Checks behind the "enumerated" reasons in mutation/equivalent.txt (trainer.blur's downsample match).

    python mutation/check_equivalents.py      # ~15 s; exits 1 if a claim no longer holds

For every square size 2..64 and every allowed level it replays downsample_match's scan and
bisection as written, and checks what each listed mutant would need to differ:
- _variance_scan mutants 9/10: the first crossing is never one of the last two scan points;
- downsample_match 15: no scanned variance equals the target exactly;
- downsample_match 25/26: the bisection moves lo at least once (the initial v_lo is overwritten);
- downsample_match 39: where a midpoint hits the target exactly, `>` instead of `>=` returns the
  same match, bit for bit;
- downsample_match 46: on an exact tie of the bracket's ends both ends are within 1e-13 (relative) of the target.
"""

from __future__ import annotations

import sys

import numpy as np

import trainer.blur as b


def bisect(size: int, level: int, strict: bool) -> tuple[tuple[float, float], bool, bool, float]:
    factors, variances = b._variance_scan(size)
    target = b.downsample_target(level, size)
    first = int(np.nonzero(variances >= target)[0][0])
    lo, hi = float(factors[first - 1]), float(factors[first])
    v_lo, v_hi = float(variances[first - 1]), float(variances[first])
    moved_lo = hit = False
    for _ in range(b._BISECTIONS):
        mid = (lo + hi) / 2
        v_mid = b.impulse_variance(b.resize_operator(size, mid))
        hit |= v_mid == target
        if (v_mid > target) if strict else (v_mid >= target):
            hi, v_hi = mid, v_mid
        else:
            lo, v_lo, moved_lo = mid, v_mid, True
    tie = abs(v_hi - target) == abs(v_lo - target)
    spread = max(abs(v_hi - target), abs(v_lo - target)) / target if tie else 0.0
    chosen = (hi, v_hi) if abs(v_hi - target) <= abs(v_lo - target) else (lo, v_lo)
    return chosen, moved_lo, hit, spread


def main() -> int:
    failures = []
    for size in range(2, 65):
        factors, variances = b._variance_scan(size)
        for level in range(2, b.max_level(size, size) + 1):
            target = b.downsample_target(level, size)
            first = int(np.nonzero(variances >= target)[0][0])
            if first >= len(factors) - 2:
                failures.append(f"{size}/{level}: first crossing at the end of the scan")
            if np.any(variances == target):
                failures.append(f"{size}/{level}: a scanned variance equals the target")
            chosen, moved_lo, hit, spread = bisect(size, level, strict=False)
            if chosen != b.downsample_match(level, size)[:2]:
                failures.append(f"{size}/{level}: the replay differs from downsample_match")
            if not moved_lo:
                failures.append(f"{size}/{level}: lo never moved")
            if hit and bisect(size, level, strict=True)[0] != chosen:
                failures.append(f"{size}/{level}: `>` changes the match")
            if spread > 1e-13:
                failures.append(f"{size}/{level}: a tie {spread:.1e} (relative) from the target")
    print("\n".join(failures) or "every enumerated equivalence holds for sizes 2..64")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
