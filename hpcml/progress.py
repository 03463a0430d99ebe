"""A progress line for long loops, printed by rank 0 only."""

import sys
import time


class Progress:
    """Report ``done/total`` on rank 0: redrawn in place on a terminal, else a line every 10%.

    Parameters
    ----------
    total : int
    comm : hpcml.comm.Comm
    label : str
    stream : file, optional
        Defaults to ``sys.stderr``.
    """

    def __init__(self, total, comm, label, stream=None):
        self.total = max(int(total), 1)
        self.label = label
        self.stream = stream or sys.stderr
        self.enabled = comm.rank == 0
        self.interactive = self.enabled and self.stream.isatty()
        self.start = time.perf_counter()
        self.next_line = 0.1

    def update(self, done, **fields):
        """Show that ``done`` of ``total`` steps are finished, with extra ``name=value`` fields."""
        if not self.enabled:
            return
        fraction = min(done / self.total, 1.0)
        if not self.interactive and fraction < self.next_line and done != self.total:
            return
        self.next_line = fraction + 0.1
        elapsed = time.perf_counter() - self.start
        extra = " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in fields.items())
        bar = "#" * int(20 * fraction)
        line = f"{self.label} [{bar:<20}] {done}/{self.total} {elapsed:.1f}s {extra}".rstrip()
        if self.interactive:
            self.stream.write("\r" + line + ("\n" if done >= self.total else ""))
        else:
            self.stream.write(line + "\n")
        self.stream.flush()
