"""A real single-node SLURM cluster for the tests marked ``slurm``, and the faults they inject.

The session fixture ``slurm_cluster`` starts one with scripts/slurm_local.sh in a temporary
folder (or uses one that script started, when ``SLURM_CONF`` names it), points ``SLURM_CONF``
at it for the session, and stops it at the end; when a test failed, it prints the tails of
slurmctld.log and slurmd.log and where they are kept. Without SLURM installed the tests fail,
saying what is missing.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "slurm_local.sh"
TOOLS = ("sbatch", "squeue", "scancel", "scontrol", "sinfo", "slurmctld", "slurmd", "munged")


def _alive(pid_file: Path) -> bool:
    try:
        os.kill(int(pid_file.read_text().strip()), 0)
    except (OSError, ValueError):
        return False
    return True


class Cluster:
    """One started by scripts/slurm_local.sh in ``folder`` (slurm.conf, pid files, logs)."""

    def __init__(self, folder: Path):
        self.dir = Path(folder)
        self.conf = self.dir / "slurm.conf"

    def logs(self, lines: int = 30) -> str:
        """The last lines of the controller's and the node daemon's logs."""
        parts = []
        for name in ("slurmctld.log", "slurmd.log"):
            path = self.dir / name
            text = path.read_text(errors="replace").splitlines()[-lines:] if path.is_file() else ["(none)"]
            parts.append(f"--- {path} ---\n" + "\n".join(text))
        return "\n".join(parts)

    def tasks(self, array: str) -> dict[str, str]:
        """``{"ARRAY_TASK": STATE}`` of one job array, finished tasks included."""
        out = subprocess.run(["squeue", "-h", "-r", "-t", "all", "-j", array, "-o", "%i|%T"],
                             capture_output=True, text=True).stdout
        return dict(line.split("|", 1) for line in out.split() if "|" in line)

    def pids(self, task: str) -> set[int]:
        """The processes of a running array task (``scontrol listpids``), or none."""
        job = subprocess.run(["squeue", "-h", "-j", task, "-o", "%A"], capture_output=True, text=True).stdout.strip()
        out = subprocess.run(["scontrol", "listpids", job], capture_output=True, text=True).stdout if job else ""
        return {int(line.split()[0]) for line in out.splitlines()[1:] if line.split()[:1] and line.split()[0].isdigit()}

    def wait(self, condition, what: str, timeout: float = 90.0):
        """Poll ``condition()`` until it is truthy; fail naming ``what`` (with the logs) after timeout."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            value = condition()
            if value:
                return value
            time.sleep(0.2)
        pytest.fail(f"waited {timeout:g} s for {what}\n{self.logs()}")

    def release(self, job: str) -> None:
        """Start a requeued job without SLURM's two-minute hold (its begin time), once its first
        start has left the node and 2 s more have passed: a start in the same second as the end
        of the first finds the job's credential revoked, and SLURM fails the job."""
        self.wait(lambda: self.tasks(job.split("_")[0]).get(job) == "PENDING" and not self.pids(job),
                  f"{job} requeued and gone from the node")
        time.sleep(2)
        subprocess.run(["scontrol", "update", f"JobId={job}", "StartTime=now"], check=True)

    def fail_node(self, down_s: float = 17.0) -> list[int]:
        """A node failure: kill -9 slurmd, the step daemons and every process of the jobs on the
        node, and start slurmd again ``down_s`` later. SLURM requeues a batch job that its node
        does not report when the node registers more than BatchStartTimeout + MessageTimeout
        (10 + 5 s here) after the job was last seen; a shorter outage waits for the next periodic
        registration, about 100 s later. Returns the job processes killed."""
        out = subprocess.run(["scontrol", "listpids"], capture_output=True, text=True, check=True).stdout
        jobs = [int(line.split()[0]) for line in out.splitlines()[1:] if line.split()]
        stepds = set()
        for pid in jobs:
            with open(f"/proc/{pid}/stat") as f:
                ppid = int(f.read().rpartition(")")[2].split()[1])
            if Path(f"/proc/{ppid}/comm").read_text().strip() == "slurmstepd":
                stepds.add(ppid)
        for pid in [int((self.dir / "slurmd.pid").read_text()), *stepds, *jobs]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(down_s)
        subprocess.run([which("slurmd")], check=True, env={**os.environ, "SLURM_CONF": str(self.conf)})
        return jobs


def which(tool: str) -> str | None:
    """``tool`` on PATH or in the system folders where Debian puts the daemons."""
    return shutil.which(tool, path=os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"]))


def missing_tools() -> list[str]:
    return [t for t in TOOLS if which(t) is None]


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory, request):
    """A running single-node SLURM cluster (partition ``debug``); ``SLURM_CONF`` points at it."""
    missing = missing_tools()
    if missing:
        pytest.fail(f"SLURM is not installed here (missing {', '.join(missing)}): "
                    "apt-get install -y slurm-wlm munge, as .ci/run does", pytrace=False)
    given = os.environ.get("SLURM_CONF")
    ours = not (given and _alive(Path(given).parent / "slurmctld.pid") and _alive(Path(given).parent / "slurmd.pid"))
    cluster = Cluster(tmp_path_factory.mktemp("slurm") if ours else Path(given).parent)
    old = os.environ.get("SLURM_CONF")
    if ours:
        res = subprocess.run([str(SCRIPT), "start", str(cluster.dir)], capture_output=True, text=True)
        if res.returncode != 0:
            pytest.fail(f"scripts/slurm_local.sh start failed: {res.stderr.strip()}\n{cluster.logs()}", pytrace=False)
    os.environ["SLURM_CONF"] = str(cluster.conf)
    yield cluster
    if request.session.testsfailed:
        reporter = request.config.pluginmanager.get_plugin("terminalreporter")
        reporter.write_line(f"\nSLURM logs, kept in {cluster.dir}:\n{cluster.logs()}")
    if ours:
        subprocess.run([str(SCRIPT), "stop", str(cluster.dir)], capture_output=True, text=True)
    if old is None:
        os.environ.pop("SLURM_CONF", None)
    else:
        os.environ["SLURM_CONF"] = old
