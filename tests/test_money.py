import pytest

from proxy.money import cost_micro, format_usd, parse_usd, round_half_up, usd_number


@pytest.mark.parametrize("num,den,expected", [
    (0, 1_000_000, 0), (499_999, 1_000_000, 0), (500_000, 1_000_000, 1), (500_001, 1_000_000, 1),
    (1_499_999, 1_000_000, 1), (1_500_000, 1_000_000, 2), (2_500_000, 1_000_000, 3), (7, 2, 4), (5, 2, 3),
])
def test_round_half_up(num, den, expected):
    assert round_half_up(num, den) == expected


def test_round_half_up_refuses_negative():
    with pytest.raises(ValueError):
        round_half_up(-1, 2)


def test_cost_is_rounded_once_not_per_lane():
    # Each lane alone is 0.4 micro-USD (rounds to 0); together 1.2 -> 1.
    assert cost_micro([(4, 100_000), (4, 100_000), (4, 100_000)]) == 1
    # 1M tokens at $3.00/M is exactly $3.
    assert cost_micro([(1_000_000, 3_000_000)]) == 3_000_000
    assert cost_micro([(472, 3_000_000), (89, 15_000_000)]) == round_half_up(472 * 3_000_000 + 89 * 15_000_000, 10**6)


@pytest.mark.parametrize("text,micro", [
    ("1", 1_000_000), ("0.000001", 1), ("$12.50", 12_500_000), (" 3 ", 3_000_000), ("-2.5", -2_500_000),
    (0.8, 800_000), ("1e-6", 1),
])
def test_parse_usd(text, micro):
    assert parse_usd(text) == micro


@pytest.mark.parametrize("bad", ["abc", "", "0.0000001", "nan", "inf", "1,5"])
def test_parse_usd_refuses(bad):
    with pytest.raises(ValueError):
        parse_usd(bad)


def test_format_usd():
    assert format_usd(0) == "0.000000"
    assert format_usd(1) == "0.000001"
    assert format_usd(-1_500_000) == "-1.500000"
    assert format_usd(123_456_789) == "123.456789"
    assert usd_number(450_500_000) == 450.5


@pytest.mark.parametrize("micro, factor, expected", [
    (1, 30, 30), (1, "2.5", 3), (5, "0.1", 1), (4, "0.1", 0), (15, "0.1", 2), (3_000_000, "0.1", 300_000),
    (333_333, "0.3", 100_000), (1, "0.5", 1), (0, "7", 0), (10**15, "1", 10**15),
])
def test_scale_rounds_half_up_once(micro, factor, expected):
    from decimal import Decimal

    from proxy.money import scale
    assert scale(micro, Decimal(factor)) == expected


def test_paid_to_credit_and_derived_prices_use_the_one_rule():
    from decimal import Decimal

    from proxy.accounts.credits import paid_to_credit
    from proxy.catalog import _prices
    assert paid_to_credit(1, Decimal("2.5")) == 3 and paid_to_credit(1_000_000, Decimal(30)) == 30_000_000
    # A tenth of 0.000015 USD is 1.5 micro-USD: half up, as every other rounding (floor said 1).
    assert _prices("0.000015", "1").cache_read == 2


def test_nothing_outside_money_py_rounds_money_on_its_own():
    """The one rounding rule: no Decimal rounding modes, quantize or to_integral elsewhere."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    pattern = re.compile(r"ROUND_[A-Z_]+|\.quantize\(|to_integral")
    offenders = [str(path.relative_to(root)) for folder in ("proxy", "storage")
                 for path in (root / folder).rglob("*.py")
                 if path.name != "money.py" and pattern.search(path.read_text())]
    assert offenders == []
