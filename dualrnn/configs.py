"""Plain dataclasses for a model, its training and its evaluation. Presets live in presets.py."""

from __future__ import annotations

import dataclasses

ARCHITECTURES = ("ers", "dual")
DUAL_EMBEDDING = ("raw", "dropped")
DUAL_INPUT_DROPOUT_ON = ("concat", "embedding")
SCRN_OUTPUTS = ("both", "hidden")
DROPOUT_MASKS = ("step", "sequence", "batch")

# Field names of the appendix's regularisers (Dual Tables 3-4) in ModelConfig.
L2_FIELDS = ("embedding_l2", "recurrent_input_l2", "recurrent_l2", "activation_l2", "dual_l2",
             "mogrifier_l2")
DROPOUT_FIELDS = ("input_dropout", "recurrent_dropout", "internal_dropout", "output_dropout",
                  "dual_input_dropout", "dual_output_dropout", "mogrifier_dropout",
                  "weight_dropout", "embedding_dropout")
WEIGHT_DROP_CELLS = ("weight_drop_lstm", "weight_drop_gru")
# The cells ``dualrnn.layers.registry`` registers itself (a test keeps the two equal). Validating
# a config against these needs no Keras, so a script's bad input fails before TensorFlow loads.
BUILTIN_CELLS = ("lstm", "mogrifier", "scrn") + WEIGHT_DROP_CELLS
INIT_SCHEMES = ("keras", "pytorch")
# AWD-LSTM sec. 4.6: activation regularisation (AR, alpha) and temporal AR (TAR, beta).
ACTIVATION_FIELDS = ("activation_regularization", "temporal_activation_regularization")


def _fail(name, value, allowed):
    raise ValueError(f"{name}={value!r} is not allowed: {allowed}")


def _check_int(name, value, minimum=1):
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        _fail(name, value, f"an integer >= {minimum}")


