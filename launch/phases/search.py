"""Search phase: score architectures with the supernet's inherited weights.

A controller (aging evolution, AutoFormer, NSGA-II, random) asks generations
of archs that the population evaluator scores on the validation split; a
gradient supernet with the `argmax` controller discretises α instead. Its
slice of the run state is `meta["search"]`: the controller's JSON state
(history with scores, RNG), so a resumed search asks exactly what the
uninterrupted one would. RUN_DIR/search_state.json mirrors it for users.
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
from search import controllers, gradient, proxies
from search.parallel import local_copy
from search.population import PopulationEvaluator

NAME = "search"


def controller(ctx):
    """The configured controller, or None for `argmax`."""
    name, options = configs.controller(ctx.cfg)
    if name == "argmax":
        return None
    if name == "grea":
        options["scorer"] = ProxyEvaluator(ctx.cfg.search.proxy, ctx).evaluate
    return controllers.get(name, ctx.space, seed=ctx.cfg.seed, constraint=ctx.constraint, **options)


class ProxyEvaluator:
    """Zero-cost proxy `name` of archs at their initialisation (`search.proxies`), on the
    first `search.proxy_examples` examples of a fixed shuffle of the training split."""

    def __init__(self, name: str, ctx):
        cfg, data = ctx.cfg, ctx.data
        order = np.random.default_rng(cfg.seed).permutation(len(data.x_train))[:cfg.search.proxy_examples]
        self.name, self.space, self.seed = name, ctx.space, cfg.seed
        self.x, self.y = data.x_train[order], data.y_train[order]
        self.chunk = devices.population_chunk(cfg.search.generation)

    def evaluate(self, archs) -> list[float]:
        """One score per arch; a score that is not a number (NASWOT of a network without
        ReLU, an overflowing synflow) ranks as the worst, or the best for +inf."""
        scores = proxies.score_population(self.name, self.space, archs, self.x, self.y, seed=self.seed,
                                          chunk=self.chunk)
        return np.nan_to_num(scores, nan=-1e30, posinf=1e30, neginf=-1e30).tolist()


def measure(ctx, state: RunState) -> None:
    """Sparse searches charge each arch the nonzeros the trained supernet holds in its slice."""
    if ctx.sparse is not None:
        ctx.sparse.measure(supernet.weights(ctx, state))
        costs.check_measured_budget(ctx.space, ctx.cfg.search, ctx.sparse)


def evaluated(ctx, state: RunState) -> list[tuple[dict, float]]:
    """Every (arch, supernet validation accuracy) the search scored."""
    return [(a, s) for a, s in state.meta[NAME]["evaluated"]]


def make_evaluator(ctx, state: RunState) -> PopulationEvaluator | ProxyEvaluator:
    """What scores the archs: the trained supernet's inherited weights on the validation
    split (each arch's BatchNorm recalibrated on training examples), or the configured proxy."""
    cfg, data = ctx.cfg, ctx.data
    if configs.uses_proxy(cfg):
        return ProxyEvaluator(cfg.search.evaluator, ctx)
    calib = data.x_train[np.random.default_rng(cfg.seed).permutation(len(data.x_train))
                         [:cfg.search.calibration]]
    arrays = state.arrays[supernet.NAME]
    return PopulationEvaluator(ctx.graphdef, supernet.weights(ctx, state), arrays["rest"], ctx.space,
                               data.x_val, data.y_val, calib_x=calib,
                               chunk=devices.population_chunk(cfg.search.generation),
                               levels=ctx.sparse.levels if ctx.sparse else None, parallel=ctx.parallel)


def _argmax(ctx, state: RunState, evaluator) -> None:
    # This process's copy: the writer alone reads it below, which must launch no collective.
    alpha = jax.tree.map(np.asarray, local_copy(state.arrays[supernet.NAME]["alpha"]))
    arch = gradient.discretise(ctx.space, alpha)
    if ctx.constraint is not None and not ctx.constraint(arch):
        ctx.say("warning: the argmax arch is outside the budget; it is kept, as argmax "
                "search has no constraint")
    accuracy = evaluator.evaluate([arch])[0]
    ctx.log.log(NAME, 1, evaluations=1, best_accuracy=accuracy)
    state.meta[NAME]["evaluated"] = [(arch, accuracy)]
    if ctx.parallel.is_writer:
        write_json_atomic(ctx.run_dir / "search_state.json", {
            "alpha": {k: np.asarray(v).tolist() for k, v in alpha.items()},
            "alpha_softmax": {k: np.round(np.asarray(jax.nn.softmax(v)), 3).tolist()
                              for k, v in alpha.items()},
            "arch": arch})


def _evolve(ctx, state: RunState, ctrl, evaluator) -> None:
    cfg, meta = ctx.cfg, state.meta[NAME]
    objectives = cfg.search.objectives if ctrl.name == "nsga2" else ["accuracy"]

    def score(archs):
        return costs.scores(ctx.space, archs, evaluator.evaluate(archs), objectives, ctx.sparse)

    if meta.get("controller") is not None:
        ctrl.load_state_dict(meta["controller"])
        ctx.say(f"resumed the search after {len(ctrl.history)} evaluations")
    else:
        # The sandwich's max and min nets are trained on every batch: the best-trained
        # sub-networks start the population.
        sandwich = ctx.cfg.supernet.method == "sandwich" and not configs.uses_proxy(ctx.cfg)
        anchors = [ctx.space.validate(a) for a in state.meta[supernet.NAME]["extremes"]] if sandwich else []
        anchors = [a for a in anchors if ctx.constraint is None or ctx.constraint(a)]
        if anchors:
            ctrl.tell(anchors, score(anchors))
    bar = tqdm(total=cfg.search.evaluations, initial=len(ctrl.history), desc=f"search ({ctrl.name})",
               unit="arch", disable=not (ctx.progress and ctx.parallel.is_writer))

    def sync():
        meta["controller"] = ctrl.state_dict()
        if ctx.parallel.is_writer:
            write_json_atomic(ctx.run_dir / "search_state.json", meta["controller"])

    while len(ctrl.history) < cfg.search.evaluations:
        n = min(cfg.search.generation, cfg.search.evaluations - len(ctrl.history))
        archs = ctrl.ask(n)
        rows = score(archs)
        ctrl.tell(archs, rows)
        accuracies = [r[0] if isinstance(r, tuple) else r for r in rows]
        best = max(row[0] for _, row in ctrl.history)
        ctx.log.log(NAME, len(ctrl.history), evaluations=len(ctrl.history), best_accuracy=best,
                    generation_mean=float(np.mean(accuracies)))
        bar.update(n)
        bar.set_postfix(best=round(best, 4))
        if len(ctrl.history) < cfg.search.evaluations:
            phases.checkpoint(ctx, state, sync)
    bar.close()
    sync()
    meta["evaluated"] = [(a, row[0]) for a, row in ctrl.history]


def run(ctx, state: RunState) -> RunState:
    measure(ctx, state)
    if state.done(NAME):
        return state
    state.meta.setdefault(NAME, {"controller": None, "evaluated": []})
    ctx.clock.start(NAME)
    evaluator = make_evaluator(ctx, state)
    ctrl = controller(ctx)
    if ctrl is None:
        _argmax(ctx, state, evaluator)
    else:
        _evolve(ctx, state, ctrl, evaluator)
    ctx.clock.stop(NAME)
    return phases.finish(ctx, state, NAME)
