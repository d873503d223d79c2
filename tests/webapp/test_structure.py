"""The web layer reads and acts through the domains' operations modules, so the API, the
console and the CLI cannot drift apart: queries live below webapp/, never in it."""
import ast
from pathlib import Path

WEBAPP = Path(__file__).resolve().parents[2] / "webapp"
# Authentication is the one query of the web's own: a token to its client.
ALLOWED = {WEBAPP / "auth.py"}


def _queries(path: Path) -> list[int]:
    """Lines that build a SQL statement (select/insert/update/delete from SQLAlchemy)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    imported = {alias.asname or alias.name for node in ast.walk(tree)
                if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("sqlalchemy")
                for alias in node.names}
    builders = imported & {"select", "insert", "update", "delete"}
    return [node.lineno for node in ast.walk(tree)
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
            and node.func.id in builders]


def test_no_module_of_the_web_layer_builds_its_own_query():
    found = {str(path.relative_to(WEBAPP.parent)): lines for path in sorted(WEBAPP.rglob("*.py"))
             if path not in ALLOWED and (lines := _queries(path))}
    assert found == {}, "move these queries into the domain's operations module"


def test_the_check_sees_a_query():
    sample = WEBAPP.parent / "tests" / "webapp" / "_query_sample.py"
    sample.write_text("from sqlalchemy import select\n\nrows = select(1)\n")
    try:
        assert _queries(sample) == [3]
    finally:
        sample.unlink()
