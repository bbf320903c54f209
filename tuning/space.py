"""The Dual paper's search space (appendix Tables 3-4) as a keras-tuner ``HyperModel``.

``DualHyperModel(arch, recurrent, dataset, scale, vocab_size)`` declares exactly the
hyperparameters of ``dualrnn.presets.APPENDIX_GRID`` that apply to the network searched:

* every row: learning rate (log-uniform [1e-6, 1e-3]), batch {32, 128}, window {10, 25, 50},
  epochs {100, 300} (not with Hyperband, whose resource the epochs are), embedding units
  {400, 850}, the embedding / recurrent-input / recurrent / activation L2 {0, 1e-6, 1e-5}, and
  the recurrent-input / recurrent / output dropouts [0, 0.5];
* ``dlstm`` and ``mdlstm``: LSTM layers {2, 3}, recurrent units {400, 850, 1150}, internal
  dropout [0, 0.5] (``lstm`` is the one-layer module: layers = 1, no internal dropout);
* ``mdlstm``: mogrifier rounds {2..6} (0, the grid's other value, is the plain ``lstm``/``dlstm``),
  rank {0, 50, 100, 200}, mogrifier L2 {0, 1e-6, 1e-5}, mogrifier dropout [0, 0.2];
* ``dual`` only (Tables 3-4's "*"): dual L2 {0, 1e-6, 1e-5}, dual input/output dropout [0, 0.5].

Weight tying (Dual sec. 3.2) needs the representation fed to the softmax to have the
embedding's width. The grid's widths are resolved as the paper's Table 1 models are built (their
parameter counts fix it: PTB dLSTM = 400 -> 1150 -> 400): every recurrent layer but the last has
``recurrent_units``, the last has ``embedding_units``, and the dual layer has ``embedding_units``
("Dual units*" is therefore not free; it is reported as the resolved ``dual_units``).

``fixed`` pins hyperparameters (``hp.Fixed``): the paper's protocol fixes the best ERS values and
searches only the Dual-only ones (``tuning/search.py --transfer-from``); a Table 1 sweep fixes the
row's sizes and sec. 3.2's batch, window and epochs (``--fix``).

``train_protocols`` adds one dimension the paper leaves open (it says only that it used Keras):
how training reads the windows (``TRAIN_PROTOCOLS``). ``("carry",)``, the default, declares
nothing and trains as ``TrainConfig``'s default (the state carried from window to window, in
corpus order); ``("shuffled",)`` pins ``train_protocol="shuffled"`` (each window from the zero
state, in a per-epoch shuffled order: what a plain, non-stateful Keras ``fit`` over windows
does); ``("carry", "shuffled")`` searches it (``--train-protocol both``). ``lr_range`` narrows the
learning rate's log-uniform prior to a sub-interval of the grid's [1e-6, 1e-3] (``--lr-range``:
draws far below 1e-4 learn almost nothing in the epochs a short search affords).
"""

from __future__ import annotations

import keras_tuner as kt

from dualrnn import presets
from dualrnn.configs import EvalConfig, ModelConfig, TrainConfig
from dualrnn.models import build_model
from dualrnn.presets import APPENDIX_GRID as GRID
from dualrnn.train import train

ARCHS = ("ers", "dual")
RECURRENTS = ("lstm", "dlstm", "mdlstm")
OBJECTIVE = "val_ppl"            # best validation perplexity over the trial's epochs

