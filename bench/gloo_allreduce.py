#!/usr/bin/python3
"""torch.distributed gloo all_reduce: the reference for bench/allreduce.ts.

Same method as the TypeScript bench: ranks are separate processes on this host, float32 sum,
a barrier before each repetition, the time of a repetition is the slowest rank's, median of
`--reps` after `--warmup`. Bus bandwidth as nccl-tests: bytes / time * 2(n-1)/n.

    /usr/bin/python3 bench/gloo_allreduce.py --ranks 2,3,4 --sizes 1024,1048576 --reps 5

Prints one JSON object on stdout: {"torch": version, "results": [{ranks, bytes, time_ms,
algbw_gbps, busbw_gbps, rep_ms, cpu_ms_per_rank}]}. Use Debian's /usr/bin/python3 (python3-torch); another
python3 on PATH may not see Debian's packages.
"""
import argparse
import json
import os
import resource
import socket
import statistics
import sys
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def worker(rank: int, world: int, port: int, sizes, reps: int, warmup: int, queue) -> None:
    torch.set_num_threads(1)  # one core per rank, like the TypeScript workers
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world
    )
    for size_bytes in sizes:
        buf = torch.empty(max(1, size_bytes // 4), dtype=torch.float32)
        rep_ms = []
        cpu_s = 0.0
        for rep in range(warmup + reps):
            buf.fill_(rank + 1)
            dist.barrier()
            before = resource.getrusage(resource.RUSAGE_SELF)
            start = time.perf_counter()
            dist.all_reduce(buf, op=dist.ReduceOp.SUM)
            if rep >= warmup:
                rep_ms.append((time.perf_counter() - start) * 1e3)
                after = resource.getrusage(resource.RUSAGE_SELF)
                cpu_s += (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        want = world * (world + 1) / 2
        ok = float(buf[0]) == want and float(buf[-1]) == want
        queue.put((rank, size_bytes, rep_ms, cpu_s * 1e3 / reps, ok))
    dist.barrier()
    dist.destroy_process_group()


def run(world: int, sizes, reps: int, warmup: int):
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    port = free_port()
    procs = [
        ctx.Process(target=worker, args=(r, world, port, sizes, reps, warmup, queue))
        for r in range(world)
    ]
    for p in procs:
        p.start()
    by_size = {}
    cpu_ms = {}
    for _ in range(world * len(sizes)):
        rank, size_bytes, rep_ms, cpu_ms_per_rep, ok = queue.get(timeout=600)
        if not ok:
            raise RuntimeError(f"gloo gave a wrong sum at {size_bytes} bytes, rank {rank}")
        by_size.setdefault(size_bytes, []).append(rep_ms)
        cpu_ms[size_bytes] = max(cpu_ms.get(size_bytes, 0.0), cpu_ms_per_rep)
    for p in procs:
        p.join()
    results = []
    for size_bytes in sizes:
        # A repetition lasts as long as its slowest rank.
        slowest = [max(ms) for ms in zip(*by_size[size_bytes])]
        time_ms = statistics.median(slowest)
        algbw = size_bytes / (time_ms / 1e3) / 1e9
        results.append(
            {
                "ranks": world,
                "bytes": size_bytes,
                "time_ms": time_ms,
                "algbw_gbps": algbw,
                "busbw_gbps": algbw * 2 * (world - 1) / world,
                "rep_ms": slowest,
                "cpu_ms_per_rank": cpu_ms[size_bytes],
            }
        )
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ranks", default="2,3,4")
    parser.add_argument("--sizes", default="1024,1048576,16777216", help="bytes, comma separated")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    results = []
    for world in (int(r) for r in args.ranks.split(",")):
        results.extend(run(world, sizes, args.reps, args.warmup))
    json.dump({"torch": torch.__version__, "results": results}, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()
