"""Load fairseq `.pt` checkpoints without running code and without fairseq or omegaconf.

`torch.load` is given a restricted pickle module whose `find_class` resolves only:
- torch's tensor-rebuild functions, dtypes, `torch.Size` and `collections.OrderedDict` (torch's
  own weights_only allow-list), and numpy scalar/array rebuilding;
- config classes (OmegaConf containers and nodes, `argparse.Namespace`, `typing` names, and type
  references into `fairseq.`/`examples.` such as structured-config classes or enums), which
  become `StandIn` objects that only record their constructor arguments and state.

Any other global (`os.system`, `builtins.eval`, ...) raises `UnsafeCheckpointError` naming it.
After loading, `plain_data` turns the stand-ins into dicts, lists and scalars.
"""

from __future__ import annotations

import _compat_pickle
import collections
import pickle
import re
import types
from pathlib import Path
from typing import Any

import torch


class UnsafeCheckpointError(pickle.UnpicklingError, ValueError):
    """The pickle references a global that is not on the allow-list (a ValueError, so the
    command line reports it as a plain error)."""


class CheckpointReadError(ValueError):
    """The file is missing, truncated or not a torch checkpoint."""


def _type_of_constant(value: Any) -> type:
    """`builtins.type` as pickle uses it for `type(None)`; never a class factory."""
    if value is None or value is NotImplemented or value is Ellipsis:
        return type(value)
    raise UnsafeCheckpointError(f"checkpoint calls builtins.type({value!r}), which is not allowed")


def _subscript(base: Any, args: Any) -> Any:
    """`operator.getitem` as typing generics pickle (`Optional[int]`): only on stand-ins."""
    if not isinstance(base, type) or not issubclass(base, StandIn):
        raise UnsafeCheckpointError(f"checkpoint calls operator.getitem on {type(base).__name__}, which is not allowed")
    return _stand_in_class(base.qualname.rpartition(".")[0], f"{base.__name__}[...]")


def _safe_callables() -> dict[tuple[str, str], Any]:
    """Globals that only rebuild tensors, numbers, arrays or containers."""
    table: dict[tuple[str, str], Any] = {}
    try:  # torch's own weights_only allow-list: tensors, storages, dtypes, Size, OrderedDict, ...
        from torch._weights_only_unpickler import _get_allowed_globals

        for dotted, obj in _get_allowed_globals().items():
            module, _, name = dotted.rpartition(".")
            table[(module, name)] = obj
    except (ImportError, AttributeError):  # a torch without it: the essentials below suffice
        pass
    table.update({
        ("collections", "OrderedDict"): collections.OrderedDict,
        ("torch", "Size"): torch.Size,
        ("torch._utils", "_rebuild_tensor"): torch._utils._rebuild_tensor,
        ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
        ("torch._utils", "_rebuild_parameter"): torch._utils._rebuild_parameter,
        ("builtins", "set"): set, ("builtins", "frozenset"): frozenset,
        ("builtins", "type"): _type_of_constant,
        ("operator", "getitem"): _subscript, ("_operator", "getitem"): _subscript,
    })
    table.update({("torch", str(d).split(".")[1]): d for d in (
        torch.float16, torch.float32, torch.float64, torch.bfloat16, torch.int8, torch.int16, torch.int32,
        torch.int64, torch.uint8, torch.bool)})
    # fairseq's extra_state may hold numpy scalars/arrays (e.g. the best validation loss).
    import numpy as np

    multiarray = np._core.multiarray if hasattr(np, "_core") else np.core.multiarray  # numpy 2 / 1
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        table[(module, "scalar")] = multiarray.scalar
        table[(module, "_reconstruct")] = multiarray._reconstruct
    table[("numpy", "dtype")] = np.dtype
    table[("numpy", "ndarray")] = np.ndarray
    return table


# Classes replaced by recording stand-ins: OmegaConf/argparse configs and type references.
_STAND_IN_NAMES = {
    ("omegaconf.dictconfig", "DictConfig"), ("omegaconf.listconfig", "ListConfig"),
    ("omegaconf.base", "Metadata"), ("omegaconf.base", "ContainerMetadata"),
    ("argparse", "Namespace"),
    ("builtins", "dict"), ("builtins", "list"), ("builtins", "str"), ("builtins", "int"),
    ("builtins", "float"), ("builtins", "bool"), ("builtins", "object"),
}
# omegaconf value nodes (AnyNode, StringNode, EnumNode, ...) and typing references (Any, Union).
_STAND_IN_MODULES = ("omegaconf.nodes", "typing")
_TYPE_REF_PREFIXES = ("fairseq.", "examples.")  # structured-config classes and enums, never imported


class StandIn:
    """A recorded, never-imported object: `qualname`, constructor `args` and `state`."""

    qualname = "?"
    args: tuple = ()  # NEWOBJ/BUILD bypass __init__, so the defaults live on the class
    state: Any = None

    def __init__(self, *args: Any) -> None:
        self.args = args
        self.state: Any = None

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def __repr__(self) -> str:
        return f"<{self.qualname}>"


def _stand_in_class(module: str, name: str) -> type:
    # One class per name so `plain_data` can tell DictConfig from Namespace.
    return type(name, (StandIn,), {"qualname": f"{module}.{name}", "__module__": __name__})


