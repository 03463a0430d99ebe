"""Small classic LPs written as MPS text, shared by the serial and the MPI tests."""

# A textbook example with L, G, E rows, a range and three bound types.
TESTLP = """NAME TESTLP
ROWS
 N COST
 L LIM1
 G LIM2
 E MYEQN
COLUMNS
 XONE COST 1.0 LIM1 1.0
 XONE LIM2 1.0
 YTWO COST 2.0 LIM1 1.0
 YTWO MYEQN -1.0
 ZTHREE COST -1.0 MYEQN 1.0
RHS
 RHS LIM1 4.0 LIM2 1.0
 RHS MYEQN 7.0
RANGES
 RNG LIM1 2.5
BOUNDS
 UP BND XONE 4.0
 LO BND YTWO -1.0
 UP BND YTWO 1.0
ENDATA
"""

# Hillier & Lieberman's Wyndor Glass problem: maximise 3x + 5y (optimum 36 at (2, 6)).
WYNDOR = """NAME WYNDOR
OBJSENSE
    MAX
ROWS
 N PROFIT
 L PLANT1
 L PLANT2
 L PLANT3
COLUMNS
 X PROFIT 3 PLANT1 1
 X PLANT3 3
 Y PROFIT 5 PLANT2 2
 Y PLANT3 2
RHS
 RHS PLANT1 4 PLANT2 12
 RHS PLANT3 18
ENDATA
"""

# A diet-style covering problem with G rows, a free variable fixed by an equality and an
# objective constant (RHS on the objective row is minus the constant).
DIET = """NAME DIET
ROWS
 N COST
 G PROT
 G CARB
 G FAT
 E TIE
COLUMNS
 BREAD COST 2.0 PROT 4.0
 BREAD CARB 7.0 FAT 1.0
 MILK COST 3.5 PROT 8.0
 MILK CARB 5.0 FAT 5.0
 BEANS COST 8.0 PROT 22.0
 BEANS CARB 9.0 FAT 2.0
 FREE COST 1.0 TIE 1.0
 BREAD TIE -1.0
RHS
 RHS PROT 40.0 CARB 50.0
 RHS FAT 15.0 COST -10.0
BOUNDS
 FR BND FREE
 UP BND BEANS 3.0
ENDATA
"""

# Infeasible: x + y <= 1 and x + y >= 3.
INFEASIBLE = """NAME INFEAS
ROWS
 N OBJ
 L R1
 G R2
COLUMNS
 X OBJ 1 R1 1
 X R2 1
 Y OBJ 1 R1 1
 Y R2 1
RHS
 RHS R1 1 R2 3
ENDATA
"""

# Unbounded: minimise -x subject to x - y = 0, x, y >= 0.
UNBOUNDED = """NAME UNBND
ROWS
 N OBJ
 E R1
COLUMNS
 X OBJ -1 R1 1
 Y R1 -1
RHS
 RHS R1 0
ENDATA
"""

CLASSIC = {"testlp": TESTLP, "wyndor": WYNDOR, "diet": DIET}


def fixed_format(text):
    """The same model in fixed MPS columns (fields at columns 2, 5, 15, 25, 40, 50)."""
    starts = (1, 4, 14, 24, 39, 49)
    out = []
    for line in text.splitlines():
        if not line or not line[0].isspace():
            out.append(line)
            continue
        words = line.split()
        if len(words) == 1:           # an OBJSENSE value line
            out.append("    " + words[0])
            continue
        if words[0] in ("N", "E", "L", "G") and len(words) == 2:
            fields = words                                  # ROWS: type, name
        elif words[0] in ("UP", "LO", "FX", "FR", "MI", "PL", "BV"):
            fields = words                                  # BOUNDS: type, set, column, value
        else:
            fields = [""] + words                           # COLUMNS/RHS/RANGES: no type field
        row = ""
        for start, word in zip(starts, fields):
            row = row.ljust(start) + word
        out.append(row)
    return "\n".join(out) + "\n"
