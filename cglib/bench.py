"""Benchmarks that print their numbers: ``python -m cglib bench <name>``.

Each benchmark is a function ``(quick: bool) -> dict`` that prints a small table and returns
the numbers; :data:`BENCHMARKS` maps names to them. Nothing here asserts a speed: the numbers
are for people and notes.
"""

from __future__ import annotations

import copy
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from cglib import (
    authors,
    batches,
    data,
    demodata,
    edges,
    env,
    export,
    flow,
    images,
    inference,
    losses,
    metrics,
    models,
    pretrained,
    runs,
    steps,
    train,
    vgg,
)
from cglib.config import PHASE, PHASES, Phase, preset


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
    """Full training steps (:func:`cglib.steps.adversarial_step`: a D update and a G update)
    of the paper's model at batch 8, side by side in one run: the fp32 eager baseline against
    the precision the trainer picks here (bf16 on CPUs with native bf16 and on recent GPUs),
    plus channels_last and torch.compile on a GPU. Prints ms per step, images/s, achieved
    TFLOP/s (torch's FLOP counter over one step), the projected time of one paper epoch (5,402
    photos), the data pipeline's images/s (JPEG decode, fit, batches) and, with several GPUs,
    torchrun's throughput on 1 and on all of them. On a CPU the model runs at 64x64 (256x256
    takes seconds per step there)."""
    device = env.pick_device()
    size, batch = (256, 8) if device.type == "cuda" else (64, 8)
    repeats = 3 if quick else (20 if device.type == "cuda" else 5)
    results: dict = {"device": str(device), "image_size": size, "batch_size": batch}
    print(f"training step, batch {batch} at {size}x{size} on {device}")
    print(f"{'settings':32s} {'ms/step':>9s} {'images/s':>9s} {'TFLOP/s':>8s} "
          f"{'paper epoch':>12s} {'ratio':>6s}")
    baseline = None
    for name, precision, channels_last, compiled in _train_variants(device):
        step, inputs = _training_step(device, precision, channels_last, compiled, size, batch)
        with FlopCounterMode(display=False) as counter:
            step(inputs)
        seconds = timeit(lambda step=step, inputs=inputs: step(inputs), repeats,
                         warmup=3 if compiled else 1)
        baseline = baseline or seconds
        row = {"ms_per_step": seconds * 1000, "images_per_second": batch / seconds,
               "tflops": counter.get_total_flops() / seconds / 1e12,
               "paper_epoch_seconds": 5402 * seconds / batch, "ratio": baseline / seconds}
        results[name] = row
        print(f"{name:32s} {row['ms_per_step']:9.1f} {row['images_per_second']:9.1f} "
              f"{row['tflops']:8.2f} {row['paper_epoch_seconds']:11.0f}s {row['ratio']:5.2f}x")
    results["pipeline_images_per_second"] = _bench_pipeline(size, batch, quick)
    results["torchrun"] = _bench_torchrun(quick)
    return results


def _train_variants(device: torch.device) -> list[tuple[str, str, bool, bool]]:
    """(name, precision, channels_last, compile) of each row of :func:`bench_train`."""
    picked, _ = env.training_precision("auto", device)
    variants = [("baseline fp32 NCHW eager", "fp32", False, False),
                (f"trainer picks: {picked}", picked, False, False)]
    if device.type == "cuda":
        variants += [(f"{picked} + channels_last", picked, True, False),
                     (f"{picked} + compile", picked, False, True)]
    return variants


