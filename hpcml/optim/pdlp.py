"""Linear programs by restarted primal–dual hybrid gradient (PDLP).

The method of Applegate et al., "Practical large-scale linear programming
using primal-dual hybrid gradient" (NeurIPS 2021), on a row-sharded
constraint matrix.  The LP

    minimise cᵀx  s.t.  A_eq x = b_eq,  A_ub x ≤ b_ub,  l ≤ x ≤ u

is written with ``K = [A_eq; −A_ub]``, ``q = [b_eq; −b_ub]`` as the saddle
point ``min_x max_y cᵀx − yᵀ(K x − q)`` over the box and ``y_ub ≥ 0``, and
solved by

- **diagonal preconditioning**: Ruiz equilibration (rows and columns to unit
  max-norm) followed by Pock–Chambolle (α = 1) scaling;
- **PDHG** steps ``x' = proj(x − τ(c − Kᵀy))``,
  ``y' = proj(y + σ(q − K(2x' − x)))`` with ``τ = η/ω``, ``σ = ηω``;
- an **adaptive step size** ``η`` (PDLP's rule: a step is accepted when
  ``η ≤ ‖Δz‖²_ω / (2 |Δyᵀ K Δx|)``);
- **adaptive restarts** on the KKT error, to the current or the averaged
  iterate, whichever is better (KKT-based as in cuPDLP, with
  OR-Tools PDLP's thresholds: sufficient decay 0.1, necessary decay 0.9
  without progress, artificial after 36% of all
  iterations), each followed by a **primal-weight update** ``ω``;
- **termination** on PDLP's relative KKT error: primal residual, dual
  residual and duality gap, measured on the original problem, each at most
  ``tol`` relative to ``1 + ‖q‖``, ``1 + ‖c‖`` and ``1 + |pobj| + |dobj|``;
- **infeasibility and unboundedness** from the difference between the
  iterate and the last restart point: a Farkas ray or a primal ray whose
  certificate is checked (on the original problem) before it is reported.

Distribution: the rows of ``K`` (and ``y``, ``q``) are sharded as the
:class:`~hpcml.distmat.DistMatrix` inputs are, ``x`` is replicated.  Each
step costs one product with ``K`` and one with ``Kᵀ``, whose allreduce of
an ``n``-vector also carries the one scalar the step-size rule needs
(``‖Δy‖²``); every 64 steps the KKT evaluation adds one allreduce of a few
scalars and the certificate check one product with ``Kᵀ``.  Every decision (step
acceptance, restart, stop) is taken from replicated values, so all ranks
take the same.
"""

import math
import time

import numpy as np
import scipy.sparse as sp

from hpcml.errors import InputError
from hpcml.kernels import pdhg
from hpcml.optim import presolve as _presolve

#: Steps between two KKT evaluations (PDLP's default).
EVALUATE_EVERY = 64
#: Restart criteria: OR-Tools PDLP's defaults (fewer steps than cuPDLP's 0.2 and 0.8 on the
#: staircase and set-cover LPs of bench/lp_suite.py: 8961 and 12741 against 11201 and 14341).
SUFFICIENT, NECESSARY, ARTIFICIAL = 0.1, 0.9, 0.36
#: Smoothing of the primal weight update.
PRIMAL_WEIGHT_SMOOTHING = 0.5


class _Problem:
    """The LP as this rank holds it: the local rows of ``K``, ``q``, which rows are equalities."""

    def __init__(self, c, mats, lower, upper, comm):
        blocks, rhs, eq = [], [], []
        sparse = any(A.issparse for A, _, _ in mats)
        for A, b, kind in mats:
            sign = 1.0 if kind == "eq" else -1.0
            local = A.local
            local = sp.csr_matrix(local, dtype=np.float64) if sparse else np.asarray(local, np.float64)
            blocks.append(sign * local)
            rhs.append(sign * np.asarray(b, dtype=np.float64))
            eq.append(np.full(A.local_rows, kind == "eq"))
        self.K = (sp.vstack(blocks, format="csr") if sparse else np.vstack(blocks))
        self.q = np.concatenate(rhs)
        self.is_eq = np.concatenate(eq)
        self.c, self.lower, self.upper, self.comm = c, lower, upper, comm
        self.n = c.shape[0]


