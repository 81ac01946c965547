"""Exports: a trained compact model on disk, loaded back and run without any supernet,
evaluated on a data set, and serialized to StableHLO for programs that have only JAX.

    DIR/arch.json               the arch, its space (`space_config`), sizes, metrics, training,
                                the compute dtype (`compute_dtype`, `nas.precision`)
    DIR/weights/                the model's variables as a plain tree (Orbax)
    DIR/sparse_weights.npz      sparse searches: the pruned kernels as COO (`sparse.storage`)
    DIR/compact/                sparse searches: the model without dead units, an export itself
    DIR/model.stablehlo         `to_stablehlo`: the inference forward, weights included
    DIR/model.stablehlo.json    its input signature and how to call it

    exported = load("runs/demo/best")       # or the run dir itself
    logits = exported(x)                    # x: raw float32 [batch, *exported.space.input_shape]
    evaluate("runs/demo/best", data)        # {"test_accuracy": ..., "test_examples": ..., ...}
    to_stablehlo(exported.model, "out/",    # out/model.stablehlo + out/model.stablehlo.json
                 standardization=exported.info.get("standardization"))

`pareto_pick(run_dir, n)` chooses the n-th smallest network of a search's
accuracy/size front; `nas export` and `nas eval` are this module on the command line.
docs/export.md describes the formats.
"""
from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from flax import nnx
from jax import export as jax_export

import spaces
from launch import config as configs
from launch import plugins
from launch.data import Dataset, in_order
from launch.files import write_bytes_atomic, write_json_atomic
from nas import precision
from search import pareto
from search.parallel import local_copy

STABLEHLO_FILE = "model.stablehlo"
SIGNATURE_FILE = STABLEHLO_FILE + ".json"
# Lowered for every platform JAX targets, so one artifact runs on whichever the caller has.
PLATFORMS = ("cpu", "cuda", "rocm", "tpu")


@dataclasses.dataclass(frozen=True)
class Exported:
    """A loaded export: `exported(x)` gives logits `[batch, num_classes]`; it also
    unpacks as `space, arch, model = load(directory)`."""
    space: spaces.Space   # the bound space the arch belongs to (options, input shape, classes)
    arch: dict            # the structural choices (`arch.json`'s `choices`)
    model: nnx.Module     # the compact model: every tensor at the arch's own shape
    info: dict            # arch.json as written: sizes, metrics, training settings

    def __call__(self, x) -> jax.Array:
        """Logits of raw inputs `x` (standardized first when the export was trained so)."""
        return self.model(self.prepare(x))

    def prepare(self, x):
        """`x` as the model takes it: scaled by the stored `standardization`, if any."""
        stats = self.info.get("standardization")
        return x if stats is None else scale_inputs(jnp.asarray(x, jnp.float32), stats)

    def __iter__(self):
        return iter((self.space, self.arch, self.model))


# ---------------------------------------------------------------------- write and read

