"""The ``mibench`` command: thin argparse over the library (list, run, status, report, figures)."""

from __future__ import annotations

import argparse
import json
import logging
import sys

from .executors import EXECUTORS
from .interface import PRECISIONS, ConfigError

#: ``mibench.stats.FAIL_FILTERS``, named here so that parsing arguments imports no pandas.
FAIL_FILTERS = ("none", "bmi")


def _first_line(obj) -> str:
    return ((obj.__doc__ or "").strip().splitlines() or [""])[0]


def _aligned(rows: list[tuple[str, ...]]) -> str:
    """Rows as indented columns, each as wide as its longest entry (the last one unpadded)."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)] if rows else []
    return "\n".join("  " + " ".join([*(c.ljust(w) for c, w in zip(r, widths)), r[-1]]).rstrip() for r in rows)


def cmd_list(args: argparse.Namespace) -> int:
    from .bounds import BOUNDS
    from .distributions import TASK_FAMILIES
    from .nets import CRITICS, ENCODERS
    from .libraries import LIBRARIES
    from .presets import list_presets
    from .sample import SAMPLE_ESTIMATORS

    from .interface import FiniteTrainingSet, HasChosenMI, HasEntropyY

    families = []
    for name, fam in TASK_FAMILIES.items():
        can = [what for proto, what in ((HasChosenMI, "any MI (staircase)"), (FiniteTrainingSet, "epochs"),
                                        (HasEntropyY, "H(y)")) if issubclass(fam.cls, proto)]
        families += [(name, fam.truth), ("", fam.summary + (f"; supports {', '.join(can)}" if can else ""))]
    print("Task families (truth in nats):\n" + _aligned(families))
    print("\nPresets (mibench run --task NAME):\n"
          + _aligned([(preset.name, preset.describe()) for preset in list_presets()]))
    bounds = []
    for name, cls in BOUNDS.items():
        options = ", ".join(f"{k} = {o.default:g}" for k, o in cls.options.items())
        bounds.append((name, cls.kind, _first_line(cls) + (f" [{options}]" if options else "")))
    print("\nBounds (options with their defaults):\n" + _aligned(bounds))
    print("\nCritics (discriminative bounds; generative bounds learn a conditional Gaussian q(y|x)):\n"
          + _aligned([(name, _first_line(cls)) for name, cls in CRITICS.items()]))
    print("\nEncoders:\n" + _aligned([(name, _first_line(fn)) for name, fn in ENCODERS.items()]))
    estimators = []
    for name, cls in SAMPLE_ESTIMATORS.items():
        options = ", ".join(f"{k} = {o.default!r}" for k, o in cls.options.items() if k not in ("command", "label"))
        estimators.append((name, _first_line(cls) + (f" [{options}]" if options else "")))
    print("\nSample estimators (a grid's `estimators`; options with their defaults):\n" + _aligned(estimators))
    print("\nLibraries (an estimator's `library`): mibench (default), " + ", ".join(LIBRARIES))
    return 0


def _csv(cast):
    def parse(text: str) -> list:
        try:
            return [cast(v) for v in text.split(",") if v.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a comma-separated list, got {text!r}") from None
    return parse


def _negatives(v: str):
    from .nets import SHUFFLED

    return v.strip() if v.strip() in ("all", SHUFFLED) else int(v)


def _positive_int(v: str) -> int:
    if not v.isdigit() or int(v) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {v!r}")
    return int(v)


def cmd_run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .executors import sweep
    from .layout import LOCK_FILE, PENDING_DIR, RUNS_FILE
    from .results import default_out_dir, pending_records
    from .tables import run_table

    overrides = {"bounds": args.bounds, "critics": args.critics, "negatives": args.negatives,
                 "batch_sizes": args.batch_sizes, "devices": args.devices, "seeds": args.seeds,
                 "grids": args.grids,
                 "steps": args.steps, "epochs": args.epochs, "batch_seeds": args.batch_seeds or None,
                 "precision": args.precision}
    executor = {"workers": args.workers, "wait": False if args.no_wait else None, "partition": args.partition,
                "time_min": args.time_min, "gpus": args.gpus, "mem_gb": args.mem_gb, "cpus": args.cpus,
                "job_minutes": args.job_minutes, "dry_run": args.dry_run or None}
    df = sweep(args.task, quick=args.quick, out=args.out, force=args.force, data_dir=args.data_dir,
               threads=args.threads, progress=not args.no_progress, overrides=overrides,
               executor=args.executor, executor_options={k: v for k, v in executor.items() if v is not None})
    if args.no_wait or args.dry_run:
        return 0
    if len(df) == 0:
        print("no runs: the preset's grids are empty")
        return 1
    print(run_table(df))
    out = Path(args.out or default_out_dir(df["task"].iloc[0]))
    unmerged = len(pending_records(out))
    where = (f"{out / RUNS_FILE}" if not unmerged else
             f"{out} ({unmerged} records in {out / PENDING_DIR} not merged into {RUNS_FILE} yet, as "
             f"{out / LOCK_FILE} is held; readers see them, the next merge moves them)")
    print(f"{len(df)} runs in {where} (MI in nats; estimate = mean over seeds of the held-out estimate, "
          "within-run sd = its spread over held-out batches; `mibench report` for the full tables)")
    return 0 if (df["status"] != "error").all() else 1


def cmd_status(args: argparse.Namespace) -> int:
    from .executors import status

    print(status(args.dir))
    return 0


def _quiet_font_subsetting() -> None:
    """matplotlib's PDF font subsetting logs every glyph at INFO; keep -v readable."""
    logging.getLogger("fontTools").setLevel(logging.WARNING)


