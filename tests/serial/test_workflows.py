"""What a user does around training: fine-tune from weights (--init-from), evaluate and predict
with a checkpoint, an image folder read lazily with augmentation, a TOML config, the run's
metadata line, TensorBoard scalars and the plot.

The image folder is made here with PIL: three classes of solid colours with noise, which a tiny
ViT learns in a few epochs, so the true class is the oracle for prediction.
"""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from launch import run_mpi

torch = pytest.importorskip("torch")
Image = pytest.importorskip("PIL.Image")

COLOURS = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 40, 220)}
TRAIN = ["-m", "mpitrain.train", "vit_digits", "--data", "imagefolder", "--img-size", "16",
         "--batch-size", "12", "--epochs", "6", "--lr", "3e-3", "--warmup", "2", "--no-progress",
         "--log-every", "2"]


def make_folder(root, per_class=14):
    rng = np.random.default_rng(0)
    files = {}
    for split, count in (("train", per_class), ("val", 4)):
        for name, rgb in COLOURS.items():
            (root / split / name).mkdir(parents=True)
            for i in range(count):
                h, w = int(rng.integers(18, 40)), int(rng.integers(18, 40))
                pixels = np.clip(np.array(rgb) + rng.normal(0, 25, (h, w, 3)), 0, 255).astype(np.uint8)
                path = root / split / name / f"{i}.{'png' if i % 2 else 'jpg'}"
                Image.fromarray(pixels).save(path)
                files.setdefault(split, []).append((path, name))
    return files


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("workflow")
    files = make_folder(tmp / "photos")
    proc = run_mpi(2, [*TRAIN, "--data-dir", str(tmp / "photos"), "--checkpoint-dir",
                       str(tmp / "ck"), "--log-jsonl", str(tmp / "run.jsonl"), "--tensorboard",
                       str(tmp / "tb")], timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    final = float(proc.stdout.split("test accuracy ")[-1].split("%")[0]) / 100
    return tmp, files, final


def python(*args, timeout=120):
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=timeout)


def test_evaluate_gives_the_trainers_accuracy_at_any_world_size(trained):
    tmp, _, final = trained
    results = []
    for ranks in (1, 3):
        out = tmp / f"eval{ranks}.json"
        proc = run_mpi(ranks, ["-m", "mpitrain.evaluate", str(tmp / "ck"), "--json", str(out)],
                       timeout=120)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        results.append(json.loads(out.read_text()))
    assert results[0]["confusion"] == results[1]["confusion"]
    assert results[0]["count"] == 12 and results[0]["classes"] == sorted(COLOURS)
    assert results[0]["accuracy"] == pytest.approx(final, abs=1e-4)
    assert results[0]["loss"] == pytest.approx(results[1]["loss"], rel=1e-5)


def test_consolidated_safetensors_and_pt_evaluate_like_the_checkpoint(trained):
    tmp, _, final = trained
    for name in ("model.safetensors", "model.pt"):
        proc = python("-m", "mpitrain.checkpoint", "consolidate", str(tmp / "ck"), str(tmp / name))
        assert proc.returncode == 0, proc.stderr
        proc = python("-m", "mpitrain.evaluate", str(tmp / name), "--json", str(tmp / f"{name}.json"))
        assert proc.returncode == 0, proc.stderr
        assert json.loads((tmp / f"{name}.json").read_text())["accuracy"] == pytest.approx(final, abs=1e-4)
    plain = torch.load(tmp / "model.pt", weights_only=True)          # torch alone reads it
    assert "head.weight" in plain and all(isinstance(v, torch.Tensor) for v in plain.values())


def test_predict_names_the_true_class_of_each_image(trained):
    tmp, files, _ = trained
    val = files["val"]
    proc = python("-m", "mpitrain.predict", str(tmp / "ck"), *[str(p) for p, _ in val],
                  "--top-k", "2", "--json", str(tmp / "pred.json"))
    assert proc.returncode == 0, proc.stderr
    predictions = json.loads((tmp / "pred.json").read_text())
    assert [p["image"] for p in predictions] == [str(p) for p, _ in val]
    assert all(len(p["top"]) == 2 for p in predictions)
    right = sum(p["top"][0]["class"] == name for p, (_, name) in zip(predictions, val))
    assert right >= len(val) - 1, predictions
    assert f"{val[0][0]}: " in proc.stdout


