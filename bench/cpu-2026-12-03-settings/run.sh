#!/bin/bash
# The CPU collectives benchmark on two trees, alternating which goes first, same machine and
# flags; MPI's own collectives in every run. Then the table of medians (compare.py).
#   BEFORE=<commit> PASSES=6 bash bench/cpu-2026-12-03-settings/run.sh
set -u
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_mpi_yield_when_idle=1
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
HERE=$(cd "$(dirname "$0")" && pwd)
BEFORE_TREE=/tmp/mpitrain-before
rm -rf "$BEFORE_TREE" && git -C "$ROOT" worktree prune && git -C "$ROOT" worktree add -f --detach "$BEFORE_TREE" "$BEFORE" >/dev/null
for pass in $(seq 1 "${PASSES:-6}"); do
  order="$ROOT $BEFORE_TREE"; [ $((pass % 2)) = 0 ] && order="$BEFORE_TREE $ROOT"
  for tree in $order; do
    name=$([ "$tree" = "$BEFORE_TREE" ] && echo before || echo after)
    (cd "$tree" && PYTHONPATH=$tree "$ROOT/.venv/bin/mpiexec" --oversubscribe -n 4 -x PYTHONPATH \
      "$ROOT/.venv/bin/python" -m mpitrain.bench collectives --sizes 4K,64K,1M,4M,16M \
      --algorithms auto --impl mpitrain,mpi --json "$HERE/cpubench-$name-$pass.json" \
      > "$HERE/cpubench-$name-$pass.txt" 2>&1)
    echo "$name $pass rc=$?"
  done
done
git -C "$ROOT" worktree remove --force "$BEFORE_TREE"
"$ROOT/.venv/bin/python" "$HERE/compare.py" "$HERE" | tee "$HERE/table.md"
