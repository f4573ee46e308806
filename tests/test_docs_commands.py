"""Every command that README.md and docs/*.md show composes: its config (apps) or its keys (tools) pass
the same checks as on the command line, so a renamed key or a removed option cannot leave a documented
command behind. Multi-run sweeps (-m a=x,y) compose for every value; torchrun lines as the script they
launch. (README's own-images commands also run: tests/test_readme.py.)"""

import importlib
import itertools
import re
import shlex

import pytest

from stereo.config import SCHEMAS, check_config, load_config
from tests.conftest import REPO

DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
APPS = {"stereo-train": "train", "stereo-eval": "eval", "stereo-infer": "infer", "stereo-export": "export",
        "train.py": "train", "evaluate.py": "eval", "infer.py": "infer", "export.py": "export"}  # fmt: skip
NOT_CONFIGS = {"setup.sh", "test.sh", "demo.sh"}  # shell scripts without keys


def documented_commands() -> list[tuple[str, str, str, list[str]]]:
    """(doc, command line, program, arguments) of every stereo command in a shell block of the docs."""
    found = []
    for doc in DOCS:
        for block in _shell_blocks(doc.read_text()):
            for line in block.replace("\\\n", " ").splitlines():
                try:
                    words = shlex.split(line, comments=True)
                except ValueError:
                    continue
                for i, w in enumerate(words):
                    name = w.rsplit("/", 1)[-1]
                    if (w.startswith("stereo-") and i == 0) or (
                        w.startswith("scripts/") and w.endswith((".py", ".sh"))
                    ):
                        if name not in NOT_CONFIGS:
                            found.append((doc.name, line.strip(), name, words[i + 1 :]))
                        break
    return found


def _shell_blocks(text: str) -> list[str]:
    """The fenced blocks of a Markdown text whose language is a shell (or not given)."""
    blocks, current, lang = [], None, ""
    for line in text.splitlines():
        fence = re.match(r"\s*```(\w*)", line)
        if fence and current is None:
            current, lang = [], fence.group(1)
        elif fence:
            if lang in ("", "bash", "sh", "shell", "console"):
                blocks.append("\n".join(current) + "\n")
            current = None
        elif current is not None:
            current.append(line)
    return blocks


COMMANDS = documented_commands()


def _sweep(args: list[str]) -> list[list[str]]:
    """Hydra's -m sweeps (key=a,b) as one argument list per combination."""
    if "-m" not in args and "--multirun" not in args:
        return [args]
    args = [a for a in args if a not in ("-m", "--multirun")]
    options = [[f"{a.split('=', 1)[0]}={v}" for v in a.split("=", 1)[1].split(",")]
               if "=" in a and "," in a and "[" not in a else [a] for a in args]  # fmt: skip
    return [list(c) for c in itertools.product(*options)]


def test_the_docs_show_commands():
    programs = {p for _, _, p, _ in COMMANDS}
    assert {"stereo-infer", "stereo-train", "stereo-eval", "stereo-export", "infer.py", "train.py"} <= programs
    assert len(COMMANDS) >= 30


@pytest.mark.parametrize(("doc", "line", "program", "args"), COMMANDS, ids=[f"{d}:{c[:60]}" for d, c, _, _ in COMMANDS])
def test_documented_command_composes(doc, line, program, args):
    helps = [a for a in args if a in ("--help", "-h")]
    args = [a for a in args if a not in helps]
    for one in _sweep(args):
        if program in APPS:
            app = APPS[program]
            cfg = load_config(app, one)
            if not helps:  # --help composes without the required keys
                check_config(cfg, SCHEMAS[app])
        else:
            from stereo.cli import parse_overrides

            module = importlib.import_module(f"stereo.tools.{program.removesuffix('.py')}")
            schema = getattr(module, re.search(r"parse_overrides\((\w+)", open(module.__file__).read()).group(1))
            try:
                parse_overrides(schema, one)
            except SystemExit as e:
                pytest.fail(f"{doc}: {line}: {e}")
