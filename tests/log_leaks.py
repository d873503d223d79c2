"""Find secrets and personal data in log output.

The whole suite's logs go through this at the end of `make test` (tests/conftest.py):
every record the test processes log, through the production handler chain, and
every log that the e2e stacks' gunicorn, worker and beat wrote. It is written
apart from store/redaction.py, so a pattern the redaction misses is not missed
here for the same reason. Two kinds of finding:

- shapes: signature headers, API tokens, webhook secrets, bearer credentials,
  emails, international phone numbers, card numbers (Luhn-checked);
- known values: every secret, token or password the tests configure, and every
  phone number they send, read from the test sources themselves.
"""
from __future__ import annotations

import ast
import dataclasses
import re
from pathlib import Path
from typing import Iterable, Iterator

TESTS = Path(__file__).resolve().parent

SHAPES: dict[str, re.Pattern] = {
    "API token": re.compile(r"\bslc_[A-Za-z0-9_-]{20,}"),
    "webhook secret": re.compile(r"\bwhsec_[A-Za-z0-9+/=_-]{8,}"),
    "bearer credential": re.compile(r"(?i)\bbearer\s+[A-Za-z0-9._~+/-]{16,}"),
    "Stripe signature": re.compile(r"\bv1=[0-9a-f]{64}\b"),
    "Meta signature": re.compile(r"\bsha(?:1|256|512)=[0-9a-f]{40,}"),
    "Standard Webhooks signature": re.compile(r"\bv1,[A-Za-z0-9+/]{42,}={0,2}"),
    "Paystack signature": re.compile(r"(?<![0-9a-f])[0-9a-f]{128}(?![0-9a-f])"),
    "email": re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)*\.[A-Za-z]{2,}\b"),
    "phone number": re.compile(r"\+\d{10,15}\b"),
}
# 13 to 19 digits, optionally grouped; card numbers start with 2-6 (which also
# keeps epoch-millisecond timestamps, starting with 1, out).
_CARD = re.compile(r"(?<![\w.-])[2-6](?:[ -]?\d){12,18}(?![\w.-])")
_SECRET_NAME = re.compile(r"secret|token|password", re.IGNORECASE)
_ENV_VAR_NAME = re.compile(r"^[A-Z][A-Z0-9_]*$")  # secrets_env lists names, not values
_PHONE_LITERAL = re.compile(r"^\+?\d{11,15}$")


@dataclasses.dataclass(frozen=True)
class Leak:
    kind: str
    path: Path
    line_no: int
    excerpt: str  # the match, shortened: enough to find it, not to reuse it

    def __str__(self) -> str:
        return f"{self.path.name}:{self.line_no}: {self.kind} ({self.excerpt})"


def luhn_valid(digits: str) -> bool:
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = int(char) * (2 if index % 2 else 1)
        total += value - 9 if value > 9 else value
    return total % 10 == 0


def known_values(sources: Iterable[Path] | None = None) -> dict[str, str]:
    """value -> kind, for the secrets and phone numbers written in the test sources:
    string constants assigned to, keyed by or passed as a name that says secret,
    token or password; and string literals that are phone numbers."""
    found: dict[str, str] = {}
    for path in sources if sources is not None else TESTS.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            for name, value in _named_strings(node):
                if _SECRET_NAME.search(name) and len(value) >= 8 \
                        and not _ENV_VAR_NAME.match(value):
                    found[value] = f"test secret ({name})"
            if isinstance(node, ast.Constant) and isinstance(node.value, str) \
                    and _PHONE_LITERAL.match(node.value):
                found[node.value] = "test phone number"
    return found


def _named_strings(node: ast.AST) -> Iterator[tuple[str, str]]:
    def text(value: ast.AST) -> str | None:
        return value.value if isinstance(value, ast.Constant) \
            and isinstance(value.value, str) else None

    if isinstance(node, ast.Assign):
        for target in node.targets:
            if isinstance(target, ast.Name) and text(node.value) is not None:
                yield target.id, text(node.value)
    elif isinstance(node, ast.Dict):
        for key, value in zip(node.keys, node.values):
            if key is not None and text(key) is not None and text(value) is not None:
                yield text(key), text(value)
    elif isinstance(node, ast.keyword) and node.arg and text(node.value) is not None:
        yield node.arg, text(node.value)


def scan_text(text: str, path: Path, known: dict[str, str]) -> list[Leak]:
    def leak(kind: str, match: re.Match) -> Leak:
        line_no = text.count("\n", 0, match.start()) + 1
        return Leak(kind, path, line_no, _shorten(match.group()))

    leaks = [leak(kind, match) for kind, pattern in SHAPES.items()
             for match in pattern.finditer(text)]
    leaks += [leak("card number", match) for match in _CARD.finditer(text)
              if luhn_valid(re.sub(r"\D", "", match.group()))]
    if known:
        # Longest first, so a value containing another is reported as itself; and
        # a phone number inside a longer digit run is some other number.
        literal = re.compile("|".join(
            (rf"(?<!\d){re.escape(v)}(?!\d)" if kind == "test phone number" else re.escape(v))
            for v, kind in sorted(known.items(), key=lambda item: -len(item[0]))))
        leaks += [leak(known[match.group()], match) for match in literal.finditer(text)]
    return leaks


def _shorten(value: str) -> str:
    return value if len(value) <= 8 else f"{value[:6]}…{len(value)} chars"


def scan_directory(directory: Path, known: dict[str, str] | None = None
                   ) -> tuple[int, int, list[Leak]]:
    """(files, lines, leaks) over every *.log under `directory`."""
    known = known_values() if known is None else known
    files = lines = 0
    leaks: list[Leak] = []
    for path in sorted(directory.rglob("*.log")):
        text = path.read_text(errors="replace")
        files, lines = files + 1, lines + text.count("\n")
        leaks += scan_text(text, path, known)
    return files, lines, leaks
