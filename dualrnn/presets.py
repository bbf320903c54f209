"""Every configuration the papers name, in one place, and the scales an experiment runs at.

The Dual paper gives the sizes of each Table 1 row (recoverable exactly from its parameter
counts) and one complete configuration, the Table 2 Dual mdLSTM (sec. 4.2). It does not list the
tuned hyperparameters of the Table 1 rows, so until the tuner supplies tuned ones every Table 1
row uses the same *chosen* values, taken from the only configuration the paper publishes
(``TABLE2_REGULARIZATION``): one uniform setting, not tuned towards either architecture. ERS
hyperparameters are transferred unchanged to the Dual rows, which add the Dual-only ones (*).
"""

from __future__ import annotations

import dataclasses
import json
import os

from dualrnn.configs import EvalConfig, ModelConfig, TrainConfig

DATASETS = ("ptb", "wikitext-2")
TABLE1_NAMES = ("lstm", "dual_lstm", "dlstm", "dual_dlstm", "mdlstm", "dual_mdlstm")
SCALES = ("smoke", "small", "full")

# Sizes of the Table 1 rows: (embedding, recurrent widths). The counts of Table 1 fix them.
TABLE1_SIZES = {
    "ptb": {"lstm": (600, (600,)), "dlstm": (400, (1150, 400)), "mdlstm": (850, (850, 850))},
    "wikitext-2": {"lstm": (600, (600,)), "dlstm": (600, (1150, 600)),
                   "mdlstm": (850, (850, 850))},
}
MOGRIFIER = dict(mogrifier_rounds=4, mogrifier_rank=100)           # Dual sec. 4.2, Table 1 counts

# Dual sec. 4.2 (Table 2): "input, recurrent, internal, and output dropout rates are all set to
# 0.5, the dual input and output dropout rates are set to 0.5 and 0.4, respectively, and the
# mogrifier dropout rate is set to 0.15. Both the embedding and the dual L2 regularization
# parameters are set to 1e-5 ... All the remaining hyperparameters are set to 0."
TABLE2_REGULARIZATION = dict(input_dropout=0.5, recurrent_dropout=0.5, internal_dropout=0.5,
                             output_dropout=0.5, embedding_l2=1e-5)
TABLE2_DUAL_ONLY = dict(dual_input_dropout=0.5, dual_output_dropout=0.4, dual_l2=1e-5)
TABLE2_MOGRIFIER_DROPOUT = 0.15

# Sec. 3.2: batch 32 (PTB) / 128 (WT2), window 25, 100 epochs (Table 1) or 300 (Table 2), Nadam.
BATCH_SIZE = {"ptb": 32, "wikitext-2": 128}
SEQ_LEN = 25
# Chosen (not given by the paper): Nadam's learning rate, the top of Table 3's range [1e-6, 1e-3]
# and Keras's default; and the dynamic-evaluation defaults (searched by experiments/table2.py).
LEARNING_RATE = 1e-3


@dataclasses.dataclass(frozen=True)
class Preset:
    """A named experiment: the model, how it is trained and evaluated, and what was changed."""

    name: str
    dataset: str
    model: ModelConfig
    train: TrainConfig
    eval: EvalConfig
    scale: str = "full"
    departures: tuple = ()        # human-readable list of departures from the paper's setting

    def replace(self, **changes) -> "Preset":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return {"name": self.name, "dataset": self.dataset, "scale": self.scale,
                "model": self.model.to_dict(), "train": dataclasses.asdict(self.train),
                "eval": dataclasses.asdict(self.eval), "departures": list(self.departures)}

    @classmethod
    def from_dict(cls, d: dict) -> "Preset":
        """The inverse of ``to_dict``; every field is validated (ValueError names the bad one)."""
        if not isinstance(d, dict):
            raise ValueError(f"a preset must be a JSON object, got {type(d).__name__}")
        missing = sorted({"name", "dataset", "model", "train", "eval"} - set(d))
        unknown = sorted(set(d) - {f.name for f in dataclasses.fields(cls)})
        if missing or unknown:
            raise ValueError(f"preset fields missing {missing} / unknown {unknown}; a preset has "
                             f"name, dataset, model, train, eval[, scale, departures]")
        _check("dataset", d["dataset"], DATASETS)
        _check("scale", d.get("scale", "full"), SCALES)
        return cls(name=d["name"], dataset=d["dataset"], model=ModelConfig.from_dict(d["model"]),
                   train=_from_fields(TrainConfig, d["train"]),
                   eval=_from_fields(EvalConfig, d["eval"]), scale=d.get("scale", "full"),
                   departures=tuple(d.get("departures", ())))


