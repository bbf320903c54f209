"""keras-tuner's three tuners, each training its trials with ``dualrnn.train`` (one training loop).

``make_tuner(kind, hypermodel, directory, max_trials)`` returns a ``RandomSearch``,
``BayesianOptimization`` or ``Hyperband`` whose ``run_trial`` trains the trial's preset
(``DualHyperModel.train_trial``) with its checkpoints in the trial's folder, so that:

* a rerun of the same search continues it (``overwrite=False``): finished trials are never
  rerun, and the trial that was running when the process died resumes from its last epoch;
* Hyperband's continuation trials (``tuner/trial_id``) train on from the earlier trial's
  checkpoint (weights and optimizer state) instead of Keras's ``SaveBestEpoch`` weights file;
* a trial that diverges (NaN/inf loss) is recorded ``FAILED`` and the search goes on (three in a
  row stop it: keras-tuner's ``max_consecutive_failed_trials``); any other error stops the search
  at once with that error (``keras_tuner.errors.FatalError``) instead of letting keras-tuner mark
  the trial failed and report "best" values of nothing. The stopped trial stays ``RUNNING`` in
  the oracle, so rerunning the command after the fix retries it.

Every trial also writes ``result.json`` in its folder (status, error, epochs, history, wall
time, the resolved configuration and provenance): keras-tuner's gRPC messages drop a trial's
error message, and ``tuning/export.py`` reads these files.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import time
import traceback

import keras_tuner as kt
import numpy as np

from dualrnn.results import provenance
from dualrnn.files import write_atomic
from dualrnn.train import CHECKPOINT
from tuning.space import OBJECTIVE, grid_values, hyperband_max_epochs

TUNERS = ("random", "bayesian", "hyperband")
RESULT = "result.json"
SEARCH = "search.json"


def write_json(path, obj):
    def write(tmp):
        with open(tmp, "w") as f:
            json.dump(obj, f, indent=1, default=float)
            f.write("\n")

    write_atomic(path, write)


def read_json(path):
    with open(path) as f:
        return json.load(f)


class _DualTrials:
    """Mixin placed before a keras-tuner tuner class: trials run through ``dualrnn.train``."""

    def on_search_begin(self):
        # keras-tuner only writes the tuner file at a trial's end: write it now, so that a search
        # killed during its first trial reloads its oracle instead of starting over.
        self.save()
        super().on_search_begin()

    def run_trial(self, trial, corpus, verbose=0):
        hp = trial.hyperparameters
        folder = self.get_trial_dir(trial.trial_id)
        epochs = hp.values.get("tuner/epochs")
        previous = hp.values.get("tuner/trial_id")
        checkpoint = os.path.join(folder, CHECKPOINT)
        if previous and not os.path.exists(checkpoint):     # Hyperband: train on
            earlier = os.path.join(self.get_trial_dir(previous), CHECKPOINT)
            if os.path.exists(earlier):
                write_atomic(checkpoint, lambda tmp: shutil.copyfile(earlier, tmp))
        values = grid_values(hp.values)
        record = {"trial_id": trial.trial_id, "tuner_id": self.tuner_id, "values": values,
                  "tuner_epochs": epochs, "continues": previous,
                  "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        t0 = time.time()
        try:
            preset, _, result = self.hypermodel.train_trial(values, corpus, folder, epochs,
                                                            verbose)
        except FloatingPointError as e:
            self._record(folder, record, t0, status="FAILED", message=str(e))
            raise kt.errors.FailedTrialError(f"trial {trial.trial_id} diverged: {e}") from e
        except Exception as e:
            self._record(folder, record, t0, status="ERROR", message=traceback.format_exc())
            raise kt.errors.FatalError(
                f"trial {trial.trial_id} failed with {type(e).__name__}: {e}") from e
        self._record(folder, record, t0, status="COMPLETED", preset=preset.to_dict(),
                     epochs=result.epochs, best_epoch=result.best_epoch,
                     val_ppl=result.best_valid_ppl, train_seconds=result.wall_time,
                     history=result.history)
        return {OBJECTIVE: result.best_valid_ppl}

    @staticmethod
    def _record(folder, record, t0, **fields):
        write_json(os.path.join(folder, RESULT),
                   {**record, **fields, "wall_seconds": round(time.time() - t0, 1),
                    **provenance()})

    def load_model(self, trial):
        """The trial's model with the weights of its best validation epoch."""
        preset = self.hypermodel.scaled(self.hypermodel.preset(
            grid_values(trial.hyperparameters.values)))
        from dualrnn.models import build_model

        model = build_model(preset.model, self.hypermodel.vocab_size)
        path = os.path.join(self.get_trial_dir(trial.trial_id), CHECKPOINT)
        with np.load(path) as z:
            for i, v in enumerate(model.trainable_variables):
                v.assign(z[f"best_{i}"])
        return model

    def save_model(self, trial_id, model, step=0):
        """Nothing to do: ``dualrnn.train`` checkpoints every epoch in the trial's folder."""


class DualRandomSearch(_DualTrials, kt.RandomSearch):
    pass


class DualBayesianOptimization(_DualTrials, kt.BayesianOptimization):
    pass


class DualHyperband(_DualTrials, kt.Hyperband):
    pass


def make_tuner(kind, hypermodel, directory, max_trials, seed=0, factor=3):
    """A tuner of ``kind`` (random, bayesian, hyperband) keeping its project in ``directory``.

    Its trials train ``hypermodel`` (a ``DualHyperModel``); ``max_trials`` caps every kind
    (Hyperband runs iterations until the cap).
    """
    if kind not in TUNERS:
        raise ValueError(f"tuner={kind!r} is not one of {TUNERS}")
    directory = os.path.abspath(directory)
    common = dict(hypermodel=hypermodel, objective=kt.Objective(OBJECTIVE, "min"), seed=seed,
                  directory=os.path.dirname(directory), project_name=os.path.basename(directory),
                  overwrite=False)
    if kind == "random":
        return DualRandomSearch(max_trials=max_trials, **common)
    if kind == "bayesian":
        return DualBayesianOptimization(max_trials=max_trials, **common)
    tuner = DualHyperband(max_epochs=hyperband_max_epochs(hypermodel.scale), factor=factor,
                          hyperband_iterations=None, **common)
    tuner.oracle.max_trials = max_trials
    return tuner


def read_trials(directory) -> list:
    """Every trial of the search in ``directory``: keras-tuner's ``trial.json`` (status, values,
    score) merged with our ``result.json``; sorted by trial id."""
    trials = []
    for path in sorted(glob.glob(os.path.join(directory, "trial_*", "trial.json"))):
        t = read_json(path)
        result_path = os.path.join(os.path.dirname(path), RESULT)
        result = read_json(result_path) if os.path.exists(result_path) else {}
        values = t["hyperparameters"]["values"]
        trials.append({"trial_id": t["trial_id"], "status": t["status"], "score": t["score"],
                       "message": t.get("message"), "values": values, "result": result})
    return trials


def best_trial(directory):
    """The completed trial with the lowest ``val_ppl``, or None."""
    done = [t for t in read_trials(directory)
            if t["status"] == "COMPLETED" and t["score"] is not None]
    return min(done, key=lambda t: t["score"]) if done else None
