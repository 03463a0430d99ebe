"""Accelerated first-order methods for ``minimise f(L x + b) + h(x)``.

The four methods of TFOCS share one loop: Auslender–Teboulle (``AT``, the
default), Nesterov 1983 / FISTA (``N83``), proximal gradient (``GRA``) and
Lan–Lu–Monteiro (``LLM``).  As in TFOCS:

- the Lipschitz constant is estimated by backtracking: every iteration first
  lowers the estimate by ``alpha`` (0.9) and raises it by ``1/beta`` (2) or
  to the local estimate until the quadratic upper bound holds; when the
  second-order change of ``f`` drowns in round-off the local estimate comes
  from the change of the gradient instead;
- ``L x`` at the extrapolated points is formed from linear combinations of
  earlier products, so an iteration costs one product with ``L`` and one
  with its adjoint; the combinations drift, so they are recomputed exactly
  every ``recompute_every`` iterations;
- momentum is reset by the gradient test of O'Donoghue and Candès.

Every scalar that steers the iteration (values, inner products, norms) is
summed over the ranks in one allreduce per iteration, so all ranks take the
same steps and stop at the same iteration.
"""

import math
import time

import numpy as np

from hpcml.comm import Comm
from hpcml.errors import InputError
from hpcml.space import Space

METHODS = ("AT", "N83", "GRA", "LLM")
#: Below this size, relative to ``f``, the second-order term
#: ``f(x) − f(y) − <x − y, ∇f(y)>`` of the value-based Lipschitz test drowns
#: in round-off, and the test uses the change of the gradient instead.
#: (TFOCS compares the change of ``f`` itself with 1e-10; near the optimum
#: that change is still resolved when its second-order part is not, and the
#: estimate of L then jumps and stops the iteration early.)
BACKTRACK_TOL = 1e-12


class Result:
    """What a solve returns.

    Attributes
    ----------
    x : numpy.ndarray
        The solution (this rank's block when the variable is sharded).
    objective : float
        ``f(L x + b) + h(x)`` at ``x``, recomputed exactly.
    iterations : int
    status : str
        ``converged`` (relative change below ``tol``), ``max_iterations`` or
        ``stalled`` (no finite progress possible: the step vanished before
        the tolerance was met, or the Lipschitz estimate blew up).
    history : dict of lists
        Per iteration: ``objective``, ``step`` (relative change of x),
        ``L`` (Lipschitz estimate), ``theta``, ``restart`` (0/1).
    seconds : float
    Lx : numpy.ndarray
        ``L x + b`` at the solution (exact).
    """

    def __init__(self, **fields):
        self.__dict__.update(fields)

    def __repr__(self):
        return (f"Result(status={self.status!r}, objective={self.objective:.12g}, "
                f"iterations={self.iterations})")


class _Scalars:
    """The spaces whose partials (:meth:`Space.partial`) make up the batch of
    scalars of an iteration, summed in one allreduce by :meth:`total`.

    When nothing is sharded and ``h`` is separable every rank computes every
    scalar in full, and one space of this process alone replaces them all:
    no message.
    """

    def __init__(self, X, Z, h):
        if X.sharded or Z.sharded or not h.separable:
            self.X, self.Z, self.full = X, Z, Space(X.comm, sharded=False)
        else:
            self.X = self.Z = self.full = Space(Comm.self_comm(), sharded=False)

    def total(self, partials):
        return self.full.total(*partials)


def _h_value(h, x, scalars):
    value = h.value(x)
    return scalars.X.partial(value) if h.separable else scalars.full.partial(value)


