"""The Lightning data module over a list of featurised graphs and a split."""

from __future__ import annotations

from collections.abc import Sequence

import lightning as L
import numpy as np
import torch
from torch.utils.data import RandomSampler
from torch_geometric.data import Data
from torch_geometric.loader import DataLoader

from ..errors import DatasetError


class EpochSeededSampler(RandomSampler):
    """A random order that depends only on ``(seed, epoch)``, not on the global RNG's history.

    ``RandomSampler`` draws each epoch's order from the global torch RNG, whose state a resumed run
    cannot reproduce; this one reseeds a private generator every epoch (Lightning calls
    :meth:`set_epoch` before each training epoch), so a run resumed from a checkpoint sees the same
    batches as an uninterrupted one. Being a ``RandomSampler``, Lightning still swaps it for a
    ``DistributedSampler`` (itself seeded by epoch) under DDP.
    """

    def __init__(self, data_source: Sequence, seed: int = 0) -> None:
        super().__init__(data_source)
        self.seed = int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the order of this epoch."""
        self.epoch = int(epoch)

    def __iter__(self):
        generator = torch.Generator()
        generator.manual_seed((self.seed * 1_000_003 + self.epoch) % (2**63))
        yield from torch.randperm(len(self.data_source), generator=generator).tolist()


class FamilySampler(EpochSeededSampler):
    """:class:`EpochSeededSampler` that keeps each family of graphs (``graph.t_family``) together.

    A family is a teacher crystal and its strained copies (:mod:`.teacher_data`): the volume-response
    term of :class:`~.lightning_module.PhysicalDOSModule` compares members of a family within a batch.
    Each epoch the families are shuffled, and their members within them, from ``(seed, epoch)`` only;
    consecutive families fill the batches (a family may straddle two). Graphs without ``t_family``
    are families of one.
    """

    def __init__(self, data_source: Sequence, seed: int = 0) -> None:
        super().__init__(data_source, seed)
        groups: dict[int, list[int]] = {}
        for i, graph in enumerate(data_source):
            family = getattr(graph, "t_family", None)
            key = int(family.view(-1)[0]) if family is not None else -1
            key = key if key >= 0 else -1 - i  # no family (no teacher target): a family of one
            groups.setdefault(key, []).append(i)
        self.families = list(groups.values())

    def __iter__(self):
        generator = torch.Generator()
        generator.manual_seed((self.seed * 1_000_003 + self.epoch) % (2**63))
        for k in torch.randperm(len(self.families), generator=generator).tolist():
            members = self.families[k]
            yield from (members[j] for j in torch.randperm(len(members), generator=generator).tolist())


class GraphDataModule(L.LightningDataModule):
    """Serves train/valid/test graphs in batches (PyG collation; real batching, padding masks)."""

    def __init__(
        self,
        graphs: Sequence[Data],
        split: dict[str, np.ndarray],
        batch_size: int = 32,
        num_workers: int = 0,
        seed: int = 0,
        families: bool = False,
    ) -> None:
        super().__init__()
        for name in ("train", "valid"):
            if len(split.get(name, ())) == 0:
                raise DatasetError(f"split has no {name} materials")
        self.graphs = graphs
        self.split = split
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.seed = seed
        self.families = families  # training batches keep teacher families together (FamilySampler)

    def subset(self, name: str) -> list[Data]:
        """Graphs of one part of the split."""
        return [self.graphs[i] for i in self.split[name]]

    def _loader(self, name: str, shuffle: bool) -> DataLoader:
        data = self.subset(name)
        sampler = None
        if shuffle:
            sampler = (FamilySampler if self.families else EpochSeededSampler)(data, self.seed)
        return DataLoader(
            data,
            batch_size=self.batch_size,
            sampler=sampler,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        """The training split, shuffled per epoch by :class:`EpochSeededSampler` (:class:`FamilySampler`)."""
        return self._loader("train", True)

    def val_dataloader(self) -> DataLoader:
        """The validation split, in order."""
        return self._loader("valid", False)

    def test_dataloader(self) -> DataLoader:
        """The test split, in order."""
        return self._loader("test", False)
