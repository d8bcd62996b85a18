"""data2vec recipes [show NAME]"""

from __future__ import annotations

import argparse

from data2vec.cli.presets import add_arguments as _preset_arguments
from data2vec.cli.presets import list_or_show
from data2vec.recipes import get_recipe, list_recipes

HELP = "list fine-tuning recipes (with their task) or show one's resolved config"


def add_arguments(p: argparse.ArgumentParser) -> None:
    _preset_arguments(p)


def run(args: argparse.Namespace) -> int:
    with_task = lambda: {n: f"{get_recipe(n).task:<20}  {d}" for n, d in list_recipes().items()}  # noqa: E731
    return list_or_show(args, "recipes", with_task, get_recipe)
