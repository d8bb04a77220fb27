"""One validated conversion of user numbers into exact sympy numbers.

Every number a user hands to ``bea`` -- method parameters (``heavy_ball(0.9)``), tableau
entries, values in ``subs=`` and ``method.bind(...)``, command-line flags -- goes through
:func:`exact`:

* Python ``int``/``bool``-free integers, ``fractions.Fraction``, ``decimal.Decimal`` and
  sympy ``Integer``/``Rational``: exact, as given.
* Python ``float`` and ``numpy.float64`` (53-bit): the decimal the user typed, i.e. the
  shortest decimal that round-trips (``0.9 -> 9/10``), as Python's ``repr`` writes it.
* lower-precision floats (``numpy.float32``/``float16``, ``sympy.Float(0.9, 5)``): their
  exact binary value (``np.float32(0.9) = 15099494/16777216``), with a
  :class:`PrecisionWarning` that names the precision lost; they are never computed in
  reduced precision.
* exact real sympy numbers (``sqrt(2)/2``, ``pi``): kept exact.
* strings: only through the whitelisting parser (:func:`bea.parse.parse_number`), never
  ``sympify`` -- ``"__import__('os').system(...)"`` is a :class:`NumberError`.
* ``nan``, ``inf``, complex numbers, booleans and anything else: a :class:`NumberError`
  saying what to pass instead.

Sizes are priced first (:mod:`bea.limits`): ``10**10**10`` is refused, not built.
"""

from __future__ import annotations

import decimal
import fractions
import math
import numbers as _numbers
import warnings
from typing import Any

import sympy

from . import limits as LIM

__all__ = ["NumberError", "PrecisionWarning", "exact", "check_finite_real"]


class NumberError(ValueError):
    """A value that is not a finite real number ``bea`` can use exactly."""


class PrecisionWarning(UserWarning):
    """A low-precision float was converted; its exact binary value is used."""


def _warn_precision(value: Any, bits: int, exact_value: sympy.Rational, what: str) -> None:
    warnings.warn(
        f"{what} {value!r} has only {bits}-bit precision (about {bits * 0.30103:.0f} "
        f"decimal digits); bea uses its exact value {exact_value} = "
        f"{sympy.Float(exact_value, 20)}, not the decimal you may have meant. Pass a Python "
        f"float, a string such as '0.9', or sympy.Rational for an exact decimal.",
        PrecisionWarning, stacklevel=4)


def _from_float(x: float, what: str) -> sympy.Rational:
    if not math.isfinite(x):
        raise NumberError(f"{what} is {x!r}: give a finite number (nan and inf cannot be "
                          f"used in a derivation)")
    return sympy.Rational(repr(float(x)))


def _check(r: sympy.Rational, what: str) -> sympy.Rational:
    LIM.check_bits(LIM.number_bits(r), what)
    return r


def exact(x: Any, what: str = "value") -> sympy.Expr:
    """``x`` as an exact sympy number (a ``Rational`` for every float or integer input).

    ``what`` names the value in errors (``"beta"``, ``"subs['beta']"``).
    """
    if isinstance(x, bool) or (type(x).__name__ == "bool_"):
        raise NumberError(f"{what} is the boolean {x!r}: give a number")
    if isinstance(x, str):
        from .parse import parse_number

        return parse_number(x, what=what)
    if isinstance(x, sympy.Basic):
        return _from_sympy(x, what)
    # numpy scalars and 0-d arrays (checked by name: numpy is optional here)
    mod = type(x).__module__
    if mod == "numpy" or hasattr(x, "dtype"):
        return _from_numpy(x, what)
    if isinstance(x, int):
        LIM.check_bits(x.bit_length(), what)
        return sympy.Integer(x)
    if isinstance(x, float):
        return _from_float(x, what)
    if isinstance(x, fractions.Fraction):
        LIM.check_bits(x.numerator.bit_length() + x.denominator.bit_length(), what)
        return sympy.Rational(x.numerator, x.denominator)
    if isinstance(x, decimal.Decimal):
        if not x.is_finite():
            raise NumberError(f"{what} is {x}: give a finite number")
        LIM.check_decimal(str(x), what)
        return sympy.Rational(str(x))
    if isinstance(x, complex) or isinstance(x, _numbers.Complex) and not isinstance(
            x, _numbers.Real):
        raise NumberError(f"{what} is the complex number {x!r}: give a real number")
    raise NumberError(f"{what} is {x!r} of type {type(x).__name__}: give a number (int, "
                      f"float, fractions.Fraction, sympy.Rational) or a string like '0.9'")


