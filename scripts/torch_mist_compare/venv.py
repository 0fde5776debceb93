"""torch-mist's virtual environment: created and filled on first use, reused afterwards.

It gets ``torch-mist==0.2.17 'numpy<2' 'pandas<3'`` and the torch and torchvision versions of the
Python that runs the script, so both libraries run on the same torch.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

TORCH_MIST_VERSION = "0.2.17"
DEFAULT_VENV = Path("~/.cache/mibench-bench") / f"torch-mist-{TORCH_MIST_VERSION}"


def venv_python(venv: Path) -> Path:
    return venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def ensure_torch_mist_env(venv: Path, pip_args: list[str]) -> Path:
    """torch-mist's environment: created and filled on first use, reused afterwards."""
    import torch
    import torchvision

    def public(v: str) -> str:          # "2.14.1+cu130" -> "2.14.1"
        return v.split("+")[0]

    py = venv_python(venv)
    probe = "import importlib.metadata as m, torch_mist, torch; print(m.version('torch-mist'), torch.__version__)"
    if py.exists():
        out = subprocess.run([str(py), "-c", probe], capture_output=True, text=True)
        if out.returncode == 0 and out.stdout.split()[0] == TORCH_MIST_VERSION:
            if public(out.stdout.split()[1]) != public(torch.__version__):
                print(f"note: torch-mist's environment has torch {out.stdout.split()[1]}, "
                      f"mibench's has {torch.__version__}")
            return py
    print(f"creating torch-mist's environment in {venv} (once) ...", flush=True)
    venv.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    reqs = [f"torch-mist=={TORCH_MIST_VERSION}", "numpy<2", "pandas<3",
            f"torch=={public(torch.__version__)}", f"torchvision=={public(torchvision.__version__)}"]
    print("pip install " + " ".join(shlex.quote(r) for r in reqs + pip_args), flush=True)
    subprocess.run([str(py), "-m", "pip", "install", "--disable-pip-version-check", *reqs, *pip_args], check=True)
    out = subprocess.run([str(py), "-c", probe], capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"torch-mist's environment in {venv} does not import torch_mist:\n{out.stderr}")
    return py

