"""Benchmarks that print their numbers: ``python -m cglib bench <name>``.

Each benchmark is a function ``(quick: bool) -> dict`` that prints a small table and returns
the numbers; :data:`BENCHMARKS` maps names to them. Nothing here asserts a speed: the numbers
are for people and notes.
"""

from __future__ import annotations

import time
from collections.abc import Callable


def timeit(fn: Callable[[], object], repeats: int, warmup: int = 1) -> float:
    """Median seconds of ``repeats`` calls of ``fn`` after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    times.sort()
    return times[len(times) // 2]


BENCHMARKS: dict[str, Callable[..., dict]] = {}


def bench_train(quick: bool = False) -> dict:
    """Full training iterations (a D step and a G step) at batch 8: a baseline (fp32, NCHW,
    eager) against the settings the trainer picks on this device, plus the variants worth
    trying there (channels_last, torch.compile) on a GPU. Prints images/s, ms per iteration,
    achieved model FLOP/s (counted by torch's FLOP counter over one whole iteration), the
    projected time of one paper epoch (5,402 photos) and the data loader's images/s.
    On a CPU the full model runs at 64x64 (256x256 would take minutes per iteration)."""
    import dataclasses
    import tempfile
    import warnings
    from pathlib import Path

    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from cglib import data, env, images, train

    device = env.pick_device()
    size = 256 if device.type == "cuda" else 64
    batch = 8
    repeats = 3 if quick else (20 if device.type == "cuda" else 5)
    results: dict = {"device": str(device), "image_size": size, "batch_size": batch}
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        generator = torch.Generator().manual_seed(0)
        for domain in ("photos", "photos_test", "cartoons", "cartoons_smoothed"):
            for index in range(16):
                pixels = torch.randint(0, 256, (256, 256, 3), dtype=torch.uint8,
                                       generator=generator)
                images.write_image(root / domain / f"{index:03d}.jpg", pixels.numpy())
        base = train.preset("paper", data=str(root), out=str(root / "run"), image_size=size,
                            batch_size=batch, vgg_weights="random", samples=0,
                            precision="fp32", device=str(device))
        picked_precision = train.pick_precision("auto", device)
        variants = {"baseline fp32 NCHW eager": base,
                    f"trainer picks: {picked_precision}": dataclasses.replace(
                        base, precision=picked_precision)}
        if device.type == "cuda":
            variants[f"{picked_precision} + channels_last"] = dataclasses.replace(
                base, precision=picked_precision, channels_last=True)
            variants[f"{picked_precision} + compile"] = dataclasses.replace(
                base, precision=picked_precision, compile=True)
        batches = [torch.rand(batch, 3, size, size, device=device) * 2 - 1 for _ in range(3)]
        print(f"training iteration, batch {batch} at {size}x{size} on {device}")
        print(f"{'settings':36s} {'ms/iter':>9s} {'images/s':>9s} {'TFLOP/s':>8s} "
              f"{'paper epoch':>12s} {'ratio':>6s}")
        baseline_ms = None
        for name, config in variants.items():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                trainer = train.Trainer(config)
            trainer.optimizers = trainer._make_optimizers("adversarial")
            inputs = [b.contiguous(memory_format=torch.channels_last) if config.channels_last
                      else b for b in batches]

            def step(trainer=trainer, inputs=inputs) -> None:
                trainer.adversarial_step(*inputs)
                if device.type == "cuda":
                    torch.cuda.synchronize()

            with FlopCounterMode(display=False) as counter:
                step()
            flops = counter.get_total_flops()
            seconds = timeit(step, repeats, warmup=3 if config.compile else 1)
            baseline_ms = baseline_ms or seconds * 1000
            row = {"ms_per_iteration": seconds * 1000, "images_per_second": batch / seconds,
                   "tflops": flops / seconds / 1e12, "flops_per_iteration": flops,
                   "paper_epoch_seconds": 5402 / (batch / seconds),
                   "ratio": baseline_ms / (seconds * 1000)}
            results[name] = row
            print(f"{name:36s} {row['ms_per_iteration']:9.1f} {row['images_per_second']:9.1f} "
                  f"{row['tflops']:8.2f} {row['paper_epoch_seconds']:11.0f}s "
                  f"{row['ratio']:5.2f}x")
        workers = min(8, max(1, (torch.get_num_threads() or 2)))
        loader = data.domain_loader(root / "photos", batch, image_size=size, workers=workers)
        count = 0
        start = time.perf_counter()
        for _ in range(2 if quick else 4):
            for images_batch in loader:
                count += images_batch.shape[0]
        loader_rate = count / (time.perf_counter() - start)
        results["loader_images_per_second"] = loader_rate
        print(f"data loader ({workers} workers, JPEG 256x256 -> {size}): "
              f"{loader_rate:.0f} images/s")
    return results


BENCHMARKS["train"] = bench_train


def bench_content_loss(quick: bool = False) -> dict:
    """The content loss's cost per training step: VGG19 up to conv4_4 on the photos (no grad)
    and on the generated images (forward and backward to them), batch 8, random VGG filters
    (the speed is the same as ImageNet's). On a GPU at 256x256 in fp32, channels_last and bf16
    autocast; on a CPU at 64x64 in fp32. Prints ms per step and images/s."""
    import warnings

    import torch

    from cglib import env, losses, vgg

    device = env.pick_device()
    size, batch = (256, 8) if device.type == "cuda" else (64, 8)
    repeats = 3 if quick else 10
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        network = vgg.VGG19Features(weights="random").to(device)
    content = losses.ContentLoss(network)
    photos = torch.rand(batch, 3, size, size, device=device) * 2 - 1
    variants = {"fp32 NCHW": (torch.contiguous_format, None)}
    if device.type == "cuda":
        variants["fp32 channels_last"] = (torch.channels_last, None)
        variants["bf16 autocast channels_last"] = (torch.channels_last, torch.bfloat16)
    results: dict = {"device": str(device), "image_size": size, "batch_size": batch}
    print(f"content loss (VGG19 conv4_4), batch {batch} at {size}x{size} on {device}")
    for name, (memory_format, dtype) in variants.items():
        network.to(memory_format=memory_format)
        inputs = photos.contiguous(memory_format=memory_format)
        generated = inputs.clone().requires_grad_()

        def step(inputs=inputs, generated=generated, dtype=dtype) -> None:
            with torch.autocast(device.type, dtype=dtype or torch.float32,
                                enabled=dtype is not None):
                weighted, _ = content(inputs, generated)
            weighted.backward()
            if device.type == "cuda":
                torch.cuda.synchronize()

        seconds = timeit(step, repeats)
        results[name] = {"ms_per_step": seconds * 1000, "images_per_second": batch / seconds}
        print(f"{name:30s} {seconds * 1000:9.1f} ms {batch / seconds:9.1f} images/s")
    return results


BENCHMARKS["content_loss"] = bench_content_loss


def bench_edges(quick: bool = False) -> dict:
    """Edge smoothing (``cglib.edges``): images per second of ``smooth_edges`` at 256x256 on one
    core, its speed-up over the per-pixel loop ``smooth_edges_reference`` (timed on a few of the
    same images, whose bytes must agree), and the folder pipeline (read JPEG, smooth, write
    PNG) with one process and with all cores."""
    import tempfile
    from pathlib import Path

    import cv2
    import numpy as np

    from cglib import data, demodata, edges, images

    photos = [images.fit_to_size(images.read_image(demodata.source_path(*source)), 256)
              for sources in demodata.SOURCES.values() for source in sources]
    repeats, looped, count = (2, 1, 128) if quick else (5, 3, 512)
    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        fast = timeit(lambda: [edges.smooth_edges(photo) for photo in photos], repeats)
        fast_same = timeit(lambda: [edges.smooth_edges(photo) for photo in photos[:looped]],
                           repeats)
    finally:
        cv2.setNumThreads(threads)
    start = time.perf_counter()
    references = [edges.smooth_edges_reference(photo) for photo in photos[:looped]]
    loop = time.perf_counter() - start
    identical = all(np.array_equal(reference, edges.smooth_edges(photo))
                    for reference, photo in zip(references, photos[:looped], strict=True))
    results = {"images_per_second_one_core": len(photos) / fast,
               "loop_seconds_per_image": loop / looped,
               "speedup_over_loop": loop / fast_same, "identical_bytes": identical}
    rows = [("smooth_edges, one core", f"{results['images_per_second_one_core']:9.1f} images/s"),
            (f"per-pixel loop, {looped} image(s)", f"{loop / looped:9.3f} s/image"),
            ("speed-up over the loop", f"{results['speedup_over_loop']:9.1f} x "
                                       f"(identical bytes: {'yes' if identical else 'NO'})")]
    with tempfile.TemporaryDirectory() as folder:
        src = Path(folder) / "cartoons"
        for index in range(count):
            images.write_image(src / f"{index:04d}.jpg", photos[index % len(photos)])
        cores = data.cpu_cores()
        for workers in sorted({1, cores}) if not quick else [cores]:
            start = time.perf_counter()
            report = data.smooth_folder(src, Path(folder) / f"out{workers}", 256, workers)
            rate = len(report.written) / (time.perf_counter() - start)
            results[f"folder_images_per_second_{workers}_processes"] = rate
            rows.append((f"folder of {count} JPEGs, {workers} process(es)",
                         f"{rate:9.1f} images/s"))
    print("edge smoothing of 256x256 sample photos")
    for label, value in rows:
        print(f"  {label:36s} {value}")
    return results


BENCHMARKS["edges"] = bench_edges


def bench_generator(quick: bool = False) -> dict:
    """The full generator's inference speed: images/s at 256x256 (batch 1 and 8) and seconds
    for one 1920x1080 frame (through :func:`cglib.pretrained.cartoonize`: uint8 in and out,
    padding and tiles included), for the baseline (fp32, NCHW) and the faster settings of
    this device: channels_last, and bf16 autocast (fp16 on GPUs without fast bf16). On a CPU,
    bf16 autocast is often slower: it is measured, not assumed. Prints a table and the
    fastest setting with its speed-up over the baseline. Weights are random: speed does not
    depend on them."""
    import numpy as np
    import torch

    from cglib import env, models, pretrained

    device = env.pick_device()
    half = "fp16" if device.type == "cuda" and not env.bf16_capable(device) else "bf16"
    variants = [("fp32", False), ("fp32", True), (half, False), (half, True)]
    repeats = 2 if quick else (20 if device.type == "cuda" else 3)
    frame = np.random.default_rng(0).integers(0, 256, (1080, 1920, 3), dtype=np.uint8)

    def synchronize() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    results: dict = {"device": str(device), "threads": torch.get_num_threads()}
    print(f"generator inference on {device} ({torch.get_num_threads()} CPU threads), "
          f"cartoonize tile {pretrained.TILE}")
    print(f"{'settings':24s} {'256 b1 img/s':>13s} {'256 b8 img/s':>13s} {'1080p s':>9s}")
    for precision, channels_last in variants:
        generator = models.Generator().to(device).eval()
        memory_format = torch.channels_last if channels_last else torch.contiguous_format
        generator.to(memory_format=memory_format)
        autocast = pretrained._autocast(device, precision)
        row = {}
        for batch in (1, 8):
            x = (torch.rand(batch, 3, 256, 256, device=device) * 2 - 1).contiguous(
                memory_format=memory_format)

            def forward(x=x, generator=generator, autocast=autocast) -> None:
                with torch.inference_mode(), autocast:
                    generator(x)
                synchronize()

            seconds = timeit(forward, repeats, warmup=1 if batch == 1 or device.type == "cuda"
                             else 0)
            row[f"images_per_second_batch{batch}"] = batch / seconds

        def cartoonize_frame(generator=generator, precision=precision) -> None:
            pretrained.cartoonize(generator, frame, precision=precision)
            synchronize()

        row["frame_1080p_seconds"] = timeit(cartoonize_frame, 1 if device.type == "cpu"
                                            else repeats, warmup=int(device.type == "cuda"))
        name = f"{precision}{' + channels_last' if channels_last else ' NCHW'}"
        results[name] = row
        print(f"{name:24s} {row['images_per_second_batch1']:13.2f} "
              f"{row['images_per_second_batch8']:13.2f} {row['frame_1080p_seconds']:9.2f}")
    baseline = results["fp32 NCHW"]
    fastest = max((name for name in results if isinstance(results[name], dict)),
                  key=lambda name: results[name]["images_per_second_batch8"])
    results["fastest"] = fastest
    results["speedup_batch8"] = (results[fastest]["images_per_second_batch8"]
                                 / baseline["images_per_second_batch8"])
    results["speedup_frame"] = (baseline["frame_1080p_seconds"]
                                / results[fastest]["frame_1080p_seconds"])
    print(f"fastest at batch 8: {fastest}, {results['speedup_batch8']:.2f}x the fp32 NCHW "
          f"baseline (1080p frame: {results['speedup_frame']:.2f}x)")
    return results


BENCHMARKS["generator"] = bench_generator


def bench_onnx(quick: bool = False) -> dict:
    """The released-architecture generator on the CPU: torch (float32, eager) against
    onnxruntime running the graph of :func:`cglib.export.export_onnx`, one image of 256x256
    and of 301x450 (H x W), both with torch's thread count (onnxruntime's intra-op threads set
    to it), one run of each in turn after a warm-up run. Prints the median ms per image of
    each and torch's time over onnxruntime's. Weights are random: speed does not depend on
    them. Needs the export extra."""
    import statistics
    import tempfile
    from pathlib import Path

    import torch

    from cglib import export, models

    (onnxruntime,) = export.import_extra("onnxruntime")
    threads = torch.get_num_threads()
    repeats = 2 if quick else 7
    model = export.CroppedGenerator(models.Generator()).eval()
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    # idle onnxruntime threads would spin after each run, taking CPU from torch's next run
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    with tempfile.TemporaryDirectory() as folder:
        path = export.export_onnx(model.generator, Path(folder) / "generator.onnx")
        session = onnxruntime.InferenceSession(str(path), options,
                                               providers=["CPUExecutionProvider"])
    results: dict = {"threads": threads, "repeats": repeats,
                     "onnxruntime": onnxruntime.__version__, "torch": torch.__version__}
    print(f"generator on the CPU, batch 1, {threads} threads for torch and onnxruntime alike, "
          f"median of {repeats} runs")
    print(f"{'H x W':9s} {'torch ms':>9s} {'onnxruntime ms':>15s} {'torch/onnxruntime':>18s}")
    for height, width in ((256, 256), (301, 450)):
        image = torch.rand(1, 3, height, width) * 2 - 1
        feed = {"image": image.numpy()}

        def run_torch(image=image) -> None:
            with torch.inference_mode():
                model(image)

        def run_onnxruntime(feed=feed) -> None:
            session.run(None, feed)

        run_torch()  # warm-up
        run_onnxruntime()
        # one run of each in turn: a load that drifts while measuring affects both alike
        pairs = [(timeit(run_torch, 1, warmup=0), timeit(run_onnxruntime, 1, warmup=0))
                 for _ in range(repeats)]
        row = {"torch_ms": statistics.median(t for t, _ in pairs) * 1000,
               "onnxruntime_ms": statistics.median(o for _, o in pairs) * 1000}
        row["ratio"] = row["torch_ms"] / row["onnxruntime_ms"]
        results[f"{height}x{width}"] = row
        print(f"{height}x{width:<5d} {row['torch_ms']:9.1f} {row['onnxruntime_ms']:15.1f} "
              f"{row['ratio']:17.2f}x")
    return results


BENCHMARKS["onnx"] = bench_onnx
