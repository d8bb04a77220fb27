"""Modified losses: the implicit regulariser of an update rule, to any order.

For gradient fields ``f_c = -grad L_c`` an elementary differential is a contraction of
derivative tensors of the losses: ``F(t) = (-1)^|t| G(t)``, ``G([t_1..t_k]_c) =
D^(k+1) L_c[G(t_1), .., G(t_k), .]``.  For a free (unrooted) colored tree ``u`` let
``P(u)`` be the full contraction of ``D^deg(v) L_c(v)`` over its vertices.  Then

    grad P(u) = sum_{vertices v} G(u rooted at v) = sum_t (sigma(u)/sigma(t)) G(t),

the second sum over the distinct rootings ``t`` of ``u`` (orbit-stabiliser).  Hence the
part of ``f_k = sum_t b(t)/sigma(t) F(t)`` on the rootings of ``u`` is a gradient exactly
when ``b`` takes one value on all of them (*balanced*), and then it is
``-grad(c_u P(u))`` with ``c_u = (-1)^(|u|+1) b/sigma(u)``.

When ``b`` is not balanced, the potential uses the *reference value* of ``b``: its mean
over the rootings at vertices of maximal degree (the rootings that carry the highest
derivative, ``D^3 L[grad L, grad L]`` rather than ``H^2 grad L``; for two-vertex trees
both ends).  The rest is not a gradient; each such term is still a gradient once its
children are held fixed, ``G(t) = grad D^k L_c[sg G(t_1), .., sg G(t_k)]`` (``sg`` =
stop-gradient), so the remainder is written as loss terms with stop-gradients that can
be handed to ``jax.grad``.  In every case ``field == -grad(potential + remainder)``.

Two-player games (methods with ``players``): player p's field is ``-grad_p`` of its own
loss; potentials are the free trees all of whose vertices belong to p, every other term
is a stop-gradient term.  Each player's loss is normalised by its rate, so that player p
follows ``p' = -r_p grad_p L~_p`` (joint time); ``L~_1 = L_1 + (alpha h/4)|grad_x L_1|^2
+ (lam h/2) <grad_y L_1, sg(grad_y L_2)> + ...`` for simultaneous GD.
"""

from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sympy

from . import render as R
from . import trees as T
from .methods import Method, block_names, check_order
from .modified import ModifiedEquation, modified_equation
from .symbol_table import step_symbol


class sg(sympy.Function):  # noqa: N801 - printed name
    """Stop-gradient: ``d sg(z)/dz = 0`` (``jax.lax.stop_gradient``)."""

    def fdiff(self, argindex: int = 1) -> sympy.Expr:
        return sympy.S.Zero


@dataclass(frozen=True)
class PotentialTerm:
    """``coefficient * P(free tree)``; ``tree`` is the rooting used for printing (a vertex of
    maximal degree is the root, all its neighbours are children)."""

    coefficient: sympy.Expr
    tree: int


@dataclass(frozen=True)
class RemainderTerm:
    """``coefficient * D^k L_c[sg G(t_1), .., sg G(t_k)]`` for ``tree = [t_1..t_k]_c``."""

    coefficient: sympy.Expr
    tree: int


def scale_is_rational(x: Any) -> bool:
    return isinstance(x, sympy.Rational)


