"""BMI's own virtual environment: the one place that says where it lives and builds it.

BMI (``benchmark-mi`` 0.1.3) pins old numpy, pandas, pydantic and jax, so it cannot share
mibench's environment. Its environment (default ~/.cache/mibench-bench/benchmark-mi-0.1.3) holds
``benchmark-mi==0.1.3`` and jax 0.4.33 (its tensorflow-probability needs a jax from before
0.4.34). A build ends by importing ``bmi.estimators`` there and writing the pins to
``READY_FILE``; an environment without that file (a build cut short, or one built with other
pins) counts as missing, and building it again installs the pins into it.

The scripts beside this one import it with their own folder on ``sys.path`` (scripts/ is not a
package). It uses the standard library only, so that a script can find BMI's Python before it
imports anything else.
"""

from __future__ import annotations

import subprocess
import sys
import venv
from pathlib import Path

BMI_PINS = ["benchmark-mi==0.1.3", "jax==0.4.33", "jaxlib==0.4.33"]
DEFAULT_VENV = Path("~/.cache/mibench-bench/benchmark-mi-0.1.3")
READY_FILE = "mibench-bmi-pins.txt"


class BMIEnvMissing(FileNotFoundError):
    """BMI's environment is not there (or not finished) and was not to be built."""


def _python_of(path: Path) -> Path:
    return path / ("Scripts/python.exe" if sys.platform == "win32" else "bin/python")


def is_ready(path: Path) -> bool:
    """Whether the environment at ``path`` was built with the current pins."""
    path = path.expanduser()
    ready = path / READY_FILE
    return (_python_of(path).exists() and ready.exists()
            and ready.read_text().split() == BMI_PINS)


def build(path: Path) -> Path:
    """Create (or finish) the environment at ``path`` with ``BMI_PINS``; its Python."""
    path = path.expanduser()
    python = _python_of(path)
    print(f"building BMI's environment in {path} (a few minutes, once)", file=sys.stderr)
    if not python.exists():
        venv.create(path, with_pip=True)
    (path / READY_FILE).unlink(missing_ok=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", *BMI_PINS], check=True)
    subprocess.run([str(python), "-c", "import bmi.estimators, bmi.benchmark"], check=True)
    (path / READY_FILE).write_text("\n".join(BMI_PINS) + "\n")
    return python


def bmi_python(path: Path, *, create: bool = True) -> Path:
    """The Python of BMI's environment at ``path``. A missing or unfinished environment is
    built when ``create`` is true; otherwise ``BMIEnvMissing`` is raised."""
    path = path.expanduser()
    if is_ready(path):
        return _python_of(path)
    if not create:
        raise BMIEnvMissing(f"no finished BMI environment in {path}")
    return build(path)
