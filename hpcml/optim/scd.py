"""The smoothed conic dual (SCD) of TFOCS, with continuation.

To solve ``minimise f(x) subject to A x + o ∈ K`` (written
``f(x) + h(A x + o)`` with ``h`` the indicator of ``K``, or any
prox-capable ``h``), SCD adds ``μ/2 ‖x − x₀‖²`` and solves the dual

    minimise_y  F_μ(−Aᵀ y) + h*(y) − <o, y>,
    F_μ(z) = sup_x <z, x> − f(x) − μ/2 ‖x − x₀‖²,

a smooth function of ``−Aᵀ y`` (gradient ``x(y) = prox_{f/μ}(x₀ − Aᵀy/μ)``,
Lipschitz ``‖A‖²/μ``) plus a prox-capable term, with the first-order
methods of :mod:`hpcml.optim.algorithms`.  The dual variable ``y`` lives
where the rows of ``A`` live (sharded), ``x`` is replicated; each dual
iteration costs one product with ``A`` and one with ``Aᵀ``.

Continuation re-centres ``x₀`` on the last primal point and solves again:
this is the proximal-point method on the original problem, which converges
to its solution for any fixed ``μ`` (for a linear program in finitely many
steps).  Accelerated continuation extrapolates the centre as Nesterov's
method does.
"""

import math
import time

import numpy as np

from hpcml.errors import InputError
from hpcml.optim.algorithms import minimize
from hpcml.operator import Scaled
from hpcml.optim.smooth import ConjugateSmoothed

#: A dual solve ends when its primal point is feasible to this fraction of
#: the last continuation step's relative change (and to ``tol / 2``).
INNER_RATIO = 1e-3


