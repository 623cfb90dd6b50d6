"""What two cores can give DIET's training step: one thread, torch's two threads, and each
batch split in two halves run side by side (two Python threads, or a helper process).

Issue #16 asks for a 5 000-example bot trained in 130 s on 2 cores; kefu trains it with
torch's intra-op threads (two threads save ~30 % of an epoch). This script measures whether
data parallelism does better on the same step: each batch is cut in two halves of equal
token count, each half's encoder runs forward and backward on its own core, and the loss is
taken over the whole batch (Rasa's in-batch negatives need every sentence embedding), so the
step computes what one thread computes. ``process`` runs the second half in a spawned helper
that shares the parameters (shared memory) and returns its gradients through a shared flat
buffer; ``split-threads`` runs it on a second Python thread (and Adam on two torch threads).

Each mode runs in a fresh process, one after the other (oneDNN's kernel cache is per
process); an epoch at a fixed batch size after a warm-up epoch, median of ``--epochs``:

    .venv/bin/python benchmarks/diet_two_cores.py --per-class 65 --batch-size 160 \\
        --out benchmarks/results/diet_two_cores.json

``one`` also reports where a step's time goes (batch building, forward, loss, backward,
optimiser). Not used by kefu: the results are in docs/nlu.md ("Seventh round").
"""
from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

MODES = ("one", "threads", "split-threads", "process")


def halves(idx: list[int], lengths: list[int]) -> tuple[list[int], list[int]]:
    """The batch (sorted by length) cut where half of its tokens are on each side."""
    half, acc = sum(lengths[i] for i in idx) / 2, 0
    for cut, i in enumerate(idx):
        acc += lengths[i]
        if acc >= half:
            return idx[: cut + 1], idx[cut + 1 :]
    return idx, []


def _mask_hooks(model: Any) -> None:
    """Hooks are not pickled: the helper's copy re-registers the density masks' hooks."""
    from bot.nlu.diet.model import MaskedLinear

    for m in model.modules():
        if isinstance(m, MaskedLinear) and m.keep is not None:
            m.weight.register_hook(lambda grad, keep=m.keep: grad * keep)


def helper(conn: Any, model: Any, arrays: list[dict[str, Any]], dims: dict[str, int],
           drop: float, flat: Any, sent: Any, gsent: Any) -> None:
    """The second half of every batch: forward, wait for its sentences' gradient, backward,
    gradients into ``flat``."""
    import torch

    from bot.nlu.diet.batches import make_batch
    from bot.nlu.torch_runtime import training_precision

    torch.set_num_threads(1)
    _mask_hooks(model)
    params = list(model.parameters())
    precision = training_precision("auto")
    model.train()
    while True:
        msg = conn.recv()
        if msg[0] == "stop":
            return
        _, idx, seed = msg
        torch.manual_seed(seed)
        batch = make_batch([arrays[i] for i in idx], dims, drop)
        with precision():
            _, s = model(batch)
        s = s.float()
        sent[: len(idx)].copy_(s.detach())
        conn.send("forward")
        conn.recv()
        for p in params:
            p.grad = None
        s.backward(gsent[: len(idx)])
        off = 0
        for p in params:
            n = p.numel()
            if p.grad is None:
                flat[off : off + n].zero_()
            else:
                flat[off : off + n].copy_(p.grad.reshape(-1))
            off += n
        conn.send("backward")


