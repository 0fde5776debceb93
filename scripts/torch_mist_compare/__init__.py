"""The pieces of ``scripts/compare_torch_mist.py`` (its docstring says what is measured and how).

    shared          problem sizes, the Gaussian configurations, timing helpers: what both sides use
    worker          the worker processes: the loop a worker runs and the driver's handle on one
    mibench_side    the mibench series (runs in the Python that runs the script)
    torch_mist_side the torch-mist series (runs in torch-mist's environment, without mibench)
    venv            builds and reuses torch-mist's virtual environment
    driver          the plan, sizing each series and the alternating measurement
    report          ratios, the summary table and the JSON file

Only ``driver`` and ``mibench_side`` import mibench. The workers start from the entry script
(``worker.ENTRY``), which puts this package's folder on ``sys.path``, so a worker in
torch-mist's environment finds ``torch_mist_side`` by its path in this checkout.
"""
