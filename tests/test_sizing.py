from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from daemon.sizing import Limits, buy_volume, order_fee, resolve_price, sell_volume, split_amounts

LIMITS = Limits(mineq=1, maxeq=100_000, minap=9_000, maxap=10_000)


def test_price_spec():
    assert resolve_price("max", LIMITS) == 10_000
    assert resolve_price("min", LIMITS) == 9_000
    assert resolve_price(9_500, LIMITS) == 9_500


def test_buy_volume_matches_hand_computation():
    # 10,037,120 / (10,000 * 1.003712) = 1000 exactly
    assert buy_volume(10_037_120, 10_000, 0.003712, LIMITS) == 1000
    assert buy_volume(10_037_119, 10_000, 0.003712, LIMITS) == 999


def test_buy_volume_caps_and_floors():
    assert buy_volume(10**13, 10_000, 0.003712, LIMITS) == 100_000
    assert buy_volume(5_000, 10_000, 0.003712, LIMITS) == 0
    assert buy_volume(-30, 10_000, 0.003712, LIMITS) == 0
    assert buy_volume(10**6, 10_000, 0.003712, Limits(mineq=500, maxeq=1000, minap=1, maxap=2)) == 0


@given(st.integers(0, 10**12), st.integers(1, 10**6), st.sampled_from([0.003712, 0.0088, 0.0]))
def test_buy_volume_is_always_affordable_and_maximal(amount, price, fee):
    limits = Limits(mineq=1, maxeq=10**9, minap=1, maxap=10**6)
    volume = buy_volume(amount, price, fee, limits)
    rate = Decimal(str(fee))
    assert volume >= 0
    assert volume * price * (1 + rate) <= amount
    assert volume == limits.maxeq or (volume + 1) * price * (1 + rate) > amount


def test_sell_volume():
    assert sell_volume(1234.9, LIMITS) == 1234
    assert sell_volume(10**7, LIMITS) == 100_000
    assert sell_volume(0, LIMITS) == 0


def test_fee_rounding():
    assert order_fee(1000, 10_000, 0.003712) == 37_120
    assert order_fee(1, 135, 0.003712) == 1


def test_split_amounts():
    assert split_amounts(1000, [None]) == [1000]
    assert split_amounts(1000, [None, None]) == [500, 500]
    assert split_amounts(1000, [0.7, None]) == [700, 300]
    assert split_amounts(1000, [0.5, 0.25]) == [500, 250]
    assert split_amounts(-5, [None]) == [0]