def _from_fields(cls, d):
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - names)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} fields {unknown}; allowed: {sorted(names)}")
    d = {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}
    return cls(**d).validate()


def save_preset(preset: Preset, path: str) -> None:
    """Write ``preset`` as JSON (what ``load_preset`` and ``table1.py --preset`` read)."""
    from dualrnn.files import write_atomic

    def write(tmp):
        with open(tmp, "w") as f:
            json.dump(preset.to_dict(), f, indent=2)
            f.write("\n")

    write_atomic(path, write)


def load_preset(path: str) -> Preset:
    """Read a preset written by ``save_preset`` (or ``tuning/export.py --best``)."""
    if not os.path.isfile(path):
        raise ValueError(f"preset file {path!r} does not exist")
    try:
        with open(path) as f:
            d = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"preset file {path!r} is not valid JSON: {e}") from None
    try:
        return Preset.from_dict(d)
    except (TypeError, ValueError) as e:
        raise ValueError(f"preset file {path!r}: {e}") from None


def _check(name, value, allowed):
    if value not in allowed:
        raise ValueError(f"{name}={value!r} is not one of {tuple(allowed)}")


def table1(name: str, dataset: str = "ptb", scale: str = "full") -> Preset:
    """A Table 1 row: ``lstm, dual_lstm, dlstm, dual_dlstm, mdlstm, dual_mdlstm`` on a dataset."""
    _check("name", name, TABLE1_NAMES)
    _check("dataset", dataset, DATASETS)
    _check("scale", scale, SCALES)
    dual = name.startswith("dual_")
    recurrent = name.removeprefix("dual_")
    emb, units = TABLE1_SIZES[dataset][recurrent]
    fields = dict(TABLE2_REGULARIZATION, embedding_units=emb, recurrent_units=units,
                  architecture="dual" if dual else "ers")
    if len(units) == 1:
        fields["internal_dropout"] = 0.0                      # no layer in between
    if recurrent == "mdlstm":
        fields.update(MOGRIFIER, mogrifier_dropout=TABLE2_MOGRIFIER_DROPOUT)
    if dual:
        fields.update(TABLE2_DUAL_ONLY)
    preset = Preset(
        name=name, dataset=dataset, model=ModelConfig(**fields).validate(), departures=(
            "hyperparameters not the paper's (tuned per row, unpublished): Table 2's "
            "regularisation and Nadam lr 1e-3 on every row",),
        train=TrainConfig(epochs=100, batch_size=BATCH_SIZE[dataset], seq_len=SEQ_LEN,
                          learning_rate=LEARNING_RATE).validate(),
        eval=EvalConfig(batch_size=BATCH_SIZE[dataset], seq_len=SEQ_LEN,
                        dyneval_batch_size=BATCH_SIZE[dataset]).validate())
    return at_scale(preset, scale)


def table2(scale: str = "full") -> Preset:
    """The best Dual mdLSTM of sec. 4.2 (PTB): 850 everywhere, 4 rounds, rank 100, 300 epochs."""
    _check("scale", scale, SCALES)
    model = ModelConfig(architecture="dual", embedding_units=850, recurrent_units=(850, 850),
                        dual_units=850, mogrifier_dropout=TABLE2_MOGRIFIER_DROPOUT,
                        **MOGRIFIER, **TABLE2_REGULARIZATION, **TABLE2_DUAL_ONLY).validate()
    preset = Preset(name="dual_mdlstm", dataset="ptb", model=model,
                    train=TrainConfig(epochs=300, batch_size=32, seq_len=SEQ_LEN,
                                      learning_rate=LEARNING_RATE).validate(),
                    eval=EvalConfig(batch_size=32, seq_len=SEQ_LEN).validate())
    return at_scale(preset, scale)


