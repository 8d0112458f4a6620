"""Training (torch): cached trunk features, the trainers, their data and augmentation."""
from __future__ import annotations

import argparse
import dataclasses


def add_config_arguments(parser: argparse.ArgumentParser, config_class: type, skip: tuple[str, ...] = ()) -> None:
    """One `--field-name` option per field of a training config dataclass, typed by its default
    (booleans read 1/true/yes), so a trainer's command line is its config."""
    for f in dataclasses.fields(config_class):
        if f.name not in skip:
            kind = (lambda v: v.lower() in ("1", "true", "yes")) if isinstance(f.default, bool) else type(f.default)
            parser.add_argument(f"--{f.name.replace('_', '-')}", type=kind, default=f.default)