def _dropped_line(summary) -> str:
    """What the fail filter dropped, in one line: how many runs in all, then per cell."""
    dropped = summary[summary["n_dropped"] > 0]
    cells = [f"{bound} on {task}: {n}" for bound, task, n in
             zip(dropped["bound"], dropped["task_params"].map(_task_text), dropped["n_dropped"])]
    return (f"fail filter bmi: {int(summary['n_dropped'].sum())} run(s) dropped (a neural estimate below 0 or below "
            f"0.1 x the best of its cell)" + (f" in {len(cells)} cell(s): {'; '.join(cells)}" if cells else ""))


def _task_text(params: str) -> str:
    """A summary row's task as the report line names it: BMI's task id, else its parameters."""
    try:
        p = json.loads(params)
    except (TypeError, ValueError):
        return str(params)
    return str(p["name"]) if isinstance(p, dict) and "name" in p else str(params)


def cmd_report(args: argparse.Namespace) -> int:
    from .report import make_report

    _quiet_font_subsetting()
    dirs = args.dir[0] if len(args.dir) == 1 else args.dir
    result = make_report(dirs, args.out, units=args.units, fail_filter=args.fail_filter)
    print(result["markdown"])
    if result["ranking"] is not None:
        print(result["ranking"].to_markdown())
    if args.fail_filter != "none":
        print(_dropped_line(result["summary"]))
    out = args.out or args.dir[0]
    pooled = f" (the runs of {len(args.dir)} folders pooled)" if len(args.dir) > 1 else ""
    print(f"{len(result['tables'])} table files and {len(result['figures'])} figure files in {out}{pooled} "
          f"(MI, bias and sd in {args.units}); all of them on one page: {result['page']}")
    return 0


