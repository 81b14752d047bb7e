"""What each part of the physical phonon model still contributes, by knocking it out at inference.

No retraining (each retraining costs about an hour of this 2-core machine): the trained model is
evaluated as trained, then with one part disabled, on the DFT validation and test crystals of the
official split (51-point max-normalised metrics, the paper's, on the DOS re-gridded as the exported
file is), and on the volume response of a few simple crystals:

- ``no prompt``: every crystal-system prompt replaced by the mean of the seven (the paper's prompts);
- ``global branch``: the prompt-free branch's spectrum instead of the prompt branch's;
- ``no cross-attention to atoms``: the energy tokens' attention to the atoms masked out except for
  one atom per crystal (the first), so the spectrum sees the crystal only through the pooled vector;
- ``fixed volume``: ``volume_per_atom`` set to 15 A^3 for every crystal (the frequency-scale head's
  volume input); the Grueneisen parameter of the mean frequency (+-3% volume) of NaCl, MgO, Si, Al and
  Cu shows how much of the volume response comes through it and how much through the features.

A knock-out measures reliance, not what retraining without the part would reach.

    OMP_NUM_THREADS=1 python benchmarks/physical_ablation.py [--model phonon] [--threads 1]
"""

from __future__ import annotations

import argparse
import contextlib
import json
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from _machine import cpu_model  # noqa: E402

CRYSTALS = {  # experimental lattice constants (A), as in physics_goals.py
    "NaCl": ("rocksalt", 5.640),
    "MgO": ("rocksalt", 4.212),
    "Si": ("diamond", 5.431),
    "Al": ("fcc", 4.050),
    "Cu": ("fcc", 3.615),
}


def members(model: Any) -> list[Any]:
    """The single models inside ``model`` (itself when it is one)."""
    return list(getattr(model, "members", [model]))


@contextlib.contextmanager
def knocked_out(model: Any, part: str) -> Iterator[dict[str, Any]]:
    """Disable ``part`` in every member for the duration; yields options for the forward pass."""
    saved = []
    options: dict[str, Any] = {"branches": ("system",), "volume": None}
    for m in members(model):
        if part == "no prompt":
            saved.append((m.prompts, m.prompts.data.clone()))
            m.prompts.data[:] = m.prompts.data.mean(dim=0, keepdim=True)
        elif part == "no cross-attention to atoms":
            saved.append((m, m.encode))
            encode = m.encode

            def one_atom(batch: Any, _encode: Any = encode) -> Any:
                g, atoms, mask = _encode(batch)
                keep = torch.zeros_like(mask)
                keep[:, 0] = True
                return g, atoms, mask & keep

            m.encode = one_atom
    if part == "global branch":
        options["branches"] = ("global",)
    if part == "fixed volume":
        options["volume"] = 15.0
    try:
        yield options
    finally:
        for owner, value in saved:
            if isinstance(owner, torch.nn.Parameter):
                owner.data.copy_(value)
            else:
                del owner.encode  # back to the class's method


def predict(model: Any, graphs: list, options: dict[str, Any]) -> np.ndarray:
    """Mean over members of the max-normalised DOS on the model's grid, batches of 64."""
    from torch_geometric.data import Batch

    branch = options["branches"][0]
    out = []
    with torch.no_grad():
        for start in range(0, len(graphs), 64):
            batch = Batch.from_data_list(graphs[start : start + 64])
            if options["volume"] is not None:
                batch.volume_per_atom = torch.full_like(batch.volume_per_atom, options["volume"])
            spectra = [m(batch, branches=options["branches"])[branch] for m in members(model)]
            out.append(torch.stack(spectra).mean(dim=0).numpy())
    return np.concatenate(out)


def gruneisen(model: Any, recipe: Any, options: dict[str, Any]) -> dict[str, float]:
    """-d ln<w> / d ln V over +-3% volume, per crystal of :data:`CRYSTALS`."""
    from ase.build import bulk

    out = {}
    grid = torch.as_tensor(model.cfg.grid.values, dtype=torch.float64)
    for name, (structure, a) in CRYSTALS.items():
        means = []
        for scale in (0.97, 1.03):
            atoms = bulk(name, structure, a=a * scale ** (1 / 3))
            dos = torch.as_tensor(predict(model, [recipe.featurise(atoms)], options)[0], dtype=torch.float64)
            means.append(float((grid * dos).sum() / dos.sum()))
        out[name] = -float(np.log(means[1] / means[0]) / np.log(1.03 / 0.97))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="phonon")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from ase_dostransformer.kinds import get_kind
    from ase_dostransformer.pretrained import load_model
    from ase_dostransformer.spectra import resample_max_normalised
    from ase_dostransformer.training.metrics import spectrum_metrics
    from ase_dostransformer.training.tasks import evaluation_data

    model = load_model(args.model, "cpu").eval()
    if model.cfg.output != "physical":
        parser.error(f"{args.model} is not a physical model (output {model.cfg.output!r})")
    _, graphs, split = evaluation_data("phonon", None, "official", 0, model.cfg.recipe)
    labels = get_kind("phonon").grid
    print(f"CPU: {cpu_model()}, {args.threads} torch thread(s); model {args.model}")
    report: dict[str, Any] = {}
    for part in ("as trained", "no prompt", "global branch", "no cross-attention to atoms", "fixed volume"):
        with knocked_out(model, part) as options:
            row: dict[str, Any] = {}
            for name in ("valid", "test"):
                idx = split[name]
                raw = predict(model, [graphs[i] for i in idx], options)
                pred = resample_max_normalised(raw, model.cfg.grid, labels)
                true = np.stack([graphs[i].y.numpy()[0] for i in idx])
                row[name] = spectrum_metrics(pred, true)
            row["gruneisen"] = gruneisen(model, model.graph_recipe, options)
        report[part] = row
        gam = ", ".join(f"{k} {v:.2f}" for k, v in row["gruneisen"].items())
        print(
            f"{part:<30} valid MSE x10 {row['valid']['mse_x10']:.4f} R^2 {row['valid']['r2']:.3f} | "
            f"test MSE x10 {row['test']['mse_x10']:.4f} R^2 {row['test']['r2']:.3f} | gamma: {gam}"
        )
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(report, fh, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
