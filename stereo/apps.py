"""Hydra applications behind the console scripts and ``scripts/*.py`` (thin: they call library code)."""

from __future__ import annotations

import logging
import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from stereo.config import CONF_DIR
from stereo.data.sceneflow import SceneFlowError

USER_ERRORS = (SceneFlowError, FileNotFoundError, ValueError, RuntimeError)


def _fail(e: BaseException) -> None:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(1)


@hydra.main(config_path=str(CONF_DIR), config_name="train", version_base=None)
def train_main(cfg: DictConfig) -> None:
    """``stereo-train``: train on Scene Flow (conf/train.yaml)."""
    from stereo.train import train

    logging.getLogger("stereo").setLevel(logging.INFO)
    try:
        summary = train(cfg, HydraConfig.get().runtime.output_dir)
    except USER_ERRORS as e:
        _fail(e)
    if summary["rank"] != 0:
        return
    val = summary["val"]
    line = f"{summary['status']} after {summary['step']} steps"
    if val:
        line += f"; val EPE {val['epe']:.3f} px, bad3 {val['bad3']:.2f}%, D1 {val['d1']:.2f}% ({val['images']} pairs)"
    print(line)
    print(f"checkpoint: {summary['checkpoint']}")
    print(f"TensorBoard: tensorboard --logdir {summary['run_dir']}/tensorboard")


@hydra.main(config_path=str(CONF_DIR), config_name="eval", version_base=None)
def eval_main(cfg: DictConfig) -> None:
    """``stereo-eval``: evaluate a checkpoint on Scene Flow's test split (conf/eval.yaml)."""
    from stereo.benchmark import format_table
    from stereo.evaluate import evaluate

    out_dir = HydraConfig.get().runtime.output_dir
    try:
        r = evaluate(
            cfg.checkpoint,
            cfg.data.root,
            out_dir,
            render_pass=cfg.data.render_pass,
            limit=cfg.data.limit,
            mask=cfg.mask,
            max_disp=cfg.max_disp,
            averaging=cfg.averaging,
            device=cfg.device,
            precision=cfg.precision,
            per_image_csv=cfg.per_image_csv,
            worst_k=cfg.worst_k,
        )
    except USER_ERRORS as e:
        _fail(e)
    print(
        format_table(
            [
                [
                    r["pairs"],
                    f"{r['epe']:.3f}",
                    f"{r['bad1']:.2f}",
                    f"{r['bad2']:.2f}",
                    f"{r['bad3']:.2f}",
                    f"{r['d1']:.2f}",
                ]
            ],
            ["pairs", "EPE px", "bad1 %", "bad2 %", "bad3 %", "D1 %"],
        )
    )
    print(f"mask {r['mask']}; averaging {r['averaging']}; {r['render_pass']}pass")
    print(f"metrics: {out_dir}/metrics.json")


@hydra.main(config_path=str(CONF_DIR), config_name="infer", version_base=None)
def infer_main(cfg: DictConfig) -> None:
    """``stereo-infer``: disparity (and depth) for your own image pairs (conf/infer.yaml)."""
    from stereo.infer import infer

    out_dir = cfg.output_dir or HydraConfig.get().runtime.output_dir
    try:
        results = infer(
            cfg.checkpoint,
            str(cfg.left),
            str(cfg.right),
            out_dir,
            device=cfg.device,
            precision=cfg.precision,
            scale=cfg.scale,
            color_range=cfg.color_range,
            color_max=cfg.color_max,
            focal_px=cfg.focal_px,
            baseline=cfg.baseline,
        )
    except USER_ERRORS as e:
        _fail(e)
    print(f"{len(results)} pair(s) written to {out_dir}")
