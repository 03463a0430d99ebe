"""A light LP presolve on the row-sharded constraint matrix, and its postsolve.

The LP is taken in the form the PDLP solver holds it: ``min cᵀx`` subject to
``K_i x = q_i`` (equality rows) or ``K_i x ≥ q_i`` (the others, multiplier
``y_i ≥ 0``) and ``l ≤ x ≤ u``, the rows of ``K`` sharded over the ranks,
``c``, ``l``, ``u`` replicated.  Rounds of four reductions, to a fixed point
(at most ``max_rounds``):

- **fixed variables** (``l_j = u_j``): their column moves into ``q`` and the
  objective's constant;
- **empty rows**: dropped when ``0 = q_i`` (``0 ≥ q_i``) holds, otherwise the
  LP is infeasible and the row is its Farkas certificate;
- **singleton rows** ``a x_j ≥ q_i`` (or ``=``): a bound on ``x_j``,
  intersected with the others; the row that gives the tightest bound *owns*
  it (for the postsolve); crossing bounds prove infeasibility;
- **empty columns**: fixed at the bound that minimises ``c_j x_j``; an
  infinite one is a primal ray ``∓e_j`` (unbounded once the rest is
  feasible).

Column facts (counts, singleton bounds from rows on several ranks) are
allreduced, so every rank takes the same decisions.  The postsolve gives the
original problem complete multipliers: removed rows get 0 except singleton
rows that own the active bound of their variable, which take that variable's
reduced cost (``y_i = r_j / a``), undone in the reverse order of the rounds.
"""

import numpy as np
import scipy.sparse as sp


class Presolved:
    """The reduced LP and what the postsolve needs.

    Attributes
    ----------
    K, q, is_eq, c, lower, upper
        The reduced LP (this rank's kept rows, the kept columns).
    constant : float
        Objective constant of the removed columns.
    rows, cols : numpy.ndarray of bool
        Kept rows (this rank's) and columns (replicated).
    x_fixed : numpy.ndarray
        Values of the removed columns (replicated).
    status : str
        ``reduced``, ``infeasible`` (``farkas`` holds this rank's rows of the
        certificate) or ``unbounded`` (``ray`` holds the primal ray; the reduced
        LP is still to be shown feasible).
    rows_removed, cols_removed, rounds : int
        Global counts.
    """


def _row_offset(m, comm):
    counts = np.zeros(comm.size, dtype=np.int64)
    counts[comm.rank] = m
    comm.allreduce(counts)
    return int(counts[:comm.rank].sum())


