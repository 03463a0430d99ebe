"""First-order conic solvers in the TFOCS decomposition.

A problem is ``minimise f(L x + b) + h(x)``: a smooth function ``f``
(:mod:`~hpcml.optim.smooth`), a linear operator ``L`` with its adjoint
(:mod:`hpcml.operator`), a prox-capable function ``h``
(:mod:`~hpcml.optim.prox`) and an accelerated first-order method
(:mod:`~hpcml.optim.algorithms`).  Problems with affine constraints go
through the smoothed conic dual (:mod:`~hpcml.optim.scd`); ready-made
front-ends (LASSO, LP, ...) live in :mod:`~hpcml.optim.problems`.  Linear
programs are solved by default by restarted primal–dual hybrid gradient
(PDLP, :mod:`~hpcml.optim.pdlp`).

Vectors live in a :class:`~hpcml.space.Space`: replicated (every rank
holds all of it, like ``x`` of a row-sharded least-squares problem) or
sharded (each rank holds its rows, like ``A x``).  Scalars computed from
sharded vectors are summed over the ranks through the communicator, so
every rank takes the same decisions.
"""
