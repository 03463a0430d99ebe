"""Ready-made problems on a row-sharded matrix: LASSO, LP and relatives.

Every front-end returns a dict with ``x`` (replicated), ``objective``,
``primal_residual`` (relative constraint violation, 0 for unconstrained
problems), ``dual_residual`` (relative violation of the optimality
conditions), ``iterations``, ``status`` and ``seconds``.  The status is
one of ``converged`` (the tolerance was met), ``max_iterations``,
``stalled``, and for LPs ``infeasible`` or ``unbounded`` (only with a
certificate checked to tolerance).  Nothing is called optimal that was not
solved to tolerance.

Each front-end takes a :class:`~hpcml.distmat.DistMatrix` and works on it
only through its operator (:class:`~hpcml.operator.MatrixOperator`).
"""

import math
import time

import numpy as np

from hpcml.errors import InputError
from hpcml.operator import Identity, MatrixOperator, Normal, Stacked
from hpcml.optim import prox as P
from hpcml.optim.algorithms import minimize
from hpcml.optim.scd import scd
from hpcml.optim.smooth import (
    GramQuadratic,
    Huber,
    Logistic,
    NormalQuadratic,
    Quadratic,
)

#: Largest column count for which the Gram matrix ``AᵀA`` is formed.
GRAM_MAX_COLUMNS = 4000

#: The smooth losses and the prox-capable terms :func:`composite` knows by name.
SMOOTH = ("quadratic", "huber", "logistic")
PROX = ("zero", "l1", "nonneg", "box", "l2_ball", "linf_ball")


def _check_rhs(A, b, name="b"):
    b = np.asarray(b, dtype=np.float64).ravel()
    A.comm.agree(b.shape[0] == A.local_rows,
                 f"{name} has {b.shape[0]} local rows where the matrix has {A.local_rows} "
                 f"(rank {A.comm.rank})")
    return b


def least_squares_pieces(A, b, mode="auto"):
    """``½‖A x − b‖²`` as (smooth, linop, offset) for the composite solver.

    Parameters
    ----------
    A : hpcml.operator.MatrixOperator
    b : numpy.ndarray
        This rank's block of the right-hand side.
    mode : {"auto", "gram", "normal", "matvec"}
        ``gram`` forms ``AᵀA`` once (one pass, one allreduce of ``n²``
        numbers) and iterates without the matrix; ``normal`` applies the
        fused one-pass ``AᵀA x`` each iteration; ``matvec`` is TFOCS's
        ``A x`` then ``Aᵀ r``.  ``auto`` picks ``gram`` when
        ``n ≤ GRAM_MAX_COLUMNS`` and ``m ≥ n``, else ``matvec``.

    Returns
    -------
    smooth, linop, offset, mode
    """
    m, n = A.shape
    if mode == "auto":
        mode = "gram" if n <= GRAM_MAX_COLUMNS and m >= n else "matvec"
    if mode == "matvec":
        return Quadratic(), A, -b, mode
    if mode not in ("gram", "normal"):
        raise InputError(f"unknown least-squares mode {mode!r} (auto, gram, normal, matvec)")
    c = A.rmatvec(b)
    constant = 0.5 * A.comm.allreduce_scalar(float(b @ b))
    ident = Identity(A.in_space, n)
    if mode == "gram":
        return GramQuadratic(A.gram(), c, constant), ident, None, mode
    return NormalQuadratic(Normal(A), c, constant), ident, None, mode


def _kkt_l1(x, grad, lam):
    """Largest distance of ``−∇f`` from ``λ ∂‖x‖₁``, relative to ``max λ``: zero exactly at a minimiser."""
    lam = np.broadcast_to(np.asarray(lam, dtype=np.float64), x.shape)
    off = np.where(x != 0, np.abs(grad + lam * np.sign(x)), np.maximum(np.abs(grad) - lam, 0.0))
    return float(off.max(initial=0.0)) / max(float(lam.max(initial=0.0)), 1e-300)


