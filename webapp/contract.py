"""The HTTP contract: the OpenAPI document, served as written, and the id converter.

tests/webapp/test_openapi.py keeps the document and the URL map equal.
"""
from __future__ import annotations

from pathlib import Path

from flask import Blueprint, Flask, send_file
from werkzeug.routing import IntegerConverter

OPENAPI_PATH = Path(__file__).with_name("openapi.yaml")
MAX_ID = 2 ** 63 - 1  # BIGINT: a larger id could never exist, so it is simply not found

bp = Blueprint("contract", __name__)


class IdConverter(IntegerConverter):
    """`<id:name>`: a non-negative integer that fits a BIGINT column.

    Werkzeug's `<int:>` matches any number of digits, and a bound parameter past
    BIGINT makes PostgreSQL fail the query (a 500 instead of a 404).
    """

    def __init__(self, url_map):
        super().__init__(url_map, min=0, max=MAX_ID)


@bp.get("/openapi.yaml")
def openapi():
    return send_file(OPENAPI_PATH, mimetype="application/yaml")


def init_contract(app: Flask) -> None:
    app.url_map.converters["id"] = IdConverter
    app.register_blueprint(bp)
