#!/bin/bash
# before (8cb6605) and after (HEAD), alternating, same machine, same flags
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_mpi_yield_when_idle=1
cd /work/main
for pass in 6 7 8; do
for tree in /work/main /tmp/before; do
  name=$([ $tree = /tmp/before ] && echo before || echo after)
  PYTHONPATH=$tree .venv/bin/mpiexec --oversubscribe -n 4 -x PYTHONPATH .venv/bin/python -m mpitrain.bench collectives \
    --sizes 4K,64K,1M,4M,16M --algorithms auto --impl mpitrain,mpi --json /tmp/cpubench-$name-$pass.json > /tmp/cpubench-$name-$pass.txt 2>&1
  echo "$name $pass rc=$?"
done; done
