"""Search phase: score architectures with the supernet's inherited weights.

A controller (aging evolution, AutoFormer, NSGA-II, random) asks generations
of archs that the population evaluator scores on the validation split; a
gradient supernet with the `argmax` controller discretises α instead. Its
slice of the run state is `meta["search"]`: the controller's JSON state
(history with scores, RNG), so a resumed search asks exactly what the
uninterrupted one would. RUN_DIR/search_state.json mirrors it for users.

A split run (`split.epochs`) searches each sub-supernet in turn with its own
controller over its own restricted space and its own weights, sharing
`search.evaluations` evenly; the evaluated archs of all of them are pooled
(`evaluated`), each remembering its sub-supernet, and the retrain phase
takes the top candidates of the pool. With `split.only` that sub-supernet alone
is searched, with all of `search.evaluations`.
"""
from __future__ import annotations

import jax
import numpy as np
from tqdm.auto import tqdm

from launch import config as configs
from launch import costs, devices, phases
from launch.checkpoints import RunState
from launch.files import write_json_atomic
from launch.phases import supernet
from search import controllers, gradient, proxies, samplers
from search.parallel import local_copy
from search.population import PopulationEvaluator

NAME = "search"


def controller(ctx, space=None):
    """The configured controller over `space` (default: the run's), or None for `argmax`."""
    name, options = configs.controller(ctx.cfg)
    if name == "argmax":
        return None
    if name == "grea":
        options["scorer"] = ProxyEvaluator(ctx.cfg.search.proxy, ctx).evaluate
    return controllers.get(name, space or ctx.space, seed=ctx.cfg.seed, constraint=ctx.constraint,
                           **options)


class ProxyEvaluator:
    """Zero-cost proxy `name` of archs at their initialisation (`search.proxies`), on the
    first `search.proxy_examples` examples of a fixed shuffle of the training split."""

    def __init__(self, name: str, ctx):
        cfg, data = ctx.cfg, ctx.data
        self.name, self.space, self.seed, self.dtype = name, ctx.space, cfg.seed, cfg.precision.compute
        self.x, self.y = data.sample(data.train, cfg.search.proxy_examples, cfg.seed)
        self.chunk = devices.population_chunk(cfg.search.generation)

    def evaluate(self, archs) -> list[float]:
        """One score per arch; a score that is not a number (NASWOT of a network without
        ReLU, an overflowing synflow) ranks as the worst, or the best for +inf."""
        scores = proxies.score_population(self.name, self.space, archs, self.x, self.y, seed=self.seed,
                                          chunk=self.chunk, dtype=self.dtype)
        return np.nan_to_num(scores, nan=-1e30, posinf=1e30, neginf=-1e30).tolist()


def measure(ctx, state: RunState) -> None:
    """Sparse searches charge each arch the nonzeros the trained supernet holds in its slice."""
    if ctx.sparse is not None:
        ctx.sparse.measure(supernet.weights(ctx, state))
        costs.check_measured_budget(ctx.space, ctx.cfg.search, ctx.sparse)


def evaluated(ctx, state: RunState) -> list[tuple[dict, float]]:
    """Every (arch, supernet validation accuracy) the search scored (of every sub-supernet)."""
    return [(a, s) for a, s in state.meta[NAME]["evaluated"]]


def sub_supernet_of(ctx, state: RunState, arch: dict) -> int:
    """The sub-supernet of a split run that scored `arch` best (one network may be
    scored by several: encodings differing only in decisions it does not use)."""
    meta = state.meta[NAME]
    wanted = ctx.space.canonical(arch)
    scored = [(score, sub) for (evaluated_arch, score), sub in zip(meta["evaluated"], meta["evaluated_sub"])
              if ctx.space.canonical(evaluated_arch) == wanted]
    if not scored:
        raise ValueError(f"arch {arch} was not evaluated by any sub-supernet")
    return max(scored, key=lambda pair: (pair[0], -pair[1]))[1]