# SCRN paper Table 2: the baselines (d_h, d_s), one SCRN layer on one-hot inputs, untied softmax
# with bias (SCRN eq. 1-3; sec. 3), trained as Table 1's "our implementation": alpha 0.95, batch
# 20, SGD from lr 0.8 halved whenever the validation perplexity does not improve, windows of 35
# with the state carried, gradients clipped at global norm 5, weights uniform in [-0.3, 0.3]
# ([-0.2, 0.2] for (300, 40)). The loss is summed over the window's steps and averaged over the
# batch, as in the authors' TensorFlow code (github.com/zh3nis/scrn), to which the lr 0.8 refers.
# That code's current version has window 70 and init 0.1 (and carries the state after the 5th
# step of a window); the paper's Table 1 is followed here. Not given by the paper: the number of
# epochs, taken from that code (120, no early stop).
SCRN_TABLE2_SIZES = ((40, 10), (90, 10), (100, 40), (300, 40))
SCRN_TABLE2_EPOCHS = 120


def scrn_table2(hidden: int, context: int, scale: str = "full") -> Preset:
    """An SCRN Table 2 baseline ``(d_h, d_s)`` in ``SCRN_TABLE2_SIZES`` on PTB (see above)."""
    _check("(hidden, context)", (hidden, context), SCRN_TABLE2_SIZES)
    _check("scale", scale, SCALES)
    model = ModelConfig(cell="scrn", embedding_units=0, recurrent_units=(hidden,),
                        context_units=(context,), alpha=0.95, tied=False, output_bias=True,
                        init_scale=0.2 if (hidden, context) == (300, 40) else 0.3).validate()
    train = TrainConfig(epochs=SCRN_TABLE2_EPOCHS, batch_size=20, seq_len=35, optimizer="sgd",
                        learning_rate=0.8, lr_decay=0.5, global_clipnorm=5.0,
                        loss="sum_steps").validate()
    preset = Preset(name=f"scrn_{hidden}_{context}", dataset="ptb", model=model, train=train,
                    eval=EvalConfig(batch_size=20, seq_len=35, dyneval_batch_size=20).validate())
    return at_scale(preset, scale)


# SCRN paper sec. 4-6: two stacked SCRN layers over a dense embedding (eq. 6-8), small (d_h 240,
# d_s 40) and medium (750, 120), embedding width = d_h (so V = E^T fits), alpha 0.9, every weight
# and bias uniform in [-0.3, 0.3], SGD on the summed loss, batch 20, windows of 35 carried, global
# clip 5 (Table 3; what the table leaves out is from the authors' code, zh3nis/scrn: batch,
# window, epochs, the fixed schedule's form). Naive dropout (ND): p_i on the embedding, p_o on
# each layer's [s; h], new masks every step, lr halved (x decay) on a validation plateau; epochs 60
# (small) / 80 (medium). Variational dropout (VD): p_i, p_h (on h, recurrent), p_o, one mask per
# window and sequence, lr x decay after every epoch from epoch 10 (small) / 25 (medium); epochs
# 50 / 70 (WT2 medium 65). WT: tied output V = E^T for h, U separate for s (sec. 4.4).
SCRN_STACKED_SIZES = {"small": (240, 40), "medium": (750, 120)}
SCRN_TABLE3 = {   # (regularisation, size) -> p (PTB, WT2), lr, decay, decay after, epochs (PTB, WT2)
    ("nd", "small"): dict(p=(0.2, 0.15), lr=0.8, decay=0.5, after=None, epochs=(60, 60)),
    ("nd", "medium"): dict(p=(0.55, 0.45), lr=0.8, decay=0.65, after=None, epochs=(80, 80)),
    ("vd", "small"): dict(p=(0.15, 0.1), lr=0.8, decay=0.87, after=10, epochs=(50, 50)),
    ("vd", "medium"): dict(p=(0.4, 0.3), lr=0.6, decay=0.9, after=25, epochs=(70, 65)),
}
# Table 4's SCRN rows, this library's LSTM + VD + WT of the same budget (below), and Table 5's
# ablations of SCRN + ND + WT (preset names)
SCRN_TABLE4 = ("scrn_nd", "scrn_nd_wt", "scrn_vd", "scrn_vd_wt", "lstm_vd_wt")
SCRN_TABLE5 = ("scrn_nd_wt", "scrn_nd_wt_no_regularization", "scrn_nd_wt_no_context_dropout",
               "scrn_nd_wt_no_context_softmax")
