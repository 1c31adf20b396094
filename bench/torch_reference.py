#!/usr/bin/python3
"""PyTorch reference training: the same network, recipe and data as `alexnet train`.

docs/reproduction.md compares our trainer against this script. It mirrors, by construction or
by copying the rule, everything that decides the result:
  - the network: built from the ModelSpec JSON our buildSpec() produces (bench/torch_train.py's
    build_model), initialised as src/model/alexnet.ts does (N(0, std) or He weights, the spec's
    biases);
  - the data: the same image folder ({train,val,test}/<class>/*.png), resized to the spec's
    square with bilinear filtering as sharp's 'linear' kernel, normalised with the dataset's
    stats.json (mean/std, PCA lighting eigens) that our trainer wrote;
  - augmentation: a random crop of the spec's input size, a horizontal flip with p = 0.5, PCA
    lighting with a ~ N(0, 0.1); centre crop for validation and test;
  - the optimiser: the paper's SGD exactly as src/train/optimizer.ts writes it
    (v <- m v - wd lr w - lr g; w <- w + v; decay on weights only), or Adam with L2 decay on
    weights; loss = summed cross-entropy / global batch count;
  - schedules: step, or divide by 10 on a validation plateau (patience, min delta 1e-4, at most
    3 drops) as src/train/schedule.ts;
  - data parallelism: `--world` processes with one thread each, each taking its slice of every
    global batch, gradients summed over gloo (DistributedDataParallel).
What cannot match: random streams (initial weights, shuffles, crops, dropout masks) and float
summation order, so the two runs agree statistically, not bit for bit.

    /usr/bin/python3 bench/torch_reference.py --data data/fashion-mnist-official --spec spec.json \\
        --world 2 --batch 128 --epochs 6 --optimizer sgd --lr 0.01 --schedule plateau --out metrics.jsonl

Writes one JSON line per epoch ({epoch, lr, train, val, imagesPerSec, epochMs}) and a last line
{test, wallMs}, the same shape as our metrics.jsonl, to --out.
"""
import argparse
import json
import math
import os
import sys
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402
import torch.multiprocessing as mp  # noqa: E402
from PIL import Image  # noqa: E402
from torch import nn  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_train import build_model, free_port  # noqa: E402

PCA_ALPHA_STD = 0.1
EVAL_BATCH = 500


def load_split(root, split, classes, size, limit=0, seed=0):
    """uint8 [N, size, size, 3] and int64 labels of one split; `limit` keeps a seeded subset."""
    files = []
    for label, name in enumerate(classes):
        folder = os.path.join(root, split, name)
        if os.path.isdir(folder):
            files += [(os.path.join(folder, f), label) for f in sorted(os.listdir(folder))]
    if limit and limit < len(files):
        keep = np.random.default_rng(seed).permutation(len(files))[:limit]
        files = [files[i] for i in sorted(keep)]
    images = np.empty((len(files), size, size, 3), dtype=np.uint8)
    for i, (path, _) in enumerate(files):
        with Image.open(path) as im:
            im = im.convert("RGB")
            if im.size != (size, size):
                im = im.resize((size, size), Image.BILINEAR)
            images[i] = np.asarray(im)
    labels = np.array([label for _, label in files], dtype=np.int64)
    return torch.from_numpy(images), torch.from_numpy(labels)


def class_names(root):
    names = set()
    for split in ("train", "val", "test"):
        folder = os.path.join(root, split)
        if os.path.isdir(folder):
            names |= {d for d in os.listdir(folder) if os.path.isdir(os.path.join(folder, d))}
    return sorted(names)


