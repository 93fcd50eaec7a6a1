"""Run every benchmark and write docs/benchmarks.md: sections, peak memory, and issues 7 and 11's targets.

What it does: runs, one after the other as subprocesses (so they do not share threads or memory), the
machine probe (``bench/machine.py``: matmul peak per precision, FLOPs per item), the text, image and audio
throughput benchmarks, the server benchmark and the Earth-observation benchmark (``bench/geo_throughput.py``),
each with ``--json`` so their numbers can be combined. Each section's own Markdown (its stdout) goes into the
report under the exact command that produced it; each process's peak RSS is taken from ``os.wait4``. Then a
TARGETS table checks each issue-7 and issue-11 target (ratios from the same run) as PASS or MISS, with a "why"
cell for misses: derived facts (fraction of the machine's measured peak, the rates on both sides) plus the
explanation written in ``WHY`` below (edit it there, not in the generated file, so the explanation survives
the next ``make bench``). Every section names the CPU class it ran on; the closing "Per CPU class" section of
the report, written by hand from runs on other classes, is carried over from the file being replaced.

Text throughput as a fraction of the machine: ``texts/s x FLOPs/text / matmul peak``, with FLOPs counted by
``FlopCounterMode`` on the real module at each text's own length (``bench/machine.py``). When
``Engine.embed_batch`` accepts ``precision=``, the text benchmark also measures the default precision and its
minimum cosine to fp32, and the reduced-precision path is shown against the bf16 and int8 peaks.

Run from the project root::

    make bench                                   # = .venv/bin/python bench/report.py (~15 min)
    .venv/bin/python bench/report.py --quick --output /tmp/bench.md   # smoke run of every section
    .venv/bin/python bench/report.py --keep /tmp/bench-run            # keep each section's raw output
    .venv/bin/python bench/report.py --from-dir /tmp/bench-run        # rebuild the Markdown, run nothing
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
PY = ".venv/bin/python"

# Explanations for missed targets, kept here so that they survive regeneration. Keys: the target ids below.
WHY: dict[str, str] = {
    "text_fp32": (
        "Not reachable on this CPU: sentence-transformers itself already runs at ~60% of the measured fp32 "
        "matmul peak (see the peak row), so 2.0x would need >100% of the machine. Both sort by length and pad "
        "per batch; omniembed also caps each encoder call at 512 padded tokens (large batches of long texts "
        "fall out of cache, which is why ST slows down at batch 128 and omniembed does not). ONNX Runtime's "
        "fusions add ~3% (its transformer optimizer does not fuse the attention of the dynamo-exported graph). "
        "The honest fp32 measure is the fraction of peak below."
    ),
    "text_default": (
        "The default is bf16, compiled ahead of time (AOTInductor, weights frozen; eager autocast reached "
        "~2.0x). It is bounded by the bf16 peak, which measures ~2.2x fp32 on this CPU (AVX512-BF16 without "
        "AMX; not the 4x the issue expected). Matmuls at minilm's own shapes reach that peak (machine section), "
        "so the remaining gap is the work between them: layer norms, "
        "GELU, softmax, attention's small per-head matmuls and the tokenizer. int8 does not help here: ONNX "
        "Runtime's per-tensor int8 (quantize_dynamic) is ~1.75x its fp32 but moves the vectors to min cosine "
        "~0.96, and the recipe that keeps them (blockwise MatMulNBits, value projections fp32: min cosine 0.9993) "
        "runs ~1.1x fp32, below bf16 (bench/int8_recipes.py), so int8 is offered (precision='int8'), never a "
        "default on this CPU class."
    ),
    "image": (
        "4x leaves no room for decoding: the ONNX encoder alone, on ready tensors, already runs at ~80% of the "
        "fp32 peak (0.768 GFLOP per image), and its rate is 3.3-4.1x the plain loop across runs, so 4x end to "
        "end would need decoding and preprocessing to cost nothing. They cost ~2 ms per image on one core "
        "(resizing only the crop's box) and overlap the encoder (images stream), but share its 2 cores. "
        "Reduced precision does not help this model: bf16 (compiled) gave 1.1x at min cosine 0.990, and int8 "
        "(ONNX Runtime's integer convolutions) was 12x slower."
    ),
    "server": (
        "The server is compute-bound (the inference thread is busy, the event loop nearly idle), and requests "
        "arrive as small random mixes of lengths: their sorted rows are cut where padding plus per-call cost "
        "is least (64-request mixes compute 1.07x their real tokens; cut greedily, 1.31x). The load generator "
        "shares the 2 cores: it is a raw asyncio/uvloop HTTP client using ~1% of a core (with httpx it took "
        "~50% of a core and the server measured ~37%). Run-to-run spread on this VM is about +-10%."
    ),
    "ray_one_actor": (
        "End to end includes ~10-15 s of actor start on this machine (a new Ray worker process imports torch and "
        "transformers and opens the ONNX session) for a ~25 s job; a longer job amortises it. The steady column "
        "(second half of the rows) is above the in-process one-thread rate, which is not fully explained: results "
        "reach the driver in bursts, and the actor's tokenizer threads and the driver share the second core."
    ),
    "ray_two_actors": (
        "The two 1-CPU nodes are processes on the same 2 cores, which also run the driver (receiving every vector), "
        "Ray's raylets and GCS: the second actor competes with them, so 2x is not available here. On separate "
        "machines each node has its own cores."
    ),
    "text_peak": "",
    "reduced_peak": "",
    "geo_default_remoteclip": (
        "The default is bf16 (remoteclip declares auto_precision='bf16'; this CPU has AVX512-BF16). ONNX Runtime "
        "fp32 alone gives ~1.15x: ViT-B/32's matmuls already run near the fp32 peak in eager PyTorch. Reading a "
        "region from local COGs costs ~6 ms next to ~25-55 ms of encoding per tile, so the reads overlapping the "
        "encoder (streamed chunks) add little here. Under load from other processes eager PyTorch's OpenMP threads "
        "slow down far more than ONNX Runtime's: compare ratios only from a quiet run."
    ),
    "geo_default_prithvi": (
        "The default is bf16 compiled ahead of time (prithvi declares auto_precision='bf16'). Its fp32 paths both "
        "run at the machine's fp32 matmul peak (ONNX Runtime 1.0x eager), so only reduced precision can help; see "
        "the reduced-precision row."
    ),
    "geo_reduced_remoteclip": (
        "bf16 ran as eager autocast, not compiled: remoteclip's graph has two outputs (grid and pooled head) and "
        "runtime/compiled.py's _bf16_module casts its output with .float(), which fails on a tuple, so the engine "
        "falls back to eager autocast (logged; a .failed marker is left in the AOT cache). With tuple outputs cast "
        "one by one, the compiled encoder alone ran 23 ms per image at batch 8 against eager fp32 53, eager "
        "autocast 33 and ONNX fp32 47 ms (min cosine 0.99999), i.e. about 2x end to end once the ~6 ms read per "
        "region is added."
    ),
    "geo_reduced_prithvi": (
        "Bounded by the machine: eager fp32 already runs prithvi's large matmuls (785 tokens x 1024) at the "
        "measured fp32 matmul peak, and the bf16 peak is only ~2.3x the fp32 one on this CPU (AVX512-BF16 "
        "without AMX), so 2.0x needs the compiled bf16 encoder at ~86% of the bf16 peak; it reaches ~80-83%, the "
        "rest being layer norms, GELU, softmax and attention's per-head matmuls. int8 is not a verified option "
        "(dynamic quantisation loses accuracy on the other models measured)."
    ),
}
PENDING = "_explanation pending: edit `WHY` in bench/report.py_"

# Section name -> (script, default arguments, --quick arguments). Defaults are trimmed so that the whole
# run stays around 15 minutes on the 2-core machine (text ~3 min, image ~1 min, audio ~1 min, server ~1.5 min,
# geo ~8 min: three real-size geo models, each exported to ONNX and compiled for bf16 once).
SECTIONS: dict[str, tuple[str, list[str], list[str]]] = {
    "machine": ("machine.py", ["--text-n", "512"], ["--quick", "--text-n", "128"]),
    "text": ("text_throughput.py", ["--n", "512", "--repeat", "2"], ["--quick"]),
    "int8": ("int8_recipes.py", ["--repeat", "2"], ["--recipes", "dynamic,shipped", "--repeat", "1"]),  # ~4 min
    "image": ("image_throughput.py", ["--repeat", "2"], ["--quick"]),
    "audio": ("audio_throughput.py", ["--repeat", "2"], ["--clips", "2", "--seconds", "4", "--repeat", "1"]),
    "video": ("video_throughput.py", ["--videos", "2", "--seconds", "60", "--repeat", "2"],
              ["--videos", "1", "--seconds", "12", "--repeat", "1"]),
    "server": ("server_throughput.py", [], ["--quick"]),
    "geo": ("geo_throughput.py", [], ["--quick"]),
    "ray": ("ray_scale.py", [], ["--quick"]),  # ~2 min: a local 2-node Ray cluster (issue 14)
}
TITLES = {
    "machine": "Machine limit",
    "text": "Text",
    "int8": "Text: int8 recipes",
    "image": "Images",
    "audio": "Audio",
    "video": "Video",
    "server": "Server",
    "geo": "Earth observation",
    "ray": "Scale-out on Ray",
}


@dataclass
class Section:
    """One benchmark run: its command, Markdown output, numbers, exit code, time and peak RSS."""

    name: str
    command: str
    markdown: str
    data: dict[str, Any] | None
    returncode: int
    seconds: float
    peak_rss_mb: float
    stderr_tail: str = ""


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run_section(name: str, quick: bool, work: Path) -> Section:
    """Run one benchmark script as a child process; its stdout is Markdown, its numbers go to a JSON file."""
    script, default_args, quick_args = SECTIONS[name]
    json_path = work / f"{name}.json"
    args = [f"bench/{script}", *(quick_args if quick else default_args), "--json", str(json_path)]
    command = shlex.join([PY, *args[:-2]])  # as a reader would run it: without the temporary --json file
    log(f"== {name}: {command}")
    started = time.perf_counter()
    stderr_path, md_path = work / f"{name}.stderr", work / f"{name}.md"
    with stderr_path.open("w") as err_file, md_path.open("w") as md_file:
        python = PY if (ROOT / PY).exists() else sys.executable
        proc = subprocess.Popen([python, *args], cwd=ROOT, stdout=md_file, stderr=subprocess.PIPE, text=True)
        assert proc.stderr is not None
        for line in proc.stderr:  # echo progress live
            err_file.write(line)
            sys.stderr.write(f"   {line}")
        _, status, usage = os.wait4(proc.pid, 0)  # wait4: the child's own peak RSS
    proc.returncode = os.waitstatus_to_exitcode(status)
    markdown = md_path.read_text().replace(f" --json {json_path}", "")
    seconds = time.perf_counter() - started
    data = json.loads(json_path.read_text()) if json_path.exists() and proc.returncode == 0 else None
    section = Section(name, command, markdown, data, proc.returncode, seconds, usage.ru_maxrss / 1024,
                      stderr_path.read_text()[-1500:] if proc.returncode else "")
    (work / f"{name}.meta.json").write_text(json.dumps(
        {"command": command, "returncode": section.returncode, "seconds": seconds, "peak_rss_mb": section.peak_rss_mb,
         "stderr_tail": section.stderr_tail}))
    log(f"== {name}: exit {section.returncode} in {seconds:.0f} s, peak RSS {section.peak_rss_mb:.0f} MiB")
    return section


def load_section(name: str, work: Path) -> Section | None:
    """A section saved by an earlier run (``--keep``), or None."""
    meta_path = work / f"{name}.meta.json"
    if not meta_path.exists():
        return None
    meta = json.loads(meta_path.read_text())
    json_path = work / f"{name}.json"
    data = json.loads(json_path.read_text()) if json_path.exists() and meta["returncode"] == 0 else None
    return Section(name, meta["command"], (work / f"{name}.md").read_text(), data, meta["returncode"],
                   meta["seconds"], meta["peak_rss_mb"], meta.get("stderr_tail", ""))


# --------------------------------------------------------------------------------------------------
# Machine description
# --------------------------------------------------------------------------------------------------


def cpu_info() -> tuple[str, list[str]]:
    """CPU model name and the SIMD flags that matter for fp32/bf16/int8 kernels."""
    model, flags = platform.processor() or platform.machine(), []
    try:
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                model = value.strip()
            elif key.strip() == "flags":
                wanted = ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "avx_vnni", "amx_bf16", "amx_int8")
                flags = [f for f in value.split() if f in wanted]
                break
    except OSError:
        pass
    return model, flags


def version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def machine_lines(load_before: str, load_after: str) -> list[str]:
    sys.path.insert(0, str(BENCH))
    from cpu_class import cpu_class_line

    model, flags = cpu_info()
    dists = ("omniembed", "torch", "onnxruntime", "numpy", "transformers", "sentence-transformers", "httpx")
    return [
        f"- CPU: {model}; {os.cpu_count()} logical CPUs, {len(os.sched_getaffinity(0))} usable; "
        f"flags: {', '.join(flags) or 'none of avx2/avx512/vnni/amx'}",
        f"- OS: {platform.system()} {platform.release()}; Python {platform.python_version()}",
        "- Versions: " + ", ".join(f"{d} {version(d)}" for d in dists),
        f"- {cpu_class_line()} Every ratio below holds for this class only; docs/benchmarks.md keeps one section "
        "per class measured (the closing section, by hand, for classes measured in other runs).",
        f"- Load average (1/5/15 min) before: {load_before}; after: {load_after}. Other busy processes slow thread "
        "pools down badly: compare numbers only from a quiet machine.",
    ]


def load_average() -> str:
    return " / ".join(f"{x:.2f}" for x in os.getloadavg())


# --------------------------------------------------------------------------------------------------
# Targets
# --------------------------------------------------------------------------------------------------


@dataclass
class Target:
    key: str
    target: str
    measured: str
    status: str  # PASS | MISS | INFO | NOT MEASURED
    facts: str = ""


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def targets(sections: dict[str, Section]) -> list[Target]:
    """Each issue-7 and issue-11 target, checked against the numbers of this run."""
    text = sections["text"].data if "text" in sections else None
    image = sections["image"].data if "image" in sections else None
    server = sections["server"].data if "server" in sections else None
    mach = sections["machine"].data if "machine" in sections else None
    out: list[Target] = []
    b32: dict[str, float] | None = None
    if text is not None:
        batches = text["batch"]
        b32 = batches.get("32") or batches[max(batches, key=int)]
    if text is not None and b32 is not None:
        label = "32" if "32" in text["batch"] else max(text["batch"], key=int)
        worst = min(b["cos_onnx_st"] for b in text["batch"].values())
        ratio, ratio_t = b32["onnx"] / b32["st"], b32["torch"] / b32["st"]
        out.append(Target(
            "text_fp32", "text, minilm fp32: >= 2.0x sentence-transformers texts/s (batch 32), cosine >= 0.9999",
            f"{ratio:.2f}x (onnx {b32['onnx']:.1f} vs ST {b32['st']:.1f} texts/s at batch {label}; torch "
            f"{ratio_t:.2f}x); min cosine {worst:.6f}",
            verdict(ratio >= 2.0 and worst >= 0.9999),
        ))
        if text.get("precision_option"):
            worst_d = min(b["cos_default_fp32"] for b in text["batch"].values())
            ratio_d = b32["default"] / b32["st"]
            need = ""
            if mach is not None and mach["peak_gflops"].get("bf16"):
                per_text, bf16_peak = mach["minilm"]["flops_per_text"] / 1e9, mach["peak_gflops"]["bf16"]
                need = (f"3.0x = {3 * b32['st']:.0f} texts/s would need {300 * b32['st'] * per_text / bf16_peak:.0f}% "
                        f"of the measured bf16 peak; this run: {100 * b32['default'] * per_text / bf16_peak:.0f}%")
            out.append(Target(
                "text_default", "text, minilm default precision: >= 3.0x ST texts/s, min cosine to fp32 >= 0.9995",
                f"{ratio_d:.2f}x ({b32['default']:.1f} texts/s); min cosine to fp32 {worst_d:.6f}",
                verdict(ratio_d >= 3.0 and worst_d >= 0.9995), need,
            ))
        else:
            out.append(Target(
                "text_default", "text, minilm default precision: >= 3.0x ST texts/s, min cosine to fp32 >= 0.9995",
                f"{ratio:.2f}x (no `precision` option yet: the default is fp32)", verdict(ratio >= 3.0),
                "`Engine.embed_batch` has no `precision=` keyword in this build",
            ))
    if image is not None:
        rates = image["batch"]
        ours = max(b["omniembed onnx"] for b in rates.values())
        plain = max(b["plain PyTorch loop"] for b in rates.values())
        bound = ""
        if image.get("encoder_only_images_per_s"):
            enc = image["encoder_only_images_per_s"]
            bound = (f"omniembed's encoder alone (ready tensors) runs {enc:.0f} images/s = {enc / plain:.2f}x the "
                     f"plain loop; decoding + preprocessing takes {image['prepare_ms_per_image']:.1f} ms per image "
                     "on one thread")
        out.append(Target(
            "image", "images, efficientnet-lite0: >= 4x the plain PyTorch loop images/s",
            f"{ours / plain:.2f}x (omniembed onnx {ours:.1f} vs plain loop {plain:.1f} images/s, each at its best "
            "batch size)", verdict(ours / plain >= 4.0), bound,
        ))
    if server is not None:
        top = server["levels"][-1]
        out.append(Target(
            "server", f"server at {top['clients']} concurrent single-text clients: >= 70% of offline batch throughput",
            f"{100 * server['ratio_top_level']:.0f}% ({top['requests_per_s']:.1f} req/s vs "
            f"{server['offline_texts_per_s']:.1f} texts/s offline; p50 {top['p50_ms']:.0f} ms, "
            f"p99 {top['p99_ms']:.0f} ms)",
            verdict(server["ratio_top_level"] >= 0.70),
            "the load generator runs on the same 2 cores as the server",
        ))
        out.append(Target("cold_start", "cold start of `omniembed serve` (no numeric target)",
                          f"{server['cold_start_s']:.1f} s empty cache (ONNX exports and minilm's bf16 compile, once), "
                          f"{server['warm_start_s']:.1f} s with the cache filled ({server['models']})", "INFO"))
    if mach is not None and text is not None and b32 is not None:
        per_text = mach["minilm"]["flops_per_text"]
        peak = mach["peak_gflops"]
        achieved = b32["onnx"] * per_text / 1e9
        frac = achieved / peak["fp32"] if peak["fp32"] else 0.0
        out.append(Target(
            "text_peak", "fp32 text throughput >= 60% of the machine's measured fp32 matmul peak",
            f"{100 * frac:.0f}% ({b32['onnx']:.1f} texts/s x {per_text / 1e9:.3f} GFLOP/text = {achieved:.1f} "
            f"GFLOP/s of {peak['fp32']:.1f})",
            verdict(frac >= 0.60),
            f"best fp32 side by side: torch {b32['torch'] * per_text / 1e9:.1f} GFLOP/s, "
            f"ST {b32['st'] * per_text / 1e9:.1f} GFLOP/s",
        ))
        reduced = b32.get("default", b32["onnx"]) * per_text / 1e9
        parts = [f"{100 * reduced / peak[p]:.0f}% of the {p} peak ({peak[p]:.1f})" for p in ("bf16", "int8") if peak[p]]
        for p in ("bf16", "int8"):  # explicit precision columns (text_throughput.py --precisions), if measured
            if p in b32 and peak[p]:
                parts.append(f"{p} column {b32[p] * per_text / 1e9:.1f} GFLOP/s = "
                             f"{100 * b32[p] * per_text / 1e9 / peak[p]:.0f}% of the {p} peak")
        out.append(Target(
            "reduced_peak", "reduced-precision (default) text path shown against the measured bf16/int8 peak",
            f"default {reduced:.1f} GFLOP/s = " + "; ".join(parts),
            "INFO" if text.get("precision_option") else "MISS",
            "" if text.get("precision_option") else "no reduced-precision path in this build: the default is fp32",
        ))
    out += geo_targets(sections["geo"].data if "geo" in sections else None, mach)
    out += ray_targets(sections["ray"].data if "ray" in sections else None)
    known = {t.key for t in out}
    for key, label, needs in (("text_fp32", "text targets", "text"), ("image", "image target", "image"),
                              ("server", "server target", "server"),
                              ("text_peak", "fraction of peak", "machine + text"),
                              ("geo_default_remoteclip", "Earth-observation targets", "geo")):
        if key not in known:
            out.append(Target(key, label, "-", "NOT MEASURED", f"needs section(s) {needs}: not run or failed"))
    return out


def ray_targets(ray: dict[str, Any] | None) -> list[Target]:
    """Issue 14's targets (bench/ray_scale.py): steady-state texts/s of 1 and 2 Ray actors, and memory."""
    if ray is None:
        return [Target("ray_one_actor", "Ray targets", "-", "NOT MEASURED", "needs section ray: not run or failed")]
    r = ray["results"]
    one, two, base = r["ray, 1 actor"], r["ray, 2 actors on 2 nodes"], r["in-process, 1 thread"]
    return [
        Target("ray_one_actor", "Ray, 1 actor: >= 85% of in-process embed_batch texts/s (same thread count)",
               f"{100 * ray['ray1_vs_inprocess_end_to_end']:.0f}% end to end, actor start included "
               f"({one['end_to_end']:.1f} vs {base['end_to_end']:.1f} texts/s); steady second half "
               f"{one['steady']:.1f} texts/s", verdict(ray["ray1_vs_inprocess_end_to_end"] >= 0.85)),
        Target("ray_two_actors", "Ray, 2 actors on 2 nodes (1 CPU each): >= 1.7x one actor",
               f"{ray['ray2_vs_ray1_end_to_end']:.2f}x end to end ({two['end_to_end']:.1f} vs {one['end_to_end']:.1f} "
               f"texts/s); {ray['ray2_vs_ray1_steady']:.2f}x steady", verdict(ray["ray2_vs_ray1_end_to_end"] >= 1.7),
               "both nodes share this machine's 2 cores with the driver"),
        Target("ray_memory", "Ray: driver and object store peak memory reported",
               f"driver peak RSS {ray['driver_peak_rss_mb']:.0f} MiB; object store peak {ray['store_peak_mb']:.1f} MiB",
               "INFO"),
    ]