# Table 4's LSTM + VD + WT rows are other papers' numbers (Inan et al. 2017). "lstm_vd_wt" is the
# controlled comparison: a two-layer LSTM, tied, with an output bias, embedding = hidden = H, the
# widest H whose parameter count does not exceed the SCRN + VD + WT of the same size and corpus
# (tests/test_scrn.py checks both counts), trained exactly as that SCRN (Table 3's VD dropouts
# on the input, h_{t-1}, between layers and the output; its lr, decay and epochs), except the
# initialisation: uniform in [-0.1, 0.1] (small) / [-0.05, 0.05] (medium), the TensorFlow PTB
# tutorial's LSTM values (Zaremba et al. 2014) that the SCRN authors' code builds on, because
# Table 3's 0.3 was tuned for the SCRN (``ModelConfig.init_scale`` switches it).
SCRN_LSTM_UNITS = {("ptb", "small"): 226, ("ptb", "medium"): 587,
                   ("wikitext-2", "small"): 256, ("wikitext-2", "medium"): 709}
SCRN_LSTM_INIT = {"small": 0.1, "medium": 0.05}
# Table 7: the medium SCRN + ND + WT trained at each alpha (sec. 6.3)
SCRN_TABLE7_ALPHAS = (0.85, 0.88, 0.90, 0.95, 0.97, 0.99)


def scrn_stacked(name: str, dataset: str = "ptb", size: str = "small",
                 scale: str = "full") -> Preset:
    """A stacked SCRN of the SCRN paper's Tables 4-5 (``SCRN_TABLE4``/``SCRN_TABLE5`` names:
    ``scrn_{nd,vd}[_wt]`` and the ablations ``scrn_nd_wt_no_regularization`` (no dropout, untied),
    ``_no_context_dropout`` (p_o on h only), ``_no_context_softmax`` (softmax of h alone)), or
    ``lstm_vd_wt``: the LSTM + VD + WT of the same budget, trained as ``scrn_vd_wt`` (see
    ``SCRN_LSTM_UNITS``)."""
    _check("name", name, tuple(dict.fromkeys(SCRN_TABLE4 + SCRN_TABLE5)))
    _check("dataset", dataset, tuple(BATCH_SIZE))
    _check("size", size, tuple(SCRN_STACKED_SIZES))
    _check("scale", scale, SCALES)
    reg = "vd" if name.startswith(("scrn_vd", "lstm_vd")) else "nd"
    t3 = SCRN_TABLE3[(reg, size)]
    hidden, context = SCRN_STACKED_SIZES[size]
    d = 0 if dataset == "ptb" else 1
    p = 0.0 if name.endswith("no_regularization") else t3["p"][d]
    if name == "lstm_vd_wt":
        units = SCRN_LSTM_UNITS[(dataset, size)]
        model = ModelConfig(
            cell="lstm", embedding_units=units, recurrent_units=(units, units), tied=True,
            output_bias=True, init_scale=SCRN_LSTM_INIT[size], input_dropout=p,
            internal_dropout=p, output_dropout=p, recurrent_dropout=p,
            dropout_masks="sequence").validate()
    else:
        model = _scrn_stacked_model(name, hidden, context, p, reg)
    train = TrainConfig(epochs=t3["epochs"][d], batch_size=20, seq_len=35, optimizer="sgd",
                        learning_rate=t3["lr"], lr_decay=t3["decay"], lr_decay_after=t3["after"],
                        global_clipnorm=5.0, loss="sum_steps").validate()
    preset = Preset(name=f"{name}_{size}", dataset=dataset, model=model, train=train,
                    eval=EvalConfig(batch_size=20, seq_len=35, dyneval_batch_size=20).validate())
    return at_scale(preset, scale)


def _scrn_stacked_model(name, hidden, context, p, reg):
    """The two-layer SCRN of ``scrn_stacked`` (SCRN eq. 6-10) with dropout ``p``."""
    return ModelConfig(
        cell="scrn", embedding_units=hidden, recurrent_units=(hidden, hidden),
        context_units=(context, context), alpha=0.9, init_scale=0.3, output_bias=True,
        tied="_wt" in name and not name.endswith("no_regularization"),
        input_dropout=p, internal_dropout=p, output_dropout=p,
        recurrent_dropout=p if reg == "vd" else 0.0,
        dropout_masks="sequence" if reg == "vd" else "step",
        scrn_drop_context=not name.endswith("no_context_dropout"),
        scrn_output="hidden" if name.endswith("no_context_softmax") else "both").validate()


