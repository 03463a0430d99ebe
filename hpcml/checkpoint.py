"""Checkpoints shared by every iterative job, and the stop signals of batch systems.

A checkpoint is a directory ``ckpt-00000042`` holding one HDF5 file per
rank (its sharded state, and on rank 0 the replicated state) plus a
``manifest.json`` written last.  It is built under a temporary name, every
file is fsynced, and the directory is renamed only when complete, so
``--resume`` never picks up half a checkpoint.

SLURM sends SIGTERM (or the signal of ``--signal``, typically SIGUSR1)
before a time limit or a preemption.  The handler only sets a flag; the job
checks it at a safe point with :meth:`Checkpointer.stop_requested` — a MAX
reduction, so all ranks stop at the same iteration — saves, and exits with
:data:`EXIT_CHECKPOINTED`.
"""

import json
import os
import shutil
import signal

import h5py
import numpy as np

from hpcml.errors import HpcmlError, InputError
from hpcml.io.hdf5 import _fsync_dir, _jsonable

#: Exit status of a job that stopped on a signal after saving a checkpoint
#: (``EX_TEMPFAIL``: run again to continue).
EXIT_CHECKPOINTED = 75

_signal_seen = []


class Checkpointed(HpcmlError):
    """Raised on every rank after a signal-triggered checkpoint; exit code 75."""

    exit_code = EXIT_CHECKPOINTED
    prefix = "hpcml: "

    def __init__(self, iteration, directory):
        super().__init__(f"stopped by signal; checkpoint of iteration {iteration} "
                         f"saved in {directory}", collective=True)
        self.iteration = iteration


def _on_signal(signum, _frame):
    _signal_seen.append(signum)


def install_signal_handlers(signals=(signal.SIGTERM, signal.SIGUSR1)):
    """Turn the batch system's stop signals into a flag checked at safe points."""
    for signum in signals:
        signal.signal(signum, _on_signal)


class Checkpoint:
    """A loaded checkpoint: ``iteration``, ``replicated`` and ``sharded`` arrays, ``meta``."""

    def __init__(self, iteration, replicated, sharded, meta, rank_meta):
        self.iteration = iteration
        self.replicated = replicated
        self.sharded = sharded
        self.meta = meta
        self.rank_meta = rank_meta