def write_orbax(directory: Path | str, model: nnx.Module) -> None:
    """The model's variables as a plain tree under `directory` (replaced atomically:
    written to a sibling, then renamed)."""
    directory = Path(directory)
    tmp = directory.with_name(directory.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    checkpointer = _this_process_only()
    weights = jax.tree.map(np.asarray, local_copy(nnx.to_pure_dict(nnx.state(model))))
    checkpointer.save(tmp.absolute(), weights)
    checkpointer.wait_until_finished()
    if directory.exists():
        shutil.rmtree(directory)
    tmp.rename(directory)


def _this_process_only() -> ocp.StandardCheckpointer:
    """A checkpointer for one process's own files: in a multi-process run only process 0
    writes (and reads back) exports, so Orbax must not wait for the others."""
    me = jax.process_index()
    return ocp.StandardCheckpointer(multiprocessing_options=ocp.options.MultiprocessingOptions(
        primary_host=me, active_processes={me} if jax.process_count() > 1 else None))


def preprocessing(data: Dataset) -> dict:
    """arch.json's record of what the inputs went through before the model (`data.standardize`
    per feature, `data.normalize` per channel): {"standardization": {"mean": […], "std": […],
    "per": "feature" | "channel"}}, or {} for inputs used as loaded."""
    if data.scaling is None:
        return {}
    return {"standardization": {**data.scaling.to_dict(), "per": data.scaled_by}}


def save(directory: Path | str, model: nnx.Module, info: dict) -> None:
    """An export directory `load` reads back: the model's weights under weights/ and
    `info` as arch.json, with the dtype the model computes in (`compute_dtype`). `info`
    needs `choices` (the arch) and `space_config` (`Space.to_dict()` of the bound space);
    the rest is the caller's record."""
    for key in ("choices", "space_config"):
        if key not in info:
            raise ValueError(f"export info lacks {key!r}: load() rebuilds the model from "
                             "`choices` and `space_config`")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    write_orbax(directory / "weights", model)
    write_json_atomic(directory / "arch.json", {**info, "compute_dtype": precision.compute_dtype_of(model)})


def locate(path: Path | str) -> Path:
    """The export directory `path` names: itself when it holds arch.json, else its
    best/ (a search's run directory)."""
    path = Path(path)
    if not path.exists():
        raise ValueError(f"export or run directory {str(path)!r} does not exist")
    for candidate in (path, path / "best"):
        if (candidate / "arch.json").is_file():
            return candidate
    raise ValueError(f"{str(path)!r} is neither an export (arch.json + weights/) nor a run "
                     "directory with best/arch.json")


def read_info(directory: Path | str) -> dict:
    """arch.json of the export `directory` names (`locate`)."""
    file = locate(directory) / "arch.json"
    try:
        info = json.loads(file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{str(file)!r} is not JSON ({err})") from None
    if not isinstance(info, dict) or not isinstance(info.get("choices"), dict) \
            or not isinstance(info.get("space_config"), dict):
        raise ValueError(f"{str(file)!r} is not an export's arch.json: it needs the objects "
                         "`choices` and `space_config`")
    return info


def load(directory: Path | str) -> Exported:
    """The export in `directory` (or in a run directory's best/): its compact model with
    the trained weights, built abstractly at the arch's own shapes and filled from
    weights/, never through a supernet, computing in the recorded `compute_dtype`
    (float32 for exports that record none)."""
    directory = locate(directory)
    info = read_info(directory)
    file, described = str(directory / "arch.json"), info["space_config"]
    dtype = info.get("compute_dtype", "float32")
    if dtype not in precision.COMPUTE_DTYPES:
        raise ValueError(f"{file!r}: compute_dtype {dtype!r} is not one of {list(precision.COMPUTE_DTYPES)}")
    if not isinstance(described.get("name"), str) or not isinstance(described.get("choices"), dict) \
            or not isinstance(described.get("config", {}), dict):
        raise ValueError(f"{file!r}: `space_config` must describe a space (`name`, `choices`, "
                         "`config`, as `Space.to_dict()` writes it)")
    recorded = plugins.load(info.get("plugins"), f"{file}: plugins")
    if described["name"] not in spaces.names():
        hint = (f"its plugins {recorded} do not register it" if recorded else
                "arch.json names no plugin: import the module that registers it first (--plugin)")
        raise ValueError(f"{file!r} is an export of space {described['name']!r}, which is not "
                         f"registered in this process (spaces are {spaces.names()}); {hint}")
    try:
        space = spaces.from_dict(described)
    except (KeyError, TypeError) as err:
        raise ValueError(f"{file!r}: `space_config` does not rebuild a space "
                         f"({type(err).__name__}: {err})") from None
    arch = space.validate(info["choices"])
    fixed = space.fix(arch)
    abstract = nnx.eval_shape(lambda: fixed.supernet_class(fixed, rngs=nnx.Rngs(0)))
    graphdef, state = nnx.split(abstract)
    on_this_device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    target = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=on_this_device),
                          nnx.to_pure_dict(state))
    if not (directory / "weights").is_dir():
        raise ValueError(f"export {str(directory)!r} has no weights/ directory (arch.json alone "
                         "describes the model, not its trained values)")
    try:
        restored = _this_process_only().restore((directory / "weights").absolute(), target)
    except (ValueError, KeyError, TypeError) as err:
        raise ValueError(f"{str(directory / 'weights')!r} does not hold the weights of the model its "
                         f"arch.json describes (written by {info.get('engine', 'an unknown version')}; "
                         f"an export of an older jaxnas may need retraining): "
                         f"{' '.join(str(err).split())[:200]}") from None
    nnx.replace_by_pure_dict(state, restored)
    return Exported(space, arch, precision.set_compute_dtype(nnx.merge(graphdef, state), dtype), info)