# AWD-LSTM (Merity et al. 2018, sec. 5): three weight-dropped LSTM layers 1150/1150/400 over a
# 400-wide embedding, tied output with a bias (the authors' decoder is an nn.Linear), locked
# dropout on the embedding output (input), between layers and on the last output, embedding
# dropout 0.1, weight dropout 0.5, AR alpha 2, TAR beta 1, PyTorch's initialisation (sec. 5).
# Trained with NT-ASGD (lr 30, n = 5, L = one epoch), variable BPTT N(70, 5) w.p. 0.95 else
# N(35, 5), global gradient norm clipped at 0.25, weight decay 1.2e-6, the loss averaged over
# examples and steps, then fine-tuned (ASGD from the start, the same stopping criterion).
# Two variants: "paper" is sec. 5's text (dropouts (input, between layers, output, embedding) =
# (0.4, 0.3, 0.4, 0.1), WT2 input 0.65; batch 40 PTB / 80 WT2; 750 epochs); "code" is the
# authors' README commands (salesforce/awd-lstm-lm: PTB between layers 0.25, batch 20, 500
# epochs; WT2 between layers 0.2, batch 80, 750 epochs). Evaluation as in the authors' code:
# validation at batch 10, test at batch 1, state carried.
AWD_LSTM_SIZES = dict(embedding_units=400, recurrent_units=(1150, 1150, 400))
AWD_VARIANTS = ("paper", "code")
AWD_LSTM_DROPOUT = {  # (variant, dataset) -> dropouts
    ("paper", "ptb"): dict(input_dropout=0.4, internal_dropout=0.3, output_dropout=0.4,
                           embedding_dropout=0.1, weight_dropout=0.5),
    ("paper", "wikitext-2"): dict(input_dropout=0.65, internal_dropout=0.3, output_dropout=0.4,
                                  embedding_dropout=0.1, weight_dropout=0.5),
    ("code", "ptb"): dict(input_dropout=0.4, internal_dropout=0.25, output_dropout=0.4,
                          embedding_dropout=0.1, weight_dropout=0.5),
    ("code", "wikitext-2"): dict(input_dropout=0.65, internal_dropout=0.2, output_dropout=0.4,
                                 embedding_dropout=0.1, weight_dropout=0.5),
}
AWD_TRAINING = {  # (variant, dataset) -> batch size, epochs
    ("paper", "ptb"): (40, 750), ("paper", "wikitext-2"): (80, 750),
    ("code", "ptb"): (20, 500), ("code", "wikitext-2"): (80, 750),
}
AWD_FINETUNE_EPOCHS = 300          # an upper bound: fine-tuning stops on the non-monotone rule
# Table 4's ablations: what each removes, as changes of (model, train)
AWD_ABLATIONS = ("fine_tuning", "nt_asgd", "variable_bptt", "embedding_dropout",
                 "weight_decay", "ar_tar", "full_sized_embedding", "weight_dropping")


def awd_lstm_model(dataset: str = "ptb", variant: str = "paper") -> ModelConfig:
    """The AWD-LSTM network of AWD-LSTM sec. 5 on ``dataset`` (see ``awd_lstm``)."""
    _check("dataset", dataset, DATASETS)
    _check("variant", variant, AWD_VARIANTS)
    return ModelConfig(cell="weight_drop_lstm", tied=True, output_bias=True,
                       dropout_masks="sequence", activation_regularization=2.0,
                       temporal_activation_regularization=1.0, init_scheme="pytorch",
                       **AWD_LSTM_SIZES, **AWD_LSTM_DROPOUT[(variant, dataset)]).validate()


