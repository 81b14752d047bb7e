"""The full description of a model: everything needed to rebuild it from a saved file."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

from ..errors import OptionError
from ..kinds import get_kind
from ..spectra import PHONON_GRID, EnergyGrid
from .embedders import EMBEDDERS

ENERGY_ENCODINGS = ("table", "value")
#: What a model's head produces: ``grid``, one value per point of its grid (the seed's model);
#: ``physical``, a phonon DOS built by construction (:mod:`.physical`).
OUTPUTS = ("grid", "physical")


@dataclass
class ModelConfig:
    """Hyper-parameters of a DOSTransformer (names follow the seed's CLI where it has one)."""

    hidden: int = 256
    layers: int = 3  # graph-network processor blocks
    transformer: int = 2  # layers per attention stack
    heads: int = 8
    ff_mult: int = 1  # feed-forward width in units of hidden
    attn_drop: float = 0.0
    dropout: float = 0.1
    embedder: str = "graph_network"
    aggregation: str = "mean"  # graph-network edge aggregation (phonon: mean, eDOS: sum)
    # material vector g = Linear(pool(H)). The original sums over atoms, so a supercell gets another
    # answer than its primitive cell; "mean" keeps the (max-normalised, intensive) DOS invariant.
    pool: str = "mean"
    energy_encoding: str = "table"
    fourier_features: int = 16  # for the "value" encoding
    num_systems: int = 7
    node_dim: int = 118
    edge_dim: int = 4
    node_scale: float = 0.01  # phonon nodes carry masses (u): bring them to order one
    # per-material global features concatenated to the pooled atoms (the original eDOS model's DFT
    # energies); 0 = none, the default: such a model needs DFT outputs and cannot screen new structures
    global_dim: int = 0
    task: str = "phonon"  # a registered DOS kind (ase_dostransformer.kinds); the legacy "edos" reads as "electron"
    grid: EnergyGrid = field(default_factory=lambda: PHONON_GRID)
    recipe: dict = field(default_factory=dict)
    # "physical" (phonon only): DOS(0) = 0, an omega^2 onset, integral 3N and a support set by a predicted
    # highest frequency that the crystal's volume enters (model/physical.py); "grid": the seed's head
    output: str = "grid"
    scaled_points: int = 64  # physical output: points of the head on the scaled axis omega / omega_max
    # electron models only: a small MLP on the pooled material vector giving the metal probability and the
    # gap of an insulator with its uncertainty (model/gap.py); off in every model file written before it
    gap_head: bool = False
    # physical phonon models on foundation features only: the masses enter as the exact omega ~ m^-1/2 scale
    # of the harmonic-mean mass and as each atom's log mass ratio, not as learnt one-hot columns
    # (model/masses.py); off in every model file written before it
    mass_scaling: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.grid, dict):
            self.grid = EnergyGrid.from_dict(self.grid)
        self.task = get_kind(self.task).name  # UnknownKindError for a kind this package does not know
        if self.embedder not in EMBEDDERS:
            raise OptionError(f"embedder must be one of {tuple(EMBEDDERS)}, got {self.embedder!r}")
        if self.energy_encoding not in ENERGY_ENCODINGS:
            raise OptionError(f"energy_encoding must be one of {ENERGY_ENCODINGS}, got {self.energy_encoding!r}")
        if self.pool not in ("mean", "sum"):
            raise OptionError(f"pool must be 'mean' or 'sum', got {self.pool!r}")
        if self.aggregation not in ("mean", "sum"):
            raise OptionError(f"aggregation must be 'mean' or 'sum', got {self.aggregation!r}")
        if self.hidden % self.heads or self.hidden % 2:
            raise OptionError(f"hidden ({self.hidden}) must be even and divisible by heads ({self.heads})")
        if self.output not in OUTPUTS:
            raise OptionError(f"output must be one of {OUTPUTS}, got {self.output!r}")
        if self.output == "physical":
            if self.task != "phonon" or self.energy_encoding != "value":
                raise OptionError(
                    "output='physical' is a phonon model with energy_encoding='value' "
                    f"(got task {self.task!r}, energy_encoding {self.energy_encoding!r})"
                )
            if self.scaled_points < 8:
                raise OptionError(f"scaled_points must be >= 8, got {self.scaled_points}")
        if not isinstance(self.gap_head, bool):
            raise OptionError(f"gap_head must be True or False, got {self.gap_head!r}")
        if self.gap_head and self.task != "electron":
            raise OptionError(f"gap_head=True is for electron models, not {self.task!r} ones")
        if not isinstance(self.mass_scaling, bool):
            raise OptionError(f"mass_scaling must be True or False, got {self.mass_scaling!r}")
        if self.mass_scaling and (self.output != "physical" or not self.embedder.startswith("foundation")):
            raise OptionError(
                "mass_scaling=True is for physical phonon models on foundation features "
                f"(got output {self.output!r}, embedder {self.embedder!r})"
            )
        if self.global_dim < 0:
            raise OptionError(f"global_dim must be >= 0, got {self.global_dim}")
        for name in ("layers", "transformer", "hidden", "heads"):
            if getattr(self, name) < 1:
                raise OptionError(f"{name} must be >= 1, got {getattr(self, name)}")

    def to_dict(self) -> dict:
        """A JSON-friendly dict."""
        d = asdict(self)
        d["grid"] = self.grid.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict) -> ModelConfig:
        """Inverse of :meth:`to_dict`; unknown keys are an error (a file from a newer version)."""
        names = {f.name for f in fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise OptionError(f"unknown model config keys {sorted(unknown)}")
        return cls(**d)
