"""The step-size symbol: ``bea.h`` is the one derived objects use, and ``evaluate`` accepts
the user's own ``Symbol('h')`` (issue 13, defect 8: comparing with a plain ``Symbol('h')``
used to fail silently because the engine's ``h`` is ``positive=True``)."""

from __future__ import annotations

import sympy as sp

import bea
from bea import methods, modified_equation, modified_loss

x = sp.Symbol("x", real=True)
L = x**4 / 4


def test_bea_h_is_the_symbol_of_derived_objects():
    me = modified_equation(methods.gd(), 1)
    assert me.h is bea.h
    assert modified_loss(methods.gd(), 1).h is bea.h
    got = me.evaluate(L, [x], summed=True)[0]
    assert got.free_symbols == {x, bea.h}


def test_evaluate_writes_powers_with_the_users_h():
    h = sp.Symbol("h")                                   # no assumptions: != bea.h
    assert h != bea.h
    # GD: f~ = -grad L - (h/2) H grad L (closed form, HLW ch. IX)
    want = -x**3 - h / 2 * (3 * x**2) * x**3
    got = modified_equation(methods.gd(), 1).evaluate(L, [x], summed=True, h=h)[0]
    assert sp.expand(got - want) == 0
    assert sp.expand(got.subs(h, sp.Rational(1, 10)) - want.subs(h, sp.Rational(1, 10))) == 0
    # modified loss: L~ = L + (h/4) |grad L|^2
    lt = modified_loss(methods.gd(), 1).evaluate(L, [x], summed=True, h=h)
    assert sp.expand(lt - (L + h / 4 * x**6)) == 0


def test_evaluate_at_a_number():
    got = modified_equation(methods.gd(), 1).evaluate(L, [x], summed=True, h=sp.Rational(1, 10))
    assert sp.expand(got[0] - (-x**3 - sp.Rational(3, 20) * x**5)) == 0
