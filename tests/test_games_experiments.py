"""Reproductions of Rosca et al. (ICML 2021): rotational game and Dirac-GAN."""

from __future__ import annotations

import jax
import pytest

import games
from bea import methods as M  # noqa: F401  (bea must stay importable without games)
from bea import modified_loss
from games import experiments as E
from games import zoo

jax.config.update("jax_enable_x64", True)


@pytest.mark.slow  # ~7 s; test_dirac_gan_numbers stays fast as the experiment end to end
def test_rotational_game_numbers(tmp_path):
    r = E.rotational_game(eps=0.09, h=0.2, steps=300, out=str(tmp_path))
    d = r["final_distance"]
    r0 = r["initial_distance"]
    assert d["simultaneous"] > r0            # simultaneous GD diverges
    assert d["flow"] < 0.05 * r0             # the flow converges
    assert d["alternating"] < 0.05 * r0      # alternating GD converges
    assert r["spectral_radius_simultaneous"] > 1
    # the order-1 modified flow of simultaneous GD predicts the divergence
    assert r["trace_modified_simultaneous"] > 0 > r["trace_flow"]
    assert r["trace_modified_simultaneous"] == pytest.approx(-2 * 0.09 + 0.2 * (1 - 0.09**2))
    assert r["trace_modified_alternating"] < 0
    assert d["modified_flow_simultaneous"] > r0
    assert (tmp_path / "rotational_game.png").exists()


def test_dirac_gan_numbers(tmp_path):
    r = E.dirac_gan(h=0.1, steps=1000, out=str(tmp_path))
    assert r["flow_max_relative_drift_of_distance"] < 1e-8    # conserved by the flow
    d = r["final_distance"]
    assert d["simultaneous"] > 10 * r["initial_distance"]     # spirals out
    assert r["max_distance_interaction_cancelled"] < 1.1 * r["initial_distance"]
    assert (tmp_path / "dirac_gan.png").exists()


def test_drift_terms_match_engine():
    # the coefficients used by the regulariser are the engine's order-1 modified loss
    g = zoo.rotational(0.09)
    terms = E.drift_terms(g, (1.0, 0.5), "simultaneous")
    ml = modified_loss(games.simultaneous((1.0, 0.5)), 1)
    x, y = 0.3, -0.7
    # interaction_x = (lam/2) <grad_y L1, grad_y L2> = 0.25 * (-x) * (eps y + x)
    assert float(terms["interaction_x"](x, y)) == pytest.approx(0.25 * (-x) * (0.09 * y + x))
    assert float(ml.remainder(1, "x")[0].coefficient) == 0.25


def test_regulariser_rejects_unknown_term():
    with pytest.raises(ValueError, match="unknown drift terms"):
        E.regularised_game(zoo.rotational(), 0.1, (1.0, 1.0), {"interaction_z": -1.0})


# equal rates for simultaneous and unequal for alternating stay fast (~3 s each); the
# other two combinations run with -m slow
@pytest.mark.parametrize("make,rates", [
    (games.simultaneous, (1.0, 1.0)), (games.alternating, (1.0, 0.5)),
    pytest.param(games.simultaneous, (1.0, 0.5), marks=pytest.mark.slow),
    pytest.param(games.alternating, (1.0, 1.0), marks=pytest.mark.slow)])
def test_local_error_slope_3_at_order_1(make, rates):
    from bea import verify

    r = verify(make(rates), problem="game", orders=(1,), progress=False)
    assert abs(r.local_slopes[1] - 3) <= 0.15, r


@pytest.mark.slow  # ~9 s; the fast suite keeps test_rotational_game_numbers (an experiment
# end to end) and tests/test_games_zoo.py::test_mog_gan_losses_and_steps (the MoG GAN)
def test_mog_gan_end_to_end_small(tmp_path, capsys):
    from games.mog import mog_experiment

    r = mog_experiment(out=str(tmp_path), seeds=1, steps=64, n_checks=4, n_last=2,
                       progress=False, n_eval=200)
    assert len(r["rows"]) == 3 and r["effect"]
    assert r["scored_checkpoints"] == [48, 64]
    assert (tmp_path / "mog_gan.json").exists() and (tmp_path / "mog_gan.png").exists()
    out = capsys.readouterr().out
    # the table and the conclusion are the last thing printed (no JSON after them)
    assert "seed |" in out and out.rstrip().endswith(r["effect"].splitlines()[-1])


def test_mog_gan_rejects_a_checkpoint_grid_that_does_not_divide_steps():
    from games.mog import mog_experiment

    with pytest.raises(ValueError, match="multiple of n_checks"):
        mog_experiment(seeds=1, steps=50, n_checks=16, progress=False, verbose=False)


