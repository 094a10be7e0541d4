"""MkDocs hooks: the benchmark plots beside the benchmarks page, and each command's ``--help`` in the CLI reference.

``docs/benchmarks/index.md`` includes ``benchmarks/RESULTS.md`` whole, whose images are named relative to it
(``transfer.png``); adding each plot as ``benchmarks/<name>.png`` makes those links resolve without copying
the files into docs/.
"""

from __future__ import annotations

import importlib
import os
import re
from pathlib import Path

from mkdocs.structure.files import File, Files

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


def on_files(files: Files, config) -> Files:  # noqa: ANN001 (mkdocs' config object)
    for plot in sorted(BENCHMARKS.glob("*.png")):
        files.append(File(f"benchmarks/{plot.name}", src_dir=str(BENCHMARKS.parent), dest_dir=config["site_dir"],
                          use_directory_urls=config["use_directory_urls"]))
    return files


CLI_HELP = re.compile(r"^<!-- cli-help: (sparsevit-[a-z]+) -->$", re.M)


def _cli_help(match: re.Match) -> str:
    """The command's own ``--help``, from the parser the command runs, so this page cannot drift from it."""
    command = match.group(1)
    module = importlib.import_module(f"sparsevit_sdk.cli.{command.removeprefix('sparsevit-')}")
    os.environ["COLUMNS"] = "110"  # argparse wraps to the terminal's width: fix it, for a stable page
    return f"```text\n{module.build_parser().format_help().rstrip()}\n```"


def on_page_markdown(markdown: str, page, config, files) -> str:  # noqa: ANN001 (mkdocs' objects)
    return CLI_HELP.sub(_cli_help, markdown)