class ModifiedLoss(R.PrintsItself):
    """Modified loss of a method to ``O(h^order)``: potential part plus stop-gradient
    remainder, per power of h (and per player for games).

    ``potential(k)``, ``remainder(k)``: term lists; ``is_gradient(k)``: whether ``f_k`` is
    a gradient; ``str``/``latex()`` print ``L + (h/4)|grad L|^2 + ...``;
    ``evaluate(loss, vars)`` gives exact sympy expressions (with :class:`sg`).
    """

    def __init__(self, equation: ModifiedEquation):
        self.equation = equation
        self.method = equation.method
        self.order = equation.order
        self.h = equation.h
        self.players: tuple[str, ...] | None = block_names(self.method)
        self.notation = equation.notation
        nc = self.method.ncolors
        groups = range(nc) if self.players else [None]
        self._rates = self._player_rates() if self.players else None
        self.prefactor = sympy.S.One if self.players else self._common_leaf()
        self._pot: dict[Any, list[list[PotentialTerm]]] = {g: [] for g in groups}
        self._rem: dict[Any, list[list[RemainderTerm]]] = {g: [] for g in groups}
        series = equation.series
        for k in range(self.order + 1):
            n = k + 1
            trees = T.canonical_sort(T.trees_of_order(n, nc))
            for g in groups:
                pot, rem = self._split(series, [t for t in trees if g is None
                                                or T.color(t) == g], n, g)
                self._pot[g].append(pot)
                self._rem[g].append(rem)

    def _player_rates(self) -> list[sympy.Expr]:
        series = self.equation.series
        return [series.domain.to_sympy(series[T.leaf(p)]) or sympy.S.One
                for p in range(self.method.ncolors)]

    def _common_leaf(self) -> sympy.Expr:
        """The order-0 coefficient shared by all fields (``1/(1-beta)`` for heavy ball),
        factored out of the printed loss; 1 when the fields' coefficients differ."""
        series = self.equation.series
        vals = {sympy.factor(series.domain.to_sympy(series[T.leaf(c)]))
                for c in range(self.method.ncolors)}
        if len(vals) == 1:
            (v,) = vals
            if v != 0:
                return R.nice(v)
        return sympy.S.One

    def _scale(self, g: Any) -> sympy.Expr:
        return self.prefactor if g is None else self._rates[g]

    def _split(self, series, trees: list[int], n: int, g: Any):
        dom = series.domain
        coeffs = series.coeffs
        rational = bool(dom.is_QQ) and scale_is_rational(self._scale(g))
        bval = {} if rational else {t: dom.to_sympy(series[t]) for t in trees}

        scale = self._scale(g)
        sign = -1 if n % 2 == 0 else 1   # (-1)^(n+1)
        if rational:
            # (-1)^(n+1) v / (sigma scale) straight from integers: one Rational per term,
            # no domain conversion of sigma (issue 20: 190k terms for sgd(batches=8), 4)
            s_num, s_den = sign * int(scale.q), int(scale.p)

        def to_q(v: Any, sig: int) -> sympy.Rational:
            return sympy.Rational(int(dom.numer(v)) * s_num, int(dom.denom(v)) * sig * s_den)
        pot: list[PotentialTerm] = []
        rem: list[RemainderTerm] = []
        seen: set[int] = set()
        for t in trees:
            if t in seen:   # a rooting of a free tree already handled
                continue
            rootings = T.rootings(t)
            seen.update(rootings)
            counts = Counter(rootings)
            if g is not None:
                mono = T.colors_used(t) == frozenset({g})
            else:
                mono = True
            if not mono:
                continue  # games: trees with other players' vertices, handled below
            degrees = [len(T.children(r)) for r in rootings]
            dmax = max(degrees)
            ref_trees = [r for r, d in zip(rootings, degrees, strict=True) if d == dmax]
            if rational:   # exact rationals: the same numbers without sympy.factor
                ref = sum((coeffs.get(r, dom.zero) for r in ref_trees), dom.zero) / len(
                    ref_trees)
                if ref:
                    coef = to_q(ref, T.free_sigma(t))
                    pot.append(PotentialTerm(coef, min(ref_trees)))
                for r in counts:
                    excess = coeffs.get(r, dom.zero) - ref
                    if excess:
                        rem.append(RemainderTerm(to_q(excess, T.sigma(r)), r))
                continue
            ref = sympy.Add(*[bval.get(r, sympy.S.Zero) for r in ref_trees]) / len(ref_trees)
            ref = sympy.factor(ref)
            if ref != 0:
                coef = sign * ref / T.free_sigma(t) / scale
                pot.append(PotentialTerm(R.nice(coef), min(ref_trees)))
            for r in counts:
                excess = sympy.factor(bval.get(r, sympy.S.Zero) - ref)
                if excess != 0:
                    rem.append(RemainderTerm(R.nice(sign * excess / T.sigma(r) / scale), r))
        if g is not None:
            for t in trees:
                if T.colors_used(t) != frozenset({g}):
                    v = bval.get(t, sympy.S.Zero)
                    if rational and coeffs.get(t):
                        rem.append(RemainderTerm(to_q(coeffs[t], T.sigma(t)), t))
                        continue
                    if v != 0:
                        rem.append(RemainderTerm(R.nice(sign * v / T.sigma(t) / scale), t))
        return pot, rem

    # ------------------------------------------------------------------ access
    def _group(self, player: Any) -> Any:
        if self.players is None:
            if player is not None:
                raise ValueError(f"{self.method.name} is not a game: no player argument")
            return None
        if player is None:
            raise ValueError(f"{self.method.name} is a game: pass player=0 or 1 "
                             f"(or the name, one of {self.players})")
        return self.players.index(player) if isinstance(player, str) else int(player)

    def potential(self, k: int, player: Any = None) -> list[PotentialTerm]:
        return list(self._pot[self._group(player)][k])

    def remainder(self, k: int, player: Any = None) -> list[RemainderTerm]:
        return list(self._rem[self._group(player)][k])

    def is_gradient(self, k: int, player: Any = None) -> bool:
        """Whether ``f_k`` (player's part for games) is exactly ``-grad`` of a loss."""
        return not self._rem[self._group(player)][k]

    @property
    def rates(self) -> list[sympy.Expr] | None:
        """Games: the factor ``r_p`` in ``p' = -r_p grad_p L~_p``."""
        return self._rates

    # ------------------------------------------------------------------ printing
    def _contraction(self, t: int, stop: bool, latex: bool) -> str:
        nt = self.notation
        c, ch = T.key(t)
        text = nt.latex if latex else nt.text
        args = [text(u) for u in ch]
        if stop:
            args = [(rf"\mathrm{{sg}}({a})" if latex else f"sg({a})") for a in args]
        block = isinstance(nt, R.BlockNotation)
        if block:
            L = R._latex_name(nt.losses[c]) if latex else nt.losses[c]
            names = [nt.players[T.color(u)] for u in ch]
        else:
            L = (R._latex_name(nt._loss(c)) if latex else nt._loss(c)) if isinstance(
                nt, R.GradientNotation) else "L"
            names = [""] * len(ch)
        k = len(ch)
        if k == 0:
            return L
        if k == 1:
            sub_ = names[0]
            if block:
                gradL = rf"\nabla_{{{sub_}}} {L}" if latex else f"grad_{sub_} {L}"
            else:
                gradL = rf"\nabla {L}" if latex else f"grad {L}"
            if not stop and not T.children(ch[0]) and T.color(ch[0]) == c:
                return rf"\|{gradL}\|^2" if latex else f"|{gradL}|^2"
            return rf"\langle {gradL}, {args[0]} \rangle" if latex else f"<{gradL}, {args[0]}>"
        if k == 2 and not stop and all(not T.children(u) and T.color(u) == c for u in ch):
            Hs = "H" if not block else f"H_{{{names[0] * 2}}}" if latex else f"H_{names[0] * 2}"
            if not block and isinstance(nt, R.GradientNotation):
                suf = nt._suffix(c).lstrip("_")
                Hs = ("H" + (f"_{{{suf}}}" if suf else "")) if latex else "H" + nt._suffix(c)
            return f"{args[0]}^T {Hs} {args[1]}"
        idx = "".join(names)
        if latex:
            sub_ = f"_{{{idx}}}" if idx else ""
            return f"D^{{{k}}}{sub_} {L}[{', '.join(args)}]"
        return f"D^{k}{'_' + idx if idx else ''}{L}[{', '.join(args)}]"

    def _order_items(self, g: Any, k: int, latex: bool) -> list[tuple[sympy.Expr, str]]:
        items = [(p.coefficient, self._contraction(p.tree, False, latex))
                 for p in self._pot[g][k]]
        items += [(r.coefficient, self._contraction(r.tree, True, latex))
                  for r in self._rem[g][k]]
        return items

    def _text(self, g: Any, latex: bool) -> str:
        items = []
        for k in range(self.order + 1):
            hk = "" if k == 0 else ("h" if k == 1 else (f"h^{{{k}}}" if latex else f"h^{k}"))
            for coef, body in self._order_items(g, k, latex):
                items.append((coef, f"{hk} {body}".strip() if hk else body))
        return R.join_terms(items, latex=latex)

    def order_text(self, k: int, player: Any = None) -> str:
        """The ``h^k`` term (without the power of h), e.g. ``(1/4) |grad L|^2``."""
        return R.join_terms(self._order_items(self._group(player), k, False))

    def __str__(self) -> str:
        head = (f"Modified loss of {self.method.name} to order {self.order}"
                + (" (sg = stop-gradient)" if any(self._rem[g][k] for g in self._rem
                                                 for k in range(self.order + 1)) else ""))
        lines = [head + ":"]
        if self.players is None:
            body = self._text(None, False)
            if self.prefactor != 1:
                body = f"{R._paren(sympy.sstr(self.prefactor))} * ({body})"
            lines.append(f"  L~ = {body}")
            lines.append("  (theta' = -grad L~)")
        else:
            for p, name in enumerate(self.players):
                lines.append(f"  player {name}: L~_{p + 1} = {self._text(p, False)}")
            lines.append("  (" + ", ".join(f"{n}' = -({sympy.sstr(r)}) grad_{n} L~_{p + 1}"
                                          for p, (n, r) in enumerate(zip(self.players,
                                                                         self._rates,
                                                                         strict=True)))
                         + "; joint time h)")
        for k in range(self.order + 1):
            flags = [self.is_gradient(k, p) for p in (range(len(self.players))
                                                       if self.players else [None])]
            if not all(flags):
                lines.append(f"  order {k}: not a gradient (stop-gradient remainder)")
        return "\n".join(lines)

    def latex(self, player: Any = None) -> str:
        g = self._group(player) if (self.players and player is not None) else (
            None if not self.players else 0)
        if self.players and player is None:
            return r" \\ ".join(rf"\tilde L_{{{p + 1}}} = {self._text(p, True)}"
                                for p in range(len(self.players)))
        body = self._text(g, True)
        if g is None and self.prefactor != 1:
            body = rf"{sympy.latex(self.prefactor)} \left({body}\right)"
        return rf"\tilde L = {body}"

    def __repr__(self) -> str:
        return f"<ModifiedLoss {self.method.name} order={self.order}>"

    # ------------------------------------------------------------------ evaluation
    def evaluate(self, loss: Any = None, vars: Any = None, *, fields: Any = None,
                 summed: bool = False, player: Any = None, h: Any = None):
        """Exact modified loss on a concrete problem, per order (with :class:`sg`).

        Shared parameters: ``[L~_0, .., L~_order]`` with ``theta' = -grad L~`` (prefactor
        included); games: the list for ``player`` normalised so ``p' = -r_p grad_p L~_p``
        (or a tuple of both lists when ``player`` is None).  With general (non-gradient)
        ``fields`` no loss exists: a warning says so and the modified *field* is returned.
        ``summed=True`` writes the powers of the step size with ``bea.h``, or with ``h=``
        (e.g. your own ``Symbol('h')``).
        """
        from .concrete import ConcreteFields, fields_from

        if fields is not None:
            F = fields if isinstance(fields, ConcreteFields) else fields_from(
                self.method, vars=vars, fields=fields)
            if F.losses is None and not _is_gradient_fields(F):
                warnings.warn("no modified loss exists: the given fields are not gradients "
                              "(their Jacobians are not symmetric); returning the modified "
                              "field instead", stacklevel=2)
                return self.equation.evaluate(fields=F, summed=summed, h=h)
        else:
            F = fields_from(self.method, loss=loss, vars=vars)
        if F.losses is None:
            raise ValueError("a modified loss needs the losses, not only the fields")
        if self.players is None:
            return self._eval_group(F, None, summed, h)
        if player is None:
            return tuple(self._eval_group(F, p, summed, h) for p in range(len(self.players)))
        return self._eval_group(F, self._group(player), summed, h)

    def _eval_group(self, F, g, summed, h=None):
        out = []
        for k in range(self.order + 1):
            acc = sympy.S.Zero
            for p in self._pot[g][k]:
                acc += p.coefficient * _contract(F, p.tree, stop=False)
            for r in self._rem[g][k]:
                acc += r.coefficient * _contract(F, r.tree, stop=True)
            if g is None:
                acc = self.prefactor * acc   # the loss itself: theta' = -grad L~
            out.append(sympy.expand(acc))
        if summed:
            hh = self.h if h is None else step_symbol(h)
            return sum((hh ** k * out[k] for k in range(len(out))), sympy.S.Zero)
        return out


