"""Grid carbon intensity: one interface, several sources.

The planner needs `IntensitySeries` (a zone's intensity over a window at the slot
length) and `CarbonSourceConfig` (a spoke's `carbon:` block); the imperative shell
turns the latter into a source with `carbon.sources.source_for`.
"""

from carbon.series import CarbonSourceConfig, IntensitySeries, Provenance

__all__ = ["CarbonSourceConfig", "IntensitySeries", "Provenance"]