def make_evaluator(ctx, state: RunState, sub: int = 0) -> PopulationEvaluator | ProxyEvaluator:
    """What scores the archs: the trained (sub-)supernet's inherited weights on the validation
    split (each arch's BatchNorm recalibrated on training examples), or the configured proxy."""
    cfg, data = ctx.cfg, ctx.data
    if configs.uses_proxy(cfg):
        return ProxyEvaluator(cfg.search.evaluator, ctx)
    calib, _ = data.sample(data.train, cfg.search.calibration, cfg.seed)
    x_val, y_val = validation_subset(ctx)
    return PopulationEvaluator(ctx.graphdef, supernet.weights(ctx, state, sub),
                               supernet.own(ctx, state, sub)["rest"], ctx.space,
                               x_val, y_val, calib_x=calib,
                               chunk=devices.population_chunk(cfg.search.generation),
                               levels=ctx.sparse.levels if ctx.sparse else None, parallel=ctx.parallel)


def validation_subset(ctx) -> tuple[np.ndarray, np.ndarray]:
    """What every arch is scored on: the validation split in order, or a seeded
    `search.score_examples` of it when it is larger (the same for every arch and resume)."""
    data, count = ctx.data, ctx.cfg.search.score_examples
    if len(data.val) <= count:
        x, y = data.val.arrays()
        return data.scale(x), y
    return data.sample(data.val, count, ctx.cfg.seed)


def score(ctx, state: RunState, archs) -> list[float]:
    """Each arch's score by the supernet, or in a split run by the sub-supernet whose space
    holds it (the sub-supernets' spaces partition the run's)."""
    subs = supernet.sub_supernets(ctx, state)
    if len(subs) == 1:
        return make_evaluator(ctx, state).evaluate(archs)
    archs = [ctx.space.validate(a) for a in archs]
    owners = [next(i for i, s in enumerate(subs) if all(a[k] in s.choices[k] for k in s.names))
              for a in archs]  # the leaves partition the space: exactly one holds each arch
    out = [0.0] * len(archs)
    for sub in sorted(set(owners)):
        mine = [i for i, o in enumerate(owners) if o == sub]
        for i, value in zip(mine, make_evaluator(ctx, state, sub).evaluate([archs[i] for i in mine])):
            out[i] = value
    return out


def _argmax(ctx, state: RunState, evaluator, meta: dict, sub: int = 0) -> dict:
    """Discretise sub-supernet `sub`'s α; its record for search_state.json."""
    # This process's copy: the writer alone reads it below, which must launch no collective.
    alpha = jax.tree.map(np.asarray, local_copy(supernet.own(ctx, state, sub)["alpha"]))
    allowed = supernet.allowed(ctx, state, sub)
    arch = gradient.discretise(ctx.space, alpha, allowed)
    if ctx.constraint is not None and not ctx.constraint(arch):
        ctx.say("warning: the argmax arch is outside the budget; it is kept, as argmax "
                "search has no constraint")
    accuracy = evaluator.evaluate([arch])[0]
    best = max([accuracy, *(s for _, s in state.meta[NAME]["evaluated"])])
    ctx.log.log(NAME, sub + 1, evaluations=sub + 1, best_accuracy=best)
    meta["evaluated"] = [(arch, accuracy)]
    return {"alpha": {k: np.asarray(v).tolist() for k, v in alpha.items()},
            "alpha_softmax": {k: np.round(np.asarray(jax.nn.softmax(samplers.masked_logits(
                v, None if allowed is None else allowed[k]))), 3).tolist() for k, v in alpha.items()},
            "arch": arch}


def _evolve(ctx, state: RunState, ctrl, evaluator, meta: dict, evaluations: int, anchors: list,
            mirror) -> None:
    """Ask, score and tell until `evaluations` archs are scored; `meta` holds the controller's
    state, `anchors` start its population, `mirror()` writes search_state.json."""
    cfg = ctx.cfg
    objectives = cfg.search.objectives if ctrl.name == "nsga2" else ["accuracy"]

    def score(archs):
        return costs.scores(ctx.space, archs, evaluator.evaluate(archs), objectives, ctx.sparse)

    if meta.get("controller") is not None:
        ctrl.load_state_dict(meta["controller"])
        ctx.say(f"resumed the search after {len(ctrl.history)} evaluations")
    else:
        anchors = [a for a in anchors if ctx.constraint is None or ctx.constraint(a)]
        if anchors:
            ctrl.tell(anchors, score(anchors))
    pooled = state.meta[NAME]["evaluated"]  # of the sub-supernets searched already
    before, best_before = len(pooled), max((s for _, s in pooled), default=-np.inf)
    bar = tqdm(total=evaluations, initial=len(ctrl.history), desc=f"search ({ctrl.name})",
               unit="arch", disable=not (ctx.progress and ctx.parallel.is_writer))

    def sync():
        meta["controller"] = ctrl.state_dict()
        mirror()

    while len(ctrl.history) < evaluations:
        n = min(cfg.search.generation, evaluations - len(ctrl.history))
        archs = ctrl.ask(n)
        rows = score(archs)
        ctrl.tell(archs, rows)
        accuracies = [r[0] if isinstance(r, tuple) else r for r in rows]
        best = max(best_before, max(row[0] for _, row in ctrl.history))
        ctx.log.log(NAME, before + len(ctrl.history), evaluations=before + len(ctrl.history),
                    best_accuracy=best, generation_mean=float(np.mean(accuracies)))
        bar.update(n)
        bar.set_postfix(best=round(best, 4))
        if len(ctrl.history) < evaluations:
            phases.checkpoint(ctx, state, sync)
    bar.close()
    sync()
    meta["evaluated"] = [(a, row[0]) for a, row in ctrl.history]


