#!/usr/bin/env bash
# Every GPU figure of docs/performance.md, in one device call, most important first (each part writes OUT_DIR/NAME.txt
# as it ends, so a call cut short still returns the parts it finished; the benchmarks also write OUT_DIR/NAME.json,
# which docs/make_tables.py renders once copied to docs/results/):
#   environment       torch, transformers, accelerate, the device
#   multicrop_device  the multi-crop on the GPU equals the CPU's for the same draws (its one non-blocking copy)
#   pretrain_step     the step at the GPU target's scale (ViT-B/16, batch 64, 2x224 + 10x96, K = 65,536) against the
#                     DINO-style reference, bf16 and fp32, with the on-device multi-crop rate next to the step rate
#   profile           where a bf16 step's time goes, ProS then the reference: kernel groups and device busy time
#   compiled_step     the bf16 step with both sides' backbones compiled by regions (retried with inductor's tiling
#                     analysis off if inductor fails: pytorch/pytorch#197077)
#   pretrain          a real pre-training run (synthetic faces, DataLoader workers, on-device multi-crop,
#                     ProSTrainer): train_steady_samples_per_second next to pretrain_step's images/s says whether the
#                     data path and the loop keep the GPU fed
#   pretrain_compiled the same run with --torch_compile True
#   syncs             a short run with torch's sync debug mode: every place the host still waits for the GPU
#   backbone          the backbone against transformers' ViTModel (docs/results/backbone_gpu.json; not in the
#                     default PARTS)
#   augmentation      the multi-crop pipelines side by side (docs/results/augmentation_gpu.json; not in the default
#                     PARTS)
#
# On the GPU machine, from the repository root:  bash benchmarks/gpu_check.sh OUT_DIR
# PARTS="pretrain_step profile" runs only those (PARTS=all runs every part). It uses the machine's own torch, and
# pros_hf from src/. Packages that machine lacks or has in other versions (datasets and its dill/multiprocess, this
# project's transformers and accelerate) are installed from wheels in .whl/ when that folder exists;
# benchmarks/fetch_gpu_wheels.sh downloads them on a machine with PyPI. A failed part is reported and the others still
# run (exit status 1 at the end).
# A trial run of the same commands on a CPU, at toy sizes (tests/test_gpu_check_script.py does this):
#   DEVICE=cpu PRESET=micro BATCH=2 NUM_LOCAL=2 GLOBAL=32 LOCAL=16 K=64 REPEATS=1 STEPS=3 WORKERS=0 IMAGES=16 \
#       COMPILE_BACKEND=aot_eager PARTS=all bash benchmarks/gpu_check.sh /tmp/gpu_check_trial
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
STEPS=${STEPS:-80}
WORKERS=${WORKERS:-8}
IMAGES=${IMAGES:-1024}
COMPILE_BACKEND=${COMPILE_BACKEND:-inductor}  # aot_eager: the compiled parts traced without code generation (a trial)
PARTS=${PARTS:-environment multicrop_device pretrain_step profile compiled_step pretrain pretrain_compiled syncs}
[ "$PARTS" = all ] && PARTS="environment multicrop_device pretrain_step profile compiled_step pretrain \
pretrain_compiled syncs backbone augmentation"
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
wanted() { [[ " $PARTS " == *" $1 "* ]]; }
step() {  # step NAME COMMAND...: run it if PARTS names it, keep its output in OUT_DIR/NAME.txt, remember a failure
    local name=$1; shift
    wanted "$name" || return 0
    echo "=== $name: $*"
    "$@" 2>&1 | tee "$OUT_DIR/$name.txt" || { status=1; echo "=== $name FAILED"; return 1; }
}
STEP_FLAGS=(--device "$DEVICE" --preset "$PRESET" --batch_size "$BATCH" --num_local "$NUM_LOCAL"
            --global_size "$GLOBAL" --local_size "$LOCAL" --num_prototypes "$K")
PRECISION_FLAG=$([ "$DEVICE" = cuda ] && echo --bf16 || echo)
PRETRAIN_FLAGS=(--preset "$PRESET" --per_device_train_batch_size "$BATCH" --global_crop_size "$GLOBAL"
                --local_crop_size "$LOCAL" --num_local_crops "$NUM_LOCAL" --num_prototypes "$K"
                --num_synthetic_images "$IMAGES" --synthetic_image_size $((GLOBAL + GLOBAL / 7))
                --dataloader_num_workers "$WORKERS" $PRECISION_FLAG --logging_steps 10 --save_strategy no
                --report_to none --disable_tqdm True)