def _training_step(device: torch.device, precision: str, channels_last: bool, compiled: bool,
                   size: int, batch: int, phase: Phase = PHASE["adversarial"]
                   ) -> tuple[Callable, list[torch.Tensor]]:
    """One step of ``phase`` of the paper's networks, as the trainer runs it, and its inputs:
    photos, cartoons and smoothed cartoons (random, in [-1, 1])."""
    memory = torch.channels_last if channels_last else torch.contiguous_format
    generator = models.Generator().to(device, memory_format=memory)
    discriminator = models.Discriminator().to(device, memory_format=memory)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # random filters: the speed is the same
        content = losses.ContentLoss(vgg.VGG19Features(weights="random")).to(device)
    optimizers = {name: torch.optim.Adam(network.parameters(), 1e-5, betas=(0.5, 0.999))
                  for name, network in (("generator", generator),
                                        ("discriminator", discriminator))}
    G, D = (torch.compile(generator), torch.compile(discriminator)) if compiled else (
        generator, discriminator)
    updater = steps.Updater(device, precision, max_nonfinite=10)
    pool = losses.ImagePool(50, torch.Generator().manual_seed(0))
    inputs = [(torch.rand(batch, 3, size, size, device=device) * 2 - 1).contiguous(
        memory_format=memory) for _ in range(3)]

    def step(inputs: list[torch.Tensor]) -> None:
        batch = dict(zip(batches.TRAINING_DOMAINS, inputs, strict=True))
        updater.apply(steps.bind(phase.step, G=G, D=D, optimizer=optimizers["generator"],
                               optimizers=optimizers, pool=pool, content=content, **batch,
                               kind="lsgan", edge_loss=True), (generator, discriminator))
        _synchronize(device)

    return step, inputs