def _abs_max_rows_cols(K, comm):
    """Max |K_ij| per local row and per column (allreduced)."""
    n = K.shape[1]
    if sp.issparse(K):
        absK = abs(K)
        rows = absK.max(axis=1).toarray().ravel() if K.shape[0] else np.zeros(0)
        cols = absK.max(axis=0).toarray().ravel() if K.shape[0] else np.zeros(n)
    else:
        absK = np.abs(K)
        rows = absK.max(axis=1) if K.shape[0] else np.zeros(0)
        cols = absK.max(axis=0) if K.shape[0] else np.zeros(n)
    return rows, comm.allreduce(np.ascontiguousarray(cols, dtype=np.float64), "max")


def _abs_sum_rows_cols(K, comm):
    """Σ |K_ij| per local row and per column (allreduced)."""
    absK = abs(K) if sp.issparse(K) else np.abs(K)
    rows = np.asarray(absK.sum(axis=1)).ravel()
    cols = np.asarray(absK.sum(axis=0)).ravel()
    if cols.shape[0] != K.shape[1]:
        cols = np.zeros(K.shape[1])
    return rows, comm.allreduce(np.ascontiguousarray(cols, dtype=np.float64))


def _scale(K, row, col):
    """``diag(row) K diag(col)``."""
    if sp.issparse(K):
        K = K.copy()
        K.data *= np.repeat(row, np.diff(K.indptr)) * col[K.indices]
        return K
    return K * row[:, None] * col[None, :]


def _inverse_sqrt(v):
    return np.where(v > 0, 1.0 / np.sqrt(np.where(v > 0, v, 1.0)), 1.0)


def precondition(K, comm, ruiz_iterations=10):
    """Ruiz equilibration then Pock–Chambolle (α = 1): ``(K̃, D_r, D_c)`` with ``K̃ = D_r K D_c``.

    Parameters
    ----------
    K : numpy.ndarray or scipy.sparse.csr_matrix
        This rank's rows.
    comm : hpcml.comm.Comm
    ruiz_iterations : int

    Returns
    -------
    K_scaled, row_scale, col_scale
        ``row_scale`` this rank's (length ``m_r``), ``col_scale`` replicated.
    """
    row_scale, col_scale = np.ones(K.shape[0]), np.ones(K.shape[1])
    for _ in range(ruiz_iterations):
        rows, cols = _abs_max_rows_cols(K, comm)
        r, s = _inverse_sqrt(rows), _inverse_sqrt(cols)
        K = _scale(K, r, s)
        row_scale *= r
        col_scale *= s
    rows, cols = _abs_sum_rows_cols(K, comm)
    r, s = _inverse_sqrt(rows), _inverse_sqrt(cols)
    return _scale(K, r, s), row_scale * r, col_scale * s


def _project_reduced_costs(r, lower, upper):
    """The part of the reduced costs ``r`` the bounds can absorb (PDLP's λ): 0 for a free variable."""
    lam = np.where(np.isfinite(lower), np.maximum(r, 0.0), 0.0)
    return lam + np.where(np.isfinite(upper), np.minimum(r, 0.0), 0.0)


def _bound_term(lam, lower, upper):
    """``Σ l_j λ_j⁺ + Σ u_j λ_j⁻`` over the finite bounds that carry λ."""
    lo = np.where(lam > 0, np.where(np.isfinite(lower), lower, 0.0), 0.0)
    up = np.where(lam < 0, np.where(np.isfinite(upper), upper, 0.0), 0.0)
    return float(lam @ lo + lam @ up)