def cmd_figures(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .report import make_report, stale_outputs
    from .layout import PENDING_DIR, RUNS_FILE

    _quiet_font_subsetting()
    ref = Path(args.reference)
    folders = sorted(p for p in ref.iterdir() if (p / RUNS_FILE).is_file() or (p / PENDING_DIR).is_dir()) \
        if ref.is_dir() else []
    if not folders:
        raise ConfigError(f"{ref}: no results folders (subfolders with {RUNS_FILE} or {PENDING_DIR}/) to report on")
    out = Path(args.out) if args.out else ref
    for folder in folders:
        result = make_report(folder, out / folder.name, units=args.units)
        print(f"{folder.name}: {len(result['summary'])} summary rows, {len(result['tables'])} table files, "
              f"{len(result['figures'])} figure files in {out / folder.name}")
        stale = stale_outputs(out / folder.name, result)
        if stale:
            print(f"  not made from these results, left in place (delete them if they are out of date): "
                  f"{', '.join(str(p.relative_to(out / folder.name)) for p in stale)}")
    return 0


class _Parser(argparse.ArgumentParser):
    """Bad arguments get one line (what was wrong and what is allowed) and exit status 2,
    without argparse's usage block; ``-h`` still prints the full usage."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} -h)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="mibench")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="task families, presets, bounds, critics, encoders").set_defaults(func=cmd_list)

    run = sub.add_parser("run", help="run a preset's sweep (skips runs already recorded in --out)")
    run.add_argument("--task", default="gaussian", help="preset name in tasks/ or a .toml path (default: gaussian)")
    run.add_argument("--quick", action="store_true", help="the preset's small [[quick]] grid")
    run.add_argument("--bounds", type=_csv(str), help="comma-separated, e.g. smile,infonce")
    run.add_argument("--critics", type=_csv(str), help="comma-separated: separable,joint,bilinear")
    run.add_argument("--negatives", type=_csv(_negatives), help="comma-separated K per positive, all, or shuffled (one negative from an "
                     "independent draw, as BMI's MINE)")
    run.add_argument("--batch-sizes", type=_csv(int), help="comma-separated")
    run.add_argument("--devices", type=_csv(str), help="comma-separated: cpu,cuda (absent ones are skipped)")
    run.add_argument("--seeds", type=_csv(int), help="comma-separated")
    run.add_argument("--grids", type=_csv(str), help="only these grids of the preset, e.g. joint,cubic_joint")
    budget = run.add_mutually_exclusive_group()
    budget.add_argument("--steps", type=_positive_int, help="training steps per run")
    budget.add_argument("--epochs", type=float, help="training epochs per run (data-set tasks)")
    run.add_argument("--out", help="results folder (default: results/PRESET)")
    run.add_argument("--data-dir", help="data root (torchvision layout); else $MIBENCH_DATA_DIR, the user cache, download")
    run.add_argument("--threads", type=_positive_int, help="torch CPU threads (default: 1 on <= 2 cores)")
    run.add_argument("--batch-seeds", action="store_true",
                     help="train the seeds of each cell together as one batched model (vmap)")
    run.add_argument("--precision", choices=PRECISIONS,
                     help="training forward pass: fp32 (default) or bf16 autocast (pays on GPUs)")
    run.add_argument("--force", action="store_true", help="redo runs already recorded")
    ex = run.add_argument_group("executors (docs/running.md: Running on a cluster)")
    ex.add_argument("--executor", default="inline", choices=EXECUTORS,
                    help="inline (this process), local (worker processes), slurm (submitit job arrays); "
                         "submitit-local / submitit-debug run those jobs here")
    ex.add_argument("--workers", type=_positive_int, help="local: worker processes (default: the cores available)")
    ex.add_argument("--no-wait", action="store_true", help="start or submit the work and return; "
                    "`mibench status DIR` follows it")
    ex.add_argument("--partition", help="SLURM partition (else the preset's [slurm] table, else the cluster's default)")
    ex.add_argument("--time-min", type=_positive_int, help="SLURM time limit of one job, minutes (default 60)")
    ex.add_argument("--gpus", type=int, help="SLURM GPUs per job (default 0)")
    ex.add_argument("--mem-gb", type=float, help="SLURM memory per job, GB")
    ex.add_argument("--cpus", type=_positive_int, help="SLURM CPUs per job = torch threads (default 1)")
    ex.add_argument("--dry-run", action="store_true", help="show the plan (and, for slurm, the sbatch script); "
                    "train nothing")
    ex.add_argument("--job-minutes", type=float, help="SLURM: pack short runs into jobs of about this long (default 20)")
    run.add_argument("--no-progress", action="store_true", help="no progress bars")
    run.set_defaults(func=cmd_run)

    status = sub.add_parser("status", help="planned, done, failed and running runs of a results folder")
    status.add_argument("dir", help="a results folder")
    status.set_defaults(func=cmd_status)

    report = sub.add_parser(
        "report", help="bias/variance/MSE tables and figures of a results folder, or of several pooled",
        description="Tables and figures of a results folder. Given several folders (a new estimator's and a "
                    "reference leaderboard's), their runs are pooled into one report in --out, but only when, on "
                    "every task they share (preset and task parameters), the runs of each kind were made the same "
                    "way: sample estimators with the same sample sizes and seeds; neural ones with the same seeds, "
                    "training and held-out samples, steps, batch size, learning rate and training protocol "
                    "(eval_every, patience, report, standardize, batches); otherwise it stops, naming what differs.")
    report.add_argument("dir", nargs="+", help="one results folder (holding runs.jsonl), or several to pool")
    report.add_argument("--out", help="where to write summary.{csv,md,tex} and figures/ (default: DIR; "
                        "required with several folders, and outside all of them)")
    report.add_argument("--units", choices=("nats", "bits"), default="nats",
                        help="MI units of the tables and figures (rows stay in nats; default nats)")
    report.add_argument("--fail-filter", choices=FAIL_FILTERS, default="none",
                        help="bmi: leave out BMI's neural fails (an estimate below 0 or below 0.1 x the best seed of "
                             "its cell), counted per cell (default none)")
    report.set_defaults(func=cmd_report)

    figures = sub.add_parser("figures", help="regenerate the tables and figures of every reference results folder")
    figures.add_argument("--reference", default="results/reference",
                         help="folder whose subfolders hold results (default: results/reference)")
    figures.add_argument("--out", help="output root, one subfolder per results folder (default: --reference)")
    figures.add_argument("--units", choices=("nats", "bits"), default="nats",
                         help="MI units of the tables and figures (default nats)")
    figures.set_defaults(func=cmd_figures)
    parser.description = ("Benchmark mutual-information estimators on tasks whose MI is known. Commands: "
                          f"{', '.join(sub.choices)} (mibench COMMAND -h for each).")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return args.func(args)
    except ConfigError as exc:
        print(f"mibench: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:     # Ctrl-C, or SIGTERM / SIGINT while a sweep runs (executors.Stopped)
        print(f"mibench: {str(exc) or 'interrupted'}; finished runs are saved", file=sys.stderr)
        return 128 + getattr(exc, "signum", 2)
    except BrokenPipeError:              # `mibench list | head`: the reader has gone
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