def geo_targets(geo: dict[str, Any] | None, mach: dict[str, Any] | None = None) -> list[Target]:
    """Issue 11's targets for the native geo models, on the same regions (pooled + grid, resize + tile); the
    encoder's GFLOP/s shown against the machine section's measured matmul peaks when that section ran."""
    out: list[Target] = []
    peaks = (mach or {}).get("peak_gflops") or {}

    def against(gflops: float, precision: str) -> str:
        peak = peaks.get(precision)
        return f"{gflops:.0f} GFLOP/s" + (f" = {100 * gflops / peak:.0f}% of the {precision} peak ({peak:.0f})"
                                          if peak else "")

    for model, r in ((geo or {}).get("models") or {}).items():
        if model not in ("remoteclip", "prithvi"):
            continue
        s, cos, default = r["summary"], r["min_cos_to_eager_fp32"], r["default"]
        eager, size = s["eager fp32 regions_per_s"], f"{sum(len(v) for v in r['tiles'].values())} regions"
        d_cos = cos.get(default, 1.0)
        d_need = 0.9995 if default == "bf16" else 0.9999
        encode = r["configs"]["eager fp32"]["resize"]["pooled"]["encode_ms_per_region"]
        reads = r["read_alone_ms_per_region"]
        facts = (f"eager fp32 encodes one 224 px tile ({r['gflop_per_tile']:.1f} GFLOP) in {encode:.0f} ms; reading "
                 f"a region alone takes {reads['resize']:.1f} ms (resize) / {reads['tile']:.1f} ms (tile); encoders: "
                 f"eager fp32 {against(s['eager fp32 encoder_gflops'], 'fp32')}, onnx fp32 "
                 f"{against(s['onnx fp32 encoder_gflops'], 'fp32')}, bf16 {against(s['bf16 encoder_gflops'], 'bf16')} "
                 f"(bf16 ran as {r.get('encoders', {}).get('bf16', '?')})")
        out.append(Target(
            f"geo_default_{model}", f"geo, {model}: default >= 1.5x the eager fp32 path (regions/s, same regions)",
            f"{s['default / eager']:.2f}x (default = {default}: {s['default regions_per_s']:.2f} vs eager "
            f"{eager:.2f} regions/s over {size} x pooled/grid); min cosine to fp32 {d_cos:.6f}",
            verdict(s["default / eager"] >= 1.5 and d_cos >= d_need), facts,
        ))
        out.append(Target(
            f"geo_reduced_{model}", f"geo, {model}: >= 2x eager with verified reduced precision (min cosine to fp32 "
            ">= 0.9995 on real composites)",
            f"bf16 {s['bf16 / eager']:.2f}x ({s['bf16 regions_per_s']:.2f} regions/s); min cosine to fp32 "
            f"{cos['bf16']:.6f} over {r['vectors_compared']} vectors",
            verdict(s["bf16 / eager"] >= 2.0 and cos["bf16"] >= 0.9995), facts,
        ))
        out.append(Target(
            f"geo_fp32_{model}", f"geo, {model}: fp32 paths at cosine >= 0.9999 (ONNX Runtime vs eager torch)",
            f"min cosine {cos['onnx fp32']:.7f} over {r['vectors_compared']} vectors",
            verdict(cos["onnx fp32"] >= 0.9999),
        ))
    return out