def _bench_pipeline(size: int, batch: int, quick: bool) -> float:
    """images/s of the training data pipeline (:class:`cglib.batches.TrainingStreams`) on
    256x256 JPEG files fitted to ``size``, with worker processes."""
    workers = min(4, max(1, data.cpu_cores()))
    count = 64 if quick else 256
    with tempfile.TemporaryDirectory() as folder:
        rng = np.random.default_rng(0)
        for index in range(count):
            pixels = cv2.resize(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8), (256, 256))
            images.write_image(Path(folder) / "photos" / f"{index:04d}.jpg", pixels)
        streams = batches.TrainingStreams(folder, batch_size=batch, image_size=size, seed=0,
                                          device=torch.device("cpu"),
                                          workers=workers).streams(("photos",))
        next(streams["photos"])  # workers started
        start = time.perf_counter()
        drawn = sum(next(streams["photos"]).shape[0] for _ in range(2 * count // batch))
        rate = drawn / (time.perf_counter() - start)
    print(f"data pipeline ({workers} workers, JPEG 256x256 -> {size}): {rate:.0f} images/s")
    return rate


def _bench_torchrun(quick: bool) -> dict:
    """With several GPUs: images/s of ``torchrun -m cglib train`` (the paper's model, 256x256,
    batch 8 per GPU) on one GPU and on all of them, from each run's metric lines."""
    count = torch.cuda.device_count()
    if count < 2:
        print("torchrun throughput: needs 2 or more GPUs (here: "
              f"{count}); python -m cglib bench train on a machine with several shows it")
        return {}
    rows = {}
    with tempfile.TemporaryDirectory() as folder:
        root = demodata.ensure_demo_dataset("paper")
        for processes in (1, count):
            out = Path(folder) / f"run{processes}"
            subprocess.run([sys.executable, "-m", "torch.distributed.run",
                            f"--nproc_per_node={processes}", "-m", "cglib", "train",
                            "--profile", "paper", "--data", str(root), "--out", str(out),
                            "--batch-size", str(8 * processes), "--vgg-weights", "random",
                            "--init-epochs", "0", "--init-decay-epochs", "0", "--epochs", "1",
                            "--decay-epochs", "0", "--steps-per-epoch", "20" if quick else "60",
                            "--log-every", "10", "--samples", "0"], check=True)
            rates = [line["images_per_second"] for line in runs.read_run(out).metrics][1:]
            rows[processes] = float(np.median(rates))
            print(f"torchrun, {processes} GPU(s), batch {8 * processes}: "
                  f"{rows[processes]:.0f} images/s")
    print(f"scaling: {rows[count] / rows[1]:.2f}x on {count} GPUs")
    return rows


BENCHMARKS["train"] = bench_train


#: The GPU check's sizes (``full``) and the tiny ones that prove its code path on a CPU
#: (``quick``): training resolution and batch, video frame sizes (H, W), the tile of the
#: tiled runs, timed repeats, the seconds, profile and VGG19 weights of the fine-tuning run.
GPU_CHECK = {
    "full": {"size": 256, "batch": 8, "frames": ((720, 1280), (1080, 1920)), "tile": 512,
             "repeats": 10, "fine_tune_seconds": 180.0, "profile": "paper", "vgg": "auto"},
    "quick": {"size": 32, "batch": 2, "frames": ((72, 128), (108, 192)), "tile": 64,
              "repeats": 1, "fine_tune_seconds": 0.0, "profile": "smoke", "vgg": "random"},
}

#: Photos in one epoch of the paper's data set, and its schedule's epochs per phase.
PAPER_PHOTOS = 5402


def bench_gpu(quick: bool = False) -> dict:
    """The check to run when a GPU can be had, in about 8 minutes on one: training images/s
    of the paper's model at 256x256, batch 8, in fp32, bf16 autocast, bf16 with channels-last
    and bf16 with torch.compile (peak memory of each; the projected time of one paper epoch
    and of the whole schedule, 20 initialization and 200 adversarial epochs); inference
    frames/s at 720p and 1080p with a released generator, whole and in exact tiles of 512
    (peak memory of each); and a 3-minute fine-tuning of the released Hosoda generator under
    the paper profile on the demo set, with its PSNR to the released Hayao generator's
    outputs of the held-out photos at the start and at the end. ``quick`` (and any machine
    without CUDA): the same code path at tiny sizes, the smoke profile, two steps."""
    device = env.pick_device()
    sizes = GPU_CHECK["quick" if quick or device.type != "cuda" else "full"]
    if device.type != "cuda":
        print(f"no CUDA GPU here ({device}): the check's code path at tiny sizes")
    results = {"device": torch.cuda.get_device_name(device) if device.type == "cuda"
               else str(device), "sizes": sizes}
    results["train"] = _gpu_training(device, sizes)
    results["inference"] = _gpu_inference(device, sizes)
    results["fine_tune"] = _gpu_fine_tune(sizes)
    return results


def _gpu_rows(device: torch.device) -> list[tuple[str, str, bool, bool]]:
    """(name, precision, channels_last, compile) of the training rows; torch.compile only on
    CUDA (on a CPU it needs a C++ toolchain and minutes)."""
    rows = [("fp32", "fp32", False, False), ("bf16 autocast", "bf16", False, False),
            ("bf16 + channels-last", "bf16", True, False)]
    return rows + [("bf16 + torch.compile", "bf16", False, True)] * (device.type == "cuda")


def _peak_memory(device: torch.device) -> float | None:
    """GiB of the device's peak allocation since the last reset; None on a CPU."""
    if device.type != "cuda":
        return None
    return torch.cuda.max_memory_allocated(device) / 2**30


def _reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def _gpu_training(device: torch.device, sizes: dict) -> dict:
    size, batch = sizes["size"], sizes["batch"]
    print(f"\ntraining, batch {batch} at {size}x{size} ({PAPER_PHOTOS} photos an epoch; the "
          "schedule: 20 initialization + 200 adversarial epochs)")
    print(f"{'settings':24s} {'init img/s':>10s} {'adv img/s':>10s} {'peak GiB':>9s} "
          f"{'epoch':>8s} {'schedule':>9s}")
    rows = {}
    for name, precision, channels_last, compiled in _gpu_rows(device):
        rates = []
        _reset_peak(device)
        for phase in PHASES:
            step, inputs = _training_step(device, precision, channels_last, compiled, size,
                                          batch, phase)
            seconds = timeit(lambda step=step, inputs=inputs: step(inputs), sizes["repeats"],
                             warmup=3 if compiled else 1)
            rates.append(batch / seconds)
        epoch = PAPER_PHOTOS / rates[1]
        schedule = 20 * PAPER_PHOTOS / rates[0] + 200 * epoch
        rows[name] = {"init_images_per_second": rates[0], "images_per_second": rates[1],
                      "peak_gib": _peak_memory(device), "epoch_seconds": epoch,
                      "schedule_hours": schedule / 3600}
        peak = "-" if rows[name]["peak_gib"] is None else f"{rows[name]['peak_gib']:.1f}"
        print(f"{name:24s} {rates[0]:10.1f} {rates[1]:10.1f} {peak:>9s} {epoch / 60:7.1f}m "
              f"{schedule / 3600:8.1f}h")
    return rows


def _gpu_inference(device: torch.device, sizes: dict) -> dict:
    generator, which = _released_or_random("hayao")
    generator = generator.to(device).eval()
    precision = env.inference_precision("auto", device)
    print(f"\ninference, the {which} generator, {precision}")
    print(f"{'frame':>10s} {'run':>10s} {'frames/s':>9s} {'peak GiB':>9s}")
    rows = {}
    for height, width in sizes["frames"]:
        frame = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
        for run, tile in (("whole", height * width), (f"tiles {sizes['tile']}", sizes["tile"])):
            _reset_peak(device)

            def cartoonize(frame=frame, tile=tile) -> None:
                inference.cartoonize(generator, frame, tile=tile, precision=precision)
                _synchronize(device)

            seconds = timeit(cartoonize, sizes["repeats"])
            row = {"frames_per_second": 1 / seconds, "peak_gib": _peak_memory(device)}
            rows[f"{height}x{width} {run}"] = row
            peak = "-" if row["peak_gib"] is None else f"{row['peak_gib']:.1f}"
            print(f"{height:>4d}x{width:<5d} {run:>10s} {1 / seconds:9.2f} {peak:>9s}")
    return rows


def _released_or_random(style: str) -> tuple[models.Generator, str]:
    """The released ``style`` generator when its weights are here, else the same network with
    random weights (the speed is the same); and which it is."""
    if pretrained.weights_available(style):
        return pretrained.load(style), f"released {style}"
    return pretrained.from_official(authors.random_state()), f"randomly weighted ({style} absent)"


def _gpu_fine_tune(sizes: dict) -> dict:
    """Fine-tune the released Hosoda generator under ``sizes['profile']`` on the demo set for
    ``sizes['fine_tune_seconds']`` (at least one epoch of two steps), measured against the
    released Hayao generator's outputs of the held-out photos."""
    if not all(pretrained.weights_available(style) for style in ("hosoda", "hayao")):
        print("\nfine-tuning: skipped, the released hosoda and hayao weights are not both in "
              f"{env.paths().weights}")
        return {}
    profile = sizes["profile"]
    root = demodata.ensure_demo_dataset(profile)
    with tempfile.TemporaryDirectory() as folder:
        # one long epoch, stopped by the clock: no epoch end, no checkpoint in the timing
        config = preset(profile, data=str(root), out=folder, init_from="hosoda",
                              reference_style="hayao", vgg_weights=sizes["vgg"], epochs=1,
                              decay_epochs=0, steps_per_epoch=10**6, checkpoint_every=10**6,
                              log_every=10**6)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            trainer = train.Trainer(config)
        start = _reference_psnr(trainer)
        began = time.perf_counter()
        while True:
            trainer.fit(until_step=trainer.progress.step + config.batch_size,
                        progress_bar=False)
            if time.perf_counter() - began >= sizes["fine_tune_seconds"]:
                break
        seconds = time.perf_counter() - began
        end = _reference_psnr(trainer)
    row = {"steps": trainer.progress.step, "seconds": seconds, "psnr_start": start,
           "psnr_end": end, "content_layer": trainer.networks.content.vgg.layer,
           "vgg_weights": trainer.networks.content.vgg.weights}
    print(f"\nfine-tuning hosoda -> hayao ({profile} profile, VGG {row['vgg_weights']} "
          f"{row['content_layer']}): {row['steps']} steps in {seconds:.0f} s; PSNR to hayao's "
          f"outputs {start:.2f} -> {end:.2f} dB")
    return row


def _reference_psnr(trainer: train.Trainer) -> float:
    outputs = trainer.samples.outputs(trainer.networks.generator)
    return metrics.measure(outputs, reference=trainer.samples.references)["psnr"]


BENCHMARKS["gpu"] = bench_gpu


def bench_content_loss(quick: bool = False) -> dict:
    """The content loss's cost per training step: VGG19 up to conv4_4 on the photos (no grad)
    and on the generated images (forward and backward to them), batch 8, random VGG filters
    (the speed is the same as ImageNet's). On a GPU at 256x256 in fp32, channels_last and bf16
    autocast; on a CPU at 64x64 in fp32. Prints ms per step and images/s."""
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
    """The released generator's inference, side by side in one run with the same threads:
    the authors' network (:func:`cglib.authors.forward`, fp32) against cglib's default settings
    (:func:`cglib.inference.cartoonize`: bf16 on CPUs with native bf16, fp32 elsewhere), at
    256x256 and 450x301, repeats interleaved so that a busy machine slows both alike; then a
    large photo (4000x3000; --quick: 1200x900) whole against exact tiles of 1024 (--quick:
    256), each in a fresh process: seconds, peak memory and the PSNR between them. Weights are
    random: speed does not depend on them."""
    device = env.pick_device()
    state = authors.random_state()
    ours = pretrained.from_official(state).to(device).eval()
    state = {key: tensor.to(device) for key, tensor in state.items()}
    results: dict = {"device": str(device), "threads": torch.get_num_threads(),
                     "precision": env.inference_precision("auto", device)}
    print(f"generator inference on {device}, {torch.get_num_threads()} threads; cglib's default "
          f"precision here: {results['precision']}")
    print(f"{'size':>9s} {'authors ms':>11s} {'cglib ms':>9s} {'ratio':>6s}")
    for height, width in ((256, 256), (301, 450)):
        photo = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
        x = images.to_tensor([photo]).to(device)

        def run_authors(x=x) -> None:
            with torch.inference_mode():
                authors.forward(state, x)
            _synchronize(device)

        def run_ours(photo=photo) -> None:
            inference.cartoonize(ours, photo)
            _synchronize(device)

        authors_s, ours_s = interleaved(run_authors, run_ours, 2 if quick else 5)
        results[f"{height}x{width}"] = {"authors_ms": authors_s * 1000, "cglib_ms": ours_s * 1000,
                                        "ratio": authors_s / ours_s}
        print(f"{height:>4d}x{width:<4d} {authors_s * 1000:11.0f} {ours_s * 1000:9.0f} "
              f"{authors_s / ours_s:5.2f}x")
    results["large"] = _bench_large_photo(quick)
    return results


def interleaved(first: Callable[[], object], second: Callable[[], object], repeats: int
                ) -> tuple[float, float]:
    """Median seconds of ``first`` and of ``second``, run alternately ``repeats`` times each
    after one untimed call of each, so that load on a shared machine hits both alike."""
    first(), second()
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(repeats):
        for fn, kept in ((first, times[0]), (second, times[1])):
            start = time.perf_counter()
            fn()
            kept.append(time.perf_counter() - start)
    return tuple(sorted(kept)[len(kept) // 2] for kept in times)


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _bench_large_photo(quick: bool) -> dict:
    """A large photo whole and in exact tiles, each in a fresh process (so that each peak of
    memory is its own): seconds, peak memory, PSNR whole vs tiled."""
    height, width, tile = (900, 1200, 256) if quick else (3000, 4000, 1024)
    rows = {}
    print(f"a {width}x{height} photo, whole and in exact tiles of {tile} (fresh process each)")
    print(f"{'run':>12s} {'seconds':>8s} {'peak memory':>12s}")
    with tempfile.TemporaryDirectory() as folder:
        context = multiprocessing.get_context("spawn")
        for name, run_tile in (("whole", height * width), (f"tiles {tile}", tile)):
            output = f"{folder}/{run_tile}.npy"
            with context.Pool(1) as pool:
                seconds, peak = pool.apply(_large_photo_run, (height, width, run_tile, output))
            rows[name] = {"seconds": seconds, "peak_bytes": peak, "output": np.load(output)}
            print(f"{name:>12s} {seconds:8.1f} {peak / 2**30:10.2f} GB")
    whole, tiled = (row.pop("output") for row in rows.values())
    rows["psnr_db"] = metrics.psnr(whole, tiled)
    print(f"PSNR whole vs tiled: {rows['psnr_db']:.1f} dB")
    return rows


def _large_photo_run(height: int, width: int, tile: int, output: str) -> tuple[float, int]:
    """In a fresh process: cartoonize a photo-like image of ``height`` x ``width`` with tiles
    of ``tile``, save the result to ``output``; returns (seconds, peak bytes: the device's on
    a GPU, the process's resident memory on a CPU)."""
    import resource  # Unix only: imported here so that the command line works everywhere

    device = env.pick_device()
    generator = pretrained.from_official(authors.random_state()).to(device).eval()
    source = images.read_image(demodata.source_path("skimage", "data/astronaut.png"))
    photo = cv2.resize(source, (width, height), interpolation=cv2.INTER_CUBIC)
    start = time.perf_counter()
    cartoon = inference.cartoonize(generator, photo, tile=tile)
    _synchronize(device)
    seconds = time.perf_counter() - start
    np.save(output, cartoon)
    if device.type == "cuda":
        return seconds, torch.cuda.max_memory_allocated(device)
    return seconds, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


BENCHMARKS["generator"] = bench_generator


def bench_onnx(quick: bool = False) -> dict:
    """The released-architecture generator on the CPU: torch (float32, eager) against
    onnxruntime running the graph of :func:`cglib.export.export_onnx`, one image of 256x256
    and of 301x450 (H x W), both with torch's thread count (onnxruntime's intra-op threads set
    to it), one run of each in turn after a warm-up run. Prints the median ms per image of
    each and torch's time over onnxruntime's. Weights are random: speed does not depend on
    them. Needs the export extra."""
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

        torch_seconds, onnx_seconds = interleaved(run_torch, run_onnxruntime, repeats)
        row = {"torch_ms": torch_seconds * 1000, "onnxruntime_ms": onnx_seconds * 1000,
               "ratio": torch_seconds / onnx_seconds}
        results[f"{height}x{width}"] = row
        print(f"{height}x{width:<5d} {row['torch_ms']:9.1f} {row['onnxruntime_ms']:15.1f} "
              f"{row['ratio']:17.2f}x")
    return results


BENCHMARKS["onnx"] = bench_onnx


def bench_video(quick: bool = False, clips: Sequence[str] = ()) -> dict:
    """Flicker and speed of video cartoonization, side by side in one run. For each clip (the
    video files given, or the three clips of :func:`cglib.demodata.clip_frames`, a pan, a zoom
    and a moving square, made from the first photo in ``CGLIB_REFERENCE_DIR`` or the chelsea
    test photo and written as H.264: 854x480, 12 frames; 256x192, 8 frames with ``quick``)
    with the Hayao generator (random weights when its file is absent), three runs of
    :func:`cglib.video.cartoonize_video` from the file to a lossless file (so that the
    cartoons are measured as made): frame by frame as the video command ran before (batches
    of 4, decoding and encoding in the generator's thread, the bf16 copy in the default
    layout), frame by frame as it runs now
    (its default batches, decoding and encoding beside the generator) and temporal (now).
    Prints the warping error (:mod:`cglib.flow`) of the input, of the frame-by-frame cartoon
    and of the temporal one (:mod:`cglib.temporal`), the worst PSNR of a temporal frame to
    its frame-by-frame cartoon, the largest difference between the two frame-by-frame
    cartoons (levels), and the frames/s of each run, with the speed-up of now over before."""
    generator = _video_generator()
    settings = inference.Settings.resolve(generator, None, "auto", "auto")
    results: dict = {"precision": settings.precision}
    print(f"video: warping error (levels of 255) and frames/s, {settings.precision} on "
          f"{settings.device}")
    with tempfile.TemporaryDirectory() as folder:
        measured = _video_clips(quick, clips, Path(folder))
        print(f"{'clip':18s} {'input':>6s} {'frames':>7s} {'temporal':>9s} {'min PSNR':>9s} "
              f"{'gap':>4s} {'fps before':>11s} {'fps now':>8s} {'speed-up':>9s} "
              f"{'fps temporal':>13s}")
        for name, path in measured:
            row = _video_row(generator, path, Path(folder))
            results[name] = row
            print(f"{name:18s} {row['input']:6.2f} {row['frame_by_frame']:7.2f} "
                  f"{row['temporal']:9.2f} {row['min_psnr']:8.1f}dB {row['max_gap']:4d} "
                  f"{row['fps_before']:11.3f} {row['fps_now']:8.3f} {row['speed_up']:8.2f}x "
                  f"{row['fps_temporal']:13.3f}")
    return results


def _video_generator() -> nn.Module:
    """The released Hayao generator where its file is at hand, else random weights."""
    if pretrained.weights_available("hayao"):
        return pretrained.load_official("hayao")
    print("the Hayao weights are absent here: a generator with random weights stands in")
    return models.Generator().eval()


def _video_clips(quick: bool, clips: Sequence[str], folder: Path) -> list[tuple[str, Path]]:
    """(name, video file) of each clip to measure: the files in ``clips``, else the three
    motions of :func:`cglib.demodata.clip_frames` written into ``folder``."""
    if clips:
        return [(Path(clip).name, Path(clip)) for clip in clips]
    count = 8 if quick else 12
    reference = os.environ.get("CGLIB_REFERENCE_DIR")
    found = images.list_images(reference) if reference and Path(reference).is_dir() else []
    source = found[0] if found else demodata.source_path("skimage", "data/chelsea.png")
    width, height = (256, 192) if quick else (854, 480)
    photo = images.read_image(source)
    print(f"clips made from {source.name}, {count} frames of {width}x{height}")
    return [(f"{motion} {source.stem}",
             demodata.write_video(folder / f"{motion}.mp4",
                                  demodata.clip_frames(photo, motion, count, width, height), 24))
            for motion in demodata.MOTIONS]


def _decoded(path: Path, count: int | None = None) -> list[np.ndarray]:
    """The frames of the video ``path`` (the first ``count``), H x W x 3 uint8 RGB."""
    import av

    with av.open(str(path)) as container:
        frames = []
        for frame in container.decode(video=0):
            frames.append(frame.to_ndarray(format="rgb24"))
            if len(frames) == count:
                break
    return frames


#: The runs of :func:`bench_video`, in the order they run: name -> cartoonize_video's options.
#: The first pays for the generator's bf16 copy: the run measured against the others. "before"
#: also runs the generator as it ran then (:func:`_as_before`).
VIDEO_RUNS = {"now": {"temporal": False},
              "before": {"batch_size": 4, "overlap": False, "temporal": False},
              "temporal": {}}


def _as_before(generator: nn.Module, settings: inference.Settings) -> tuple[nn.Module, str]:
    """(module, precision) that run ``generator`` as the video command ran it before
    channels-last: in bf16 on a CPU, the bf16 copy it made then (default layout,
    ``nn.InstanceNorm2d``), which runs as it is given ("fp32" casts nothing); elsewhere the
    generator itself."""
    if not settings.cast:
        return generator, settings.precision
    return copy.deepcopy(generator).to(torch.bfloat16).eval(), "fp32"


def _video_row(generator: nn.Module, path: Path, folder: Path) -> dict:
    """One row of :func:`bench_video` for the clip ``path`` (the first 12 frames of a longer
    one); the cartoons are written into ``folder``."""
    from cglib import video

    clip = path
    if len(frames := _decoded(path, 13)) > 12:
        clip = demodata.write_video(folder / f"first 12 {path.stem}.mp4", frames[:12], 24)
        frames = frames[:12]
    row, cartoons = {}, {}
    settings = inference.Settings.resolve(generator, None, "auto", "auto")
    for name, options in VIDEO_RUNS.items():
        model, precision = (_as_before(generator, settings) if name == "before"
                            else (generator, settings.precision))
        target = folder / f"{path.stem} {name}.mkv"
        start = time.perf_counter()
        video.cartoonize_video(model, clip, target, codec="lossless", overwrite=True,
                               precision=precision, **options)
        row[f"fps_{name}"] = len(frames) / (time.perf_counter() - start)
        cartoons[name] = _decoded(target)
    decoded = _decoded(clip)
    single, carried = cartoons["now"], cartoons["temporal"]
    return {"input": flow.warping_error(decoded, decoded),
            "frame_by_frame": flow.warping_error(decoded, single),
            "temporal": flow.warping_error(decoded, carried),
            "min_psnr": min(metrics.psnr(a, b) for a, b in zip(carried, single, strict=True)),
            "max_gap": int(max(np.abs(a.astype(int) - b).max() for a, b in
                               zip(cartoons["before"], single, strict=True))),
            "speed_up": row["fps_now"] / row["fps_before"], **row}


BENCHMARKS["video"] = bench_video
