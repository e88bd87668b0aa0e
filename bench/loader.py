"""Can the image-folder loader feed the GPU? Images/s of the loader (decode, random-resized crop,
flip, one batch ahead, uint8 as the GPU takes them) on MPITRAIN_LOADER_WORKERS threads, then as
many worker processes, against the trainer's images/s on synthetic data (no loader) and on the
same folder with each loader; vit_b16 bf16, one rank.

    python bench/loader.py --images 3000 --out bench/loader.json     (on the GPU machine)

The folder is made here: JPEGs of 500 x 375 (about the ImageNet mean size) of smooth random
content with noise, quality 90. The ratio loader / synthetic trainer says whether the loader
keeps up (>= 1: the GPU waits for nothing but itself).
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def make_images(root, first, count, classes, seed):
    from PIL import Image
    rng = np.random.default_rng((seed, first))
    yy, xx = np.mgrid[0:375, 0:500].astype(np.float32)
    for i in range(first, first + count):
        a = rng.uniform(0, 0.05, 6)
        img = np.stack([128 + 100 * np.sin(a[k] * xx + a[k + 3] * yy + i) for k in range(3)], -1)
        img += rng.normal(0, 12, img.shape)
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(
            root / f"c{i % classes}" / f"{i}.jpg", quality=90)


def make_folder(root, count, classes=10, seed=0):
    for c in range(classes):
        (root / f"c{c}").mkdir(parents=True, exist_ok=True)
    step = 100
    with ProcessPoolExecutor() as pool:
        list(pool.map(make_images, [root] * len(range(0, count, step)), range(0, count, step),
                      [min(step, count - f) for f in range(0, count, step)],
                      [classes] * len(range(0, count, step)), [seed] * len(range(0, count, step))))


def loader_rate(root, batch, img_size, batches):
    sys.path.insert(0, str(ROOT))
    from mpitrain.data.sources import load_imagefolder
    train = load_imagefolder(root, img_size).train
    order = np.random.default_rng(0).permutation(len(train))
    steps = [order[(i * batch) % (len(order) - batch):][:batch] for i in range(batches + 1)]
    train.images(steps[0], img_size, True)                      # start and warm the workers
    start = time.perf_counter()
    for i in range(1, batches + 1):
        if i < batches:
            train.prefetch(steps[i + 1], img_size, True)
        train.images(steps[i], img_size, True)
    rate = batches * batch / (time.perf_counter() - start)
    train.close()
    return rate


def trainer_rate(args, extra):
    cmd = [sys.executable, "-m", "mpitrain.train", "vit_b16", "--precision", "bf16", "--batch-size",
           str(args.batch), "--steps", str(args.steps), "--log-every", "5", "--warmup", "1",
           "--no-progress", "--eval-every", "100000", "--log-jsonl", "/tmp/loader-bench.jsonl", *extra]
    Path("/tmp/loader-bench.jsonl").unlink(missing_ok=True)
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    if out.returncode:
        raise RuntimeError(out.stdout[-2000:] + out.stderr[-2000:])
    rates = [json.loads(line).get("img_per_s") for line in open("/tmp/loader-bench.jsonl")]
    rates = [r for r in rates if r]
    return float(np.median(rates[1:])) if len(rates) > 1 else rates[-1]


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=3000)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--out", default="bench/loader.json")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "folder"
        t0 = time.perf_counter()
        make_folder(root, args.images)
        result = {"images": args.images, "made_s": time.perf_counter() - t0, "batch": args.batch,
                  "workers": os.environ.get("MPITRAIN_LOADER_WORKERS",
                                            str(len(os.sched_getaffinity(0))))}
        result["trainer_synthetic_img_s"] = trainer_rate(args, ["--data", "synthetic"])
        for kind in ("threads", "processes"):
            os.environ["MPITRAIN_LOADER"] = kind
            result[f"loader_{kind}_img_s"] = loader_rate(root, args.batch, 224, 12)
            result[f"trainer_imagefolder_{kind}_img_s"] = trainer_rate(
                args, ["--data", "imagefolder", "--data-dir", str(root)])
            result[f"loader_{kind}_over_trainer"] = (result[f"loader_{kind}_img_s"]
                                                     / result["trainer_synthetic_img_s"])
        result["processes_over_threads"] = (result["loader_processes_img_s"]
                                            / result["loader_threads_img_s"])
    print(json.dumps(result, indent=1))
    Path(args.out).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
