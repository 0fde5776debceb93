"""The pieces of ``scripts/bmi_speed.py`` (its docstring says what is measured and how).

    worker        the worker processes: the loop a worker runs and the driver's handle on one
    mibench_side  the samples, mibench's training and torch's matmul peak (mibench's Python)
    bmi_side      BMI's estimators timed step by step and JAX's matmul peak (BMI's environment)
    report        FLOPs per step, the rows, the Markdown table and the JSON file
    driver        BMI's cell from tasks/bmi_v2.toml, the alternating measurement, the report

Only ``driver`` and ``mibench_side`` import mibench. The workers start from the entry script
(``worker.ENTRY``), which puts the scripts folder on ``sys.path``, so BMI's worker finds
``bmi_side`` (and scripts/bmi_estimator.py's table of BMI's estimators) by its path in this
checkout.
"""
