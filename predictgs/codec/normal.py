"""The standard normal CDF of the coder (the Gaussian streams' tables, HAC++'s mixtures), the same to the last
bit on every machine and in the compiled twin (``kernels/csrc/mixture_coder.cpp``).

Why not ``torch.special.ndtr``: it is ``(1 + erf(z / sqrt 2)) / 2`` with torch's CPU ``erf``, which is
SLEEF's vector ``erf`` on whole vector-widths of a batch and the C library's ``erf`` on the remainder: an
element's last bit depends on the instruction set, on where it falls in its batch and on how the threads
split the batch (measured: 5,913 of 200,000 values differ between the two). The coder rounds CDF values
to 24-bit integers that the encoder and the decoder must agree on, so its CDF is computed here from
additions and multiplications only (IEEE-exact, evaluated in the same order by numpy and by the C++ twin,
which is built without fused multiply-add).

The method: Q(t) = P(N > t) = Phi(-t) on pieces of width 1/8 of [0, 8.5), each a Taylor polynomial of
degree 9 about the piece's centre c: the k-th derivative of Q is -(-1)^(k-1) He_(k-1)(c) phi(c) (He the
probabilists' Hermite polynomials, from their recurrence in float64 at import), so the only constants are
Q(c) and phi(c) at the 68 centres, below as Python floats (the correctly rounded values, from mpmath at 50
digits: tests/test_normal_cdf.py recomputes them). Beyond 8.5, Q(t) < 1e-17 is taken as 0. Measured
against mpmath on [-9, 9]: absolute error at most 1.2e-16; the integer CDFs (24 bits) it feeds do not see
the difference from an exact CDF except where a value lies within ~1e-16 of a rounding boundary.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

PIECES_PER_UNIT = 8  # pieces of width 1/8 (a power of two: the piece index and centre are exact)
DEGREE = 9  # cdf() evaluates exactly this degree (Estrin's scheme, written out)
LIMIT = 8.5  # Q(t) = 0 from here on

# (Q(c), phi(c)) at the piece centres c = (j + 1/2) / 8, j = 0 .. 67.
CENTRES = (
    (0.47508233097075275, 0.3981638566868866), (0.42563431184410283, 0.3919908982525719),
    (0.37733028152984294, 0.37993060619862773), (0.3308743880408792, 0.3625323170404452),
    (0.2868877018163652, 0.3405675943198307), (0.24588385038026145, 0.3149735354265933),
    (0.20825239328810896, 0.28678666756641447), (0.17425071188054236, 0.2570739073467347),
    (0.14400437900197094, 0.22686692696881264), (0.11751522829321415, 0.1971054019185873),
    (0.09467574302164258, 0.1685931845181151), (0.0752879864124234, 0.14196969520521552),
    (0.059085122932667544, 0.11769701122432004), (0.04575362496174111, 0.09606150090511335),
    (0.03495448696823474, 0.07718758443971072), (0.02634212668914146, 0.06106040504106634),
    (0.019580078778377457, 0.04755389126063962), (0.014353021608801655, 0.036460833176192135),
    (0.010375072658058005, 0.027522080802904466), (0.007394607110880697, 0.020452673772781396),
    (0.005196079382091164, 0.014963495785913945), (0.0035994551144099673, 0.010777801700270904),
    (0.0024579011751966876, 0.007642605818746402), (0.0016543508595475074, 0.005335398731586315),
    (0.0010974823774378647, 0.003666962346294226), (0.0007175422898444507, 0.0024811908361032997),
    (0.0004623306301886043, 0.001652829422406258), (0.0002935553597519711, 0.0010839519991146518),
    (0.00018366995423736373, 0.0006998520109469427), (0.00011323404682250717, 0.0004448530041128103),
    (6.87841146467492e-05, 0.0002783818965983621), (4.116746597159935e-05, 0.0001715061111947235),
    (2.427497385668885e-05, 0.0001040237147676839), (1.4102201050166802e-05, 6.211539717041617e-05),
    (8.070944122868076e-06, 3.651575823043728e-05), (4.550486098528922e-06, 2.1133699513445475e-05),
    (2.527404681784421e-06, 1.2041619005785495e-05), (1.3828135064100918e-06, 6.754736076142956e-06),
    (7.452693639045835e-07, 3.7303195482544934e-06), (3.9565203278849396e-07, 2.028139559655964e-06),
    (2.0689703270164973e-07, 1.0855848779373272e-06), (1.0656796268647949e-07, 5.720630306435564e-07),
    (5.406571334852228e-08, 2.9678239062112855e-07), (2.701667517982307e-08, 1.5158161287402448e-07),
    (1.329685158056389e-08, 7.622002159282603e-08), (6.44563015906951e-09, 3.773164675293885e-08),
    (3.0773341907976776e-09, 1.8388935987690212e-08), (1.4470052276663568e-09, 8.82310791037702e-09),
    (6.701090416765294e-10, 4.167741068086771e-09), (3.056292350884266e-10, 1.938179593620309e-09),
    (1.3728173111051323e-10, 8.873632790643273e-10), (6.072866172590239e-11, 3.99965965694357e-10),
    (2.6456520269214492e-11, 1.774838214008524e-10), (1.1350760591273835e-11, 7.753693920621598e-11),
    (4.795852814058978e-12, 3.334822200422782e-11), (1.995496621877849e-12, 1.412052563608548e-11),
    (8.176665790176605e-13, 5.886310835580747e-12), (3.299420114665155e-13, 2.4157370995105412e-12),
    (1.3110863951335307e-13, 9.760460197708043e-13), (5.130429184278669e-14, 3.8824428293552203e-13),
    (1.9769755960774854e-14, 1.5203864572264956e-13), (7.501892313133612e-15, 5.861611956787282e-14),
    (2.8032322041968335e-15, 2.2248169525385583e-14), (1.031485225336217e-15, 8.313533563394094e-15),
    (3.737487301113002e-16, 3.0583780814614486e-15), (1.3335411542308187e-16, 1.1076711372201992e-15),
    (4.685332584133038e-17, 3.949523069403836e-16), (1.620985608405761e-17, 1.3864129910181642e-16),
)


@lru_cache(maxsize=1)
def coefficients() -> np.ndarray:
    """The Taylor coefficients [68 + 1, DEGREE + 1] (float64) of Q about each piece's centre, constant
    term first; the last row is zeros (t >= LIMIT). Pure float64 arithmetic on the constants above, so the
    same on every machine."""
    rows = []
    for j, (q, phi) in enumerate(CENTRES):
        c = (j + 0.5) / PIECES_PER_UNIT
        hermite = [1.0, c]  # He_0, He_1 at c
        for k in range(2, DEGREE):
            hermite.append(c * hermite[-1] - (k - 1) * hermite[-2])
        row, factorial = [q], 1.0
        for k in range(1, DEGREE + 1):
            factorial *= k
            sign = 1.0 if k % 2 else -1.0  # (-1)^(k-1)
            row.append(-sign * hermite[k - 1] * phi / factorial)  # Q^(k)(c) / k!
        rows.append(row)
    rows.append([0.0] * (DEGREE + 1))
    table = np.array(rows, dtype=np.float64)
    table.setflags(write=False)
    return table


def cdf(z: np.ndarray) -> np.ndarray:
    """Phi(z) of float64 ``z`` (any shape), elementwise; NaN counts as beyond the limit (Phi = 1)."""
    table = coefficients()
    t = np.abs(z)
    t = np.where(t < LIMIT, t, LIMIT)
    piece = np.floor(t * PIECES_PER_UNIT)
    u = t - (piece + 0.5) / PIECES_PER_UNIT
    rows = piece.astype(np.int64)
    a = table.T  # a[k][rows]: coefficient k of each value's piece

    def pair(k):  # a_k + a_(k+1) u
        return a[k][rows] + a[k + 1][rows] * u

    # Estrin's scheme (a short dependency chain for the compiled twin), these operations in this order
    u2 = u * u
    u4 = u2 * u2
    low = pair(0) + pair(2) * u2
    high = pair(4) + pair(6) * u2
    q = (low + high * u4) + pair(8) * (u4 * u4)
    return np.where(z < 0, q, 1.0 - q)