def scd(f, op, dual_prox, mu, residual, optimality=None, complementarity=None, x0=None, y0=None, method="AT",
        tol=1e-8, optimality_tol=None, inner_tol=0.0, inner_max=2000, max_outer=200, continuation="accelerated",
        check_every=5, recompute_every=50, watch=None):
    """Solve ``minimise f(x) + h(A x + o)`` through its smoothed dual.

    Parameters
    ----------
    f : hpcml.optim.prox.Prox
        The primal objective, separable (value is a sum of local terms).
    op : hpcml.operator.Operator
        ``A``: replicated ``x`` to the constraint space.
    dual_prox : hpcml.optim.prox.Prox
        ``h*(y) − <o, y>`` on the constraint space.
    mu : float
        Smoothing weight ``μ > 0``.
    residual : callable
        ``residual(Ax) -> float``: the primal infeasibility of ``x`` given
        ``A x`` (this rank's block), relative, the same on every rank
        (collective).  A dual solve also ends as soon as its primal point
        is feasible to ``min(tol / 2, INNER_RATIO · change)`` (``change``:
        the last continuation step's relative change of ``x``): that point
        solves the subproblem well enough for the proximal-point method.
    optimality : callable, optional
        ``optimality(x, Ax, y) -> float``: a relative measure of
        optimality (duality gap, dual infeasibility), the same on every
        rank.  Without it, optimality is the relative change of ``x``.
    complementarity : callable, optional
        ``complementarity(x, Ax, y) -> float``: the part of the duality gap
        that the constraints' violation leaves, ``|<y, A x + o>|`` relative
        (collective).  A dual solve then also waits for it to fall to
        ``optimality_tol / 2``: with large multipliers a point feasible to
        ``tol / 2`` can still be far from optimal, and the continuation
        steps would stall at that error.
    x0, y0 : numpy.ndarray, optional
        Primal centre and dual start (this rank's block of ``y``).
    method : str
        First-order method for the dual (``AT`` by default).
    tol : float
        Stop when the primal point moves by at most ``tol`` relative and its
        infeasibility is at most ``tol``.
    optimality_tol : float, optional
        Threshold of ``optimality`` (default ``tol``).
    inner_tol : float
        Relative change of ``y`` that ends a dual solve (default 0: a dual
        solve ends when its primal point is feasible, or at its limit; the
        relative change of a growing ``y`` says little).
    inner_max : int
        Dual iterations per continuation step (step ``j`` gets at most
        ``50·2^j`` of them).
    max_outer : int
        Continuation steps (``continuation=None``: one solve).
    continuation : {"accelerated", "plain", None}
    watch : callable, optional
        ``watch(state) -> bool`` after each continuation step, with
        ``state`` holding ``x``, ``x_prev``, ``y``, ``y_prev`` and ``history``; True
        ends the solve with status ``stopped`` (the caller's certificate
        tests for infeasibility and unboundedness).
    check_every : int
        Test the primal feasibility of the dual iterate every this many
        iterations (one local product and one scalar allreduce).

    Returns
    -------
    dict
        ``x``, ``y`` (local block), ``Ax`` (local block of ``A x``),
        ``status`` (``converged``/``max_iterations``/``stalled``),
        ``outer``, ``iterations`` (dual iterations in all), ``residual``,
        ``change``, ``history`` (per continuation step: ``residual``,
        ``change``, ``objective``, ``iterations``, ``dual_norm``,
        ``optimality``), ``seconds``.
    """
    if continuation not in ("accelerated", "plain", None):
        raise InputError(f"unknown continuation {continuation!r}")
    if not mu > 0:
        raise InputError(f"mu must be > 0, got {mu}")
    start = time.perf_counter()
    dual_op = Scaled(op.H, -1.0)
    n = op.shape[1]
    center = np.zeros(n) if x0 is None else np.array(x0, dtype=np.float64)
    y = np.zeros(op.local_out) if y0 is None else np.array(y0, dtype=np.float64)
    optimality_tol = tol if optimality_tol is None else optimality_tol
    x_prev = None
    history = {"residual": [], "change": [], "objective": [], "iterations": [], "dual_norm": [],
               "optimality": []}
    status, total_iterations, outer = "max_iterations", 0, 0
    x, Ax, res, change = center, None, math.inf, math.inf
    momentum_from = 0
    for outer in range(1, (max_outer if continuation else 1) + 1):
        F = ConjugateSmoothed(f, mu, center)

        def feasible(k, y_k, _value, Lx, F=F):
            op.comm.mark_iteration()   # one dual iteration
            if k % check_every:
                return False
            x_k = F.local(Lx)[1]
            Ax_k = op.matvec(x_k)
            if residual(Ax_k) > inner_feasibility:
                return False
            return complementarity is None or complementarity(x_k, Ax_k, y_k) <= optimality_tol / 2

        # Early steps are cheap and inexact (warm starts make up for it); an
        # infeasible problem thus shows its Farkas ray after few iterations.
        limit = min(inner_max, 50 * 2 ** min(outer, 30))
        # Inexact proximal steps converge when each error is small against
        # the step itself (Rockafellar's criterion): the dual solve's
        # feasibility target shrinks with the last step.
        inner_feasibility = min(tol / 2, INNER_RATIO * change)
        result = minimize(F, dual_op, dual_prox, x0=y, method=method, tol=inner_tol,
                          max_iter=limit, recompute_every=recompute_every, callback=feasible)
        total_iterations += result.iterations
        y_prev, y = y, result.x
        _, x = F.local(result.Lx)
        Ax = op.matvec(x)
        res = residual(Ax)
        change = float(np.linalg.norm(x - (center if x_prev is None else x_prev))) / max(1.0, float(np.linalg.norm(x)))
        history["residual"].append(res)
        history["change"].append(change)
        history["objective"].append(f.value(x))
        history["iterations"].append(result.iterations)
        history["dual_norm"].append(op.out_space.norm(y))
        if result.status == "stalled":
            status = "stalled"
            break
        optimal = change if optimality is None else optimality(x, Ax, y)
        history["optimality"].append(optimal)
        if optimal <= optimality_tol and res <= tol:
            status = "converged"
            break
        if watch is not None and watch({"x": x, "x_prev": center if x_prev is None else x_prev,
                                        "y": y, "y_prev": y_prev, "history": history}):
            status = "stopped"
            break
        if continuation == "accelerated" and x_prev is not None:
            # Nesterov's extrapolation of the proximal centre, restarted by the
            # gradient test of O'Donoghue and Candès: when the step just taken
            # (x − x_prev) points against the gradient mapping (centre − x), the
            # momentum overshoots and the extrapolation starts afresh.
            if (center - x) @ (x - x_prev) > 0:
                momentum_from = outer
            j = outer - momentum_from
            center = x + (j - 1) / (j + 2) * (x - x_prev) if j > 0 else x
        else:
            center = x
        x_prev = x
    return {"x": x, "y": y, "Ax": Ax, "status": status, "outer": outer,
            "iterations": total_iterations, "residual": res, "change": change,
            "history": history, "seconds": time.perf_counter() - start}
