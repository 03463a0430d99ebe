"""LP families for bench/conic.py: transportation, diet, multicommodity flow, staircase, set cover.

Each generator returns ``(name, lp)`` with ``lp`` a dict of ``c``, ``A_eq``,
``b_eq``, ``A_ub``, ``b_ub`` (CSR or ``None``), ``lower``, ``upper``: the
form of :func:`hpcml.optim.pdlp.pdlp`.  All are feasible and bounded by
construction; the sizes are modest (the machine is shared).
"""

import numpy as np
import scipy.sparse as sp


def _lp(c, A_eq=None, b_eq=None, A_ub=None, b_ub=None, lower=0.0, upper=np.inf):
    n = c.size
    return {"c": np.asarray(c, float), "A_eq": None if A_eq is None else sp.csr_matrix(A_eq), "b_eq": b_eq,
            "A_ub": None if A_ub is None else sp.csr_matrix(A_ub), "b_ub": b_ub,
            "lower": np.broadcast_to(np.asarray(lower, float), (n,)).copy(),
            "upper": np.broadcast_to(np.asarray(upper, float), (n,)).copy()}


def transportation(rng, sources=60, sinks=80):
    """Ship from ``sources`` (supply ≤) to ``sinks`` (demand =) at Euclidean distances."""
    at = rng.random((sources, 2)), rng.random((sinks, 2))
    cost = np.linalg.norm(at[0][:, None, :] - at[1][None, :, :], axis=2).ravel()
    demand = rng.uniform(5, 15, sinks)
    supply = rng.uniform(5, 15, sources)
    supply *= 1.2 * demand.sum() / supply.sum()
    i = np.repeat(np.arange(sources), sinks)
    j = np.tile(np.arange(sinks), sources)
    n = sources * sinks
    rows = sp.csr_matrix((np.ones(n), (i, np.arange(n))), shape=(sources, n))
    cols = sp.csr_matrix((np.ones(n), (j, np.arange(n))), shape=(sinks, n))
    return f"transportation {sources}x{sinks}", _lp(cost, cols, demand, rows, supply)


