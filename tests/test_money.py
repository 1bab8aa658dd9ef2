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
