#!/usr/bin/env bash
# Mutation testing of the core modules with mutmut, each module against its own fast unit tests.
#
#   bash mutation/run.sh                      # all six modules (45 min on 2 cores, see README)
#   bash mutation/run.sh trainer/schedules.py   # one or more modules
#
# Needs `pip install -e '.[mutation]'` (mutmut 3.8.1) and rsync. Works on throw-away copies of the checkout under
# $MUTATION_DIR (default /tmp/mutation-<user>/<module>), never on the checkout itself: mutmut
# writes a mutants/ tree and this script rewrites pyproject.toml and the module in the copy
# (mutation/prepare.py). Runs niced, $MUTATION_JOBS parallel test processes (default: 2).
# Per module it prints the score (mutation/score.py) and leaves the surviving mutants' diffs in
# $MUTATION_DIR/<module>/survivors-<module>.txt. Not part of CI: it takes far longer than the suite.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
work=${MUTATION_DIR:-/tmp/mutation-$(id -un)}
jobs=${MUTATION_JOBS:-2}
modules=("$@")
if [ ${#modules[@]} -eq 0 ]; then
    read -r -a modules <<< "$(python "$repo/mutation/prepare.py" --list)"
fi
python "$repo/mutation/prepare.py" --check "${modules[@]}"  # one line and exit 2 on an unknown module
command -v mutmut >/dev/null || { echo "mutmut is not installed: pip install -e '.[mutation]'" >&2; exit 2; }
command -v rsync >/dev/null || { echo "rsync is not installed (it copies the checkout): apt-get install rsync" >&2; exit 2; }

summary=()
for module in "${modules[@]}"; do
    dir="$work/$(echo "${module%.py}" | tr / _)"
    mkdir -p "$dir"
    rsync -a --delete --exclude .git --exclude mutants --exclude /runs --exclude /data \
        --exclude '__pycache__' --exclude '*.egg-info' "$repo/" "$dir/"
    rm -rf "$dir/mutants"  # mutmut 3 keeps old verdicts of unchanged functions even when the tests changed
    python "$repo/mutation/prepare.py" "$dir" "$module"
    started=$(date +%s)
    (cd "$dir" && nice -n 19 mutmut run --max-children "$jobs" > mutmut.log 2>&1) || {
        echo "mutmut failed on $module; see $dir/mutmut.log" >&2; tail -c 3000 "$dir/mutmut.log" >&2; exit 1; }
    seconds=$(( $(date +%s) - started ))
    line=$(python "$repo/mutation/score.py" "$dir" "$module")
    echo "$line"
    summary+=("$line  [$((seconds / 60)) min $((seconds % 60)) s]")
done
echo
printf '%s\n' "${summary[@]}"
