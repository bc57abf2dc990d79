#!/usr/bin/env python3
"""Prints the summary tables of concur's benchmark programs as Markdown, for the README.

    cmake --workflow --preset bench | tee bench.log
    python3 benchmarks/tables.py bench.log > tables.md

Each table keeps its title (with the targets), its reference and its columns; concur's rows are
in bold, and under each contender its CPU per operation (ratio to the reference's, and the
value where the table has one column). A program's "Target check" block (futures_bench,
pool_bench: one line per target, with its numbers and whether it holds) follows as a list. Only
the standard library is used.
"""
import re
import sys

CELL = re.compile(r" +(-|[0-9.]+x \([0-9]+%\))(?= |$)")
CPU_CELL = re.compile(r"(-|[0-9.]+x(?: [0-9.]+ [a-zµ]+)?)")


def tables(lines):
    """Yields (title, description, columns, rows) with rows [(name, ratios, cpu)]."""
    for i, line in enumerate(lines):
        if not line.startswith("ratio to "):
            continue
        title = lines[i - 1].strip()
        description = re.sub(r"; median of repetitions.*", "", line.strip())
        header = lines[i + 1]
        ends = [m.end() for m in CELL.finditer(lines[i + 2])]
        width = ends[1] - ends[0] if len(ends) > 1 else len(header)
        columns = [header[max(0, end - width):end].strip() for end in ends]
        rows = []
        for row in lines[i + 2:]:
            if not row.strip() or row.startswith("("):
                break
            if row.startswith("  CPU/op") and rows:
                cells = CPU_CELL.findall(row.split("CPU/op", 1)[1])
                rows[-1][2] = cells
                continue
            if row.startswith("  "):
                continue
            matches = list(CELL.finditer(row))
            if not matches:
                continue
            name = row[:matches[0].start()].strip()
            ratios = [m.group(1).split(" (")[0] for m in matches]
            rows.append([name, ratios, []])
        yield title, description, columns, rows


def target_checks(lines):
    """Yields (title, [line]) for each "Target check" block."""
    for i, line in enumerate(lines):
        if not line.startswith("Target check"):
            continue
        items = []
        for item in lines[i + 1:]:
            if not item.startswith("  "):
                break
            items.append(item.strip())
        yield line.strip(), items


def markdown(title, description, columns, rows):
    bold = lambda name, text: f"**{text}**" if name.startswith("concur") else text
    out = [f"**{title}** — {description}", ""]
    one_column = len(columns) == 1
    if one_column:
        out += ["| | ratio | CPU/op |", "|---|---:|---:|"]
        for name, ratios, cpu in rows:
            cpu_text = cpu[0] if cpu else ""
            cpu_text = re.sub(r"^([0-9.]+x) (.+)$", r"\1 (\2)", cpu_text)
            out.append(f"| {bold(name, name)} | {bold(name, ratios[0])} | {bold(name, cpu_text)} |")
    else:
        out += ["| | " + " | ".join(columns) + " |", "|---|" + "---:|" * len(columns)]
        for name, ratios, cpu in rows:
            out.append(f"| {bold(name, name)} | " + " | ".join(bold(name, r) for r in ratios) + " |")
            if cpu:
                ratios_only = [c.split(" ")[0] for c in cpu]
                out.append("| *CPU/op* | " + " | ".join(bold(name, c) for c in ratios_only) + " |")
    return "\n".join(out) + "\n"


def main():
    lines = open(sys.argv[1], encoding="utf-8").read().splitlines()
    seen = set()
    for table in tables(lines):
        key = (table[0], tuple(table[2]))
        if key in seen:
            continue
        seen.add(key)
        print(markdown(*table))
    for title, items in target_checks(lines):
        if (title, tuple(items)) in seen:
            continue
        seen.add((title, tuple(items)))
        print(f"**{title}**\n")
        print("\n".join(f"- {item}" for item in items) + "\n")


if __name__ == "__main__":
    main()
