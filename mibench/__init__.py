"""mibench: benchmark mutual-information estimators on tasks whose true MI is known.

    >>> import mibench
    >>> df = mibench.run("gaussian", quick=True)      # a pandas DataFrame, one row per run
    >>> df = mibench.load_results("results/gaussian")
"""

__version__ = "0.1.0"


def run(task: str = "gaussian", **kwargs):
    """Run a preset sweep; see ``mibench.executors.sweep`` for the arguments. Returns a DataFrame."""
    from .executors import sweep

    return sweep(task, **kwargs)


def load_results(out_dir):
    """The runs recorded in ``out_dir/runs.jsonl`` as a pandas DataFrame."""
    from .results import load_results as _load

    return _load(out_dir)
