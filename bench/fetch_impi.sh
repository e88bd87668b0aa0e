#!/usr/bin/env bash
# A CUDA-aware MPI for the GPU machine, whose own MPI (Debian's Open MPI 4.1.6) is not one:
# Intel MPI from PyPI (impi-rt; GPU buffers with I_MPI_OFFLOAD=1, NVIDIA GPUs through libcuda),
# cut down to what one node needs (libmpi, the hydra launcher, the tuning files and the GPU
# reduction kernels), plus mpi4py wheels (their MPICH-ABI build loads Intel's libmpi.so.12).
# Run here (PyPI reachable); carry `.impi` to the GPU machine (gpu_suite.sh cuda-mpi-*).
#     bash bench/fetch_impi.sh            -> .impi/ (about 30 MB), ignored by git
set -euo pipefail
cd "$(dirname "$0")/.."
PIP=${PIP:-.venv/bin/pip}
IMPI_VERSION=${IMPI_VERSION:-2021.19.0}
MPI4PY_VERSION=${MPI4PY_VERSION:-4.1.2}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$PIP" download -q --no-deps -d "$tmp" "impi-rt==$IMPI_VERSION"
for py in 311 312 313; do
  "$PIP" download -q --no-deps --only-binary :all: --python-version "$py" \
    --platform manylinux_2_17_x86_64 --platform manylinux1_x86_64 -d "$tmp" "mpi4py==$MPI4PY_VERSION"
done
(cd "$tmp" && unzip -q impi_rt-*.whl)
src=$(echo "$tmp"/impi_rt-*.data/data)
rm -rf .impi
mkdir -p .impi/lib .impi/bin .impi/opt/mpi/etc .impi/wheels
cp -L "$src/lib/libmpi.so.12" .impi/lib/
ln -s libmpi.so.12 .impi/lib/libmpi.so
for b in mpiexec.hydra hydra_pmi_proxy hydra_bstrap_proxy cpuinfo; do cp "$src/bin/$b" .impi/bin/; done
ln -s mpiexec.hydra .impi/bin/mpiexec
cp "$src"/opt/mpi/etc/*.conf "$src"/opt/mpi/etc/coll.fatbin "$src"/opt/mpi/etc/tuning_generic_shm.dat .impi/opt/mpi/etc/
cp "$tmp"/mpi4py-*.whl .impi/wheels/
du -sh .impi
