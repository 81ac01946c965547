"""jaxnas against the PyTorch code a user would otherwise run: TangleNAS' entangled conv
supernet ("conv macro", `benchmarks.conv_macro`), one DrNAS search step each side.

The PyTorch side is written the way TangleNAS writes it: each candidate kernel (an
input width × output width × kernel size slice of the largest kernel) is zero-padded
back to full size, weighted by its joint probability and summed, then one convolution
runs; the α step's backward pass reaches every weight, as `loss.backward()` does there.
Both sides use TangleNAS' optimizers: weights Adam (lr 3e-4, betas (0.9, 0.995), L2
5e-4, gradient norm clipped at 5), α Adam (lr 3e-4, betas (0.5, 0.999), L2 1e-3).

Workers run in their own processes (`python -m benchmarks.peer WORKER`), pinned to one
CPU core (XLA:CPU's Eigen convolutions use a second thread even with
`--xla_cpu_multi_thread_eigen=false`; PyTorch is told `set_num_threads(1)`):

- `steps`: both sides in one process, repetitions alternated — weight step, α step,
  bi-level (α then weight) step — min and median of each;
- `memory --side S`: one side alone, so that its peak RSS is its own: the first
  bi-level step (for JAX: trace and compile) and the peak RSS after a few steps;
  with `--cache DIR`, JAX's persistent compilation cache in DIR (run twice: cold,
  then warm); the JAX steps donate their state buffers as a run's do (`--keep`: not).

PyTorch is an optional dependency (`pip install '.[bench]'`); without it the benchmark
says so and skips.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

BATCH = 64
ONE_THREAD_XLA = "--xla_cpu_multi_thread_eigen=false"


# ---------------------------------------------------------------- PyTorch (TangleNAS style)
def _torch_side(seed: int = 0):
    import torch
    import torch.nn.functional as F

    from benchmarks.conv_macro import CHANNELS, HIDDEN, KERNELS, LAST_CONV

    class EntangledConv(torch.nn.Module):
        """One convolution over a weighted sum of zero-padded candidate kernels."""

        def __init__(self, in_widths, out_widths, kernels, padding):
            super().__init__()
            self.conv = torch.nn.Conv2d(max(in_widths), max(out_widths), max(kernels), padding=padding)
            self.in_widths, self.out_widths, self.kernels = in_widths, out_widths, kernels

        def forward(self, x, p_in, p_out, p_kernel):
            big, bias = self.conv.weight, self.conv.bias
            cout, cin, k_max = big.shape[0], big.shape[1], big.shape[2]
            weight, bias_mix = 0.0, 0.0
            for i, ci in enumerate(self.in_widths):
                for j, co in enumerate(self.out_widths):
                    for m, k in enumerate(self.kernels):
                        p = p_in[i] * p_out[j] * p_kernel[m]
                        s = (k_max - k) // 2
                        part = big[:co, :ci, s:s + k, s:s + k]
                        weight = weight + p * F.pad(part, (s, s, s, s, 0, cin - ci, 0, cout - co))
                        bias_mix = bias_mix + p * F.pad(bias[:co], (0, cout - co))
            return F.conv2d(x, weight, bias_mix, padding=self.conv.padding)

    class ConvMacro(torch.nn.Module):
        def __init__(self):
            super().__init__()
            ins = ((3,),) + CHANNELS[:-1]
            self.convs = torch.nn.ModuleList(
                [EntangledConv(i, o, KERNELS, max(KERNELS) // 2) for i, o in zip(ins, CHANNELS)])
            channels, kernel, padding = LAST_CONV
            self.last_conv = EntangledConv(CHANNELS[-1], (channels,), (kernel,), padding)
            widths = (6 * 6 * channels,) + HIDDEN + (10,)
            self.fcs = torch.nn.ModuleList([torch.nn.Linear(a, b) for a, b in zip(widths, widths[1:])])

        def forward(self, x, p_channels, p_kernels):
            one = torch.ones(1)
            p_in = [one] + list(p_channels[:-1])
            for i, conv in enumerate(self.convs):
                x = F.relu(conv(x, p_in[i], p_channels[i], p_kernels[i]))
                if i in (1, 2):
                    x = F.max_pool2d(x, 2, 2)
            x = self.last_conv(x, p_channels[-1], one, one).flatten(1)
            for fc in self.fcs[:-1]:
                x = F.relu(fc(x))
            return self.fcs[-1](x)

    torch.manual_seed(seed)
    model = ConvMacro()
    alphas = [(1e-3 * torch.randn(len(CHANNELS), 3)).requires_grad_(),
              (1e-3 * torch.randn(len(CHANNELS), 3)).requires_grad_()]
    w_opt = torch.optim.Adam(model.parameters(), lr=3e-4, betas=(0.9, 0.995), weight_decay=5e-4)
    a_opt = torch.optim.Adam(alphas, lr=3e-4, betas=(0.5, 0.999), weight_decay=1e-3)

    def loss(x, y):
        p_channels, p_kernels = [torch.distributions.Dirichlet(F.elu(a) + 1).rsample() for a in alphas]
        return F.cross_entropy(model(x, p_channels, p_kernels), y)

    def alpha_step(x, y):
        w_opt.zero_grad()
        a_opt.zero_grad()
        loss(x, y).backward()
        a_opt.step()

    def weight_step(x, y):
        w_opt.zero_grad()
        a_opt.zero_grad()
        loss(x, y).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        w_opt.step()

    def bilevel(x_train, y_train, x_val, y_val):
        alpha_step(x_val, y_val)
        weight_step(x_train, y_train)

    def as_torch(x, y):
        return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2))), torch.from_numpy(y)

    return {"weight": weight_step, "alpha": alpha_step, "bilevel": bilevel, "convert": as_torch,
            "block": lambda: None}


# ---------------------------------------------------------------- jaxnas
def _jax_side(seed: int = 0, donate: bool = True):
    import jax
    import jax.numpy as jnp
    import optax

    import nas
    from benchmarks.conv_macro import ConvMacroSpace
    from search import engine, gradient, samplers

    space = ConvMacroSpace().bind()
    graphdef, params, rest = engine.split(nas.supernet(space, seed=seed))
    sampler = samplers.get("drnas")
    w_tx = optax.chain(optax.clip_by_global_norm(5.0), optax.add_decayed_weights(5e-4),
                       optax.adam(3e-4, b1=0.9, b2=0.995))
    a_tx = gradient.alpha_optimizer()
    alpha = gradient.init_alpha(space, jax.random.key(seed))
    state = {"params": params, "w_state": w_tx.init(params), "alpha": alpha, "a_state": a_tx.init(alpha),
             "key": jax.random.key(seed + 1)}

    def loss(params, probs, x, y):
        logits, _ = engine.apply(graphdef, params, rest, x, probs, train=True)
        return engine.cross_entropy(logits, y)

    def weight_step(params, w_state, alpha, x, y, key):
        probs = jax.lax.stop_gradient(sampler.sample(alpha, key, 0.0))
        value, grads = jax.value_and_grad(loss)(params, probs, x, y)
        updates, w_state = w_tx.update(grads, w_state, params)
        return optax.apply_updates(params, updates), w_state, value

    def alpha_step(alpha, a_state, params, x, y, key):
        def alpha_loss(alpha):
            return loss(params, sampler.sample(alpha, key, 0.0), x, y) + sampler.penalty(alpha)
        value, grads = jax.value_and_grad(alpha_loss)(alpha)
        updates, a_state = a_tx.update(grads, a_state, alpha)
        return optax.apply_updates(alpha, updates), a_state, value

    # The bi-level step is the engine's own, as the supernet phase builds it.
    bilevel_jit = gradient.make_step(graphdef, sampler, w_tx, a_tx, donate=donate)
    weight_jit = jax.jit(weight_step, donate_argnums=(0, 1) if donate else ())
    alpha_jit = jax.jit(alpha_step, donate_argnums=(0, 1) if donate else ())

    def next_key():
        state["key"], key = jax.random.split(state["key"])
        return key

    def weight(x, y):
        state["params"], state["w_state"], state["loss"] = weight_jit(
            state["params"], state["w_state"], state["alpha"], x, y, next_key())

    def alpha_(x, y):
        state["alpha"], state["a_state"], state["loss"] = alpha_jit(
            state["alpha"], state["a_state"], state["params"], x, y, next_key())

    def bilevel(x_train, y_train, x_val, y_val):
        state["params"], _, state["w_state"], state["alpha"], state["a_state"], state["loss"] = bilevel_jit(
            state["params"], rest, state["w_state"], state["alpha"], state["a_state"],
            x_train, y_train, x_val, y_val, next_key(), jnp.float32(0.0))

    return {"weight": weight, "alpha": alpha_, "bilevel": bilevel,
            "convert": lambda x, y: (jnp.asarray(x), jnp.asarray(y)),
            "block": lambda: jax.block_until_ready(state["loss"])}


# ---------------------------------------------------------------- workers
def _batches(seed: int = 0):
    rng = np.random.default_rng(seed)
    return [(rng.normal(size=(BATCH, 32, 32, 3)).astype(np.float32), rng.integers(0, 10, BATCH))
            for _ in range(2)]


def _timed(side, kind, batches) -> float:
    (x_train, y_train), (x_val, y_val) = batches
    start = time.perf_counter()
    if kind == "bilevel":
        side["bilevel"](x_train, y_train, x_val, y_val)
    else:
        side[kind](*((x_val, y_val) if kind == "alpha" else (x_train, y_train)))
    side["block"]()
    return time.perf_counter() - start


def _side_batches(side):
    return [side["convert"](x, y) for x, y in _batches()]


def steps_worker(repeats: int, donate: bool) -> dict:
    """Both sides in this process; each kind of step compiled/warmed first, then timed
    with the sides alternating."""
    sides = {"torch": _torch_side(), "jax": _jax_side(donate=donate)}
    data = {name: _side_batches(side) for name, side in sides.items()}
    times = {f"{name}_{kind}": [] for name in sides for kind in ("weight", "alpha", "bilevel")}
    for kind in ("weight", "alpha", "bilevel"):
        for name, side in sides.items():
            _timed(side, kind, data[name])
        for _ in range(repeats):
            for name, side in sides.items():
                times[f"{name}_{kind}"].append(_timed(side, kind, data[name]))
    return times


def memory_worker(side_name: str, steps: int, donate: bool) -> dict:
    side = _torch_side() if side_name == "torch" else _jax_side(donate=donate)
    batches = _side_batches(side)
    first = _timed(side, "bilevel", batches)
    later = [_timed(side, "bilevel", batches) for _ in range(steps)]
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB
    return {"first_call_s": first, "step_s": min(later), "peak_rss": peak}


def _run_worker(args: list[str], cache: str | None = None, xla_flags: str = "") -> dict:
    env = dict(os.environ, XLA_FLAGS=f"{xla_flags} {ONE_THREAD_XLA}".strip(), OMP_NUM_THREADS="1",
               MKL_NUM_THREADS="1")
    if cache is not None:
        env.update(JAX_COMPILATION_CACHE_DIR=cache, JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
                   JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0")
    out = subprocess.run([sys.executable, "-m", "benchmarks.peer", *args], env=env, capture_output=True,
                         text=True)
    if out.returncode != 0:
        raise RuntimeError(f"peer worker {args} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _min_median(values) -> str:
    return f"{min(values):6.2f} / {statistics.median(values):6.2f}"


def run(repeats: int = 5, memory_steps: int = 3, xla_flags: str = "") -> dict | None:
    if importlib.util.find_spec("torch") is None:
        print("\npeer (TangleNAS conv macro in PyTorch vs jaxnas): skipped — PyTorch is not installed; "
              "`pip install '.[bench]'` (CPU torch) to run it")
        return None
    print(f"\npeer: TangleNAS conv macro supernet (7.7 M weights, DrNAS), batch {BATCH}, one CPU thread "
          f"per side; steps alternated in one process, {repeats} repetitions (seconds, min / median)"
          + (f"; jaxnas under extra XLA flags {xla_flags!r}" if xla_flags else ""))
    times = _run_worker(["steps", "--repeats", str(repeats)], xla_flags=xla_flags)
    print(f"{'step':<16} {'PyTorch':>15} {'jaxnas':>15} {'torch/jax (min)':>16}")
    for kind, label in (("weight", "weight step"), ("alpha", "α step"), ("bilevel", "bi-level step")):
        torch_t, jax_t = times[f"torch_{kind}"], times[f"jax_{kind}"]
        print(f"{label:<16} {_min_median(torch_t):>15} {_min_median(jax_t):>15} "
              f"{min(torch_t) / min(jax_t):>16.2f}")
    memory = {side: _run_worker(["memory", "--side", side, "--steps", str(memory_steps)], xla_flags=xla_flags)
              for side in ("torch", "jax")}
    memory["jax_kept"] = _run_worker(["memory", "--side", "jax", "--steps", str(memory_steps), "--keep"],
                                     xla_flags=xla_flags)
    with tempfile.TemporaryDirectory() as cache:
        memory["jax_cache_cold"] = _run_worker(["memory", "--side", "jax", "--steps", "1"], cache=cache,
                                               xla_flags=xla_flags)
        memory["jax_cache_warm"] = _run_worker(["memory", "--side", "jax", "--steps", "1"], cache=cache,
                                               xla_flags=xla_flags)
    gb = 2 ** 30
    print(f"peak RSS, bi-level, own process: PyTorch {memory['torch']['peak_rss'] / gb:.2f} GiB, "
          f"jaxnas {memory['jax']['peak_rss'] / gb:.2f} GiB "
          f"(ratio {memory['jax']['peak_rss'] / memory['torch']['peak_rss']:.2f}); "
          f"jaxnas without donated buffers {memory['jax_kept']['peak_rss'] / gb:.2f} GiB, "
          f"step {memory['jax_kept']['step_s']:.2f} s vs {memory['jax']['step_s']:.2f} s")
    print(f"first bi-level call: PyTorch {memory['torch']['first_call_s']:.2f} s; jaxnas (trace + compile) "
          f"{memory['jax']['first_call_s']:.1f} s without the persistent compilation cache, "
          f"{memory['jax_cache_cold']['first_call_s']:.1f} s filling it, "
          f"{memory['jax_cache_warm']['first_call_s']:.1f} s from it")
    return {"steps": times, "memory": memory}


def main():
    parser = argparse.ArgumentParser(prog="python -m benchmarks.peer", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("worker", choices=("steps", "memory", "report"))
    parser.add_argument("--side", choices=("torch", "jax"), default="jax")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--keep", action="store_true", help="JAX steps keep (do not donate) their state")
    parser.add_argument("--xla-flags", default="",
                        help="extra XLA flags for the jaxnas side, put before the one-thread ones "
                             "(workers: before this process' XLA_FLAGS)")
    args = parser.parse_args()
    if args.worker == "report":
        run(repeats=args.repeats, memory_steps=args.steps, xla_flags=args.xla_flags)
        return
    # One core for the worker and every thread it starts.
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    if args.xla_flags:  # read when JAX starts, which is later (the sides import it)
        os.environ["XLA_FLAGS"] = f"{args.xla_flags} {os.environ.get('XLA_FLAGS', '')}".strip()
    if args.worker == "steps" or args.side == "torch":
        import torch
        torch.set_num_threads(1)
    result = (steps_worker(args.repeats, not args.keep) if args.worker == "steps"
              else memory_worker(args.side, args.steps, not args.keep))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