def scale_inputs(x, stats: dict):
    """(x − mean) / std with arch.json's `standardization` record: per feature, or per
    channel (broadcast over an image's trailing axis)."""
    return (x - jnp.asarray(stats["mean"], jnp.float32)) / jnp.asarray(stats["std"], jnp.float32)


# ---------------------------------------------------------------------- StableHLO

def to_stablehlo(model: nnx.Module, directory: Path | str, batch_size: int | None = None,
                 standardization: dict | None = None) -> Path:
    """Serialize `model`'s inference forward (`jax.export`, weights as constants) to
    `directory/model.stablehlo`, and its signature to `model.stablehlo.json`. The input
    is float32 `[b, *input_shape]` with `b` symbolic (any batch size) unless `batch_size`
    fixes it; with `standardization` (an export's arch.json record) the artifact takes raw
    inputs and scales them itself. The program computes in the model's dtype (`nas.precision`)
    and returns float32 logits. Loading needs only `jax` and `flatbuffers`:

        jax.export.deserialize(open(path, "rb").read()).call(x)  # logits [b, num_classes]
    """
    space = model.space
    if space.size() != 1:
        raise ValueError(f"to_stablehlo needs a compact model (one arch: `load`, `nas.extract`), "
                         f"not a supernet of {space.size():,} archs")
    if batch_size is not None and (not isinstance(batch_size, int) or batch_size < 1):
        raise ValueError(f"batch_size must be a positive integer or None, got {batch_size!r}")
    graphdef, state = nnx.split(model)
    probs = space.encode(None)

    def logits(x):
        if standardization is not None:
            x = scale_inputs(x, standardization)
        return jnp.asarray(nnx.merge(graphdef, state).forward(x, probs, train=False), jnp.float32)

    batch = jax_export.symbolic_shape("b")[0] if batch_size is None else batch_size
    traced = jax_export.export(jax.jit(logits), platforms=PLATFORMS)(
        jax.ShapeDtypeStruct((batch, *space.input_shape), jnp.float32))
    directory = Path(directory)
    path = directory / STABLEHLO_FILE
    write_bytes_atomic(path, bytes(traced.serialize()))
    batch_dim = "b" if batch_size is None else batch_size
    write_json_atomic(directory / SIGNATURE_FILE, {
        "file": STABLEHLO_FILE,
        "format": "jax.export serialization (StableHLO with its calling convention)",
        "input": {"shape": [batch_dim, *space.input_shape], "dtype": "float32",
                  **({"preprocessing": "raw inputs: standardized inside (arch.json's standardization)"}
                     if standardization else {})},
        "output": {"shape": [batch_dim, space.num_classes], "dtype": "float32",
                   "meaning": "logits (inference mode)"},
        "num_classes": space.num_classes, "compute_dtype": precision.compute_dtype_of(model),
        "space": space.name, "choices": {k: v[0] for k, v in space.choices.items()},
        "platforms": list(traced.platforms),
        "calling_convention_version": traced.calling_convention_version,
        "exported_with": f"jax {jax.__version__}",
        "requires": ["jax", "flatbuffers"],
        "load": "import jax; f = jax.export.deserialize(open('model.stablehlo', 'rb').read()); "
                "logits = f.call(x)",
    })
    return path