step environment $PY -c "import torch, transformers, accelerate; print('torch', torch.__version__, '| transformers', \
transformers.__version__, '| accelerate', accelerate.__version__, '| device', \
torch.cuda.get_device_name() if torch.cuda.is_available() else 'cpu')"
step multicrop_device $PY -c "
import torch
from pros_hf.augmentation import MultiCropAugmentation
device = '$DEVICE'
aug = MultiCropAugmentation(global_crop_size=$GLOBAL, local_crop_size=$LOCAL, n_local_crops=$NUM_LOCAL)
images = torch.randint(0, 256, ($BATCH, 3, $((GLOBAL + GLOBAL / 7)), $((GLOBAL + GLOBAL / 7))), dtype=torch.uint8)
for seed in range(3):
    params = aug.sample_params($BATCH, images.shape[-1], generator=torch.Generator().manual_seed(seed))
    reference, moved = aug.apply(images, params), aug.apply(images.to(device), params)
    for a, b in zip(reference, moved):
        assert b.device.type == torch.device(device).type, b.device
        torch.testing.assert_close(b.cpu(), a, atol=1e-3, rtol=0)
print('multi-crop on', device, 'equals the CPU for 3 batches of draws')"
step pretrain_step $PY benchmarks/bench_pretrain_step.py "${STEP_FLAGS[@]}" --precisions bf16 fp32 \
    --repeats "$REPEATS" --with_augmentation --output_json "$OUT_DIR/pretrain_step.json"
step profile bash -c "$PY benchmarks/profile_pretrain_step.py ${STEP_FLAGS[*]} --model pros && \
    $PY benchmarks/profile_pretrain_step.py ${STEP_FLAGS[*]} --model reference"
if ! step compiled_step $PY benchmarks/bench_pretrain_step.py "${STEP_FLAGS[@]}" --precisions bf16 \
        --repeats "$REPEATS" --compile both --compile_scope regions --compile_backend "$COMPILE_BACKEND" \
        --output_json "$OUT_DIR/compiled_step.json" && wanted compiled_step; then
    # the workaround of pytorch/pytorch#197077; when it works, the compiled training run below uses it too
    export TORCHINDUCTOR_COALESCE_TILING_ANALYSIS=0 TORCHINDUCTOR_LOOP_REINDEXING_AFTER_FUSION=0
    PARTS=compiled_step_retry step compiled_step_retry $PY benchmarks/bench_pretrain_step.py "${STEP_FLAGS[@]}" \
        --precisions bf16 --repeats "$REPEATS" --compile both --compile_scope regions \
        --compile_backend "$COMPILE_BACKEND" --output_json "$OUT_DIR/compiled_step.json" \
        || unset TORCHINDUCTOR_COALESCE_TILING_ANALYSIS TORCHINDUCTOR_LOOP_REINDEXING_AFTER_FUSION
fi
step pretrain $PY examples/pretrain.py "${PRETRAIN_FLAGS[@]}" --max_steps "$STEPS" \
    --output_dir "$(mktemp -d)/pretrain"
step pretrain_compiled $PY examples/pretrain.py "${PRETRAIN_FLAGS[@]}" --max_steps "$STEPS" --torch_compile True \
    --torch_compile_backend "$COMPILE_BACKEND" \
    --output_dir "$(mktemp -d)/pretrain"
step syncs $PY -W default -c "
import runpy, sys, torch
if torch.cuda.is_available():
    torch.cuda.set_sync_debug_mode('warn')  # a warning, once per call site, wherever the host waits for the GPU
sys.argv = ['examples/pretrain.py', *sys.argv[1:]]
runpy.run_path('examples/pretrain.py', run_name='__main__')" "${PRETRAIN_FLAGS[@]}" --max_steps 20 \
    --output_dir "$(mktemp -d)/pretrain"
step backbone $PY benchmarks/bench_backbone.py --device "$DEVICE" --preset "$PRESET" --image_size "$GLOBAL" \
    --batch_size "$BATCH" --repeats "$REPEATS" --output_json "$OUT_DIR/backbone.json"
step augmentation $PY benchmarks/bench_augmentation.py --device "$DEVICE" --batch-size "$BATCH" \
    --local-crops "$NUM_LOCAL" --global-size "$GLOBAL" --local-size "$LOCAL" --repeats "$REPEATS" --skip kornia \
    --output-json "$OUT_DIR/augmentation.json"
exit $status
