"""FLOPs per token of a Table 1 configuration (matrix products only), for the throughput
benchmark's fraction of peak (``experiments/throughput.py``)."""

from __future__ import annotations


def scaled_config(name, scale):
    """The Table 1 (PTB) ModelConfig of ``name`` at ``scale`` (full: the paper's sizes)."""
    from dualrnn import presets

    cfg = presets.table1(name, "ptb").model
    if scale == "full":
        return cfg
    if scale == "quick":
        width = lambda u: max(8, u // 4)  # noqa: E731
        rank = min(cfg.mogrifier_rank, 25)
    else:
        width = lambda u: max(8, round(16 * u / cfg.embedding_units))  # noqa: E731
        rank = min(cfg.mogrifier_rank, 4)
    units = tuple(width(u) for u in cfg.recurrent_units[:-1]) + (width(cfg.embedding_units),)
    return cfg.replace(embedding_units=width(cfg.embedding_units), recurrent_units=units,
                       dual_units=None, mogrifier_rank=rank)


def forward_flops_per_token(cfg, vocab):
    """Multiply-adds x 2 of one token's forward pass (matrix products only)."""
    flops = 0
    inputs = (cfg.embedding_units,) + tuple(cfg.recurrent_units[:-1])
    for d, h in zip(inputs, cfg.recurrent_units):
        flops += 2 * (d + h) * 4 * h                                   # gates
        for i in range(1, cfg.mogrifier_rounds + 1):
            src, dst = (h, d) if i % 2 else (d, h)
            r = cfg.mogrifier_rank
            flops += 2 * (src * r + r * dst) if r else 2 * src * dst
    if cfg.architecture == "dual":
        flops += 2 * (cfg.embedding_units + cfg.recurrent_units[-1]) * cfg.output_units
    flops += 2 * cfg.output_units * vocab                              # tied output
    return flops


def flops_per_token(cfg, vocab, mode):
    """Forward for ``eval``; forward + backward (about 3x) for ``train`` and ``dyneval``."""
    f = forward_flops_per_token(cfg, vocab)
    return f if mode == "eval" else 3 * f
