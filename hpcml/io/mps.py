"""MPS files (free and fixed format) as linear programs.

Sections: NAME, OBJSENSE (MIN/MAX, on its line or the next), ROWS (N, E, L,
G), COLUMNS (integer variables, between MARKER lines or by BV, LI, UI
bounds, are refused unless the LP relaxation is asked for), RHS (an entry on the objective row is
minus a constant term), RANGES, BOUNDS (UP, LO, FX, FR, MI, PL, BV, LI,
UI) and ENDATA.  Fixed format takes fields from their columns (so names may
hold spaces) and ignores text beyond column 61; free format splits on white
space.  As in files found in public collections: a field that starts with
``$`` begins a comment; a blank name field in COLUMNS or BOUNDS (fixed
format) repeats the previous line's column; N rows after the first are free
rows, dropped with their entries.  Malformed input raises
:class:`~hpcml.errors.InputError` naming the file and line.
"""

import math

import numpy as np
import scipy.sparse as sp

from hpcml.errors import InputError

_FIXED_FIELDS = ((1, 3), (4, 12), (14, 22), (24, 36), (39, 47), (49, 61))
_SECTIONS = {"NAME", "OBJSENSE", "OBJSENSE MAX", "OBJSENSE MIN", "ROWS", "COLUMNS", "RHS",
             "RANGES", "BOUNDS", "ENDATA"}


class LinearProgram:
    """An LP as read: ``minimise cᵀx + offset`` s.t. ``row_lower ≤ A x ≤ row_upper``, ``lower ≤ x ≤ upper``.

    ``sense`` is ``+1`` (minimise) or ``-1`` (the file maximised; ``c`` and
    ``offset`` are already negated so that the problem is a minimisation).
    """

    def __init__(self, name, c, offset, A, row_lower, row_upper, lower, upper, sense,
                 row_names, col_names, n_integer=0):
        self.name, self.c, self.offset, self.A = name, c, offset, A
        self.row_lower, self.row_upper, self.lower, self.upper = row_lower, row_upper, lower, upper
        self.sense, self.row_names, self.col_names = sense, row_names, col_names
        #: Integer variables whose integrality was dropped (read with ``relax=True``).
        self.n_integer = n_integer

    def standard_rows(self):
        """``(A_eq, b_eq, A_ub, b_ub)`` as CSR matrices: equalities, then ``≤`` rows.

        A ``≥`` row becomes a negated ``≤`` row and a ranged row gives two.
        """
        A = self.A.tocsr()
        eq = np.flatnonzero(self.row_lower == self.row_upper)
        up = np.flatnonzero((self.row_lower != self.row_upper) & np.isfinite(self.row_upper))
        lo = np.flatnonzero((self.row_lower != self.row_upper) & np.isfinite(self.row_lower))
        A_ub = sp.vstack([A[up], -A[lo]]).tocsr()
        b_ub = np.concatenate([self.row_upper[up], -self.row_lower[lo]])
        return A[eq], self.row_upper[eq], A_ub, b_ub

    def row_marginals(self, marginals_eq, marginals_ub):
        """Multipliers of :meth:`standard_rows`' rows back on the file's rows.

        Parameters
        ----------
        marginals_eq, marginals_ub : numpy.ndarray
            Sensitivities of the minimised objective to ``b_eq`` and
            ``b_ub`` (all rows, in :meth:`standard_rows`' order).

        Returns
        -------
        numpy.ndarray
            One value per row of ``A``: the sensitivity of the file's
            objective (its own sense) to the row's active bound.  A ``≥``
            row was negated, so its multiplier changes sign; a ranged row
            sums its two halves (at most one is nonzero at an optimum);
            a free row gets 0.
        """
        eq = np.flatnonzero(self.row_lower == self.row_upper)
        up = np.flatnonzero((self.row_lower != self.row_upper) & np.isfinite(self.row_upper))
        lo = np.flatnonzero((self.row_lower != self.row_upper) & np.isfinite(self.row_lower))
        rows = np.zeros(self.A.shape[0])
        rows[eq] = marginals_eq
        np.add.at(rows, up, marginals_ub[:up.size])
        np.add.at(rows, lo, -np.asarray(marginals_ub[up.size:]))
        return self.sense * rows