class Checkpointer:
    """Write and find checkpoints of an iterative job (collective methods).

    Parameters
    ----------
    directory : str or None
        Where checkpoints live.  ``None`` disables saving (signals then stop
        the job without a checkpoint).
    comm : hpcml.comm.Comm
    every : int
        Save every ``every`` iterations (0: only on a signal).
    keep : int
        How many complete checkpoints to keep.
    resume : bool
        Whether the job should continue from :meth:`latest` (``--resume``).
    """

    def __init__(self, directory, comm, every=0, keep=2, resume=False):
        if every < 0 or keep < 1:
            raise InputError(f"checkpoint every={every} keep={keep}: need every >= 0 and keep >= 1")
        self.directory = directory
        self.comm = comm
        self.every = every
        self.keep = keep
        self.resume = resume

    @classmethod
    def from_args(cls, args, comm):
        """Build from the ``--checkpoint-dir``/``--checkpoint-every``/``--resume`` options."""
        return cls(args.checkpoint_dir, comm, every=args.checkpoint_every, resume=args.resume)

    def due(self, iteration):
        """True when ``iteration`` is a multiple of ``every``."""
        return bool(self.directory) and self.every > 0 and iteration % self.every == 0

    def stop_requested(self):
        """True on every rank if a stop signal reached any rank (collective)."""
        return bool(self.comm.allreduce_scalar(int(bool(_signal_seen)), "max"))

    def save(self, iteration, replicated=None, sharded=None, meta=None, rank_meta=None):
        """Save a complete checkpoint atomically (collective).

        Parameters
        ----------
        iteration : int
            The number of finished iterations; resuming starts after it.
        replicated : dict of str to numpy.ndarray
            State equal on every rank, saved from rank 0.
        sharded : dict of str to numpy.ndarray
            This rank's part of the distributed state.
        meta : dict
            Small JSON-able state equal on every rank (saved from rank 0).
        rank_meta : dict
            Small JSON-able state of this rank (e.g. its RNG state).
        """
        if not self.directory:
            return None
        comm = self.comm
        final = os.path.join(self.directory, f"ckpt-{iteration:08d}")
        tmp = os.path.join(self.directory, f".ckpt-{iteration:08d}.tmp")
        with comm.io():
            with comm.guard():
                if comm.rank == 0:
                    try:
                        os.makedirs(self.directory, exist_ok=True)
                        shutil.rmtree(tmp, ignore_errors=True)
                        os.makedirs(tmp)
                    except OSError as exc:
                        raise InputError(f"cannot write checkpoint in {self.directory}: {exc}") from None
            with comm.guard():
                name = os.path.join(tmp, f"rank-{comm.rank:05d}.h5")
                try:
                    with h5py.File(name, "w") as handle:
                        handle.attrs["rank_meta"] = json.dumps(_jsonable(rank_meta or {}))
                        for key, value in (sharded or {}).items():
                            handle.create_dataset(f"sharded/{key}", data=np.asarray(value))
                        if comm.rank == 0:
                            for key, value in (replicated or {}).items():
                                handle.create_dataset(f"replicated/{key}", data=np.asarray(value))
                    with open(name, "rb+") as raw:
                        os.fsync(raw.fileno())
                except OSError as exc:
                    raise InputError(f"cannot write checkpoint {name}: {exc}") from None
            if comm.rank == 0:
                manifest = {"iteration": iteration, "ranks": comm.size, "meta": _jsonable(meta or {})}
                with open(os.path.join(tmp, "manifest.json"), "w") as handle:
                    json.dump(manifest, handle)
                    handle.flush()
                    os.fsync(handle.fileno())
                shutil.rmtree(final, ignore_errors=True)
                os.replace(tmp, final)
                _fsync_dir(final)
                self._prune()
            comm.barrier()
        return final

    def _complete(self):
        if not self.directory or not os.path.isdir(self.directory):
            return []
        names = sorted(n for n in os.listdir(self.directory)
                       if n.startswith("ckpt-") and
                       os.path.exists(os.path.join(self.directory, n, "manifest.json")))
        return names

    def _prune(self):
        for name in self._complete()[:-self.keep]:
            shutil.rmtree(os.path.join(self.directory, name), ignore_errors=True)

    def latest(self):
        """Load the newest complete checkpoint, or ``None`` (collective).

        Raises
        ------
        InputError
            If the checkpoint was written by a different number of ranks.
        """
        comm = self.comm
        with comm.io():
            newest = None
            if comm.rank == 0:
                names = self._complete()
                newest = names[-1] if names else None
            newest = comm.bcast_obj(newest)
            if newest is None:
                return None
            folder = os.path.join(self.directory, newest)
            with open(os.path.join(folder, "manifest.json")) as handle:
                manifest = json.load(handle)
            comm.agree(manifest["ranks"] == comm.size,
                       f"checkpoint {folder} was written by {manifest['ranks']} ranks; "
                       f"this job has {comm.size} (resume with the same rank count)")
            sharded, replicated, rank_meta = {}, {}, {}
            with comm.guard():
                try:
                    with h5py.File(os.path.join(folder, f"rank-{comm.rank:05d}.h5"), "r") as handle:
                        sharded = {k: v[()] for k, v in handle.get("sharded", {}).items()}
                        rank_meta = json.loads(handle.attrs["rank_meta"])
                    with h5py.File(os.path.join(folder, "rank-00000.h5"), "r") as handle:
                        replicated = {k: v[()] for k, v in handle.get("replicated", {}).items()}
                except OSError as exc:
                    raise InputError(f"cannot read checkpoint {folder}: {exc}") from None
        return Checkpoint(manifest["iteration"], replicated, sharded, manifest["meta"], rank_meta)

    def stop(self, iteration, **state):
        """Save ``state`` (as for :meth:`save`) and raise :class:`Checkpointed`."""
        self.save(iteration, **state)
        raise Checkpointed(iteration, self.directory)


def add_arguments(parser):
    """The checkpoint options shared by iterative jobs."""
    group = parser.add_argument_group("checkpoints")
    group.add_argument("--checkpoint-dir", default=None,
                       help="directory for checkpoints (none: no checkpoints)")
    group.add_argument("--checkpoint-every", type=int, default=0, metavar="N",
                       help="save every N iterations (0: only when stopped by SIGTERM/SIGUSR1)")
    group.add_argument("--resume", action="store_true",
                       help="continue from the newest complete checkpoint, if any")

