"""The create path's body parse, in microseconds per body: bounded JSON load, then the typed model.

    python -m bench.parse [--n 20000]

Figures, all from one run on the same bodies: `bounded_load_us` (messaging.jsonbounds alone, the
floor every body pays), `create_parse_us` (api.bodies.parse_body of the create draft: load, the
NUL/surrogate walk, MessageDraft validation), `pydantic_json_us` (MessageDraft.model_validate_json
with no bounds, what a plain FastAPI body costs) and `xml_parse_us`. Times are CPU time of this process (the machine is shared). The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
import timeit
from collections.abc import Callable

from starlette.requests import Request

from api import bodies
from api.wire import MessageDraft
from messaging.jsonbounds import load_json

USERS = [{"id": f"user{i:07d}"} for i in range(3)]
JSON_BODY = json.dumps(
    {"subject": "Stock of vaccines", "text": "Please confirm this month's stock. " * 4, "users": USERS,
     "userGroups": [{"id": "group000001"}], "organisationUnits": []}
).encode()
XML_BODY = (
    b"<message><subject>Stock of vaccines</subject><text>Please confirm this month's stock.</text>"
    b'<users><user id="user0000000"/><user id="user0000001"/><user id="user0000002"/></users>'
    b'<userGroups><userGroup id="group000001"/></userGroups></message>'
)


def _request(content_type: str) -> Request:
    return Request({"type": "http", "method": "POST", "path": "/", "query_string": b"",
                    "headers": [(b"content-type", content_type.encode())]})


def _us_per_call(fn: Callable[[], object], n: int, repeats: int = 5) -> float:
    # CPU time of this process, median of `repeats` runs: on a shared machine wall time mostly
    # measures the wait for a core
    return statistics.median(timeit.repeat(fn, number=n, repeat=repeats, timer=time.process_time)) / n * 1e6


def main() -> None:
    """Time each stage and print the figures."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=20_000)
    n = parser.parse_args().n
    as_json, as_xml = _request("application/json"), _request("application/xml")
    figures = {
        "bounded_load_us": _us_per_call(lambda: load_json(JSON_BODY), n),
        "create_parse_us": _us_per_call(lambda: bodies.parse_body(bodies.DRAFT, as_json, JSON_BODY), n),
        "pydantic_json_us": _us_per_call(lambda: MessageDraft.model_validate_json(JSON_BODY), n),
        "xml_parse_us": _us_per_call(lambda: bodies.parse_body(bodies.DRAFT, as_xml, XML_BODY), n // 4),
        "body_bytes": len(JSON_BODY),
        "load_average_1m": os.getloadavg()[0],
    }
    figures = {k: round(v, 2) if isinstance(v, float) else v for k, v in figures.items()}
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
