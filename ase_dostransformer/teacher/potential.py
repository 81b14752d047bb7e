"""The teacher potential: matgl's TensorNet-MatPES-PBE-v2025.1, shipped inside the package.

The weights (``pretrained/potentials/tensornet_matpes_pbe_2025_1/``, BSD-3, Materials Virtual Lab)
are checked against their sha256 on every load. Loaded unchanged into matgl 4.x they are silently
wrong for every compound: matgl's ``TensorEmbedding.message`` concatenates the two atoms of a pair
as ``[self, neighbour]`` while these weights were trained with ``[neighbour, self]``, so the two
species of every mixed pair are exchanged (rock-salt MgO's minimum lands near 4.6-5.1 A instead of
4.25 A). :func:`fix_pair_order` corrects this **on one loaded instance** by binding a swapped
``message`` to that module object; matgl's class is never touched, so other matgl models in the same
process keep matgl's own convention.

Device choice: the ``device`` argument, else ``$DOSTRANSFORMER_DEVICE``, else CUDA when available,
else the CPU.
"""

from __future__ import annotations

import os
import types
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import PotentialError
from ..io.checksums import file_sha256

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from ase.calculators.calculator import Calculator

#: Name of the shipped teacher potential.
TEACHER_NAME = "TensorNet-MatPES-PBE-v2025.1"
#: Folder holding its files.
POTENTIAL_DIR = Path(__file__).resolve().parent.parent / "pretrained" / "potentials" / "tensornet_matpes_pbe_2025_1"
#: sha256 of each shipped file (as in matgl's repository, commit e9cde229).
SHA256 = {
    "model.json": "cf7d1db6c89da617245021a8fde16fb79db5bc06f7b6e11ee837f06eb32137d8",
    "model.pt": "1cba95766c872082eec349a7e417a28461aea450b655a0301eec060a985fdd71",
    "state.pt": "d2dfa51a65d23a47fd935eb0628177d2a1088584562091ef3350ce3a002fce6a",
    "LICENSE-matgl": "a1f95e08d7efe8e911aed04b891d51b90ba46291585f43939134806670ee2a38",
}
#: Environment variable naming the device (``cpu``, ``cuda``, ``cuda:1``, ...).
DEVICE_ENV = "DOSTRANSFORMER_DEVICE"


@dataclass
class TeacherPotential:
    """A loaded, corrected teacher potential and the device it runs on."""

    potential: Any  # matgl.apps.pes.Potential
    device: str
    name: str = TEACHER_NAME

    def calculator(self) -> Calculator:
        """A fresh ASE calculator (energy, forces, stress in eV/A^3) over this potential."""
        return make_calculator(self.potential, self.device)


def choose_device(device: str | None = None) -> str:
    """``device``, else ``$DOSTRANSFORMER_DEVICE``, else ``cuda`` when available, else ``cpu``."""
    import torch

    choice = device or os.environ.get(DEVICE_ENV) or ("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(choice)
    except RuntimeError as exc:
        raise PotentialError(f"unknown device {choice!r} (from {'argument' if device else DEVICE_ENV})") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise PotentialError(f"device {choice!r} requested but CUDA is not available")
    return str(dev)


def verify_files(folder: Path = POTENTIAL_DIR) -> None:
    """Check every shipped file against its sha256; :class:`PotentialError` names the one at fault."""
    for name, expected in SHA256.items():
        path = folder / name
        if not path.is_file():
            raise PotentialError(f"teacher potential file missing: {path}")
        got = file_sha256(path)
        if got != expected:
            raise PotentialError(f"teacher potential file {path} has sha256 {got}, expected {expected}")


def _swapped_message(
    self: Any,
    x_i: torch.Tensor,
    x_j: torch.Tensor,
    edge_attr: torch.Tensor,
    edge_weight: torch.Tensor,
    Iij: torch.Tensor,  # noqa: N803 - matgl's names
    Aij: torch.Tensor,  # noqa: N803
    Sij: torch.Tensor,  # noqa: N803
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Matgl's ``TensorEmbedding.message`` with the two node inputs exchanged."""
    return type(self).message(self, x_j, x_i, edge_attr, edge_weight, Iij, Aij, Sij)


def fix_pair_order(potential: Any) -> int:
    """Exchange the pair order of every tensor embedding in ``potential``, on this instance only.

    Returns the number of embedding modules corrected (1 for TensorNet). Idempotent: a module
    already corrected is left as it is.
    """
    from matgl.layers._embedding import TensorEmbedding

    n = 0
    for module in potential.modules():
        if isinstance(module, TensorEmbedding):
            if not getattr(module, "_dostransformer_pair_order_fixed", False):
                module.message = types.MethodType(_swapped_message, module)
                module._dostransformer_pair_order_fixed = True
            n += 1
    if n == 0:
        raise PotentialError("no TensorEmbedding found: this is not a TensorNet potential")
    return n


def load_teacher(device: str | None = None, folder: str | os.PathLike | None = None) -> TeacherPotential:
    """Load the shipped TensorNet potential (sha256-checked), correct its pair order, move it to a device.

    ``folder`` loads another copy of the same files (checked against the same sha256s).
    """
    import matgl

    path = Path(folder) if folder is not None else POTENTIAL_DIR
    verify_files(path)
    dev = choose_device(device)
    try:
        with warnings.catch_warnings():
            # matgl warns that the v2025.1 files' @model_version is older than its classes: known, and
            # what fix_pair_order corrects
            warnings.filterwarnings("ignore", message="Incompatible model version", category=UserWarning)
            pot = matgl.load_model(path)
    except Exception as exc:  # noqa: BLE001 - re-raised with context
        raise PotentialError(f"matgl could not load {path}: {exc}") from exc
    fix_pair_order(pot)
    pot = pot.to(dev)
    pot.eval()
    return TeacherPotential(potential=pot, device=dev)


def make_calculator(potential: Any, device: str = "cpu") -> Calculator:
    """An ASE calculator over a matgl ``Potential`` that runs the graph on ``device``.

    Stress is in eV/A^3 (ASE's convention), so cell filters work.
    """
    import torch
    from matgl.ext.ase import PESCalculator

    class _TeacherCalculator(PESCalculator):
        implemented_properties = ["energy", "free_energy", "forces", "stress"]  # noqa: RUF012

        def calculate(self, atoms=None, properties=None, system_changes=None):  # type: ignore[override]
            from ase.calculators.calculator import Calculator as _Base
            from ase.calculators.calculator import all_changes
            from ase.stress import full_3x3_to_voigt_6_stress

            _Base.calculate(self, atoms, properties or ["energy"], system_changes or all_changes)
            graph, lattice, state = self._atoms2graph.get_graph(self.atoms)
            graph = graph.to(self._device)
            lattice = torch.as_tensor(lattice).to(self._device)
            state = torch.as_tensor(state).to(self._device) if state is not None else None
            out = self.potential(graph, lattice, state)
            energy = float(out[0].detach().cpu().numpy().reshape(-1)[0])
            self.results = {
                "energy": energy,
                "free_energy": energy,
                "forces": out[1].detach().cpu().numpy().astype(float),
            }
            if self.compute_stress:
                s = out[2][0] if out[2].dim() == 3 else out[2]
                self.results["stress"] = full_3x3_to_voigt_6_stress(s.detach().cpu().numpy()) * self.conversion_factor

    calc = _TeacherCalculator(potential, stress_unit="eV/A3")
    calc._device = device
    return calc