def _kkt_nonneg(x, grad):
    """Violation of ``∇f ≥ 0``, ``∇f ⊥ x`` for ``x ≥ 0``, relative to ``max(1, ‖∇f‖∞)``."""
    off = np.where(x > 0, np.abs(grad), np.maximum(-grad, 0.0))
    return float(off.max(initial=0.0)) / max(1.0, float(np.abs(grad).max(initial=0.0)))


def _finish(start, status, iterations, x, objective, primal, dual, **extra):
    return {"x": x, "objective": float(objective), "primal_residual": float(primal),
            "dual_residual": float(dual), "iterations": int(iterations), "status": status,
            "seconds": time.perf_counter() - start, **extra}


def _composite_least_squares(A, b, h, mode, method, tol, max_iter, x0, callback):
    start = time.perf_counter()
    op = MatrixOperator(A)
    b = _check_rhs(A, b)
    smooth, linop, offset, mode = least_squares_pieces(op, b, mode)
    result = minimize(smooth, linop, h, x0=x0, offset=offset, method=method, tol=tol,
                      max_iter=max_iter, callback=callback)
    x = result.x
    r = op.matvec(x) - b
    grad = op.rmatvec(r)
    loss = 0.5 * A.comm.allreduce_scalar(float(r @ r))
    return start, result, x, r, grad, loss, mode


def lasso(A, b, lam, method="AT", tol=1e-10, max_iter=5000, mode="auto", x0=None, callback=None):
    """``minimise ½‖A x − b‖² + λ‖x‖₁`` (``lam`` a scalar or per-column weights ≥ 0).

    ``b`` is this rank's block of the right-hand side.  The result also
    carries ``gap``, the relative duality gap at the dual point
    ``ν = r · min(1, λ/‖Aᵀr‖∞)`` (``r = b − A x``), a certificate of accuracy.
    """
    h = P.l1(lam)
    start, result, x, r, grad, loss, mode = _composite_least_squares(
        A, b, h, mode, method, tol, max_iter, x0, callback)
    weights = np.broadcast_to(np.asarray(lam, dtype=np.float64), x.shape)
    objective = loss + float(np.sum(weights * np.abs(x)))
    # Dual point of the LASSO: the residual scaled into the dual feasible set.
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(weights > 0, np.abs(grad) / weights, np.where(grad != 0, np.inf, 0.0))
    scale = min(1.0, 1.0 / ratio.max()) if ratio.size and ratio.max() > 0 else 1.0
    nu = -r * scale
    b_local = _check_rhs(A, b)
    dual = A.comm.allreduce_scalar(float(0.5 * (b_local @ b_local) - 0.5 * ((b_local - nu) @ (b_local - nu))))
    gap = max(objective - dual, 0.0) / max(abs(objective), 1e-300)
    return _finish(start, result.status, result.iterations, x, objective, 0.0,
                   _kkt_l1(x, grad, lam), gap=gap, mode=mode, method=method,
                   history=result.history)


def nonneg_least_squares(A, b, method="AT", tol=1e-10, max_iter=5000, mode="auto", x0=None,
                         callback=None):
    """``minimise ½‖A x − b‖²`` subject to ``x ≥ 0``."""
    h = P.nonneg()
    start, result, x, r, grad, loss, mode = _composite_least_squares(
        A, b, h, mode, method, tol, max_iter, x0, callback)
    primal = float(np.abs(np.minimum(x, 0)).max(initial=0.0))
    return _finish(start, result.status, result.iterations, x, loss, primal,
                   _kkt_nonneg(x, grad), mode=mode, method=method, history=result.history)


def l1_logistic_regression(A, y, lam, method="AT", tol=1e-10, max_iter=5000, x0=None,
                           callback=None):
    """``minimise Σ log(1 + exp(−yᵢ aᵢᵀx)) + λ‖x‖₁`` for labels ``y`` in {−1, +1} (local block)."""
    start = time.perf_counter()
    y = _check_rhs(A, y, "labels")
    A.comm.agree(bool(np.all(np.abs(y) == 1)), "logistic regression needs labels in {-1, +1}")
    h = P.l1(lam)
    op = MatrixOperator(A)
    loss = Logistic(y)
    result = minimize(loss, op, h, x0=x0, method=method, tol=tol, max_iter=max_iter,
                      callback=callback)
    x = result.x
    value, gz = loss.local(op.matvec(x))
    grad = op.rmatvec(gz)
    weights = np.broadcast_to(np.asarray(lam, dtype=np.float64), x.shape)
    objective = A.comm.allreduce_scalar(float(value)) + float(np.sum(weights * np.abs(x)))
    return _finish(start, result.status, result.iterations, x, objective, 0.0,
                   _kkt_l1(x, grad, lam), method=method, history=result.history)