def awd_lstm(dataset: str = "ptb", variant: str = "paper", scale: str = "full",
             ablation: str | None = None, model: ModelConfig | None = None) -> Preset:
    """AWD-LSTM's training stage (NT-ASGD) on ``dataset``; ``ablation`` one of
    ``AWD_ABLATIONS`` (Table 4: the model without that part; "fine_tuning" only skips the
    second stage, which the experiment script runs); ``model`` replaces the network (AWD-GRU)."""
    _check("dataset", dataset, DATASETS)
    _check("variant", variant, AWD_VARIANTS)
    _check("scale", scale, SCALES)
    if ablation is not None:
        _check("ablation", ablation, AWD_ABLATIONS)
    m = model or awd_lstm_model(dataset, variant)
    batch, epochs = AWD_TRAINING[(variant, dataset)]
    t = TrainConfig(epochs=epochs, batch_size=batch, seq_len=70, optimizer="nt_asgd",
                    learning_rate=30.0, nonmono=5, global_clipnorm=0.25, weight_decay=1.2e-6,
                    variable_bptt=True, seed=141 if dataset == "ptb" else 1882)
    changes = {
        None: ({}, {}), "fine_tuning": ({}, {}),
        # "SGD with learning rate reduced by 2 using the same nonmonotonic fashion"
        "nt_asgd": ({}, dict(optimizer="sgd", lr_decay=0.5, variable_bptt=False)),
        "variable_bptt": ({}, dict(variable_bptt=False)),
        "embedding_dropout": (dict(embedding_dropout=0.0), {}),
        "weight_decay": ({}, dict(weight_decay=0.0)),
        "ar_tar": (dict(activation_regularization=0.0,
                        temporal_activation_regularization=0.0), {}),
        "full_sized_embedding": (dict(embedding_units=1150, recurrent_units=(1150, 1150, 1150)),
                                 {}),
        "weight_dropping": (dict(weight_dropout=0.0), {}),
    }[ablation]
    departures = ()
    if ablation == "nt_asgd":
        departures = ("the SGD ablation decays on the plateau rule (valid ppl not below the best "
                      "so far), not on the non-monotone criterion; fixed windows of 70 (SGD has "
                      "no per-step rate factors here)",)
    preset = Preset(name=f"awd_lstm{'_no_' + ablation if ablation else ''}", dataset=dataset,
                    model=m.replace(**changes[0]), train=t.replace(**changes[1]),
                    eval=EvalConfig(batch_size=10, seq_len=70, dyneval_batch_size=10).validate(),
                    departures=departures)
    return at_scale(preset, scale)


def awd_bounded(preset: Preset, max_epochs: int | None = None,
                bptt_bucket: int | None = None) -> Preset:
    """``preset`` with at most ``max_epochs`` training epochs (fine-tuning follows the same cap,
    see ``awd_finetune``) and variable-BPTT lengths rounded to multiples of ``bptt_bucket`` (fewer
    programs for JAX to compile), each change listed in its departures: a bounded run (a lent GPU
    session measures seconds per epoch this way), not the paper's."""
    train, departures = preset.train, list(preset.departures)
    if max_epochs is not None and max_epochs < train.epochs:
        departures.append(f"training stopped after {max_epochs} of {train.epochs} epochs "
                          f"(--max-epochs; fine-tuning capped alike)")
        train = train.replace(epochs=max_epochs)
    if bptt_bucket not in (None, 1) and train.variable_bptt:
        departures.append(f"variable-BPTT lengths rounded to multiples of {bptt_bucket}")
        train = train.replace(bptt_bucket=bptt_bucket)
    return preset.replace(train=train, departures=tuple(departures))


def awd_finetune(preset: Preset) -> Preset:
    """The fine-tuning stage of an AWD preset: ASGD from the first step, stopping on the
    non-monotone criterion (at most ``AWD_FINETUNE_EPOCHS``, or the preset's own epochs when
    fewer, as at the smoke and small scales)."""
    return preset.replace(name=preset.name + "_finetune", train=preset.train.replace(
        finetune=True, optimizer="nt_asgd", lr_decay=None,
        epochs=min(AWD_FINETUNE_EPOCHS, preset.train.epochs)))


