import os

import numpy as np
import pytest

from dualrnn import data

# shared/data/README.md
COUNTS = {"ptb": (929_589, 73_760, 82_430), "wikitext-2": (2_088_628, 217_646, 245_569)}


@pytest.mark.parametrize("name,vocab,size", [("ptb", "paper", 10_000), ("ptb", "standard", 10_000),
                                             ("wikitext-2", "paper", 28_912),
                                             ("wikitext-2", "standard", 33_278)])
def test_vocabulary_and_token_counts(name, vocab, size):
    c = data.load_corpus(name, vocab)
    assert c.vocab_size == size
    assert (len(c.train), len(c.valid), len(c.test)) == COUNTS[name]
    for split in (c.train, c.valid, c.test):
        assert split.dtype == np.int32 and split.min() >= 0 and split.max() < size
    assert "<eos>" in c.vocab.stoi
    if name == "wikitext-2" and vocab == "paper":
        assert all(w == w.lower() for w in c.vocab.itos)


def test_tokens_decode_to_the_file(ptb):
    first_line = open(data.corpus_path("ptb", "valid")).readline().split()
    assert ptb.vocab.decode(ptb.valid[:len(first_line) + 1]) == first_line + ["<eos>"]


def test_tokenize_counts_blank_lines():
    assert data.tokenize("a b\n\nc\n") == ["a", "b", "<eos>", "<eos>", "c", "<eos>"]
    assert data.tokenize("A b\n", lowercase=True) == ["a", "b", "<eos>"]


def test_batchify_scores_each_target_once():
    tokens = np.arange(103)
    s = data.batchify(tokens, 4)
    assert s.shape == (4, 26)
    targets = np.concatenate([s[b, 1:] for b in range(4)])
    inputs = np.concatenate([s[b, :-1] for b in range(4)])
    assert np.array_equal(targets, np.arange(1, 101)) and np.array_equal(inputs + 1, targets)
    lens = [x.shape[1] for _, x, _ in data.windows(s, 7)]
    assert lens == [7, 7, 7, 4] and sum(lens) == 25


@pytest.mark.parametrize("call,match", [
    (lambda: data.load_corpus("ptb2"), "name='ptb2'.*'ptb', 'wikitext-2'"),
    (lambda: data.load_corpus("ptb", vocab="lower"), "vocab='lower'.*paper"),
    (lambda: data.batchify(np.arange(10), 0), "batch_size=0"),
    (lambda: data.batchify(np.arange(3), 5), "too few"),
    (lambda: list(data.windows(np.zeros((2, 5), int), -1)), "seq_len=-1"),
])
def test_bad_arguments(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_missing_directory_and_file(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        data.load_corpus("ptb", data_dir=str(tmp_path / "nowhere"))
    (tmp_path / "ptb").mkdir()
    with pytest.raises(ValueError, match=r"missing corpus file .*ptb.train\.txt"):
        data.load_corpus("ptb", data_dir=str(tmp_path))


def test_corrupt_file_is_refused(tmp_path):
    src = os.environ["DUALRNN_DATA"]
    (tmp_path / "ptb").mkdir()
    for split in data.SPLITS:
        text = open(os.path.join(src, "ptb", f"{split}.txt")).read()
        (tmp_path / "ptb" / f"{split}.txt").write_text(text + ("x\n" if split == "valid" else ""))
    with pytest.raises(ValueError, match=r"valid\.txt has sha256 .* expected .*replace it"):
        data.load_corpus("ptb", data_dir=str(tmp_path))