def _check_bool(name, value):
    if not isinstance(value, bool):
        _fail(name, value, "True or False")


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """One network: embedding -> recurrent layers -> [dual layer] -> softmax (tied by default).

    ``recurrent_units`` has one width per recurrent layer (LSTM: one; dLSTM/mdLSTM: two, eq. 15-18
    and 22-23). ``cell`` names the recurrent cell in ``dualrnn.layers.registry`` (``lstm``,
    ``mogrifier``, ``scrn``); ``None`` (default, and what configs from before 0.3.0 hold) is the
    earlier rule: ``mogrifier`` when ``mogrifier_rounds > 0`` (Mogrifier LSTM, eq. 19-21), else
    ``lstm``; ``cell_name`` is the resolved name. Names of the regularisers and dropouts follow
    the Dual paper's appendix Tables 3-4.

    SCRN (``cell="scrn"``): ``recurrent_units`` are the hidden widths d_h, ``context_units`` the
    context widths d_s (one per layer), ``alpha`` (fixed, or the initial value of a learned one
    with ``learn_alpha``); every layer but the last outputs ``[s; h]`` (SCRN eq. 7), the last
    ``[s; h]`` (``scrn_output="both"``, eq. 8) or ``h`` (``"hidden"``, Table 5's ablation).
    ``embedding_units=0`` (SCRN, untied only) is the baseline of SCRN sec. 3: no embedding, the
    first layer's ``x_t A`` and ``x_t B`` are lookups of the token ids in |V|-row tables.

    Output: ``tied=True`` (default) reuses the embedding as the output matrix (an SCRN's context
    part ``s`` of ``[s; h]`` then has its own matrix ``U``: SCRN sec. 4.4, ``V = E^T``);
    ``tied=False`` has a separate output matrix; ``output_bias`` adds a bias to the logits.
    ``init_scale = r > 0`` initialises every weight uniformly in [-r, r] (SCRN Table 1); 0 keeps
    Keras's initialisers.

    Dropout masks of ``input_dropout``, ``internal_dropout`` and ``output_dropout``:
    ``dropout_masks="step"`` draws a new mask at every time step (naive dropout, Zaremba et al.;
    SCRN sec. 4.2; Keras's ``Dropout``, which the Dual paper used), ``"sequence"`` one mask per
    window (variational dropout, Gal & Ghahramani; SCRN eq. 9; with ``recurrent_dropout`` on
    ``h``, never on the context ``s``), ``"batch"`` one mask per window shared by every sequence
    of the batch (what the SCRN authors' VD code draws: masks of shape ``[1, d]``). ``scrn_drop_context=False`` drops only the ``h`` part of
    each SCRN ``[s; h]`` (SCRN Table 5, "- dropout of context"). ``sobolev = beta > 0`` adds SCRN
    eq. (10), ``beta * sum_t ||dh_t/dh_{t-1}||_F^2`` (in its closed form, sec. 7) for every SCRN
    layer to the training loss, summed over the window and averaged over the batch.

    AWD-LSTM (Merity et al. 2018): ``cell="weight_drop_lstm"`` (AWD-GRU: ``"weight_drop_gru"``)
    with ``weight_dropout = p``
    (DropConnect on each layer's recurrent matrix, one mask per call, sec. 2); with
    ``dropout_masks="sequence"`` the input, between-layer and output dropouts are its locked
    dropout (sec. 4.2); ``embedding_dropout`` drops whole words of the embedding (sec. 4.2);
    ``activation_regularization = alpha`` adds ``alpha * mean(m * h_T^2)`` on the last layer's
    *dropped* output and ``temporal_activation_regularization = beta`` adds ``beta *
    mean((h_t - h_{t-1})^2)`` on its undropped output (sec. 4.6; means over batch, window and
    units, as in the authors' code, whatever ``TrainConfig.loss`` is). ``bidirectional=True`` is
    refused: a bidirectional network reads the word it must predict (see ``dualrnn.checks``).
    ``init_scheme="pytorch"`` (LSTM and GRU cells) initialises as the AWD-LSTM paper (sec. 5)
    and PyTorch do: the embedding U(-0.1, 0.1), every recurrent layer's weights and bias
    U(-1/sqrt(H), 1/sqrt(H)) with H its width, the output bias 0 ("keras": Keras's defaults).
    """

    architecture: str = "ers"                 # "ers" (eq. 1-3) or "dual" (eq. 4-7)
    embedding_units: int = 600                # "Embedding units"
    recurrent_units: tuple = (600,)           # "Recurrent units" x "LSTM layers"
    dual_units: int | None = None             # "Dual units*"; None = embedding_units (tying)
    mogrifier_rounds: int = 0                 # "Mogrifier deep"
    mogrifier_rank: int = 0                   # "Mogrifier rank" (0 = full rank)
    mogrifier_zigzag: bool = True             # False = Mogrifier paper's no-zigzag ablation
    embedding_l2: float = 0.0                 # "Embedding L2reg" (embedding = output matrix)
    recurrent_input_l2: float = 0.0           # "Rec. input L2reg" (LSTM kernel)
    recurrent_l2: float = 0.0                 # "Rec. L2reg" (LSTM recurrent_kernel)
    activation_l2: float = 0.0                # "Activation L2reg" (each recurrent layer's output)
    dual_l2: float = 0.0                      # "Dual L2reg*"
    mogrifier_l2: float = 0.0                 # "Mogrifier L2reg"
    input_dropout: float = 0.0                # "Rec. input Drop." (before the first layer)
    recurrent_dropout: float = 0.0            # "Rec. Drop." (on h_{t-1}, Keras recurrent_dropout)
    internal_dropout: float = 0.0             # "Rec. internal Drop." (between layers)
    output_dropout: float = 0.0               # "Rec. output Drop." (after the last layer)
    dual_input_dropout: float = 0.0           # "Dual input Drop.*"
    dual_output_dropout: float = 0.0          # "Dual output Drop.*"
    mogrifier_dropout: float = 0.0            # "Mogrifier Drop."
    dual_embedding: str = "raw"               # e_t fed to the dual layer: "raw" or "dropped"
    dual_input_dropout_on: str = "concat"     # what "Dual input Drop." drops: [e, h] or e only
    cell: str | None = None                   # registry name; None: mogrifier if rounds else lstm
    context_units: tuple = ()                 # SCRN d_s, one per layer
    alpha: float = 0.95                       # SCRN eq. (1)
    learn_alpha: bool = False
    scrn_output: str = "both"                 # last SCRN layer: [s; h] or h only
    tied: bool = True                         # output matrix = embedding^T
    output_bias: bool = False
    init_scale: float = 0.0                   # > 0: every weight uniform in [-r, r]
    dropout_masks: str = "step"               # input/internal/output dropout: step/sequence/batch
    scrn_drop_context: bool = True            # SCRN: those dropouts also drop s of [s; h]
    sobolev: float = 0.0                      # SCRN eq. (10): beta of the Jacobian penalty
    weight_dropout: float = 0.0               # AWD: DropConnect on U (cell="weight_drop_lstm")
    embedding_dropout: float = 0.0            # AWD sec. 4.2: whole embedding rows dropped
    activation_regularization: float = 0.0    # AWD sec. 4.6: AR alpha (last layer, dropped)
    temporal_activation_regularization: float = 0.0  # AWD sec. 4.6: TAR beta (undropped)
    bidirectional: bool = False               # always refused: a leak for next-word prediction
    init_scheme: str = "keras"                # "pytorch": AWD-LSTM sec. 5's initialisation

    def __post_init__(self):
        object.__setattr__(self, "recurrent_units", tuple(self.recurrent_units))
        object.__setattr__(self, "context_units", tuple(self.context_units))

    @property
    def cell_name(self) -> str:
        """The registry name of the cell (``cell``, or the pre-0.3.0 rule when it is None)."""
        if self.cell is not None:
            return self.cell
        return "mogrifier" if self.mogrifier_rounds else "lstm"

    @property
    def num_layers(self) -> int:
        return len(self.recurrent_units)

    @property
    def recurrent(self) -> str:
        """The paper's name of the recurrent module: lstm, dlstm, mdlstm, scrn, dscrn (or deeper
        variants)."""
        depth = {1: "", 2: "d"}.get(self.num_layers, f"{self.num_layers}x")
        if self.cell_name == "scrn":
            return f"{depth}scrn"
        prefix = {"mogrifier": "m", "weight_drop_lstm": "wd", "weight_drop_gru": "wd"}.get(
            self.cell_name, "")
        base = "gru" if self.cell_name == "weight_drop_gru" else "lstm"
        return f"{prefix}{depth}{base}" if prefix or depth else base

    @property
    def context_output_units(self) -> int:
        """Width of the SCRN context part ``s`` of the last recurrent output (0: none)."""
        if self.cell_name == "scrn" and self.scrn_output == "both" and self.context_units:
            return self.context_units[-1]
        return 0

    @property
    def output_units(self) -> int:
        """Width of the representation fed to the softmax."""
        if self.architecture == "dual":
            return self.dual_units if self.dual_units is not None else self.embedding_units
        return self.recurrent_units[-1] + self.context_output_units

    @property
    def tied_units(self) -> int:
        """Width of the part of the softmax input that a tied output multiplies by ``E^T``."""
        if self.architecture == "dual":
            return self.output_units
        return self.recurrent_units[-1]

    def validate(self) -> "ModelConfig":
        if self.architecture not in ARCHITECTURES:
            _fail("architecture", self.architecture, f"one of {ARCHITECTURES}")
        _check_int("embedding_units", self.embedding_units, 0)
        if not self.recurrent_units:
            _fail("recurrent_units", self.recurrent_units, "at least one layer width")
        for u in self.recurrent_units:
            _check_int("recurrent_units", u)
        if self.dual_units is not None:
            _check_int("dual_units", self.dual_units)
        _check_int("mogrifier_rounds", self.mogrifier_rounds, 0)
        _check_int("mogrifier_rank", self.mogrifier_rank, 0)
        inputs = (self.embedding_units,) + self.recurrent_units[:-1]
        if self.mogrifier_rounds:
            for m, n in zip(inputs, self.recurrent_units):
                if self.mogrifier_rank > min(m, n):
                    _fail("mogrifier_rank", self.mogrifier_rank,
                          f"at most min(input, units) = {min(m, n)} of every layer (0 = full rank)")
        for f in L2_FIELDS:
            v = getattr(self, f)
            if not isinstance(v, (int, float)) or not v >= 0:
                _fail(f, v, "a non-negative number")
        for f in DROPOUT_FIELDS:
            v = getattr(self, f)
            if not isinstance(v, (int, float)) or not 0 <= v < 1:
                _fail(f, v, "a rate in [0, 1)")
        if self.dual_embedding not in DUAL_EMBEDDING:
            _fail("dual_embedding", self.dual_embedding, f"one of {DUAL_EMBEDDING}")
        if self.dual_input_dropout_on not in DUAL_INPUT_DROPOUT_ON:
            _fail("dual_input_dropout_on", self.dual_input_dropout_on,
                  f"one of {DUAL_INPUT_DROPOUT_ON}")
        self._validate_cell()
        for f in ACTIVATION_FIELDS:
            v = getattr(self, f)
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not v >= 0:
                _fail(f, v, "a non-negative number (0: off)")
        if self.embedding_dropout and not self.embedding_units:
            _fail("embedding_dropout", self.embedding_dropout,
                  "0 without an embedding (embedding_units=0)")
        if self.init_scheme not in INIT_SCHEMES:
            _fail("init_scheme", self.init_scheme, f"one of {INIT_SCHEMES}")
        if self.init_scheme == "pytorch" and (self.cell_name not in ("lstm",) + WEIGHT_DROP_CELLS
                                              or self.init_scale or self.architecture != "ers"):
            _fail("init_scheme", self.init_scheme, "'keras' except for ERS LSTM/GRU models "
                  "without init_scale")
        if self.bidirectional is not False:
            _fail("bidirectional", self.bidirectional,
                  "False: a bidirectional network reads the word it must predict (its backward "
                  "half has seen it), so its next-word perplexity is a leak, not a result "
                  "(the biLSTM of the AWD-GRU/biLSTM report; dualrnn.checks.assert_causal)")
        _check_bool("tied", self.tied)
        _check_bool("output_bias", self.output_bias)
        if not isinstance(self.init_scale, (int, float)) or not self.init_scale >= 0:
            _fail("init_scale", self.init_scale, "a non-negative number (0: Keras's initialisers)")
        if self.embedding_units == 0 and (self.cell_name != "scrn" or self.tied
                                          or self.architecture != "ers"):
            _fail("embedding_units", 0, "at least 1, except for an untied ERS SCRN "
                  "(cell='scrn', tied=False: the one-hot baseline of SCRN sec. 3)")
        if self.tied and self.tied_units != self.embedding_units:
            what = "dual_units" if self.architecture == "dual" else "the last recurrent_units"
            _fail(what, self.tied_units,
                  f"equal to embedding_units={self.embedding_units} (weight tying, Dual sec. 3.2; "
                  f"tied=False unties the output)")
        return self

    def _validate_cell(self):
        if self.cell is not None and self.cell not in BUILTIN_CELLS:
            from dualrnn.layers import registry      # a user's cell: registered, so Keras is loaded

            if self.cell not in registry.cell_names():
                _fail("cell", self.cell,
                      f"None or one of the registered cells {registry.cell_names()}")
        name = self.cell_name
        if name != "mogrifier" and self.mogrifier_rounds:
            _fail("mogrifier_rounds", self.mogrifier_rounds, f"0 with cell={name!r}")
        if name not in WEIGHT_DROP_CELLS and self.weight_dropout:
            _fail("weight_dropout", self.weight_dropout, f"0 with cell={name!r} (weight dropout "
                  f"needs cell='weight_drop_lstm' or 'weight_drop_gru')")
        if self.dropout_masks not in DROPOUT_MASKS:
            _fail("dropout_masks", self.dropout_masks, f"one of {DROPOUT_MASKS}")
        _check_bool("scrn_drop_context", self.scrn_drop_context)
        if (not isinstance(self.sobolev, (int, float)) or isinstance(self.sobolev, bool)
                or not self.sobolev >= 0):
            _fail("sobolev", self.sobolev, "a non-negative number (0: off)")
        if self.sobolev and name != "scrn":
            _fail("sobolev", self.sobolev, f"0 with cell={name!r} (SCRN only)")
        if name == "scrn":
            if len(self.context_units) != self.num_layers:
                _fail("context_units", self.context_units,
                      f"one width per recurrent layer ({self.num_layers}) for cell='scrn'")
            for u in self.context_units:
                _check_int("context_units", u)
            if (not isinstance(self.alpha, (int, float)) or isinstance(self.alpha, bool)
                    or not 0 <= self.alpha <= 1):
                _fail("alpha", self.alpha, "a number in [0, 1]")
            if self.learn_alpha and not 0 < self.alpha < 1:
                _fail("alpha", self.alpha, "a number in (0, 1) with learn_alpha=True")
            if self.scrn_output not in SCRN_OUTPUTS:
                _fail("scrn_output", self.scrn_output, f"one of {SCRN_OUTPUTS}")
        elif self.context_units:
            _fail("context_units", self.context_units, f"() with cell={name!r} (SCRN only)")

    def replace(self, **changes) -> "ModelConfig":
        return dataclasses.replace(self, **changes).validate()

    def without_regularization(self) -> "ModelConfig":
        """The same network with every L2 and dropout off (for evaluation and dynamic evaluation)."""
        return self.replace(sobolev=0.0,
                            **{f: 0.0 for f in L2_FIELDS + DROPOUT_FIELDS + ACTIVATION_FIELDS})

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["recurrent_units"] = list(self.recurrent_units)
        d["context_units"] = list(self.context_units)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        d = dict(d)
        # Before 0.3.0 a ModelConfig held a softmax temperature too; the one temperature is now
        # EvalConfig.temperature (evaluation time). Old files holding the neutral 1.0 still load.
        if "temperature" in d:
            if d["temperature"] != 1.0:
                _fail("temperature", d["temperature"], "absent from a ModelConfig (the softmax "
                      "temperature is EvalConfig.temperature, applied at evaluation time)")
            del d["temperature"]
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown ModelConfig fields {unknown}; allowed: {sorted(names)}")
        return cls(**d).validate()


