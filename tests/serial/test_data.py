"""Data sources and the per-rank sampler, against what they promise."""
import pickle

import numpy as np
import pytest

from mpitrain.data import ShardedSampler, load_dataset
from mpitrain.data.sampler import eval_indices
from mpitrain.data.tensors import random_crop_flip

torch = pytest.importorskip("torch")


@pytest.mark.parametrize("world", [1, 2, 3, 4])
def test_rank_slices_are_disjoint_equal_and_cover_the_used_part(world):
    size, per_rank = 1438, 32
    samplers = [ShardedSampler(size, r, world, per_rank, seed=5) for r in range(world)]
    for epoch in (0, 1):
        parts = [s.epoch_indices(epoch) for s in samplers]
        union = np.concatenate(parts)
        assert len(set(union.tolist())) == len(union)                        # disjoint
        assert {len(p) for p in parts} == {samplers[0].steps_per_epoch * per_rank}
        used = samplers[0].steps_per_epoch * world * per_rank
        assert used == size // (world * per_rank) * world * per_rank        # remainder dropped
        order = np.random.default_rng(5 + epoch).permutation(size)
        assert set(union.tolist()) == set(order[:used].tolist())           # same shuffle everywhere
    assert not np.array_equal(samplers[0].epoch_indices(0), samplers[0].epoch_indices(1))


def test_a_step_sees_the_same_samples_at_any_world_size():
    """Step s of 1 rank x batch B reads the same samples as step s of N ranks x B/N."""
    one = ShardedSampler(1000, 0, 1, 64, seed=1)
    four = [ShardedSampler(1000, r, 4, 16, seed=1) for r in range(4)]
    batches_one = list(one.batches(0))
    batches_four = [list(s.batches(0)) for s in four]
    for step, idx in batches_one:
        assert sorted(idx.tolist()) == sorted(np.concatenate([b[step][1] for b in batches_four]).tolist())


def test_eval_indices_cover_everything_once():
    for world in (1, 3, 4):
        got = np.sort(np.concatenate([eval_indices(359, r, world) for r in range(world)]))
        assert np.array_equal(got, np.arange(359))


def test_a_step_larger_than_the_data_is_refused():
    with pytest.raises(ValueError, match=r"a step takes 2048 samples \(4 ranks x 512\) but the data set has 1438"):
        ShardedSampler(1438, 0, 4, 512)


def test_digits_split_is_fixed_and_normalized():
    a, b = load_dataset("digits"), load_dataset("digits")
    assert (len(a.train), len(a.test)) == (1438, 359)
    assert torch.equal(a.test.labels, b.test.labels)
    x, _ = a.train.batch(np.arange(len(a.train)), "cpu", 8, train=False)
    assert abs(float(x.mean())) < 1e-3 and abs(float(x.std()) - 1) < 0.05


def write_fake_cifar(root, n=20):
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                 b"labels": rng.integers(0, 10, n).tolist()}
        with open(root / name, "wb") as f:
            pickle.dump(batch, f)


def test_cifar10_pickles_load_resize_and_augment(tmp_path):
    write_fake_cifar(tmp_path)
    splits = load_dataset("cifar10", str(tmp_path))
    assert (len(splits.train), len(splits.test), splits.num_classes) == (100, 20, 10)
    with open(tmp_path / "test_batch", "rb") as f:
        raw = pickle.load(f, encoding="bytes")
    assert np.array_equal(splits.test.images[3].numpy().reshape(-1), raw[b"data"][3])
    x, y = splits.train.batch(np.arange(8), "cpu", 48, train=True, generator=torch.Generator().manual_seed(0))
    assert x.shape == (8, 3, 48, 48) and y.shape == (8,)


def test_cifar10_missing_file_is_named(tmp_path):
    write_fake_cifar(tmp_path)
    (tmp_path / "data_batch_3").unlink()
    with pytest.raises(FileNotFoundError, match=r"CIFAR-10 file missing: .*data_batch_3"):
        load_dataset("cifar10", str(tmp_path))


def test_imagefolder_reads_one_directory_per_class(tmp_path):
    from PIL import Image
    for c, colour in (("cat", (255, 0, 0)), ("dog", (0, 0, 255))):
        (tmp_path / c).mkdir()
        for i in range(10):
            Image.new("RGB", (20, 12), colour).save(tmp_path / c / f"{i}.png")
    splits = load_dataset("imagefolder", str(tmp_path), img_size=16)
    assert splits.num_classes == 2 and len(splits.train) + len(splits.test) == 20
    batches = [s.host_batch(range(len(s)), 16, train=False) for s in (splits.train, splits.test)]
    images = torch.cat([x * s.std + s.mean for (x, _), s in zip(batches, (splits.train, splits.test))])
    labels = torch.cat([y for _, y in batches])
    assert images.shape[1:] == (3, 16, 16)
    assert bool((images[labels == 0][:, 0].round() == 255).all())
    assert bool((images[labels == 1][:, 2].round() == 255).all())
    assert bool((images[labels == 0][:, 2].round() == 0).all())


def test_random_crop_flip_moves_pixels_but_keeps_the_set_of_values():
    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).view(2, 3, 8, 8)
    out = random_crop_flip(x, pad=0, generator=torch.Generator().manual_seed(0))
    for i in range(2):
        assert torch.equal(out[i], x[i]) or torch.equal(out[i], x[i].flip(-1))


def test_synthetic_batches_are_made_on_the_device():
    s = load_dataset("synthetic", img_size=32, num_classes=7, channels=3)
    x, y = s.train.batch(range(5), "cpu", 32, train=True)
    assert x.shape == (5, 3, 32, 32) and int(y.max()) < 7 and s.test is None