class _Products:
    """``K x`` (this rank's rows) and ``Kᵀ y`` (allreduced) for this rank's block of the scaled ``K``.

    Not :class:`~hpcml.operator.MatrixOperator`: PDLP makes thousands of
    products with small blocks, where scipy's per-call checks (and the CSC
    view it builds for every ``Kᵀy``) cost more than the product.  A sparse
    block is kept twice, as CSR and as the CSR of its transpose, so that
    both products stream their matrix in order.
    """

    def __init__(self, K, comm):
        self.comm = comm
        self.sparse = sp.issparse(K)
        if self.sparse:
            self.K = sp.csr_matrix(K, dtype=np.float64)
            self.KT = sp.csr_matrix(self.K.T)
        else:
            self.K = np.ascontiguousarray(K, dtype=np.float64)

    def matvec(self, x):
        if self.sparse:
            out = np.empty(self.K.shape[0])
            pdhg._csr_matvec(self.K.indptr, self.K.indices, self.K.data, x, out)
            return out
        return self.K @ x

    def rmatvec(self, y, extra=None):
        """``Kᵀy``; with ``extra`` (a local scalar), ``(Kᵀy, Σ extra)`` from the same allreduce."""
        n = self.K.shape[1]
        out = np.empty(n + (extra is not None))
        if self.sparse:
            pdhg._csr_matvec(self.KT.indptr, self.KT.indices, self.KT.data, y, out[:n])
        else:
            out[:n] = self.K.T @ y
        if extra is None:
            return self.comm.allreduce(out)
        out[n] = extra
        self.comm.allreduce(out)
        return out[:n], out[n]


class _Point:
    """An iterate with its products: ``x``, ``y``, ``K x``, ``Kᵀ y`` (scaled space)."""

    __slots__ = ("x", "y", "Kx", "KTy")

    def __init__(self, x, y, Kx, KTy):
        self.x, self.y, self.Kx, self.KTy = x, y, Kx, KTy

    def copy(self):
        return _Point(self.x.copy(), self.y.copy(), self.Kx.copy(), self.KTy.copy())


def _box_minimum(r, lower, upper):
    """``Σ min_{l≤x≤u} rⱼxⱼ`` over the terms that are finite, and ‖r‖ over the terms that are −∞."""
    low = np.where(r > 0, lower, np.where(r < 0, upper, 0.0))
    infinite = (r != 0) & ~np.isfinite(low)
    finite = float(r[~infinite] @ np.where(infinite, 0.0, low)[~infinite])
    return finite, float(np.linalg.norm(r[infinite]))


def pdlp(c, A_eq=None, b_eq=None, A_ub=None, b_ub=None, bounds=None, tol=1e-6, max_iter=100000,
         certificate_tol=None, ruiz_iterations=10, comm=None, callback=None, presolve=True):
    """``minimise cᵀx`` s.t. ``A_eq x = b_eq``, ``A_ub x ≤ b_ub``, ``lower ≤ x ≤ upper`` by PDLP.

    Parameters
    ----------
    c : numpy.ndarray
        Replicated cost vector (length ``n``).
    A_eq, A_ub : hpcml.distmat.DistMatrix, optional
        Row-sharded constraint matrices; ``b_eq``, ``b_ub`` their local blocks.
    bounds : (lower, upper), optional
        Scalars or length-``n`` arrays, ``None``/±inf for none; default ``x ≥ 0``.
    tol : float
        Relative KKT tolerance (primal residual, dual residual, gap).
    max_iter : int
        Limit on PDHG steps (rejected step-size trials count too).
    certificate_tol : float, optional
        Relative accuracy of infeasibility and unboundedness certificates
        (default ``tol``): see :func:`_certificates`.
    ruiz_iterations : int
        Ruiz equilibration passes before Pock–Chambolle scaling.
    comm : hpcml.comm.Comm, optional
        Defaults to the matrices' communicator.
    callback : callable, optional
        ``callback(iteration, x)`` at each KKT evaluation on every rank;
        returning True stops with status ``max_iterations``.

    Returns
    -------
    dict
        As :func:`hpcml.optim.problems.lp`: ``x``, ``objective``,
        ``dual_objective``, ``primal_residual``, ``dual_residual``,
        ``gap`` (relative, PDLP's definitions), ``kkt`` (their maximum),
        ``iterations``, ``restarts``, ``status`` (``converged``,
        ``max_iterations``, ``infeasible``, ``unbounded``),
        ``seconds``, ``history``, ``reduced_costs`` (replicated) and
        ``marginals_eq`` / ``marginals_ub`` (this rank's rows) in HiGHS's
        sign convention: ``c = A_eqᵀλ_eq + A_ubᵀλ_ub + r``, ``λ_ub ≤ 0``.
        An infeasible LP adds its certificate: ``farkas_eq`` /
        ``farkas_ub`` (this rank's rows, ``d_ub ≤ 0``) with
        ``b_eqᵀd_eq + b_ubᵀd_ub > max_{l≤x≤u} (A_eqᵀd_eq + A_ubᵀd_ub)ᵀx``
        and ``farkas`` (that margin per unit ‖d‖); an unbounded one
        ``ray`` (replicated: ``A_eq ray = 0``, ``A_ub ray ≤ 0``, inside the
        bounds' recession cone, ``cᵀray < 0``) and ``descent``
        (``cᵀray/‖ray‖``).
    """
    from hpcml.optim.problems import _bounds, _check_rhs

    start = time.perf_counter()
    mats = [(A, b, kind) for A, b, kind in ((A_eq, b_eq, "eq"), (A_ub, b_ub, "ub")) if A is not None]
    if not mats:
        raise InputError("lp: no constraint rows (give A_eq and/or A_ub)", collective=True)
    comm = comm or mats[0][0].comm
    c = np.asarray(c, dtype=np.float64).ravel()
    n = c.shape[0]
    for A, b, kind in mats:
        comm.agree(A.shape[1] == n, f"lp: A_{kind} has {A.shape[1]} columns, c has {n} entries")
    mats = [(A, _check_rhs(A, b, f"b_{kind}"), kind) for A, b, kind in mats]
    lower, upper = _bounds(bounds, n)
    comm.agree(bool(np.all(lower <= upper)), "lp: a lower bound exceeds its upper bound")
    comm.agree(bool(np.all(lower < np.inf) and np.all(upper > -np.inf)),
               "lp: a lower bound of +inf or an upper bound of -inf")
    certificate_tol = tol if certificate_tol is None else certificate_tol
    prob = _Problem(c, mats, lower, upper, comm)
    settings = dict(tol=tol, max_iter=max_iter, certificate_tol=certificate_tol,
                    ruiz_iterations=ruiz_iterations, callback=callback)
    if not presolve:
        out = _solve(prob.K, prob.q, prob.is_eq, c, lower, upper, comm, **settings)
        return _result(out, mats, start, None)
    pre = _presolve.presolve(prob.K, prob.q, prob.is_eq, c, lower, upper, comm)
    return _result(_solve_presolved(prob, pre, settings), mats, start, pre)


