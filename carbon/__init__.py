"""Grid carbon intensity: one interface, several sources.

Everything the planner needs from here is `IntensitySeries` (a zone's intensity
over a window at the slot length) and `source_for(config)`, which turns a spoke's
`carbon:` block into a provider.
"""

from carbon.providers import CarbonProvider, CarbonSourceConfig, ConstantProvider, source_for
from carbon.series import IntensitySeries, Provenance

__all__ = [
    "CarbonProvider",
    "CarbonSourceConfig",
    "ConstantProvider",
    "IntensitySeries",
    "Provenance",
    "source_for",
]
