"""Files that others can supply run no code and cannot silently change results.

Each attack plants, with ``torch.save``, a pickle whose ``__reduce__`` runs ``touch MARKER`` at a path
the package reads: a model file, a graph cache entry, an electron dataset's ``graphs.pt`` and a
``--resume`` checkpoint. None may run; each is a clear error (or, for a cache, a rebuild with a
warning). Model files and caches also carry checksums of their content: an edited tensor is caught.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from ase.build import bulk

from ase_dostransformer.errors import DOSTransformerError, FileIntegrityError, UnsafeFileError
from ase_dostransformer.graphs import PhononGraphRecipe
from ase_dostransformer.graphs.cache import CacheWarning, cache_file, cached_graphs
from ase_dostransformer.io.torch_files import content_sha256, load_graph_file, safe_torch_load
from ase_dostransformer.model import DOSTransformer, ModelConfig, save_model_file
from ase_dostransformer.model.files import ModelFileError, load_model_file, read_model_file

RECIPE = PhononGraphRecipe()


class Planted:
    """Runs a shell command when unpickled."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def plant(path: Path, marker: Path, wrap: bool = True) -> None:
    payload = Planted(marker)
    torch.save({"format": "anything", "state_dict": {"x": payload}} if wrap else payload, path)


def tiny_model() -> DOSTransformer:
    torch.manual_seed(0)
    return DOSTransformer(ModelConfig(hidden=32, layers=1, transformer=1, heads=4)).eval()


def test_a_planted_pickle_is_live_without_safe_loading(tmp_path) -> None:
    """The attack is real: an unsafe load of the same file runs the command (so the tests below can fail)."""
    marker, path = tmp_path / "marker", tmp_path / "evil.pt"
    plant(path, marker)
    torch.load(path, weights_only=False)
    assert marker.exists()


def test_safe_load_refuses_a_planted_pickle_without_advising_unsafe_loading(tmp_path) -> None:
    marker, path = tmp_path / "marker", tmp_path / "evil.pt"
    plant(path, marker)
    with pytest.raises(UnsafeFileError, match="tampered") as err:
        safe_torch_load(path, "model file")
    assert "weights_only" not in str(err.value)
    assert not marker.exists()


@pytest.mark.parametrize("wrap", [True, False])
def test_model_file_with_planted_code_runs_nothing(tmp_path, wrap) -> None:
    from ase_dostransformer.calculator import DOSCalculator

    marker, path = tmp_path / "marker", tmp_path / "model.pt"
    plant(path, marker, wrap)
    with pytest.raises(ModelFileError, match="refused"):
        load_model_file(path)
    with pytest.raises(ModelFileError, match="refused"):
        DOSCalculator(model=str(path))
    assert not marker.exists()


def test_cli_model_options_with_planted_code_run_nothing(tmp_path, capsys) -> None:
    from ase_dostransformer.cli import main

    marker, path = tmp_path / "marker", tmp_path / "model.pt"
    plant(path, marker)
    structure = tmp_path / "si.cif"
    bulk("Si", "diamond", a=5.43).write(structure)
    assert main(["predict", str(structure), "--model", str(path), "--out", str(tmp_path / "out")]) != 0
    assert main(["evaluate", str(path)]) == 2
    assert not marker.exists()
    assert "weights_only" not in capsys.readouterr().err


def test_graph_cache_with_planted_code_is_rebuilt_without_running_it(tmp_path) -> None:
    structures = [bulk("NaCl", "rocksalt", a=5.64), bulk("Si", "diamond", a=5.43)]
    y = np.ones((2, 51), dtype=np.float32)
    sha = "ab" * 32
    path = cache_file(RECIPE, sha, tmp_path)
    marker = tmp_path / "marker"
    plant(path, marker, wrap=False)
    os.chmod(path, 0o600)
    with pytest.warns(CacheWarning, match="rebuilding"):
        graphs = cached_graphs(RECIPE, structures, y, sha, tmp_path)
    assert not marker.exists()
    assert torch.equal(graphs[0].x, RECIPE.featurise(structures[0], y[0]).x)
    header, again = load_graph_file(path)  # the rebuilt entry is a safe, checksummed file
    assert header["data_sha256"] == sha
    assert len(again) == 2