def _solve_presolved(prob, pre, settings):
    """Solve the reduced LP of ``pre`` and map its point, multipliers and certificates back to ``prob``."""
    comm, c, lower, upper = prob.comm, prob.c, prob.lower, prob.upper
    norms = (math.sqrt(comm.allreduce_scalar(float(prob.q @ prob.q))), float(np.linalg.norm(c)))
    if pre.status == "infeasible":
        # Found by the presolve itself: no PDHG step.
        out = {"x": np.clip(np.zeros(prob.n), lower, upper), "y": np.zeros(prob.q.shape[0]),
               "status": "infeasible", "found": {"ray_rows": pre.farkas}, "iterations": 0, "restarts": 0,
               "history": {}}
    else:
        c_red = np.zeros_like(pre.c) if pre.status == "unbounded" else pre.c
        solve = _solve if pre.c.shape[0] else _solve_nothing
        out = solve(pre.K, pre.q, pre.is_eq, c_red, pre.lower, pre.upper, comm, norms=norms,
                     constant=pre.constant, **settings)
        out["x"], out["y"] = _presolve.expand(pre, out["x"], out["y"])
        found = out["found"]
        if "ray" in found:
            ray = np.zeros(prob.n)
            ray[pre.cols] = found["ray"]
            found["ray"] = ray
        if "ray_rows" in found:
            found["ray_rows"] = _presolve.expand(pre, np.zeros(pre.c.shape[0]), found["ray_rows"])[1]
        if pre.status == "unbounded":
            # The reduced LP was solved for feasibility (c = 0): an empty column's ray is then a proof.
            status = {"converged": "unbounded", "infeasible": "infeasible"}.get(out["status"], "max_iterations")
            if status == "unbounded":
                found.update(ray=pre.ray, descent=float(c @ pre.ray) / float(np.linalg.norm(pre.ray)))
            out["status"] = status
    found = out["found"]
    if "ray_rows" in found:
        d, _ = _presolve.transfer(pre, found["ray_rows"], np.zeros(prob.n))
        found["ray_rows"] = d
        margin, infinite, norm = _farkas_margin(prob, d)
        if margin > 0 and infinite <= settings["certificate_tol"] * margin:
            found["farkas"] = margin / norm
        else:
            # The mapped certificate does not hold on the original LP: no claim.
            out["status"] = "max_iterations"
            found.clear()
    y, reduced = _presolve.transfer(pre, out["y"], c)
    m = _measures_original(prob, out["x"], y, reduced, norms)
    if out["status"] == "converged" and max(m["rel"]) > settings["tol"]:
        out["status"] = "max_iterations"
    out.update(y=y, reduced=reduced, rel=m["rel"], pobj=m["pobj"], dobj=m["dobj"])
    return out


