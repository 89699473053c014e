"""Near-duplicate detection: MinHash signatures (rensa) + LSH banding, streaming.

Memory is bounded by the signatures, not the text: pass one reads rows, keeps per row only its
location, its LSH band hashes (bands x 8 bytes) and a 16-bit-per-permutation ("b-bit minwise
hashing", Li & Koenig 2010) copy of its signature for verification; the clusters are found by
sorting the band hashes (numpy), candidate pairs are verified against the Jaccard threshold, and
joined with union-find. Pass two re-reads the inputs and writes the first row of each cluster.

Library: rensa (Rust MinHash) computes the signatures. Measured on 2 CPUs: signatures of 10k rows at
128 permutations took 0.018 s in rensa against 0.37 s (bulk) and 1.08 s (per-row loop) in datasketch,
and end to end scripts/bench_dedup.py gave 35,797 vs 6,188 rows per CPU-second (datasketch loop on
100k of the 1M rows), so datasketch is only the benchmark's baseline.

Text of a row (`row_texts`, dsforge.rowtext): pt text; sft/ranking/kto/candidates prompt (system + turns up to the
last user turn) and answer (last assistant turn, or chosen + rejected, or a candidate's text).
Normalisation (`tokens`): lowercase, split on anything that is not a letter/digit/underscore.
"""

from __future__ import annotations

import functools
import json
import re
from array import array
from collections import Counter
from dataclasses import dataclass, field
from typing import Iterable, Iterator

from dsforge.errors import InputError, UsageError
from dsforge.rowtext import ANSWER_KEYS, PROMPT_KEYS, identity_text, row_texts  # noqa: F401 - re-exported

NUM_PERM = 128
_WORD = re.compile(r"\w+", re.UNICODE)
ON_CHOICES = ("prompt", "all")
CHUNK = 8192
MAX_EXAMPLES = 20


def tokens(text: str) -> list[str]:
    """Lowercased word tokens (letters, digits, underscore); punctuation and whitespace split."""
    return _WORD.findall(text.lower())


@dataclass(frozen=True)
class Shingling:
    """How a text becomes a set of shingles: `word:K` (K consecutive tokens) or `char:K`
    (K characters of the normalised text). A text shorter than K is one shingle, itself."""

    unit: str = "word"
    k: int = 3

    @classmethod
    def parse(cls, spec: str, flag: str = "--shingle") -> "Shingling":
        """'word:3' / 'char:5' -> Shingling; UsageError (exit 2) naming `flag` for anything else."""
        unit, _, k = (spec or "").partition(":")
        if unit not in ("word", "char") or not k.isdigit() or not 1 <= int(k) <= 64:
            raise UsageError(f"{flag} {spec!r} is not word:K or char:K (1 <= K <= 64)",
                             f"e.g. {flag} word:3 (prose) or {flag} char:5 (short or code-like text)")
        return cls(unit, int(k))

    def __str__(self) -> str:
        return f"{self.unit}:{self.k}"

    def __call__(self, text: str) -> list[str]:
        toks = tokens(text)
        if not toks:
            return []
        if self.unit == "word":
            k = self.k
            if len(toks) <= k:
                return [" ".join(toks)]
            return [" ".join(toks[i:i + k]) for i in range(len(toks) - k + 1)]
        s = " ".join(toks)
        if len(s) <= self.k:
            return [s]
        return [s[i:i + self.k] for i in range(len(s) - self.k + 1)]


FN_WEIGHT = 0.9   # every LSH candidate is verified against its signature, so a miss costs more than a check