def lasso_lambda_max(A, b):
    """``‖Aᵀb‖∞``: the smallest λ for which the LASSO's solution is 0 (``b`` this rank's block)."""
    return float(np.abs(MatrixOperator(A).rmatvec(b)).max())


def named_prox(name, weight=1.0, lower=-np.inf, upper=np.inf):
    """The prox-capable term called ``name`` (one of :data:`PROX`).

    ``weight`` is λ of ``l1`` and the radius of ``l2_ball`` and
    ``linf_ball``; ``lower`` and ``upper`` bound ``box``.
    """
    makers = {"zero": P.zero, "l1": lambda: P.l1(weight), "nonneg": P.nonneg,
              "box": lambda: P.box(lower, upper), "l2_ball": lambda: P.l2_ball(weight),
              "linf_ball": lambda: P.linf_ball(weight)}
    if name not in makers:
        raise InputError(f"unknown prox term {name!r} ({', '.join(PROX)})", collective=True)
    return makers[name]()


def composite(A, b=None, smooth="quadratic", tau=1.0, prox="zero", weight=1.0, lower=-np.inf,
              upper=np.inf, method="AT", tol=1e-8, max_iter=5000, x0=None, callback=None):
    """``minimise f(A x) + h(x)`` with ``f`` and ``h`` chosen by name.

    Parameters
    ----------
    A : hpcml.distmat.DistMatrix
    b : numpy.ndarray, optional
        This rank's block of the targets (``quadratic``, optional for
        ``huber``) or of the ±1 labels (``logistic``).
    smooth : {"quadratic", "huber", "logistic"}
        ``f``: ``½‖A x − b‖²``, the Huber loss of ``A x − b`` (of ``A x``
        without ``b``) with threshold ``tau``, or the logistic loss of the
        margins ``bᵢ aᵢᵀx``.
    prox : {"zero", "l1", "nonneg", "box", "l2_ball", "linf_ball"}
        ``h``, built by :func:`named_prox` from ``weight``, ``lower`` and ``upper``.
    method, tol, max_iter, x0, callback
        As for :func:`~hpcml.optim.algorithms.minimize`.

    Returns
    -------
    dict
        The common fields; ``dual_residual`` is the gradient-mapping step
        relative to ``max(1, ‖x‖∞)``, and ``seconds`` the solver's time.
    """
    if smooth not in SMOOTH:
        raise InputError(f"unknown smooth function {smooth!r} ({', '.join(SMOOTH)})", collective=True)
    h = named_prox(prox, weight, lower, upper)
    if b is None:
        if smooth != "huber":
            raise InputError(f"composite: smooth {smooth!r} needs b", collective=True)
    else:
        b = _check_rhs(A, b)
    if smooth == "quadratic":
        f, offset = Quadratic(), -b
    elif smooth == "huber":
        f, offset = Huber(tau), (None if b is None else -b)
    else:
        A.comm.agree(bool(np.all(np.abs(b) == 1)), "composite: logistic labels must be -1 or +1")
        f, offset = Logistic(b), None
    op = MatrixOperator(A)
    result = minimize(f, op, h, x0=x0, offset=offset, method=method, tol=tol, max_iter=max_iter,
                      callback=callback)
    # Optimality as the gradient-mapping step at the final Lipschitz estimate:
    # zero exactly at a minimiser, relative to the size of x.
    grad = op.rmatvec(f.local(result.Lx)[1])
    moved = result.x - h.prox(result.x - grad / result.L, 1.0 / result.L)[0]
    dual = float(np.abs(moved).max()) / max(1.0, float(np.abs(result.x).max()))
    return {"x": result.x, "objective": result.objective, "primal_residual": 0.0,
            "dual_residual": dual, "iterations": result.iterations, "status": result.status,
            "seconds": result.seconds, "method": method, "history": result.history}


