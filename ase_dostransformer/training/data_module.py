"""The Lightning data module over a list of featurised graphs and a split."""

from __future__ import annotations

from collections.abc import Sequence

import lightning as L
import numpy as np
from torch_geometric.data import Data
from torch_geometric.loader import DataLoader


class GraphDataModule(L.LightningDataModule):
    """Serves train/valid/test graphs in batches (PyG collation; real batching, padding masks)."""

    def __init__(
        self, graphs: Sequence[Data], split: dict[str, np.ndarray], batch_size: int = 32, num_workers: int = 0
    ) -> None:
        super().__init__()
        for name in ("train", "valid"):
            if len(split.get(name, ())) == 0:
                raise ValueError(f"split has no {name} materials")
        self.graphs = graphs
        self.split = split
        self.batch_size = batch_size
        self.num_workers = num_workers

    def subset(self, name: str) -> list[Data]:
        """Graphs of one part of the split."""
        return [self.graphs[i] for i in self.split[name]]

    def _loader(self, name: str, shuffle: bool) -> DataLoader:
        return DataLoader(
            self.subset(name),
            batch_size=self.batch_size,
            shuffle=shuffle,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("valid", False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", False)
