#!/usr/bin/env python3
"""Draws the summary tables of concur's benchmark programs as one SVG bar chart.

    cmake --workflow --preset bench | tee bench.log
    python3 benchmarks/chart.py bench.log "the machine, the compiler" > docs/bench.svg

Each bar is one column of one summary table: how many times faster concur is than that table's
reference (std::mutex, the naive queue, std::thread, raw fork, ...), on a log scale. Tables in
"time per operation" are inverted so that longer bars are always better. Only the standard
library is used.
"""
import html
import math
import re
import sys


def parse_tables(lines):
    """Yields (title, columns, rows, lower_is_better, reference) for each summary table."""
    for i, line in enumerate(lines):
        if not line.startswith("ratio to "):
            continue
        title = lines[i - 1].strip()
        reference = re.match(r"ratio to (.+?) in ", line).group(1)
        lower_is_better = "lower is better" in line
        header = lines[i + 1]
        # Every cell is right-aligned in a column of one width: the first row's values end where
        # the columns end.
        cell = re.compile(r" +(-|[0-9.]+x \([0-9]+%\))(?= |$)")
        ends = [m.end() for m in cell.finditer(lines[i + 2])]
        width = ends[1] - ends[0] if len(ends) > 1 else len(header)
        columns = [header[max(0, end - width):end].strip() for end in ends]
        rows = {}
        for row in lines[i + 2:]:
            if not row.strip() or row.startswith("("):
                break
            if row.startswith("  "):  # a contender's CPU/op or fences row, under its ratios
                continue
            matches = list(cell.finditer(row))
            rows[row[:matches[0].start()].strip()] = [
                None if m.group(1) == "-" else float(m.group(1).split("x")[0]) for m in matches]
        yield title, columns, rows, lower_is_better, reference


def bars(lines):
    """(label, speed-up) for the concur rows of each table whose reference is not concur."""
    seen = set()
    repeats = ("concur recv_bytes_into", "concur send/recv<u64>")  # like recv_bytes
    for title, columns, rows, lower_is_better, reference in parse_tables(lines):
        short = re.sub(r"\s*\(target.*", "", title)
        if short in seen:
            continue
        seen.add(short)
        for name, ratios in rows.items():
            if not name.startswith("concur") or name in reference or name in repeats:
                continue
            for column, ratio in zip(columns, ratios):
                if ratio:
                    speedup = 1 / ratio if lower_is_better else ratio
                    where = f"{short}, {column}" if column != short.lower() else short
                    yield f"{where}: {name} vs {reference}", speedup


def svg(entries, subtitle):
    width, bar_height, label_width = 1040, 18, 640
    scale_width = width - label_width - 60
    low, high = math.log10(0.25), math.log10(100)

    def x_of(value):
        clamped = min(max(value, 0.25), 100)
        return label_width + (math.log10(clamped) - low) / (high - low) * scale_width

    top = 52
    axis_y = top + bar_height * len(entries)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{axis_y + 24}" '
           'font-family="sans-serif" font-size="11">',
           f'<rect width="{width}" height="{axis_y + 24}" fill="white"/>',
           '<text x="10" y="20" font-size="14">concur: times faster than the reference '
           '(log scale; right of the 1x line is faster)</text>',
           f'<text x="10" y="38" fill="#555">{html.escape(subtitle)}</text>']
    for tick in (0.25, 0.5, 1, 2, 5, 10, 20, 50, 100):
        x = x_of(tick)
        out.append(f'<line x1="{x:.1f}" y1="{top - 6}" x2="{x:.1f}" y2="{axis_y}" '
                   f'stroke="{"#333" if tick == 1 else "#ccc"}" stroke-width="1"/>')
        out.append(f'<text x="{x:.1f}" y="{axis_y + 14}" text-anchor="middle">{tick:g}x</text>')
    one = x_of(1)
    for i, (label, value) in enumerate(entries):
        y = top + i * bar_height
        x = x_of(value)
        colour = "#2a7" if value >= 1 else "#c54"
        out.append(f'<text x="{label_width - 6}" y="{y + 12}" text-anchor="end">'
                   f'{html.escape(label)}</text>')
        out.append(f'<rect x="{min(one, x):.1f}" y="{y + 2}" width="{abs(x - one):.1f}" '
                   f'height="{bar_height - 4}" fill="{colour}"/>')
        out.append(f'<text x="{max(one, x) + 4:.1f}" y="{y + 12}">{value:.2f}x</text>')
    out.append("</svg>")
    return "\n".join(out)


def main():
    source = open(sys.argv[1]) if len(sys.argv) > 1 and sys.argv[1] != "-" else sys.stdin
    subtitle = sys.argv[2] if len(sys.argv) > 2 else ""
    entries = list(bars(source.read().splitlines()))
    if not entries:
        sys.exit("no summary tables found: give the output of the benchmark programs")
    print(svg(entries, subtitle))


if __name__ == "__main__":
    main()
