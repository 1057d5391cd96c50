"""The numpy Weibull fit against libMR (PyPI ``libmr`` 0.1.9) reference vectors.

The numbers were produced by libMR itself (``MR(translate_amount=t).fit_high/fit_low`` and
``w_score``) and are copied here. The contract is agreement to 1e-5; the port follows libMR's
root finder step by step, so the tests hold it to 1e-9.
"""

import numpy as np
import pytest

from oltr_bench.models.weibull import INVALID_SCORE, fit_high, fit_low

D20 = [
    0.112,
    0.135,
    0.151,
    0.164,
    0.178,
    0.19,
    0.203,
    0.219,
    0.232,
    0.247,
    0.26,
    0.276,
    0.291,
    0.305,
    0.322,
    0.34,
    0.371,
    0.402,
    0.455,
    0.531,
]
INTEGERS = [float(i) for i in range(1, 21)]
Q = [0.05, 0.2, 0.26, 0.35, 0.6]

# (method, data, tail size, OSDN style, translate_amount, (scale, shape, sign, translate, small_score) or None if invalid,
#  queries, libMR w_score). OSDN style = fit_high(sorted(d)[-tail:], len(that)), so tail 0 or a tail longer than the
#  data means all of it.
CASES = [
    pytest.param(
        "fit_high",
        D20,
        10,
        False,
        1,
        (1.13539841502264, 12.739589126622645, 1, 1, 0.26),
        Q,
        [0.00979734784697639, 0.0862301181341174, 0.179917720736941, 0.4482219223856463, 0.9997399424472198],
        id="main_fit_high_20pts_tail10",
    ),
    pytest.param(
        "fit_high",
        D20,
        10,
        True,
        1,
        (1.13539841502264, 12.739589126622645, 1, 1, 0.26),
        Q,
        [0.00979734784697639, 0.0862301181341174, 0.179917720736941, 0.4482219223856463, 0.9997399424472198],
        id="main_fit_high_20pts_tail10_osdn_style",
    ),
    pytest.param(
        "fit_high",
        D20,
        20,
        False,
        1,
        (1.2083761773566806, 10.40621381969891, 1, 1, 0.112),
        Q,
        [0.06915985686504522, 0.2850539572420696, 0.4437944462363743, 0.7238032476886633, 0.999837410883156],
        id="fit_high_20pts_tail20_all",
    ),
    pytest.param(
        "fit_high",
        D20,
        5,
        False,
        1,
        (1.1127197498925234, 16.341263291112398, 1, 1, 0.34),
        Q,
        [0.0006474859705766223, 0.014736677476588689, 0.043709506544757026, 0.18568377453110252, 0.9995113829935188],
        id="fit_high_20pts_tail5",
    ),
    pytest.param(
        "fit_low",
        D20,
        10,
        False,
        1,
        (1.0839150405061366, 27.809797786601482, -1, 1, -0.247),
        Q,
        [0.9999998621226737, 0.3171684248280482, 0.07125220505690422, 0.005162182965701478, 5.862401172285203e-07],
        id="fit_low_20pts_tail10",
    ),
    pytest.param(
        "fit_high",
        INTEGERS,
        10,
        False,
        1,
        (6.195354577453043, 1.984031431702629, 1, 1, 11.0),
        [5.0, 12.0, 15.0, 18.0, 25.0],
        [0.0, 0.10067702695541669, 0.4798163084198033, 0.8099821273814477, 0.996910874076166],
        id="fit_high_integers_1_to_20_tail10",
    ),
    pytest.param(
        "fit_high",
        D20,
        10,
        False,
        10000,
        (10000.13914604768, 110818.24456458972, 1, 10000, 0.26),
        Q,
        [0.02065891347244886, 0.10420352439099667, 0.1926167034856333, 0.44013590808431313, 0.9999049071018317],
        id="osdn_default_translate10000_20pts_tail10",
    ),
    pytest.param(
        "fit_high",
        INTEGERS,
        10,
        False,
        10000,
        (10005.928796269458, 3860.461797820905, 1, 10000, 11.0),
        [5.0, 12.0, 15.0, 18.0, 25.0],
        [0.009951027787093225, 0.13865248240376804, 0.37817565325492597, 0.7794759550401432, 0.9999999998278954],
        id="osdn_default_translate10000_integers_tail10",
    ),
    pytest.param(
        "fit_high",
        [0.3, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3],
        10,
        False,
        1,
        None,
        Q,
        [-9999.0, -9999.0, -9999.0, -9999.0, -9999.0],
        id="edge_all_equal_tail",
    ),
    pytest.param(
        "fit_high",
        D20,
        1,
        False,
        1,
        None,
        Q,
        [-9999.0, -9999.0, -9999.0, -9999.0, -9999.0],
        id="edge_tailsize_1",
    ),
    pytest.param(
        "fit_high",
        D20,
        2,
        False,
        1,
        (1.056267959573157, 32.755524314315025, 1, 1, 0.455),
        Q,
        [
            6.846232913915173e-09,
            1.0806275143493416e-05,
            0.0001366254745583939,
            0.004387836059958072,
            0.9999992037611117,
        ],
        id="edge_tailsize_2",
    ),
    pytest.param(
        "fit_high",
        [0.42],
        20,
        True,
        1,
        None,
        Q,
        [-9999.0, -9999.0, -9999.0, -9999.0, -9999.0],
        id="edge_osdn_style_single_sample",
    ),
    pytest.param(
        "fit_high",
        [0.2, 0.25, 0.4],
        20,
        True,
        1,
        (1.1242991157082265, 13.375079783532636, 1, 1, 0.2),
        Q,
        [0.023457365872909697, 0.1883334208154006, 0.3654905590608335, 0.7415295327594744, 0.9999999930874437],
        id="edge_osdn_style_3_samples_tail20",
    ),
    pytest.param(
        "fit_high",
        D20,
        0,
        True,
        1,
        (1.2083761773566806, 10.40621381969891, 1, 1, 0.112),
        Q,
        [0.06915985686504522, 0.2850539572420696, 0.4437944462363743, 0.7238032476886633, 0.999837410883156],
        id="edge_osdn_style_tail0_means_all(python [-0:])",
    ),
    pytest.param(
        "fit_high",
        [
            0.112,
            0.135,
            0.151,
            0.164,
            0.178,
            0.19,
            0.203,
            0.219,
            0.232,
            0.247,
            0.26,
            0.276,
            0.291,
            0.305,
            0.322,
            0.6,
            0.6,
            0.6,
            0.6,
            0.6,
        ],
        10,
        False,
        1,
        (1.254210081540764, 9.14035081902629, 1, 1, 0.26),
        Q,
        [0.014519931147854881, 0.06914705076174887, 0.118510679445062, 0.24217410193469158, 0.8397164734555396],
        id="edge_top_values_tied",
    ),
    pytest.param(
        "fit_high",
        [
            -0.188,
            -0.16499999999999998,
            -0.149,
            -0.13599999999999998,
            -0.122,
            -0.10999999999999999,
            -0.09699999999999998,
            -0.08099999999999999,
            -0.06799999999999998,
            -0.05299999999999999,
            -0.03999999999999998,
            -0.023999999999999966,
            -0.009000000000000008,
            0.0050000000000000044,
            0.02200000000000002,
            0.040000000000000036,
            0.07100000000000001,
            0.10200000000000004,
            0.15500000000000003,
            0.23100000000000004,
        ],
        10,
        False,
        1,
        (1.13539841502264, 12.739589126622645, 1, 1, -0.03999999999999998),
        [-0.25, -0.09999999999999998, -0.03999999999999998, 0.04999999999999999, 0.3],
        [0.00979734784697639, 0.0862301181341174, 0.179917720736941, 0.4482219223856463, 0.9997399424472198],
        id="edge_negative_values",
    ),
]


