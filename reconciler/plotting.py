"""`caspian simulate --plot`: one SVG with the zones' intensity over the replay and,
per policy, each spoke's job timeline, so where and when the work went is visible
at a glance. Written by hand: a few rectangles and polylines need no plotting
library."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from html import escape

COLOURS = ("#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e", "#e6ab02", "#a6761d")
WIDTH, LEFT, RIGHT = 1200, 110, 20
CURVES_HEIGHT, LANE, GAP = 220, 7, 26


def svg(
    *,
    start: datetime,
    span: timedelta,
    intensity: Mapping[str, Sequence[float]],  # zone -> one value per slot from start
    slot: timedelta,
    spoke_zones: Mapping[str, str],
    # policy -> (spoke, start, duration) of every job it placed
    timelines: Mapping[str, Sequence[tuple[str, datetime, timedelta]]],
    title: str,
) -> str:
    inner = WIDTH - LEFT - RIGHT
    seconds = span.total_seconds()
    zones = sorted(set(spoke_zones.values()))
    colour = {zone: COLOURS[i % len(COLOURS)] for i, zone in enumerate(zones)}

    def x(moment: datetime) -> float:
        return LEFT + inner * (moment - start).total_seconds() / seconds

    parts = [f'<text x="{LEFT}" y="20" font-size="15">{escape(title)}</text>']
    peak = max((max(v) for v in intensity.values() if len(v)), default=1.0) or 1.0
    top = 35
    for zone in zones:
        values = intensity[zone]
        points = " ".join(
            f"{x(start + i * slot):.1f},{top + CURVES_HEIGHT * (1 - v / peak):.1f}"
            for i, v in enumerate(values)
            if start + i * slot <= start + span
        )
        parts.append(
            f'<polyline fill="none" stroke="{colour[zone]}" stroke-width="1.2" points="{points}"/>'
        )
    parts.append(_axes(top, peak, start=start, span=span, x=x))
    for i, zone in enumerate(zones):
        parts.append(
            f'<text x="{LEFT + 10 + 110 * i}" y="{top + CURVES_HEIGHT + 32}" font-size="12" '
            f'fill="{colour[zone]}">■ {escape(zone)}</text>'
        )
    y = top + CURVES_HEIGHT + 55
    for policy, bars in timelines.items():
        parts.append(
            f'<text x="4" y="{y + 12}" font-size="13" font-weight="bold">{escape(policy)}</text>'
        )
        y += 18
        for spoke, zone in spoke_zones.items():
            lanes = _lanes([b for b in bars if b[0] == spoke])
            height = max(1, len(lanes)) * LANE
            parts.append(
                f'<text x="4" y="{y + height / 2 + 4:.0f}" font-size="11">'
                f"{escape(spoke)} ({escape(zone)})</text>"
            )
            parts.append(
                f'<rect x="{LEFT}" y="{y}" width="{inner}" height="{height}" fill="#f4f4f4"/>'
            )
            for lane, jobs in enumerate(lanes):
                for begin, length in jobs:
                    if begin >= start + span:  # started in the replay's tail
                        continue
                    end = min(x(begin + length), WIDTH - RIGHT)
                    parts.append(
                        f'<rect x="{x(begin):.1f}" y="{y + lane * LANE}" '
                        f'width="{max(0.6, end - x(begin)):.1f}" '
                        f'height="{LANE - 1}" fill="{colour[zone]}"/>'
                    )
            y += height + 4
        y += GAP
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{y}" '
        f'font-family="sans-serif">\n<rect width="100%" height="100%" fill="white"/>\n'
        + "\n".join(parts)
        + "\n</svg>\n"
    )


def _axes(
    top: int, peak: float, *, start: datetime, span: timedelta, x: Callable[[datetime], float]
) -> str:
    bottom = top + CURVES_HEIGHT
    lines = [
        f'<line x1="{LEFT}" y1="{bottom}" x2="{WIDTH - RIGHT}" y2="{bottom}" stroke="#888"/>',
        f'<text x="4" y="{top + 10}" font-size="11">{peak:.0f} g/kWh</text>',
        f'<text x="4" y="{bottom}" font-size="11">0 g/kWh</text>',
    ]
    day = start
    while day <= start + span:
        lines.append(
            f'<line x1="{x(day):.1f}" y1="{top}" x2="{x(day):.1f}" y2="{bottom}" '
            'stroke="#ddd"/>'
            f'<text x="{x(day) + 3:.1f}" y="{bottom + 14}" font-size="10">'
            f"{day:%b %d}</text>"
        )
        day += timedelta(days=1)
    return "\n".join(lines)


def _lanes(
    bars: Sequence[tuple[str, datetime, timedelta]],
) -> list[list[tuple[datetime, timedelta]]]:
    """Jobs in rows so that none overlaps another in its row (first fit by start)."""
    lanes: list[list[tuple[datetime, timedelta]]] = []
    ends: list[datetime] = []
    for _spoke, begin, length in sorted(bars, key=lambda b: b[1]):
        for i, end in enumerate(ends):
            if end <= begin:
                lanes[i].append((begin, length))
                ends[i] = begin + length
                break
        else:
            lanes.append([(begin, length)])
            ends.append(begin + length)
    return lanes