def initialise(model, spec):
    """Weights N(0, std) (std from the spec, or He's sqrt(2 / fan-in)); biases as the spec says."""
    convs = [m for m in model if isinstance(m, nn.Conv2d)]
    denses = [m for m in model if isinstance(m, nn.Linear)]
    biases = [c["biasInit"] for c in spec["convs"]] + [h["biasInit"] for h in spec["hidden"]] + [0.0]
    with torch.no_grad():
        for module, bias in zip(convs + denses, biases):
            fan_in = module.weight[0].numel()
            std = math.sqrt(2.0 / fan_in) if spec["weightInitStd"] == "he" else float(spec["weightInitStd"])
            module.weight.normal_(0.0, std)
            module.bias.fill_(bias)


class Augmenter:
    """Crops, flips and PCA lighting on uint8 NHWC batches, then mean/std normalisation to NCHW."""

    def __init__(self, stats, crop):
        self.mean = torch.tensor(stats["meanRgb"], dtype=torch.float32)
        self.std = torch.tensor(stats["stdRgb"], dtype=torch.float32)
        self.eigval = torch.tensor(stats["eigenvalues"], dtype=torch.float32)
        self.eigvec = torch.tensor(stats["eigenvectors"], dtype=torch.float32)  # columns are eigenvectors
        self.crop = crop

    def normalise(self, batch_nhwc, shift=None):
        x = batch_nhwc.float() / 255.0
        if shift is not None:
            x = x + shift[:, None, None, :]
        return ((x - self.mean) / self.std).permute(0, 3, 1, 2).contiguous()

    def train_batch(self, images, gen, crop=True, flip=True, lighting=True):
        n, size = images.shape[0], images.shape[1]
        span = size - self.crop + 1
        xs = torch.randint(0, span, (n,), generator=gen)
        ys = torch.randint(0, span, (n,), generator=gen)
        flips = torch.rand(n, generator=gen) < 0.5
        if not crop:
            xs.fill_((size - self.crop) // 2)
            ys.fill_((size - self.crop) // 2)
        if not flip:
            flips.fill_(False)
        out = torch.empty((n, self.crop, self.crop, 3), dtype=torch.uint8)
        for i in range(n):
            patch = images[i, ys[i]:ys[i] + self.crop, xs[i]:xs[i] + self.crop]
            out[i] = patch.flip(1) if flips[i] else patch
        alphas = torch.randn((n, 3), generator=gen) * PCA_ALPHA_STD
        shift = (alphas * self.eigval) @ self.eigvec.T
        return self.normalise(out, shift if lighting else None)

    def centre_batch(self, images):
        m = (images.shape[1] - self.crop) // 2
        return self.normalise(images[:, m:m + self.crop, m:m + self.crop])


class Schedule:
    """src/train/schedule.ts: step, plateau (patience, min delta 1e-4, at most 3 drops), constant."""

    def __init__(self, args):
        self.args = args
        self.lr = args.lr
        self.drops = 0
        self.best = math.inf
        self.waited = 0

    def end_epoch(self, epoch, val_error):
        a = self.args
        if a.schedule == "step":
            self.lr = a.lr / a.lr_factor ** ((epoch + 1) // a.lr_step_epochs)
        elif a.schedule == "plateau":
            if val_error < self.best - 1e-4:
                self.best, self.waited = val_error, 0
                return
            self.best = min(self.best, val_error)
            self.waited += 1
            if self.waited >= a.lr_patience and self.drops < 3:
                self.lr /= a.lr_factor
                self.drops += 1
                self.waited = 0


class Optimiser:
    """The paper's SGD (weight decay inside the velocity, weights only) or Adam with L2 on weights."""

    def __init__(self, model, args):
        self.args = args
        self.params = [(p, args.weight_decay if p.dim() > 1 else 0.0) for p in model.parameters()]
        self.slots = [(torch.zeros_like(p), torch.zeros_like(p)) for p, _ in self.params]
        self.t = 0

    @torch.no_grad()
    def step(self, lr):
        a = self.args
        self.t += 1
        for (p, decay), (s1, s2) in zip(self.params, self.slots):
            if a.optimizer == "sgd":
                s1.mul_(a.momentum).add_(p, alpha=-decay * lr).add_(p.grad, alpha=-lr)
                p.add_(s1)
            else:
                g = p.grad + decay * p
                s1.mul_(0.9).add_(g, alpha=0.1)
                s2.mul_(0.999).addcmul_(g, g, value=0.001)
                step_size = lr * math.sqrt(1 - 0.999 ** self.t) / (1 - 0.9 ** self.t)
                p.addcdiv_(s1, s2.sqrt().add_(1e-8), value=-step_size)


def topk_correct(logits, labels):
    top5 = logits.topk(min(5, logits.shape[1]), dim=1).indices
    hits = top5 == labels[:, None]
    return hits[:, 0].sum().item(), hits.any(dim=1).sum().item()


def summary(sums):
    count = max(sums["count"], 1)
    return {
        "loss": sums["loss"] / count,
        "top1Error": 1 - sums["top1"] / count,
        "top5Error": 1 - sums["top5"] / count,
        "count": sums["count"],
    }


@torch.no_grad()
def evaluate(model, aug, images, labels):
    model.eval()
    sums = {"count": 0, "loss": 0.0, "top1": 0, "top5": 0}
    for start in range(0, len(labels), EVAL_BATCH):
        x = aug.centre_batch(images[start:start + EVAL_BATCH])
        y = labels[start:start + EVAL_BATCH]
        logits = model(x)
        t1, t5 = topk_correct(logits, y)
        sums["count"] += len(y)
        sums["loss"] += nn.functional.cross_entropy(logits, y, reduction="sum").item()
        sums["top1"] += t1
        sums["top5"] += t5
    model.train()
    return summary(sums)


def train(rank, args, spec, stats, data, port):
    torch.set_num_threads(1)
    if args.world > 1:
        dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=args.world)
    torch.manual_seed(args.seed)  # the same initial weights on every rank
    model = build_model(spec, len(data["classes"]))
    initialise(model, spec)
    torch.manual_seed(args.seed * 1000 + rank + 1)  # each rank its own dropout masks
    net = nn.parallel.DistributedDataParallel(model) if args.world > 1 else model
    optimiser = Optimiser(model, args)
    schedule = Schedule(args)
    aug = Augmenter(stats, spec["inputSize"])
    train_x, train_y = data["train"]
    n = len(train_y)
    started = time.perf_counter()
    out = open(args.out, "w") if rank == 0 else None
    for epoch in range(args.epochs):
        order = torch.randperm(n, generator=torch.Generator().manual_seed(args.seed * 7919 + epoch))
        gen = torch.Generator().manual_seed((args.seed * 7919 + epoch) * 64 + rank)
        sums = {"count": 0, "loss": 0.0, "top1": 0, "top5": 0}
        epoch_start = time.perf_counter()
        lr = schedule.lr
        for start in range(0, n, args.batch):
            batch = order[start:start + args.batch]
            global_count = len(batch)
            mine = batch[rank * global_count // args.world:(rank + 1) * global_count // args.world]
            x = aug.train_batch(train_x[mine], gen, args.crop, args.flip, args.pca_lighting)
            y = train_y[mine]
            for p in model.parameters():
                p.grad = None
            logits = net(x)
            loss_sum = nn.functional.cross_entropy(logits, y, reduction="sum")
            # DDP averages gradients over ranks; scale so the result is sum / global count.
            (loss_sum * (args.world / global_count)).backward()
            optimiser.step(lr)
            t1, t5 = topk_correct(logits.detach(), y)
            local = torch.tensor([len(y), loss_sum.item(), t1, t5], dtype=torch.float64)
            if args.world > 1:
                dist.all_reduce(local)
            sums["count"] += int(local[0])
            sums["loss"] += float(local[1])
            sums["top1"] += int(local[2])
            sums["top5"] += int(local[3])
        epoch_ms = (time.perf_counter() - epoch_start) * 1000
        val = evaluate(model, aug, *data["val"]) if rank == 0 and len(data["val"][1]) > 0 else None
        err = torch.tensor([val["top1Error"] if val else math.nan], dtype=torch.float64)
        if args.world > 1:
            dist.broadcast(err, 0)
        schedule.end_epoch(epoch, float(err[0]))
        if rank == 0:
            record = {"epoch": epoch + 1, "lr": lr, "train": summary(sums), "val": val,
                      "imagesPerSec": sums["count"] / epoch_ms * 1000, "epochMs": epoch_ms}
            out.write(json.dumps(record) + "\n")
            out.flush()
            v = f"val top-1 {100 * val['top1Error']:.2f}%" if val else "no val"
            print(f"epoch {epoch + 1}: train loss {record['train']['loss']:.4f} top-1 {100 * record['train']['top1Error']:.2f}% | "
                  f"{v} | lr {lr:.3g} | {record['imagesPerSec']:.1f} img/s | {epoch_ms / 1000:.1f} s", flush=True)
    if rank == 0:
        test = evaluate(model, aug, *data["test"]) if len(data["test"][1]) > 0 else None
        wall_ms = (time.perf_counter() - started) * 1000
        out.write(json.dumps({"test": test, "tta": 1, "wallMs": wall_ms, "torch": torch.__version__}) + "\n")
        out.close()
        if test:
            print(f"test: top-1 {100 * test['top1Error']:.2f}% top-5 {100 * test['top5Error']:.2f}% ({wall_ms / 1000:.0f} s)", flush=True)
    if args.world > 1:
        dist.barrier()
        dist.destroy_process_group()


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, help="image folder with train/val/test")
    p.add_argument("--stats", help="our dataset statistics (alexnet data stats --out FILE); default: <data>/stats.json")
    p.add_argument("--spec", required=True, help="a ModelSpec as JSON (a file path), from buildSpec()")
    p.add_argument("--out", required=True, help="metrics JSONL to write")
    p.add_argument("--world", type=int, default=1, help="processes (one thread each)")
    p.add_argument("--batch", type=int, default=128, help="global batch")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--train-limit", type=int, default=0, help="seeded subset of the training split (0: all)")
    p.add_argument("--optimizer", choices=["sgd", "adam"], default="sgd")
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--momentum", type=float, default=0.9)
    p.add_argument("--weight-decay", type=float, default=5e-4)
    p.add_argument("--schedule", choices=["constant", "step", "plateau"], default="plateau")
    p.add_argument("--lr-factor", type=float, default=10)
    p.add_argument("--lr-step-epochs", type=int, default=30)
    p.add_argument("--lr-patience", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-crop", dest="crop", action="store_false", help="centre crops in training, as ours' --no-crop")
    p.add_argument("--no-flip", dest="flip", action="store_false")
    p.add_argument("--no-pca-lighting", dest="pca_lighting", action="store_false")
    args = p.parse_args()
    with open(args.spec) as f:
        spec = json.load(f)
    with open(args.stats or os.path.join(args.data, "stats.json")) as f:
        stats = json.load(f)
    classes = class_names(args.data)
    size = spec["resizeSize"]
    t0 = time.perf_counter()
    data = {
        "classes": classes,
        "train": load_split(args.data, "train", classes, size, args.train_limit, args.seed),
        "val": load_split(args.data, "val", classes, size),
        "test": load_split(args.data, "test", classes, size),
    }
    print(f"loaded {len(data['train'][1])} train / {len(data['val'][1])} val / {len(data['test'][1])} test images "
          f"in {time.perf_counter() - t0:.1f} s; torch {torch.__version__}, {args.world} process(es) x 1 thread", flush=True)
    if args.world == 1:
        train(0, args, spec, stats, data, 0)
    else:
        mp.spawn(train, args=(args, spec, stats, data, free_port()), nprocs=args.world, join=True)


if __name__ == "__main__":
    main()
