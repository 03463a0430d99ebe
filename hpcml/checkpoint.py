"""Checkpoints shared by every iterative job.

A checkpoint is a directory ``ckpt-00000042-RUN`` holding one HDF5 file per
rank (its sharded state, and on rank 0 the replicated state) plus a
``manifest.json`` written last.  It is built under a temporary name, every
file is fsynced, and the directory is renamed only when complete, so
``--resume`` never picks up half a checkpoint.

A checkpoint knows its job: the manifest records the identity of every
input (path, size, modification time, and an HDF5 dataset's shape and
dtype), every parameter that changes the trajectory, and the rank count.
``--resume`` takes the newest checkpoint of the same job and refuses one of
another job with one line naming the field that differs.  ``RUN`` names the
run that wrote it (a fresh run draws a new one, a resumed run keeps the one
it resumed), and pruning touches only the current run's checkpoints, so a
folder that holds other runs' checkpoints is never harmed.  A damaged
newest checkpoint (a truncated rank file, a corrupt manifest) is skipped
with a warning for the previous complete one.

Stop signals (:mod:`hpcml.stop`) are honoured at the safe points where a
job calls :meth:`Checkpointer.step`: all ranks agree to stop at the same
iteration, save, and exit with :data:`EXIT_CHECKPOINTED`.
"""

import json
import logging
import os
import shutil
import time
import uuid

import h5py
import numpy as np

from hpcml import stop
from hpcml.errors import HpcmlError, InputError
from hpcml.io.hdf5 import _fsync_dir, _jsonable, remove_dead_temporaries

log = logging.getLogger("hpcml")

#: Exit status of a job that stopped on a signal after saving a checkpoint
#: (``EX_TEMPFAIL``: run again to continue).
EXIT_CHECKPOINTED = 75


class Checkpointed(HpcmlError):
    """Raised on every rank after a signal-triggered checkpoint; exit code 75."""

    exit_code = EXIT_CHECKPOINTED
    prefix = "hpcml: "

    def __init__(self, iteration, path):
        super().__init__(f"stopped by signal; checkpoint of iteration {iteration} "
                         f"saved as {path}", collective=True)
        self.iteration = iteration


class Checkpoint:
    """A loaded checkpoint: ``iteration``, ``replicated`` and ``sharded`` arrays, ``meta``."""

    def __init__(self, iteration, replicated, sharded, meta, rank_meta):
        self.iteration = iteration
        self.replicated = replicated
        self.sharded = sharded
        self.meta = meta
        self.rank_meta = rank_meta


def _differences(saved, mine, where=""):
    """The fields of two job identities that differ, as readable phrases."""
    if isinstance(saved, dict) and isinstance(mine, dict):
        out = []
        for key in sorted(set(saved) | set(mine)):
            if key not in saved or key not in mine:
                out.append(f"{where}{key} (set in only one)")
            else:
                out.extend(_differences(saved[key], mine[key], f"{where}{key} "))
        return out
    same = json.dumps(saved, sort_keys=True) == json.dumps(mine, sort_keys=True)
    return [] if same else [f"{where.strip()} was {json.dumps(saved)}, is {json.dumps(mine)}"]


