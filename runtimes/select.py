"""Which backends this machine has, which one ``auto`` picks, and opening one.

``auto`` prefers, in order:

1. TensorRT, when it imports and a CUDA GPU is present;
2. OpenVINO, when it is installed and drives a device here: an Intel CPU, an
   Intel GPU or NPU (OpenVINO's GPU/NPU plugins drive nothing else), or an
   x86-64 CPU of another vendor with native bf16 (OpenVINO computes in bf16 by
   default: 2.3x ONNX Runtime's fp32 MobileSAM encoder on an AVX-512 AMD EPYC)
   or with AVX2 (fp32 on both: OpenVINO ran ``samedge run``'s built-in memory
   model at 12.6-14.6 FPS against 7.5, and MobileSAM's encoder 1.21x faster, on
   a 2-core AVX2-only AMD EPYC; benchmarks/results/amd-epyc-avx2-2c/);
3. ONNX Runtime with its best execution provider.

Nothing here imports TensorRT at module import: its class is registered by a
``"module:Class"`` path and resolved on first use, and the probe that reports
its version imports it inside a function.

Example:
    >>> from samedge.runtimes import select_backend, open_backend   # doctest: +SKIP
    >>> select_backend("auto")                                       # doctest: +SKIP
    BackendChoice(name='openvino', reason="OpenVINO 2026.4.1 ...", device='cpu')
    >>> decoder = open_backend("model/decoder.onnx")                 # doctest: +SKIP
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import logging
import os
from dataclasses import dataclass, field
from typing import Any

from samedge._registry import lookup
from samedge._signals import import_module
from samedge.errors import BackendUnavailableError, DeviceUnavailableError, InputError
from samedge.runtimes._hw import DeviceRequest, cpu_info, cuda_devices, parse_device
from samedge.runtimes.base import Backend
from samedge.runtimes.ort import CPU_EP, CUDA_EP, PREFERRED_PROVIDERS, TENSORRT_EP, OrtBackend
from samedge.runtimes.ov import OpenVinoBackend

log = logging.getLogger(__name__)

__all__ = [
    "BACKENDS",
    "BackendChoice",
    "BackendInfo",
    "available_backends",
    "backend_class",
    "native_precisions",
    "open_backend",
    "refresh_probes",
    "select_backend",
]

#: Backend name -> class, or ``"module:Class"`` for a backend whose module
#: imports an SDK that may be absent (resolved by :func:`backend_class`).
BACKENDS: dict[str, type[Backend] | str] = {
    "onnxruntime": OrtBackend,
    "openvino": OpenVinoBackend,
    "tensorrt": "samedge.runtimes.trt:TensorRTBackend",
}
_INSTALL = {
    "onnxruntime": "pip install samedge",
    "openvino": "pip install samedge[openvino]",
    # A Jetson keeps JetPack's own TensorRT: PyPI's aarch64 wheels are for SBSA servers.
    "tensorrt": "pip install samedge[tensorrt] (x86-64/SBSA); on Jetson: TensorRT from "
    "JetPack + pip install samedge[jetson]",
}
_PRETTY = {"onnxruntime": "ONNX Runtime", "openvino": "OpenVINO", "tensorrt": "TensorRT"}
_CUDA_PROVIDERS = (TENSORRT_EP, CUDA_EP)


@dataclass(frozen=True)
class BackendInfo:
    """One backend as this machine has it (what ``samedge info`` prints).

    Attributes:
        name: Backend name as passed to ``backend=``.
        installed: Its library imports.
        version: Library version, ``None`` when not installed.
        hint: The pip command that installs it when it is missing (with the
            import error when it is present but broken); ``""`` when installed.
        devices: What it can run on here: ONNX Runtime's providers, OpenVINO's
            devices with their full names, the CUDA GPUs TensorRT would use.
    """

    name: str
    installed: bool
    version: str | None
    hint: str
    devices: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class BackendChoice:
    """The backend :func:`select_backend` settled on.

    Attributes:
        name: Backend name (``"onnxruntime"``, ``"openvino"``, ``"tensorrt"``).
        reason: One line saying why.
        device: Device in samedge's words (``"cpu"``, ``"gpu"``, ``"cuda:0"``,
            ``"npu"``) to pass to the backend; ``None`` leaves it to the backend.
    """

    name: str
    reason: str
    device: str | None = None

    def __str__(self) -> str:
        where = f" on {self.device}" if self.device else ""
        return f"{self.name}{where} ({self.reason})"


# -- probes (cached per process; tests monkeypatch them) -----------------------------


@dataclass(frozen=True)
class _Probe:
    version: str | None
    error: str | None = None
    devices: dict[str, str] = field(default_factory=dict)  # id -> description
    cpu_bf16: bool = False


@functools.lru_cache(maxsize=1)
def _probe_onnxruntime() -> _Probe:
    try:
        ort = import_module("onnxruntime")
    except ImportError as e:
        return _Probe(version=None, error=str(e))
    # The Azure provider calls a remote endpoint; it is no device of this machine.
    providers = [p for p in ort.get_available_providers() if p != "AzureExecutionProvider"]
    return _Probe(version=ort.__version__, devices={p: p for p in providers})


@functools.lru_cache(maxsize=1)
def _probe_openvino() -> _Probe:
    if not _importable("openvino"):
        return _Probe(version=None)
    try:
        # import_module: a Ctrl-C inside OpenVINO's native import must interrupt,
        # not read as "OpenVINO is not installed" and fall back to ONNX Runtime.
        ov = import_module("openvino")
        core = ov.Core()
        devices = {}
        for device in core.available_devices:
            try:
                devices[device] = str(core.get_property(device, "FULL_DEVICE_NAME"))
            except RuntimeError:
                devices[device] = device
        caps: list[str] = []
        if "CPU" in devices:
            caps = list(core.get_property("CPU", "OPTIMIZATION_CAPABILITIES"))
    except Exception as e:  # a broken install raises anything from ImportError to RuntimeError
        return _Probe(version=None, error=f"{type(e).__name__}: {e}")
    return _Probe(version=ov.get_version().split("-")[0], devices=devices, cpu_bf16="BF16" in caps)


def _importable(module: str) -> bool:
    # A stubs-only install (tensorrt-stubs ships tensorrt/__init__.pyi) is a namespace
    # package with no origin: it imports, but holds no library.
    spec = importlib.util.find_spec(module)
    return spec is not None and spec.origin is not None


@functools.lru_cache(maxsize=1)
def _probe_tensorrt() -> _Probe:
    if not _importable("tensorrt"):
        return _Probe(version=None)
    try:
        tensorrt = import_module("tensorrt")
    except Exception as e:  # NVIDIA's pip stubs fail at import when the real libs are absent
        return _Probe(version=None, error=f"{type(e).__name__}: {e}")
    version = getattr(tensorrt, "__version__", None)
    if version is None:
        return _Probe(version=None, error="the installed tensorrt package has no runtime")
    return _Probe(version=str(version))


def refresh_probes() -> None:
    """Forget cached probe results (after installing a library or plugging a device)."""
    for probe in (_probe_onnxruntime, _probe_openvino, _probe_tensorrt, cuda_devices, cpu_info):
        probe.cache_clear()


def _probe(name: str) -> _Probe:
    return {
        "onnxruntime": _probe_onnxruntime,
        "openvino": _probe_openvino,
        "tensorrt": _probe_tensorrt,
    }[name]()


def available_backends() -> list[BackendInfo]:
    """Every backend samedge knows, installed or not, with what it can run on here.

    Example:
        >>> for info in available_backends():                    # doctest: +SKIP
        ...     print(info.name, info.version or info.hint, info.devices)
        onnxruntime 1.32.0 ['CPUExecutionProvider']
        openvino 2026.4.1 ['CPU: AMD EPYC']
        tensorrt pip install samedge[tensorrt] []
    """
    infos = []
    for name in BACKENDS:
        probe = _probe(name)
        installed = probe.version is not None
        hint = ""
        if not installed:
            hint = _INSTALL[name] + (f" (import failed: {probe.error})" if probe.error else "")
        if name == "onnxruntime":
            devices = list(probe.devices)
        elif name == "openvino":
            devices = [f"{d}: {full}" for d, full in probe.devices.items()]
        else:
            devices = [str(gpu) for gpu in cuda_devices()]
        infos.append(BackendInfo(name, installed, probe.version, hint, devices))
    return infos


# -- selection -----------------------------------------------------------------------


def _ort_provider(probe: _Probe) -> str:
    has_gpu = bool(cuda_devices())
    for provider in PREFERRED_PROVIDERS:
        if provider in probe.devices and (provider not in _CUDA_PROVIDERS or has_gpu):
            return provider
    return CPU_EP


def _openvino_targets(probe: _Probe) -> tuple[dict[str, str], str]:
    """Device kinds (``"cpu"``, ``"gpu"``, ``"npu"``) where OpenVINO is worth it, and why not."""
    if probe.version is None:
        why_not = "OpenVINO is not installed" + (f" ({probe.error})" if probe.error else "")
        return {}, why_not
    cpu = cpu_info()
    targets: dict[str, str] = {}
    if "CPU" in probe.devices:
        if cpu.is_intel:
            targets["cpu"] = f"Intel CPU {cpu.model!r} is present"
        elif probe.cpu_bf16:
            targets["cpu"] = (
                f"CPU {cpu.model!r} has native bf16, which OpenVINO computes in by default"
            )
        elif cpu.arch in ("x86_64", "AMD64") and "avx2" in cpu.flags:
            targets["cpu"] = (
                f"x86-64 CPU {cpu.model!r} has AVX2, where OpenVINO's fp32 outruns "
                "ONNX Runtime's (measured on AMD EPYC)"
            )
    gpus = [d for d in probe.devices if d.startswith("GPU")]
    if gpus:
        targets["gpu"] = f"Intel GPU {probe.devices[gpus[0]]!r} is present"
    if "NPU" in probe.devices:
        targets["npu"] = f"Intel NPU {probe.devices['NPU']!r} is present"
    vendor = cpu.vendor or "of unknown vendor"
    why_not = (
        f"OpenVINO {probe.version} skipped: CPU {cpu.model!r} is {vendor} ({cpu.arch}) "
        "without native bf16 or AVX2"
    )
    if not targets:
        why_not += ", and no Intel GPU or NPU is present"
    return targets, why_not


def _unavailable(name: str) -> BackendUnavailableError:
    probe = _probe(name)
    detail = f" (import failed: {probe.error})" if probe.error else ""
    return BackendUnavailableError(
        f"backend {name!r} is not installed{detail}; install it with `{_INSTALL[name]}`"
    )


def _gpu_missing(request: DeviceRequest) -> DeviceUnavailableError:
    gpus = cuda_devices()
    have = ", ".join(str(g) for g in gpus) if gpus else "no CUDA GPU"
    return DeviceUnavailableError(f"device {str(request)!r}: this machine has {have}")


def _auto(request: DeviceRequest | None) -> BackendChoice:
    skipped: list[str] = []
    trt = _probe_tensorrt()
    gpus = cuda_devices()
    wants_nvidia = request is None or request.kind in ("cuda", "gpu")
    if wants_nvidia and trt.version is not None:
        index = request.ordinal if request is not None else 0
        if index < len(gpus):
            gpu = gpus[index]
            return BackendChoice(
                "tensorrt",
                f"TensorRT {trt.version} imports and CUDA GPU {gpu.name!r} ({gpu.sm}) is present",
                device=f"cuda:{index}",
            )
        skipped.append(f"TensorRT {trt.version} is installed but there is no CUDA GPU {index}")
    elif wants_nvidia:
        skipped.append("TensorRT is not installed" + (f" ({trt.error})" if trt.error else ""))

    ov_probe = _probe_openvino()
    targets, why_not = _openvino_targets(ov_probe)
    if request is None:
        kind = next((k for k in ("cpu", "gpu", "npu") if k in targets), None)
    elif request.kind in ("cpu", "npu") or (request.kind == "gpu" and not gpus):
        kind = request.kind if request.kind in targets else None
    else:
        kind = None
    if kind is not None:
        ov_device = kind if request is None or request.index is None else str(request)
        reason = f"OpenVINO {ov_probe.version} is installed and {targets[kind]}"
        return BackendChoice("openvino", "; ".join([reason, *skipped]), device=ov_device)
    if request is None or request.kind in ("cpu", "npu"):
        skipped.append(why_not)

    ort = _probe_onnxruntime()
    if ort.version is None:
        raise _unavailable("onnxruntime")
    device: str | None
    if request is None:
        provider, device = _ort_provider(ort), None
    elif request.kind == "cpu":
        provider, device = CPU_EP, "cpu"
    elif request.kind in ("cuda", "gpu") and request.ordinal < len(gpus):
        provider = next((p for p in _CUDA_PROVIDERS if p in ort.devices), "")
        if not provider:
            raise DeviceUnavailableError(
                f"device {str(request)!r}: no installed backend drives the CUDA GPU "
                f"({'; '.join(skipped)}; onnxruntime has no CUDA provider): "
                f"`{_INSTALL['tensorrt']}` or `pip install onnxruntime-gpu`"
            )
        device = f"cuda:{request.ordinal}"
    elif request.kind == "npu":
        raise DeviceUnavailableError(
            "device 'npu': "
            + ("OpenVINO sees no NPU" if ov_probe.version else "OpenVINO is not installed")
            + "; no other backend drives an NPU"
        )
    elif request.kind == "gpu" and not gpus:
        raise DeviceUnavailableError(
            f"device {str(request)!r}: this machine has no CUDA GPU, and "
            + ("OpenVINO sees no GPU" if ov_probe.version else "OpenVINO is not installed")
        )
    else:
        raise _gpu_missing(request)
    reason = f"ONNX Runtime {ort.version} with {provider}"
    return BackendChoice("onnxruntime", "; ".join([reason, *skipped]), device=device)


def _explicit(name: str, request: DeviceRequest | None) -> BackendChoice:
    probe = _probe(name)
    if probe.version is None:
        raise _unavailable(name)
    pretty = f"{_PRETTY[name]} {probe.version}"
    gpus = cuda_devices()
    if name == "tensorrt":
        if request is not None and request.kind in ("cpu", "npu"):
            raise DeviceUnavailableError(
                f"device {str(request)!r}: TensorRT runs on NVIDIA GPUs only; "
                "use backend='onnxruntime' or 'openvino'"
            )
        index = request.ordinal if request is not None else 0
        if index >= len(gpus):
            raise DeviceUnavailableError(
                f"backend 'tensorrt' needs a CUDA GPU and this machine has "
                f"{len(gpus) or 'none'}; use backend='onnxruntime' or 'openvino'"
            )
        return BackendChoice(name, f"requested; {pretty} on {gpus[index]}", f"cuda:{index}")
    if name == "openvino":
        if request is None:
            return BackendChoice(name, f"requested; {pretty} ({', '.join(probe.devices)})", None)
        if request.kind == "cuda":
            raise DeviceUnavailableError(
                f"device {str(request)!r}: OpenVINO does not run on CUDA GPUs; "
                "use backend='tensorrt' or 'onnxruntime'"
            )
        wanted = request.kind.upper() + ("" if request.index is None else f".{request.index}")
        present = [d for d in probe.devices if d == wanted or d.split(".")[0] == wanted]
        if not present:
            raise DeviceUnavailableError(
                f"device {str(request)!r}: OpenVINO has no {wanted} here; it has "
                f"{', '.join(probe.devices) or 'no device'}"
            )
        return BackendChoice(name, f"requested; {pretty} on {present[0]}", str(request))
    # onnxruntime
    if request is None:
        return BackendChoice(name, f"requested; {pretty} with {_ort_provider(probe)}", None)
    if request.kind == "cpu":
        return BackendChoice(name, f"requested; {pretty} with {CPU_EP}", "cpu")
    if request.kind == "npu":
        raise DeviceUnavailableError(
            "device 'npu': ONNX Runtime drives CPUs and CUDA GPUs; use backend='openvino'"
        )
    if request.ordinal >= len(gpus):
        raise _gpu_missing(request)
    provider = next((p for p in _CUDA_PROVIDERS if p in probe.devices), None)
    if provider is None:
        raise DeviceUnavailableError(
            f"device {str(request)!r}: this onnxruntime has no CUDA provider "
            f"({', '.join(probe.devices)}); install onnxruntime-gpu"
        )
    return BackendChoice(name, f"requested; {pretty} with {provider}", f"cuda:{request.ordinal}")


def select_backend(name: str = "auto", device: str | None = None) -> BackendChoice:
    """Decide which backend (and device) runs a model, and say why.

    Args:
        name: ``"auto"``, ``"onnxruntime"``, ``"openvino"`` or ``"tensorrt"``.
        device: ``None`` (the backend's best), ``"cpu"``, ``"gpu"``, ``"gpu:N"``,
            ``"cuda"``, ``"cuda:N"`` or ``"npu"``.

    Returns:
        The backend, a one-line reason, and the device to pass on. ``auto`` logs
        its choice at INFO.

    Raises:
        UnknownNameError: ``name`` is not a backend (the message suggests the closest).
        BackendUnavailableError: the backend's library is not installed (names the pip extra).
        DeviceUnavailableError: the library is there, the requested hardware is not.
        InputError: ``device`` is malformed.

    Example:
        >>> choice = select_backend("auto")            # doctest: +SKIP
        >>> choice.name, choice.reason                 # doctest: +SKIP
        ('openvino', "OpenVINO 2026.4.1 is installed and Intel CPU '...' is present; ...")
    """
    if not isinstance(name, str):
        raise InputError(f"backend: got {type(name).__name__}, expected a name such as 'auto'")
    lookup({"auto": None, **BACKENDS}, name, "backend")
    request = parse_device(device)
    if name == "auto":
        choice = _auto(request)
        log.info("backend auto -> %s", choice)
    else:
        choice = _explicit(name, request)
        log.debug("backend %s", choice)
    return choice


def backend_class(name: str) -> type[Backend]:
    """The class registered under ``name``, importing its module if needed.

    Raises:
        UnknownNameError: ``name`` is not a backend.
        BackendUnavailableError: the backend's module cannot be imported.
    """
    entry = lookup(BACKENDS, name, "backend")
    if not isinstance(entry, str):
        return entry
    module_name, _, attr = entry.partition(":")
    try:
        module = import_module(module_name)
    except ImportError as e:
        raise BackendUnavailableError(
            f"backend {name!r} cannot be imported ({e}); install it with `{_INSTALL[name]}`"
        ) from e
    cls = getattr(module, attr, None)
    if not (isinstance(cls, type) and issubclass(cls, Backend)):
        raise BackendUnavailableError(f"backend {name!r}: {entry} is not a Backend class")
    return cls


def resolve_backend(
    backend: str | BackendChoice = "auto", device: str | None = None, config: Any = None
) -> BackendChoice:
    """The backend that runs a model, decided once for all its graphs.

    Args:
        backend: A backend name, ``"auto"`` (see :func:`select_backend`), or a
            choice already made (returned as it is).
        device: As for :func:`select_backend`.
        config: A backend config (``OrtConfig``, ``OpenVinoConfig``, ...); with
            ``backend="auto"`` it names its backend, which is then used.

    Raises:
        InputError: ``config`` belongs to no backend.
        UnknownNameError, BackendUnavailableError, DeviceUnavailableError: as for
            :func:`select_backend`.
    """
    if isinstance(backend, BackendChoice):
        return backend
    if backend == "auto" and config is not None:
        owner = _config_owner(config)
        if owner is None:
            raise InputError(
                f"config: got {type(config).__name__}, which belongs to no backend; expected "
                "OrtConfig, OpenVinoConfig or the TensorRT backend's config"
            )
        choice = select_backend(owner, device)
        reason = f"auto: the {type(config).__name__} passed belongs to {owner}"
        log.info("backend auto -> %s, as the %s passed says", owner, type(config).__name__)
        return BackendChoice(choice.name, reason, choice.device)
    return select_backend(backend, device)


def open_backend(
    model_path: str | os.PathLike[str],
    backend: str | BackendChoice = "auto",
    *,
    config: Any = None,
    device: str | None = None,
) -> Backend:
    """Create (not yet load) the backend for one ONNX graph.

    Args:
        model_path: The ``.onnx`` file.
        backend: A backend name, ``"auto"`` (see :func:`select_backend`), or a
            :class:`BackendChoice` made earlier by :func:`resolve_backend` (then
            ``device`` is ignored: the choice carries it), so that the graphs of
            one model are placed by one decision.
        config: The backend's config (``OrtConfig``, ``OpenVinoConfig``, ...). With
            ``backend="auto"`` a config names its backend, which is then used.
        device: As for :func:`select_backend`.

    Raises:
        InputError: the file is missing, or ``config`` belongs to another backend.
        UnknownNameError, BackendUnavailableError, DeviceUnavailableError: as for
            :func:`select_backend`.

    Example:
        >>> with open_backend("model/decoder.onnx", "onnxruntime") as decoder:  # doctest: +SKIP
        ...     outputs = decoder.infer(feeds)
    """
    choice = resolve_backend(backend, device, config)
    cls = backend_class(choice.name)
    accepted = cls.config_class
    if config is not None and (accepted is None or not isinstance(config, accepted)):
        expected = accepted.__name__ if accepted is not None else "no config"
        raise InputError(
            f"config: got {type(config).__name__} for backend {choice.name!r}, expected {expected}"
        )
    factory: Any = cls  # subclasses take (model_path, config, *, device); the ABC does not
    backend_obj: Backend = factory(model_path, config, device=choice.device)
    return backend_obj


def _config_owner(config: Any) -> str | None:
    """The backend whose config class ``config`` is an instance of."""
    for name in BACKENDS:
        try:
            cls = backend_class(name)
        except BackendUnavailableError:
            continue
        if cls.config_class is not None and isinstance(config, cls.config_class):
            return name
    return None


def native_precisions(choice: BackendChoice) -> tuple[tuple[str, ...], str]:
    """The reduced precisions the chosen backend's device computes natively, and why.

    What ``samedge build --precision auto`` builds and times: OpenVINO's
    ``OPTIMIZATION_CAPABILITIES`` of the device; FP16 and INT8 for TensorRT
    and for ONNX Runtime with CUDA; INT8 only for ONNX Runtime on the CPU.

    Args:
        choice: What :func:`select_backend` settled on.

    Returns:
        (``"fp16"``/``"int8"`` in the order to try, one line saying why).

    Raises:
        BackendUnavailableError: OpenVINO cannot report the device's capabilities.
    """
    if choice.name == "openvino":
        device = (choice.device or "cpu").upper().replace(":", ".")
        try:
            caps = set(import_module("openvino").Core().get_property(
                device, "OPTIMIZATION_CAPABILITIES"))  # fmt: skip
        except Exception as e:  # OpenVINO raises RuntimeError subclasses for unknown devices
            raise BackendUnavailableError(
                f"OpenVINO cannot report {device}'s capabilities ({type(e).__name__}: {e})"
            ) from e
        found = tuple(p for p, cap in (("int8", "INT8"), ("fp16", "FP16")) if cap in caps)
        return found, f"OpenVINO {device} optimization capabilities {sorted(caps)}"
    if choice.name == "tensorrt":
        return ("fp16", "int8"), "TensorRT runs FP16 and INT8 natively"
    providers = set(_probe_onnxruntime().devices)
    if providers & set(_CUDA_PROVIDERS):
        return ("fp16", "int8"), "ONNX Runtime with CUDA: fp16, int8"
    return ("int8",), "ONNX Runtime on CPU: int8 kernels only"