def test_poked_cache_values_are_caught_and_rebuilt(tmp_path) -> None:
    """Editing a cached tensor (keeping the file well-formed) is detected by the checksum."""
    structures = [bulk("NaCl", "rocksalt", a=5.64), bulk("Si", "diamond", a=5.43)]
    y = np.ones((2, 51), dtype=np.float32)
    sha = "cd" * 32
    fresh = cached_graphs(RECIPE, structures, y, sha, tmp_path)
    path = cache_file(RECIPE, sha, tmp_path)
    blob = torch.load(path, weights_only=True)
    blob["graphs"][0]["y"] = blob["graphs"][0]["y"] * 0.5  # a poked value, checksum left as it was
    torch.save(blob, path)
    os.chmod(path, 0o600)
    with pytest.raises(FileIntegrityError, match="checksum"):
        load_graph_file(path)
    with pytest.warns(CacheWarning, match="checksum"):
        again = cached_graphs(RECIPE, structures, y, sha, tmp_path)
    assert torch.equal(again[0].y, fresh[0].y)


def test_cache_entries_others_can_write_are_not_trusted(tmp_path) -> None:
    structures = [bulk("Si", "diamond", a=5.43)]
    y = np.ones((1, 51), dtype=np.float32)
    sha = "ef" * 32
    cached_graphs(RECIPE, structures, y, sha, tmp_path)
    path = cache_file(RECIPE, sha, tmp_path)
    assert (path.stat().st_mode & 0o777) == 0o600  # written private
    os.chmod(path, 0o666)  # as if another user of a shared cache folder could have replaced it
    with pytest.warns(CacheWarning, match="not a private file"):
        cached_graphs(RECIPE, structures, y, sha, tmp_path)
    assert (path.stat().st_mode & 0o777) == 0o600


def test_edos_dataset_graphs_with_planted_code_are_rebuilt(tmp_path) -> None:
    from edos_synthetic import write_sources

    from ase_dostransformer.io.electron_dataset import build_edos_dataset, edos_graphs, load_edos_dataset

    src, out = tmp_path / "src", tmp_path / "ds"
    src.mkdir()
    write_sources(src)
    build_edos_dataset([src], out)
    ds = load_edos_dataset(out)
    reference = edos_graphs(ds)
    marker = tmp_path / "marker"
    plant(out / "graphs.pt", marker, wrap=False)
    with pytest.warns(UserWarning, match="refused"):
        graphs = edos_graphs(load_edos_dataset(out))
    assert not marker.exists()
    assert all(
        torch.equal(a.x, b.x) and torch.equal(a.edge_attr, b.edge_attr) for a, b in zip(graphs, reference, strict=True)
    )


def test_resume_checkpoint_with_planted_code_runs_nothing(tiny_dataset, tmp_path) -> None:
    from ase_dostransformer.training.resume import CheckpointError
    from ase_dostransformer.training.run import TrainOptions, train

    opts = dict(hidden=32, heads=4, layers=1, transformer=1, batch_size=4, eval=1, es=0, threads=1, epochs=1)
    out = tmp_path / "run"
    train(TrainOptions(out=str(out), data=str(tiny_dataset), **opts))
    last = out / "checkpoints" / "last.ckpt"
    ckpt = torch.load(last, weights_only=True)  # our checkpoints hold tensors and plain values only
    marker = tmp_path / "marker"
    ckpt["loops"] = Planted(marker)
    torch.save(ckpt, last)
    with pytest.raises(CheckpointError, match="refused") as err:
        train(TrainOptions(out=str(out), data=str(tiny_dataset), resume=True, **(opts | {"epochs": 2})))
    assert not marker.exists()
    assert "weights_only" not in str(err.value)


# ------------------------------------------------------------------------------ model files


