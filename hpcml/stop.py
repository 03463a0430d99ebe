"""The stop signals of batch systems: SIGTERM and SIGUSR1.

SLURM sends SIGTERM (or the signal of ``--signal``, typically SIGUSR1)
before a time limit or a preemption, and waits a grace period before
SIGKILL.  A job spends it one of two ways:

- a job that keeps checkpoints only notes the signal here; its loop asks
  :func:`requested` at a safe point (through
  :meth:`hpcml.checkpoint.Checkpointer.step`, a MAX reduction so that all
  ranks stop at the same iteration), saves, and exits with status 75;
- any other job has nothing to save, so the signal raises :class:`Stopped`
  at once wherever the job is, its outputs' temporary files are removed on
  the way out, and it exits with ``128 + the signal's number`` (143 for
  SIGTERM, 138 for SIGUSR1), the status a shell reports for a process that
  the signal ended.
"""

import signal


STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1)

_seen = []


class Stopped(BaseException):
    """A stop signal ended a job that had nothing to save; exit ``128 + signum``.

    A ``BaseException``, as ``KeyboardInterrupt`` is: it is raised by the
    signal handler wherever the job happens to be, and a library's
    ``except Exception`` there (numpy's ``norm`` turns any exception met
    while reading ``axis`` into a ``TypeError``) must not make it another
    error.
    """

    prefix = "hpcml: "
    collective = False

    def __init__(self, signum, why):
        super().__init__(f"stopped by {signal.Signals(signum).name}; {why}")
        self.exit_code = 128 + signum


def requested():
    """True if a stop signal reached this process."""
    return bool(_seen)


def _note(signum, _frame):
    _seen.append(signum)


def _raiser(why):
    def handler(signum, _frame):
        _seen.append(signum)
        # A second signal while the first unwinds the job must not raise inside
        # its clean-up: from here on signals are only noted.
        for other in STOP_SIGNALS:
            signal.signal(other, _note)
        raise Stopped(signum, why)
    return handler


def install(at_safe_points, why=""):
    """Handle the stop signals for the rest of this process.

    Parameters
    ----------
    at_safe_points : bool
        True: only note the signal, for a job that checks :func:`requested`
        at safe points and saves a checkpoint.  False: raise
        :class:`Stopped` at once.
    why : str
        For ``at_safe_points=False``: the end of the message, saying why
        nothing was saved.
    """
    handler = _note if at_safe_points else _raiser(why)
    for signum in STOP_SIGNALS:
        signal.signal(signum, handler)
