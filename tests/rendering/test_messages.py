from __future__ import annotations

import pytest

from reconciler import messages


@pytest.mark.parametrize(
    ("saved", "digits", "said"),
    [(0.709, 1, "70.9% less"), (0.0, 0, "0% less"), (-0.156, 0, "16% more")],
)
def test_carbon_against_qos_reads_as_less_or_more(saved, digits, said) -> None:
    # A job placed late, where there was room, can emit more than qos: "-16% less" said it.
    assert messages.against_qos(saved, digits=digits) == said