def test_model_file_declaring_a_huge_model_is_refused_before_allocating(tmp_path) -> None:
    """A small file whose config says hidden=4096 is refused by its shapes, without building the model."""
    path = save_model_file(tiny_model(), tmp_path / "small.pt")
    blob = torch.load(path, weights_only=True)
    blob["config"]["hidden"] = 4096
    content = {k: blob[k] for k in ("config", "state_dict", "meta", "members", "member_configs")}
    blob["sha256"] = content_sha256(content)  # a consistent file: only the shapes can tell
    evil = tmp_path / "huge.pt"
    torch.save(blob, evil)
    assert evil.stat().st_size < 2_000_000
    code = (
        "import resource, sys\n"
        "from ase_dostransformer.model.files import load_model_file, ModelFileError\n"
        "try:\n"
        f"    load_model_file({str(evil)!r})\n"
        "except ModelFileError as e:\n"
        "    print('REFUSED', e)\n"
        "print('MAXRSS_KB', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert "REFUSED" in done.stdout, done.stdout + done.stderr
    assert "wrong shapes" in done.stdout, done.stdout + done.stderr
    maxrss_gb = int(done.stdout.split("MAXRSS_KB")[1]) / 1e6
    assert maxrss_gb < 1.5  # importing torch & co. takes ~0.5 GB; the declared model would take > 7 GB


def _flip_bytes_of(path: Path, tensor: torch.Tensor) -> None:
    """Overwrite, in the file's bytes, the stored record of ``tensor`` (as a hostile edit would)."""
    raw = path.read_bytes()
    data = tensor.contiguous().numpy().tobytes()
    at = raw.find(data)
    assert at > 0
    assert raw.find(data, at + 1) == -1
    poked = (tensor.contiguous() + 0.2).numpy().tobytes()
    path.write_bytes(raw[:at] + poked + raw[at + len(data) :])


def test_overwritten_tensor_records_in_a_model_file_are_refused(tmp_path) -> None:
    model = tiny_model()
    path = save_model_file(model, tmp_path / "model.pt")
    _, weight = max(model.state_dict().items(), key=lambda kv: kv[1].numel())
    _flip_bytes_of(path, weight)
    with pytest.raises(ModelFileError, match="checksum"):
        load_model_file(path)
    from ase_dostransformer.calculator import DOSCalculator

    with pytest.raises(ModelFileError, match="checksum"):
        DOSCalculator(model=str(path))


def test_model_files_round_trip_with_their_checksum(tmp_path) -> None:
    model = tiny_model()
    path = save_model_file(model, tmp_path / "model.pt", meta={"note": "x", "values": [1, 2.5]})
    blob = read_model_file(path)
    assert blob["version"] == 2
    assert len(blob["sha256"]) == 64
    loaded, meta = load_model_file(path)
    assert meta == {"note": "x", "values": [1, 2.5]}
    assert all(
        torch.equal(a, b) for a, b in zip(model.state_dict().values(), loaded.state_dict().values(), strict=True)
    )


def test_shipped_models_carry_checksums() -> None:
    from ase_dostransformer.pretrained import model_path

    for name in ("phonon", "edos"):
        assert read_model_file(model_path(name))["version"] == 2


def test_content_checksum_sees_values_types_and_shapes() -> None:
    a = {"w": torch.zeros(2, 3), "n": 1, "s": "x"}
    same = {"s": "x", "n": 1, "w": torch.zeros(2, 3)}
    assert content_sha256(a) == content_sha256(same)
    for other in (
        {"w": torch.zeros(3, 2), "n": 1, "s": "x"},
        {"w": torch.zeros(2, 3, dtype=torch.float64), "n": 1, "s": "x"},
        {"w": torch.zeros(2, 3), "n": 1.0, "s": "x"},
        {"w": torch.zeros(2, 3), "n": True, "s": "x"},
        {"w": torch.zeros(2, 3), "n": 1, "s": "y"},
    ):
        assert content_sha256(other) != content_sha256(a)
    with pytest.raises(TypeError):
        content_sha256({"f": object()})


def test_every_package_error_shares_one_base() -> None:
    from ase_dostransformer.training.resume import CheckpointError

    for cls in (ModelFileError, FileIntegrityError, UnsafeFileError):
        assert issubclass(cls, DOSTransformerError)
        assert issubclass(cls, ValueError)
    assert issubclass(CheckpointError, ValueError)


def test_an_unwritable_cache_folder_is_a_warning_not_a_failure(tmp_path) -> None:
    """The graphs are still returned when the cache cannot be written (root ignores chmod, so: a file in the way)."""
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    structures = [bulk("Si", "diamond", a=5.43)]
    y = np.ones((1, 51), dtype=np.float32)
    with pytest.warns(CacheWarning, match="not written"):
        graphs = cached_graphs(RECIPE, structures, y, "12" * 32, blocker / "cache")
    assert len(graphs) == 1
    assert torch.equal(graphs[0].y, torch.ones(1, 51))
