"""Reference for bench/data.ts: PIL + torchvision on the same images, one process, one thread.

Resize(256) + RandomCrop(224) + RandomHorizontalFlip + ToTensor + Normalize (other sizes with
--resize/--crop), stacked into batches of 64, as the data loader of pytorch/examples'
imagenet/main.py does per worker. Run with Debian's interpreter (it sees python3-torchvision):

    /usr/bin/python3 bench/data_torchvision.py <folder> [--ext .jpg] [--resize 256] [--crop 224] [--epochs 2] [--batch 64]

Prints one JSON line: {"imagesPerSec": ..., "images": ..., "seconds": ...} for the last epoch.
"""
import argparse
import json
import os
import time

import torch
from PIL import Image
from torchvision import transforms


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("folder")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--ext", default=".jpg")
    parser.add_argument("--resize", type=int, default=256)
    parser.add_argument("--crop", type=int, default=224)
    args = parser.parse_args()
    torch.set_num_threads(1)
    files = sorted(os.path.join(args.folder, f) for f in os.listdir(args.folder) if f.endswith(args.ext))
    tf = transforms.Compose([
        transforms.Resize(args.resize),
        transforms.RandomCrop(args.crop),
        transforms.RandomHorizontalFlip(),
        transforms.ToTensor(),
        transforms.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225]),
    ])
    result = {}
    for _ in range(args.epochs):  # the first epoch warms the page cache and imports
        start = time.perf_counter()
        for i in range(0, len(files), args.batch):
            batch = [tf(Image.open(f).convert("RGB")) for f in files[i:i + args.batch]]
            torch.stack(batch)
        seconds = time.perf_counter() - start
        result = {"imagesPerSec": len(files) / seconds, "images": len(files), "seconds": seconds}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