# The AWD-GRU of the AWD-GRU/biLSTM report (sec. 4-5): the AWD-LSTM network with weight-dropped
# GRU layers, 3 (1150/1150/400: 19 M PTB, 28 M WT2 parameters) or 5 (1150 x 4, 400: 35 M PTB).
# Dropouts: the report's sec. 4 lists the AWD-LSTM code's PTB ones (input 0.4, layers 0.25,
# output 0.4, embedding 0.1), but its authors' logs (soyoung97/awd-lstm-gru, logs/wiki-gru.log)
# show the WikiText-2 runs used that code's WikiText-2 command (input 0.65, layers 0.2), as its
# AWD-LSTM did: so each corpus takes the code variant's dropouts (``AWD_LSTM_DROPOUT``), as the
# AWD-LSTM row does. (The 5-layer PTB pretraining log has input dropout 0.3, the text and that
# model's fine-tuning log 0.4: 0.4 here; ``.replace(input_dropout=0.3)`` gives the log's.)
AWD_GRU_UNITS = {3: (1150, 1150, 400), 5: (1150, 1150, 1150, 1150, 400)}


def awd_gru_model(dataset: str = "ptb", layers: int = 3) -> ModelConfig:
    """The AWD-GRU network (``layers`` 3 or 5) of the AWD-GRU/biLSTM report on ``dataset``: the
    AWD-LSTM code variant's network and dropouts for ``dataset`` with weight-dropped GRU layers."""
    _check("dataset", dataset, DATASETS)
    _check("layers", layers, tuple(AWD_GRU_UNITS))
    return awd_lstm_model(dataset, "code").replace(cell="weight_drop_gru",
                                                   recurrent_units=AWD_GRU_UNITS[layers])


# What each scale changes. "full" is the paper's setting unchanged (for a GPU).
SMOKE = dict(train_tokens=20_000, eval_tokens=4_000, epochs=1, batch_size=8, width=32,
             mogrifier_rank=8)
SMALL_EPOCHS = {"ptb": 4, "wikitext-2": 1}


def at_scale(preset: Preset, scale: str) -> Preset:
    """``preset`` at ``smoke`` (tiny widths, truncated corpora, 1 epoch; minutes on 2 CPU cores),
    ``small`` (real corpora and the paper's widths and regularisation, few epochs, for CPU) or
    ``full`` (unchanged). Every change is listed in ``Preset.departures``."""
    _check("scale", scale, SCALES)
    if scale == "full":
        return preset.replace(scale="full")
    if scale == "small":
        epochs = min(preset.train.epochs, SMALL_EPOCHS[preset.dataset])
        return preset.replace(
            scale="small", train=preset.train.replace(epochs=epochs),
            departures=preset.departures + (f"epochs {preset.train.epochs} -> {epochs}",))
    s = SMOKE
    m = preset.model
    base = m.embedding_units or m.recurrent_units[-1]      # 0: an SCRN without embedding
    ratio = [u / base for u in m.recurrent_units]
    units = tuple(max(8, round(s["width"] * r)) for r in ratio[:-1]) + (s["width"],)
    model = m.replace(embedding_units=s["width"] if m.embedding_units else 0,
                      recurrent_units=units,
                      context_units=tuple(max(4, round(s["width"] * c / base))
                                          for c in m.context_units),
                      dual_units=s["width"] if m.dual_units is not None else None,
                      mogrifier_rank=min(m.mogrifier_rank, s["mogrifier_rank"]))
    train = preset.train.replace(epochs=s["epochs"], batch_size=s["batch_size"],
                                 max_tokens=s["train_tokens"])
    ev = preset.eval.replace(batch_size=s["batch_size"], dyneval_batch_size=s["batch_size"],
                             max_tokens=s["eval_tokens"])
    return preset.replace(scale="smoke", model=model, train=train, eval=ev, departures=(
        *preset.departures,
        f"widths {m.embedding_units}/{list(m.recurrent_units)} -> {s['width']}/{list(units)}",
        f"train split truncated to {s['train_tokens']} tokens, valid/test to {s['eval_tokens']}",
        f"epochs {preset.train.epochs} -> {s['epochs']}",
        f"batch {preset.train.batch_size} -> {s['batch_size']}"))


