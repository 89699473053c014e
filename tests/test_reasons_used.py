"""Every reason in the registry is emitted somewhere: no documented check is a stub."""

import re

from dsforge.validate import REASONS
from tests.conftest import ROOT


def test_every_reason_is_emitted_by_code():
    src = "".join(p.read_text() for p in (ROOT / "dsforge").rglob("*.py"))
    for code in REASONS:
        uses = re.findall(r'["\']' + re.escape(code) + r'["\']', src)
        assert len(uses) >= 2, f"reason {code!r} is documented but never emitted"