def _number(text, path, lineno):
    try:
        value = float(text)
    except ValueError:
        raise InputError(f"{path}:{lineno}: expected a number, got {text!r}") from None
    if math.isnan(value):
        raise InputError(f"{path}:{lineno}: NaN is not allowed")
    return value


def _fields(line, fmt):
    """The line's fields; in fixed format the type field (columns 2-3) is dropped when blank."""
    if fmt == "free":
        fields = line.split()
    else:
        comment = line.find(" $", 12)   # a comment after the first name field, wherever it starts
        if comment >= 0:
            line = line[:comment]
        fields = [line[a:b].strip() for a, b in _FIXED_FIELDS]
    # A field that starts with "$" opens a comment (the fixed format's columns 15 and 40).
    for k, field in enumerate(fields):
        if field.startswith("$"):
            del fields[k:]
            break
    while fields and not fields[-1]:
        fields.pop()
    if fmt == "free" or (fields and fields[0]):
        return fields
    return fields[1:]


def read_mps(path, fmt="free", relax=False):
    """Read an MPS file.

    Parameters
    ----------
    path : str
    fmt : {"free", "fixed"}
    relax : bool
        Read a model with integer variables as its LP relaxation (their
        count is kept in ``n_integer``) instead of refusing it.

    Returns
    -------
    LinearProgram

    Raises
    ------
    InputError
        Missing file, unknown section, unknown row or column names, bad
        numbers or bound types, a missing ENDATA — with the line number.
    """
    if fmt not in ("free", "fixed"):
        raise InputError(f"MPS format must be free or fixed, got {fmt!r}")
    try:
        with open(path) as handle:
            lines = handle.read().splitlines()
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read ({exc})") from None

    name, section, sense = "", None, 1.0
    objective, row_kind, row_index, free_rows = None, [], {}, set()
    col_index, col_names, entries = {}, [], []      # (row, col, value)
    cost = {}
    rhs, ranges, bounds = {}, {}, []
    offset, ended = 0.0, False
    integer, in_integer, first_integer_line = set(), False, None
    last_column = None

    def row_of(rname, lineno):
        """The row's index, -1 for the objective, -2 for a free row (its entries are dropped)."""
        if rname == objective:
            return -1
        if rname in free_rows:
            return -2
        if rname not in row_index:
            raise InputError(f"{path}:{lineno}: unknown row {rname!r}")
        return row_index[rname]

    def col_of(cname, lineno):
        if cname not in col_index:
            raise InputError(f"{path}:{lineno}: unknown column {cname!r}")
        return col_index[cname]

    for lineno, raw in enumerate(lines, start=1):
        if not raw.strip() or raw.startswith("*"):
            continue
        if not raw[0].isspace():
            words = raw.split()
            head = words[0].upper()
            if head == "NAME":
                name, section = " ".join(words[1:]), "NAME"
            elif head == "OBJSENSE":
                section = "OBJSENSE"
                if len(words) > 1:
                    sense = _sense(words[1], path, lineno)
            elif head in _SECTIONS:
                section = head
                if head == "ENDATA":
                    ended = True
                    break
            elif section == "OBJSENSE" and head in ("MAX", "MIN", "MAXIMIZE", "MINIMIZE"):
                sense = _sense(head, path, lineno)
            else:
                raise InputError(f"{path}:{lineno}: unknown section {words[0]!r}")
            continue
        fields = _fields(raw, fmt)
        if section == "OBJSENSE":
            sense = _sense(fields[0], path, lineno)
        elif section == "ROWS":
            if len(fields) != 2:
                raise InputError(f"{path}:{lineno}: a ROWS line needs a type and a name")
            kind, rname = fields[0].upper(), fields[1]
            if kind not in ("N", "E", "L", "G"):
                raise InputError(f"{path}:{lineno}: unknown row type {fields[0]!r} (N, E, L or G)")
            if kind == "N":
                if objective is None:
                    objective = rname
                elif rname != objective:
                    free_rows.add(rname)   # further free rows are dropped, as by most readers
                continue
            if rname in row_index:
                raise InputError(f"{path}:{lineno}: row {rname!r} defined twice")
            row_index[rname] = len(row_kind)
            row_kind.append(kind)
        elif section == "COLUMNS":
            if len(fields) >= 3 and fields[1].strip("'").upper() == "MARKER":
                in_integer = fields[2].strip("'").upper() == "INTORG"
                first_integer_line = first_integer_line or (lineno if in_integer else None)
                continue
            if len(fields) not in (3, 5):
                raise InputError(f"{path}:{lineno}: a COLUMNS line needs a column and 1 or 2 "
                                 f"(row, value) pairs")
            cname = fields[0]
            if not cname:
                if not col_names:
                    raise InputError(f"{path}:{lineno}: a blank column name on the first COLUMNS line")
                cname = last_column     # fixed format: the previous line's column
            last_column = cname
            if cname not in col_index:
                col_index[cname] = len(col_names)
                col_names.append(cname)
            j = col_index[cname]
            if in_integer:
                integer.add(j)
            for rname, text in zip(fields[1::2], fields[2::2]):
                value = _number(text, path, lineno)
                i = row_of(rname, lineno)
                if i == -1:
                    cost[j] = cost.get(j, 0.0) + value
                elif i >= 0:
                    entries.append((i, j, value))
        elif section in ("RHS", "RANGES"):
            if len(fields) not in (2, 3, 4, 5):
                raise InputError(f"{path}:{lineno}: a {section} line needs (row, value) pairs")
            pairs = fields[1:] if len(fields) % 2 == 1 else fields
            for rname, text in zip(pairs[0::2], pairs[1::2]):
                value = _number(text, path, lineno)
                i = row_of(rname, lineno)
                if i == -2:
                    continue
                if section == "RHS":
                    if i < 0:
                        offset = -value
                    else:
                        rhs[i] = value
                elif i < 0:
                    raise InputError(f"{path}:{lineno}: a range on the objective row")
                else:
                    ranges[i] = value
        elif section == "BOUNDS":
            kind = fields[0].upper() if fields else ""
            if len(fields) < 2 or (len(fields) < 3 and kind not in ("FR", "MI", "PL", "BV")):
                raise InputError(f"{path}:{lineno}: a BOUNDS line needs a type, a set name and a column")
            if kind in ("FR", "MI", "PL", "BV"):
                if fmt == "fixed":
                    cname, value = (fields[2] if len(fields) > 2 else ""), None
                else:
                    cname, value = fields[min(2, len(fields) - 1)], None
            else:
                if len(fields) < 4:
                    raise InputError(f"{path}:{lineno}: bound type {kind} needs a value")
                cname, value = fields[2], _number(fields[3], path, lineno)
            if not cname and bounds:
                cname = col_names[bounds[-1][1]]   # fixed format: the previous line's column
            if kind not in ("UP", "LO", "FX", "FR", "MI", "PL", "BV", "LI", "UI"):
                raise InputError(f"{path}:{lineno}: unknown bound type {fields[0]!r}")
            bounds.append((kind, col_of(cname, lineno), value, lineno))
            if kind in ("BV", "LI", "UI"):
                integer.add(bounds[-1][1])
                first_integer_line = first_integer_line or lineno
        elif section is None:
            raise InputError(f"{path}:{lineno}: data before the first section")
        else:
            raise InputError(f"{path}:{lineno}: unexpected data in section {section}")
    if not ended:
        raise InputError(f"{path}: no ENDATA line (truncated file?)")
    if objective is None:
        raise InputError(f"{path}: no objective row (a ROWS line of type N)")
    m, n = len(row_kind), len(col_names)
    if n == 0:
        raise InputError(f"{path}: no columns")
    rows = np.array([e[0] for e in entries], dtype=np.int64)
    cols = np.array([e[1] for e in entries], dtype=np.int64)
    vals = np.array([e[2] for e in entries], dtype=np.float64)
    A = sp.csr_matrix((vals, (rows, cols)), shape=(m, n))
    c = np.zeros(n)
    for j, value in cost.items():
        c[j] = value
    row_lower, row_upper = np.empty(m), np.empty(m)
    for i, kind in enumerate(row_kind):
        b = rhs.get(i, 0.0)
        r = ranges.get(i)
        if kind == "E":
            lo = hi = b
            if r is not None:
                lo, hi = (b, b + abs(r)) if r >= 0 else (b + r, b)
        elif kind == "L":
            lo, hi = (-np.inf if r is None else b - abs(r)), b
        else:
            lo, hi = b, (np.inf if r is None else b + abs(r))
        row_lower[i], row_upper[i] = lo, hi
    lower, upper = np.zeros(n), np.full(n, np.inf)
    for kind, j, value, lineno in bounds:
        if kind in ("UP", "UI"):
            upper[j] = value
            if value < 0 and lower[j] == 0:
                lower[j] = -np.inf   # the MPS convention for a negative upper bound
        elif kind in ("LO", "LI"):
            lower[j] = value
        elif kind == "FX":
            lower[j] = upper[j] = value
        elif kind == "FR":
            lower[j], upper[j] = -np.inf, np.inf
        elif kind == "MI":
            lower[j] = -np.inf
        elif kind == "PL":
            upper[j] = np.inf
        elif kind == "BV":
            lower[j], upper[j] = 0.0, 1.0
    bad = np.flatnonzero(lower > upper)
    if bad.size:
        raise InputError(f"{path}: column {col_names[bad[0]]!r} has lower bound {lower[bad[0]]} "
                         f"above its upper bound {upper[bad[0]]}")
    if integer and not relax:
        raise InputError(f"{path}:{first_integer_line}: {len(integer)} integer variable(s) (MARKER "
                         "INTORG, or BV/LI/UI bounds): hpcml solves linear programs; pass --relax to "
                         "solve the LP relaxation")
    return LinearProgram(name, sense * c, sense * offset, A, row_lower, row_upper, lower, upper,
                         sense, list(row_index), col_names, len(integer))


