"""Hydra applications behind the console scripts and ``scripts/*.py``: thin, they call library code.

Errors a user can fix (:class:`stereo.errors.StereoError`, config validation, a file that cannot be
read or written) print one line and exit 1; Ctrl-C exits 130 and SIGTERM 143 without a traceback;
anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import errno
import functools
import logging
import os
import shutil
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig
from omegaconf.errors import OmegaConfBaseException

from stereo.cli import repeated_keys, unknown_keys
from stereo.config import CONF_DIR
from stereo.errors import StereoError
from stereo.io import LOCK_NAME

# OSErrors that are about the user's files and disks, not about our code.
_USER_ERRNOS = {errno.ENOENT, errno.EACCES, errno.EPERM, errno.ENOSPC, errno.EROFS, errno.EEXIST, errno.ENOTDIR,
                errno.EISDIR, errno.EDQUOT}  # fmt: skip


def user_message(e: BaseException) -> str:
    """The one-line message of a user error; errors re-raised from DataLoader workers lose the wrapper
    (\"Caught X in DataLoader worker process N ... Original Traceback ...\") and keep the original text."""
    text = str(e)
    if "Original Traceback" in text:
        last = [line for line in text.strip().splitlines() if line.strip()][-1]
        text = last.split(": ", 1)[1] if ": " in last else last
    if isinstance(e, OSError) and not isinstance(e, StereoError) and e.filename:
        text = f"{e.filename}: {e.strerror}"
    if isinstance(e, OmegaConfBaseException):  # its later lines are OmegaConf internals (object_type=...)
        text = text.strip().splitlines()[0]
    return text.strip()


def _terminate(signum: int, _frame: Any) -> None:
    raise SystemExit(128 + signum)


def _discard_empty_run_dir() -> None:
    """Remove the run folder Hydra made for a run that failed before writing anything of its own."""
    try:
        hc = HydraConfig.get()
    except ValueError:  # not under Hydra (a library call)
        return
    out = Path(hc.runtime.output_dir).resolve()
    if out.is_dir() and {p.name for p in out.iterdir()} <= {".hydra", f"{hc.job.name}.log", LOCK_NAME}:
        shutil.rmtree(out, ignore_errors=True)
        cwd = Path.cwd().resolve()
        for parent in out.parents:  # and the folders made for it (runs/infer), while empty, below here
            if parent == cwd or cwd not in parent.parents:
                break
            try:
                parent.rmdir()
            except OSError:
                break


def _stdout_closed() -> NoReturn:
    """The reader of stdout went away (``stereo-eval --help | head``): stop quietly, as Python's docs advise
    (stdout pointed at /dev/null so the interpreter's last flush cannot fail again)."""
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    sys.exit(1)


def run(fn: Callable[[], Any]) -> Any:
    """Call ``fn`` with the project's error policy (see the module docstring)."""
    signal.signal(signal.SIGTERM, _terminate)
    try:
        result = fn()
        sys.stdout.flush()  # a closed pipe shows here, not in the interpreter's exit
        return result
    except BrokenPipeError:
        _stdout_closed()
    except KeyboardInterrupt:
        print("interrupted (Ctrl-C)", file=sys.stderr)
        sys.exit(130)
    except (StereoError, OmegaConfBaseException) as e:
        _discard_empty_run_dir()
        print(f"error: {user_message(e)}", file=sys.stderr)
        sys.exit(1)
    except OSError as e:
        if e.errno not in _USER_ERRNOS:
            raise
        _discard_empty_run_dir()
        print(f"error: {user_message(e)}", file=sys.stderr)
        sys.exit(1)


def run_tool(main: Callable[[list[str]], Any]) -> Any:
    """A tool's ``main(argv)`` (``scripts/*.py`` other than the apps) under the same error policy."""
    return run(lambda: main(sys.argv[1:]))


def _check_run_dir(argv: list[str]) -> None:
    """Hydra creates the run folder and its log file before any of our code runs, and reports a failure
    there as a traceback: check the folder can be made first, and say so in one line."""
    given = [a.split("=", 1)[1] for a in argv if a.lstrip("+").startswith("hydra.run.dir=")]
    folder = Path(given[-1] if given else "runs").expanduser()
    probe = folder
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    problem = None
    if not probe.is_dir():
        problem = f"{probe} is not a folder"
    elif not os.access(probe, os.W_OK | os.X_OK):
        problem = f"{probe} is not writable"
    elif probe == folder and given and not os.access(folder, os.W_OK):
        problem = f"{folder} is not writable"
    if problem:
        key = "hydra.run.dir" if given else "the run folder (runs/ here; set hydra.run.dir=...)"
        print(f"error: {key}={folder}: cannot write the run folder and its log there: {problem}", file=sys.stderr)
        sys.exit(1)


def _print_help(app: str, argv: list[str]) -> None:
    """``--help``: generated from the app's schema, with the values the other arguments give."""
    from hydra.errors import HydraException

    from stereo.config import SCHEMAS, format_help, load_config

    overrides = [a for a in argv if "=" in a and not a.lstrip("+").startswith("hydra")]
    try:
        cfg = run(lambda: load_config(app, overrides))
    except HydraException as e:  # a bad group option: Hydra's message, without its traceback
        print(f"error: {user_message(e)}", file=sys.stderr)
        sys.exit(1)
    groups = {g: str(cfg.get(g, {}).get("name", "null")) for g in ("model", "data") if g in cfg}
    if app == "train":
        groups["experiment"] = next((a.split("=", 1)[1] for a in overrides if a.startswith("experiment=")), "null")
    print(format_help(SCHEMAS[app], cfg, groups))


def _preflight(app: str) -> Callable[[Callable[[], Any]], Callable[[], Any]]:
    def decorate(main: Callable[[], Any]) -> Callable[[], Any]:
        @functools.wraps(main)
        def wrapper() -> Any:
            argv = sys.argv[1:]
            if any(a in ("-h", "--help") for a in argv):
                try:
                    _print_help(app, argv)
                    sys.stdout.flush()
                except BrokenPipeError:
                    _stdout_closed()
                return None
            for problem in (repeated_keys(argv), unknown_keys(app, argv)):
                if problem:
                    print(f"error: {problem}", file=sys.stderr)
                    sys.exit(1)
            _check_run_dir(argv)
            return main()

        return wrapper

    return decorate


@_preflight("train")
@hydra.main(config_path=str(CONF_DIR), config_name="train", version_base=None)
def train_main(cfg: DictConfig) -> None:
    """``stereo-train``: train on Scene Flow (conf/train.yaml)."""
    from stereo.config import TrainAppConfig, typed
    from stereo.train import adopt_init_architecture, train

    logging.getLogger("stereo").setLevel(logging.INFO)

    def go():
        config = typed(cfg, TrainAppConfig)
        chosen = [o for o in HydraConfig.get().overrides.task if o.lstrip("+~").split("=")[0].split(".")[0] == "model"]
        if not chosen and (change := adopt_init_architecture(config)):  # no model chosen: the weights' own
            logging.getLogger("stereo.train").info("%s; choose model=... to keep another", change)
        return train(config, HydraConfig.get().runtime.output_dir)

    summary = run(go)
    if summary.rank != 0:
        return
    val = summary.val
    line = f"{summary.status} after {summary.step} steps"
    if val:
        line += f"; val EPE {val.epe:.3f} px, bad3 {val.bad3:.2f}%, D1 {val.d1:.2f}% ({val.images} pairs)"
    print(line)
    print(f"checkpoint: {summary.checkpoint}")
    print(f"TensorBoard: tensorboard --logdir {summary.run_dir}/tensorboard")
    if summary.signal:
        sys.exit(128 + summary.signal)  # 130 for Ctrl-C, 143 for SIGTERM, as the shell reports them


@_preflight("eval")
@hydra.main(config_path=str(CONF_DIR), config_name="eval", version_base=None)
def eval_main(cfg: DictConfig) -> None:
    """``stereo-eval``: evaluate a checkpoint on a dataset's test split (conf/eval.yaml)."""
    from stereo.bench.harness import format_table
    from stereo.evaluate import evaluate

    out_dir = HydraConfig.get().runtime.output_dir
    logging.getLogger("stereo").setLevel(logging.INFO)
    r = run(lambda: evaluate(cfg, out_dir))
    m = r.metrics()
    values = [r.pairs, f"{m['epe']:.3f}", *(f"{m[k]:.2f}" for k in ("bad1", "bad2", "bad3", "d1"))]
    print(format_table([values], ["pairs", "EPE px", "bad1 %", "bad2 %", "bad3 %", "D1 %"]))
    print("error bands (% of pixels): " + ", ".join(f"{k} px {v:.1f}" for k, v in r.bands.items()))
    print(f"mask {r.mask}; averaging {r.averaging}; {r.render_pass}pass; {r.dataset} reports "
          f"{r.primary_metric} = {getattr(r, r.primary_metric):.3f}")  # fmt: skip
    print(f"metrics: {out_dir}/metrics.json")


@_preflight("export")
@hydra.main(config_path=str(CONF_DIR), config_name="export", version_base=None)
def export_main(cfg: DictConfig) -> None:
    """``stereo-export``: a checkpoint as ONNX with dynamic batch, height and width (conf/export.yaml)."""
    from stereo.config import ExportAppConfig, typed
    from stereo.export import ExportResult, export_onnx
    from stereo.weights import resolve_checkpoint

    def go() -> ExportResult:
        config = typed(cfg, ExportAppConfig)
        from stereo.io import remove_stale_temps

        remove_stale_temps(Path(config.output).expanduser().parent)  # an interrupted export's temporary file
        return export_onnx(resolve_checkpoint(config.checkpoint), config.output, config.opset)

    meta = run(go)
    print(
        f"wrote {cfg.output}: opset {cfg.opset}, max_disp {meta.max_disp:g} px, inputs of at least "
        f"{meta.min_height}x{meta.min_width} (the graph pads smaller ones itself)"
    )


@_preflight("infer")
@hydra.main(config_path=str(CONF_DIR), config_name="infer", version_base=None)
def infer_main(cfg: DictConfig) -> None:
    """``stereo-infer``: disparity (and depth) for your own image pairs (conf/infer.yaml)."""
    from stereo.infer import infer

    out_dir = cfg.output_dir or HydraConfig.get().runtime.output_dir
    results = run(lambda: infer(cfg, out_dir))
    if cfg.output_dir:
        _discard_empty_run_dir()  # Hydra's runs/infer/<time>: nothing went there
    if isinstance(results, list):
        print(f"{len(results)} pair(s) written to {out_dir}")
    else:
        print(f"{results.frames} frame(s) of {results.name} written to {out_dir}")


@_preflight("app")
@hydra.main(config_path=str(CONF_DIR), config_name="app", version_base=None)
def app_main(cfg: DictConfig) -> None:
    """``stereo-app``: depth in the browser, a local web page over the Python API (conf/app.yaml)."""
    from stereo.app import serve
    from stereo.config import AppAppConfig, typed

    logging.getLogger("stereo").setLevel(logging.INFO)
    run(lambda: serve(typed(cfg, AppAppConfig)))
