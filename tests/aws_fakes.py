"""Stand-ins for AWS: botocore Stubbers and a moto server on 127.0.0.1.

Response shapes follow botocore's service models and their documented examples (pricing
2017-10-15 ``GetProducts``; ec2 2016-11-15 ``DescribeSpotPriceHistory``; ce 2017-10-25).
moto does not implement the Pricing API, ``ListCostAllocationTags`` or
``UpdateCostAllocationTagsStatus``: those are stubbed. Cost Explorer's ``GetCostAndUsage``
runs on moto, whose results are queued through its ``/moto-api/static/ce/cost-and-usage-results``
endpoint (moto/ce/models.py, 5.x): each new request body takes the next queued result.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import boto3
from botocore.stub import Stubber
from moto.server import ThreadedMotoServer

FAKE_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}


_SESSION = boto3.session.Session(
    aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
)
"""One session for every stubbed client: its loader parses each service model once."""


def stubbed(service: str, region: str = "us-east-1") -> tuple[Any, Stubber]:
    """A real client whose calls a Stubber answers (nothing leaves the process)."""
    client = _SESSION.client(service, region_name=region)
    return client, Stubber(client)


def product(usd: float, unit: str = "Hrs", **attributes: str) -> str:
    """One ``PriceList`` entry as the Pricing API returns it (a JSON string)."""
    sku = "WQGC34PB2AWS8R4U"
    term = f"{sku}.JRTCKXETXF"
    return json.dumps(
        {
            "product": {"productFamily": "Compute Instance", "attributes": attributes, "sku": sku},
            "serviceCode": "AmazonEC2",
            "terms": {
                "OnDemand": {
                    term: {
                        "priceDimensions": {
                            f"{term}.6YS6EN2CT7": {
                                "unit": unit,
                                "endRange": "Inf",
                                "description": f"${usd} per {unit}",
                                "appliesTo": [],
                                "rateCode": f"{term}.6YS6EN2CT7",
                                "beginRange": "0",
                                "pricePerUnit": {"USD": f"{usd:.10f}"},
                            }
                        },
                        "sku": sku,
                        "effectiveDate": "2026-11-01T00:00:00Z",
                        "offerTermCode": "JRTCKXETXF",
                        "termAttributes": {},
                    }
                }
            },
            "version": "20261101000000",
            "publicationDate": "2026-11-01T00:00:00Z",
        }
    )


def products_page(*entries: str) -> dict[str, Any]:
    """A ``GetProducts`` answer."""
    return {"FormatVersion": "aws_v1", "PriceList": list(entries)}


def cost_result(
    by_service: dict[str, float], *, estimated: bool, day: str = "2026-10-01", end: str = ""
) -> dict[str, Any]:
    """A ``GetCostAndUsage`` answer grouped by SERVICE for one day."""
    return {
        "ResultsByTime": [
            {
                "TimePeriod": {"Start": day, "End": end or day},
                "Total": {},
                "Groups": [
                    {"Keys": [k], "Metrics": {"UnblendedCost": {"Amount": str(v), "Unit": "USD"}}}
                    for k, v in by_service.items()
                ],
                "Estimated": estimated,
            }
        ],
        "DimensionValueAttributes": [],
    }


class MotoCostExplorer:
    """A moto server on 127.0.0.1 that answers Cost Explorer with queued results."""

    def __init__(self, server: ThreadedMotoServer) -> None:
        host, port = server.get_host_and_port()
        self.url = f"http://{host}:{port}"

    def _post(self, path: str, body: Any) -> None:
        request = urllib.request.Request(
            self.url + path,
            data=json.dumps(body).encode(),
            method="POST",
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=5):
            pass

    def reset(self) -> None:
        """Forget every queued result and every answer given."""
        self._post("/moto-api/reset", {})

    def queue(self, *results: dict[str, Any]) -> None:
        """The answers to the next new ``GetCostAndUsage`` requests, in order."""
        self._post("/moto-api/static/ce/cost-and-usage-results", {"results": list(results)})

    def env(self) -> dict[str, str]:
        """What points boto3 at this server: the standard endpoint variable, fake credentials."""
        return {"AWS_ENDPOINT_URL": self.url, **FAKE_CREDENTIALS}


@contextmanager
def moto_server() -> Iterator[MotoCostExplorer]:
    """Start moto on a free loopback port; stop it on exit."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        yield MotoCostExplorer(server)
    finally:
        server.stop()
