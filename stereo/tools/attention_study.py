"""Collect the attention study's runs into docs/attention_study.md (and JSON).

    python scripts/attention_study.py [sweep_dir=runs/attention_study] [bench_size=[544,960]] [bench_runs=3]

Reads every run's ``summary.json`` under ``sweep_dir`` (made by the sweeps in
``conf/experiment/attention_study.yaml``), groups runs by attention variant, averages seeds (mean ± sample
std), compares each variant with ``none@layer4`` (difference of means, standard error, Welch's t when both
have >= 2 seeds), and measures each variant's eval time and peak memory at ``bench_size`` and its training
step at the runs' crop and batch, with random weights (median of ``bench_runs``, each variant in a fresh
process, ``bench_threads`` threads; the runs' own seconds per step also count data loading and whatever
else shared the machine). Writes the
markdown table to ``out_md`` and everything to ``out_json``. The HParams view of
``tensorboard --logdir <sweep_dir>`` shows the same runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from omegaconf import OmegaConf

from stereo.bench.harness import MiB, environment, run_isolated
from stereo.cli import parse_overrides
from stereo.config import load_config, to_plain
from stereo.io import write_json, write_text
from stereo.study import collect_runs, format_pm, group_runs, model_overrides, welch

BASELINE = "none@layer4"
COMMANDS = """python scripts/make_sceneflow_sample.py out=datasets/gen2_train height=272 width=480 version=2 \\
    train_pairs=3000 test_pairs=40 seed=1000 max_disp=112 workers=0
python scripts/make_generated_benchmark.py out=datasets/generated-v1
python scripts/train.py -m experiment=attention_study model.feature.attention.0.kind=none,efficient seed=1,2,3
python scripts/train.py -m experiment=attention_study model.feature.attention.0.kind=dot_product,linear,latent seed=1
python scripts/train.py -m experiment=attention_study model.feature.attention.0.kind=multires \\
    model.feature.attention.0.heads=4 seed=1
python scripts/train.py -m experiment=attention_study model.feature.attention.0.position=layer1 \\
    model.feature.attention.0.key_channels=16 model.feature.attention.0.value_channels=32 seed=1