# What a tuning scale changes (every change is listed in the trial's departures):
#   smoke: presets.at_scale(..., "smoke") (tiny widths, truncated corpora, batch 8) and the
#          grid's epochs {100, 300} -> {1, 2};
#   small: the paper's widths on real data, the training split truncated to its first
#          250,000 tokens, epochs {100, 300} -> {2, 4}: 10-30 minutes a trial on 2 CPU cores;
#   full:  the paper's setting unchanged (GPU).
TUNING_SCALES = {
    "smoke": dict(epochs={100: 1, 300: 2}, train_tokens=None),
    "small": dict(epochs={100: 2, 300: 4}, train_tokens=250_000),
    "full": dict(epochs={100: 100, 300: 300}, train_tokens=None),
}
L2 = ("embedding_l2", "recurrent_input_l2", "recurrent_l2", "activation_l2")
DROPOUTS = ("input_dropout", "recurrent_dropout", "output_dropout")
MOGRIFIER = ("mogrifier_rounds", "mogrifier_rank", "mogrifier_l2", "mogrifier_dropout")
DUAL_ONLY = ("dual_l2", "dual_input_dropout", "dual_output_dropout")
# How training reads the windows: the ``TrainConfig`` fields of each protocol (not in the grid)
TRAIN_PROTOCOLS = {"carry": dict(carry_state=True, shuffle_windows=False),
                   "shuffled": dict(carry_state=False, shuffle_windows=True)}


def _check(name, value, allowed):
    if value not in allowed:
        raise ValueError(f"{name}={value!r} is not one of {tuple(allowed)}")


def scaled_epochs(grid_epochs: int, scale: str) -> int:
    """Epochs a trial trains at ``scale`` for the grid's ``grid_epochs`` (100 or 300)."""
    table = TUNING_SCALES[scale]["epochs"]
    if grid_epochs in table:
        return table[grid_epochs]
    return max(1, round(grid_epochs * table[100] / 100))


def hyperband_max_epochs(scale: str) -> int:
    """Hyperband's resource: the grid's largest epoch count at ``scale``."""
    return scaled_epochs(max(GRID["epochs"]), scale)


def grid_epochs_for(trained_epochs: int, scale: str) -> int:
    """The grid value (100 or 300) a Hyperband trial's epoch budget corresponds to: the smallest
    whose scaled count covers it."""
    for e in sorted(GRID["epochs"]):
        if trained_epochs <= scaled_epochs(e, scale):
            return e
    return max(GRID["epochs"])


def grid_values(values: dict) -> dict:
    """A trial's hyperparameter values without keras-tuner's own ``tuner/*`` entries."""
    return {k: v for k, v in values.items() if not k.startswith("tuner/")}


def trial_values(trial: dict, scale: str) -> dict:
    """A finished trial's (``tuners.read_trials``) grid values, its epochs included: a Hyperband
    trial's epoch budget maps to the grid value that covers it (``grid_epochs_for``)."""
    values = grid_values(trial["values"])
    if "epochs" not in values:                 # a Hyperband search: epochs were its resource
        values["epochs"] = grid_epochs_for(trial["result"].get("epochs", 1), scale)
    return values


def train_protocol_of(train_config: TrainConfig) -> str:
    """The ``TRAIN_PROTOCOLS`` name of ``train_config``'s window reading."""
    for name, fields in TRAIN_PROTOCOLS.items():
        if all(getattr(train_config, k) == v for k, v in fields.items()):
            return name
    raise ValueError(f"carry_state={train_config.carry_state}, shuffle_windows="
                     f"{train_config.shuffle_windows} is none of the protocols {TRAIN_PROTOCOLS}")