# ---------------------------------------------------------------------- evaluation

def evaluate(directory: Path | str, data: Dataset) -> dict:
    """Accuracy of the export in `directory` on `data`'s test split, and on its
    validation split when it has one, with the number of examples of each. Computed
    like training reports it (`launch.train.accuracy`), so a search's best/ on the
    run's own data reproduces arch.json's `metrics` exactly."""
    from launch.train import EVAL_BATCH, batch_accuracy  # the training loop's own metric

    exported = load(directory)
    space = exported.space
    if data.scaling is not None:
        raise ValueError(f"evaluate takes data {data.name!r} as loaded (data.standardize and "
                         "data.normalize false): the export applies its own scaling")
    rows = data.input_shape
    if rows != space.input_shape and rows + (1,) != space.input_shape:  # older exports of tables
        raise ValueError(f"data {data.name!r} has inputs {data.input_shape}; the export takes "
                         f"{space.input_shape}")
    if data.num_classes > space.num_classes:
        raise ValueError(f"data {data.name!r} has {data.num_classes} classes; the export "
                         f"predicts {space.num_classes}")
    def prepared(split):
        for x, y in in_order(split, EVAL_BATCH):
            yield np.asarray(exported.prepare(x)).reshape((len(x), *space.input_shape)), y
    metrics = {"test_accuracy": batch_accuracy(exported.model, prepared(data.test), len(data.test)),
               "test_examples": len(data.test)}
    if len(data.val):
        metrics.update(val_accuracy=batch_accuracy(exported.model, prepared(data.val), len(data.val)),
                       val_examples=len(data.val))
    return metrics


def _run_config(directory: Path) -> Path | None:
    """config.yaml of the run an export lies in — its best/, best/compact/ or
    retrain/<i>/ — or None for an export outside a run directory."""
    for run_dir, inside in ((directory.parent, directory.name == "best"),
                            (directory.parent.parent, directory.parent.name in ("best", "retrain"))):
        if inside and (run_dir / "config.yaml").is_file():
            return run_dir / "config.yaml"
    return None


def data_config(directory: Path | str, name: str | None = None, path: str | None = None,
                options: dict | None = None) -> tuple[configs.Config, Path | None]:
    """(config whose `seed` and `data` section rebuild the splits the export was trained
    on, the run's config.yaml they came from or None). An export inside a run
    directory (best/, best/compact/, retrain/<i>/) takes them from the run's
    config.yaml; any other gives its data set and seed (arch.json's `data` and
    `retrain.seed`) with the default `val_fraction`. `name`, `path` and `options`
    override; another data set than the recorded one keeps only the seed and
    `val_fraction`. The data is loaded as it is (`standardize` false): an export
    applies its own standardization (`Exported.prepare`, `evaluate`)."""
    directory = locate(directory)
    run_config = _run_config(directory)
    if run_config is not None:
        cfg = configs.load(run_config)
        seed, recorded = cfg.seed, dataclasses.asdict(cfg.data)
    else:
        info = read_info(directory)
        plugins.load(info.get("plugins"), f"{directory / 'arch.json'}: plugins")  # its data set may be one
        if "data" not in info and name is None:
            raise ValueError(f"{str(directory / 'arch.json')!r} records no data set; name one "
                             "(--data)")
        seed = info.get("retrain", {}).get("seed", configs.Config.seed)
        recorded = {"name": info.get("data", name)}
    data = dict(recorded)
    if name is not None and name != recorded["name"]:
        data = {"name": name, **({"val_fraction": recorded["val_fraction"]}
                                 if "val_fraction" in recorded else {})}
    data.update({k: v for k, v in (("path", path), ("options", options)) if v is not None})
    data.update(standardize=False, normalize=False, augment={})
    return configs.from_dict({"seed": seed, "data": data}), run_config