def test_the_run_header_line_and_the_resolved_config(trained):
    tmp, _, _ = trained
    lines = [json.loads(line) for line in (tmp / "run.jsonl").read_text().splitlines()]
    header = lines[0]
    assert header["kind"] == "run" and header["world_size"] == 2 and len(header["devices"]) == 2
    import mpitrain
    assert header["versions"]["mpitrain"] == mpitrain.__version__
    assert header["versions"]["torch"] == torch.__version__
    assert header["config"]["data"] == "imagefolder"
    from mpitrain.train.config import from_args
    again = from_args(["--config", str(tmp / "run.config.toml")])
    assert again.img_size == 16 and again.epochs == 6 and again.data_dir == header["config"]["data_dir"]
    assert again.micro_batch_size == 0        # as given, not as filled in for 2 ranks


def test_tensorboard_scalars_match_the_json_lines(trained):
    tmp, _, _ = trained
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    events = EventAccumulator(str(tmp / "tb"))
    events.Reload()
    board = [(e.step, e.value) for e in events.Scalars("loss")]
    lines = [json.loads(line) for line in (tmp / "run.jsonl").read_text().splitlines()]
    logged = [(r["step"], r["loss"]) for r in lines if "loss" in r]
    assert [s for s, _ in board] == [s for s, _ in logged]
    assert np.allclose([v for _, v in board], [v for _, v in logged], rtol=1e-6)
    assert len(events.Scalars("test_accuracy")) >= 1


def test_plot_draws_several_runs(trained, tmp_path):
    tmp, _, _ = trained
    out = tmp_path / "curves.png"
    proc = python("-m", "mpitrain.plot", str(tmp / "run.jsonl"), str(tmp / "run.jsonl"), "-o",
                  str(out), "--x", "time")
    assert proc.returncode == 0, proc.stderr
    import matplotlib.image
    assert matplotlib.image.imread(out).shape[0] > 100
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"step": 1}\nnot json\n')
    proc = python("-m", "mpitrain.plot", str(bad), "-o", str(out))
    assert proc.returncode == 2 and "bad.jsonl:2" in proc.stderr


def test_init_from_keeps_every_tensor_but_a_new_head_and_resizes_positions(tmp_path):
    from mpitrain.checkpoint import CheckpointError
    from mpitrain.models import VisionTransformer, ViTConfig
    from mpitrain.train.weights import init_from
    from safetensors.torch import save_file
    torch.manual_seed(1)
    pretrained = VisionTransformer(ViTConfig.named("vit_digits", num_classes=1000, img_size=8))
    state = {k: v.clone() for k, v in pretrained.state_dict().items()}
    torch.save({"state_dict": state}, tmp_path / "timm.pt")       # as timm's scripts wrap it
    save_file(state, str(tmp_path / "timm.safetensors"))
    for path in ("timm.pt", "timm.safetensors"):
        torch.manual_seed(2)
        model = VisionTransformer(ViTConfig.named("vit_digits", num_classes=10, img_size=16))
        fresh_head = model.head.weight.detach().clone()
        notes = init_from(model, tmp_path / path)
        assert any("new head for 10 classes" in n for n in notes)
        assert any("resized from 16 to 64 patches" in n for n in notes)
        got = model.state_dict()
        for name, tensor in state.items():
            if name.startswith("head."):
                continue
            if name == "pos_embed":
                assert torch.equal(got[name][:, :1], tensor[:, :1])       # the class token
                assert got[name].shape == (1, 65, tensor.shape[-1])
            else:
                assert torch.equal(got[name], tensor), name
        assert torch.equal(model.head.weight, fresh_head)
    other = VisionTransformer(ViTConfig.named("vit_digits_wide"))
    with pytest.raises(CheckpointError, match="pos_embed width|is .* there"):
        init_from(other, tmp_path / "timm.pt")


