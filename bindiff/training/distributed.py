"""Data-parallel training with torch.distributed: which process am I, and what do we share.

A run started by ``torchrun --nproc_per_node=N -m bindiff train RECIPE`` (or ``bindiff train
RECIPE --nproc N``, which calls torchrun) has N processes that each load the same split. They
draw the same batch order, and each process computes its own block of every batch of users.
Gradients are summed across processes by DistributedDataParallel, validation users are split
across processes and their per-user metrics gathered before the mean is taken, and only rank
0 writes to the run directory. The backend is gloo on CPU and NCCL on CUDA.

Exactness: the loss of each process is its rows' summed loss divided by the whole batch's
size (times N, because DDP averages gradients), so the summed gradient is the one-process
gradient of the batch mean. The diffusion noise and the dropout masks are drawn for the whole
batch on every process (see ``ShardableDropout``), so N processes reproduce a one-process run
up to the order of floating-point sums.
"""

from __future__ import annotations

import os
import signal
import subprocess
import shutil
import sys
import tempfile
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from ..config import RecipeError
from .devices import physical_memory_bytes, resolve_device


@dataclass(frozen=True)
class Workers:
    """This process's place among the processes training one run (1 process: rank 0 of 1)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def parallel(self) -> bool:
        return self.world > 1

    def block(self, n: int, rank: int | None = None) -> tuple[int, int]:
        """Rows lo:hi of n that a rank computes: contiguous blocks differing by at most one row."""
        r = self.rank if rank is None else rank
        return n * r // self.world, n * (r + 1) // self.world

    # -- collective operations; each is the identity in a single process ----------------------
    def broadcast(self, value: Any) -> Any:
        """Rank 0's value on every rank (a picklable object from our own code, never user input)."""
        if not self.parallel:
            return value
        box = [value if self.is_main else None]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def gather(self, value: Any) -> list[Any]:
        """Every rank's value, in rank order."""
        if not self.parallel:
            return [value]
        out: list[Any] = [None] * self.world
        dist.all_gather_object(out, value)
        return out

    def sum(self, value: float) -> float:
        if not self.parallel:
            return value
        tensor = torch.tensor([value], dtype=torch.float64)
        if dist.get_backend() == "nccl":
            tensor = tensor.cuda()
        dist.all_reduce(tensor)
        return float(tensor.item())

    def barrier(self) -> None:
        if self.parallel:
            dist.barrier()


SINGLE = Workers()


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


# The file in which rank 0 names the run its workers train, for the launcher of ``--nproc``: the
# workers die on torchrun's SIGTERM without a word (see cli._install_stop_handlers), so the line
# that names a stopped run's resume is the launcher's to print
_RUN_NOTE = "BINDIFF_LAUNCHER_RUN_NOTE"


def launcher_names_the_resume() -> bool:
    """Whether this is a worker of ``bindiff train/resume --nproc N``, whose launcher prints the line
    naming a stopped run's resume (with ``--nproc N``); a worker's own would be a second line."""
    return bool(os.environ.get(_RUN_NOTE))


def tell_launcher(run_dir) -> None:
    """Under ``bindiff train/resume --nproc N``: let the launcher know which run this is."""
    note = os.environ.get(_RUN_NOTE)
    if note and is_main_process():
        with open(note, "w", encoding="utf-8") as file:
            file.write(str(run_dir))


