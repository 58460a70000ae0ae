"""The price table in use: bundled by default, a refreshed one when there is one, always dated."""

from __future__ import annotations

import os
from datetime import date
from pathlib import Path

import pytest

from domain import catalog, prices
from domain.prices import InstancePrice, PriceTable, PriceTableError
from domain.stack_config import ConfigError, parse
from tests.pulumi_mocks import stack_config


def _table(region: str = "us-east-1", g4dn: float = 0.6, day: int = 1) -> PriceTable:
    return PriceTable(
        region=region,
        as_of=date(2026, 12, day),
        source="test",
        instances={
            "g4dn.xlarge": InstancePrice(
                on_demand_usd_per_h=g4dn, spot_mean_usd_per_h=0.2, spot_max_usd_per_h=0.3
            ),
            "c6i.2xlarge": InstancePrice(on_demand_usd_per_h=0.4),
        },
        eks_control_plane_usd_per_h=0.1,
        nat_gateway_usd_per_h=0.05,
        gp3_usd_per_gb_month=0.08,
    )


@pytest.fixture
def prices_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv(prices.PRICES_DIR_ENV, str(tmp_path))
    monkeypatch.delenv(prices.PRICES_ENV, raising=False)
    return tmp_path


def test_bundled_table_is_the_catalog_prices_dated() -> None:
    table = prices.bundled()
    t4 = catalog.instance("g4dn.xlarge")
    assert table.instance("g4dn.xlarge").on_demand_usd_per_h == t4.on_demand_usd_per_h
    assert table.node_hour_usd("g4dn.xlarge", "spot") == t4.spot_usd_per_h_high
    assert table.label() == "us-east-1 prices of 2026-11-28 (bundled)"
    assert table.path is None


def test_without_a_refreshed_table_the_bundled_one_is_used(prices_dir: Path) -> None:
    assert prices.current("us-east-1") is prices.bundled()


def test_a_refreshed_table_is_used_for_its_region_only(prices_dir: Path) -> None:
    _table("eu-west-1").write(prices.table_path("eu-west-1"))
    used = prices.current("eu-west-1")
    assert used.region == "eu-west-1"
    assert (
        used.label() == f"eu-west-1 prices of 2026-12-01 ({prices_dir / 'prices-eu-west-1.json'})"
    )
    assert prices.current("us-east-1") is prices.bundled()


def test_a_rewritten_table_is_read_again(prices_dir: Path) -> None:
    path = prices.table_path("us-east-1")
    _table(g4dn=0.6).write(path)
    assert prices.current().node_hour_usd("g4dn.xlarge", "on-demand") == 0.6
    _table(g4dn=0.7, day=2).write(path)
    os.utime(path, ns=(1, path.stat().st_mtime_ns + 1_000_000))
    assert prices.current().node_hour_usd("g4dn.xlarge", "on-demand") == 0.7


def test_a_pinned_table_wins(
    prices_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pinned = tmp_path / "pinned.json"
    _table("ap-south-1").write(pinned)
    _table("us-east-1", g4dn=9.0).write(prices.table_path("us-east-1"))
    monkeypatch.setenv(prices.PRICES_ENV, str(pinned))
    assert prices.current("us-east-1").region == "ap-south-1"


def test_a_missing_or_broken_table_is_one_clear_error(
    prices_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(prices.PRICES_ENV, str(prices_dir / "nope.json"))
    with pytest.raises(PriceTableError, match=r"nope.json: No such file.*prices refresh"):
        prices.current()
    broken = prices.table_path("us-east-1")
    broken.write_text('{"region": "us-east-1"}', encoding="utf-8")
    monkeypatch.delenv(prices.PRICES_ENV)
    with pytest.raises(PriceTableError, match=r"not one `qwen-stress prices refresh` wrote") as err:
        prices.current()
    assert "\n" not in str(err.value)


def test_spot_basis_max_by_default_mean_on_request() -> None:
    table = _table()
    assert table.node_hour_usd("g4dn.xlarge", "spot") == 0.3
    assert table.node_hour_usd("g4dn.xlarge", "spot", spot="mean") == 0.2
    assert table.node_hour_usd("c6i.2xlarge", "spot") == 0.4  # no spot history: on-demand
    bundled = prices.bundled().instance("g4dn.xlarge")
    assert bundled.hourly_usd("spot", spot="mean") == bundled.spot_max_usd_per_h  # no mean known


def test_volume_hours_follow_the_gb_month_rate() -> None:
    assert _table().volume_hour_usd(730) == pytest.approx(0.08)


def test_unknown_instance_names_the_table_and_the_fix() -> None:
    with pytest.raises(PriceTableError, match=r"g5.xlarge has no price in the us-east-1 prices"):
        _table().instance("g5.xlarge")


def test_the_budget_check_uses_the_table_in_use_and_names_its_date(prices_dir: Path) -> None:
    values = stack_config("dev")  # budget 4 $/h; 3.46 $/h at bundled prices
    assert parse(values).max_hourly_usd() == pytest.approx(3.455)
    _table(g4dn=0.8).write(prices.table_path("us-east-1"))  # 0.1 + 0.05 + 2 x 0.4 + 5 x 0.8
    with pytest.raises(
        ConfigError, match=r"budget.maxHourlyUsd.*\$4.95/h \(us-east-1 prices of 2026-12-01"
    ):
        parse(values)


def test_a_stack_type_missing_from_the_table_names_the_setting(prices_dir: Path) -> None:
    values = stack_config("a10g")  # g5.xlarge, absent from the test table
    _table().write(prices.table_path("us-east-1"))
    with pytest.raises(ConfigError, match=r"qwen-stress:gpu.instanceType: g5.xlarge has no price"):
        parse(values)
