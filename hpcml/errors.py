"""Exceptions that map onto the exit codes of the ``hpcml`` command."""


class HpcmlError(Exception):
    """Base class of hpcml's own errors; ``exit_code`` is what the CLI returns.

    ``collective`` is true when every rank raised the same error (see
    :meth:`hpcml.comm.Comm.agree`), so the ranks may exit cleanly instead of
    aborting the whole job.
    """

    exit_code = 1
    #: How the command line introduces the message.
    prefix = "hpcml: error: "

    def __init__(self, message, collective=False):
        super().__init__(message)
        self.collective = collective


class InputError(HpcmlError, ValueError):
    """Bad input or usage: a one-line message naming the problem, exit code 2.

    A ``ValueError`` too, so that library callers catch it as they would
    scikit-learn's or numpy's.
    """

    exit_code = 2


class ConvergenceError(HpcmlError):
    """An iterative method stopped before reaching its tolerance, exit code 2.

    The user fixes it as bad input: more iterations, a looser tolerance.
    """

    exit_code = 2
