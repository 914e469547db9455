"""python -m benchmarks [--profile default|tiny] [--skip-pipeline] [--json OUT]: the performance benchmark of
issue 6 (what it measures and how: :mod:`benchmarks.suite`). Prints a table (measure, value, target, met)."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from benchmarks.suite import ROOT, format_table, run_suite


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="default",
                    help="params profile merged over params.yaml for the pipeline run: default (none) or a "
                         "profiles/<name>.yaml such as tiny")
    ap.add_argument("--skip-pipeline", action="store_true",
                    help="do not run the pipeline; measure throughputs on an existing run's outputs (--project)")
    ap.add_argument("--project", type=Path, default=ROOT,
                    help="with --skip-pipeline: the checkout whose data/, models/, metrics/ are read")
    ap.add_argument("--no-featurize", action="store_true",
                    help="with --skip-pipeline: do not rerun the featurize command for its throughput")
    ap.add_argument("--noop-repeats", type=int, default=3, help="no-op dvc repro runs (median reported)")
    ap.add_argument("--workdir", type=Path, default=None, help="parent of the temporary repository")
    ap.add_argument("--keep", action="store_true", help="keep the temporary repository (and its stage logs)")
    ap.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                    help="set an environment variable for everything measured (this process before torch loads, "
                         "and every stage), e.g. --env OMP_WAIT_POLICY=PASSIVE; repeatable")
    ap.add_argument("--logit-batch", type=int, default=None,
                    help="what-if: score the 1 h stream with this torch_logit_fn batch instead of its default")
    ap.add_argument("--json", type=Path, default=None, help="also write every number here")
    args = ap.parse_args()
    for item in args.env:
        name, sep, value = item.partition("=")
        if not sep or not name:
            ap.error(f"--env {item!r}: expected NAME=VALUE")
        os.environ[name] = value
    if args.profile != "default" and not (ROOT / "profiles" / f"{args.profile}.yaml").exists():
        ap.error(f"no profiles/{args.profile}.yaml")
    res = run_suite(args.profile, args.skip_pipeline, args.project.resolve(), args.workdir, args.keep,
                    args.noop_repeats, not args.no_featurize, logit_batch=args.logit_batch)
    m = res.machine
    res.details["env"] = args.env
    load = ", ".join(f"{v:.1f}" for v in m["loadavg_at_start"]) if m["loadavg_at_start"] else "?"
    print(f"\nwakeword benchmark: {res.mode}, profile {res.profile}; {m['cpus']} CPUs ({m['processor']}), "
          f"torch {m['torch']} ({m['torch_threads']} threads), load average at start {load}"
          + (f"; env {' '.join(args.env)}" if args.env else ""))
    print(format_table(res.measures))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(res.to_dict(), indent=2) + "\n")
        print(f"\nwritten: {args.json}")


if __name__ == "__main__":
    main()