def _sense(word, path, lineno):
    word = word.upper()
    if word in ("MAX", "MAXIMIZE"):
        return -1.0
    if word in ("MIN", "MINIMIZE"):
        return 1.0
    raise InputError(f"{path}:{lineno}: OBJSENSE must be MIN or MAX, got {word!r}")


def write_mps(path, c, A, row_lower, row_upper, lower=None, upper=None, name="LP"):
    """Write an LP in free MPS (for tests and generators); ``A`` dense or sparse."""
    A = sp.csc_matrix(A)
    m, n = A.shape
    lower = np.zeros(n) if lower is None else np.broadcast_to(lower, (n,))
    upper = np.full(n, np.inf) if upper is None else np.broadcast_to(upper, (n,))
    out = [f"NAME {name}", "ROWS", " N obj"]
    kinds = []
    for i in range(m):
        lo, hi = row_lower[i], row_upper[i]
        kinds.append("E" if lo == hi else "L" if np.isfinite(hi) else "G")
        out.append(f" {kinds[-1]} r{i}")
    out.append("COLUMNS")
    for j in range(n):
        if c[j]:
            out.append(f" x{j} obj {float(c[j])!r}")
        for k in range(A.indptr[j], A.indptr[j + 1]):
            out.append(f" x{j} r{A.indices[k]} {float(A.data[k])!r}")
        if not c[j] and A.indptr[j] == A.indptr[j + 1]:
            out.append(f" x{j} obj 0")
    out.append("RHS")
    ranges = []
    for i in range(m):
        lo, hi = row_lower[i], row_upper[i]
        value = hi if kinds[i] in ("E", "L") else lo
        out.append(f" rhs r{i} {float(value)!r}")
        if kinds[i] != "E" and np.isfinite(lo) and np.isfinite(hi):
            ranges.append(f" rng r{i} {float(hi - lo)!r}")
    if ranges:
        out += ["RANGES", *ranges]
    out.append("BOUNDS")
    for j in range(n):
        lo, hi = lower[j], upper[j]
        if lo == hi:
            out.append(f" FX bnd x{j} {float(lo)!r}")
            continue
        if not np.isfinite(lo) and not np.isfinite(hi):
            out.append(f" FR bnd x{j}")
            continue
        if lo != 0:
            out.append(f" {'MI' if not np.isfinite(lo) else 'LO'} bnd x{j}" + (f" {float(lo)!r}" if np.isfinite(lo) else ""))
        if np.isfinite(hi):
            out.append(f" UP bnd x{j} {float(hi)!r}")
    out.append("ENDATA")
    with open(path, "w") as handle:
        handle.write("\n".join(out) + "\n")