# ---------------------------------------------------------------------- Pareto front

@dataclasses.dataclass(frozen=True)
class FrontMember:
    """One network of a search's front: the arch as the search evaluated it (sparsity
    choices included), its parameters and its supernet validation accuracy."""
    arch: dict
    params: int
    supernet_val_accuracy: float


def pareto_front(evaluated: list[tuple[dict, float]], size: Callable[[dict], int]) -> list[FrontMember]:
    """The non-dominated networks of `evaluated` ((arch, accuracy) pairs) under fewer
    `size(arch)` and higher accuracy, smallest first: no other network is at most as
    large and at least as accurate, and better in one. A network evaluated twice
    (controllers tell a re-proposed network back its score) counts once."""
    first_seen: dict[str, tuple[dict, float]] = {}
    for arch, acc in evaluated:
        first_seen.setdefault(json.dumps(arch, sort_keys=True), (arch, acc))
    members = [FrontMember(dict(arch), int(size(arch)), float(acc)) for arch, acc in first_seen.values()]
    if not members:
        return []
    front = pareto.non_dominated_sort([(-m.params, m.supernet_val_accuracy) for m in members])[0]
    return sorted((members[i] for i in front), key=lambda m: (m.params, -m.supernet_val_accuracy))


def search_space(run_dir: Path, cfg: configs.Config) -> spaces.Space:
    """The run's searched space, bound like its export (best/arch.json) or, for a run
    stopped before exporting, like its data set."""
    space = configs.space(cfg.space.name, cfg.space.options)
    best = run_dir / "best" / "arch.json"
    if best.is_file():
        bound = read_info(best.parent)["space_config"]
        shape, classes = bound["input_shape"], bound["num_classes"]
    else:
        data = configs.dataset(cfg)
        shape, classes = data.input_shape, data.num_classes
    space = space.bind(shape, classes)
    if cfg.retrain.space_options:  # sized as the run sizes it: the exported network
        retrained = configs.space(cfg.space.name, {**cfg.space.options, **cfg.retrain.space_options})
        space = space.costed_as(retrained.bind(shape, classes))
    return space


def pareto_pick(run_dir: Path | str, n: int) -> FrontMember:
    """The `n`-th member (1-based) of the front of the archs a search evaluated
    (RUN_DIR/search_state.json's history): parameters ascending against supernet
    validation accuracy (`pareto_front`), so 1 is the smallest network of the front
    and the last is the most accurate. Sparse runs are sized by their dense
    parameters here, not by their nonzeros."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ValueError(f"run directory {str(run_dir)!r} does not exist")
    if not (run_dir / "config.yaml").is_file():
        raise ValueError(f"{str(run_dir)!r} is not a search's run directory: no config.yaml")
    state_file = run_dir / "search_state.json"
    if not state_file.is_file():
        raise ValueError(f"run {str(run_dir)!r} has no search_state.json: its search phase "
                         "has not started")
    try:
        state = json.loads(state_file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{str(state_file)!r} is damaged: not JSON ({err})") from None
    if not isinstance(state, dict) or "history" not in state:
        raise ValueError(f"run {str(run_dir)!r} searched by argmax (one arch, no front); "
                         "export it with --pick best")
    cfg = configs.load(run_dir / "config.yaml")
    space = search_space(run_dir, cfg)
    try:
        front = pareto_front([(arch, row[0]) for arch, row in state["history"]],
                             lambda arch: space.params(space.structure(arch)))
    except (TypeError, KeyError, IndexError, ValueError) as err:
        raise ValueError(f"{str(state_file)!r} is damaged: its history is not a list of [arch, "
                         f"scores] ({type(err).__name__}: {err})") from None
    if not 1 <= n <= len(front):
        raise ValueError(f"pareto pick {n}: the front of run {str(run_dir)!r} has {len(front)} "
                         f"members; pick 1 to {len(front)}")
    return front[n - 1]
