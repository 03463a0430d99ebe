"""PDLP on uneven and empty shards: random LPs against HiGHS, statuses and certificates."""

import os
import sys

import numpy as np
import scipy.sparse as sp

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from hpcml.comm import Comm  # noqa: E402
from hpcml.distmat import DistMatrix  # noqa: E402
from hpcml.optim.pdlp import pdlp  # noqa: E402
from lp_random import (check_farkas, check_ray, general_lp, highs, infeasible_lp, presolvable_lp,  # noqa: E402
                       unbounded_lp)

comm = Comm.world()
p = comm.size


def solve(lp, **kw):
    mats = {}
    for kind in ("eq", "ub"):
        A = lp[f"A_{kind}"]
        if A is None:
            mats[kind] = (None, None)
            continue
        D = DistMatrix.from_global(A, comm)
        mats[kind] = (D, lp[f"b_{kind}"][D.row_offset:D.row_offset + D.local_rows])
    return pdlp(lp["c"], *mats["eq"], *mats["ub"], (lp["lower"], lp["upper"]), comm=comm, **kw)


def gathered(out, key):
    return comm.allgatherv(np.ascontiguousarray(out[key]))


# Row counts p·k + 1 (uneven shards) and 2 rows of ≤ (an empty shard at 3 ranks).
for seed in range(3):
    lp = general_lp(seed, m_eq=p * 2 + 1, m_ub=2, n=12)
    ref = highs(lp)
    out = solve(lp, tol=1e-9)
    assert ref.status == 0 and out["status"] == "converged", (seed, out["status"])
    assert abs(out["objective"] - ref.fun) <= 1e-6 * max(1.0, abs(ref.fun)), (seed, out["objective"], ref.fun)
    # Every rank holds the same x (replicated), and the same status.
    assert comm.allgather_obj(out["x"].tobytes()).count(out["x"].tobytes()) == p
    assert gathered(out, "marginals_eq").shape == (p * 2 + 1,)
for seed in range(1):
    lp = infeasible_lp(seed)
    out = solve(lp)
    assert out["status"] == "infeasible", out["status"]
    check_farkas(lp, {k: gathered(out, k) for k in ("farkas_eq", "farkas_ub")})
    lp = unbounded_lp(seed)
    out = solve(lp)
    assert out["status"] == "unbounded", out["status"]
    check_ray(lp, out["ray"])
# The presolve on shards: singleton rows of one variable on different ranks, an
# equality block of one row (empty shards at 3 ranks).
for seed in range(2):
    lp = presolvable_lp(seed)
    if seed:
        lp.update(A_eq=lp["A_eq"][2:], b_eq=lp["b_eq"][2:])
    ref = highs(lp)
    out = solve(lp, tol=1e-9)
    assert ref.status == 0 and out["status"] == "converged", (seed, out["status"])
    assert abs(out["objective"] - ref.fun) <= 1e-7 * max(1.0, abs(ref.fun)), (seed, out["objective"], ref.fun)
    assert out["presolve"]["rows_removed"] >= 5, out["presolve"]
    ub = gathered(out, "marginals_ub")
    assert np.abs(ub[3:6] - ref.ineqlin.marginals[3:6]).max() <= 1e-6, (ub[3:6], ref.ineqlin.marginals[3:6])
    assert comm.allgather_obj(out["x"].tobytes()).count(out["x"].tobytes()) == p
# An empty row as the only reduction, on one rank: every rank must run the same rounds.
lp = general_lp(1, m_eq=p * 2 + 1, m_ub=2, n=12)
lp.update(A_ub=sp.vstack([lp["A_ub"], sp.csr_matrix((1, 12))], format="csr"), b_ub=np.append(lp["b_ub"], 1.0))
ref = highs(lp)
out = solve(lp, tol=1e-9)
assert ref.status == 0 and out["status"] == "converged", out["status"]
assert out["presolve"]["rows_removed"] == 1 and abs(out["objective"] - ref.fun) <= 1e-6 * max(1.0, abs(ref.fun))
for case in ("empty_row", "crossing"):
    lp = presolvable_lp(0, case)
    out = solve(lp)
    assert out["status"] == "infeasible" and out["iterations"] == 0, (case, out["status"])
    check_farkas(lp, {k: gathered(out, k) for k in ("farkas_eq", "farkas_ub")})
lp = presolvable_lp(0, "unbounded_column")
out = solve(lp)
assert out["status"] == "unbounded", out["status"]
check_ray(lp, out["ray"])
print("ok", file=sys.stderr)