def _to_jax(self, loss: Any, *, subs: dict | None = None,
            orders: Sequence[int] | None = None):
    """Jitted JAX modified loss on ``L(params, batch)``; see
    :class:`bea.compile.CompiledModifiedLoss`."""
    from .compile import compile_loss
    from .symbol_table import bind_values

    subs = bind_values(subs, self.method.parameters, "subs") or None
    return compile_loss(self, loss, subs=subs, orders=orders)


ModifiedLoss.to_jax = _to_jax


def _G(F, t: int) -> sympy.Matrix:
    """``G(t) = (-1)^|t| F(t)``."""
    v = F.elementary(t)
    return -v if T.order(t) % 2 else v


def _contract(F, t: int, stop: bool) -> sympy.Expr:
    """``D^k L_c[G(t_1), .., G(t_k)]`` (arguments under ``sg`` when ``stop``)."""
    c, ch = T.key(t)
    L = F.losses[c]
    xs = F.vars
    vecs = [_G(F, u) for u in ch]
    if stop:
        vecs = [v.applyfunc(lambda e: sg(e) if e != 0 else e) for v in vecs]
    # differentiate against constant placeholder directions, then substitute, so the
    # derivatives never hit the arguments (they are directions, not functions of theta)
    ws = [[sympy.Dummy(f"w{i}_{j}") for j in range(len(xs))] for i in range(len(vecs))]
    expr = L
    for i, v in enumerate(vecs):
        expr = sum((sympy.diff(expr, x) * ws[i][j] for j, x in enumerate(xs) if v[j] != 0),
                   sympy.S.Zero)
    return expr.xreplace({ws[i][j]: vecs[i][j] for i in range(len(vecs))
                          for j in range(len(xs))})