@functools.lru_cache(maxsize=16)
def lsh_params(threshold: float, num_perm: int = NUM_PERM, fn_weight: float = FN_WEIGHT) -> tuple[int, int]:
    """(bands, rows per band) minimising the weighted sum of false-positive and false-negative
    probability mass around `threshold` (datasketch MinHashLSH's rule, with its `weights`); at
    0.8 and 128 permutations: 14 bands of 9, which finds a pair of Jaccard 0.84 with p=0.96."""
    import numpy as np

    xs = np.linspace(0, 1, 201)
    best, best_err = (1, num_perm), float("inf")
    for b in range(1, num_perm + 1):
        for r in range(1, num_perm // b + 1):
            p = 1 - (1 - xs ** r) ** b
            fp = np.trapezoid(np.where(xs < threshold, p, 0), xs)
            fn = np.trapezoid(np.where(xs >= threshold, 1 - p, 0), xs)
            err = (1 - fn_weight) * fp + fn_weight * fn
            if err < best_err:
                best, best_err = (b, r), err
    return best


def check_threshold(threshold: float, flag: str = "--threshold") -> None:
    """Raise UsageError (naming `flag`) unless 0 < threshold <= 1 (a Jaccard similarity)."""
    if not 0 < threshold <= 1:
        raise UsageError(f"{flag} {threshold:g} must be in (0, 1]", f"e.g. {flag} 0.8 (Jaccard similarity)")


class Signer:
    """MinHash signatures and LSH band hashes for batches of texts.

    sign(texts) -> (sigs uint32 [n, num_perm], empty bool [n]); bands(sigs) -> uint64 [n, bands].
    Texts with no word characters are `empty` and never match anything.
    """

    def __init__(self, shingling: Shingling, threshold: float, num_perm: int = NUM_PERM, seed: int = 1):
        import numpy as np

        check_threshold(threshold)
        self.shingling, self.threshold, self.num_perm, self.seed = shingling, threshold, num_perm, seed
        self.b, self.r = lsh_params(threshold, num_perm)
        rng = np.random.default_rng(seed)
        self._mix = rng.integers(1, 2**63, size=self.r, dtype=np.uint64) | np.uint64(1)

    def shingle_hashes(self, texts: list[str]):
        """(flat uint64 shingle hashes, row offsets [n+1], empty bool [n]); vectorised: tokens are
        hashed once (rensa, deterministic), word shingles are a mix of K neighbouring token hashes."""
        import numpy as np
        import rensa

        sh = self.shingling
        if sh.unit == "word":
            toks = [tokens(t) for t in texts]
        else:
            toks = [sh(t) for t in texts]   # char shingles are the tokens
        lens = np.fromiter(map(len, toks), dtype=np.int64, count=len(toks))
        flat_toks = [x for tk in toks for x in tk]
        th = np.asarray(rensa.RMinHash.hash_token_sets([flat_toks])[0] if flat_toks else [], dtype=np.uint64)
        empty = lens == 0
        k = sh.k if sh.unit == "word" else 1
        counts = np.where(empty, 1, np.maximum(lens - k + 1, 1))
        offsets = np.zeros(len(texts) + 1, np.int64)
        np.cumsum(counts, out=offsets[1:])
        starts = np.zeros(len(texts), np.int64)
        np.cumsum(lens[:-1], out=starts[1:])
        total = int(offsets[-1])
        row = np.repeat(np.arange(len(texts)), counts)
        pos = starts[row] + (np.arange(total) - offsets[:-1][row])
        end = (starts + lens)[row]
        h = np.zeros(total, np.uint64)
        padded = np.concatenate([th, np.zeros(1, np.uint64)])
        with np.errstate(over="ignore"):
            for j in range(k):
                idx = pos + j
                val = np.where(idx < end, padded[np.minimum(idx, len(th))], np.uint64(0))
                h = h * np.uint64(0x9E3779B97F4A7C15) + val
            h ^= h >> np.uint64(31)
            h *= np.uint64(0x94D049BB133111EB)
        return h, offsets, empty

    def sign(self, texts: list[str]):
        """MinHash signatures of a batch: (uint32 array [len(texts), num_perm], bool array [len(texts)] True
        where a text has no shingle).
        """
        import numpy as np
        import rensa

        if not texts:
            return np.zeros((0, self.num_perm), np.uint32), np.zeros(0, bool)
        h, offsets, empty = self.shingle_hashes(texts)
        m = rensa.RMinHash.digest_matrix_from_flat_token_hashes(h, offsets, num_perm=self.num_perm, seed=self.seed)
        return np.asarray(m.to_rows(), dtype=np.uint32), empty

    def bands(self, sigs):
        """LSH band hashes of signatures [n, num_perm]: uint64 array [n, b] (b bands of r rows each)."""
        import numpy as np

        n = sigs.shape[0]
        used = sigs[:, : self.b * self.r].astype(np.uint64).reshape(n, self.b, self.r)
        with np.errstate(over="ignore"):
            h = (used * self._mix).sum(axis=2, dtype=np.uint64)
            h ^= h >> np.uint64(29)
            h *= np.uint64(0xBF58476D1CE4E5B9)
        return h

    def similarity(self, a, b):
        """Estimated Jaccard between rows of two signature arrays (any integer dtype, same shape)."""
        return (a == b).mean(axis=1)


@dataclass
class Clusters:
    """Result of `find_clusters`: n rows, rep[i] = index of the first row of i's cluster (i itself
    when i starts a cluster or has none), sizes = Counter of cluster size (>= 2) -> count."""

    n: int
    rep: object                      # numpy int64 [n]
    sizes: Counter = field(default_factory=Counter)
    candidates: int = 0              # LSH candidate pairs checked
    verified: int = 0                # of which at or above the threshold

    @property
    def dropped(self) -> int:
        """Number of rows that are not their cluster's first row (the rows dedup drops)."""
        return int((self.rep != __import__("numpy").arange(self.n)).sum())

    def is_dropped(self):
        """numpy bool array [n]: True for a row dedup drops."""
        import numpy as np

        return self.rep != np.arange(self.n)


def find_clusters(texts: Iterable[str], signer: Signer, progress=None) -> Clusters:
    """Cluster near-duplicate texts (streamed; only signatures are kept). Rows whose estimated
    Jaccard similarity reaches signer.threshold with a row sharing an LSH band are joined
    (union-find, so clusters are connected components); each cluster's representative is its
    first row."""
    import numpy as np

    band_chunks, sig_chunks, empty_chunks, buf = [], [], [], []

    def flush():
        sigs, empty = signer.sign(buf)
        band_chunks.append(signer.bands(sigs))
        sig_chunks.append(sigs.astype(np.uint16))   # b-bit minwise hashing: 16 bits verify Jaccard
        empty_chunks.append(empty)
        if progress:
            progress(len(buf))
        buf.clear()

    for t in texts:
        buf.append(t)
        if len(buf) >= CHUNK:
            flush()
    if buf:
        flush()
    if not band_chunks:
        return Clusters(0, np.zeros(0, np.int64))
    # the chunks are never concatenated whole (that would double the peak): one band column at a
    # time, and signatures gathered from their chunk (row i is chunk i // CHUNK, row i % CHUNK)
    empty = np.concatenate(empty_chunks)
    n = len(empty)
    idx = np.flatnonzero(~empty)

    def gather(rows):
        out = np.empty((len(rows), signer.num_perm), np.uint16)
        c, o = np.divmod(rows, CHUNK)
        for ch in np.unique(c).tolist():
            m = c == ch
            out[m] = sig_chunks[ch][o[m]]
        return out

    keys = np.zeros(0, np.int64)   # candidate pairs (a < b) as one int64 a * n + b, deduplicated per band
    for j in range(signer.b):
        h = np.concatenate([bc[:, j] for bc in band_chunks])[idx]
        order = np.argsort(h, kind="stable")
        hs, ids = h[order], idx[order]
        del h, order
        same = hs[1:] == hs[:-1]
        if not same.any():
            continue
        start = np.concatenate(([True], ~same))
        first = ids[np.maximum.accumulate(np.where(start, np.arange(len(ids)), 0))]
        member = ~start
        new = np.concatenate([first[member] * n + ids[member],          # with the bucket's first row
                              ids[:-1][same] * n + ids[1:][same]])       # with the previous member
        keys = np.union1d(keys, new)
    rep = np.arange(n, dtype=np.int64)
    out = Clusters(n, rep)
    p = np.stack(np.divmod(keys, n), axis=1)
    p = p[p[:, 0] != p[:, 1]]
    if not len(p):
        return out
    out.candidates = len(p)
    ok = np.empty(len(p), bool)
    for s in range(0, len(p), 1 << 16):
        q = p[s:s + (1 << 16)]
        ok[s:s + len(q)] = signer.similarity(gather(q[:, 0]), gather(q[:, 1])) >= signer.threshold
    p = p[ok]
    out.verified = len(p)
    parent: dict[int, int] = {}

    def find(x: int) -> int:
        root = x
        while parent.get(root, root) != root:
            root = parent[root]
        while parent.get(x, x) != root:
            parent[x], x = root, parent[x]
        return root

    for a, b in p.tolist():
        ra, rb = find(a), find(b)
        if ra != rb:
            lo, hi = (ra, rb) if ra < rb else (rb, ra)
            parent[hi] = lo
    for x in parent:
        rep[x] = find(x)
    out.sizes = Counter(Counter(rep[list(parent)].tolist()).values())   # members besides the first
    out.sizes = Counter({k + 1: v for k, v in out.sizes.items()})
    return out


# ---------------------------------------------------------------- files


@dataclass
class DedupOptions:
    """Options of `dedup_files` and `convert --dedup near` (validated by check())."""

    on: str = "all"
    shingle: str = "word:3"
    threshold: float = 0.8
    num_perm: int = NUM_PERM
    flags: str = "--"    # how the options are spelled in messages ("--dedup-" for convert)

    def check(self) -> Shingling:
        """Validate the options; returns the parsed Shingling. Raises UsageError naming the option as spelled
        with `flags` (e.g. --dedup-threshold).
        """
        if self.on not in ON_CHOICES:
            raise UsageError(f"{self.flags}on {self.on!r}: use one of {', '.join(ON_CHOICES)}")
        check_threshold(self.threshold, f"{self.flags}threshold")
        return Shingling.parse(self.shingle, f"{self.flags}shingle")

    def signer(self) -> Signer:
        """A Signer for these options (checked first: UsageError on a bad option)."""
        return Signer(self.check(), self.threshold, self.num_perm)


@dataclass
class DedupReport:
    """The cluster report written to OUT.dedup.json (stable keys, version 1)."""

    inputs: list[str]
    out: str | None
    options: dict
    rows: int = 0
    kept: int = 0
    dropped: int = 0
    clusters: int = 0
    histogram: dict = field(default_factory=dict)   # cluster size (str) -> number of clusters
    examples: list = field(default_factory=list)    # [{"size", "kept": "file:line", "dropped": [...]}]
    candidates: int = 0
    verified_pairs: int = 0
    drop_mask: object = field(default=None, repr=False)   # numpy bool [rows]: True = dropped (not in to_dict)

    def to_dict(self) -> dict:
        """JSON form: kind ('dedup'), version (1), inputs, out, options, rows, kept, dropped, clusters,
        histogram {size: clusters}, examples [{size, kept, dropped}], lsh {candidate_pairs, verified_pairs}.
        """
        return {"kind": "dedup", "version": 1, "inputs": self.inputs, "out": self.out, "options": self.options,
                "rows": self.rows, "kept": self.kept, "dropped": self.dropped, "clusters": self.clusters,
                "histogram": self.histogram, "examples": self.examples,
                "lsh": {"candidate_pairs": self.candidates, "verified_pairs": self.verified_pairs}}


def report_for(cl: Clusters, locs, inputs: list[str], out: str | None, opts: DedupOptions, signer: Signer,
               max_examples: int = MAX_EXAMPLES) -> DedupReport:
    """A DedupReport from clusters; locs(i) -> 'file:line' of row i."""
    import numpy as np

    rep = cl.rep
    dropped_idx = np.flatnonzero(rep != np.arange(cl.n))
    examples: dict[int, list[int]] = {}
    for i in dropped_idx.tolist():
        r = int(rep[i])
        if r in examples or len(examples) < max_examples:
            members = examples.setdefault(r, [])
            if len(members) < 10:
                members.append(i)
    return DedupReport(
        inputs=inputs, out=out,
        options={"on": opts.on, "shingle": opts.shingle, "threshold": opts.threshold, "num_perm": signer.num_perm,
                 "bands": signer.b, "rows_per_band": signer.r, "library": "rensa"},
        rows=cl.n, kept=cl.n - len(dropped_idx), dropped=len(dropped_idx), clusters=sum(cl.sizes.values()),
        histogram={str(k): v for k, v in sorted(cl.sizes.items())},
        examples=[{"size": int((rep == r).sum()), "kept": locs(r), "dropped": [locs(i) for i in ms]}
                  for r, ms in examples.items()],
        candidates=cl.candidates, verified_pairs=cl.verified)


def records(files: list[str]) -> Iterator[tuple[int, int, dict]]:
    """(file index, line, row) of every row; a row that is not an object is an InputError (exit 1)
    naming file:line, and so are inputs holding no row at all."""
    from dsforge import io as dio

    n = 0
    for fi, path in enumerate(files):
        for line, rec in dio.iter_records(path):
            if not isinstance(rec, dict):
                raise InputError(f"row is {type(rec).__name__}, not an object", "every row of pt/sft/ranking/kto/"
                                 "candidates data is a JSON object; fix or remove the line", path=path, line=line)
            n += 1
            yield fi, line, rec
    if not n:
        raise InputError("no rows", "the input holds no rows; pass a file with data", path=", ".join(files[:3]))


def write_kept_jsonl(f, files: list[str], fidx, lns, drop) -> int:
    """Write the rows not in `drop` as JSONL bytes to `f`: a .jsonl input's kept lines are copied
    as they are (no re-parse, formatting kept), other inputs are re-read and serialised. Row i is
    line lns[i] of files[fidx[i]] (as pass one read them). Returns the number of rows written."""
    from dsforge import io as dio

    n = 0
    for fi, path in enumerate(files):
        keep = lns[(fidx == fi) & ~drop]   # ascending line numbers
        if path.endswith(".jsonl") and not dio.is_hf_dataset_dir(path):
            nxt = iter(keep.tolist())
            want = next(nxt, None)
            with open(path, "rb") as src:
                for lineno, raw in enumerate(src, 1):
                    if lineno == want:
                        if lineno == 1 and raw.startswith(dio.BOM):
                            raw = raw[3:]
                        f.write(raw.rstrip(b"\r\n") + b"\n")
                        n += 1
                        want = next(nxt, None)
                        if want is None:
                            break
            continue
        want = set(keep.tolist())
        for line, rec in dio.iter_records(path):
            if line in want:
                f.write((dio.dumps_row(rec) + "\n").encode("utf-8"))
                n += 1
    return n


def dedup_files(inputs: list[str], out: str, opts: DedupOptions, progress=None) -> DedupReport:
    """Remove near-duplicate rows from `inputs` (any file kind the readers take) into `out`
    (.jsonl/.json), keeping the first row of each cluster; writes the report to OUT.dedup.json.
    Both files are written atomically; inputs and a file dedup did not write are never replaced
    (UsageError, exit 2)."""
    import numpy as np

    from dsforge import io as dio

    signer = opts.signer()
    files = dio.expand_inputs(inputs, dio.JSON_EXTS | dio.TABLE_EXTS | dio.TEXT_EXTS)
    if not files:
        raise UsageError("no input files found", "pass .jsonl/.json/.csv/.parquet/.txt files, globs or directories")
    sidecar = out + ".dedup.json"
    dio.guard_outputs([("INPUT", f) for f in files], {"-o": out, "report": sidecar})
    dio.guard_kind(out, "dedup")
    file_idx, lines = array("i"), array("q")   # 12 bytes a row

    def texts():
        for fi, line, rec in records(files):
            file_idx.append(fi)
            lines.append(line)
            yield identity_text(rec, opts.on)

    cl = find_clusters(texts(), signer, progress)
    fidx, lns = np.frombuffer(file_idx, np.int32), np.frombuffer(lines, np.int64)
    del file_idx, lines
    rep = report_for(cl, lambda i: f"{files[fidx[i]]}:{lns[i]}", files, out, opts, signer)
    drop = rep.drop_mask = cl.is_dropped()
    with dio.atomic_files() as af:
        if out.lower().endswith(".jsonl"):
            write_kept_jsonl(af.open(out, "wb", encoding=None), files, fidx, lns, drop)
        else:
            w = dio.RowWriter(af.open(out), "json")
            for i, (_, _, rec) in enumerate(records(files)):
                if not drop[i]:
                    w.write(rec)
            w.close()
        json.dump(rep.to_dict(), af.open(sidecar), indent=2, ensure_ascii=False)
    dio.note_output(out, "dedup")
    return rep