def run(ctx, state: RunState) -> RunState:
    measure(ctx, state)
    if state.done(NAME):
        return state
    meta = state.meta.setdefault(NAME, {"controller": None, "evaluated": []})
    ctx.clock.start(NAME)
    if supernet.is_split(ctx):
        _search_sub_supernets(ctx, state)
    else:
        evaluator = make_evaluator(ctx, state)
        ctrl = controller(ctx)
        if ctrl is None:
            record = _argmax(ctx, state, evaluator, meta)
            if ctx.parallel.is_writer:
                write_json_atomic(ctx.run_dir / "search_state.json", record)
        else:
            # The sandwich's max and min nets are trained on every batch: the best-trained
            # sub-networks start the population.
            sandwich = ctx.cfg.supernet.method == "sandwich" and not configs.uses_proxy(ctx.cfg)
            _evolve(ctx, state, ctrl, evaluator, meta, ctx.cfg.search.evaluations,
                    supernet.extremes(ctx, state) if sandwich else [],
                    lambda: _mirror(ctx, meta["controller"]))
    ctx.clock.stop(NAME)
    return phases.finish(ctx, state, NAME)


def _mirror(ctx, record) -> None:
    if ctx.parallel.is_writer:
        write_json_atomic(ctx.run_dir / "search_state.json", record)


def _shares(evaluations: int, parts: int) -> list[int]:
    """`evaluations` split as evenly as possible over `parts` (the first ones get the rest)."""
    return [evaluations // parts + (i < evaluations % parts) for i in range(parts)]


def _search_sub_supernets(ctx, state: RunState) -> None:
    """Search every trained sub-supernet in turn (its own controller, space and weights, an
    equal share of the evaluations), then pool what they evaluated."""
    meta = state.meta[NAME]
    subs = supernet.sub_supernets(ctx, state)
    searched = supernet.trained(ctx, state)
    shares = dict(zip(searched, _shares(ctx.cfg.search.evaluations, len(searched))))
    records = meta.setdefault("sub_supernets", [])
    sandwich = ctx.cfg.supernet.method == "sandwich"

    def mirror():
        _mirror(ctx, {"sub_supernets": [r.get("controller") or r.get("argmax") for r in records]})

    for sub, sub_space in enumerate(subs):
        if sub < len(records) and records[sub].get("done"):
            continue
        if sub == len(records):
            records.append({"controller": None, "evaluated": []})
        record = records[sub]
        if sub not in shares:  # another job's (`split.only`)
            record["done"] = True
            continue
        evaluations = shares[sub]
        ctx.say(f"searching sub-supernet {sub + 1}/{len(subs)} ({evaluations} evaluations)")
        evaluator = make_evaluator(ctx, state, sub)
        ctrl = controller(ctx, sub_space)
        if ctrl is None:
            record["argmax"] = _argmax(ctx, state, evaluator, record, sub)
        else:
            _evolve(ctx, state, ctrl, evaluator, record, evaluations,
                    supernet.extremes(ctx, state, sub) if sandwich else [], mirror)
        record["done"] = True
        meta["evaluated"] = [pair for r in records for pair in r["evaluated"]]
        meta["evaluated_sub"] = [i for i, r in enumerate(records) for _ in r["evaluated"]]
        mirror()
        if sub != searched[-1]:
            phases.checkpoint(ctx, state, force=True)
