"""``torch.nn.LSTM`` of the same widths as a Table 1 model, timed in its own process: the
throughput benchmark's ``torch_plain`` row (``experiments/throughput.py``)."""

from __future__ import annotations

import os

from _timing import PeakMemory, in_torch_process, optional_torch, timed


def measure_torch_plain(cfg, args):
    """``torch.nn.LSTM`` (cuDNN on a GPU) with the same widths, tied output, NAdam; measured in a
    fresh process, so that its thread pool does not compete with the Keras backend's. Returns
    (seconds per step, peak memory in bytes, torch threads of the faster setting)."""
    settings = {k: getattr(args, k) for k in ("seed", "vocab", "batch_size", "seq_len",
                                              "precision", "warmup", "steps")}
    return in_torch_process(_torch_worker, cfg.embedding_units, tuple(cfg.recurrent_units),
                            settings)


def _torch_worker(embedding_units, recurrent_units, settings):
    import types

    import numpy as np

    torch = optional_torch()
    args = types.SimpleNamespace(**settings)
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(args.seed)
    nn = torch.nn

    class TorchLSTM(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(args.vocab, embedding_units)
            sizes = (embedding_units,) + tuple(recurrent_units)
            self.rnns = nn.ModuleList(nn.LSTM(d, h, batch_first=True)
                                      for d, h in zip(sizes[:-1], sizes[1:]))

        def forward(self, ids):
            x = self.embed(ids)
            for rnn in self.rnns:
                x, _ = rnn(x)
            return nn.functional.linear(x, self.embed.weight)

    model = TorchLSTM().to(dev)
    opt = torch.optim.NAdam(model.parameters(), lr=1e-3)
    rng = np.random.default_rng(args.seed)
    ids, targets = (torch.tensor(rng.integers(0, args.vocab, (args.batch_size, args.seq_len)),
                                 dtype=torch.long, device=dev) for _ in range(2))
    amp = {"mixed_bfloat16": torch.bfloat16, "mixed_float16": torch.float16}.get(args.precision)

    def step():
        opt.zero_grad(set_to_none=True)
        with torch.autocast(dev, dtype=amp, enabled=amp is not None):
            logits = model(ids)
        loss = nn.functional.cross_entropy(logits.float().reshape(-1, args.vocab),
                                           targets.reshape(-1))
        loss.backward()
        opt.step()
        loss.item()

    if dev == "cuda":
        torch.cuda.reset_peak_memory_stats()
    # On a CPU, torch's OpenMP threads wait for each other at every step: where the cores are
    # shared with other work, one thread can be several times faster than all of them. Both are
    # timed and the faster one counts (torch gets its best setting, as Keras gets its best XLA one).
    counts = [1] if dev == "cuda" else sorted({os.cpu_count() or 1, 1}, reverse=True)
    best = None
    with PeakMemory() as mem:
        for n in counts:
            torch.set_num_threads(n)
            seconds = timed(step, args.warmup, args.steps)
            if best is None or seconds < best[0]:
                best = (seconds, n)
    peak = torch.cuda.max_memory_allocated() if dev == "cuda" else mem.peak
    return best[0], peak, best[1]