class Checkpointer:
    """Write and find checkpoints of an iterative job (collective methods).

    Parameters
    ----------
    directory : str or None
        Where checkpoints live.  ``None`` disables saving.
    comm : hpcml.comm.Comm
    every : int
        Save every ``every`` iterations (0: only on a signal).
    keep : int
        How many complete checkpoints of this run to keep.
    resume : bool
        Whether the job should continue from :meth:`latest` (``--resume``).
    job : dict, optional
        The job's identity (inputs, parameters; see :func:`hpcml.command`),
        recorded in every manifest and required of a checkpoint to resume.
        The rank count is always part of it.
    """

    def __init__(self, directory, comm, every=0, keep=2, resume=False, job=None):
        if every < 0 or keep < 1:
            raise InputError(f"checkpoint every={every} keep={keep}: need every >= 0 and keep >= 1",
                             collective=True)
        if resume and not directory:
            raise InputError("--resume needs --checkpoint-dir (where to find the checkpoint)",
                             collective=True)
        self.directory = directory
        self.comm = comm
        self.every = every
        self.keep = keep
        self.resume = resume
        self.job = {**(job or {}), "ranks": comm.size}
        # A fresh run's checkpoints are told apart from other runs' in the folder.
        self.run = comm.bcast_obj(uuid.uuid4().hex[:8] if comm.rank == 0 else None)
        if directory and comm.rank == 0:
            remove_dead_temporaries(directory, ".ckpt-")

    @classmethod
    def from_args(cls, args, comm):
        """Build from ``--checkpoint-dir``/``--checkpoint-every``/``--resume`` and the job's identity."""
        from hpcml.command import job_identity

        # Rank 0 reads the inputs' facts: one look at the file system, not one per rank.
        job = comm.bcast_obj(job_identity(args) if comm.rank == 0 else None)
        return cls(args.checkpoint_dir, comm, every=args.checkpoint_every, resume=args.resume, job=job)

    def due(self, iteration):
        """True when ``iteration`` is a multiple of ``every``."""
        return bool(self.directory) and self.every > 0 and iteration % self.every == 0

    def stop_requested(self):
        """True on every rank if a stop signal reached any rank (collective)."""
        return bool(self.comm.allreduce_scalar(int(stop.requested()), "max"))

    def step(self, iteration, state, check_every=1):
        """The safe point of an iterative loop: save if due, stop if a signal asked (collective).

        Parameters
        ----------
        iteration : int
            Iterations finished.
        state : callable
            Returns the keyword arguments of :meth:`save` (called only when
            a checkpoint is written).
        check_every : int
            Look for a stop signal every this many iterations (the look is
            one small allreduce).

        Raises
        ------
        Checkpointed
            After saving, when a stop signal reached any rank.
        """
        # The end of an iteration: the communication accounting counts it.
        self.comm.mark_iteration()
        if not self.directory:
            return   # signals stop such a job at once (hpcml.stop)
        saved = self.save(iteration, **state()) if self.due(iteration) else None
        if iteration % check_every == 0 and self.stop_requested():
            raise Checkpointed(iteration, saved or self.save(iteration, **state()))

    def _name(self, iteration):
        return f"ckpt-{iteration:08d}-{self.run}"

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

        Returns
        -------
        str or None
            The checkpoint's folder (``None`` without a directory).
        """
        if not self.directory:
            return None
        comm = self.comm
        final = os.path.join(self.directory, self._name(iteration))
        tmp = os.path.join(self.directory, f".{self._name(iteration)}.tmp-{os.getpid()}")
        tmp = comm.bcast_obj(tmp)
        with comm.io():
            with comm.guard():
                if comm.rank == 0:
                    try:
                        os.makedirs(self.directory, exist_ok=True)
                        os.makedirs(tmp)
                    except OSError as exc:
                        raise InputError(f"cannot write checkpoint in {self.directory}: {exc}") from None
            try:
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
                    manifest = {"iteration": iteration, "ranks": comm.size, "run": self.run,
                                "saved_ns": time.time_ns(), "job": _jsonable(self.job),
                                "meta": _jsonable(meta or {})}
                    with open(os.path.join(tmp, "manifest.json"), "w") as handle:
                        json.dump(manifest, handle)
                        handle.flush()
                        os.fsync(handle.fileno())
                    shutil.rmtree(final, ignore_errors=True)
                    os.replace(tmp, final)
                    _fsync_dir(final)
                    self._prune()
            except BaseException:
                if comm.rank == 0:
                    shutil.rmtree(tmp, ignore_errors=True)
                raise
            comm.barrier()
        return final

    def _manifests(self):
        """``(folder name, manifest)`` of every complete checkpoint, newest first (rank 0).

        A manifest that cannot be read is the mark of a damaged checkpoint:
        it is listed with ``None`` so that :meth:`latest` can say so.
        """
        if not self.directory or not os.path.isdir(self.directory):
            return []
        found = []
        for name in os.listdir(self.directory):
            path = os.path.join(self.directory, name, "manifest.json")
            if not name.startswith("ckpt-") or not os.path.exists(path):
                continue
            try:
                with open(path) as handle:
                    manifest = json.load(handle)
                order = (int(manifest["saved_ns"]), int(manifest["iteration"]))
            except (OSError, ValueError, KeyError, TypeError):
                manifest, order = None, (os.stat(path).st_mtime_ns, -1)
            found.append((order, name, manifest))
        return [(name, manifest) for _, name, manifest in sorted(found, reverse=True)]

    def _prune(self):
        own = sorted((m["iteration"], name) for name, m in self._manifests()
                     if m is not None and m.get("run") == self.run)
        for _, name in own[:-self.keep]:
            shutil.rmtree(os.path.join(self.directory, name), ignore_errors=True)

    def latest(self):
        """Load the newest complete checkpoint of this job, or ``None`` (collective).

        Checkpoints of other jobs in the folder are passed over; when the
        folder holds checkpoints but none of this job, the newest one's
        differences are the error.  A checkpoint that cannot be read on
        some rank is skipped with a warning for the next older one.  A
        resumed run prunes and names its checkpoints as the run it resumes.

        Raises
        ------
        InputError
            If the folder holds checkpoints, but none of this job.
        """
        comm = self.comm
        with comm.io():
            candidates, refusal = None, None
            if comm.rank == 0:
                candidates, refusal = self._candidates()
            candidates, refusal = comm.bcast_obj((candidates, refusal))
            for name, manifest in candidates:
                loaded = self._load(os.path.join(self.directory, name), manifest)
                if loaded is not None:
                    self.run = manifest["run"]
                    return loaded
            if refusal:
                raise InputError(refusal, collective=True)
            return None

    def _candidates(self):
        """This job's readable manifests, newest first, and why others were refused (rank 0)."""
        listed = self._manifests()
        mine, refusal = [], None
        for name, manifest in listed:
            if manifest is None:
                log.warning("checkpoint %s: unreadable manifest; skipped", name)
                continue
            differs = _differences(manifest.get("job", {}), _jsonable(self.job))
            if differs:
                refusal = refusal or (
                    f"--resume: the newest checkpoint in {self.directory} ({name}) belongs to another "
                    f"job: {differs[0]} (start without --resume, or use another --checkpoint-dir)")
                continue
            mine.append((name, manifest))
        return mine, (refusal if not mine else None)

    def _load(self, folder, manifest):
        """The checkpoint in ``folder``, or ``None`` with a warning if any rank cannot read it."""
        comm = self.comm
        sharded, replicated, rank_meta, problem = {}, {}, {}, ""
        try:
            with h5py.File(os.path.join(folder, f"rank-{comm.rank:05d}.h5"), "r") as handle:
                sharded = {k: v[()] for k, v in handle.get("sharded", {}).items()}
                rank_meta = json.loads(handle.attrs["rank_meta"])
            with h5py.File(os.path.join(folder, "rank-00000.h5"), "r") as handle:
                replicated = {k: v[()] for k, v in handle.get("replicated", {}).items()}
        except (OSError, KeyError, ValueError) as exc:
            problem = f"rank {comm.rank}: {exc}"
        problems = [p for p in comm.allgather_obj(problem) if p]
        if problems:
            log.warning("checkpoint %s is damaged (%s); trying the previous one", folder, problems[0])
            return None
        return Checkpoint(manifest["iteration"], replicated, sharded, manifest["meta"], rank_meta)


def add_arguments(parser):
    """The checkpoint options shared by iterative jobs."""
    group = parser.add_argument_group("checkpoints")
    group.add_argument("--checkpoint-dir", default=None,
                       help="directory for checkpoints (none: no checkpoints)")
    group.add_argument("--checkpoint-every", type=int, default=0, metavar="N",
                       help="save every N iterations (0: only when stopped by SIGTERM/SIGUSR1)")
    group.add_argument("--resume", action="store_true",
                       help="continue from the newest complete checkpoint, if any")

