"""Throughput and memory of the streamed ImageNet input pipeline (rethink.stream), as training uses it.

    python -m bench.streaming --json bench/results/streaming-cpu.json
    python -m bench.streaming --images 20000 --workers 0,1,2 --batches 24 --subsets 2000,20000

Makes (once, cached under --tree) an ImageNet-layout tree of JPEGs: --classes class folders of
`train/<wnid>/*.JPEG` (--images in all) and `val/<wnid>/*.JPEG`, random heights and widths in --sizes,
quality 90, a smooth random picture plus noise (about 0.5 bytes per pixel on disk). Its generation is
timed apart and not counted.

Throughput: StreamSpec(name="imagenet", image_size=299).load(), FolderImages with Views(spec,
random_crop=True, flip=True).train_view ("train": decode + random resized crop to 299 + flip), with the
evaluation view ("eval": decode + central 87.5 % + resize to 299), and with raw=True ("bytes": the file
read only, what the workers do when decoding runs on the GPU, dataset.decode=device), through
rethink.stream.loader with a RandomSampler, batch 64, for each worker count. Images/s over --batches
batches (a multiple of the worker count) after one warm-up batch per worker (the workers' start).

Memory: the RSS summed over the process and its DataLoader workers, sampled every 0.1 s by a thread
(PSS, which counts pages the forked workers share once, every 0.5 s), during each measurement and over
one full training-view pass of each --subsets size (dataset.train_size, stratified), plus the RSS right
after load(). Every measurement runs in a fresh process so that none inherits another's heap. "others": the
cores that other processes kept busy meanwhile (machine busy time minus this process tree's, per second);
rates measured with others > 0 are low. A loader whose workers send no batch within --timeout s is reported
as a hang (2026-11-29: the bytes view with workers > 0, torchvision's read_file tensors do not survive the
trip from a worker).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import psutil
import torch

MIB = 2**20
MARKER = "bench-tree.json"


def make_tree(root: Path, images: int, classes: int, val: int, sizes: tuple[int, int], seed: int = 0) -> dict:
    """The tree under `root` (made if its marker does not match these settings); its description."""
    from PIL import Image

    want = {"images": images, "classes": classes, "val_per_class": val, "sizes": list(sizes), "seed": seed}
    marker = root / MARKER
    if marker.exists():
        info = json.loads(marker.read_text())
        if info.get("settings") == want:
            return info | {"generated_now": False}
    rng = np.random.default_rng(seed)
    t0 = time.perf_counter()
    pixels, disk, count = 0, 0, 0
    per_class = [images // classes + (c < images % classes) for c in range(classes)]
    for split in ("train", "val"):
        for c in range(classes):
            folder = root / split / f"n{c:08d}"
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(per_class[c] if split == "train" else val):
                h, w = (int(v) for v in rng.integers(sizes[0], sizes[1] + 1, 2))
                base = rng.integers(0, 256, (max(2, h // 16), max(2, w // 16), 3), dtype=np.uint8)
                img = np.asarray(Image.fromarray(base).resize((w, h), Image.BICUBIC), dtype=np.int16)
                img = (img + rng.integers(-24, 25, (h, w, 3), dtype=np.int16)).clip(0, 255).astype(np.uint8)
                path = folder / f"{split}_{c}_{i}.JPEG"
                Image.fromarray(img).save(path, quality=90)
                if split == "train":
                    pixels, disk, count = pixels + h * w, disk + path.stat().st_size, count + 1
    info = {"settings": want, "train_images": count, "val_images": classes * val, "classes": classes,
            "mean_pixels": pixels / count, "mean_side_px": (pixels / count) ** 0.5, "train_bytes_on_disk": disk,
            "mean_file_kb": disk / count / 1e3, "generation_s": time.perf_counter() - t0}
    marker.write_text(json.dumps(info, indent=1))
    return info | {"generated_now": True}


def busy_seconds() -> float:
    """CPU seconds the whole machine has spent busy (all cores, all processes) since boot."""
    t = psutil.cpu_times()
    return sum(t) - t.idle - getattr(t, "iowait", 0.0) - getattr(t, "guest", 0.0) - getattr(t, "guest_nice", 0.0)


class Sampler(threading.Thread):
    """Peak RSS and PSS (bytes) summed over this process and its children, sampled every `every` s; and the CPU
    that other processes used meanwhile (`others_cores`: machine busy time minus this tree's, per wall second)."""

    def __init__(self, every: float = 0.1, pss_every: int = 5) -> None:
        super().__init__(daemon=True)
        self.every, self.pss_every = every, pss_every
        self.peak_rss = self.peak_pss = 0
        self.others_cores = 0.0
        self.cpu: dict[int, float] = {}  # pid -> its CPU seconds when last seen (a worker that exits keeps its last)
        self.stop = threading.Event()

    def sample(self, pss: bool) -> None:
        me = psutil.Process()
        rss = tot_pss = 0
        for p in [me, *me.children(recursive=True)]:
            try:
                if pss:
                    m = p.memory_full_info()
                    rss, tot_pss = rss + m.rss, tot_pss + m.pss
                else:
                    rss += p.memory_info().rss
                t = p.cpu_times()
                self.cpu[p.pid] = t.user + t.system
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                pass
        self.peak_rss = max(self.peak_rss, rss)
        self.peak_pss = max(self.peak_pss, tot_pss)

    def start(self) -> None:
        self.t0, self.busy0, self.mine0 = time.perf_counter(), busy_seconds(), self._mine_now()
        super().start()

    @staticmethod
    def _mine_now() -> float:
        t = psutil.Process().cpu_times()
        return t.user + t.system

    def run(self) -> None:
        k = 0
        while not self.stop.is_set():
            self.sample(pss=k % self.pss_every == 0)
            k += 1
            self.stop.wait(self.every)

    def __enter__(self) -> Sampler:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.join()
        self.sample(pss=True)
        me = os.getpid()
        mine = sum(v for pid, v in self.cpu.items() if pid != me) + self._mine_now() - self.mine0
        self.others_cores = max(0.0, busy_seconds() - self.busy0 - mine) / (time.perf_counter() - self.t0)


def one(task: dict) -> dict:
    """One measurement in this (fresh) process: a timed window ("batches" > 0) or a full pass (0)."""
    from torch.utils.data import RandomSampler

    from rethink.data.stream_io import FolderImages, Views, loader
    from rethink.data.streamed import StreamSpec

    spec = StreamSpec(name="imagenet", root=task["tree"], image_size=299, train_size=task.get("train_size"),
                      workers=task["workers"])
    data = spec.load()
    after_load = psutil.Process().memory_info().rss
    views = Views(spec, random_crop=True, flip=True)
    view = {"train": views.train_view, "eval": views.eval_view, "bytes": None}[task["view"]]
    ds = FolderImages(data.root, data.train_files, view, raw=view is None)
    w, batch = task["workers"], task["batch"]
    gen = torch.Generator().manual_seed(0)
    dl = loader(ds, None, batch, w, sampler=RandomSampler(ds, generator=gen))
    if w:  # a batch lost between a worker and this process would otherwise hang the bench (see the bytes view)
        dl.timeout = task["timeout"]
    warm, timed = max(1, w), task["batches"]
    seen, seen_warm, t0, t_warm, t1 = 0, 0, time.perf_counter(), 0.0, 0.0
    with Sampler() as mem:
        try:
            for k, (x, _) in enumerate(dl):
                seen, t1 = seen + len(x), time.perf_counter()  # t1: the last batch's arrival (not the workers' exit)
                if k + 1 == warm:
                    t_warm, seen_warm = time.perf_counter(), seen
                if timed and k + 1 == warm + timed:
                    break
        except RuntimeError as e:
            if "timed out" not in str(e):
                raise
            return {"view": task["view"], "workers": w, "train_size": len(ds), "images": seen,
                    "error": f"no batch within {task['timeout']} s after {seen} images (the loader hangs)"}
    if timed:
        images, seconds = seen - seen_warm, t1 - t_warm
    else:
        images, seconds = seen, t1 - t0
    del dl
    return {"view": task["view"], "workers": w, "train_size": len(ds), "images": images, "seconds": seconds,
            "images_per_s": images / seconds, "images_per_s_per_worker": images / seconds / max(1, w),
            "rss_after_load_mib": after_load / MIB, "index_bytes": int(data.train_files.nbytes + data.test_files.nbytes),
            "peak_rss_mib": mem.peak_rss / MIB, "peak_pss_mib": mem.peak_pss / MIB,
            "other_processes_cores": mem.others_cores}


def spawn(task: dict) -> dict:
    """`one(task)` in a fresh interpreter."""
    out = subprocess.run([sys.executable, "-m", "bench.streaming", "--one", json.dumps(task)], capture_output=True,
                         text=True, check=False)
    lines = [s for s in out.stdout.splitlines() if s.startswith("RESULT ")]
    if out.returncode or not lines:
        sys.exit(f"measurement {task} failed:\n{out.stderr[-3000:]}")
    return json.loads(lines[-1][len("RESULT "):])


def machine() -> dict:
    """CPU count, model name and library versions."""
    import torchvision

    model = ""
    try:
        model = next(s.split(":", 1)[1].strip() for s in open("/proc/cpuinfo") if s.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"cpus": os.cpu_count(), "processor": platform.processor(), "cpu_model": model,
            "memory_gib": psutil.virtual_memory().total / 2**30, "torch": torch.__version__,
            "torchvision": torchvision.__version__, "python": platform.python_version(), "date": time.strftime("%Y-%m-%d")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tree", default="/tmp/rethink-stream-bench/tree")
    ap.add_argument("--images", type=int, default=20000, help="training images in the tree")
    ap.add_argument("--classes", type=int, default=100)
    ap.add_argument("--val", type=int, default=10, help="validation images per class")
    ap.add_argument("--sizes", default="160,256", help="smallest,largest image side in px")
    ap.add_argument("--views", default="train,eval,bytes")
    ap.add_argument("--workers", default="0,1,2")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--batches", type=int, default=24, help="timed batches (rounded up to a multiple of the workers)")
    ap.add_argument("--subsets", default="2000,20000", help="train_size of the full-pass memory runs")
    ap.add_argument("--pass-workers", type=int, default=None, help="workers of the full passes (default: the most)")
    ap.add_argument("--timeout", type=float, default=60, help="s to wait for a worker's batch before calling it a hang")
    ap.add_argument("--json", default=None)
    ap.add_argument("--one", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        print("RESULT " + json.dumps(one(json.loads(args.one))), flush=True)
        return
    lo, hi = map(int, args.sizes.split(","))
    tree = Path(args.tree)
    info = make_tree(tree, args.images, args.classes, args.val, (lo, hi))
    n = info["train_images"]
    info |= {"decoded_gib_at_mean_size": n * 3 * info["mean_pixels"] / 2**30,
             "decoded_gib_at_299": n * 3 * 299 * 299 / 2**30}
    print(f"tree {tree}: {n:,} training JPEGs in {info['classes']} classes (+{info['val_images']:,} val), mean "
          f"{info['mean_side_px']:.0f} px side, {info['train_bytes_on_disk'] / MIB:.0f} MiB on disk; generated in "
          f"{info['generation_s']:.1f} s ({'now' if info['generated_now'] else 'earlier; cached'}); decoded it would be "
          f"{info['decoded_gib_at_mean_size']:.2f} GiB (uint8 at the mean size), {info['decoded_gib_at_299']:.2f} GiB at 299 px")
    mach = machine()
    print(f"{mach['cpus']} CPUs ({mach['cpu_model'] or mach['processor']}), torch {mach['torch']}, "
          f"torchvision {mach['torchvision']}")
    workers = [int(w) for w in args.workers.split(",")]
    load_before = os.getloadavg()
    rows = []
    print(f"\n{'view':<7}{'workers':>8}{'images':>8}{'img/s':>9}{'img/s/worker':>14}{'peak RSS MiB':>14}{'peak PSS MiB':>14}{'others':>8}")
    for view in args.views.split(","):
        for w in workers:
            timed = -(-args.batches // max(1, w)) * max(1, w)
            r = spawn({"tree": str(tree), "view": view, "workers": w, "batch": args.batch, "batches": timed,
                       "timeout": args.timeout})
            rows.append(r)
            if "error" in r:
                print(f"{view:<7}{w:>8}  {r['error']}", flush=True)
                continue
            print(f"{view:<7}{w:>8}{r['images']:>8}{r['images_per_s']:>9.0f}{r['images_per_s_per_worker']:>14.0f}"
                  f"{r['peak_rss_mib']:>14.0f}{r['peak_pss_mib']:>14.0f}{r['other_processes_cores']:>8.2f}", flush=True)
    pw = max(workers) if args.pass_workers is None else args.pass_workers
    passes = []
    print(f"\nfull passes, train view, {pw} workers")
    print(f"{'train_size':>10}{'seconds':>9}{'img/s':>8}{'RSS after load':>16}{'peak RSS MiB':>14}{'peak PSS MiB':>14}{'others':>8}")
    for size in map(int, args.subsets.split(",")):
        r = spawn({"tree": str(tree), "view": "train", "workers": pw, "batch": args.batch, "batches": 0,
                   "train_size": None if size >= n else size, "timeout": args.timeout})
        passes.append(r)
        if "error" in r:
            print(f"{r['train_size']:>10}  {r['error']}", flush=True)
            continue
        print(f"{r['train_size']:>10}{r['seconds']:>9.1f}{r['images_per_s']:>8.0f}{r['rss_after_load_mib']:>16.0f}"
              f"{r['peak_rss_mib']:>14.0f}{r['peak_pss_mib']:>14.0f}{r['other_processes_cores']:>8.2f}", flush=True)
    print("\nothers: cores busy with other processes during the measurement (0 = a quiet machine)")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        with open(args.json, "w") as f:
            json.dump({"machine": mach | {"load_avg_1min_before": load_before[0], "load_avg_1min_after":
                                          os.getloadavg()[0]}, "tree": info, "batch": args.batch, "rows": rows,
                       "full_passes": passes,
                       "command": "python -m bench.streaming " + " ".join(sys.argv[1:])}, f, indent=1)


if __name__ == "__main__":
    main()