def test_positions_resized_to_their_own_size_are_unchanged():
    from mpitrain.train.weights import resize_pos_embed
    saved = torch.randn(1, 1 + 16, 8)
    assert torch.allclose(resize_pos_embed(saved, 17), saved, atol=1e-6)


def test_a_pt_with_more_than_tensors_is_refused(tmp_path):
    from mpitrain.checkpoint import CheckpointError, read_weights
    torch.save({"w": torch.zeros(2), "code": subprocess.CompletedProcess}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match="weights_only=True"):
        read_weights(tmp_path / "evil.pt")


def test_init_from_through_the_trainer_starts_where_the_weights_left_off(trained, tmp_path):
    """A run from the consolidated weights with a learning rate of ~0 scores what they scored."""
    tmp, _, final = trained
    python("-m", "mpitrain.checkpoint", "consolidate", str(tmp / "ck"), str(tmp_path / "w.safetensors"))
    proc = run_mpi(1, [*TRAIN, "--data-dir", str(tmp / "photos"), "--init-from",
                       str(tmp_path / "w.safetensors"), "--steps", "1", "--lr", "1e-12"],
                   timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "loaded 56 tensors" in proc.stdout
    assert float(proc.stdout.split("test accuracy ")[-1].split("%")[0]) / 100 == pytest.approx(final, abs=1e-4)


@pytest.mark.parametrize("kind", ["threads", "processes"])
def test_the_folder_is_decoded_lazily_and_as_pil_resizes(tmp_path, monkeypatch, kind):
    from mpitrain.data.decode import EVAL_CROP
    from mpitrain.data.sources import load_imagefolder
    monkeypatch.setenv("MPITRAIN_LOADER", kind)
    make_folder(tmp_path / "photos", per_class=6)
    splits = load_imagefolder(tmp_path / "photos", 16)
    wanted = [splits.test.files[0], splits.test.files[5]]
    with Image.open(wanted[1]) as im:                             # the oracle: PIL by itself
        w, h = im.size
        side = min(w, h) * EVAL_CROP
        box = ((w - side) / 2, (h - side) / 2, (w + side) / 2, (h + side) / 2)
        want = np.asarray(im.convert("RGB").resize((16, 16), Image.BILINEAR, box=box), np.float32)
    for other in set(splits.train.files + splits.test.files) - set(wanted):
        Path(other).unlink()                     # lazily: only the asked-for files are opened
    x, y = splits.test.host_batch([0, 5], 16, train=False)
    splits.test.close()
    assert x.shape == (2, 3, 16, 16) and y.tolist() == [0, 1]
    want = (torch.from_numpy(want.transpose(2, 0, 1)) - splits.test.mean[0]) / splits.test.std[0]
    if str(wanted[1]).endswith(".png"):                  # JPEG's draft mode may decode smaller
        assert torch.allclose(x[1], want, atol=1e-4)


def test_worker_processes_decode_what_threads_decode(tmp_path, monkeypatch):
    from mpitrain.data.sources import load_imagefolder
    make_folder(tmp_path / "photos", per_class=6)
    got = {}
    for kind in ("threads", "processes"):
        monkeypatch.setenv("MPITRAIN_LOADER", kind)
        monkeypatch.setenv("MPITRAIN_LOADER_WORKERS", "2")
        train = load_imagefolder(tmp_path / "photos", 16, seed=1).train
        train.set_epoch(2)
        train.prefetch(list(range(7)), 16, True)
        into = torch.zeros((2, 3, 16, 16), dtype=torch.uint8)       # as the GPU path decodes
        got[kind] = [train.images(list(range(7)), 16, True)[0],
                     train.images([3, 1], 16, False)[0],
                     train.images([3, 1], 16, False, out=into)[0].clone()]
        assert train.images([3, 1], 16, False, out=into)[0].data_ptr() == into.data_ptr()
        train.close()
    assert all(torch.equal(a, b) for a, b in zip(got["threads"], got["processes"]))
    assert torch.equal(got["processes"][1], got["processes"][2])   # out= gives the same bytes


@pytest.mark.parametrize("kind", ["threads", "processes"])
def test_a_broken_image_is_named_by_the_loader(tmp_path, monkeypatch, kind):
    from mpitrain.data.decode import DataError
    from mpitrain.data.sources import load_imagefolder
    monkeypatch.setenv("MPITRAIN_LOADER", kind)
    make_folder(tmp_path / "photos", per_class=6)
    train = load_imagefolder(tmp_path / "photos", 16).train
    Path(train.files[4]).write_bytes(b"not an image")
    with pytest.raises(DataError, match=Path(train.files[4]).name):
        train.host_batch(list(range(8)), 16, True)
    train.host_batch([0, 1], 16, True)                    # the loader still works afterwards
    train.close()


def test_a_killed_loader_process_is_an_error_not_a_hang(tmp_path, monkeypatch):
    from mpitrain.data.decode import DataError
    from mpitrain.data.sources import load_imagefolder
    monkeypatch.setenv("MPITRAIN_LOADER", "processes")
    monkeypatch.setenv("MPITRAIN_LOADER_WORKERS", "1")
    make_folder(tmp_path / "photos", per_class=6)
    train = load_imagefolder(tmp_path / "photos", 16).train
    train.host_batch([0], 16, True)
    for proc in train._decoder.processes:
        proc.kill()
        proc.wait()
    with pytest.raises(DataError, match="loader process exited"):
        train.host_batch([1, 2], 16, True)
    train.close()


def test_augmentation_depends_on_sample_and_epoch_only(tmp_path):
    from mpitrain.data.sources import load_imagefolder
    make_folder(tmp_path / "photos", per_class=6)
    a = load_imagefolder(tmp_path / "photos", 16, seed=3).train
    b = load_imagefolder(tmp_path / "photos", 16, seed=3).train
    first, _ = a.host_batch([1, 2, 3], 16, train=True)
    b.prefetch([2], 16, True)                      # another batching, as another world size
    alone, _ = b.host_batch([2], 16, train=True)
    assert torch.equal(first[1], alone[0])
    a.set_epoch(1)
    later, _ = a.host_batch([1, 2, 3], 16, train=True)
    assert not torch.equal(first, later)


def test_a_toml_config_with_flags_overriding_it(tmp_path):
    from mpitrain.train.config import ConfigError, from_args, write_toml
    path = tmp_path / "run.toml"
    path.write_text('model = "vit_b16"\nepochs = 3\nlr = 1\nparallel = "zero2"\n'
                    'checkpoint-activations = true\n')
    cfg = from_args(["--config", str(path), "--lr", "0.25"])
    assert (cfg.model, cfg.epochs, cfg.lr, cfg.parallel, cfg.checkpoint_activations) == \
        ("vit_b16", 3, 0.25, "zero2", True)
    write_toml(cfg, tmp_path / "back.toml")
    assert from_args(["--config", str(tmp_path / "back.toml")]) == cfg
    for text, message in (('epoch = 3\n', "unknown key 'epoch'"),
                          ('epochs = "3"\n', "epochs = '3' should be a int"),
                          ('epochs = [\n', "not valid TOML")):
        path.write_text(text)
        with pytest.raises(ConfigError, match=message):
            from_args(["--config", str(path)])


def test_help_is_grouped_and_lists_choices():
    proc = python("-m", "mpitrain.train", "--help")
    assert proc.returncode == 0
    for section in ("model and data:", "DiLoCo (--parallel diloco):", "checkpoints:", "reporting:"):
        assert section in proc.stdout
    assert "{dp,dp-naive,zero1,zero2,zero3,diloco}" in proc.stdout
    assert "--init-from" in proc.stdout and "--config FILE.toml" in proc.stdout