def _solve_nothing(K, q, is_eq, c, lower, upper, comm, norms, constant, **settings):
    """Every column removed: the point is known (its KKT error on the original LP is measured after)."""
    return {"x": np.zeros(0), "y": np.zeros(q.shape[0]), "status": "converged", "found": {}, "iterations": 0,
            "restarts": 0, "history": {}}


def _farkas_margin(prob, d):
    """``qᵀd + min_{l≤x≤u} (−Kᵀd)ᵀx`` (finite part), the norm of its infinite part, and ‖d‖."""
    comm = prob.comm
    KTd = comm.allreduce(np.ascontiguousarray(prob.K.T @ d, dtype=np.float64))
    sums = comm.allreduce(np.array([prob.q @ d, d @ d], dtype=np.float64))
    finite, infinite = _box_minimum(-KTd, prob.lower, prob.upper)
    return sums[0] + finite, infinite, math.sqrt(sums[1])


def _measures_original(prob, x, y, reduced, norms):
    """PDLP's relative KKT pieces of ``(x, y)`` on the original LP, ``reduced = c − Kᵀy``."""
    comm, c, lower, upper = prob.comm, prob.c, prob.lower, prob.upper
    res = prob.q - prob.K @ x
    res = np.where(prob.is_eq, res, np.maximum(res, 0.0))
    sums = comm.allreduce(np.array([res @ res, prob.q @ y], dtype=np.float64))
    lam = _project_reduced_costs(reduced, lower, upper)
    pobj = float(c @ x)
    dobj = sums[1] + _bound_term(lam, lower, upper)
    gap = abs(pobj - dobj)
    rel = (math.sqrt(sums[0]) / (1 + norms[0]), float(np.linalg.norm(reduced - lam)) / (1 + norms[1]),
           gap / (1 + abs(pobj) + abs(dobj)))
    return dict(rel=rel, pobj=pobj, dobj=dobj)


