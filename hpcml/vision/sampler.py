"""Which samples each rank trains on, step by step.

Every epoch draws one permutation of the dataset from ``(seed, epoch)`` (the
same on every rank, no communication) and cuts it into global batches of
``global_batch`` samples; each global batch is split into contiguous blocks,
one per rank, by :func:`hpcml.partition.block_range`.  One rank therefore sees
exactly the global batches a single process would, and ``size`` ranks see the
same samples between them: with gradients averaged by the global batch size
the training is the same on any number of ranks.  A rank may get an empty
block (more ranks than samples in the last batch); it still joins the
collectives.
"""

from __future__ import annotations

import numpy as np

from hpcml.partition import block_range


class DistributedSampler:
    """Per-epoch shuffled global batches split across ranks.

    Parameters
    ----------
    n_samples : int
    global_batch : int
    rank, size : int
    seed : int
    shuffle : bool
    drop_last : bool
        Drop a final batch smaller than ``global_batch``.
    """

    def __init__(self, n_samples, global_batch, rank, size, seed=0, shuffle=True, drop_last=False):
        if global_batch < 1:
            raise ValueError(f"global batch must be >= 1, got {global_batch}")
        self.n, self.batch, self.rank, self.size = int(n_samples), int(global_batch), rank, size
        self.seed, self.shuffle, self.drop_last = seed, shuffle, drop_last

    def steps_per_epoch(self):
        full, rest = divmod(self.n, self.batch)
        return full + (1 if rest and not self.drop_last else 0)

    def order(self, epoch):
        """The epoch's permutation of sample indices (identical on all ranks)."""
        if not self.shuffle:
            return np.arange(self.n)
        return np.random.default_rng([self.seed, epoch]).permutation(self.n)

    def batches(self, epoch, start_step=0):
        """Yield ``(step, local_indices, global_batch_size)`` from ``start_step`` on."""
        perm = self.order(epoch)
        for step in range(start_step, self.steps_per_epoch()):
            batch = perm[step * self.batch:(step + 1) * self.batch]
            lo, hi = block_range(len(batch), self.size, self.rank)
            yield step, batch[lo:hi], len(batch)