def run_mode(mode: str, per_class: int, batch_size: int, epochs: int) -> dict[str, Any]:
    import torch
    import torch.multiprocessing as mp

    import diet_step_ab
    from bot.nlu import diet
    from bot.nlu.diet.batches import balanced_order, length_bucketed_batches, make_batch
    from bot.nlu.diet.losses import LossOptions, dot_product_loss
    from bot.nlu.torch_runtime import fused_adam, training_precision

    torch.set_num_threads(2 if mode == "threads" else 1)
    data = diet_step_ab.featurised_cached(per_class)
    c = diet_step_ab.new_classifier(diet, data, 0, batch_size=[batch_size] * 2)
    cfg = c.config
    arrays = [dict(a) for a in data["arrays"]]
    model = c.model
    params = list(model.parameters())
    drop = float(cfg["drop_rate"]) if cfg["use_sparse_input_dropout"] else 0.0
    negatives, loss_options = int(cfg["number_of_negative_examples"]), LossOptions.from_config(cfg)
    opt = torch.optim.Adam(params, lr=float(cfg["learning_rate"]), **fused_adam())
    targets = torch.tensor(data["intent_ids"])
    precision = training_precision(cfg["training_precision"])
    lengths = [a["n"] for a in arrays]
    phases = dict.fromkeys(("batch", "forward", "loss", "backward", "optimiser"), 0.0)
    conn = proc = pool = None
    if mode == "process":
        model.share_memory()
        flat = torch.zeros(sum(p.numel() for p in params)).share_memory_()
        sent = torch.zeros(1024, model.size).share_memory_()
        gsent = torch.zeros(1024, model.size).share_memory_()
        ctx = mp.get_context("spawn")
        conn, child = ctx.Pipe()
        proc = ctx.Process(target=helper, args=(child, model, arrays, c.dims, drop, flat, sent, gsent), daemon=True)
        proc.start()
    elif mode == "split-threads":
        from concurrent.futures import ThreadPoolExecutor

        pool = ThreadPoolExecutor(1, initializer=lambda: torch.set_num_threads(1))

    def encode(idx: list[int]) -> Any:
        batch = make_batch([arrays[i] for i in idx], c.dims, drop)
        with precision():
            return model(batch)[1].float()

    def loss_of(sentences: Any, idx: list[int]) -> Any:
        return dot_product_loss(model.text_embed(sentences), model.label_embeddings(), targets[idx],
                                negatives, cfg["similarity_type"] == "cosine", loss_options)

    def step(idx: list[int], timed: bool) -> None:
        if mode in ("one", "threads"):
            t0 = time.perf_counter()
            batch = make_batch([arrays[i] for i in idx], c.dims, drop)
            t1 = time.perf_counter()
            with precision():
                s = model(batch)[1].float()
            t2 = time.perf_counter()
            loss = loss_of(s, idx)
            t3 = time.perf_counter()
            opt.zero_grad()
            loss.backward()
            t4 = time.perf_counter()
            opt.step()
            if timed:
                for k, a, b in zip(phases, (t0, t1, t2, t3, t4), (t1, t2, t3, t4, time.perf_counter())):
                    phases[k] += b - a
            return
        a, b = halves(idx, lengths)
        if mode == "split-threads":
            other = pool.submit(encode, b)
            sa = encode(a)
            sb = other.result()
            la, lb = sa.detach().requires_grad_(), sb.detach().requires_grad_()
            loss = loss_of(torch.cat([la, lb]), a + b)
            opt.zero_grad()
            loss.backward()  # the loss alone, then each half's encoder on its own thread
            other = pool.submit(sb.backward, lb.grad)
            sa.backward(la.grad)
            other.result()
            torch.set_num_threads(2)  # Adam over both cores (torch's count is per calling thread)
            opt.step()
            torch.set_num_threads(1)
            return
        else:
            conn.send(("step", b, random.randrange(2**31)))
            sa = encode(a)
            conn.recv()
            sb = sent[: len(b)].clone().requires_grad_()
            loss = loss_of(torch.cat([sa, sb]), a + b)
            opt.zero_grad()
            (grad_b,) = torch.autograd.grad(loss, [sb], retain_graph=True)
            gsent[: len(b)].copy_(grad_b)
            conn.send("backward")  # the helper's half runs its backward beside this one
            loss.backward()
            conn.recv()
            off = 0
            for p in params:
                n = p.numel()
                g = flat[off : off + n].view_as(p)
                if p.grad is None:
                    p.grad = g.clone()
                else:
                    p.grad.add_(g)
                off += n
        opt.step()

    model.train()
    order = list(range(len(arrays)))
    times, steps = [], 0
    for epoch in range(epochs + 1):
        random.shuffle(order)
        batches = length_bucketed_batches(balanced_order(order, data["intent_ids"], batch_size),
                                               lengths, batch_size)
        started = time.perf_counter()
        for idx in batches:
            step(idx, epoch > 0)
        if epoch > 0:  # the first epoch warms up (imports, allocator, oneDNN's kernels)
            times.append(time.perf_counter() - started)
            steps += len(batches)
    if proc is not None:
        conn.send(("stop",))
        proc.join(10)
    out = {"mode": mode, "examples": len(arrays), "batch_size": batch_size,
           "epoch_s": [round(t, 2) for t in times], "epoch_s_median": round(statistics.median(times), 2),
           "load_1m": round(os.getloadavg()[0], 2)}
    if mode in ("one", "threads"):
        out["ms_per_step"] = {k: round(1000 * v / steps, 1) for k, v in phases.items()}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--per-class", type=int, default=65)
    parser.add_argument("--batch-size", type=int, default=160)
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs after one warm-up epoch")
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    parser.add_argument("--rounds", type=int, default=2, help="every mode this many times, alternating")
    parser.add_argument("--mode", choices=MODES, help=argparse.SUPPRESS)  # one mode, in this process
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    if args.mode:
        print(json.dumps(run_mode(args.mode, args.per_class, args.batch_size, args.epochs)))
        return 0
    runs = []
    for _ in range(args.rounds):
        for mode in args.modes:
            done = subprocess.run(
                [sys.executable, __file__, "--mode", mode, "--per-class", str(args.per_class),
                 "--batch-size", str(args.batch_size), "--epochs", str(args.epochs)],
                check=True, capture_output=True, text=True)
            runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
            print(json.dumps(runs[-1]), flush=True)
    summary = {m: statistics.median(r["epoch_s_median"] for r in runs if r["mode"] == m) for m in args.modes}
    result = {"command": " ".join(["python benchmarks/diet_two_cores.py", *(argv or sys.argv[1:])]),
              "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "runs": runs,
              "epoch_s_median_by_mode": summary}
    print(json.dumps(result["epoch_s_median_by_mode"]))
    if args.out:
        args.out.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