def _from_numpy(x: Any, what: str) -> sympy.Expr:
    import numpy as np

    a = np.asarray(x)
    if a.shape != ():
        raise NumberError(f"{what} is an array of shape {a.shape}: give one number")
    kind = a.dtype.kind
    if kind == "b":
        raise NumberError(f"{what} is the boolean {x!r}: give a number")
    if kind in "iu":
        return _check(sympy.Integer(int(a)), what)
    if kind == "f":
        v = a.item()
        if not math.isfinite(v):
            raise NumberError(f"{what} is {x!r}: give a finite number (nan and inf cannot "
                              f"be used in a derivation)")
        bits = np.finfo(a.dtype).nmant + 1
        if bits >= 53:
            # float64 (and longdouble, rounded to float64): the decimal typed
            return sympy.Rational(repr(float(v)))
        r = sympy.Rational(*float(v).as_integer_ratio())
        _warn_precision(x, bits, r, what)
        return r
    if kind == "c":
        raise NumberError(f"{what} is the complex number {x!r}: give a real number")
    raise NumberError(f"{what} is a numpy value of dtype {a.dtype}: give a number")


def _from_sympy(x: sympy.Basic, what: str) -> sympy.Expr:
    if isinstance(x, sympy.Float):
        if not x.is_finite:
            raise NumberError(f"{what} is {x}: give a finite number")
        prec = x._prec
        if prec >= 53:
            # the digits sympy shows are the digits the user gave (Float('0.9', 30))
            return sympy.Rational(str(x))
        r = sympy.Rational(x)   # exact binary value of the mpf
        _warn_precision(x, prec, r, what)
        return r
    if isinstance(x, sympy.Rational):
        return _check(x, what)
    if not isinstance(x, sympy.Expr):
        raise NumberError(f"{what} is {x!r}: give a number")
    if x.free_symbols:
        raise NumberError(f"{what} is the expression {x}, which has the symbols "
                          f"{sorted(str(s) for s in x.free_symbols)}: give a number")
    return check_finite_real(_exact_floats(x, what), what)


def _exact_floats(x: sympy.Expr, what: str) -> sympy.Expr:
    floats = x.atoms(sympy.Float)
    return x.xreplace({f: _from_sympy(f, what) for f in floats}) if floats else x


def check_finite_real(expr: sympy.Expr, what: str = "expression") -> sympy.Expr:
    """Refuse ``nan``, infinities (``1/0``, ``log(0)``) and imaginary parts
    (``sqrt(-1)``) anywhere in ``expr``; returns ``expr``."""
    bad = {sympy.nan: "undefined (0/0 or similar)",
           sympy.zoo: "infinite (a division by zero or log(0))",
           sympy.oo: "infinite", -sympy.oo: "infinite"}
    for atom, why in bad.items():
        if expr.has(atom):
            raise NumberError(f"{what} is {why}: {_short(expr)}; write a finite expression")
    if expr.has(sympy.I):
        raise NumberError(f"{what} is complex (it contains sqrt of a negative number or I): "
                          f"{_short(expr)}; bea works with real values")
    return expr


def _short(e: Any) -> str:
    s = str(e)
    return s if len(s) < 80 else s[:77] + "..."