def minimize(smooth, linop, h, x0=None, offset=None, method="AT", tol=1e-8, max_iter=1000,
             L0=None, Lexact=None, beta=0.5, alpha=0.9, restart="gradient", recompute_every=50,
             callback=None):
    """Minimise ``f(L x + b) + h(x)``.

    Parameters
    ----------
    smooth : hpcml.optim.smooth.Smooth
        ``f``, evaluated on ``L x + b`` (in ``linop.out_space``).
    linop : hpcml.operator.Operator
    h : hpcml.optim.prox.Prox
        Prox-capable part, on ``x`` (in ``linop.in_space``).
    x0 : numpy.ndarray, optional
        Start (this rank's block when sharded); zeros by default.
    offset : numpy.ndarray, optional
        ``b`` (this rank's block of the output space).
    method : {"AT", "N83", "GRA", "LLM"}
    tol : float
        Stop when ``‖x_k − x_{k−1}‖ ≤ tol · max(1, ‖x_k‖)``.
    max_iter : int
    L0 : float, optional
        Initial Lipschitz estimate; by default the change of the gradient
        over a small step from ``x0`` (one extra product and adjoint).
    Lexact : float, optional
        Known Lipschitz constant: backtracking never goes above it.
    beta, alpha : float
        Backtracking factors (TFOCS: 0.5 and 0.9).
    restart : {"gradient", None}
        Momentum reset by the gradient test (accelerated methods only).
    recompute_every : int
        Recompute ``L x`` exactly every this many iterations (0: never).
    callback : callable, optional
        ``callback(k, x, objective, Lx) -> bool`` (``Lx`` is ``L x + b``),
        called on every rank with the same arguments; returning True stops
        with status ``stopped`` (the caller's own test: a stop signal, or
        the primal feasibility of an SCD subproblem).

    Returns
    -------
    Result
    """
    if method not in METHODS:
        raise InputError(f"unknown method {method!r}; expected one of {', '.join(METHODS)}")
    if not 0 < beta < 1 or not 0 < alpha <= 1:
        raise InputError(f"need 0 < beta < 1 and 0 < alpha <= 1, got beta={beta}, alpha={alpha}")
    if tol < 0 or max_iter < 0:
        raise InputError("tol and max_iter must be >= 0")
    start_time = time.perf_counter()
    X, Z = linop.in_space, linop.out_space
    scalars = _Scalars(X, Z, h)
    x = np.zeros(linop.local_in) if x0 is None else np.array(x0, dtype=np.float64)
    off = 0.0 if offset is None else np.asarray(offset, dtype=np.float64)
    accelerated = method != "GRA"

    def apply(v):
        return linop.matvec(v) + off

    A_x = apply(x)
    if L0 is None:
        L0 = _initial_lipschitz(smooth, linop, x, A_x, apply, scalars)
    L = min(float(L0), Lexact) if Lexact else float(L0)
    z, A_z = x.copy(), A_x.copy()
    theta = math.inf
    history = {"objective": [], "step": [], "L": [], "theta": [], "restart": []}
    status = "max_iterations"
    k = 0
    for k in range(1, max_iter + 1):
        x_old, z_old, Ax_old, Az_old = x, z, A_x, A_z
        L_old, theta_old = L, theta
        L = L * alpha
        while True:
            theta = 1.0 if not accelerated else 2.0 / (1.0 + math.sqrt(1.0 + 4.0 * (L / L_old) / theta_old ** 2))
            if theta == 1.0:
                y, A_y = z_old, Az_old
            else:
                y = (1 - theta) * x_old + theta * z_old
                A_y = (1 - theta) * Ax_old + theta * Az_old
            fy_local, gz = smooth.local(A_y)
            g_y = linop.rmatvec(gz)
            if method == "AT":
                step = 1.0 / (theta * L)
                z, _ = h.prox(z_old - step * g_y, step)
                A_z = apply(z)
                x = (1 - theta) * x_old + theta * z
                A_x = (1 - theta) * Ax_old + theta * A_z
            elif method == "LLM":
                step = 1.0 / (theta * L)
                z, _ = h.prox(z_old - step * g_y, step)
                A_z = apply(z)
                x, _ = h.prox(y - g_y / L, 1.0 / L)
                A_x = apply(x)
            else:
                x, _ = h.prox(y - g_y / L, 1.0 / L)
                A_x = apply(x)
                if method == "N83":
                    z = x_old + (x - x_old) / theta
                    A_z = Ax_old + (A_x - Ax_old) / theta
                else:
                    z, A_z = x, A_x
            fx_local, gx_z = smooth.local(A_x)
            xy = x - y
            dx = x - x_old
            sums = scalars.total([
                scalars.Z.partial(fy_local), scalars.Z.partial(fx_local),
                scalars.X.partial(xy @ g_y), scalars.X.partial(xy @ xy),
                scalars.X.partial(dx @ dx), scalars.X.partial(x @ x),
                scalars.X.partial((y - x) @ dx), _h_value(h, x, scalars),
            ])
            f_y, f_x, xy_g, xy_sq, dx_sq, x_sq, restart_test, h_x = sums
            if xy_sq <= 0 or not math.isfinite(f_x):
                break
            curvature = f_x - f_y - xy_g
            if abs(curvature) >= BACKTRACK_TOL * max(abs(f_x), abs(f_y)):
                local_L = 2.0 * curvature / xy_sq
            else:
                g_x = linop.rmatvec(gx_z)
                local_L = scalars.total([scalars.X.partial(xy @ (g_x - g_y))])[0] / xy_sq
            if local_L <= L * (1 + 1e-12) or (Lexact and L >= Lexact):
                break
            L = max(local_L, L / beta)
            if Lexact:
                L = min(L, Lexact)
            if not math.isfinite(L) or L > 1e300:
                break
        objective = f_x + h_x
        restarted = False
        if accelerated and restart == "gradient" and restart_test > 0:
            z, A_z, theta, restarted = x, A_x, math.inf, True
        if recompute_every and k % recompute_every == 0:
            A_x = apply(x)
            A_z = A_x if z is x else apply(z)
        rel_step = math.sqrt(max(dx_sq, 0.0)) / max(1.0, math.sqrt(max(x_sq, 0.0)))
        history["objective"].append(objective)
        history["step"].append(rel_step)
        history["L"].append(L)
        history["theta"].append(theta if math.isfinite(theta) else 1.0)
        history["restart"].append(int(restarted))
        if not math.isfinite(objective) or not math.isfinite(L) or L > 1e300:
            status = "stalled"
            break
        if rel_step <= tol:
            status = "converged"
            break
        if callback is not None and callback(k, x, objective, A_x):
            status = "stopped"
            break
    A_x = apply(x)
    f_local, _ = smooth.local(A_x)
    final = scalars.total([scalars.Z.partial(f_local), _h_value(h, x, scalars)])
    return Result(x=x, objective=float(final[0] + final[1]), iterations=k if max_iter else 0,
                  status=status, history=history, L=L, seconds=time.perf_counter() - start_time,
                  Lx=A_x, method=method)


def _initial_lipschitz(smooth, linop, x, A_x, apply, scalars):
    """The change of the gradient over a small step from ``x`` (TFOCS starts from a guess)."""
    _, gz = smooth.local(A_x)
    g = linop.rmatvec(gz)
    g_sq = scalars.total([scalars.X.partial(g @ g), scalars.X.partial(x @ x)])
    scale = 1e-3 * max(1.0, math.sqrt(g_sq[1])) / max(math.sqrt(g_sq[0]), 1e-300)
    x2 = x - scale * g if g_sq[0] > 0 else x + 1e-3
    _, gz2 = smooth.local(apply(x2))
    g2 = linop.rmatvec(gz2)
    d = x2 - x
    num, den = scalars.total([scalars.X.partial((g2 - g) @ (g2 - g)), scalars.X.partial(d @ d)])
    if den <= 0 or num <= 0:
        return 1.0
    return math.sqrt(num / den)