def presolve(K, q, is_eq, c, lower, upper, comm, max_rounds=8, tol=1e-9):
    """Reduce the LP ``min cᵀx, K x (=|≥) q, l ≤ x ≤ u``; collective.

    Parameters
    ----------
    K : numpy.ndarray or scipy.sparse matrix
        This rank's rows.
    q, is_eq : numpy.ndarray
        This rank's right-hand sides and which rows are equalities.
    c, lower, upper : numpy.ndarray
        Replicated.
    comm : hpcml.comm.Comm
    max_rounds : int
    tol : float
        Absolute slack for an empty row's feasibility and crossing bounds
        (relative to ``1 + |value|``).

    Returns
    -------
    Presolved
    """
    m, n = K.shape
    Kc = sp.csr_matrix(K, dtype=np.float64, copy=True)
    Kc.eliminate_zeros()
    row_of = np.repeat(np.arange(m), np.diff(Kc.indptr))
    offset = _row_offset(m, comm)
    q = np.array(q, dtype=np.float64)
    lower, upper = np.array(lower, dtype=np.float64), np.array(upper, dtype=np.float64)
    rows, cols = np.ones(m, bool), np.ones(n, bool)
    x_fixed, constant = np.zeros(n), 0.0
    # Owner of each column's lower/upper bound: a global row id (−1: the original
    # bound) and the round it was set in; the coefficient for the local owners.
    owner = {side: np.full(n, -1, dtype=np.int64) for side in ("lo", "up")}
    owner_round = {side: np.full(n, -1, dtype=np.int64) for side in ("lo", "up")}
    pre = Presolved()
    pre.status, ray, farkas = "reduced", np.zeros(n), None
    rounds = 0
    for rounds in range(1, max_rounds + 1):
        changed = False
        fix = cols & (lower == upper)
        if fix.any():
            x_fixed[fix] = lower[fix]
            q -= Kc[:, fix] @ lower[fix]
            constant += float(c[fix] @ lower[fix])
            cols &= ~fix
            changed = True
        active = cols[Kc.indices] & rows[row_of]
        counts = np.bincount(row_of[active], minlength=m)
        # Empty rows: 0 = q or 0 ≥ q must hold.
        empty = rows & (counts == 0)
        viol = empty & np.where(is_eq, np.abs(q) > tol * (1 + np.abs(q)), q > tol)
        first = np.where(viol, offset + np.arange(m), np.iinfo(np.int64).max)
        first = comm.allreduce(np.array([first.min() if m else np.iinfo(np.int64).max]), "min")[0]
        if first < np.iinfo(np.int64).max:
            farkas = np.zeros(m)
            if offset <= first < offset + m:
                i = first - offset
                farkas[i] = np.sign(q[i]) if is_eq[i] else 1.0
            pre.status = "infeasible"
            break
        rows &= ~empty
        # Singleton rows: bounds on their variable.
        single = rows & (counts == 1)
        ent = active & single[row_of]
        r_s, j_s, a_s = row_of[ent], Kc.indices[ent], Kc.data[ent]
        bound = q[r_s] / a_s
        is_lo = is_eq[r_s] | (a_s > 0)
        is_up = is_eq[r_s] | (a_s < 0)
        new = np.concatenate([np.full(n, -np.inf), np.full(n, -np.inf)])
        np.maximum.at(new, j_s[is_lo], bound[is_lo])
        np.maximum.at(new, n + j_s[is_up], -bound[is_up])
        comm.allreduce(new, "max")
        new_lo, new_up = new[:n], -new[n:]
        tighter = {"lo": new_lo > lower, "up": new_up < upper}
        # The owner: the lowest global row id among the rows giving the new bound.
        big = float(np.iinfo(np.int64).max)
        cand = np.full(2 * n, big)
        gid = (offset + r_s).astype(np.float64)
        win_lo = is_lo & tighter["lo"][j_s] & (bound == new_lo[j_s])
        win_up = is_up & tighter["up"][j_s] & (bound == new_up[j_s])
        np.minimum.at(cand, j_s[win_lo], gid[win_lo])
        np.minimum.at(cand, n + j_s[win_up], gid[win_up])
        comm.allreduce(cand, "min")
        for side, part, newb in (("lo", cand[:n], new_lo), ("up", cand[n:], new_up)):
            t = tighter[side]
            owner[side][t] = part[t].astype(np.int64)
            owner_round[side][t] = rounds
        lower = np.where(tighter["lo"], new_lo, lower)
        upper = np.where(tighter["up"], new_up, upper)
        rows &= ~single
        # Rows are local: whether any went is a global fact, so that all ranks run the same rounds.
        changed |= comm.allreduce_scalar(float(empty.sum() + single.sum())) > 0
        crossing = cols & (lower > upper)
        close = crossing & (lower - upper <= tol * (1 + np.abs(lower) + np.abs(upper)))
        lower[close] = upper[close] = 0.5 * (lower[close] + upper[close])
        crossing &= ~close
        if crossing.any():
            j = int(np.flatnonzero(crossing)[0])
            farkas = np.zeros(m)
            # d = e_lo/a_lo − e_up/a_up: Kᵀd has no x_j part, qᵀd = l_j − u_j > 0.
            for side, sign in (("lo", 1.0), ("up", -1.0)):
                g = owner[side][j]
                if offset <= g < offset + m:
                    farkas[g - offset] += sign / Kc[g - offset, j]
            pre.status = "infeasible"
            break
        # Empty columns: at the bound that minimises c_j x_j.
        active = cols[Kc.indices] & rows[row_of]
        col_count = comm.allreduce(np.bincount(Kc.indices[active], minlength=n).astype(np.float64))
        empty_cols = cols & (col_count == 0)
        if empty_cols.any():
            target = np.where(c > 0, lower, np.where(c < 0, upper, np.clip(0.0, lower, upper)))
            infinite = empty_cols & ~np.isfinite(target)
            ray[infinite] = -np.sign(c[infinite])
            target = np.where(infinite, np.clip(0.0, lower, upper), target)
            lower = np.where(empty_cols, target, lower)
            upper = np.where(empty_cols, target, upper)
            changed = True
        if not changed:
            break
    if pre.status == "reduced" and ray.any():
        pre.status = "unbounded"
    pre.K = K[rows][:, cols] if not sp.issparse(K) else sp.csr_matrix(K)[rows][:, cols]
    pre.q, pre.is_eq = q[rows], np.asarray(is_eq)[rows]
    pre.c, pre.lower, pre.upper = c[cols], lower[cols], upper[cols]
    pre.constant, pre.rows, pre.cols, pre.x_fixed = constant, rows, cols, x_fixed
    pre.farkas, pre.ray, pre.rounds = farkas, ray, rounds
    pre.rows_removed = int(comm.allreduce_scalar(float((~rows).sum())))
    pre.cols_removed = int((~cols).sum())
    pre._Kc, pre._offset, pre._owner, pre._owner_round, pre._comm = Kc, offset, owner, owner_round, comm
    return pre


def transfer(pre, y, c):
    """Complete row multipliers: the owners of active bounds take their variable's reduced cost.

    Parameters
    ----------
    pre : Presolved
    y : numpy.ndarray
        Multipliers of this rank's original rows (removed rows 0), updated.
    c : numpy.ndarray
        The cost (zeros to complete a Farkas ray).

    Returns
    -------
    (y, r)
        ``r = c − Kᵀy`` (replicated) on the original rows.
    """
    Kc, comm, offset, m = pre._Kc, pre._comm, pre._offset, pre._Kc.shape[0]
    KT = Kc.T                                   # a view: no copy of the matrix
    last = max(int(pre._owner_round["lo"].max()), int(pre._owner_round["up"].max()))
    for k in range(last, 0, -1):
        r = c - comm.allreduce(np.ascontiguousarray(KT @ y))
        for side, sign in (("lo", 1.0), ("up", -1.0)):
            g = pre._owner[side]
            js = np.flatnonzero((pre._owner_round[side] == k) & (sign * r > 0)
                                & (g >= offset) & (g < offset + m))
            if js.size:
                i = g[js] - offset
                y[i] += r[js] / np.asarray(Kc[i, js]).ravel()
    return y, c - comm.allreduce(np.ascontiguousarray(KT @ y))


def expand(pre, x_red, y_red):
    """The original problem's ``x`` (replicated) and row multipliers (this rank's) from the reduced ones."""
    x = pre.x_fixed.copy()
    x[pre.cols] = x_red
    y = np.zeros(pre.rows.shape[0])
    y[pre.rows] = y_red
    return x, y