def _is_gradient_fields(F) -> bool:
    for f in F.fields:
        J = f.jacobian(F.vars)
        if sympy.simplify(J - J.T) != sympy.zeros(*J.shape):
            return False
    return True


def strip_sg(expr: sympy.Expr) -> sympy.Expr:
    """Remove stop-gradient wrappers (after differentiating)."""
    return expr.replace(lambda e: isinstance(e, sg), lambda e: e.args[0])


def gradient(expr: sympy.Expr, vars: Sequence[sympy.Symbol]) -> sympy.Matrix:
    """``grad`` honouring stop-gradients, then with them removed."""
    return sympy.Matrix([sympy.expand(strip_sg(sympy.diff(expr, x))) for x in vars])


def modified_loss(method: Method | ModifiedEquation, order: int | None = None, *,
                  max_trees: int | None = None) -> ModifiedLoss:
    """The modified loss (implicit regulariser) of ``method`` to ``O(h^order)``.

    >>> from bea import methods, modified_loss
    >>> print(modified_loss(methods.gd(), 1).order_text(1))
    (1/4) |grad L|^2
    """
    if isinstance(method, ModifiedEquation):
        if order is not None and order != method.order:
            raise ValueError("order given twice with different values")
        return ModifiedLoss(method)
    if order is None:
        raise ValueError("give the order, e.g. modified_loss(methods.gd(), 2)")
    check_order(order)
    return ModifiedLoss(modified_equation(method, order, max_trees=max_trees))