python scripts/attention_study.py"""


@dataclass
class StudyConfig:
    sweep_dir: str = "runs/attention_study"
    base_model: str = "ea_psmnet_light"
    bench_size: list = field(default_factory=lambda: [544, 960])
    bench_runs: int = 3
    bench_threads: int = 2
    out_md: str = "docs/attention_study.md"
    out_json: str = "bench_results/attention_study.json"


def main(argv: list[str]) -> None:
    cfg = parse_overrides(StudyConfig, argv, doc=__doc__)
    runs = collect_runs(cfg.sweep_dir)
    rows = group_runs(runs)
    skipped = [r["run_dir"] for r in runs if r["status"] != "finished" or not r.get("val")]
    base = OmegaConf.to_container(load_config(f"model/{cfg.base_model}"))
    h, w = cfg.bench_size
    by_variant = {r["variant"]: r for r in rows}
    seeds_of = {r["variant"]: [m for m in runs if m["run_dir"] in r["run_dirs"]] for r in rows}
    for r in rows:
        over = model_overrides(r["model"], base)
        print(f"benchmark {r['variant']} at {h}x{w} ({' '.join(over) or 'base'})", flush=True)
        how = {"runs": cfg.bench_runs, "threads": cfg.bench_threads}
        case = {"label": r["variant"], "model": cfg.base_model, "overrides": over}
        b = run_isolated("stereo.bench.cases:model_case", {"case": {**case, "height": h, "width": w}, "how": how})
        r["eval_seconds"], r["eval_peak_mib"] = b["timing"]["median_s"], b["timing"]["peak_bytes"] / MiB
        r["eval_times"] = b["timing"]["times_s"]
        th, tw = (int(v) for v in seeds_of[r["variant"]][0]["hparams"]["crop"].split("x"))
        batch = int(seeds_of[r["variant"]][0]["hparams"]["batch"])
        train = {**case, "height": th, "width": tw, "train": True, "batch": batch}
        t = run_isolated("stereo.bench.cases:model_case", {"case": train, "how": how})["timing"]
        r["train_step_seconds"], r["train_step_times"] = t["median_s"], t["times_s"]
        if r["variant"] != BASELINE and BASELINE in by_variant:
            r["vs_none"] = {
                k: welch([m["val"][k] for m in seeds_of[BASELINE]], [m["val"][k] for m in seeds_of[r["variant"]]])
                for k in ("epe", "bad2")
            }
    rows.sort(key=lambda r: (r["variant"] != BASELINE, r["variant"]))
    md = render(cfg, rows, runs, skipped)
    write_text(cfg.out_md, md)
    write_json(cfg.out_json, {"environment": environment(), "config": to_plain(cfg),
                              "rows": rows, "skipped": skipped})  # fmt: skip
    print(md)
    print(f"wrote {cfg.out_md} and {cfg.out_json}")


def render(cfg: StudyConfig, rows: list[dict], runs: list[dict], skipped: list[str]) -> str:
    first = next(r for r in runs if r["status"] == "finished")
    hp = first["hparams"]
    cpu_hours = sum(r.get("train_seconds", 0.0) for r in runs) / 3600
    h, w = cfg.bench_size
    lines = [
        "# Attention study: what efficient attention buys at equal training budget",
        "",
        f"Generated by `scripts/attention_study.py` from the runs under `{cfg.sweep_dir}`; do not edit by hand.",
        "",
        f"**Budget:** {hp['model']} with one attention block varied; {first['step']} steps, batch {hp['batch']}, "
        f"crops {hp['crop']}, data `{hp['data']}` (render pass {hp['render_pass']}), lr {hp['lr']} "
        f"({first['train']['lr_schedule']}, warm-up {first['train']['warmup_steps']} steps). "
        "Metrics: final weights on the first "
        f"{first['val']['pairs']} pairs of generated-v1/272x480 (final pass, mask 0 < gt < 96, per-image "
        f"averaging). The training steps of all runs took {cpu_hours:.2f} h on "
        f"{environment()['cpu_count']} CPU cores.",
        "",
        f"| attention | seeds | parameters | EPE px | bad-2 % | EPE vs none | train s/step (runs) "
        f"| train s/step (isolated) | eval s at {h}x{w} | eval peak MiB at {h}x{w} |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        vs = r.get("vs_none", {}).get("epe")
        if r["variant"] == BASELINE:
            cmp = "—"
        elif vs is None:
            cmp = "n/a (1 seed)"
        else:
            cmp = f"{vs['diff']:+.2f} ± {vs['se']:.2f} (t = {vs['t']:.1f})"
        lines.append(
            f"| {r['variant']} | {len(r['seeds'])} | {r['parameters']:,} | {format_pm(r['epe'])} | "
            f"{format_pm(r['bad2'], 1)} | {cmp} | {format_pm(r['seconds_per_step'])} | {r['train_step_seconds']:.2f} | "
            f"{r['eval_seconds']:.2f} | "
            f"{r['eval_peak_mib']:.0f} |"
        )
    lines += [
        "",
        'Mean ± sample standard deviation over seeds. "EPE vs none": difference of means (variant - none) ± '
        "its standard error and Welch's t; |t| < 2 means no difference this budget can resolve. Train s/step "
        "(runs): the runs' own training time per step (data loading included; other work may have shared "
        "the machine); (isolated): one training step (forward, loss, backward, Adam) at the runs' crop and "
        f"batch in a fresh process. Eval time and memory: one {h}x{w} pair. Both with random weights, median "
        f"of {cfg.bench_runs} runs after a warm-up, {cfg.bench_threads} threads; memory is the peak working "
        "memory above the loaded model.",
    ]
    if skipped:
        lines += ["", "Runs without final metrics (unfinished or failed), not in the table: "
                  + ", ".join(f"`{s}`" for s in skipped)]  # fmt: skip
    lines += ["", "## Commands", "", "```bash", COMMANDS, "```", ""]
    return "\n".join(lines)
