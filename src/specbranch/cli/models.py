"""`specbranch models`: the built-in models and pairs, and whether their packages are installed."""

from __future__ import annotations

import argparse

from specbranch.models.builtin import DEFAULT_PAIR, MODELS, PAIRS, installed_models


def register(sub: argparse._SubParsersAction) -> None:
    models = sub.add_parser("models", help="list built-in models and pairs and whether they are installed")
    models.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    installed = installed_models()
    print("built-in models:")
    for name, model in MODELS.items():
        print(f"  {name:22s} {'installed' if installed[name] else 'missing  '}  {model.description}")
    print("built-in pairs (target <- draft):")
    for name, (target, draft) in PAIRS.items():
        print(f"  {name:22s} {target} <- {draft}{'  (default)' if name == DEFAULT_PAIR else ''}")
    return 0
