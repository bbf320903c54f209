"""Export a search made by tuning/search.py: one CSV row per trial; --best prints a preset.

    python tuning/export.py runs/tuning/ptb_lstm_ers --out results/tuning/ptb_lstm_ers.csv
    python tuning/export.py runs/tuning/ptb_lstm_ers --best > best.json
    python experiments/table1.py --preset best.json --scale small

Columns: trial id and status, the objective (val_ppl, best validation perplexity), every
hyperparameter of the search space (empty where it does not apply), the widths they resolve to at
the paper's scale (a smaller scale's are in ``departures``), epochs
trained, wall time, the search's settings and each trial's provenance (commit, date, device,
backend, versions). --best prints the best finished trial as a ``dualrnn.presets`` JSON entry at
the paper's scale (what ``table1.py --preset`` reads). Messages go to stderr, the JSON to stdout.
"""

from __future__ import annotations

import json
import os
import sys

import _cli

_cli.set_backend(sys.argv)

META = ["trial_id", "status", "val_ppl"]
RESOLVED = ["recurrent_widths", "dual_units", "epochs_trained", "best_epoch", "tuner_epochs",
            "continues", "train_seconds", "wall_seconds", "tuner_id", "departures", "message"]
SEARCH = ["arch", "recurrent", "dataset", "scale", "tuner", "seed", "fixed"]
PROVENANCE = ["commit", "date", "device", "backend", "versions"]


def parse(argv):
    p = _cli.Parser(prog="export.py", description=__doc__.split("\n")[0])
    p.add_argument("dir", help="the folder given to search.py --dir")
    p.add_argument("--out", default=None, help="CSV path (default: DIR/trials.csv)")
    p.add_argument("--best", action="store_true", help="print the best trial as a preset (JSON)")
    args = p.parse_args(argv)
    if not os.path.isfile(os.path.join(args.dir, "search.json")):
        p.error(f"{args.dir!r} is not a search folder of tuning/search.py (no search.json)")
    args.out = args.out or os.path.join(args.dir, "trials.csv")
    _cli.check_writable(p, os.path.dirname(os.path.abspath(args.out)), "--out")
    return p, args


def rows_of(directory, meta, hypermodel):
    from tuning.space import grid_values
    from tuning.tuners import read_trials

    names = list(hypermodel.names())
    rows = []
    for t in read_trials(directory):
        r, values = t["result"], t["values"]
        preset = r.get("preset") or {}
        paper = hypermodel.preset(grid_values(values), epochs=1).model     # resolved widths
        row = {"trial_id": t["trial_id"], "status": t["status"], "val_ppl": t["score"]}
        row.update({n: values.get(n) for n in names})
        for k, v in values.items():           # e.g. Hyperband's tuner/epochs, tuner/round
            if k not in row:
                row[k] = v
        message = r.get("message") or t["message"] or ""
        row.update(recurrent_widths="/".join(map(str, paper.recurrent_units)),
                   dual_units=paper.output_units if meta["arch"] == "dual" else None,
                   epochs_trained=r.get("epochs"), best_epoch=r.get("best_epoch"),
                   tuner_epochs=r.get("tuner_epochs"), continues=r.get("continues"),
                   train_seconds=r.get("train_seconds"), wall_seconds=r.get("wall_seconds"),
                   tuner_id=r.get("tuner_id"),
                   departures="; ".join(preset.get("departures", [])) or None,
                   message=message.strip().splitlines()[-1] if message.strip() else None)
        row.update({k: (json.dumps(meta[k], sort_keys=True) if k == "fixed" else meta[k])
                    for k in SEARCH})
        row.update({k: r.get(k) for k in PROVENANCE})
        rows.append(row)
    return rows


def best_preset(directory, meta, hypermodel):
    """The best finished trial as a paper-scale ``Preset`` (None when no trial finished)."""
    from tuning.space import trial_values
    from tuning.tuners import best_trial

    best = best_trial(directory)
    if best is None:
        return None, None
    return best, hypermodel.preset(trial_values(best, meta["scale"]))


def main(argv=None):
    p, args = parse(sys.argv[1:] if argv is None else argv)
    import pandas as pd

    from dualrnn.files import write_atomic
    from tuning.space import DualHyperModel
    from tuning.tuners import read_json

    meta = read_json(os.path.join(args.dir, "search.json"))
    hypermodel = DualHyperModel(meta["arch"], meta["recurrent"], meta["dataset"], meta["scale"],
                                vocab_size=2, hyperband=meta["tuner"] == "hyperband",
                                fixed=meta.get("fixed"), lr_range=meta.get("lr_range"),
                                train_protocols=meta.get("train_protocols", ["carry"]))
    rows = rows_of(args.dir, meta, hypermodel)
    if not rows:
        p.error(f"{args.dir!r} holds no trials yet")
    frame = pd.DataFrame(rows)
    head = META + list(hypermodel.names())
    tail = RESOLVED + SEARCH + PROVENANCE
    frame = frame[head + [c for c in frame.columns if c not in head + tail] + tail]
    write_atomic(args.out, lambda tmp: frame.to_csv(tmp, index=False))
    counts = frame["status"].value_counts().to_dict()
    sys.stderr.write(f"wrote {len(frame)} trials ({counts}) to {args.out}\n")
    if args.best:
        best, preset = best_preset(args.dir, meta, hypermodel)
        if best is None:
            sys.stderr.write(f"export.py: error: no finished trial in {args.dir}\n")
            return 1
        sys.stderr.write(f"best: trial {best['trial_id']}, val_ppl {best['score']:.3f} "
                         f"({meta['scale']} scale); preset at the paper's scale follows\n")
        print(json.dumps(preset.to_dict(), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
