"""The throughput benchmark's timing harness: interleaved median timing of compiled steps, the
machine's GEMM peak (numpy, the Keras backend, torch in its own process) and peak memory
(``experiments/throughput.py``)."""

from __future__ import annotations

import math
import os
import threading
import time


class PeakMemory:
    """Samples the process's resident memory (CPU) while in use; GPU peaks come from the
    frameworks (JAX: peak bytes in use since start; torch: since its reset)."""

    def __init__(self):
        self.peak = 0
        self._stop = threading.Event()

    def _rss(self):
        try:
            with open("/proc/self/statm") as f:
                return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError):
            import resource

            return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

    def _run(self):
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, self._rss())

    def __enter__(self):
        self.peak = self._rss()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._rss())

    def megabytes(self, gpu_bytes=None):
        return round((gpu_bytes if gpu_bytes else self.peak) / 2 ** 20, 1)


def keras_gpu_peak():
    import keras

    if keras.backend.backend() == "jax":
        import jax

        d = jax.devices()[0]
        if d.platform != "cpu":
            return (d.memory_stats() or {}).get("peak_bytes_in_use")
    return None


def interleaved(steps, warmup, samples, min_sample=0.05):
    """Median seconds per call of each function in ``steps`` (each must block until its result
    is ready), timed in rounds: every round times one sample of each function in turn, so that
    a machine that slows down or speeds up during the run (clocks, neighbours on a shared host)
    shifts all rows alike and the ratios between rows stay fair. A sample is ``k`` calls, with
    ``k`` chosen from the last warm-up call so that a sample lasts at least ``min_sample``
    seconds (a GPU step of a few milliseconds is otherwise mostly timer and dispatch noise).
    Returns ``[(seconds per call, k), ...]``."""
    ks = []
    for step in steps:
        for _ in range(max(0, warmup - 1)):
            step()
        t = time.perf_counter()
        step()
        ks.append(max(1, math.ceil(min_sample / max(time.perf_counter() - t, 1e-9))))
    times = [[] for _ in steps]
    for _ in range(samples):
        for i, (step, k) in enumerate(zip(steps, ks)):
            t = time.perf_counter()
            for _ in range(k):
                step()
            times[i].append((time.perf_counter() - t) / k)
    return [(sorted(ts)[len(ts) // 2], k) for ts, k in zip(times, ks)]


def timed(step, warmup, steps):
    """Median seconds per call of ``step`` alone: ``warmup`` calls, then ``steps`` timed ones."""
    return interleaved([step], warmup, steps, min_sample=0.0)[0][0]


def gemm_peak(precision, n=None):
    """Best GFLOP/s of a large square matrix product: numpy (CPU), the Keras backend, torch."""
    import keras
    import numpy as np

    from dualrnn.results import accelerator_name

    on_gpu = accelerator_name() is not None
    n = n or (8192 if on_gpu else 2048)
    dtype = "bfloat16" if precision == "mixed_bfloat16" else (
        "float16" if precision == "mixed_float16" else "float32")
    flops = 2 * n ** 3
    results = {}
    a = np.random.default_rng(0).random((n, n), dtype=np.float32)
    if not on_gpu:
        results["numpy"] = flops / timed(lambda: a @ a, 1, 3) / 1e9
    if keras.backend.backend() == "jax":
        import jax
        import jax.numpy as jnp

        x = jnp.asarray(a, dtype=dtype)
        mm = jax.jit(lambda u: u @ u)
        results["jax"] = flops / timed(lambda: mm(x).block_until_ready(), 2, 5) / 1e9
    else:
        import tensorflow as tf

        x = tf.cast(tf.constant(a), dtype)
        mm = tf.function(lambda u: tf.matmul(u, u))
        results["tensorflow"] = flops / timed(lambda: mm(x).numpy(), 2, 5) / 1e9
    if torch_version() is not None:
        results["torch"] = flops / in_torch_process(_torch_gemm, n, dtype) / 1e9
    best = max(results, key=results.get)
    return results[best], best, results


def optional_torch():
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(os.cpu_count() or 1)
    return torch


def torch_version():
    """torch's version without importing it here (its thread pool would compete with the
    backend's), or None where it is not installed."""
    import importlib.metadata

    try:
        return importlib.metadata.version("torch")
    except importlib.metadata.PackageNotFoundError:
        return None


def in_torch_process(fn, *args):
    """``fn(*args)`` in a fresh process (torch's thread pool must not compete with the Keras
    backend's: in one process torch measured several times slower)."""
    import multiprocessing

    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(fn, args)


def _torch_gemm(n, dtype):
    """Seconds per n x n x n matrix product in torch (GPU where there is one)."""
    import numpy as np

    torch = optional_torch()
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    a = np.random.default_rng(0).random((n, n), dtype=np.float32)
    x = torch.tensor(a, device=dev, dtype=getattr(torch, dtype))

    def run():
        y = x @ x
        if dev == "cuda":
            torch.cuda.synchronize()
        return y

    return timed(run, 2, 5)