def _solve(K, q, is_eq, c, lower, upper, comm, tol, max_iter, certificate_tol, ruiz_iterations, callback,
           norms=None, constant=0.0):
    """PDLP on ``min cᵀx + constant, K x (=|≥) q, l ≤ x ≤ u`` (this rank's rows of K); collective.

    ``norms`` (‖q‖, ‖c‖) of the LP the tolerances are relative to (default
    this one's).  Returns ``x``, ``y`` (this rank's rows, ``y_ub ≥ 0``),
    ``reduced`` (``c − Kᵀy``), ``status``, ``found`` (certificates: ``ray_rows``
    and ``farkas``, or ``ray`` and ``descent``), ``rel``, ``pobj``, ``dobj``,
    ``iterations``, ``restarts``, ``history``.
    """
    start = time.perf_counter()
    n = c.shape[0]
    Ks, Dr, Dc = precondition(K, comm, ruiz_iterations)
    op = _Products(Ks, comm)
    is_eq, q = np.ascontiguousarray(is_eq), np.ascontiguousarray(q, dtype=np.float64)
    cs, qs = Dc * c, Dr * q
    ls, us = lower / Dc, upper / Dc
    q_norm = math.sqrt(comm.allreduce_scalar(float(q @ q)))
    c_norm = float(np.linalg.norm(c))
    if norms is not None:
        q_norm, c_norm = norms
    qs_norm = math.sqrt(comm.allreduce_scalar(float(qs @ qs)))
    cs_norm = float(np.linalg.norm(cs))
    max_entry = comm.allreduce_scalar(float(abs(Ks).max() if Ks.shape[0] and (
        not sp.issparse(Ks) or Ks.nnz) else 0.0), "max")

    def measures(p, extra=()):
        """KKT pieces of a point, original and scaled, with one allreduce of a few scalars."""
        x, Kx, y = Dc * p.x, p.Kx / Dr, Dr * p.y
        res = q - Kx
        res = np.where(is_eq, res, np.maximum(res, 0.0))
        res_s = Dr * res
        sums = np.array([res @ res, res_s @ res_s, q @ y, *extra], dtype=np.float64)
        comm.allreduce(sums)
        r = c - p.KTy / Dc
        lam = _project_reduced_costs(r, lower, upper)
        pobj = float(c @ x) + constant
        dobj = sums[2] + _bound_term(lam, lower, upper) + constant
        dres, dres_s = r - lam, Dc * (r - lam)
        gap = abs(pobj - dobj)
        rel = (math.sqrt(sums[0]) / (1 + q_norm), float(np.linalg.norm(dres)) / (1 + c_norm),
               gap / (1 + abs(pobj) + abs(dobj)))
        return dict(rel=rel, pobj=pobj, dobj=dobj, sums=sums,
                    scaled=(math.sqrt(sums[1]), float(np.linalg.norm(dres_s)), gap))

    def restart_kkt(m, omega):
        pr, dr, gap = m["scaled"]
        return math.sqrt(omega * pr * pr + dr * dr / omega + gap * gap)

    x0 = np.clip(np.zeros(n), ls, us)
    cur = _Point(x0, np.zeros(q.shape[0]), op.matvec(x0), np.zeros(n))
    omega = cs_norm / qs_norm if cs_norm > 1e-10 and qs_norm > 1e-10 else 1.0
    eta = 1.0 / max_entry if max_entry > 0 else 1.0
    last = cur.copy()                       # the last restart point
    avg = _Point(np.zeros(n), np.zeros(q.shape[0]), np.zeros(q.shape[0]), np.zeros(n))
    weight = 0.0
    kkt_last = restart_kkt(measures(cur), omega)
    kkt_previous = math.inf
    iterations, since_restart, restarts = 0, 0, 0
    history = {"iteration": [], "primal": [], "dual": [], "gap": [], "step": [], "primal_weight": []}
    status, found, best = "max_iterations", {}, None
    check_infeasible = q.shape[0] > 0 or n > 0
    # The kernels' arguments were checked once (contiguous float64 vectors); the
    # loop calls them directly, without their wrappers' checks.
    for v in (cs, ls, us, qs):
        pdhg._vectors(v)
    while True:
        # One accepted PDHG step (rejected trials cost their products too).
        while True:
            tau, sigma = eta / omega, eta * omega
            x_new = np.empty(n)
            pdhg._primal_step(cur.x, cur.KTy, cs, ls, us, tau, x_new)
            Kx_new = op.matvec(x_new)
            y_new = np.empty(q.shape[0])
            dy2 = pdhg._dual_step(cur.y, qs, Kx_new, cur.Kx, is_eq, sigma, y_new)
            # ‖Δy‖² rides on Kᵀy's allreduce: one collective per step.
            KTy_new, dy2 = op.rmatvec(y_new, dy2)
            iterations += 1
            comm.mark_iteration()
            dx2, interaction = pdhg._movement(x_new, cur.x, KTy_new, cur.KTy)
            movement = 0.5 * omega * dx2 + 0.5 * dy2 / omega
            interaction = abs(interaction)
            limit = movement / interaction if interaction > 0 else math.inf
            k = iterations
            new_eta = min((1 - (k + 1) ** -0.3) * limit, (1 + (k + 1) ** -0.6) * eta)
            accepted = eta <= limit
            step = eta
            eta = new_eta
            if accepted or iterations >= max_iter:
                break
        if accepted:
            cur = _Point(x_new, y_new, Kx_new, KTy_new)
            since_restart += 1
            weight += step
            for name in _Point.__slots__:
                pdhg._average(getattr(avg, name), getattr(cur, name), step / weight)
        done = iterations >= max_iter
        if since_restart % EVALUATE_EVERY and not done:
            continue
        # -- evaluation: KKT of the current and averaged points ----------------------------
        dy_cur, dy_avg = cur.y - last.y, avg.y - last.y
        m_cur = measures(cur, (dy_cur @ dy_cur, dy_avg @ dy_avg))
        m_avg = measures(avg) if weight > 0 else m_cur
        kkt_cur, kkt_avg = restart_kkt(m_cur, omega), restart_kkt(m_avg, omega)
        use_avg = weight > 0 and kkt_avg < kkt_cur
        cand, m_cand, kkt_cand = (avg, m_avg, kkt_avg) if use_avg else (cur, m_cur, kkt_cur)
        for key, value in zip(history, (iterations, *m_cand["rel"], eta, omega)):
            history[key].append(value)
        if max(m_cand["rel"]) <= tol:
            status, best = "converged", (cand, m_cand)
            break
        if best is None or max(m_cand["rel"]) < max(best[1]["rel"]):
            best = (cand.copy(), m_cand)
        if check_infeasible:
            found = _certificates(cur, last, Dr, Dc, q, is_eq, c, lower, upper, op, comm, certificate_tol)
            if found:
                status = found.pop("status")
                break
        if done or (callback is not None and callback(iterations, Dc * cand.x)):
            break
        restart = (kkt_cand <= SUFFICIENT * kkt_last
                   or (kkt_cand <= NECESSARY * kkt_last and kkt_cand > kkt_previous)
                   or since_restart >= ARTIFICIAL * iterations)
        kkt_previous = kkt_cand
        if restart:
            dx_norm = float(np.linalg.norm(cand.x - last.x))
            dy_norm = math.sqrt(m_cur["sums"][4 if use_avg else 3])
            if dx_norm > 1e-10 and dy_norm > 1e-10:
                omega = math.exp(PRIMAL_WEIGHT_SMOOTHING * math.log(dy_norm / dx_norm)
                                 + (1 - PRIMAL_WEIGHT_SMOOTHING) * math.log(omega))
            cur = cand.copy() if use_avg else cur
            last = cur.copy()
            avg = _Point(np.zeros(n), np.zeros(q.shape[0]), np.zeros(q.shape[0]), np.zeros(n))
            weight, since_restart, restarts = 0.0, 0, restarts + 1
            kkt_last = restart_kkt(measures(cur), omega)
            kkt_previous = math.inf

    if status == "ray":
        # A primal ray proves unboundedness only with a feasible point: look for
        # one (the same LP with c = 0) in the steps left.
        feasible = _solve(K, q, is_eq, np.zeros(n), lower, upper, comm, tol=tol,
                          max_iter=max(max_iter - iterations, 1), certificate_tol=certificate_tol,
                          ruiz_iterations=ruiz_iterations, callback=None, norms=norms)
        iterations += feasible["iterations"]
        status = {"converged": "unbounded", "infeasible": "infeasible"}.get(feasible["status"],
                                                                         "max_iterations")
        if status != "max_iterations":
            found.update({k: v for k, v in feasible["found"].items() if k in ("farkas", "ray_rows")})
            if status == "infeasible":
                found.pop("ray")
                found.pop("descent")
            # Report the feasible point, measured on the LP itself.
            cur = _Point(feasible["x"] / Dc, cur.y, op.matvec(feasible["x"] / Dc), cur.KTy)
    point, m = best if status in ("converged", "max_iterations") else (cur, measures(cur))
    return {"x": Dc * point.x, "y": Dr * point.y, "reduced": c - point.KTy / Dc, "status": status,
            "found": found, "rel": m["rel"], "pobj": m["pobj"], "dobj": m["dobj"], "iterations": iterations,
            "restarts": restarts, "history": history, "seconds": time.perf_counter() - start}


