#!/usr/bin/env bash
# Regenerates requirements.lock from pyproject.toml.
# torch resolves against its CPU wheel so that the lock carries no CUDA packages; the Makefile
# installs torch itself (`pip install torch==<pinned>`), which takes the CPU wheel where one is on disk.
set -euo pipefail
# PyPI's torch wheel depends on the CUDA stack; the CPU wheel the Makefile installs does not.
CUDA_ONLY=(cuda-bindings cuda-pathfinder cuda-toolkit triton nvidia-cublas nvidia-cuda-cupti nvidia-cuda-nvrtc
  nvidia-cuda-runtime nvidia-cudnn-cu13 nvidia-cufft nvidia-cufile nvidia-curand nvidia-cusolver nvidia-cusparse
  nvidia-cusparselt-cu13 nvidia-nccl-cu13 nvidia-nvjitlink nvidia-nvshmem-cu13 nvidia-nvtx)
cd "$(dirname "$0")/.."
uv pip compile pyproject.toml \
  --extra mlp --extra infra --extra sagemaker --extra kubernetes --extra evidently --extra test \
  --python-version 3.11 --python-platform x86_64-manylinux_2_28 \
  --find-links /opt/wheels --no-header "${CUDA_ONLY[@]/#/--no-emit-package=}" -o requirements.lock
# the lock names the plain release; the local "+cpu" label exists only on the PyTorch index
sed -i -E 's/^torch==([0-9.]+)\+cpu/torch==\1/' requirements.lock