def _scd_summary(start, out, f_value, primal, dual, **extra):
    status = out["status"]
    if status == "stopped":
        status = "max_iterations"
    return _finish(start, status, out["iterations"], out["x"], f_value, primal, dual,
                   outer=out["outer"], history=out["history"], **extra)


def basis_pursuit_denoise(A, b, eps, mu=1.0, method="AT", tol=1e-6, max_outer=200,
                          inner_max=2000):
    """``minimise ‖x‖₁`` subject to ``‖A x − b‖₂ ≤ ε``, through the smoothed conic dual.

    ``primal_residual`` is ``max(‖A x − b‖ − ε, 0) / max(1, ‖b‖)``;
    ``dual_residual`` the relative change of ``x`` over the last
    continuation step.
    """
    start = time.perf_counter()
    b = _check_rhs(A, b)
    comm = A.comm
    if not eps >= 0:
        raise InputError(f"basis pursuit: eps must be >= 0, got {eps}", collective=True)
    norm_b = math.sqrt(comm.allreduce_scalar(float(b @ b)))
    op = MatrixOperator(A)

    def residual(Ax):
        d = Ax - b
        return max(math.sqrt(comm.allreduce_scalar(float(d @ d))) - eps, 0.0) / max(1.0, norm_b)

    dual_prox = P.Tilted(P.L2Norm(eps, comm), b)
    out = scd(P.l1(), op, dual_prox, mu, residual, method=method, tol=tol,
              inner_max=inner_max, max_outer=max_outer, continuation="plain")
    x = out["x"]
    return _scd_summary(start, out, float(np.abs(x).sum()), residual(op.matvec(x)), out["change"],
                        method=method)


def dantzig_selector(A, b, delta, mu=1.0, method="AT", tol=1e-6, max_outer=200, inner_max=2000):
    """``minimise ‖x‖₁`` subject to ``‖Aᵀ(A x − b)‖∞ ≤ δ``, through the smoothed conic dual.

    The constraint operator is ``AᵀA`` (the fused one-pass product), so
    the dual variable is a replicated ``n``-vector.
    """
    start = time.perf_counter()
    b = _check_rhs(A, b)
    if not delta >= 0:
        raise InputError(f"dantzig selector: delta must be >= 0, got {delta}", collective=True)
    Atb = MatrixOperator(A).rmatvec(b)
    scale = max(1.0, float(np.abs(Atb).max(initial=0.0)))
    op = Normal(MatrixOperator(A))

    def residual(Gx):
        return float(np.maximum(np.abs(Gx - Atb) - delta, 0.0).max(initial=0.0)) / scale

    # h = indicator of the δ-box around Aᵀb: h* = δ‖y‖₁, tilted by Aᵀb.
    dual_prox = P.Tilted(P.l1(delta), Atb)
    out = scd(P.l1(), op, dual_prox, mu, residual, method=method, tol=tol,
              inner_max=inner_max, max_outer=max_outer, continuation="plain")
    x = out["x"]
    return _scd_summary(start, out, float(np.abs(x).sum()), residual(op.matvec(x)), out["change"],
                        method=method)


def _row_scaled(A, b):
    """Rows of ``A`` and ``b`` divided by the rows' norms (local work; the new matrix's construction is collective)."""
    scale = _row_scale(A)
    return A.scale_rows(scale), b * scale


def _bounds(bounds, n):
    if bounds is None:
        return np.zeros(n), np.full(n, np.inf)
    lower, upper = bounds
    lower = np.broadcast_to(np.asarray(-np.inf if lower is None else lower, dtype=np.float64), (n,)).copy()
    upper = np.broadcast_to(np.asarray(np.inf if upper is None else upper, dtype=np.float64), (n,)).copy()
    return lower, upper