def launch(nproc: int, bindiff_args: list[str]) -> int:
    """Run ``bindiff <args>`` on ``nproc`` local processes with torchrun; returns its exit code.

    No worker outlives this process: SIGTERM, SIGINT and SIGHUP sent to it are passed on to
    torchrun (which stops its workers), and on Linux torchrun also gets SIGTERM from the kernel
    the moment this process dies, even by SIGKILL. Under ``nohup`` (SIGHUP ignored) a hang-up
    reaches neither, as it would not reach a one-process run.
    """
    # torchrun itself, without the traceback it adds to a worker's own error (see .torchrun)
    command = [sys.executable, "-m", "bindiff.training.torchrun", "--standalone", f"--nproc_per_node={nproc}",
               "-m", "bindiff", *bindiff_args]
    # torchrun sets 1 thread per worker, with a four-line warning, where this is unset; the cores
    # shared out is what a null train.threads means on several processes
    env = {**os.environ}
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    env.setdefault("OMP_NUM_THREADS", str(max(1, cores // nproc)))  # the cores this process may use
    # nohup ignores SIGHUP: keep it so. torchrun stops its workers on a SIGHUP whatever it inherited,
    # so it is then started in a session of its own, out of reach of the hang-up of this one
    hangup = getattr(signal, "SIGHUP", None)  # Windows has none
    hangup_ignored = hangup is not None and signal.getsignal(hangup) is signal.SIG_IGN
    # torchrun keeps a log folder per run (torchelastic_*, in $TMPDIR by default) and never removes it
    logs = tempfile.mkdtemp(prefix="bindiff-torchrun-")
    command[3:3] = ["--log-dir", logs]
    run_note = os.path.join(logs, "run")  # removed with the logs
    env[_RUN_NOTE] = run_note
    try:  # preexec_fn is POSIX-only (Windows refuses it), and only Linux has what it asks for
        child = subprocess.Popen(command, env=env, start_new_session=hangup_ignored,
                                 preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None)
    except BaseException:
        shutil.rmtree(logs, ignore_errors=True)
        raise
    forwarded = (signal.SIGTERM, signal.SIGINT) + (() if hangup is None or hangup_ignored else (hangup,))
    received: list[int] = []

    def forward(number, frame):
        received.append(number)
        if sys.platform == "win32":  # Popen.send_signal takes no SIGINT there
            child.terminate()
        else:
            child.send_signal(number)

    previous = {sig: signal.signal(sig, forward) for sig in forwarded}
    try:
        while True:
            try:
                code = child.wait()
                if received:  # stopped by a signal: the shell's code for it (130 for ^C), as one process ends
                    _name_the_resume(run_note, nproc)
                    return 128 + received[0]
                return code
            except InterruptedError:  # pragma: no cover - wait is restarted after a handled signal
                continue
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if child.poll() is None:  # this process is leaving for another reason: take torchrun along
            child.terminate()
            try:
                child.wait(timeout=10)
            except subprocess.TimeoutExpired:
                child.kill()
        shutil.rmtree(logs, ignore_errors=True)


def _name_the_resume(run_note: str, nproc: int) -> None:
    """The line a one-process run prints when stopped, for the run the workers were training."""
    try:
        with open(run_note, encoding="utf-8") as file:
            run_dir = file.read()
    except OSError:  # stopped before a run folder was made: there is nothing to resume
        return
    if os.path.isfile(os.path.join(run_dir, "config.yaml")) and not os.path.exists(os.path.join(run_dir, "metrics.json")):
        print(f"stopped: `bindiff resume {run_dir} --nproc {nproc}` continues this run", file=sys.stderr, flush=True)


def _die_with_parent() -> None:
    """In the child, before exec: ask Linux for SIGTERM when the parent dies (PR_SET_PDEATHSIG)."""
    if sys.platform.startswith("linux"):
        import ctypes

        try:
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG
        except OSError:  # pragma: no cover - no libc by that name: forwarding still covers SIGTERM
            pass


# What one process of bindiff holds once torch and bindiff are imported (measured: 0.25-0.3 GB on Linux)
_PROCESS_BYTES = 2 ** 28


def check_devices(device_name: str, nproc: int) -> torch.device:
    """The device ``device_name`` resolves to; RecipeError unless ``nproc`` processes of this machine can
    each take one: on CUDA one GPU each. Checked before torchrun starts (one line, not one traceback
    per worker) and in each worker."""
    device = resolve_device(device_name)  # cuda where there is none: one line
    if device.type == "cuda" and nproc > torch.cuda.device_count():
        raise RecipeError(f"train.device: {nproc} processes take one GPU each, but this machine has "
                          f"{torch.cuda.device_count()}: lower --nproc, or train on the CPU (train.device=cpu)")
    # Each process imports torch and bindiff before it reads anything (a quarter of a GB): --nproc 10**20 was
    # handed to torchrun, whose memory grew until the system killed it (exit code 247, not a word)
    memory = physical_memory_bytes()
    if memory is not None and nproc * _PROCESS_BYTES > memory:
        raise RecipeError(f"--nproc {nproc}: {nproc} processes take at least {nproc * _PROCESS_BYTES / 2**30:.3g} GB "
                          f"before reading any data, but this machine has {memory / 2**30:.3g} GB: lower --nproc")
    return device


def start(device_name: str) -> tuple[Workers, str]:
    """Join the process group torchrun describes in the environment; one process: SINGLE.

    Returns the workers and the device to use: on CUDA each process takes the GPU of its
    local rank.
    """
    if not launched_by_torchrun():
        return SINGLE, device_name
    # before NCCL is chosen and a GPU set: `cuda` on a machine without one is a recipe error, not
    # "NCCL is not built in" from every worker
    local_processes = int(os.environ.get("LOCAL_WORLD_SIZE", os.environ.get("WORLD_SIZE", "1")))
    use_cuda = check_devices(device_name, local_processes).type == "cuda"
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    workers = Workers(rank=dist.get_rank(), world=dist.get_world_size(),
                      local_rank=int(os.environ.get("LOCAL_RANK", "0")))
    if use_cuda:
        torch.cuda.set_device(workers.local_rank)
        return workers, f"cuda:{workers.local_rank}"
    return workers, "cpu"


def stop(workers: Workers, failed: bool = False) -> None:
    """Leave the process group. After success all ranks leave together: a gloo rank that tears
    down its connections while another still writes the run directory can abort the other's
    teardown. After a failure nobody waits, so torchrun sees the failed rank exit and stops
    the rest."""
    if workers.parallel and dist.is_initialized():
        if not failed:
            dist.barrier()
        dist.destroy_process_group()
