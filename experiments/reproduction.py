"""Does a code change keep the numbers? Train the demo's two models (base_20, hgcn_20+rel) for one epoch on a built
work directory and write their exact AUCs; run it on the commit before and after a change and compare the files.

    PYTHONPATH=<checkout> python experiments/reproduction.py --data WORK --out DIR

Writes DIR/reproduction.json: per model, test AUC, validation AUC and the commit it ran.
"""
import argparse
import json
import shutil
import subprocess
from pathlib import Path

import dropdown_rank
from dropdown_rank.model import ModelConfig
from dropdown_rank.train import TrainConfig, train

MODELS = (ModelConfig(kind="base"), ModelConfig(kind="hgcn", relations=True))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="a built work directory")
    parser.add_argument("--out", required=True, help="directory for the runs and reproduction.json")
    args = parser.parse_args()
    out = Path(args.out)
    checkout = Path(dropdown_rank.__file__).resolve().parents[1]
    commit = subprocess.run(["git", "-C", str(checkout), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    result = {"commit": commit, "data": str(Path(args.data).resolve()), "epochs": 1, "models": {}}
    for config in MODELS:
        run = out / config.slug
        shutil.rmtree(run, ignore_errors=True)
        metrics = train(args.data, run, config, TrainConfig(epochs=1), verbose=2)
        result["models"][config.name] = {"test_auc": metrics["test_auc"], "val_auc": metrics["val_auc_per_epoch"][0]}
    (out / "reproduction.json").write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
