"""``qwen-stress prices refresh``: Pricing API and spot history (Stubbers) into a dated table."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from botocore.stub import ANY, Stubber
from typer.testing import CliRunner

from costs import aws, refresh
from domain import catalog, prices
from loadtest.cli import app
from loadtest.targets import free_port
from tests.aws_fakes import FAKE_CREDENTIALS, product, products_page, stubbed
from tests.pulumi_mocks import ROOT

NOW = datetime(2026, 12, 10, 12, 0, tzinfo=UTC)
START = NOW - timedelta(days=refresh.SPOT_DAYS)
runner = CliRunner()


def _ec2_filters(instance_type: str, region: str) -> list[dict[str, str]]:
    pairs = [("instanceType", instance_type), ("regionCode", region), *refresh.EC2_ON_DEMAND]
    return [{"Type": "TERM_MATCH", "Field": f, "Value": v} for f, v in pairs]


def _stub_pricing(stub: Stubber, region: str, on_demand: dict[str, float | None]) -> None:
    """Answers in the order ``refresh`` asks: each instance type, then EKS, NAT, gp3."""
    for instance_type, usd in on_demand.items():
        stub.add_response(
            "get_products",
            products_page(*([product(usd, instanceType=instance_type)] if usd else [])),
            {
                "ServiceCode": "AmazonEC2",
                "Filters": _ec2_filters(instance_type, region),
                "FormatVersion": "aws_v1",
            },
        )
    stub.add_response(
        "get_products",
        products_page(
            product(0.6, usagetype="USE1-AmazonEKS-Hours:extendedSupport"),
            product(0.1, usagetype="USE1-AmazonEKS-Hours:perCluster"),
        ),
    )
    stub.add_response(
        "get_products",
        products_page(
            product(0.048, usagetype="EU-NatGateway-Hours"),
            product(0.048, unit="GB", usagetype="EU-NatGateway-Bytes"),
        ),
    )
    stub.add_response("get_products", products_page(product(0.088, unit="GB-Mo")))


def _spot(instance_type: str, zone: str, usd: float, at: datetime) -> dict[str, Any]:
    return {
        "AvailabilityZone": zone,
        "InstanceType": instance_type,
        "ProductDescription": "Linux/UNIX",
        "SpotPrice": f"{usd:.6f}",
        "Timestamp": at,
    }


SPOT_PAGES: list[dict[str, Any]] = [
    {
        "SpotPriceHistory": [
            # zone a: 0.20 from before the window until half-way, then 0.30
            _spot("g4dn.xlarge", "eu-west-1a", 0.20, START - timedelta(days=1)),
            _spot("g4dn.xlarge", "eu-west-1a", 0.30, START + timedelta(days=3.5)),
        ],
        "NextToken": "page-2",
    },
    # zone b: 0.25 all week
    {"SpotPriceHistory": [_spot("g4dn.xlarge", "eu-west-1b", 0.25, START)], "NextToken": ""},
]


def _stub_spot(stub: Stubber, types: list[str], start: Any = START, end: Any = NOW) -> None:
    base = {"InstanceTypes": types, "ProductDescriptions": ["Linux/UNIX"]}
    window = {"StartTime": start, "EndTime": end}
    stub.add_response("describe_spot_price_history", SPOT_PAGES[0], {**base, **window})
    stub.add_response(
        "describe_spot_price_history", SPOT_PAGES[1], {**base, **window, "NextToken": "page-2"}
    )


def test_spot_mean_is_time_weighted_over_every_zone_and_max_is_the_worst() -> None:
    records = [r for page in SPOT_PAGES for r in page["SpotPriceHistory"]]
    mean, high = refresh.spot_stats(records, START, NOW)["g4dn.xlarge"]
    assert mean == pytest.approx((0.20 * 3.5 + 0.30 * 3.5 + 0.25 * 7) / 14)
    assert high == 0.30


def test_a_price_that_ended_before_the_window_does_not_count() -> None:
    records = [
        _spot("g5.xlarge", "z", 9.0, START - timedelta(days=2)),
        _spot("g5.xlarge", "z", 0.5, START - timedelta(days=1)),
    ]
    assert refresh.spot_stats(records, START, NOW)["g5.xlarge"] == (0.5, 0.5)


def test_refresh_builds_a_dated_table_from_both_apis() -> None:
    pricing, pricing_stub = stubbed("pricing")
    ec2, ec2_stub = stubbed("ec2", "eu-west-1")
    _stub_pricing(pricing_stub, "eu-west-1", {"g4dn.xlarge": 0.587, "p5en.48xlarge": None})
    _stub_spot(ec2_stub, ["g4dn.xlarge"])
    with pricing_stub, ec2_stub:
        done = refresh.refresh(pricing, ec2, "eu-west-1", ["g4dn.xlarge", "p5en.48xlarge"], NOW)
    pricing_stub.assert_no_pending_responses()
    ec2_stub.assert_no_pending_responses()
    table = done.table
    assert (table.region, table.as_of) == ("eu-west-1", date(2026, 12, 10))
    assert done.missing == ("p5en.48xlarge",)
    g4dn = table.instance("g4dn.xlarge")
    assert g4dn.on_demand_usd_per_h == 0.587
    assert g4dn.spot_max_usd_per_h == 0.30
    assert g4dn.spot_mean_usd_per_h == pytest.approx(0.25)
    assert table.eks_control_plane_usd_per_h == 0.1  # the perCluster product, not extended
    assert table.nat_gateway_usd_per_h == 0.048  # the hourly charge, not the per-GB one
    assert table.gp3_usd_per_gb_month == 0.088


def test_a_region_that_sells_nothing_is_refused() -> None:
    pricing, pricing_stub = stubbed("pricing")
    ec2, _ = stubbed("ec2")
    pricing_stub.add_response("get_products", products_page())
    with pricing_stub, pytest.raises(refresh.RefreshError, match="region code like eu-west-1"):
        refresh.refresh(pricing, ec2, "mars-1", ["g4dn.xlarge"], NOW)


def test_a_missing_service_price_is_refused() -> None:
    pricing, pricing_stub = stubbed("pricing")
    ec2, ec2_stub = stubbed("ec2")
    pricing_stub.add_response("get_products", products_page(product(0.5)))
    pricing_stub.add_response("get_products", products_page())  # no EKS product
    ec2_stub.add_response("describe_spot_price_history", {"SpotPriceHistory": []})
    with pricing_stub, ec2_stub, pytest.raises(refresh.RefreshError, match="EKS cluster-hour"):
        refresh.refresh(pricing, ec2, "us-east-1", ["g4dn.xlarge"], NOW)


@pytest.fixture
def clients(monkeypatch: pytest.MonkeyPatch) -> dict[str, tuple[Any, Stubber]]:
    made = {"pricing": stubbed("pricing"), "ec2": stubbed("ec2", "eu-west-1")}
    monkeypatch.setattr(aws, "client", lambda service, region=None: made[service][0])
    return made


def test_cli_refresh_writes_the_table_estimates_then_use(
    clients: dict[str, tuple[Any, Stubber]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(prices.PRICES_DIR_ENV, str(tmp_path))
    everything = sorted(catalog.instances())
    sold = {
        t: (0.6 if t == "g4dn.xlarge" else 0.4 if t == "c6i.2xlarge" else None) for t in everything
    }
    _stub_pricing(clients["pricing"][1], "eu-west-1", sold)
    _stub_spot(clients["ec2"][1], ["c6i.2xlarge", "g4dn.xlarge"], ANY, ANY)  # the CLI's "now"
    with clients["pricing"][1], clients["ec2"][1]:
        done = runner.invoke(app, ["prices", "refresh", "--region", "eu-west-1"])
    assert done.exit_code == 0, done.output
    path = tmp_path / "prices-eu-west-1.json"
    assert f"wrote {path}: eu-west-1 prices of " in done.output
    assert json.loads(path.read_text())["instances"]["g4dn.xlarge"]["on_demand_usd_per_h"] == 0.6
    stack = tmp_path / "Pulumi.eu.yaml"
    text = (
        (ROOT / "Pulumi.dev.yaml")
        .read_text()
        .replace("aws:region: us-east-1", "aws:region: eu-west-1")
    )
    stack.write_text(text)
    estimate = runner.invoke(app, ["cost", "estimate", "--config", str(stack), "--json"])
    assert estimate.exit_code == 0, estimate.output
    data = json.loads(estimate.output)
    assert data["prices"]["region"] == "eu-west-1"
    assert data["prices"]["path"] == str(path)
    assert data["hourly_usd"]["max"] == pytest.approx(0.1 + 0.048 + 2 * 0.4 + 5 * 0.6)


def _one_line_error(args: list[str]) -> str:
    done = runner.invoke(app, args)
    assert done.exit_code == 2, done.output
    assert "Traceback" not in done.output
    (line,) = [x for x in done.output.splitlines() if x.startswith("error:")]
    return line


def test_cli_access_denied_names_the_permission(
    clients: dict[str, tuple[Any, Stubber]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(prices.PRICES_DIR_ENV, str(tmp_path))
    clients["pricing"][1].add_client_error(
        "get_products", service_error_code="AccessDeniedException", http_status_code=400
    )
    with clients["pricing"][1]:
        line = _one_line_error(["prices", "refresh", "--region", "eu-west-1"])
    assert "pricing:GetProducts" in line and "AccessDeniedException" in line
    assert list(tmp_path.iterdir()) == []


def test_cli_without_network_says_so(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(prices.PRICES_DIR_ENV, str(tmp_path))
    for name, value in FAKE_CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    # A loopback port nothing listens on: the connection is refused at once.
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    line = _one_line_error(["prices", "refresh"])
    assert "cannot reach AWS" in line and "AWS_ENDPOINT_URL" in line
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("region", ["../../etc/x", "us-east-1/../../x", "US-EAST-1", "", "nowhere"])
def test_a_region_that_is_no_region_name_is_refused_before_aws_is_asked(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, region: str
) -> None:
    monkeypatch.setenv(prices.PRICES_DIR_ENV, str(tmp_path / "prices"))
    # Nothing listens there: had the command gone on, it would say it cannot reach AWS.
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    line = _one_line_error(["prices", "refresh", "--region", region])
    assert line.startswith(f"error: --region {region!r} is not an AWS region name"), line
    assert list(tmp_path.iterdir()) == []


def test_region_names_aws_uses_are_accepted() -> None:
    for region in ("us-east-1", "eu-west-2", "ap-southeast-4", "us-gov-west-1", "il-central-1"):
        assert prices.region_problem(region) is None, region
        assert prices.table_path(region).name == f"prices-{region}.json"


def test_a_stack_region_that_is_no_region_name_is_priced_with_the_bundled_table(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv(prices.PRICES_ENV, raising=False)
    monkeypatch.setenv(prices.PRICES_DIR_ENV, str(tmp_path))
    (tmp_path / "evil.json").write_text("not a table")  # what prices-../evil.json would reach
    assert prices.current("../evil") == prices.bundled()
