"""Check that every number quoted in benchmarks/README.md comes from a result file its section names.

    python benchmarks/check_readme.py [--readme benchmarks/README.md]
    python benchmarks/check_readme.py --readme README.md --results benchmarks/results --section Performance

The README is cut into sections at its ``###`` headings (the text before the first is one more
section). A section that names result files (``results/NAME.json``) must quote only numbers found in
those files (``results/NAME.json`` or ``NAME.json``): a quoted number matches a number of the JSON (any leaf, at any depth) when the JSON's
value, rounded half up to the quoted number of decimals, gives it, at a scale the number's unit
allows (none or ``x``: as is; ``%``: x100; ``MB``: as is, or bytes /2^20 or /1e6; ``GB``: MB /1e3, or
bytes; ``ms``: as is, or seconds x1e3; ``k``/``M``: /1e3, /1e6). Dates, versions, commit ids, code spans and code blocks are not numbers here. A number derived
from several values (a ratio, a difference) is not in any file: write it into the result file that
the script computing it writes, or leave it out of the README.

Exits 1 and lists each unmatched number with its section and line; ``tests/test_layout.py`` runs it.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
NUMBER = re.compile(r"(?<![\w.,\-/])(\d{1,3}(?:,\d{3})+|\d+)(\.\d+)?(x|%| ?(?:MB|GB|ms|us|s|k|M)\b)?(?![\w/])")
# The scales a number with that unit may have in the JSON: MB as MB, MiB of bytes or bytes/1e6; GB from MB; ms from s...
UNIT_SCALES = {"": (1.0,), "x": (1.0,), "%": (100.0,), "MB": (1.0, 1 / 2 ** 20, 1e-6), "GB": (1e-3, 1 / 2 ** 30, 1e-9),
               "ms": (1.0, 1e3), "us": (1.0, 1e6), "s": (1.0,), "k": (1e-3,), "M": (1e-6,)}
NOT_NUMBERS = re.compile(r"`[^`]*`|\b\d{4}-\d{2}-\d{2}\b|\b[0-9a-f]{7,40}\b|\b\d+(?:\.\d+)+\.\d+\b|results/\S+\.json|"
                         r"\bissue \d+\b|\b\d+ steps\b|\b\d+(?:\.\d+)?e\d+\b|\bL=\d+\b|_\d+\b|\bPython 3\.\d+\.\d+|\bTensorFlow 2\.\d+\.\d+")


def leaves(value) -> list[float]:
    if isinstance(value, dict):
        return [x for v in value.values() for x in leaves(v)]
    if isinstance(value, list):
        return [x for v in value for x in leaves(v)]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return []
    return [float(value)]


def sections(text: str) -> list[tuple[str, int, str]]:
    """``(heading, first line number, body)`` per section, fenced code blocks blanked."""
    text = re.sub(r"```.*?```", lambda m: "\n" * m.group(0).count("\n"), text, flags=re.S)
    out, heading, start, body = [], "(top)", 1, []
    for number, line in enumerate(text.split("\n"), start=1):
        if line.startswith("### ") or line.startswith("## "):
            out.append((heading, start, "\n".join(body)))
            heading, start, body = line.lstrip("# "), number, []
        body.append(line)
    out.append((heading, start, "\n".join(body)))
    return out


def quoted_numbers(line: str) -> list[tuple[str, float, int, str]]:
    """``(text, value, decimals, unit)`` of each number the line quotes."""
    line = re.sub(r"(\d)-(\d)", r"\1 - \2", NOT_NUMBERS.sub(" ", line))  # a range a-b: two numbers
    found = []
    for match in NUMBER.finditer(line):
        whole, fraction, unit = match.group(1), match.group(2) or "", (match.group(3) or "").strip()
        found.append((match.group(0), float(whole.replace(",", "") + fraction), max(len(fraction) - 1, 0), unit))
    return found


def matches(value: float, decimals: int, unit: str, known: list[float]) -> bool:
    """Whether some known value, at a scale the unit allows, rounds half up to ``value`` at ``decimals`` decimals."""
    half = 0.5 * 10.0 ** -decimals
    return any(-half - 1e-9 <= v * scale - value < half + 1e-9 for v in known for scale in UNIT_SCALES[unit])


def check(readme: Path, results: Path | None = None, only: str | None = None) -> list[str]:
    """Problems of ``readme`` (its sections whose heading starts with ``only``, or all), against the JSON files of
    ``results`` (default: ``results/`` beside the README)."""
    results = readme.parent / "results" if results is None else results
    problems = []
    for heading, start, body in sections(readme.read_text()):
        if only is not None and not heading.startswith(only):
            continue
        cited = sorted(set(re.findall(r"([\w\-]+(?:\.[\w\-]+)*\.json)", body)))
        if not cited:
            if only is not None:
                problems.append(f"{readme.name}:{start} [{heading}]: names no result file")
            continue
        known = []
        for name in cited:
            path = results / name
            if not path.exists():
                problems.append(f"{readme.name}:{start} [{heading}]: cites results/{name}, which does not exist")
                continue
            known += leaves(json.loads(path.read_text()))
        for offset, line in enumerate(body.split("\n")):
            for text, value, decimals, unit in quoted_numbers(line):
                if value < 10 and decimals == 0 and unit in ("", "x"):
                    continue  # counts of rounds, cores, workers, relations: prose, not measurements
                if not matches(value, decimals, unit, known):
                    problems.append(f"{readme.name}:{start + offset} [{heading}]: {text} is in none of {', '.join(cited)}")
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--readme", type=Path, default=HERE / "README.md")
    parser.add_argument("--results", type=Path, default=None, help="the result files' directory (default: results/ beside the README)")
    parser.add_argument("--section", default=None, help="check only the sections whose heading starts with this")
    args = parser.parse_args()
    problems = check(args.readme, args.results, args.section)
    print("\n".join(problems) if problems else "every quoted number is in a result file its section names")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
