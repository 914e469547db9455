"""What every stage shares: logging set-up, params loading, and turning known errors into a clean exit."""

from __future__ import annotations

import functools
import json
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

# Before anything loads torch (every stage imports this module first): torch's OpenMP threads otherwise
# spin-wait for each other, and on a busy 2-core machine a training step took 5-10x longer with identical
# results (benchmarks/README.md). Set in the environment to override.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import click

from wakeword.params import Params, ParamsError, load_params

F = TypeVar("F", bound=Callable[..., Any])

params_option = click.option(
    "--params", "params_path", default="params.yaml", show_default=True,
    type=click.Path(dir_okay=False, path_type=Path), help="Parameters file.",
)


def setup_logging() -> None:
    logging.basicConfig(
        level=os.environ.get("WAKEWORD_LOG", "INFO"), format="%(asctime)s %(name)s %(levelname)s: %(message)s",
        datefmt="%H:%M:%S", stream=sys.stderr,
    )


def load(params_path: Path) -> Params:
    """Validate the whole params file before any work, so a bad value stops the first stage that runs."""
    try:
        return load_params(params_path)
    except ParamsError as exc:
        raise click.ClickException(str(exc)) from None


def stage(fn: F) -> F:
    """Run a stage body with logging; library errors (ValueError subclasses) become a one-line failure."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        setup_logging()
        try:
            return fn(*args, **kwargs)
        except click.ClickException:
            raise
        except (ValueError, OSError) as exc:
            raise click.ClickException(f"{type(exc).__name__}: {exc}") from exc

    return wrapper  # type: ignore[return-value]


def write_json(path: Path, data: Any) -> None:
    """Atomic JSON write: a failed stage never leaves a half-written metrics file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


def round_floats(data: Any, digits: int = 6) -> Any:
    if isinstance(data, float):
        return round(data, digits)
    if isinstance(data, dict):
        return {k: round_floats(v, digits) for k, v in data.items()}
    if isinstance(data, list):
        return [round_floats(v, digits) for v in data]
    return data