def _result(out, mats, start, pre):
    """The public result of :func:`pdlp` from a solve's ``out`` (multipliers split per matrix, HiGHS's signs)."""
    primal, dual, gap = out["rel"]
    result = {
        "x": out["x"], "objective": out["pobj"], "dual_objective": out["dobj"], "primal_residual": primal,
        "dual_residual": dual, "gap": gap, "kkt": max(primal, dual, gap), "iterations": out["iterations"],
        "restarts": out["restarts"], "outer": out["restarts"], "status": out["status"], "method": "pdlp",
        "history": out["history"], "reduced_costs": out["reduced"],
        "seconds": time.perf_counter() - start,
    }
    if pre is not None:
        result["presolve"] = {"rows_removed": pre.rows_removed, "columns_removed": pre.cols_removed,
                              "rounds": pre.rounds}
    found = dict(out["found"])
    ray_rows = found.pop("ray_rows", None)
    result.update(found)
    y = out["y"]
    offset = 0
    for A, _, kind in mats:
        part = y[offset:offset + A.local_rows]
        # K's rows are [A_eq; −A_ub] with y_ub ≥ 0: HiGHS's λ_ub = −y_ub ≤ 0.
        result[f"marginals_{kind}"] = part.copy() if kind == "eq" else -part
        if ray_rows is not None:
            # The Farkas ray in the same convention (d_ub ≤ 0): b_eqᵀd_eq + b_ubᵀd_ub
            # exceeds the maximum of (A_eqᵀd_eq + A_ubᵀd_ub)ᵀx over the box.
            ray = ray_rows[offset:offset + A.local_rows]
            result[f"farkas_{kind}"] = ray.copy() if kind == "eq" else -ray
        offset += A.local_rows
    return result


