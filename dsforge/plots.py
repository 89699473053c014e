"""Inline SVG plots for `dsforge report`: histogram, scatter, bar chart and line, as strings.

Each function returns one self-contained `<svg>` element (W x H pixels) with a title, axes and tick
labels; every text taken from data is HTML-escaped. No plotting library: the page must open offline.
"""

from __future__ import annotations

import html

W, H, PAD = 560, 260, 44
COLORS = ["#4C78A8", "#F58518", "#54A24B", "#E45756", "#72B7B2", "#B279A2"]


def _esc(s) -> str:
    return html.escape(str(s))


def _frame(title: str, body: str, xlabel: str = "", ylabel: str = "") -> str:
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" role="img">'
            f'<title>{_esc(title)}</title><rect width="{W}" height="{H}" fill="#fff"/>'
            f'<text x="{W / 2}" y="16" text-anchor="middle" font-size="13" font-weight="bold">{_esc(title)}</text>'
            f'<line x1="{PAD}" y1="{H - PAD}" x2="{W - 10}" y2="{H - PAD}" stroke="#333"/>'
            f'<line x1="{PAD}" y1="28" x2="{PAD}" y2="{H - PAD}" stroke="#333"/>'
            f'<text x="{W / 2}" y="{H - 8}" text-anchor="middle" font-size="11">{_esc(xlabel)}</text>'
            f'<text x="12" y="{H / 2}" font-size="11" transform="rotate(-90 12 {H / 2})" text-anchor="middle">'
            f'{_esc(ylabel)}</text>{body}</svg>')


def _ticks(lo: float, hi: float, axis: str, n: int = 5) -> str:
    out = []
    for k in range(n + 1):
        v = lo + (hi - lo) * k / n
        label = f"{v:.0f}" if abs(hi - lo) >= 10 else f"{v:.3g}"
        if axis == "x":
            x = PAD + (W - PAD - 10) * k / n
            out.append(f'<text x="{x:.1f}" y="{H - PAD + 14}" font-size="10" text-anchor="middle">{label}</text>')
        else:
            y = H - PAD - (H - PAD - 28) * k / n
            out.append(f'<text x="{PAD - 4}" y="{y + 3:.1f}" font-size="10" text-anchor="end">{label}</text>')
    return "".join(out)


def svg_hist(series: dict[str, list[float]], title: str, xlabel: str, bins: int = 20,
             vline: float | None = None, vlabel: str = "", discrete: bool = False) -> str:
    """Histogram of one or more series {name: values} in `bins` bins (side by side, with a legend for
    several); `vline` draws a labelled dashed line (e.g. cutoff_len); `discrete` gives one bar per
    integer value when all values are integers. Returns an <svg> string ("no data" when empty)."""
    vals = [v for vs in series.values() for v in vs]
    if not vals:
        return _frame(title, f'<text x="{W / 2}" y="{H / 2}" text-anchor="middle">no data</text>', xlabel)
    lo, hi = min(vals), max(vals)
    if vline is not None:
        hi = max(hi, vline)
    discrete = discrete and all(float(v).is_integer() for v in vals)
    if discrete:   # one bar per integer value, labelled at its centre
        lo, hi = min(vals) - 0.5, max(vals) + 0.5
        bins = int(hi - lo)
    if hi == lo:
        hi = lo + 1
    width = (hi - lo) / bins
    counts = {k: [0] * bins for k in series}
    for k, vs in series.items():
        for v in vs:
            counts[k][min(bins - 1, int((v - lo) / width))] += 1
    top = max(max(c) for c in counts.values()) or 1
    plot_w, plot_h = W - PAD - 10, H - PAD - 28
    bw = plot_w / bins / max(1, len(series))
    body = []
    for si, (k, cs) in enumerate(counts.items()):
        for b, c in enumerate(cs):
            if not c:
                continue
            h = plot_h * c / top
            x = PAD + plot_w * b / bins + si * bw
            body.append(f'<rect x="{x:.1f}" y="{H - PAD - h:.1f}" width="{max(1, bw - 1):.1f}" height="{h:.1f}" '
                        f'fill="{COLORS[si % len(COLORS)]}"><title>{_esc(k)}: {c}</title></rect>')
    if vline is not None:
        x = PAD + plot_w * (vline - lo) / (hi - lo)
        body.append(f'<line x1="{x:.1f}" y1="28" x2="{x:.1f}" y2="{H - PAD}" stroke="#d00" stroke-dasharray="4 3"/>'
                    f'<text x="{x - 4:.1f}" y="38" font-size="10" fill="#d00" text-anchor="end">{_esc(vlabel)}</text>')
    if len(series) > 1:
        for si, k in enumerate(series):
            body.append(f'<rect x="{W - 150}" y="{30 + 14 * si}" width="10" height="10" fill="{COLORS[si % len(COLORS)]}"/>'
                        f'<text x="{W - 136}" y="{39 + 14 * si}" font-size="10">{_esc(k)}</text>')
    if discrete:
        body.append("".join(f'<text x="{PAD + plot_w * (b + 0.5) / bins:.1f}" y="{H - PAD + 14}" font-size="10" '
                            f'text-anchor="middle">{lo + 0.5 + b:g}</text>' for b in range(bins)))
    else:
        body.append(_ticks(lo, hi, "x"))
    body.append(_ticks(0, top, "y"))
    return _frame(title, "".join(body), xlabel, "count")


