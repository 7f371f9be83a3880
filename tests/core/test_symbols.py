"""SYMBOLS' names and patterns on their own: what an entry may be, what a pattern stands for
against a list of trading symbols, what changed from one list to the next."""

import pytest

from crypto_pipeline.core.settings import Settings, SettingsError
from crypto_pipeline.core.symbols import (
    Resolution,
    changes,
    check_entry,
    is_pattern,
    names,
    patterns,
    resolve,
)

TRADING = ["BTCUSDT", "ETHUSDT", "SOLUSDT", "ETHBTC", "BNBBTC", "BTCFDUSD", "USDTTRY"]


@pytest.mark.parametrize("entry, expected", [
    ("btcusdt", "BTCUSDT"), (" *usdt ", "*USDT"), ("BTC*", "BTC*"), ("*", "*"),
    ("S?LUSDT", "S?LUSDT"), ("[BE]TCUSDT", "[BE]TCUSDT"), ("*[!T]USDT", "*[!T]USDT")])
def test_an_entry_is_a_name_or_a_shell_style_pattern(entry, expected):
    assert check_entry(entry) == expected


@pytest.mark.parametrize("entry", ["BTC-USDT", "B", "*US-DT", "[BTCUSDT", "BTC USDT", ""])
def test_anything_else_is_refused_with_the_rule(entry):
    with pytest.raises(ValueError, match="not a"):
        check_entry(entry)


def test_names_and_patterns_keep_their_order():
    entries = ("ETHUSDT", "*BTC", "BTCUSDT", "SOL*")
    assert names(entries) == ("ETHUSDT", "BTCUSDT")
    assert patterns(entries) == ("*BTC", "SOL*")
    assert is_pattern("*") and not is_pattern("BTCUSDT")


def test_a_pattern_stands_for_every_trading_symbol_it_matches():
    assert resolve(["*USDT"], TRADING) == Resolution(("BTCUSDT", "ETHUSDT", "SOLUSDT"), (), ())
    assert resolve(["BTC*"], TRADING).symbols == ("BTCFDUSD", "BTCUSDT")
    assert resolve(["*"], TRADING).symbols == tuple(sorted(TRADING))
    assert resolve(["?THBTC", "[BS]*USDT"], TRADING).symbols == ("BTCUSDT", "ETHBTC",
                                                                  "SOLUSDT")


def test_names_come_first_in_their_order_and_once_though_a_pattern_matches_them_too():
    resolved = resolve(["SOLUSDT", "*USDT", "ETHBTC"], TRADING)
    assert resolved.symbols == ("SOLUSDT", "ETHBTC", "BTCUSDT", "ETHUSDT")


def test_a_name_not_trading_and_a_pattern_matching_nothing_are_named():
    resolved = resolve(["XRPUSDT", "*USDT", "*DOGE", "LUNAUSDT"], TRADING)
    assert resolved.symbols == ("BTCUSDT", "ETHUSDT", "SOLUSDT")
    assert resolved.not_trading == ("XRPUSDT", "LUNAUSDT")
    assert resolved.unmatched == ("*DOGE",)


def test_changes_say_what_joined_and_what_left():
    assert changes(["A1", "B1", "C1"], ["B1", "D1", "C1", "E1"]) == (("D1", "E1"), ("A1",))
    assert changes(["A1"], ["A1"]) == ((), ())


def test_settings_take_patterns_mixed_with_names():
    settings = Settings.load(environ={"SYMBOLS": "*usdt, BTCFDUSD,eth*"}, env_file=None)
    assert settings.symbols == ("*USDT", "BTCFDUSD", "ETH*")
    assert settings.symbol_names == ("BTCFDUSD",)
    assert settings.symbol_patterns == ("*USDT", "ETH*")
    assert settings.symbols_refresh_seconds == 3600
    with pytest.raises(SettingsError, match="SYMBOLS='BTC-USD'"):
        Settings.load(environ={"SYMBOLS": "BTC-USD"}, env_file=None)
    with pytest.raises(SettingsError, match="listed twice"):
        Settings.load(environ={"SYMBOLS": "*USDT,*usdt"}, env_file=None)