def targets_table(items: list[Target]) -> list[str]:
    lines = ["| target | measured (this run) | result | why (if missed) |", "|---|---|---|---|"]
    for t in items:
        why = ""
        if t.status == "MISS":
            why = "; ".join(x for x in (t.facts, WHY.get(t.key) or PENDING) if x)
        elif t.status in ("INFO", "NOT MEASURED"):
            why = t.facts
        why = why.replace("|", "\\|").replace("\n", " ")  # keep the table intact whatever WHY says
        lines.append(f"| {t.target} | {t.measured} | **{t.status}** | {why} |")
    return lines


# --------------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------------


def section_body(section: Section) -> list[str]:
    """A section's own Markdown with headings moved under the report's section heading."""
    if section.returncode != 0:
        return [f"**FAILED** (exit code {section.returncode}). Last lines of its error output:", "", "```",
                section.stderr_tail.strip(), "```"]
    body = []
    for line in section.markdown.strip().splitlines():
        if line.startswith("#"):
            line = "### " + line.lstrip("#").strip()
        body.append(line)
    return body


def render(sections: dict[str, Section], command: str, load_before: str, load_after: str, total_s: float) -> str:
    lines = [
        "# Benchmarks",
        "",
        f"Generated by `{command}` on {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC in {total_s:.0f} s "
        "(`make bench` runs `.venv/bin/python bench/report.py`). Every number below comes from this one run, on "
        "the same machine, with the same thread count (one per core) for omniembed and each reference.",
        "",
        "## Machine",
        "",
        *machine_lines(load_before, load_after),
        "",
        "## Targets (issues 7 and 11)",
        "",
        *targets_table(targets(sections)),
        "",
        "## Peak memory (RSS)",
        "",
        "Side by side, each embedder alone in a fresh process (load + one pass over the benchmark inputs; see the "
        "machine section); then the `omniembed serve` process after the load test (`VmHWM`), and each benchmark "
        "process as a whole (from `wait4`: it holds every embedder of its section at once).",
        "",
        "| process | peak RSS MiB | run time s | exit code |",
        "|---|---:|---:|---:|",
    ]
    machine = sections.get("machine")
    for name, value in ((machine.data or {}).get("rss", {}) if machine else {}).items():
        shown = f"{value:.0f}" if isinstance(value, float) else str(value)
        lines.append(f"| {name} (alone) | {shown} | - | - |")
    server = sections.get("server")
    if server is not None and server.data is not None:
        lines.append(f"| `omniembed serve` ({server.data['models']}) after the load test | "
                     f"{server.data['server_peak_rss_mb']:.0f} | - | - |")
    for name, s in sections.items():
        lines.append(f"| benchmark process: {name} | {s.peak_rss_mb:.0f} | {s.seconds:.0f} | {s.returncode} |")
    for name, s in sections.items():
        own_command = "Command:" in s.markdown  # the text benchmark names its own command
        lines += ["", f"## {TITLES[name]}", "", *([] if own_command else [f"Command: `{s.command}`", ""]),
                  *section_body(s)]
    return "\n".join(lines) + "\n"


