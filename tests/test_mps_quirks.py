"""MPS files as they are found in public collections and written by LP writers: each quirk in a small file."""

import numpy as np
import pytest

from hpcml.errors import InputError
from hpcml.io.mps import read_mps
from lp_models import CLASSIC, fixed_format


def _fixed(*fields):
    """One fixed-format data line: fields at columns 2, 5, 15, 25, 40, 50 (1-based)."""
    row = ""
    for start, word in zip((1, 4, 14, 24, 39, 49), fields):
        row = row.ljust(start) + word
    return row


def _read(tmp_path, text, fmt="free"):
    (tmp_path / "q.mps").write_text(text)
    return read_mps(tmp_path / "q.mps", fmt)


def test_fixed_format_comments_and_text_beyond_column_61(tmp_path):
    reference = _read(tmp_path, CLASSIC["testlp"])
    lines = fixed_format(CLASSIC["testlp"]).splitlines()
    quirky = []
    for line in lines:
        if line.startswith(" ") and len(line) < 40:
            line = line.ljust(39) + "$ a comment after the fields"
        elif line.startswith(" "):
            line = line.ljust(61) + "  SEQ0001 text beyond column 61"
        quirky.append(line)
    got = _read(tmp_path, "\n".join(quirky) + "\n", "fixed")
    for key in ("c", "row_lower", "row_upper", "lower", "upper"):
        assert np.array_equal(getattr(got, key), getattr(reference, key)), key
    assert (got.A != reference.A).nnz == 0
    # A comment that starts right after a short field, not at column 40.
    text = fixed_format(CLASSIC["testlp"]).replace(_fixed("", "ZTHREE", "COST", "-1.0", "MYEQN", "1.0"),
                                                   _fixed("", "ZTHREE", "COST", "-1.0") + "  $ MYEQN 5")
    got = _read(tmp_path, text, "fixed")
    assert got.A[2, 2] == 0 and got.c[2] == -1.0
    # The same comment in free format.
    got = _read(tmp_path, CLASSIC["testlp"].replace(" RHS MYEQN 7.0", " RHS MYEQN 7.0 $ seven"))
    assert got.row_lower[2] == 7.0


def test_blank_name_fields_repeat_the_previous_line(tmp_path):
    text = "\n".join([
        "NAME          BLANKS",
        "ROWS",
        _fixed("N", "COST"), _fixed("L", "LIM1"), _fixed("G", "LIM2"),
        "COLUMNS",
        _fixed("", "X", "COST", "1.0", "LIM1", "1.0"),
        _fixed("", "", "LIM2", "2.0"),                 # column X again
        _fixed("", "Y", "COST", "3.0"),
        _fixed("", "", "LIM1", "4.0", "LIM2", "5.0"),  # column Y again
        "RHS",
        _fixed("", "", "LIM1", "10.0"),                # no set name
        _fixed("", "", "LIM2", "1.0"),
        "RANGES",
        _fixed("", "", "LIM1", "4.0"),
        "BOUNDS",
        _fixed("UP", "BND", "X", "6.0"),
        _fixed("LO", "", "", "-2.0"),                   # set and column of the line before
        _fixed("UP", "", "Y", "7.0"),
        "ENDATA", ""])
    lp = _read(tmp_path, text, "fixed")
    assert lp.col_names == ["X", "Y"]
    assert np.array_equal(lp.A.toarray(), [[1, 4], [2, 5]]) and np.array_equal(lp.c, [1, 3])
    assert np.array_equal(lp.row_lower, [6, 1]) and np.array_equal(lp.row_upper, [10, np.inf])
    assert np.array_equal(lp.lower, [-2, 0]) and np.array_equal(lp.upper, [6, 7])
    with pytest.raises(InputError, match=r"q.mps:7: a blank column name on the first COLUMNS line"):
        _read(tmp_path, text.replace(_fixed("", "X", "COST", "1.0", "LIM1", "1.0"),
                                     _fixed("", "", "COST", "1.0", "LIM1", "1.0")), "fixed")


def test_further_n_rows_are_free_rows_dropped(tmp_path):
    text = CLASSIC["testlp"].replace(" N COST", " N COST\n N MILES\n N WEIGHT").replace(
        " XONE LIM2 1.0", " XONE LIM2 1.0 MILES 7.5").replace(
        " ZTHREE COST -1.0 MYEQN 1.0", " ZTHREE COST -1.0 MYEQN 1.0\n ZTHREE WEIGHT 2").replace(
        " RHS MYEQN 7.0", " RHS MYEQN 7.0 MILES 3\nRANGES\n RNG WEIGHT 1.0", 1).replace(
        "RANGES\n RNG LIM1", " RNG LIM1", 1)
    reference, got = _read(tmp_path, CLASSIC["testlp"]), _read(tmp_path, text)
    assert got.A.shape == reference.A.shape and (got.A != reference.A).nnz == 0
    for key in ("c", "row_lower", "row_upper"):
        assert np.array_equal(getattr(got, key), getattr(reference, key)), key
    assert got.row_names == reference.row_names
    # A row name still has to be known.
    with pytest.raises(InputError, match=r"q.mps:\d+: unknown row 'KM'"):
        _read(tmp_path, text.replace("MILES 7.5", "KM 7.5"))


def test_rhs_on_the_objective_row_is_minus_its_constant(tmp_path):
    lp = _read(tmp_path, CLASSIC["testlp"].replace(" RHS MYEQN 7.0", " RHS MYEQN 7.0 COST -2.5"))
    assert lp.offset == 2.5
    maxi = _read(tmp_path, CLASSIC["wyndor"].replace("RHS\n", "RHS\n RHS PROFIT 4\n"))
    # A maximised file: the stored minimisation is -(3x + 5y - 4), offset +4.
    assert maxi.sense == -1 and maxi.offset == 4.0
    from scipy.optimize import linprog
    A_eq, b_eq, A_ub, b_ub = maxi.standard_rows()
    ref = linprog(maxi.c, A_ub=A_ub.toarray(), b_ub=b_ub, bounds=list(zip(maxi.lower, maxi.upper)),
                  method="highs")
    assert maxi.sense * (ref.fun + maxi.offset) == pytest.approx(36 - 4)
