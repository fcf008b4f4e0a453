#!/usr/bin/env bash
# Every GPU figure the README still lacks, in one device call (about 5 minutes on one H100):
#   1. the pre-training step at the GPU scale (ViT-B/16, batch 64, 2x224 + 10x96, K = 65,536) against the
#      DINO-style reference, bf16 and fp32, with the on-device multi-crop rate next to the step rate;
#   2. the backbone against transformers' ViTModel at the same size;
#   3. the multi-crop pipelines side by side on the GPU;
#   4. a real pre-training run (synthetic faces, DataLoader workers, on-device multi-crop, ProSTrainer): its
#      train_samples_per_second next to step 1's images/s says whether the data path keeps the GPU fed.
#
# On the GPU machine, from the repository root:  bash benchmarks/gpu_check.sh OUT_DIR
# It uses the machine's own torch, and pros_hf from src/. Packages that machine lacks or has in other versions
# (datasets and its dill/multiprocess, this project's transformers) are installed from wheels in .whl/ when that
# folder exists; benchmarks/fetch_gpu_wheels.sh downloads them on a machine with PyPI. Each step writes OUT_DIR/NAME.txt;
# a failed step is reported and the others still run (exit status 1 at the end).
# A trial run of the same commands on a CPU, at toy sizes:
#   DEVICE=cpu PRESET=micro BATCH=2 NUM_LOCAL=2 GLOBAL=32 LOCAL=16 K=64 REPEATS=1 STEPS=3 WORKERS=0 IMAGES=16 \
#       bash benchmarks/gpu_check.sh /tmp/gpu_check_trial
set -uo pipefail
OUT_DIR=${1:-gpu_check}
DEVICE=${DEVICE:-cuda}
PRESET=${PRESET:-vit-b16}
BATCH=${BATCH:-64}
NUM_LOCAL=${NUM_LOCAL:-10}
GLOBAL=${GLOBAL:-224}
LOCAL=${LOCAL:-96}
K=${K:-65536}
REPEATS=${REPEATS:-20}
STEPS=${STEPS:-60}
WORKERS=${WORKERS:-8}
IMAGES=${IMAGES:-2048}
PY=${PYTHON:-python3}

mkdir -p "$OUT_DIR"
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
if compgen -G ".whl/*.whl" > /dev/null; then
    SITE=$(mktemp -d)
    if $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$SITE" .whl/*.whl; then
        export PYTHONPATH="$PWD/src:$SITE"
    else
        echo "=== the wheels in .whl/ did not install: the machine's own packages are used"
    fi
fi
status=0
step() {  # step NAME COMMAND...: run it, keep its output in OUT_DIR/NAME.txt, remember a failure
    local name=$1; shift
    echo "=== $name: $*"
    "$@" 2>&1 | tee "$OUT_DIR/$name.txt" || { status=1; echo "=== $name FAILED"; }
}
step environment $PY -c "import torch, transformers; print('torch', torch.__version__, '| transformers', \
transformers.__version__, '| device', torch.cuda.get_device_name() if torch.cuda.is_available() else 'cpu')"
PRECISION_FLAG=$([ "$DEVICE" = cuda ] && echo --bf16 || echo)
step pretrain_step $PY benchmarks/bench_pretrain_step.py --device "$DEVICE" --preset "$PRESET" --batch_size "$BATCH" \
    --num_local "$NUM_LOCAL" --global_size "$GLOBAL" --local_size "$LOCAL" --num_prototypes "$K" \
    --precisions bf16 fp32 --repeats "$REPEATS" --with_augmentation
step backbone $PY benchmarks/bench_backbone.py --device "$DEVICE" --preset "$PRESET" --image_size "$GLOBAL" \
    --batch_size "$BATCH" --repeats "$REPEATS"
step augmentation $PY benchmarks/bench_augmentation.py --device "$DEVICE" --batch-size "$BATCH" \
    --local-crops "$NUM_LOCAL" --global-size "$GLOBAL" --local-size "$LOCAL" --repeats "$REPEATS" --skip kornia
step pretrain $PY examples/pretrain.py --preset "$PRESET" --per_device_train_batch_size "$BATCH" \
    --global_crop_size "$GLOBAL" --local_crop_size "$LOCAL" --num_local_crops "$NUM_LOCAL" --num_prototypes "$K" \
    --num_synthetic_images "$IMAGES" --synthetic_image_size $((GLOBAL + GLOBAL / 7)) --max_steps "$STEPS" \
    --dataloader_num_workers "$WORKERS" $PRECISION_FLAG --logging_steps 10 --save_strategy no --report_to none \
    --disable_tqdm True --output_dir "$(mktemp -d)/pretrain"
exit $status