def diet(rng, foods=2000, nutrients=120):
    """Cheapest diet meeting minimum and maximum nutrient levels, each food limited."""
    content = sp.random(nutrients, foods, density=0.3, format="csr", rng=rng) * 10
    price = rng.uniform(0.5, 3.0, foods)
    typical = content @ rng.uniform(0, 1, foods)
    A_ub = sp.vstack([-content, content[: nutrients // 3]], format="csr")
    b_ub = np.concatenate([-0.5 * typical, 1.5 * typical[: nutrients // 3]])
    return f"diet {foods} foods {nutrients} nutrients", _lp(price, A_ub=A_ub, b_ub=b_ub, upper=2.0)


def multicommodity_flow(rng, side=10, commodities=8):
    """Commodities routed on a ``side × side`` grid (arcs both ways) sharing arc capacities."""
    nodes = side * side
    arcs = []
    for r in range(side):
        for s in range(side):
            v = r * side + s
            if s + 1 < side:
                arcs += [(v, v + 1), (v + 1, v)]
            if r + 1 < side:
                arcs += [(v, v + side), (v + side, v)]
    arcs = np.array(arcs)
    a = len(arcs)
    incidence = sp.csr_matrix((np.r_[-np.ones(a), np.ones(a)], (np.r_[arcs[:, 0], arcs[:, 1]],
                                                                 np.r_[np.arange(a), np.arange(a)])),
                              shape=(nodes, a))
    A_eq = sp.block_diag([incidence] * commodities, format="csr")
    b_eq = np.zeros(nodes * commodities)
    demand = rng.uniform(1, 5, commodities)
    for k in range(commodities):
        s, t = rng.choice(nodes, 2, replace=False)
        b_eq[k * nodes + s] -= demand[k]
        b_eq[k * nodes + t] += demand[k]
    capacity = np.full(a, 0.6 * demand.sum())
    A_ub = sp.hstack([sp.identity(a)] * commodities, format="csr")
    cost = np.tile(rng.uniform(1, 10, a), commodities)
    return f"multicommodity flow {side}x{side}, {commodities} commodities", _lp(cost, A_eq, b_eq, A_ub, capacity)


def staircase(rng, periods=30, rows=20, cols=40):
    """Multi-period planning: period t couples its own block with period t − 1's (``A_t x_t + B_t x_{t−1} = b_t``)."""
    blocks = [[None] * periods for _ in range(periods)]
    for t in range(periods):
        blocks[t][t] = sp.random(rows, cols, density=0.3, format="csr", rng=rng, data_rvs=rng.standard_normal)
        if t:
            blocks[t][t - 1] = sp.random(rows, cols, density=0.1, format="csr", rng=rng,
                                         data_rvs=rng.standard_normal)
    A = sp.bmat(blocks, format="csr")
    x = np.where(rng.random(periods * cols) < 0.5, rng.random(periods * cols), 0.0)
    cost = rng.uniform(0.1, 1.0, periods * cols)
    return f"staircase {periods} periods of {rows}x{cols}", _lp(cost, A, A @ x, upper=5.0)


def set_cover(rng, elements=600, sets=2400, density=0.01):
    """LP relaxation of weighted set cover: every element covered at least once, 0 ≤ x ≤ 1."""
    member = sp.random(elements, sets, density=density, format="csr", rng=rng)
    member.data[:] = 1.0
    # Every element in at least two sets.
    extra = sp.csr_matrix((np.ones(2 * elements), (np.repeat(np.arange(elements), 2),
                                                  rng.integers(0, sets, 2 * elements))), shape=(elements, sets))
    member = ((member + extra) > 0).astype(float).tocsr()
    weight = rng.uniform(1, 3, sets)
    return f"set cover {elements}x{sets}", _lp(weight, A_ub=-member, b_ub=-np.ones(elements), upper=1.0)


def known_optimum(rng, rows=3000, cols=6000, density=0.002, inequalities=600):
    """A sparse Gaussian LP built around a known optimal pair (:func:`hpcml.optim.synthetic.random_lp`)."""
    from hpcml.optim.synthetic import random_lp

    lp = random_lp(rows, cols, density, rng, inequalities)
    out = _lp(lp["c"], lp["A_eq"], lp["b_eq"], lp["A_ub"], lp["b_ub"])
    out["known"] = lp["objective"]
    return f"random {rows}+{inequalities}x{cols} (known optimum)", out


def tfocs_shaped(rng, rows=2500, cols=5000, density=0.01):
    """TFOCS ``test_LinearProgram``'s shape and distributions (:func:`hpcml.optim.synthetic.tfocs_lp`)."""
    from hpcml.optim.synthetic import tfocs_lp

    lp = tfocs_lp(rows, cols, density, rng)
    out = _lp(lp["c"], lp["A_eq"], lp["b_eq"])
    out["known"] = lp["objective"]
    return f"TFOCS-shaped {rows}x{cols} (known optimum)", out


FAMILIES = (transportation, diet, multicommodity_flow, staircase, set_cover, known_optimum, tfocs_shaped)


def relative_kkt(lp, x, y_eq, y_ub):
    """PDLP's relative KKT error of ``(x, y)`` on the LP: the largest of its three relative parts.

    ``y`` follows HiGHS (``c = A_eqᵀy_eq + A_ubᵀy_ub + r``, ``y_ub ≤ 0``),
    as OR-Tools' PDLP and hpcml report it.  Primal: ‖row and bound
    violations‖₂ / (1 + ‖b‖₂); dual: ‖the part of ``r`` the bounds cannot
    absorb, and ``y_ub``'s wrong-signed part‖₂ / (1 + ‖c‖₂); gap:
    ``|cᵀx − dual objective| / (1 + |cᵀx| + |dual objective|)``.
    """
    c, lower, upper = lp["c"], lp["lower"], lp["upper"]
    primal, rhs, dual_rows, yb = [], [], [], 0.0
    r = c.copy()
    for kind, y in (("eq", y_eq), ("ub", y_ub)):
        A, b = lp[f"A_{kind}"], lp[f"b_{kind}"]
        if A is None:
            continue
        d = A @ x - b
        primal.append(d if kind == "eq" else np.maximum(d, 0))
        rhs.append(b)
        if kind == "ub":
            dual_rows.append(np.maximum(y, 0))
            y = np.minimum(y, 0)
        r -= A.T @ y
        yb += float(b @ y)
    primal.append(np.maximum(lower - x, 0))
    primal.append(np.maximum(x - upper, 0))
    lam = np.where(np.isfinite(lower), np.maximum(r, 0), 0) + np.where(np.isfinite(upper), np.minimum(r, 0), 0)
    dual_obj = yb + float(lam[lam > 0] @ lower[lam > 0]) + float(lam[lam < 0] @ upper[lam < 0])
    pobj = float(c @ x)
    parts = (np.linalg.norm(np.concatenate(primal)) / (1 + np.linalg.norm(np.concatenate(rhs))),
             np.linalg.norm(np.concatenate([r - lam, *dual_rows])) / (1 + np.linalg.norm(c)),
             abs(pobj - dual_obj) / (1 + abs(pobj) + abs(dual_obj)))
    return max(parts)


def ortools_pdlp(lp, tol, threads=1):
    """OR-Tools' PDLP on the LP at relative and absolute tolerance ``tol``: ``(seconds, x, y_eq, y_ub, iterations, status)``."""
    import time

    from ortools.pdlp import solve_log_pb2, solvers_pb2
    from ortools.pdlp.python import pdlp

    blocks = [lp[k] for k in ("A_eq", "A_ub") if lp[k] is not None]
    m_eq = 0 if lp["A_eq"] is None else lp["A_eq"].shape[0]
    m_ub = 0 if lp["A_ub"] is None else lp["A_ub"].shape[0]
    qp = pdlp.QuadraticProgram()
    qp.objective_vector = lp["c"]
    qp.constraint_matrix = sp.vstack(blocks, format="csc")
    qp.constraint_lower_bounds = np.concatenate([lp["b_eq"] if m_eq else [], np.full(m_ub, -np.inf)])
    qp.constraint_upper_bounds = np.concatenate([lp["b_eq"] if m_eq else [], lp["b_ub"] if m_ub else []])
    qp.variable_lower_bounds, qp.variable_upper_bounds = lp["lower"], lp["upper"]
    params = solvers_pb2.PrimalDualHybridGradientParams()
    params.num_threads = threads
    criteria = params.termination_criteria.simple_optimality_criteria
    criteria.eps_optimal_relative = criteria.eps_optimal_absolute = tol
    start = time.perf_counter()
    result = pdlp.primal_dual_hybrid_gradient(qp, params)
    seconds = time.perf_counter() - start
    y = np.asarray(result.dual_solution)
    status = solve_log_pb2.TerminationReason.Name(result.solve_log.termination_reason)
    return (seconds, np.asarray(result.primal_solution), y[:m_eq], y[m_eq:], result.solve_log.iteration_count,
            status.replace("TERMINATION_REASON_", "").lower())