def _box_minimum(r, lower, upper, zero_tol):
    """``Σ min_{l ≤ x ≤ u} rⱼ xⱼ`` over finite terms, and the largest |rⱼ| that makes it −∞."""
    r = np.where(np.abs(r) <= zero_tol, 0.0, r)
    low = np.where(r > 0, lower, upper)
    unbounded = (r != 0) & ~np.isfinite(low)
    terms = np.where(unbounded | (r == 0), 0.0, r * np.where(np.isfinite(low), low, 0.0))
    return float(terms.sum()), float(np.abs(r[unbounded]).max(initial=0.0))


def lp(c, A_eq=None, b_eq=None, A_ub=None, b_ub=None, bounds=None, mu=1e-3, method="AT",
       tol=1e-6, max_outer=500, inner_max=2000, continuation="accelerated", comm=None):
    """``minimise cᵀx`` s.t. ``A_eq x = b_eq``, ``A_ub x ≤ b_ub``, ``lower ≤ x ≤ upper``.

    Solved like TFOCS's ``solver_sLP``: the smoothed conic dual with
    continuation.  The rows are scaled to unit norm and ``c`` to unit
    max-norm first (local work), so one default ``μ`` suits most problems.
    The default 1e-3 is TFOCS's for its ``test_LinearProgram``; on that
    shape (``synthetic.tfocs_lp``, 1250×2500) it took 17.9k dual
    iterations in all against 20.8k at 3e-3, 39k at 1e-2 and no
    convergence in 150 steps at 0.1; 3e-4 took 15k but ended less
    accurate.  Small LPs can prefer a larger ``μ`` (a 20×30 one took 3k
    iterations at 1e-3, 0.9k at 1e-2).  Continuation is accelerated (Nesterov's extrapolation of
    the proximal centre, with a gradient restart), as in TFOCS.

    Parameters
    ----------
    c : numpy.ndarray
        Replicated cost vector (length ``n``).
    A_eq, A_ub : hpcml.distmat.DistMatrix, optional
        Row-sharded constraint matrices; ``b_eq``, ``b_ub`` their local blocks.
    bounds : (lower, upper), optional
        Scalars or length-``n`` arrays, ``None``/±inf for none; default ``x ≥ 0``.
    tol : float
        Relative tolerance on primal infeasibility, dual infeasibility and
        the duality gap, all measured on the scaled problem.

    Returns
    -------
    dict
        The common fields plus the multipliers, ``gap`` and ``outer``
        (continuation steps).  The multipliers follow HiGHS (and scipy's
        ``linprog`` ``marginals``): each is the sensitivity of the optimal
        objective to its right-hand side or bound, so that
        ``c = A_eqᵀ λ_eq + A_ubᵀ λ_ub + r`` with ``λ_ub ≤ 0``:
        ``marginals_eq`` (``λ_eq``, this rank's rows of ``A_eq``),
        ``marginals_ub`` (``λ_ub``, this rank's rows of ``A_ub``) and
        ``reduced_costs`` (``r``, replicated; ``r ≥ 0`` at a lower
        bound, ``≤ 0`` at an upper bound, 0 between: scipy's
        ``lower.marginals + upper.marginals``).  Present for the kinds
        of rows given.  ``status`` is
        ``converged``, ``max_iterations``, ``stalled``, ``infeasible`` (a
        Farkas certificate ``y`` was found) or ``unbounded`` (a feasible
        point and a ray of decreasing cost were found).
    """
    start = time.perf_counter()
    mats = [(A, b, kind) for A, b, kind in ((A_eq, b_eq, "eq"), (A_ub, b_ub, "ub")) if A is not None]
    if not mats:
        raise InputError("lp: no constraint rows (give A_eq and/or A_ub)", collective=True)
    comm = comm or mats[0][0].comm
    c = np.asarray(c, dtype=np.float64).ravel()
    n = c.shape[0]
    for A, b, kind in mats:
        comm.agree(A.shape[1] == n, f"lp: A_{kind} has {A.shape[1]} columns, c has {n} entries")
    lower, upper = _bounds(bounds, n)
    comm.agree(bool(np.all(lower <= upper)), "lp: a lower bound exceeds its upper bound")
    scaled = [(*_row_scaled(A, _check_rhs(A, b, f"b_{kind}")), kind) for A, b, kind in mats]
    c_scale = max(float(np.abs(c).max(initial=0.0)), 1e-300)
    c_s = c / c_scale if c_scale > 1e-300 else c
    op = Stacked([MatrixOperator(A) for A, _, _ in scaled])
    rhs = np.concatenate([b for _, b, _ in scaled])
    is_ub = np.concatenate([np.full(b.shape[0], kind == "ub") for _, b, kind in scaled])
    b_norm = max(1.0, comm.allreduce_scalar(float(np.abs(rhs).max(initial=0.0)), "max"))

    def violation(Ax):
        d = Ax - rhs
        return np.where(is_ub, np.maximum(d, 0.0), np.abs(d))

    def residual(Ax):
        return comm.allreduce_scalar(float(violation(Ax).max(initial=0.0)), "max") / b_norm

    zero_tol = 1e-12

    def dual_measures(x, y):
        r = c_s + op.rmatvec(y)
        box_min, bad = _box_minimum(r, lower, upper, zero_tol)
        d = box_min - comm.allreduce_scalar(float(rhs @ y))
        p = float(c_s @ x)
        return bad / (1.0 + float(np.abs(c_s).max(initial=0.0))), abs(p - d) / (1.0 + abs(p) + abs(d)), d

    def optimality(x, Ax, y):
        dres, gap, _ = dual_measures(x, y)
        return max(dres, gap)

    def complementarity(x, Ax, y):
        return abs(comm.allreduce_scalar(float(y @ (Ax - rhs)))) / (1.0 + abs(float(c_s @ x)))

    f = P.LinearBox(c_s, lower, upper)
    dual_prox = P.LinearBox(rhs, np.where(is_ub, 0.0, -np.inf), np.inf)
    certificate = {}
    # Rows and c are scaled to unit size, so this absolute tolerance is a relative one.
    certificate_tol = 1e-6

    def watch(out):
        """Look for infeasibility and unboundedness certificates after each continuation step."""
        hist = out["history"]
        if len(hist["residual"]) < 2:
            return False
        # The dual iterates of an infeasible LP run off along a Farkas ray: their
        # last increment points along it (the bounded part cancels).
        ray = out["y"] - out["y_prev"]
        ray = np.where(is_ub, np.maximum(ray, 0.0), ray)
        rnorm = op.out_space.norm(ray)
        if hist["residual"][-1] > tol and rnorm > 0:
            d = ray / rnorm
            box_min, bad = _box_minimum(op.rmatvec(d), lower, upper, certificate_tol)
            farkas = box_min - comm.allreduce_scalar(float(rhs @ d))
            if bad == 0.0 and farkas > certificate_tol:
                certificate.update(status="infeasible", farkas=farkas)
                return True
        step = out["x"] - out["x_prev"]
        snorm = float(np.linalg.norm(step))
        if hist["residual"][-1] <= tol and snorm > 0:
            ray = step / snorm
            Ar = violation(op.matvec(ray) + rhs)
            ray_violation = comm.allreduce_scalar(float(Ar.max(initial=0.0)), "max")
            in_cone = (np.all(ray[np.isfinite(lower)] >= -certificate_tol)
                       and np.all(ray[np.isfinite(upper)] <= certificate_tol))
            descent = float(c_s @ ray)
            if ray_violation <= certificate_tol and in_cone and descent < -certificate_tol:
                certificate.update(status="unbounded", descent=descent)
                return True
        return False

    out = scd(f, op, dual_prox, mu, residual, optimality, complementarity, method=method, tol=tol,
              inner_max=inner_max, max_outer=max_outer, continuation=continuation, watch=watch)
    x, y = out["x"], out["y"]
    dres, gap, dual_obj = dual_measures(x, y)
    # Report on the original problem: violation relative to 1 + ‖b‖∞.
    raw_primal = 0.0
    for A, b, kind in mats:
        part = MatrixOperator(A).matvec(x) - _check_rhs(A, b)
        viol = np.maximum(part, 0.0) if kind == "ub" else np.abs(part)
        raw_primal = max(raw_primal, comm.allreduce_scalar(float(viol.max(initial=0.0)), "max")
                         / max(1.0, comm.allreduce_scalar(float(np.abs(b).max(initial=0.0)), "max")))
    status = certificate.get("status", out["status"])
    if status == "stopped":
        status = "max_iterations"
    # Multipliers in the original units: the scaled problem's y times the row
    # scaling and c's scale, negated into HiGHS's sensitivity convention.
    splits = np.cumsum([A.local_rows for A, _, _ in scaled])[:-1]
    duals = dict(zip([kind for _, _, kind in scaled], np.split(y, splits)))
    result = _finish(start, status, out["iterations"], x, float(c @ x), raw_primal, dres,
                     gap=gap, dual_objective=dual_obj * c_scale, outer=out["outer"],
                     history=out["history"], method=method, mu=mu,
                     reduced_costs=c_scale * (c_s + op.rmatvec(y)))
    for kind, (A, b, _) in zip(duals, mats):
        result[f"marginals_{kind}"] = -duals[kind] * _row_scale(A) * c_scale
    result.update({k: v for k, v in certificate.items() if k != "status"})
    return result


