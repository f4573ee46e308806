#!/usr/bin/env bash
# The whole product on an embedded default, no user data needed (about 8 minutes on 2 CPU cores):
#   1. generate a small Scene Flow sample in the official layout (datasets/sceneflow_sample)
#   2. save the untrained ea_psmnet_light (step 0), then train it for a fixed budget of steps
#   3. evaluate both checkpoints, the shipped weights and OpenCV SGBM on the sample's test split and print
#      their errors side by side (same pairs, same mask 0 < gt < 96)
#   4. run inference on a test pair with the demo's model and with the shipped weights
# Each stage is one of the normal entry points; outputs go to runs/demo (DEMO_DIR), replaced each run.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

PY=.venv/bin/python
OUT=${DEMO_DIR:-runs/demo}
DATA=datasets/sceneflow_sample
STEPS=${DEMO_STEPS:-250}
rm -rf "$OUT"

echo "== 1/4 Scene Flow sample (272x480, official layout) -> $DATA"
# version=2: the demo's numbers in README were measured on generator v2 samples
$PY scripts/make_sceneflow_sample.py out=$DATA height=272 width=480 train_pairs=40 test_pairs=8 seed=0 replace=true version=2

COMMON=(model=ea_psmnet_light model.max_disp=96 data.root=$DATA data.crop_size=[128,256]
        train.batch_size=2 train.lr=1e-3 train.num_workers=0 train.log_every=10 train.image_every=50
        train.val_every=0 val.limit=0 device=cpu seed=0)

echo "== 2/4 untrained checkpoint, then training for $STEPS steps"
$PY scripts/train.py "${COMMON[@]}" train.max_steps=0 hydra.run.dir=$OUT/untrained > /dev/null
$PY scripts/train.py "${COMMON[@]}" train.max_steps=$STEPS hydra.run.dir=$OUT/train

echo "== 3/4 evaluation on the sample's FlyingThings3D TEST pairs (finalpass, mask 0 < gt < 96)"
EVAL=(data.root=$DATA device=cpu max_disp=96)
for which in untrained:0 train:$STEPS; do
    $PY scripts/evaluate.py checkpoint=$OUT/${which%%:*}/checkpoints/last.pt "${EVAL[@]}" \
        hydra.run.dir=$OUT/eval_step${which##*:} > /dev/null
done
# No checkpoint= means the weights that ship with the package (stereo/weights/).
SHIPPED=$($PY -c "from stereo.weights import shipped_checkpoint as s; print(s() or '')")
if [ -n "$SHIPPED" ]; then
    $PY scripts/evaluate.py "${EVAL[@]}" hydra.run.dir=$OUT/eval_shipped > /dev/null
fi
$PY scripts/evaluate.py method=sgbm "${EVAL[@]}" hydra.run.dir=$OUT/eval_sgbm > /dev/null
$PY - "$OUT" "$STEPS" <<'PY'
import json, os, sys
out, steps = sys.argv[1], sys.argv[2]
rows = [(f"step 0", "eval_step0"), (f"step {steps}", f"eval_step{steps}"), ("shipped weights", "eval_shipped"),
        ("OpenCV SGBM", "eval_sgbm")]
print(f"{'':16s} {'EPE px':>8s} {'bad1 %':>8s} {'bad2 %':>8s} {'bad3 %':>8s} {'D1 %':>8s}")
for name, run in rows:
    path = f"{out}/{run}/metrics.json"
    if not os.path.exists(path):
        print(f"{name:16s} (not available: this installation ships no weights)")
        continue
    m = json.load(open(path))
    print(f"{name:16s} {m['epe']:8.3f} {m['bad1']:8.2f} {m['bad2']:8.2f} {m['bad3']:8.2f} {m['d1']:8.2f}")
print(f"({m['pairs']} pairs, mask {m['mask']}, averaging {m['averaging']})")
PY

echo "== 4/4 inference on a test pair (the demo's model, then the shipped weights)"
PAIR=FlyingThings3D/frames_finalpass/TEST/A/0000
$PY scripts/infer.py checkpoint=$OUT/train/checkpoints/last.pt left=$DATA/$PAIR/left/0006.png \
    right=$DATA/$PAIR/right/0006.png output_dir=$OUT/infer device=cpu
if [ -n "$SHIPPED" ]; then
    $PY scripts/infer.py left=$DATA/$PAIR/left/0006.png right=$DATA/$PAIR/right/0006.png \
        output_dir=$OUT/infer_shipped device=cpu
fi

echo
echo "Outputs:"
echo "  checkpoint    $OUT/train/checkpoints/last.pt"
echo "  metrics       $OUT/eval_{step0,step$STEPS,shipped,sgbm}/metrics.json"
echo "  disparity     $OUT/infer/0006.pfm  0006.png (16-bit, x256)  0006_color.png  0006_legend.png"
echo "                (shipped weights: $OUT/infer_shipped/)"
echo "  TensorBoard   .venv/bin/tensorboard --logdir $OUT   (runs: train, eval_step0, eval_step$STEPS, eval_shipped, eval_sgbm)"
echo "  commands      source .venv/bin/activate   (then stereo-train, stereo-eval, stereo-infer --help)"