def _claimed(effect: str) -> dict[str, str]:
    """variant -> 'more' | 'fewer' | 'none', read off the printed conclusion."""
    out = {}
    for line in effect.splitlines():
        name, rest = line.split(": ", 1)
        out[name] = ("none" if rest.startswith("no significant difference")
                     else rest.split()[0])
    return out


def _t_significant(a, b, level=0.05) -> bool:
    """Independent oracle: scipy's paired t-test."""
    import numpy as np
    from scipy import stats

    d = np.asarray(b, float) - np.asarray(a, float)
    if np.all(d == d[0]):
        return bool(d[0] != 0)
    return bool(stats.ttest_rel(b, a).pvalue < level)


def test_mog_conclusion_states_a_difference_only_when_significant():
    import numpy as np
    from scipy import stats

    from games.mog import conclusion, paired_test

    base = [2.0, 5.0, 3.0, 6.0, 4.0]
    per_seed = {
        "simultaneous GD": base,
        "shifted": [b + 2.0 + e for b, e in zip(base, [0.1, -0.1, 0.0, 0.2, -0.2], strict=True)],
        "noisy": [b + e for b, e in zip(base, [3.0, -2.0, 1.0, -3.0, 1.5], strict=True)],
        "lower": [b - 1.0 for b in base],      # every seed one mode lower: sd of d = 0
        "same": list(base),
    }
    text, tests = conclusion(per_seed)
    claimed = _claimed(text)
    assert claimed == {"shifted": "more", "noisy": "none", "lower": "fewer", "same": "none"}
    for name, vals in per_seed.items():
        if name == "simultaneous GD":
            continue
        assert tests[name]["significant"] == _t_significant(base, vals)
        if name in ("shifted", "noisy"):
            assert tests[name]["p"] == pytest.approx(stats.ttest_rel(vals, base).pvalue)
        assert tests[name]["mean_diff"] == pytest.approx(np.mean(vals) - np.mean(base))
    # the numbers are printed with the claim
    assert "no significant difference" in text and "p = " in text and "over 5 seeds" in text
    # a single seed never supports a claim
    assert not paired_test([0.0], [8.0])["significant"]


@pytest.mark.slow
def test_mog_gan_default_size_covers_modes_and_concludes_from_the_numbers(tmp_path):
    """Defect 5 of issue 13: at the default size the baseline covered 0/8 modes and the
    conclusion contradicted the means."""
    import numpy as np

    from games.mog import BASELINE, VARIANTS, mog_experiment

    r = mog_experiment(out=str(tmp_path), progress=False, verbose=False)
    assert len(r["rows"]) == 3 * r["seeds"] and r["seeds"] >= 5
    assert all(row["finite"] for row in r["rows"])
    assert r["summary"][BASELINE]["mean_modes"] >= 2
    per_seed = {n: [x["modes"] for x in r["rows"] if x["variant"] == n] for n in VARIANTS}
    for name, s in r["summary"].items():
        assert s["mean_modes"] == pytest.approx(np.mean(per_seed[name]))
        assert s["std_modes"] == pytest.approx(np.std(per_seed[name], ddof=1))
    claimed = _claimed(r["effect"])
    for name in VARIANTS:
        if name == BASELINE:
            continue
        diff = np.mean(per_seed[name]) - np.mean(per_seed[BASELINE])
        expect = ("none" if not _t_significant(per_seed[BASELINE], per_seed[name])
                  else "more" if diff > 0 else "fewer")
        assert claimed[name] == expect, r["report"]
    assert r["report"].endswith(r["effect"])


def test_stability_report_order1_predicts_instability():
    from games import drift

    sim = drift.stability_report(zoo.rotational(0.09), "simultaneous", (0.2, 0.2), h=0.2)
    assert not sim["map_stable"]
    assert sim["flows"][0]["stable"] and not sim["flows"][1]["stable"]
    alt = drift.stability_report(zoo.rotational(0.09), "alternating", (0.2, 0.2), h=0.2)
    assert alt["map_stable"] and all(v["stable"] for v in alt["flows"].values())


@pytest.mark.slow   # 18 s of CPU; the fast suite keeps test_mog_gan_end_to_end_small
def test_mog_gan_resumes_from_its_checkpoint(tmp_path, monkeypatch):
    from games import mog

    first = mog.mog_experiment(out=str(tmp_path), seeds=2, steps=20, n_checks=4, n_last=2,
                               progress=False, n_eval=100)
    assert (tmp_path / "mog_gan.checkpoint.json").exists()

    def no_training(*a, **k):
        raise AssertionError("a finished run was trained again")

    monkeypatch.setattr(mog.runners, "run", no_training)
    again = mog.mog_experiment(out=str(tmp_path), seeds=2, steps=20, n_checks=4, n_last=2,
                               progress=False, n_eval=100, resume=True)
    assert again["rows"] == first["rows"] and again["effect"] == first["effect"]
    assert "mean +- std" in again["table"]