#: The LP methods of :func:`solve_lp`.
LP_METHODS = ("pdlp", "scd")


def solve_lp(problem, comm, method="pdlp", tol=1e-6, max_iter=100000, mu=1e-3, algorithm="AT",
             max_outer=500, inner_max=2000, presolve=True):
    """Solve an LP as :func:`hpcml.io.lp.read_lp` reads it and report it in the model's own terms.

    Parameters
    ----------
    problem : hpcml.io.lp.LPInput
    comm : hpcml.comm.Comm
    method : {"pdlp", "scd"}
        ``pdlp``: restarted primal–dual hybrid gradient
        (:func:`hpcml.optim.pdlp.pdlp`, limited by ``max_iter``);
        ``scd``: TFOCS's smoothed conic dual (:func:`lp`, with ``mu``,
        ``algorithm``, ``max_outer`` and ``inner_max``).
    tol : float
        Relative tolerance (each method's own measures).
    presolve : bool
        ``pdlp``: reduce the LP first (:mod:`hpcml.optim.presolve`).

    Returns
    -------
    dict
        The method's result with ``objective``, ``dual_objective`` and
        ``reduced_costs`` in the model's sense (maximised when the MPS file
        says so) and with its constant term.  An HDF5 model keeps
        ``marginals_eq`` and ``marginals_ub`` (this rank's rows); an MPS
        model gets instead ``marginals_rows``, replicated, one per
        constraint row of the file in its order
        (:meth:`~hpcml.io.mps.LinearProgram.row_marginals`).
    """
    if method == "pdlp":
        from hpcml.optim.pdlp import pdlp

        result = pdlp(problem.c, problem.A_eq, problem.b_eq, problem.A_ub, problem.b_ub, problem.bounds,
                      tol=tol, max_iter=max_iter, comm=comm, presolve=presolve)
    elif method == "scd":
        result = lp(problem.c, problem.A_eq, problem.b_eq, problem.A_ub, problem.b_ub, problem.bounds,
                    mu=mu, method=algorithm, tol=tol, max_outer=max_outer, inner_max=inner_max, comm=comm)
    else:
        raise InputError(f"unknown LP method {method!r} ({', '.join(LP_METHODS)})", collective=True)
    sense, offset = problem.sense, problem.offset
    result["objective"] = sense * (result["objective"] + offset)
    result["dual_objective"] = sense * (result["dual_objective"] + offset)
    result["reduced_costs"] = sense * result["reduced_costs"]
    if problem.model is not None:
        # The file's rows are split into equalities and ≤ rows; every rank needs
        # all of them to map the multipliers back.
        full = [comm.allgatherv(result.pop(key)) if key in result else np.zeros(0)
                for key in ("marginals_eq", "marginals_ub")]
        result["marginals_rows"] = problem.model.row_marginals(*full)
    return result


def _row_scale(A):
    """Inverse norms of this rank's rows (1 for empty rows)."""
    norms = A.row_norms()
    return np.where(norms > 0, 1.0 / np.where(norms > 0, norms, 1.0), 1.0)
