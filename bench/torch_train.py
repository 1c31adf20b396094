#!/usr/bin/python3
"""PyTorch training throughput: the reference for bench/train.ts.

The network is built from the same preset description the TypeScript model reads
(src/model/presets.ts, passed in as JSON by bench/train.ts), so the layers, groups, padding,
LRN and dropout match by construction; the parameter count is printed to check it. SGD with
momentum 0.9 and weight decay 5e-4, summed cross-entropy, one thread per process, random
inputs held in memory (no data pipeline: the TypeScript side reports its data wait apart).
Two or more processes train with DistributedDataParallel over gloo on this host.

    /usr/bin/python3 bench/torch_train.py --spec spec.json --classes 10 --world 2 \\
        --batch 32 --warmup 1 --steps-per-rep 1 --reps 5

Timing as bench/train.ts: rank 0 notes when each step ends; after `--warmup` steps, each
repetition is `--steps-per-rep` consecutive steps, img/s = world * batch * steps / their time.
Prints one JSON line: {torch, blas, threads, params, world, batch, rep_img_per_sec}.
"""
import argparse
import json
import os
import socket
import sys
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402  (after OMP_NUM_THREADS)
import torch.distributed as dist  # noqa: E402
import torch.multiprocessing as mp  # noqa: E402
from torch import nn  # noqa: E402


def conv_padding(layer):
    pad = layer["pad"]
    if pad == "valid":
        return 0
    if pad == "same":
        if layer["stride"] != 1 or layer["kernel"] % 2 == 0:
            raise ValueError(f"{layer['name']}: 'same' padding is only symmetric for odd kernels at stride 1")
        return layer["kernel"] // 2
    return int(pad)


def build_model(spec, classes):
    """The AlexNet of a ModelSpec (presets.ts), NCHW. Order per conv: conv, activation, LRN, pool."""
    act = nn.ReLU if spec["activation"] == "relu" else nn.Tanh
    lrn = spec["lrn"]
    pool = spec["pool"]
    layers = []
    channels, size = 3, spec["inputSize"]
    for c in spec["convs"]:
        pad = conv_padding(c)
        layers += [nn.Conv2d(channels, c["filters"], c["kernel"], stride=c["stride"], padding=pad, groups=c["groups"]), act()]
        size = (size + 2 * pad - c["kernel"]) // c["stride"] + 1
        channels = c["filters"]
        if c["lrn"] and lrn is not None:
            n = 2 * lrn["depthRadius"] + 1
            # tfjs (and the paper) use alpha as is; PyTorch divides it by n.
            layers.append(nn.LocalResponseNorm(n, alpha=lrn["alpha"] * n, beta=lrn["beta"], k=lrn["bias"]))
        if c["pool"]:
            layers.append(nn.MaxPool2d(pool["window"], pool["stride"]))
            size = (size - pool["window"]) // pool["stride"] + 1
    layers.append(nn.Flatten())
    units = channels * size * size
    for h in spec["hidden"]:
        if spec["dropoutPlacement"] == "before":
            layers.append(nn.Dropout(spec["dropoutRate"]))
        layers += [nn.Linear(units, h["units"]), act()]
        if spec["dropoutPlacement"] == "after":
            layers.append(nn.Dropout(spec["dropoutRate"]))
        units = h["units"]
    layers.append(nn.Linear(units, classes))
    return nn.Sequential(*layers)


def loaded_blas():
    """The BLAS library this process mapped (Debian's alternatives decide which)."""
    with open("/proc/self/maps") as maps:
        names = {line.split()[-1] for line in maps if "blas" in line.lower() and "/" in line}
    return sorted(names)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def train(rank, args, spec, port, queue):
    torch.set_num_threads(1)
    torch.manual_seed(rank)
    if args.world > 1:
        dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=args.world)
    model = build_model(spec, args.classes)
    params = sum(p.numel() for p in model.parameters())
    if args.world > 1:
        model = nn.parallel.DistributedDataParallel(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    loss_fn = nn.CrossEntropyLoss(reduction="sum")
    size = spec["inputSize"]
    images = torch.randn(args.batch, 3, size, size)
    labels = torch.randint(0, args.classes, (args.batch,))
    ends = []
    for _ in range(args.warmup + args.steps_per_rep * args.reps):
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(model(images), labels)
        loss.backward()
        optimizer.step()
        loss.item()
        ends.append(time.perf_counter())
    if rank == 0:
        rates = []
        for r in range(args.reps):
            start = ends[args.warmup - 1 + r * args.steps_per_rep]
            end = ends[args.warmup - 1 + (r + 1) * args.steps_per_rep]
            rates.append(args.world * args.batch * args.steps_per_rep / (end - start))
        queue.put({"params": params, "rep_img_per_sec": rates, "blas": loaded_blas()})
    if args.world > 1:
        dist.barrier()
        dist.destroy_process_group()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", required=True, help="a ModelSpec as JSON (a file path)")
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--world", type=int, default=1)
    parser.add_argument("--batch", type=int, default=32, help="images per process")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--steps-per-rep", type=int, default=1)
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args()
    if args.warmup < 1:
        parser.error("--warmup must be >= 1: the first repetition starts where the last warm-up step ends")
    with open(args.spec) as f:
        spec = json.load(f)
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    port = free_port()
    procs = [ctx.Process(target=train, args=(rank, args, spec, port, queue)) for rank in range(args.world)]
    for p in procs:
        p.start()
    result = queue.get(timeout=3600)
    for p in procs:
        p.join()
        if p.exitcode != 0:
            raise RuntimeError(f"a training process exited with code {p.exitcode}")
    result.update({"torch": torch.__version__, "threads": 1, "world": args.world, "batch": args.batch})
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