@pytest.mark.parametrize("method, data, tail, osdn_style, translate, params, queries, expected", CASES)
def test_matches_libmr(method, data, tail, osdn_style, translate, params, queries, expected):
    data = np.asarray(data)
    if osdn_style:
        data = np.sort(data)[-tail:]
        tail = len(data)
    model = (fit_high if method == "fit_high" else fit_low)(data, tail, translate)
    assert model.valid == (params is not None)
    if params is not None:
        scale, shape, sign, translate_amount, small_score = params
        assert model.sign == sign and model.translate_amount == translate_amount
        assert model.small_score == pytest.approx(small_score, abs=1e-15)
        assert model.scale == pytest.approx(scale, rel=1e-9)
        assert model.shape == pytest.approx(shape, rel=1e-9)
    np.testing.assert_allclose(model.w_score(queries), expected, rtol=0, atol=1e-9)


def test_tail_larger_than_data_raises_like_the_pypi_binding():
    with pytest.raises(ValueError, match="fit_size 10 is larger than the data size 5"):
        fit_high([0.112, 0.135, 0.151, 0.164, 0.178], 10)


def test_invalid_model_scores_minus_9999():
    model = fit_high([0.3] * 20, 10)
    assert not model.valid
    assert model.w_score(0.3) == INVALID_SCORE == -9999.0


def test_w_score_is_a_cdf_in_zero_one_and_zero_below_the_support():
    model = fit_high(D20, 10)
    q = np.linspace(-2.0, 3.0, 101)
    w = model.w_score(q)
    assert np.all((w >= 0) & (w <= 1)) and np.all(np.diff(w) >= 0)
    assert np.all(w[q < 0.26 - 1] == 0.0)