# Dynamic evaluation, searched on validation data (Dual sec. 4.2 and Table 4: lr in [1e-6, 1e-3],
# window in [5, 50], clip norm in [0, 1], once with Nadam's default beta_1 and once with 0). The
# paper does not state the batch size of its dynamic evaluation: it is searched too, at the
# training batch ("train") and at Krause et al.'s batch 1, each with its own learning rates (batch
# 1 takes ~30x more updates). Each (batch, beta_1) group is a coordinate search
# (``dyneval.search``): every lr at the first window and clip norm, then the windows, then the
# clip norms. Krause's RMS rule is a further group at batch 1 over ``rms_lrs``, with gradient
# statistics from ``rms_train_tokens`` training tokens (None: all). ``smoke``/``small``/``quick``
# are reduced grids (listed in the result's departures): ``smoke``/``small`` for a CPU, ``quick``
# for the last minute of a GPU call; ``full`` spans the paper's ranges.
DYNEVAL_SEARCH = {
    "smoke": dict(lrs={"train": (1e-3,), 1: (1e-4,)}, seq_lens={"train": (20,), 1: (5,)},
                  clipnorms=(0.5,), beta_1s=(0.9, 0.0), rms_lrs=(1e-4,), rms_seq_lens=(5,),
                  rms_train_tokens=10_000),
    "small": dict(lrs={"train": (1e-4, 3e-4, 1e-3), 1: (3e-6, 1e-5, 3e-5)},
                  seq_lens={"train": (25,), 1: (5,)}, clipnorms=(0.5,), beta_1s=(0.9, 0.0),
                  rms_lrs=(), rms_seq_lens=(5,), rms_train_tokens=None),
    # "small" without its batch-1 passes: for a GPU call whose minutes go to training
    "quick": dict(lrs={"train": (1e-4, 3e-4, 1e-3)}, seq_lens={"train": (25,)},
                  clipnorms=(0.5,), beta_1s=(0.9, 0.0), rms_lrs=(), rms_seq_lens=(5,),
                  rms_train_tokens=None),
    "full": dict(lrs={"train": (1e-5, 3e-5, 1e-4, 3e-4, 1e-3), 1: (1e-6, 3e-6, 1e-5, 3e-5, 1e-4)},
                 seq_lens={"train": (25, 5, 10, 50), 1: (5, 10, 25, 50)},
                 clipnorms=(0.5, 0.0, 0.1, 0.25, 1.0), beta_1s=(0.9, 0.0),
                 rms_lrs=(1e-5, 2e-5, 5e-5, 1e-4), rms_seq_lens=(5,), rms_train_tokens=None),
}

# Dual sec. 4.2's static search for Table 2, per scale: the evaluation window (under the
# "windows" protocol, where it matters) and then the temperature, on validation data.
TABLE2_SEARCH = {
    "smoke": dict(seq_lens=(10, 25), temperatures=(0.9, 1.1)),
    "small": dict(seq_lens=(10, 25, 50, 70), temperatures=(0.9, 0.95, 1.05, 1.1, 1.2)),
    "full": dict(seq_lens=(5, 10, 15, 20, 25, 35, 50, 70),
                 temperatures=(0.9, 0.95, 1.05, 1.1, 1.15, 1.2, 1.3)),
}


# Dual appendix Tables 3 and 4: the search ranges. "*" marks the Dual-only ones. Integers and
# choices are sets of allowed values, (low, high) pairs are closed intervals. Read by tuning/.
APPENDIX_GRID = {
    "epochs": (100, 300),                      # Num epochs
    "learning_rate": (1e-6, 1e-3),             # Learning rate (searched log-uniformly)
    "batch_size": (32, 128),                   # Batch size
    "seq_len": (10, 25, 50),                   # Seq len
    "embedding_units": (400, 850),             # Embedding units
    "recurrent_units": (400, 850, 1150),       # Recurrent units
    "layers": (1, 2, 3),                       # LSTM layers
    "dual_units": (400, 850),                  # Dual units*
    "l2": (0.0, 1e-6, 1e-5),                   # every "... L2reg" of Tables 3-4
    "dropout": (0.0, 0.5),                     # every "... Drop." but the mogrifier's: [0, 0.5]
    "mogrifier_dropout": (0.0, 0.2),           # Mogrifier Drop.: [0, 0.2]
    "mogrifier_rounds": (0, 2, 3, 4, 5, 6),    # Mogrifier deep
    "mogrifier_rank": (0, 50, 100, 200),       # Mogrifier rank (0 = full)
    "dyneval_lr": (1e-6, 1e-3),                # Learning rate eval
    "dyneval_seq_len": (5, 50),                # Seq len eval
    "dyneval_clipnorm": (0.0, 1.0),            # Clipnorm eval
}
DUAL_ONLY = ("dual_units", "dual_l2", "dual_input_dropout", "dual_output_dropout")