KEPT_HEADING = "## Per CPU class"
"""The closing section of docs/benchmarks.md, written by hand from runs on other CPU classes (one table per
class, each dated, with its command): a regeneration on one machine keeps it, since it cannot re-measure it."""


def kept_section(path: Path) -> str:
    """The ``KEPT_HEADING`` section (to the end of the file) of the report being replaced, or ''."""
    try:
        old = path.read_text()
    except OSError:
        return ""
    start = old.find("\n" + KEPT_HEADING)
    return "" if start < 0 else old[start:].rstrip() + "\n"


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Run every benchmark and write docs/benchmarks.md.")
    parser.add_argument("--output", type=Path, default=ROOT / "docs" / "benchmarks.md", help="Markdown file to write")
    parser.add_argument("--quick", action="store_true", help="smoke run: each benchmark with its quick settings")
    parser.add_argument("--sections", default=",".join(SECTIONS),
                        help=f"comma-separated subset of {','.join(SECTIONS)} (default: all)")
    parser.add_argument("--keep", type=Path, default=None, help="keep each section's raw output in this folder")
    parser.add_argument("--from-dir", type=Path, default=None,
                        help="rebuild the Markdown from a folder written by --keep, without running anything")
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.sections.split(",") if n.strip()]
    unknown = sorted(set(names) - set(SECTIONS))
    if unknown:
        parser.error(f"unknown section(s) {unknown}; choose from {','.join(SECTIONS)}")
    started = time.perf_counter()
    load_before = load_average()
    sections: dict[str, Section] = {}
    if args.from_dir is not None:
        for name in names:
            loaded = load_section(name, args.from_dir)
            if loaded is not None:
                sections[name] = loaded
        total = sum(s.seconds for s in sections.values())
    else:
        work = args.keep or Path(tempfile.mkdtemp(prefix="omniembed-bench-report-"))
        work.mkdir(parents=True, exist_ok=True)
        try:
            for name in names:
                sections[name] = run_section(name, args.quick, work)
        finally:
            if args.keep is None:
                shutil.rmtree(work, ignore_errors=True)
        total = time.perf_counter() - started
    command = "make bench" if not sys.argv[1:] else shlex.join([PY, "bench/report.py", *sys.argv[1:]])
    text = render(sections, command, load_before, load_average(), total) + kept_section(args.output)
    tmp = args.output.with_suffix(args.output.suffix + ".tmp")
    tmp.write_text(text)
    tmp.replace(args.output)
    log(f"wrote {args.output} ({total:.0f} s)")
    failed = [n for n, s in sections.items() if s.returncode != 0]
    if failed:
        log(f"sections that failed: {', '.join(failed)}")
        sys.exit(1)


if __name__ == "__main__":
    main()