_SAFE_CALLABLES = _safe_callables()


class RestrictedUnpickler(pickle.Unpickler):
    """An Unpickler whose globals are limited to the allow-list above."""

    _cache: dict[tuple[str, str], type] = {}

    def find_class(self, module: str, name: str) -> Any:
        # Protocol-2 pickles name Python 2 modules (`__builtin__`); map them as pickle would.
        if (module, name) in _compat_pickle.NAME_MAPPING:
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        key = (module, name)
        if key in _SAFE_CALLABLES:
            return _SAFE_CALLABLES[key]
        if key in _STAND_IN_NAMES or module in _STAND_IN_MODULES or module.startswith(_TYPE_REF_PREFIXES):
            if key not in self._cache:
                self._cache[key] = _stand_in_class(module, name)
            return self._cache[key]
        raise UnsafeCheckpointError(
            f"checkpoint references {module}.{name}, which is not allowed: a checkpoint may hold only "
            "tensors, containers and config objects (loading it could run code)"
        )


def _restricted_load(f: Any, **kwargs: Any) -> Any:
    return RestrictedUnpickler(f, **kwargs).load()


# The pickle module handed to torch.load: its Unpickler (and `load`, for the legacy format).
restricted_pickle = types.SimpleNamespace(__name__="restricted_pickle", Unpickler=RestrictedUnpickler,
                                          load=_restricted_load)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a fairseq/torch `.pt` file into plain data (tensors, dicts, lists, scalars).

    Raises CheckpointReadError for a missing, truncated or non-checkpoint file and
    UnsafeCheckpointError (naming the global) for a pickle that could run code.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointReadError(f"{path}: no such checkpoint file")
    try:
        # weights_only=False is required to pass a pickle module; ours is the restricted one.
        obj = torch.load(path, map_location="cpu", pickle_module=restricted_pickle, weights_only=False)
    except UnsafeCheckpointError as e:
        raise UnsafeCheckpointError(f"{path}: {e}") from None
    except Exception as e:  # noqa: BLE001 -- any other failure means the file cannot be read as data
        raise CheckpointReadError(
            f"{path}: not a readable torch checkpoint (truncated or another format?): {type(e).__name__}: "
            + " ".join(str(e).split())  # one line: some torch messages span several
        ) from e
    data = plain_data(obj)
    if not isinstance(data, dict):
        raise CheckpointReadError(f"{path}: expected a checkpoint dict, got {type(data).__name__}")
    return data


def plain_data(obj: Any) -> Any:
    """Replace stand-ins by plain data: DictConfig/Namespace -> dict, ListConfig -> list,
    value nodes -> their value, type references -> their dotted name."""
    return _plain(obj, {})


def _plain(obj: Any, seen: dict[int, Any]) -> Any:
    if isinstance(obj, torch.Tensor) or obj is None or isinstance(obj, (str, int, float, bool, bytes)):
        return obj
    if id(obj) in seen:  # OmegaConf nodes point back to their parents
        return seen[id(obj)]
    if isinstance(obj, dict):
        out: Any = type(obj)() if isinstance(obj, collections.OrderedDict) else {}
        seen[id(obj)] = out
        for k, v in obj.items():
            out[k] = _plain(v, seen)
        return out
    if isinstance(obj, (list, tuple)):
        return type(obj)(_plain(v, seen) for v in obj)
    if isinstance(obj, StandIn):
        return _plain_stand_in(obj, seen)
    return obj


def _plain_stand_in(obj: StandIn, seen: dict[int, Any]) -> Any:
    name, state = obj.qualname, obj.state if isinstance(obj.state, dict) else {}
    if name == "omegaconf.dictconfig.DictConfig" or name == "argparse.Namespace":
        content = state.get("_content", state) if name.startswith("omegaconf") else state
        out: dict[str, Any] = {}
        seen[id(obj)] = out
        if isinstance(content, dict):
            for k, v in content.items():
                out[str(k)] = _plain(v, seen)
            return out
        return _plain(content, seen)  # None, "???" or an interpolation string
    if name == "omegaconf.listconfig.ListConfig":
        content = state.get("_content")
        return [_plain(v, seen) for v in content] if isinstance(content, list) else _plain(content, seen)
    if name.startswith("omegaconf.nodes."):
        return _plain(state.get("_val"), seen)
    if obj.args and not state:  # an enum member rebuilt as Enum(value)
        return _plain(obj.args[0], seen)
    return name  # a type reference (metadata, structured-config class)


_INTERP = re.compile(r"^\$\{([A-Za-z0-9_.]+)\}$")


def resolve_interpolations(node: Any, root: dict[str, Any]) -> None:
    """Replace whole-string `${a.b.c}` values in `node` by the value at that path of `root`.

    OmegaConf pickles interpolations unresolved; fairseq configs use absolute ones.
    """
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for k, v in list(items):
        if isinstance(v, (dict, list)):
            resolve_interpolations(v, root)
        elif isinstance(v, str) and (m := _INTERP.match(v)):
            target: Any = root
            for part in m.group(1).split("."):
                target = target.get(part) if isinstance(target, dict) else None
            if target is not None:
                node[k] = target
