"""GPU throughput of the harness (run by ``bench/gpu.sh``; about 3 minutes on one H100).

Measures, with bf16 autocast and channels-last:

1. OLTR's ResNet-10 @224 training images/s from in-memory tensors (batch 256, 1000 classes,
   SGD step included), and the same in fp32 NCHW for reference; target >= 15,000 img/s.
2. ResNet-10 @224 training images/s from JPEG files through the engine itself (``run_method``,
   second epoch of a generated split of ImageNet-sized JPEGs): the fast mode with CPU decoding,
   the fast mode with batched nvJPEG decoding on the GPU, and the parity (official) pipeline.
3. The stage-2 DME step (ResNet-10 + modulated attention + fc_add + meta-embedding head +
   discriminative centroid loss, batch 128) if ``oltr_bench.models.attention`` and the ``dme``
   method are present in this checkout; otherwise it says so and skips.

``--smoke`` runs the same code on the CPU with tiny sizes (a minute), to check the script.
Every measurement prints a ``RESULT`` line; a summary table closes the run. The exit status is 1
if a measurement failed with an error (a missed target is reported, not an error).

    python bench/bench_engine_gpu.py [--smoke] [--images 8192] [--compile]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_data import imagenet_like_jpeg  # noqa: E402  (the same generated JPEGs as the data benchmark)

from oltr_bench.config.schema import ModelConfig  # noqa: E402
from oltr_bench.method import DatasetInfo, LinearHead, MethodModel  # noqa: E402
from oltr_bench.models.backbones import build_backbone  # noqa: E402

TARGET_IN_MEMORY = 15_000
RESULTS: list[tuple[str, str]] = []
FAILED: list[str] = []


def report(name: str, value: str) -> None:
    RESULTS.append((name, value))
    print(f"RESULT {name}: {value}", flush=True)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(name: str, fn) -> None:
    try:
        fn()
    except Exception:  # one failed measurement must not hide the others
        FAILED.append(name)
        report(name, "ERROR (traceback above)")
        traceback.print_exc()


def time_steps(step, device: torch.device, warmup: int, steps: int) -> float:
    for _ in range(warmup):
        step()
    sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    sync(device)
    return (time.perf_counter() - start) / steps


def in_memory(device: torch.device, size: int, batch: int, bf16_cl: bool, compile_model: bool, steps: int) -> float:
    """Training images/s of ResNet-10 + linear head on one fixed in-memory batch."""
    torch.manual_seed(0)
    model = MethodModel(build_backbone(ModelConfig(backbone="resnet10", input_size=size, feat_dim=None)), LinearHead(512, 1000)).to(device)
    fmt = torch.channels_last if bf16_cl else torch.contiguous_format
    model = model.to(memory_format=fmt)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    x = torch.randn(batch, 3, size, size, device=device).contiguous(memory_format=fmt)
    y = torch.randint(0, 1000, (batch,), device=device)
    net = torch.compile(model) if compile_model else model

    def step():
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16_cl):
            loss = torch.nn.functional.cross_entropy(net(x)["logits"], y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return batch / time_steps(step, device, warmup=10 if not compile_model else 3, steps=steps)


def _write_jpeg(job: tuple[Path, int]) -> None:
    path, seed = job
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(imagenet_like_jpeg(seed))


def make_jpeg_split(root: Path, images: int, classes: int = 100):
    from oltr_bench.splits.format import write_split_dir

    lists = {"train": [(f"{i % classes}/{i}.jpg", i % classes) for i in range(images)],
             "val": [(f"{c}/v.jpg", c) for c in range(classes)], "test": [(f"{c}/t.jpg", c) for c in range(classes)]}

    def populate(tmp: Path) -> None:
        jobs = [(tmp / "img" / p, i) for i, (p, _) in enumerate(lists["train"] + lists["val"] + lists["test"])]
        with multiprocessing.Pool(os.cpu_count()) as pool:
            pool.map(_write_jpeg, jobs, chunksize=32)

    return write_split_dir(root / "gpubench", dataset="gpubench", classes=[str(c) for c in range(classes)], lists=lists,
                           roots={s: "img" for s in lists}, source={"kind": "bench"}, populate=populate)


def from_jpegs(split, runs: Path, device: str, size: int, batch: int, extra: list[str]) -> float:
    """Training images/s of the engine's second epoch on the JPEG split."""
    import json

    from oltr_bench.engine import distributed
    from oltr_bench.engine.runner import run_method

    workers = max(1, (os.cpu_count() or 2) - 2)
    overrides = ["model.backbone=resnet10", f"model.input_size={size}", "model.feat_dim=null", f"data.image_size={size}",
                 f"data.resize={size * 8 // 7}", f"data.workers={workers}", f"train.batch_size={batch}",
                 f"train.reference_batch_size={batch}", "train.epochs=2", "log.every_steps=0", "eval.batch_size=256", *extra]
    run_dir = run_method("plain", split, runs_root=runs, overrides=overrides, progress=False,
                         dist=distributed.Dist(device=torch.device(device)))
    epochs = [json.loads(line) for line in (run_dir / "train_log.jsonl").read_text().splitlines()]
    return [e for e in epochs if e["event"] == "epoch"][-1]["images_per_s"]


