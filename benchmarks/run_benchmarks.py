"""Run the project's benchmarks and write docs/benchmarks.md (date, machine, figures).

    .venv/bin/python benchmarks/run_benchmarks.py [--only io,rasterize,...] [--quick]

Each ``bench_<name>.py`` beside this file exposes ``run(quick: bool) -> list[dict]`` with rows
``{"name", "value", "unit", "goal", "note"}``. Speed targets live here, not in timed tests.
Every benchmark runs in its own subprocess so peak-memory figures and thread settings of one
do not leak into another.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
BENCHES = ["io", "native", "rasterize", "lgm", "fit", "capture", "display", "rigging",
           "native_render", "demo", "fuzz", "batch", "remote", "formats", "poses"]
# Benchmarks that need another interpreter than this one: bench_native measures Blender 5.3's
# native splats with bpy 5.3.0, which exists for Python 3.13 only (.venv313, scripts/env.sh).
# (native_render and rigging start a bpy 5.3 Python themselves.)
INTERPRETERS = {"native": ROOT / ".venv313" / "bin" / "python"}


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f", {kb / 2**20:.0f} GiB RAM"
    except (OSError, ValueError, IndexError):
        pass
    gpu = "no GPU"
    try:
        import torch

        if torch.cuda.is_available():
            gpu = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    return (f"{platform.node() or 'host'}: {os.cpu_count()} cores ({cpu}){mem}, {gpu}; "
            f"Python {platform.python_version()}, {platform.system()} {platform.release()}")


def run_one(name: str, quick: bool) -> list[dict]:
    code = (f"import json, sys; sys.path[:0] = [{str(ROOT)!r}, {str(HERE)!r}]; "
            f"import bench_{name} as b; print('@@JSON@@' + json.dumps(b.run(quick={quick})))")
    python = INTERPRETERS.get(name, Path(sys.executable))
    if not python.exists():
        return [{"name": f"{name}: not run", "value": None, "unit": "", "goal": "",
                 "note": f"needs {python} (bash scripts/env.sh makes it)"}]
    proc = subprocess.run([str(python), "-c", code], capture_output=True, text=True,
                          cwd=ROOT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    for line in proc.stdout.splitlines():
        if line.startswith("@@JSON@@"):
            return json.loads(line[len("@@JSON@@"):])
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
    return [{"name": f"{name}: failed", "value": None, "unit": "", "goal": "",
             "note": " / ".join(tail)}]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--only", help="comma-separated subset of " + ",".join(BENCHES))
    parser.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke run")
    parser.add_argument("--out", default=str(ROOT / "docs" / "benchmarks.md"))
    parser.add_argument("--cuda-json", help="write the cuda section from the JSON that "
                                            "benchmarks/cuda_checks.py wrote on a GPU machine")
    args = parser.parse_args()
    if args.cuda_json:
        return _write_cuda_section(Path(args.cuda_json), Path(args.out))
    names = args.only.split(",") if args.only else [
        n for n in BENCHES if (HERE / f"bench_{n}.py").exists()]
    out = Path(args.out)
    sections = _read_sections(out)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    for name in names:
        print(f"== {name}", flush=True)
        rows = run_one(name, args.quick)
        for row in rows:
            print(f"   {row['name']}: {row['value']} {row['unit']}  (goal {row['goal']})")
        sections[name] = _section(name, rows, stamp, where=_machine_for(name))
    out.parent.mkdir(parents=True, exist_ok=True)
    body = "\n".join(sections[n] for n in [*BENCHES, "cuda"] if n in sections)
    out.write_text(
        "# Benchmarks\n\nWritten by `benchmarks/run_benchmarks.py`; each section says when and "
        f"where it was measured.\n\nLast run: {stamp} on {machine()}\n\n{body}")
    print(f"wrote {out}")
    return 0


def _machine_for(name: str) -> str:
    """machine(), naming the Python the benchmark ran on when it is not this one."""
    python = INTERPRETERS.get(name)
    if python is None or not python.exists():
        return machine()
    version = subprocess.run([str(python), "-c", "import platform; "
                              "print(platform.python_version())"], capture_output=True,
                             text=True).stdout.strip()
    return machine().replace(f"Python {platform.python_version()}", f"Python {version}")


def _write_cuda_section(results: Path, out: Path) -> int:
    data = json.loads(results.read_text())
    stamp = dt.datetime.fromtimestamp(data["started"], dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    versions = ", ".join(f"{k} {v}" for k, v in data.get("versions", {}).items())
    rows = list(data["rows"])
    for err in data.get("errors", []):
        last = err["traceback"].strip().splitlines()[-1]
        rows.append({"name": f"{err['stage']}: failed", "value": None, "unit": "", "goal": "",
                     "note": last.replace("|", "/")})
    sections = _read_sections(out)
    sections["cuda"] = _section("cuda", rows, stamp, where=f"{data['machine']} ({versions})")
    body = "\n".join(sections[n] for n in [*BENCHES, "cuda"] if n in sections)
    head = out.read_text().split("\n## ", 1)[0] if out.exists() else "# Benchmarks\n"
    out.write_text(head.rstrip("\n") + "\n\n" + body)
    print(f"wrote the cuda section of {out}")
    return 0


def _section(name: str, rows: list[dict], stamp: str, where: str | None = None) -> str:
    lines = [f"## {name}", "", f"Measured {stamp} on {where or machine()}.", "",
             "| measure | value | goal | note |", "|---|---|---|---|"]
    for r in rows:
        value = "—" if r["value"] is None else (
            f"{r['value']:.4g} {r['unit']}" if isinstance(r["value"], float)
            else f"{r['value']} {r['unit']}")
        cells = [str(c).replace("|", "\\|") for c in (r["name"], value, r.get("goal", ""),
                                                        r.get("note", ""))]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _read_sections(path: Path) -> dict[str, str]:
    """Keep sections of benchmarks not re-run this time."""
    if not path.exists():
        return {}
    sections, current, buf = {}, None, []
    for line in path.read_text().splitlines(keepends=True):
        if line.startswith("## "):
            if current:
                sections[current] = "".join(buf).rstrip("\n") + "\n"
            current, buf = line[3:].strip(), [line]
        elif current:
            buf.append(line)
    if current:
        sections[current] = "".join(buf).rstrip("\n") + "\n"
    return sections


if __name__ == "__main__":
    sys.exit(main())
