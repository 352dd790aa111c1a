"""``companion service memory-max``: the unit's memory limit, from the configured models and the board."""

from __future__ import annotations

import argparse
import json
import sys

from companion.config import load_config
from companion.models.cache import ModelCache
from companion.paths import models_cache_dir


def add_parser(sub) -> None:
    p = sub.add_parser("service", help="settings of the systemd service, from the prepared models and the board")
    ssub = p.add_subparsers(dest="service_command", required=True)
    m = ssub.add_parser("memory-max", help="the unit's MemoryMax drop-in (systemd/install.sh writes it)")
    m.add_argument("--json", action="store_true")
    m.set_defaults(func=cmd_memory_max)


def cmd_memory_max(args: argparse.Namespace) -> int:
    from companion.hardware import memory_total_bytes
    from companion.models.footprint import memory_need
    from companion.service.memory import (MEMORY_BUDGET_EXCEEDED, board_budget_mb, configured_models, dropin,
                                          unit_limit_mb)

    config = load_config(args.config)
    need = memory_need(configured_models(config), ModelCache(models_cache_dir()))
    total = memory_total_bytes()
    budget = board_budget_mb(config.hardware, total / 2**20 if total else None)
    limit = unit_limit_mb(need.peak_mb, budget)
    if need.peak_mb > limit:
        small = config.llm.small_model
        then = f"the service will start with {small} instead" if small else "the service will refuse to start"
        print(f"warning [{MEMORY_BUDGET_EXCEEDED}] the configured models need about {need.describe()}, more than "
              f"the {config.hardware.profile} board's budget; MemoryMax is the budget, {limit} MB, and {then}",
              file=sys.stderr)
    if args.json:
        print(json.dumps({"memory_max_mb": limit, "need_mb": round(need.peak_mb), "budget_mb": budget,
                          "source": need.source, "models": {m.role: m.name for m in need.models}}, indent=2))
    else:
        print(dropin(need, limit, budget, config.hardware.profile), end="")
    return 0