OPTIMIZERS = ("paper_nadam", "nadam", "sgd", "nt_asgd")
LOSSES = ("mean", "sum_steps")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Training (Dual sec. 3.2): Nadam over ``batch_size`` streams, windows of ``seq_len``.

    ``optimizer``: ``"paper_nadam"`` (``dualrnn.optimizers.PaperNadam``: the tf.keras 2 Nadam the
    paper used) or ``"nadam"`` (Keras 3's). ``carry_state``: carry the recurrent state from one
    window to the next (truncated BPTT over contiguous streams) or start every window from the
    zero state (what a plain, non-stateful Keras ``fit`` over windows does).
    ``shuffle_windows`` (with ``carry_state=False``): each epoch trains its windows in a random
    order drawn from ``(seed, epoch)``, as ``fit(shuffle=True)`` over windows would (the paper
    says neither; default False: corpus order). ``seed`` seeds every
    dropout mask drawn in training (the initial weights are seeded by ``build_model(seed=...)``).

    ``optimizer="sgd"``: plain stochastic gradient descent (the SCRN paper's). ``lr_decay``: the
    plateau schedule: after every epoch whose validation perplexity is not below the best so far,
    the learning rate is multiplied by ``lr_decay`` (SCRN Table 1: 0.5; None: constant).
    ``stop_after_decays = k``: training stops after the epoch of the k-th decay (None: it runs all
    ``epochs``; either way it stops at ``epochs``). ``lr_decay_after = N`` replaces the plateau
    rule by a fixed one: epochs 1..N train at ``learning_rate``, epoch e > N at ``learning_rate *
    lr_decay ** (e - N)`` (Zaremba et al.; the SCRN paper's Table 3 for variational dropout,
    "after 10 / 25 epochs"). Gradients are clipped per variable
    (``clipnorm``) or by their global norm (``global_clipnorm``, SCRN: 5), not both. ``loss``:
    ``"mean"`` (the mean NLL over the window's tokens) or ``"sum_steps"`` (summed over the
    window's steps, averaged over the batch: ``seq_len`` times the mean, what the SCRN authors'
    TensorFlow code and the TensorFlow PTB tutorial minimise and what their learning rate refers
    to).

    ``optimizer="nt_asgd"``: non-monotonically triggered averaged SGD (AWD-LSTM sec. 3,
    Algorithm 1; ``optimizers.AveragedSGD``): SGD until, after an epoch, the validation
    perplexity is worse than the best of all epochs but the last ``nonmono`` (n = 5), then SGD
    with averaged iterates; from then on validation, the best weights, checkpoints' best and the
    final model are the averaged weights. ``finetune=True`` is the authors' fine-tuning stage:
    averaging from the first step, and training stops after the first epoch at which the same
    rule fires (with ``train(..., init_from=...)``). ``weight_decay`` (AWD-LSTM: 1.2e-6).
    ``variable_bptt`` (with ``nt_asgd``): AWD-LSTM sec. 4.1's window lengths around ``seq_len``
    (``data.variable_windows``, drawn per epoch from ``seed`` and the epoch, so a resumed run
    draws the same), each window's learning rate scaled by its drawn length / ``seq_len``;
    ``bptt_bucket = k`` rounds the lengths to multiples of k (fewer programs to compile; 1: the
    paper's distribution).
    """

    epochs: int = 100
    batch_size: int = 32
    seq_len: int = 25
    learning_rate: float = 1e-3
    beta_1: float = 0.9
    clipnorm: float | None = None     # per-variable gradient-norm clipping (Keras's clipnorm)
    max_tokens: int | None = None     # truncate the training split (smoke scale)
    seed: int = 0
    optimizer: str = "paper_nadam"
    carry_state: bool = True
    global_clipnorm: float | None = None  # gradient clipping by the global norm (SCRN: 5)
    lr_decay: float | None = None     # plateau schedule: lr *= lr_decay when valid ppl stalls
    stop_after_decays: int | None = None
    loss: str = "mean"                # "mean" or "sum_steps" (see above)
    lr_decay_after: int | None = None  # None: plateau rule; N: lr *= lr_decay after each epoch >= N
    nonmono: int = 5                  # NT-ASGD's non-monotone interval n (AWD-LSTM Algorithm 1)
    finetune: bool = False            # NT-ASGD: average from the first step, stop on the trigger
    weight_decay: float = 0.0         # AWD-LSTM: 1.2e-6 (Keras's weight_decay; see make_optimizer)
    variable_bptt: bool = False       # AWD-LSTM sec. 4.1: windows of random length around seq_len
    bptt_bucket: int = 1              # variable BPTT: lengths rounded to a multiple (1: exact)
    shuffle_windows: bool = False     # with carry_state=False: each epoch's windows in random order

    def validate(self) -> "TrainConfig":
        _check_int("epochs", self.epochs)
        _check_int("batch_size", self.batch_size)
        _check_int("seq_len", self.seq_len)
        _check_int("seed", self.seed, 0)
        if not isinstance(self.learning_rate, (int, float)) or not self.learning_rate > 0:
            _fail("learning_rate", self.learning_rate, "a positive number")
        if not 0 <= self.beta_1 < 1:
            _fail("beta_1", self.beta_1, "a number in [0, 1)")
        if self.clipnorm is not None and not self.clipnorm > 0:
            _fail("clipnorm", self.clipnorm, "None or a positive number")
        if self.max_tokens is not None:
            _check_int("max_tokens", self.max_tokens, 2)
        if self.optimizer not in OPTIMIZERS:
            _fail("optimizer", self.optimizer, f"one of {OPTIMIZERS}")
        _check_bool("carry_state", self.carry_state)
        _check_bool("shuffle_windows", self.shuffle_windows)
        if self.shuffle_windows and self.carry_state:
            _fail("shuffle_windows", self.shuffle_windows, "False with carry_state=True (a state "
                  "carried from window to window needs them in corpus order)")
        if self.shuffle_windows and self.variable_bptt:
            _fail("shuffle_windows", self.shuffle_windows, "False with variable_bptt=True "
                  "(AWD-LSTM's windows are drawn in corpus order)")
        if self.global_clipnorm is not None and not (
                isinstance(self.global_clipnorm, (int, float)) and self.global_clipnorm > 0):
            _fail("global_clipnorm", self.global_clipnorm, "None or a positive number")
        if self.clipnorm is not None and self.global_clipnorm is not None:
            _fail("global_clipnorm", self.global_clipnorm,
                  f"None when clipnorm={self.clipnorm!r} is set (one kind of clipping)")
        if self.lr_decay is not None and not (
                isinstance(self.lr_decay, (int, float)) and 0 < self.lr_decay < 1):
            _fail("lr_decay", self.lr_decay, "None or a factor in (0, 1)")
        if self.stop_after_decays is not None:
            _check_int("stop_after_decays", self.stop_after_decays)
            if self.lr_decay is None:
                _fail("stop_after_decays", self.stop_after_decays, "None without lr_decay")
        if self.lr_decay_after is not None:
            _check_int("lr_decay_after", self.lr_decay_after)
            if self.lr_decay is None:
                _fail("lr_decay_after", self.lr_decay_after, "None without lr_decay")
        if self.loss not in LOSSES:
            _fail("loss", self.loss, f"one of {LOSSES}")
        _check_int("nonmono", self.nonmono)
        _check_bool("finetune", self.finetune)
        if self.finetune and self.optimizer != "nt_asgd":
            _fail("finetune", self.finetune, f"False with optimizer={self.optimizer!r} (fine-tuning "
                  f"is NT-ASGD's: optimizer='nt_asgd')")
        _check_bool("variable_bptt", self.variable_bptt)
        if self.variable_bptt and self.optimizer != "nt_asgd":
            _fail("variable_bptt", self.variable_bptt, f"False with optimizer={self.optimizer!r} "
                  f"(variable BPTT scales NT-ASGD's per-step rate: optimizer='nt_asgd')")
        _check_int("bptt_bucket", self.bptt_bucket)
        if (not isinstance(self.weight_decay, (int, float)) or isinstance(self.weight_decay, bool)
                or not self.weight_decay >= 0):
            _fail("weight_decay", self.weight_decay, "a non-negative number (0: none)")
        return self

    def replace(self, **changes) -> "TrainConfig":
        return dataclasses.replace(self, **changes).validate()


@dataclasses.dataclass(frozen=True)
class EvalConfig:
    """Evaluation (Dual sec. 4.2) and dynamic evaluation (Krause et al. 2018)."""

    batch_size: int = 32
    seq_len: int = 25
    temperature: float = 1.0
    seq_len_range: tuple = (5, 70)             # searched on validation data (Dual sec. 4.2)
    temperature_range: tuple = (0.9, 1.3)
    max_tokens: int | None = None              # truncate valid/test (smoke scale)
    dyneval_lr: float = 1e-4                   # "Learning rate eval", [1e-6, 1e-3]
    dyneval_seq_len: int = 25                  # "Seq len eval", [5, 50]
    dyneval_clipnorm: float = 0.5              # "Clipnorm eval", [0, 1]; 0 = no clipping
    dyneval_beta_1: float = 0.9                # Nadam beta_1; the paper also tries 0 (sec. 4.2)
    dyneval_batch_size: int = 32

    def validate(self) -> "EvalConfig":
        for f in ("batch_size", "seq_len", "dyneval_seq_len", "dyneval_batch_size"):
            _check_int(f, getattr(self, f))
        if not self.temperature > 0:
            _fail("temperature", self.temperature, "a positive number")
        if self.max_tokens is not None:
            _check_int("max_tokens", self.max_tokens, 2)
        return self

    def replace(self, **changes) -> "EvalConfig":
        return dataclasses.replace(self, **changes).validate()
