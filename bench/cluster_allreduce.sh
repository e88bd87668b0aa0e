#!/usr/bin/env bash
# all_reduce busbw on the emulated cluster, 2 nodes x 2 ranks, at each link rate: the flat ring,
# recursive doubling, the hierarchical all-reduce, auto and MPI's own Allreduce in one job.
#   bash bench/cluster_allreduce.sh [RATES...]        (root; default: 100mbit 1gbit 10gbit none)
# Writes bench/cluster/allreduce-RATE.json; `python -m mpitrain.bench.link_report` tabulates.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
SIZES=${SIZES:-4K,16K,64K,256K,1M,4M,16M,64M}
mkdir -p bench/cluster
for rate in "${@:-100mbit 1gbit 10gbit none}"; do
  for r in $rate; do
    echo "== all_reduce at --link $r"
    $PY -m mpitrain.cluster run --nodes 2 --ranks-per-node 2 --link "$r" -- \
      $PY -m mpitrain.bench collectives --ops all_reduce \
        --algorithms ring,recursive_doubling,hierarchical,auto --impl mpitrain,mpi \
        --sizes "$SIZES" --warmup 1 --repeats 3 --json "bench/cluster/allreduce-$r.json"
  done
done