def dme_step(device: torch.device, size: int, batch: int, steps: int) -> float | None:
    """Training images/s of the stage-2 DME step, or None if DME is not in this checkout."""
    try:
        import oltr_bench.models.attention  # noqa: F401
    except ImportError:
        print("SKIPPED dme step: oltr_bench.models.attention is not in this checkout (the methods branch adds it)")
        return None
    from oltr_bench.config import resolve_config
    from oltr_bench.registry import METHODS

    if "dme" not in METHODS:
        print("SKIPPED dme step: method 'dme' is not registered in this checkout (baselines/dme.py)")
        return None
    cls = METHODS.get("dme")
    # OLTR's ImageNet-LT stage 2: ResNet-10 from the plain run, DME's own attention and 512 -> 512 fc_add.
    cfg = resolve_config("dme", "imagenet_lt", cls.defaults, ["model.backbone=resnet10", f"model.input_size={size}", "model.feat_dim=null"])
    counts = tuple(max(5, int(1280 * 0.995 ** c)) for c in range(1000))
    torch.manual_seed(0)
    backbone = build_backbone(cfg.model)
    method = cls(cfg.params, DatasetInfo(1000, counts, backbone.feat_dim))
    model = method.build_model(backbone).to(device).to(memory_format=torch.channels_last)
    lr = {"features": cfg.train.lr.features, "classifier": cfg.train.lr.classifier}
    optimizers = [torch.optim.SGD(method.param_groups(model, lr), lr=lr["classifier"], momentum=0.9, weight_decay=5e-4)]
    optimizers += method.extra_optimizers(model)
    x = torch.randn(batch, 3, size, size, device=device).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 1000, (batch,), device=device)

    def step():
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            outputs = model(x, y)
            loss, _ = method.loss(outputs, y, model)
        for opt in optimizers:
            opt.zero_grad(set_to_none=True)
        loss.backward()
        for opt in optimizers:
            opt.step()

    return batch / time_steps(step, device, warmup=5, steps=steps)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes on the CPU: checks the script, measures nothing meaningful")
    parser.add_argument("--images", type=int, default=8192, help="generated JPEGs for the file-based measurements")
    parser.add_argument("--compile", action="store_true", help="also measure torch.compile (adds minutes of compilation)")
    args = parser.parse_args()
    started = time.perf_counter()
    if args.smoke:
        device, size, batch, steps, images = torch.device("cpu"), 64, 16, 3, 64
    else:
        if not torch.cuda.is_available():
            sys.exit("bench_engine_gpu: no CUDA GPU visible (torch.cuda.is_available() is False); use --smoke on a CPU")
        device, size, batch, steps, images = torch.device("cuda"), 224, 256, 30, args.images
        torch.backends.cudnn.benchmark = True
        print(f"device: {torch.cuda.get_device_name(device)}, torch {torch.__version__}, CPU cores {os.cpu_count()}")

    measure("resnet10 in-memory bf16+channels_last", lambda: report(
        "resnet10 in-memory bf16+channels_last", f"{in_memory(device, size, batch, True, False, steps):,.0f} img/s"))
    measure("resnet10 in-memory fp32 NCHW", lambda: report(
        "resnet10 in-memory fp32 NCHW", f"{in_memory(device, size, batch, False, False, max(3, steps // 3)):,.0f} img/s"))
    if args.compile:
        measure("resnet10 in-memory bf16+channels_last+compile", lambda: report(
            "resnet10 in-memory bf16+channels_last+compile", f"{in_memory(device, size, batch, True, True, steps):,.0f} img/s"))

    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        split = make_jpeg_split(Path(tmp), images)
        print(f"generated {images} JPEGs (500x375, ~110 KB) in {time.perf_counter() - t:.0f} s")
        for name, extra in (("engine from JPEGs, fast mode, CPU decode", ["data.pipeline=fast", "data.decode=cpu"]),
                            ("engine from JPEGs, fast mode, device decode", ["data.pipeline=fast", "data.decode=device"]),
                            ("engine from JPEGs, parity mode", ["data.pipeline=parity"])):
            measure(name, lambda n=name, e=extra: report(n, f"{from_jpegs(split, Path(tmp) / 'runs', device.type, size, batch, e):,.0f} img/s"))

    def dme():
        value = dme_step(device, size, min(batch, 128), steps)
        report("stage-2 DME step", "skipped (not in this checkout)" if value is None else f"{value:,.0f} img/s")

    measure("stage-2 DME step", dme)

    print(f"\n{'measurement':52s} value")
    for name, value in RESULTS:
        print(f"{name:52s} {value}")
    if not args.smoke:
        value = next((v for n, v in RESULTS if n == "resnet10 in-memory bf16+channels_last"), "")
        rate = float(value.split()[0].replace(",", "")) if value[:1].isdigit() else 0.0
        print(f"target: ResNet-10 @224 from memory >= {TARGET_IN_MEMORY:,} img/s: {'PASS' if rate >= TARGET_IN_MEMORY else 'BELOW TARGET'}")
    print(f"total {time.perf_counter() - started:.0f} s" + ("  (smoke run on CPU: sizes are tiny, rates mean nothing)" if args.smoke else ""))
    sys.exit(1 if FAILED else 0)


if __name__ == "__main__":
    main()