class DualHyperModel(kt.HyperModel):
    """Appendix Tables 3-4 for one ``arch`` (ers/dual) x ``recurrent`` (lstm/dlstm/mdlstm).

    ``build(hp)`` returns the ``dualrnn.LanguageModel``; ``fit(hp, model, corpus)`` trains it with
    ``dualrnn.train.train`` at ``scale`` and returns the best validation perplexity (the
    objective, ``val_ppl``, minimised).
    """

    def __init__(self, arch, recurrent, dataset, scale, vocab_size, fixed=None, hyperband=False,
                 seed=0, lr_range=None, train_protocols=("carry",), **kwargs):
        _check("arch", arch, ARCHS)
        _check("recurrent", recurrent, RECURRENTS)
        _check("dataset", dataset, presets.DATASETS)
        _check("scale", scale, tuple(TUNING_SCALES))
        super().__init__(name=f"{arch}_{recurrent}", **kwargs)
        self.arch, self.recurrent, self.dataset, self.scale = arch, recurrent, dataset, scale
        self.vocab_size = vocab_size
        self.fixed = dict(fixed or {})
        self.hyperband = hyperband
        self.seed = seed
        lo, hi = GRID["learning_rate"]
        self.lr_range = tuple(lr_range or (lo, hi))
        self.train_protocols = tuple(train_protocols)
        if (not self.train_protocols or len(set(self.train_protocols)) != len(self.train_protocols)
                or not set(self.train_protocols) <= set(TRAIN_PROTOCOLS)):
            raise ValueError(f"train_protocols={train_protocols!r} must be distinct names of "
                             f"{tuple(TRAIN_PROTOCOLS)}")
        if not (len(self.lr_range) == 2 and lo <= self.lr_range[0] < self.lr_range[1] <= hi):
            raise ValueError(f"lr_range={lr_range!r} must be (low, high) with "
                             f"{lo} <= low < high <= {hi} (appendix Table 3)")
        unknown = sorted(set(self.fixed) - set(self.names()))
        if unknown:
            raise ValueError(f"fixed hyperparameters {unknown} are not in the search space of "
                             f"{arch} {recurrent}: {self.names()}")
        if self.fixed.get("train_protocol", self.train_protocols[0]) not in self.train_protocols:
            raise ValueError(f"fixed train_protocol={self.fixed['train_protocol']!r} is not one "
                             f"of train_protocols={self.train_protocols}")

    def names(self) -> tuple:
        """The hyperparameters that apply, in declaration order."""
        names = ["learning_rate", "batch_size", "seq_len"]
        names += [] if self.hyperband else ["epochs"]
        names += [] if self.train_protocols == ("carry",) else ["train_protocol"]
        names += ["embedding_units"]
        if self.recurrent != "lstm":
            names += ["layers", "recurrent_units"]
        names += list(L2) + list(DROPOUTS)
        if self.recurrent != "lstm":
            names += ["internal_dropout"]
        if self.recurrent == "mdlstm":
            names += list(MOGRIFIER)
        if self.arch == "dual":
            names += list(DUAL_ONLY)
        return tuple(names)

    def declare(self, hp) -> dict:
        """Declare the space on ``hp``; returns the current values by name."""
        def one(name):
            if name in self.fixed:
                return hp.Fixed(name, self.fixed[name])
            if name == "learning_rate":
                return hp.Float(name, *self.lr_range, sampling="log")
            if name == "train_protocol":
                if len(self.train_protocols) == 1:
                    return hp.Fixed(name, self.train_protocols[0])
                return hp.Choice(name, list(self.train_protocols))
            if name == "layers":
                return hp.Choice(name, [n for n in GRID["layers"] if n > 1])
            if name == "mogrifier_rounds":
                return hp.Choice(name, [r for r in GRID["mogrifier_rounds"] if r > 0])
            if name.endswith("_l2"):
                return hp.Choice(name, list(GRID["l2"]))
            if name == "mogrifier_dropout":
                return hp.Float(name, *GRID["mogrifier_dropout"])
            if name.endswith("_dropout"):
                return hp.Float(name, *GRID["dropout"])
            return hp.Choice(name, list(GRID[name]))

        return {name: one(name) for name in self.names()}

    def declare_hyperparameters(self, hp):
        self.declare(hp)

    def preset(self, values: dict, epochs: int | None = None) -> presets.Preset:
        """The paper-scale preset (``dualrnn.presets.Preset``) of one point of the space."""
        v = dict(values)
        emb = v["embedding_units"]
        layers = 1 if self.recurrent == "lstm" else v["layers"]
        units = (v.get("recurrent_units", emb),) * (layers - 1) + (emb,)   # tying: last = emb
        fields = {k: v[k] for k in L2 + DROPOUTS + DUAL_ONLY + MOGRIFIER + ("internal_dropout",)
                  if k in v}
        model = ModelConfig(architecture=self.arch, embedding_units=emb, recurrent_units=units,
                            **fields).validate()
        batch = v["batch_size"]
        train_config = TrainConfig(epochs=epochs or v.get("epochs", max(GRID["epochs"])),
                                   batch_size=batch, seq_len=v["seq_len"],
                                   learning_rate=float(v["learning_rate"]),
                                   seed=self.seed,
                                   **TRAIN_PROTOCOLS[v.get("train_protocol", "carry")]).validate()
        ev = EvalConfig(batch_size=batch, seq_len=presets.SEQ_LEN,
                        dyneval_batch_size=batch).validate()
        name = ("dual_" if self.arch == "dual" else "") + self.recurrent
        return presets.Preset(name=name, dataset=self.dataset, model=model, train=train_config,
                              eval=ev)

    def scaled(self, preset: presets.Preset, epochs: int | None = None) -> presets.Preset:
        """``preset`` at this model's tuning scale; ``epochs`` (Hyperband's) overrides the map."""
        s = TUNING_SCALES[self.scale]
        grid = preset.train.epochs
        n = epochs or scaled_epochs(grid, self.scale)
        if self.scale == "smoke":
            preset = presets.at_scale(preset, "smoke")
            preset = preset.replace(departures=tuple(d for d in preset.departures
                                                     if not d.startswith("epochs")))
        departures = list(preset.departures)
        if n != grid:
            departures.append(f"epochs {grid} -> {n}")
        train_config = preset.train.replace(epochs=n)
        if s["train_tokens"]:
            train_config = train_config.replace(max_tokens=s["train_tokens"])
            departures.append(f"train split truncated to its first {s['train_tokens']} tokens")
        return preset.replace(scale=self.scale, train=train_config, departures=tuple(departures))

    def values_of(self, preset: presets.Preset) -> dict:
        """The inverse of ``preset``: this space's values of a (paper-scale) preset."""
        m, t = preset.model, preset.train
        known = dict(learning_rate=t.learning_rate, batch_size=t.batch_size, seq_len=t.seq_len,
                     epochs=t.epochs, embedding_units=m.embedding_units,
                     layers=m.num_layers, recurrent_units=m.recurrent_units[0],
                     **{k: getattr(m, k) for k in L2 + DROPOUTS + MOGRIFIER + DUAL_ONLY
                        + ("internal_dropout",)})
        if "train_protocol" in self.names():       # only a search that declares it asks
            known["train_protocol"] = train_protocol_of(t)
        return {k: known[k] for k in self.names()}

    def build(self, hp):
        preset = self.preset(self.declare(hp))
        return build_model(self.scaled(preset).model, self.vocab_size, seed=self.seed)

    def train_trial(self, values, corpus, checkpoint_dir=None, epochs=None, verbose=0):
        """Train one point of the space with ``dualrnn.train.train``.

        Returns ``(scaled preset, trained model, TrainResult)``; resumes from ``checkpoint_dir``.
        """
        preset = self.scaled(self.preset(values), epochs)
        model = build_model(preset.model, corpus.vocab_size, seed=self.seed)
        return preset, model, self._train(preset, model, corpus, checkpoint_dir, verbose)

    def fit(self, hp, model, corpus, checkpoint_dir=None, epochs=None, verbose=0, **kwargs):
        """keras-tuner's ``HyperModel.fit``: trains ``model`` in place, returns ``val_ppl``."""
        preset = self.scaled(self.preset(hp.values), epochs)
        return self._train(preset, model, corpus, checkpoint_dir, verbose).best_valid_ppl

    @staticmethod
    def _train(preset, model, corpus, checkpoint_dir, verbose):
        ev = preset.eval
        valid = corpus.valid[:ev.max_tokens] if ev.max_tokens else corpus.valid
        return train(model, corpus.train, valid, preset.train, eval_batch_size=ev.batch_size,
                     eval_seq_len=ev.seq_len, checkpoint_dir=checkpoint_dir, verbose=verbose)
