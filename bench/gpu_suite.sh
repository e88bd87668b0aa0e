#!/bin/bash
# The GPU suite, in one command on a GPU machine: build the kernels for sm_90, run the CUDA
# tests, then the GPU benchmarks, each with its baseline in the same run. Results land in $OUT.
#
#   bash bench/gpu_suite.sh [tests|pack|model|train|train-compile|dp-tests|cuda-tests|cuda-mpi-tests|... ]
#   (default: tests pack model train, in that order; dp-* run one rank per visible GPU)
set -u
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
export MPITRAIN_PEER_BLOCKS=${MPITRAIN_PEER_BLOCKS:-128} MPITRAIN_DP_PEER_BLOCKS=${MPITRAIN_DP_PEER_BLOCKS:-32}
OUT=${OUT:-out}
mkdir -p "$OUT"
PY=${PY:-python3}
# pytest-mpi and friends are not in the image: carried as wheels in .whl/ (pip download -d .whl)
if ls .whl/*.whl >/dev/null 2>&1; then
  $PY -m pip install -q --no-index --no-deps --target /tmp/mpitrain-wheels .whl/*.whl
  export PYTHONPATH=/tmp/mpitrain-wheels:$PWD
else
  export PYTHONPATH=$PWD
fi
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm,power.draw,power.limit,temperature.gpu,utilization.gpu --format=csv | tee "$OUT/gpu.txt"
nvidia-smi topo -m 2>&1 | head -4 >> "$OUT/gpu.txt"
nproc >> "$OUT/gpu.txt"; uptime >> "$OUT/gpu.txt"
date -u +%Y-%m-%dT%H:%MZ | tee -a "$OUT/gpu.txt"
# SMI=1: sample clocks, power and throttle reasons every 3 s while the steps run (the H200s of
# this machine reach their 700 W cap in training, and their clocks drop with it)
if [ -n "${SMI:-}" ]; then
  nvidia-smi --query-gpu=timestamp,index,clocks.sm,power.draw,temperature.gpu,clocks_throttle_reasons.active,utilization.gpu \
    --format=csv -l 3 >> "$OUT/smi.csv" 2>&1 &
  SMI_PID=$!
  trap 'kill $SMI_PID 2>/dev/null' EXIT
fi
# SKIP_BUILD=1 skips the build only where the library is already there (a fresh machine has none:
# the run would silently measure the torch fallback)
if [ -z "${SKIP_BUILD:-}" ] || [ ! -f mpitrain/kernels/_lib/libmpitrain_cuda.so ]; then
  $PY -m mpitrain.kernels.build --force 2>&1 | tail -2
fi
NGPU=$(nvidia-smi -L | wc -l)
MPIRUN="${MPIEXEC:-mpiexec} --allow-run-as-root --oversubscribe ${MAPBY:+--map-by $MAPBY} ${BIND:+--bind-to $BIND} -x PYTHONPATH -x NCCL_NVLS_ENABLE -x TORCH_SYMM_MEM_DISABLE_MULTICAST -x NVSHMEM_DISABLE_NVLS -x MPITRAIN_DP_PEER_BLOCKS"
PYFULL=$(command -v $PY)

# Intel MPI, a CUDA-aware MPI (bench/fetch_impi.sh here, carry .impi): its mpiexec, its libmpi
# under the carried mpi4py (whose MPICH-ABI build loads it), GPU buffers on (I_MPI_OFFLOAD=1).
impi_env() {
  local root=$PWD/.impi
  [ -f "$root/lib/libmpi.so.12" ] || { echo "no .impi: run bench/fetch_impi.sh and carry .impi"; return 1; }
  local tag; tag=$($PY -c 'import sys; print(f"{sys.version_info[0]}{sys.version_info[1]}")')
  $PY -m pip install -q --no-index --no-deps --target /tmp/impi-py "$root"/wheels/mpi4py-*-cp$tag-*.whl || return 1
  local libcuda; libcuda=$(ldconfig -p | awk '/libcuda.so.1 /{print $NF; exit}')
  export I_MPI_ROOT=$root LD_LIBRARY_PATH=$root/lib:${LD_LIBRARY_PATH:-} I_MPI_FABRICS=shm \
    I_MPI_OFFLOAD=1 I_MPI_OFFLOAD_MODE=cuda I_MPI_OFFLOAD_CUDA_LIBRARY=$libcuda \
    MPI4PY_LIBMPI=$root/lib/libmpi.so.12 PYTHONPATH=/tmp/impi-py:$PYTHONPATH
  IMPIRUN="$root/bin/mpiexec.hydra -genvall"
}

steps=${*:-tests pack model train}
for step in $steps; do
  echo "=== $step"
  case $step in
    tests) $PY -m pytest -q -p no:cacheprovider tests/serial/test_kernels_cuda.py \
             tests/serial/test_kernels_cpu.py 2>&1 | tail -15 | tee "$OUT/tests.txt" ;;
    pack)  $PY -m mpitrain.bench pack --device cuda --iters 5 --repeats 5 \
             --json "$OUT/pack-gpu.json" | tee "$OUT/pack-gpu.txt" ;;
    model) $PY -m mpitrain.bench model --model vit_l16 --batch-size 64 --precision bf16 --repeats 6 \
             --json "$OUT/model-vit_l16.json" 2>&1 | grep -v Warning | tee "$OUT/model-vit_l16.txt" ;;
    train) $PY -m mpitrain.train vit_l16 --data synthetic --precision bf16 --batch-size 64 \
             --steps 60 --log-every 20 --no-progress 2>&1 | tee "$OUT/train-vit_l16.txt" ;;
    train-compile) # the compiled vit_l16 trainer on every GPU, and one GPU alone with the same per-GPU batch, same job
           for n in ${NS:-1 $NGPU}; do
             $MPIRUN -n $n $PYFULL -m mpitrain.train vit_l16 --data synthetic --precision bf16 \
               --batch-size $((64 * n)) --compile --steps ${STEPS:-80} --log-every 20 --no-progress ${TRAIN_ARGS:-} 2>&1 \
               | grep -v -i warn | grep -v "^\[rank" | tee -a "$OUT/train-compile${TAG:-}.txt"
           done ;;
    train-seq) # the trainer's two-GPU command in a given order, e.g. RUNS="1 2 2:--no-grad-views 1 2"
           # (N[:extra flags], the flags comma-separated): A/B runs in one job, interleaved.
           # 1@K: one GPU, GPU K alone; pair: two one-GPU jobs at once, one on each GPU, no
           # exchange between them (what both GPUs do busy together, without communication)
           # (a NAME=VALUE among the flags is set in the ranks' environment instead:
           # RUNS="2:MPITRAIN_DP_BUCKET_WAIT=host")
           seq_train() { local envs="" flags="" x
               for x in $2; do case $x in [A-Z]*=*) export "$x"; envs="$envs -x ${x%%=*}" ;; *) flags="$flags $x" ;; esac; done
               ${PIN:-} $MPIRUN $envs ${PIN:+--bind-to none} -n $1 $PYFULL -m mpitrain.train vit_l16 --data synthetic --precision bf16 \
               --batch-size $((64 * $1)) --compile --steps ${STEPS:-160} --log-every 20 --no-progress $flags 2>&1 \
               | grep -v -i warn | grep -v "^\[rank" | grep -E "^mpitrain.train|kernels:|^step|^done|rror"; }
           for run in ${RUNS:-1 2 1 2}; do
             n=${run%%:*}; extra=""; [ "$run" != "$n" ] && extra=$(echo "${run#*:}" | tr , ' ')
             echo "== $n $extra" | tee -a "$OUT/train-seq${TAG:-}.txt"
             case $n in
               1@*) CUDA_VISIBLE_DEVICES=${n#1@} seq_train 1 "$extra" ;;
               pair) # each on its own core, as the ranks of a 2-GPU job are bound (cores 0 and 1)
                     PIN="taskset -c 0" CUDA_VISIBLE_DEVICES=0 seq_train 1 "$extra" | sed 's/^/GPU 0: /' > "$OUT/.pair0" &
                     PIN="taskset -c 1" CUDA_VISIBLE_DEVICES=1 seq_train 1 "$extra" | sed 's/^/GPU 1: /' > "$OUT/.pair1"
                     wait; cat "$OUT/.pair0" "$OUT/.pair1"; rm -f "$OUT/.pair0" "$OUT/.pair1" ;;
               *) seq_train $n "$extra" ;;
             esac | tee -a "$OUT/train-seq${TAG:-}.txt"   # a pipeline: seq_train's exports end with it
           done ;;
    dp-tests) for n in 1 2; do
             MPITRAIN_TIMEOUT=120 timeout 600 $MPIRUN -n $n $PYFULL -m pytest -q -p no:cacheprovider \
               --with-mpi tests/mpi/test_data_parallel.py 2>&1 | tail -4 | tee -a "$OUT/dp-tests.txt"
           done ;;
    cuda-tests) for t in ${TRANSPORTS:-ipc staged}; do for n in ${RANKS:-1 2 3}; do
             echo "MPITRAIN_GPU_TRANSPORT=$t, $n rank(s)" | tee -a "$OUT/cuda-tests.txt"
             MPITRAIN_GPU_TRANSPORT=$t MPITRAIN_TIMEOUT=120 timeout 300 $MPIRUN -x MPITRAIN_GPU_TRANSPORT \
               -n $n $PYFULL -m pytest -q -p no:cacheprovider --with-mpi --color=no \
               tests/mpi/test_collectives_cuda.py tests/mpi/test_data_parallel.py tests/mpi/test_zero.py \
               tests/mpi/test_hierarchical.py tests/mpi/test_memory.py 2>&1 \
               | grep -a -E "^E |passed|failed" | sort | uniq | head -8 | tee -a "$OUT/cuda-tests.txt"
           done; done ;;
    peer-tests) for n in ${RANKS:-2}; do
             echo "peer kernels, $n rank(s)" | tee -a "$OUT/peer-tests.txt"
             MPITRAIN_TIMEOUT=60 timeout 400 $MPIRUN -n $n $PYFULL -m pytest -q -p no:cacheprovider \
               --with-mpi --color=no -x tests/mpi/test_peer_kernels.py tests/mpi/test_collectives_cuda.py 2>&1 \
               | grep -a -E "^E |passed|failed|skipped|rror" | sort | uniq | head -12 | tee -a "$OUT/peer-tests.txt"
           done ;;
    diloco-tests) # DiLoCo on CUDA tensors (ranks sharing the GPUs) and the quantize kernels
           $PY -m pytest -q -p no:cacheprovider tests/serial/test_compress.py 2>&1 | tail -3 \
             | tee -a "$OUT/diloco-tests.txt"
           for n in ${RANKS:-1 2}; do
             echo "ranks: $n" | tee -a "$OUT/diloco-tests.txt"
             MPITRAIN_TIMEOUT=120 timeout 600 $MPIRUN -n $n $PYFULL -m pytest -q -p no:cacheprovider \
               --with-mpi --color=no tests/mpi/test_diloco.py -k cuda 2>&1 | tail -4 | tee -a "$OUT/diloco-tests.txt"
           done ;;
    loader) # the image-folder loader's images/s against the trainer's on one GPU (vit_b16 bf16)
           $PY bench/loader.py --images ${IMAGES:-3000} --out "$OUT/loader.json" 2>&1 | tail -20 ;;
    install-tests) # pip install of a wheel with the CUDA kernels built in, then the CUDA tests
           # against the installed copy (outside the source tree)
           rm -rf /tmp/mt-wheel /tmp/mt-site && $PY -m pip wheel . --no-deps --no-build-isolation -q \
             -w /tmp/mt-wheel 2>&1 | tail -3
           $PY -m pip install -q --no-deps --target /tmp/mt-site /tmp/mt-wheel/*.whl
           $PY -c "import glob, zipfile; [print(n) for w in glob.glob('/tmp/mt-wheel/*.whl') for n in zipfile.ZipFile(w).namelist() if '_lib' in n]" | tee "$OUT/install-wheel.txt"
           (cd /tmp && PYTHONPATH=/tmp/mt-site:/tmp/mpitrain-wheels $PY -m pytest -q -p no:cacheprovider \
             --rootdir=/tmp "$OLDPWD/tests/serial/test_kernels_cuda.py" 2>&1 | tail -3 | tee -a "$OUT/install-wheel.txt") ;;
    workflow-tests) # init-from, evaluate, predict and the image folder on the GPU
           $PY -m pytest -q -p no:cacheprovider tests/serial/test_workflows.py 2>&1 | tail -5 | tee "$OUT/workflow-tests.txt" ;;
    diloco-memory) # the memory report's DiLoCo items against the measured peak, beside dp
           # (ranks sharing the GPUs; synthetic data, vit_b16 bf16)
           for p in "dp" "diloco --workers 1" "diloco --workers 2"; do
             echo "--parallel $p" | tee -a "$OUT/diloco-memory.txt"
             timeout 300 $MPIRUN -n ${RANKS:-2} $PYFULL -m mpitrain.train vit_b16 --data synthetic \
               --steps 3 --batch-size 32 --precision bf16 --no-progress --memory-report \
               --parallel $p --sync-every 2 2>&1 | grep -v "^ *\[" | tail -30 | tee -a "$OUT/diloco-memory.txt"
           done ;;
    shared-tests) # one GPU, ranks sharing it (MPITRAIN_PEER_KERNELS=shared): the copy-engine path,
           # registered outputs, data parallel on them (both bucket waits), the memory
           # accountant, and the compiled trainer's pieces with tail cuts against one process
           export MPITRAIN_PEER_KERNELS=shared MPITRAIN_TIMEOUT=60
           for n in ${RANKS:-2}; do
             echo "ranks sharing one GPU: $n" | tee -a "$OUT/shared-tests.txt"
             for t in "tests/mpi/test_peer_kernels.py -k copy_engine|registered|freed" \
                      tests/mpi/test_data_parallel.py tests/mpi/test_memory.py; do
               file=${t%% *}; k=""; [ "$t" != "$file" ] && k=$(echo "${t#* -k }" | sed 's/|/ or /g')
               echo "$file ${k:+-k $k}" | tee -a "$OUT/shared-tests.txt"
               timeout ${LIMIT:-300} $MPIRUN -x MPITRAIN_PEER_KERNELS -x MPITRAIN_TIMEOUT -n $n $PYFULL -m pytest -q \
                 -p no:cacheprovider --with-mpi --color=no $file ${k:+-k "$k"} 2>&1 \
                 | grep -a -E "^E |passed|failed|skipped|rror" | sort | uniq | head -20 | tee -a "$OUT/shared-tests.txt"
             done
           done
           [ -n "${NO_TRAIN:-}" ] || for wait in stream host; do
             echo "trainer, --compile in pieces with tail cuts, MPITRAIN_DP_BUCKET_WAIT=$wait" | tee -a "$OUT/shared-tests.txt"
             MPITRAIN_DP_BUCKET_WAIT=$wait MPITRAIN_MPIEXEC="${MPIEXEC:-mpiexec} --allow-run-as-root --oversubscribe" \
               timeout 300 $PY -m pytest -q -p no:cacheprovider --color=no tests/serial/test_train_cli.py \
               -k "extra10 or extra0" 2>&1 | tail -3 | tee -a "$OUT/shared-tests.txt"
           done
           unset MPITRAIN_PEER_KERNELS ;;
    ce-tests) MPITRAIN_TIMEOUT=60 timeout ${LIMIT:-300} $MPIRUN -n ${RANKS:-2} $PYFULL -m pytest -q -p no:cacheprovider \
             --with-mpi --color=no ${TESTS:-tests/mpi/test_peer_kernels.py} 2>&1 \
             | grep -a -E "^E |passed|failed|skipped|rror" | sort | uniq | head -20 | tee -a "$OUT/ce-tests.txt" ;;
    staged-tests) for n in ${RANKS:-2 3}; do
             echo "staged transport, $n rank(s)" | tee -a "$OUT/staged-tests.txt"
             MPITRAIN_GPU_TRANSPORT=staged MPITRAIN_TIMEOUT=60 timeout ${LIMIT:-150} $MPIRUN -x MPITRAIN_GPU_TRANSPORT \
               -n $n $PYFULL -m pytest -q -p no:cacheprovider --with-mpi --color=no \
               ${TESTS:-tests/mpi/test_staged_transport.py tests/mpi/test_hierarchical.py tests/mpi/test_data_parallel.py} 2>&1 \
               | grep -a -E "^E |passed|failed|rror" | sort | uniq | head -12 | tee -a "$OUT/staged-tests.txt"
           done ;;
    staged-bench) for t in staged auto; do
             MPITRAIN_GPU_TRANSPORT=$t $MPIRUN -x MPITRAIN_GPU_TRANSPORT -n $NGPU $PYFULL -m mpitrain.comm.info --gpu \
               2>&1 | grep -a -A8 "GPU paths" | tee -a "$OUT/staged-bench.txt"; done
           for shared in 1 0; do
             MPITRAIN_GPU_TRANSPORT=staged MPITRAIN_STAGED_SHARED=$shared $MPIRUN -x MPITRAIN_GPU_TRANSPORT \
               -x MPITRAIN_STAGED_SHARED -n $NGPU $PYFULL -m mpitrain.bench collectives --device cuda \
               --impl mpitrain,nccl,mpi --ops all_reduce --sizes ${SIZES:-1M,16M,64M,256M,1G} --algorithms auto \
               --repeats 3 --json "$OUT/staged-bench-shared$shared.json" 2>&1 | grep -v Warning \
               | tee -a "$OUT/staged-bench.txt"
           done ;;
    peer-algos) for blocks in ${BLOCKS:-128}; do for region in ${REGIONS:-256}; do
             MPITRAIN_PEER_BLOCKS=$blocks MPITRAIN_PEER_REGION_MB=$region $MPIRUN -x MPITRAIN_PEER_BLOCKS \
               -x MPITRAIN_PEER_REGION_MB -n $NGPU $PYFULL -m mpitrain.bench \
               collectives --device cuda --impl mpitrain,nccl --ops all_reduce \
               --sizes ${SIZES:-4K,64K,256K,1M,4M,16M,64M,256M,1G} \
               --algorithms ${ALGS:-one_shot,two_shot,two_shot_push,auto} \
               --repeats 3 --json "$OUT/peer-algos-$blocks-$region.json" 2>&1 | grep -v Warning \
               | tee "$OUT/peer-algos-$blocks-$region.txt"
           done; done ;;
    cuda-algos) $MPIRUN -n $NGPU $PYFULL -m mpitrain.bench collectives --device cuda \
             --impl mpitrain,nccl --ops all_reduce --sizes 4K,64K,1M,4M,16M,64M,256M \
             --algorithms all --repeats 3 --json "$OUT/cuda-algos.json" 2>&1 \
             | grep -v Warning | tee "$OUT/cuda-algos.txt" ;;
    cuda-bench) $MPIRUN -n $NGPU $PYFULL -m mpitrain.bench collectives --device cuda \
             --impl mpitrain,nccl,mpi --ops all_reduce --sizes 4K,64K,1M,16M,64M,256M,1G \
             --algorithms auto,ring --repeats 3 --json "$OUT/cuda-allreduce.json" 2>&1 \
             | grep -v Warning | tee "$OUT/cuda-allreduce.txt"
           $MPIRUN -n $NGPU $PYFULL -m mpitrain.bench collectives --device cuda \
             --impl mpitrain,nccl --ops reduce_scatter,all_gather,broadcast --sizes 64K,16M,256M \
             --algorithms auto --repeats 3 --json "$OUT/cuda-others.json" 2>&1 \
             | grep -v Warning | tee "$OUT/cuda-others.txt" ;;
    dp-bench) $MPIRUN -x MPITRAIN_PEER_BLOCKS -n $NGPU $PYFULL -m mpitrain.bench train vit_b16 --precision bf16 \
             --batch-size $((64 * NGPU)) --impl mpitrain,ddp,local --rounds 3 --steps 10 \
             --json "$OUT/dp-bench-vit_b16.json" 2>&1 | grep -v Warning | tee "$OUT/dp-bench-vit_b16.txt" ;;
    compile-bench) $MPIRUN -x MPITRAIN_PEER_BLOCKS -x MPITRAIN_PEER_KERNELS -n $NGPU $PYFULL -m mpitrain.bench \
             train vit_l16 --precision bf16 --batch-size $((64 * NGPU)) --impl ${IMPLS:-mpitrain,ddp,local} \
             --compile --rounds ${ROUNDS:-1} --steps 20 --warmup 5 ${PROFILE:+--profile --profile-dir /tmp/traces} \
             --grad-dtype ${GRAD:-fp32} --json "$OUT/compile-bench-vit_l16${TAG:-}.json" 2>&1 \
             | grep -v -i "warn" | grep -v "^\[rank" | tee "$OUT/compile-bench-vit_l16${TAG:-}.txt"
           if [ -n "${PROFILE:-}" ] && [ -d /tmp/traces ]; then   # the events, for trace_report here
             $PY -m mpitrain.bench.trace_report /tmp/traces --base ${BASE:-local} 2>&1 | tee "$OUT/trace-report${TAG:-}.txt"
             tar -C /tmp -cf "$OUT/traces${TAG:-}.tar" traces && rm -rf /tmp/traces
           fi ;;
    mixed-tests) # a pretended split into nodes of 2 ranks: CUDA IPC inside a node, staged across
           MPITRAIN_RANKS_PER_NODE=2 $MPIRUN -x MPITRAIN_RANKS_PER_NODE -n 4 $PYFULL -m mpitrain.comm.info --gpu \
             2>&1 | grep -a -A7 "GPU paths" | tee -a "$OUT/mixed-tests.txt"
           for n in ${RANKS:-3 4}; do
             echo "mixed transport, $n rank(s)" | tee -a "$OUT/mixed-tests.txt"
             MPITRAIN_TIMEOUT=60 timeout ${LIMIT:-90} $MPIRUN -n $n $PYFULL -m pytest -q -p no:cacheprovider \
               --with-mpi --color=no tests/mpi/test_mixed_transport.py 2>&1 \
               | grep -a -E "^E |passed|failed|rror" | sort | uniq | head -12 | tee -a "$OUT/mixed-tests.txt"
           done ;;
    cuda-mpi-tests) ( impi_env || exit 0
           $IMPIRUN -n 2 $PYFULL -m mpitrain.comm.info --gpu 2>&1 | head -4 | tee -a "$OUT/cuda-mpi-tests.txt"
           MPITRAIN_GPU_TRANSPORT=cuda-mpi $IMPIRUN -n 2 $PYFULL -m mpitrain.comm.info --gpu 2>&1 \
             | grep -a -A3 "GPU paths" | tee -a "$OUT/cuda-mpi-tests.txt"
           for n in ${RANKS:-1 2 3}; do
             echo "Intel MPI, MPITRAIN_GPU_TRANSPORT=cuda-mpi, $n rank(s)" | tee -a "$OUT/cuda-mpi-tests.txt"
             MPITRAIN_GPU_TRANSPORT=cuda-mpi MPITRAIN_TIMEOUT=60 timeout ${LIMIT:-200} $IMPIRUN -n $n \
               $PYFULL -m pytest -q -p no:cacheprovider --with-mpi --color=no \
               ${TESTS:-tests/mpi/test_cuda_mpi_transport.py tests/mpi/test_collectives_cuda.py} 2>&1 \
               | grep -a -E "^E |passed|failed|rror" | sort | uniq | head -12 | tee -a "$OUT/cuda-mpi-tests.txt"
           done ) ;;
    cuda-mpi-bench) ( impi_env || exit 0
           MPITRAIN_GPU_TRANSPORT=cuda-mpi $IMPIRUN -n $NGPU $PYFULL -m mpitrain.bench collectives \
             --device cuda --impl mpitrain,nccl,mpi --ops all_reduce --sizes ${SIZES:-4K,64K,1M,16M,64M,256M,1G} \
             --algorithms auto --repeats 3 --json "$OUT/cuda-mpi-bench.json" 2>&1 | grep -v Warning \
             | tee "$OUT/cuda-mpi-bench.txt" ) ;;
    zero3-tests) MPITRAIN_TIMEOUT=120 timeout 500 $MPIRUN -n ${RANKS:-2} $PYFULL -m pytest -q \
             -p no:cacheprovider --with-mpi --color=no tests/mpi/test_zero3.py tests/mpi/test_zero.py tests/mpi/test_data_parallel.py \
             tests/mpi/test_peer_kernels.py tests/mpi/test_memory.py 2>&1 \
             | grep -a -E "^E |passed|failed|rror" | sort | uniq | head -12 | tee -a "$OUT/zero3-tests.txt" ;;
    zero3-bench) for pd in ${PARAMS:-fp32 bf16}; do
             $MPIRUN -n $NGPU $PYFULL -m mpitrain.bench train ${MODEL:-vit_G14} --precision bf16 \
               --batch-size $((32 * NGPU)) --impl ${IMPLS3:-mpitrain-zero3,fsdp2} --param-dtype $pd \
               --grad-dtype ${GRAD:-fp32} --rounds ${ROUNDS:-1} --steps ${STEPS:-8} --warmup 3 \
               ${COMPILE:+--compile} ${PROFILE:+--profile} 2>&1 | grep -v -i "warn" | grep -v "^\[rank" \
               | tee -a "$OUT/zero3-bench-${MODEL:-vit_G14}${TAG:-}.txt"
           done ;;
    zero3-memory) for pd in ${PARAMS:-fp32 bf16}; do
             $MPIRUN -n $NGPU $PYFULL -m mpitrain.train ${MODEL:-vit_l16} --data synthetic --precision bf16 \
               --batch-size $((${PER_GPU:-64} * NGPU)) --steps 3 --parallel zero3 --param-dtype $pd \
               --memory-report --no-progress 2>&1 | grep -v -i warn | tee -a "$OUT/zero3-memory.txt"
           done ;;
    memory) for par in ${PARALLELS:-dp zero1 zero2}; do
             $MPIRUN -n $NGPU $PYFULL -m mpitrain.train vit_l16 --data synthetic --precision bf16 \
               --batch-size $((64 * NGPU)) --steps 3 --parallel $par --memory-report --no-progress 2>&1 \
               | grep -v -i warn | tee -a "$OUT/memory-vit_l16.txt"
           done ;;
  esac
done