def _certificates(cur, last, Dr, Dc, q, is_eq, c, lower, upper, op, comm, tol):
    """Look for a Farkas ray (infeasible) or a primal ray (no optimum) in the iterates.

    The candidates are the iterate itself and its difference from the last
    restart point (PDLP's): when the LP is infeasible ``y`` runs off along a
    Farkas ray, when it has no optimum ``x`` runs off along a primal ray.
    A dual ray ``d`` (``d_ub ≥ 0``) proves infeasibility when
    ``qᵀd + min_{l≤x≤u} (−Kᵀd)ᵀx > 0``, the part of ``Kᵀd`` that points
    at infinite bounds at most ``tol`` times that margin.  A primal ray
    ``d`` proves that a feasible LP is unbounded when ``cᵀd < 0``,
    ``K_eq d = 0``, ``K_ub d ≥ 0`` and ``d`` is in the bounds' recession
    cone, to ``tol·|cᵀd|``.  Collective.

    Returns
    -------
    dict
        ``{}``, or ``status`` (``infeasible`` with ``farkas`` and
        ``ray_rows``, or ``ray`` with ``descent`` and ``ray``).
    """
    # Dual candidates: y (Kᵀy known) and its increment, whose inequality part is
    # clipped into the cone so that the Farkas argument holds (Kᵀd by one product).
    y = Dr * cur.y
    d = Dr * (cur.y - last.y)
    d = np.where(is_eq, d, np.maximum(d, 0.0))
    duals = [(y, cur.KTy / Dc), (d, op.rmatvec(d / Dr) / Dc)]
    # Primal candidates: x and its increment (K d from the products already made).
    primals = [(Dc * cur.x, cur.Kx / Dr), (Dc * (cur.x - last.x), (cur.Kx - last.Kx) / Dr)]
    sums = []
    for ray, _ in duals:
        sums += [q @ ray, ray @ ray]
    for _, Kray in primals:
        viol = np.where(is_eq, Kray, np.minimum(Kray, 0.0))
        sums.append(viol @ viol)
    sums = comm.allreduce(np.array(sums, dtype=np.float64))
    for k, (ray, KTray) in enumerate(duals):
        if sums[2 * k + 1] > 0:
            finite, infinite = _box_minimum(-KTray, lower, upper)
            margin = sums[2 * k] + finite
            if margin > 0 and infinite <= tol * margin:
                return {"status": "infeasible", "farkas": margin / math.sqrt(sums[2 * k + 1]), "ray_rows": ray}
    for k, (ray, _) in enumerate(primals):
        descent = float(c @ ray)
        if descent < 0:
            cone = np.concatenate([np.minimum(ray[np.isfinite(lower)], 0.0),
                                   np.maximum(ray[np.isfinite(upper)], 0.0)])
            if math.sqrt(sums[4 + k] + float(cone @ cone)) <= tol * abs(descent):
                return {"status": "ray", "descent": descent / float(np.linalg.norm(ray)), "ray": ray}
    return {}
