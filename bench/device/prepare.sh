#!/usr/bin/env bash
# Run HERE (the 2-core machine, which reaches PyPI) before the GPU checks: puts into .device/ (git-ignored) what
# the GPU machine lacks and cannot download: wheels of the packages its image does not hold, for its Python 3.12,
# and Fashion-MNIST in torchvision's layout. About 40 MB, inside the device tool's 64 MiB limit. Then:
#   device run, carry [".device"], command "bash bench/device/checks.sh", timeout_s 560
set -euo pipefail
cd "$(dirname "$0")/../.."
mkdir -p .device/whl .device/data/FashionMNIST/raw
# The GPU image has torch, torchvision, numpy, pandas, scikit-learn, matplotlib, pluggy, pyyaml, tqdm, tabulate;
# these are what prior-harness needs beyond them (ray and psycopg2 only serve CPU tests, which do not run there).
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .device/whl \
  'pydantic==2.13.4' 'pydantic_core==2.46.4' 'annotated-types==0.7.0' 'typing-inspection==0.4.2' \
  'typing_extensions==4.15.0' 'torch-fidelity==0.4.0' 'lpips==0.1.4' 'optuna==5.0.0' 'alembic==1.20.1' \
  'colorlog==6.12.0' 'Mako==1.4.3' 'SQLAlchemy==2.1.9'
if [ -d /usr/share/datasets/fashion-mnist ]; then
  cp /usr/share/datasets/fashion-mnist/*-ubyte.gz .device/data/FashionMNIST/raw/
else
  echo "note: no /usr/share/datasets/fashion-mnist (apt-get install dataset-fashion-mnist); the GPU benchmarks will use random 28x28 images"
fi
du -sh .device