def svg_scatter(xs: list[float], ys: list[float], title: str, xlabel: str, ylabel: str) -> str:
    """Scatter of (x, y) points from 0 with the y = x diagonal (both axes share one scale); an <svg> string."""
    if not xs:
        return _frame(title, f'<text x="{W / 2}" y="{H / 2}" text-anchor="middle">no data</text>', xlabel, ylabel)
    hi = max(max(xs), max(ys), 1)
    pw, ph = W - PAD - 10, H - PAD - 28
    body = [f'<line x1="{PAD}" y1="{H - PAD}" x2="{PAD + pw}" y2="{H - PAD - ph}" stroke="#999" stroke-dasharray="3 3"/>']
    for x, y in zip(xs, ys):
        body.append(f'<circle cx="{PAD + pw * x / hi:.1f}" cy="{H - PAD - ph * y / hi:.1f}" r="3" fill="#4C78A8" '
                    f'fill-opacity="0.6"><title>{x:.0f} vs {y:.0f}</title></circle>')
    body.append(_ticks(0, hi, "x") + _ticks(0, hi, "y"))
    return _frame(title, "".join(body), xlabel, ylabel)


def svg_bars(data: dict[str, float], title: str) -> str:
    """Horizontal bars of {label: value} (the first 12, in the given order); "nothing dropped" when empty."""
    if not data:
        return _frame(title, f'<text x="{W / 2}" y="{H / 2}" text-anchor="middle">nothing dropped</text>')
    items = list(data.items())[:12]
    top = max(v for _, v in items) or 1
    bh = (H - PAD - 28) / len(items)
    body = []
    for i, (k, v) in enumerate(items):
        w = (W - 230) * v / top
        y = 28 + i * bh
        body.append(f'<text x="178" y="{y + bh * 0.65:.1f}" font-size="10" text-anchor="end">{_esc(k)[:32]}</text>'
                    f'<rect x="182" y="{y + 2:.1f}" width="{max(1, w):.1f}" height="{max(2, bh - 4):.1f}" '
                    f'fill="{COLORS[(i // 99) % len(COLORS)]}"/><text x="{186 + w:.1f}" y="{y + bh * 0.65:.1f}" '
                    f'font-size="10">{v:g}</text>')
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" role="img"><title>{_esc(title)}</title>'
            f'<rect width="{W}" height="{H}" fill="#fff"/><text x="{W / 2}" y="16" text-anchor="middle" font-size="13" '
            f'font-weight="bold">{_esc(title)}</text>{"".join(body)}</svg>')


def svg_line(xs: list[float], ys: list[float], title: str, xlabel: str, ylabel: str) -> str:
    """A polyline of y over x (e.g. training loss per step), axes scaled to the data; an <svg> string."""
    if not xs:
        return _frame(title, f'<text x="{W / 2}" y="{H / 2}" text-anchor="middle">no data</text>', xlabel, ylabel)
    x0, x1 = min(xs), max(xs) if max(xs) > min(xs) else min(xs) + 1
    y0, y1 = min(ys), max(ys) if max(ys) > min(ys) else min(ys) + 1
    pw, ph = W - PAD - 10, H - PAD - 28
    pts = " ".join(f"{PAD + pw * (x - x0) / (x1 - x0):.1f},{H - PAD - ph * (y - y0) / (y1 - y0):.1f}" for x, y in zip(xs, ys))
    return _frame(title, f'<polyline points="{pts}" fill="none" stroke="#E45756" stroke-width="2"/>'
                  + _ticks(x0, x1, "x") + _ticks(y0, y1, "y"), xlabel, ylabel)


def svg_points_ci(xs: list[int], series: dict[str, list[tuple[float, float, float]]], title: str, xlabel: str,
                  ylabel: str) -> str:
    """Points joined by lines with interval bars: series {name: [(value, low, high) per x]} over integer xs (e.g.
    accuracy in % per round, round 0 = the base model), y from 0 to the highest bar; an <svg> string."""
    if not xs:
        return _frame(title, f'<text x="{W / 2}" y="{H / 2}" text-anchor="middle">no data</text>', xlabel, ylabel)
    x0, x1 = min(xs), max(xs) if max(xs) > min(xs) else min(xs) + 1
    y1 = max([hi for pts in series.values() for _, _, hi in pts] + [1e-9]) * 1.1
    pw, ph = W - PAD - 30, H - PAD - 28
    X = lambda x: PAD + 10 + pw * (x - x0) / (x1 - x0)   # noqa: E731
    Y = lambda y: H - PAD - ph * y / y1                   # noqa: E731
    body = []
    for si, (name, pts) in enumerate(series.items()):
        c, dx = COLORS[si % len(COLORS)], 4 * si
        body.append(f'<polyline points="{" ".join(f"{X(x) + dx:.1f},{Y(v):.1f}" for x, (v, _, _) in zip(xs, pts))}" '
                    f'fill="none" stroke="{c}" stroke-width="2"/>')
        for x, (v, lo, hi) in zip(xs, pts):
            body.append(f'<line x1="{X(x) + dx:.1f}" y1="{Y(lo):.1f}" x2="{X(x) + dx:.1f}" y2="{Y(hi):.1f}" stroke="{c}"/>'
                        f'<circle cx="{X(x) + dx:.1f}" cy="{Y(v):.1f}" r="3.5" fill="{c}"><title>{_esc(name)} {x}: '
                        f'{v:.1f} [{lo:.1f}, {hi:.1f}]</title></circle>')
        body.append(f'<rect x="{W - 150}" y="{30 + 14 * si}" width="10" height="10" fill="{c}"/>'
                    f'<text x="{W - 136}" y="{39 + 14 * si}" font-size="10">{_esc(name)}</text>')
    body.append("".join(f'<text x="{X(x):.1f}" y="{H - PAD + 14}" font-size="10" text-anchor="middle">{x}</text>'
                        for x in xs))
    body.append(_ticks(0, y1, "y"))
    return _frame(title, "".join(body), xlabel, ylabel)
