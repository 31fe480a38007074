"""Where an AlexNet teacher's time goes at the notebooks' recipe (batch 128, Adam 1e-3), per step
and per epoch, for each setting issue 22 asked about; run alone, on an idle machine:

    .venv/bin/python docs/results/paper-code/profile_alexnet.py [--threads 2] [--steps 5]

Prints, per setting, the mean seconds of a step's parts over ``--steps`` steps after one warm-up
step (data: gathering a shuffled batch from the training tensor, as the recipe does), the
scoring pass's milliseconds per test image at two inference batches, and the epoch that makes
for MNIST 0-5 (36,017 training and 6,031 test images) and 0-7 (48,200 and 8,017).
"""

import argparse
import time

import torch
import torch.nn.functional as F

from workers.teachers.models import AlexNetMNIST

SPLITS = {"0-5": (36_017, 6_031), "0-7": (48_200, 8_017)}
SETTINGS = {
    "adam (the recipe as the notebooks ran it)": {},
    "adam-fused": {"fused": True},
    "adam-fused + channels-last": {"fused": True, "channels_last": True},
}


def profile(opts: dict, steps: int) -> dict:
    torch.manual_seed(0)
    model = AlexNetMNIST(6)
    images, labels = torch.rand(4096, 1, 28, 28), torch.randint(0, 6, (4096,))
    if opts.get("channels_last"):
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, fused=bool(opts.get("fused")))
    parts = dict.fromkeys(("data", "forward", "backward", "update"), 0.0)
    for i in range(steps + 1):
        t0 = time.perf_counter()
        rows = torch.randperm(len(labels))[:128]
        x, y = images[rows], labels[rows]
        if opts.get("channels_last"):
            x = x.contiguous(memory_format=torch.channels_last)
        t1 = time.perf_counter()
        loss = F.cross_entropy(model(x), y)
        t2 = time.perf_counter()
        opt.zero_grad()
        loss.backward()
        t3 = time.perf_counter()
        opt.step()
        t4 = time.perf_counter()
        if i:  # the first step warms the allocator and the kernels
            for k, dt in zip(parts, (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True):
                parts[k] += dt / steps
    model.eval()
    infer = {}
    with torch.no_grad():
        for batch in (512, 2048):
            x = images[:batch]
            model(x)
            t0 = time.perf_counter()
            model(x)
            infer[batch] = (time.perf_counter() - t0) / batch
    return {"parts": parts, "infer": infer}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--steps", type=int, default=5)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads, {args.steps} steps per setting")
    for name, opts in SETTINGS.items():
        r = profile(opts, args.steps)
        step = sum(r["parts"].values())
        parts = ", ".join(f"{k} {v:.3f}" for k, v in r["parts"].items())
        print(f"{name}: step {step:.3f} s ({parts}); scoring {r['infer'][512] * 1e3:.2f} ms/image at batch 512, "
              f"{r['infer'][2048] * 1e3:.2f} at 2048")  # fmt: skip
        for split, (n_train, n_test) in SPLITS.items():
            epoch = -(-n_train // 128) * step + n_test * r["infer"][512]
            print(f"    MNIST {split}: {epoch:.0f} s per epoch, {epoch * 10 / 3600:.2f} h for 10 epochs")


if __name__ == "__main__":
    main()
