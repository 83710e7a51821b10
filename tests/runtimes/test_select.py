"""Backend listing, ``auto`` selection, explicit requests and open_backend."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest

from samedge.errors import (
    BackendUnavailableError,
    DeviceUnavailableError,
    InputError,
    UnknownNameError,
)
from samedge.runtimes import (
    BACKENDS,
    OpenVinoBackend,
    OpenVinoConfig,
    OrtBackend,
    OrtConfig,
    available_backends,
    backend_class,
    open_backend,
    select_backend,
)
from samedge.runtimes import select as sel
from samedge.runtimes._hw import CpuInfo, CudaDevice
from tests.runtimes._graphs import matmul_add

INTEL = CpuInfo("GenuineIntel", "Intel(R) Xeon(R) Platinum 8480+", "x86_64", 8, frozenset())
AMD = CpuInfo("AuthenticAMD", "AMD EPYC", "x86_64", 2, frozenset())
AMD_AVX2 = CpuInfo("AuthenticAMD", "AMD EPYC", "x86_64", 2, frozenset({"avx2", "fma"}))
ARM = CpuInfo("", "Cortex-A78AE", "aarch64", 8, frozenset({"asimd"}))
GPU = CudaDevice(0, "NVIDIA H100 80GB HBM3", (9, 0))
ORT_CPU = sel._Probe(version="1.32.0", devices={"CPUExecutionProvider": "CPUExecutionProvider"})
ORT_GPU = sel._Probe(
    version="1.32.0",
    devices={p: p for p in ("CUDAExecutionProvider", "CPUExecutionProvider")},
)
OV_CPU = sel._Probe(version="2026.4.1", devices={"CPU": "Intel Xeon"}, cpu_bf16=False)
OV_CPU_BF16 = sel._Probe(version="2026.4.1", devices={"CPU": "AMD EPYC"}, cpu_bf16=True)
OV_IGPU = sel._Probe(
    version="2026.4.1", devices={"CPU": "AMD Ryzen", "GPU": "Intel(R) Arc(TM) A770"}
)
NO_OV = sel._Probe(version=None)
TRT = sel._Probe(version="10.13.0.35")
NO_TRT = sel._Probe(version=None)


@pytest.fixture
def machine(monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """Set what the probes see: ``machine(cpu=, gpus=, ort=, ov=, trt=)``."""

    def set_machine(
        *,
        cpu: CpuInfo = AMD,
        gpus: tuple[CudaDevice, ...] = (),
        ort: sel._Probe = ORT_CPU,
        ov: sel._Probe = NO_OV,
        trt: sel._Probe = NO_TRT,
    ) -> None:
        monkeypatch.setattr(sel, "cpu_info", lambda: cpu)
        monkeypatch.setattr(sel, "cuda_devices", lambda: gpus)
        monkeypatch.setattr(sel, "_probe_onnxruntime", lambda: ort)
        monkeypatch.setattr(sel, "_probe_openvino", lambda: ov)
        monkeypatch.setattr(sel, "_probe_tensorrt", lambda: trt)

    return set_machine


# -- this machine, unpatched -----------------------------------------------------------


def test_available_backends_lists_all_three() -> None:
    infos = {info.name: info for info in available_backends()}
    assert list(infos) == ["onnxruntime", "openvino", "tensorrt"]
    assert infos["onnxruntime"].installed
    assert "CPUExecutionProvider" in infos["onnxruntime"].devices
    assert infos["onnxruntime"].hint == ""
    if not infos["tensorrt"].installed:
        assert infos["tensorrt"].version is None
        assert infos["tensorrt"].hint.startswith("pip install samedge[tensorrt]")


@pytest.mark.openvino
def test_openvino_devices_carry_their_full_names() -> None:
    info = next(i for i in available_backends() if i.name == "openvino")
    assert info.installed
    assert info.version
    assert any(d.startswith("CPU: ") and len(d) > 5 for d in info.devices)


@pytest.mark.openvino
def test_auto_picks_openvino_on_this_machine(caplog: pytest.LogCaptureFixture) -> None:
    """Here: OpenVINO installed on an x86 CPU that is Intel, has native bf16 or AVX2."""
    import openvino as ov

    cpu = sel.cpu_info()
    caps = ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    if sel._probe_tensorrt().version is not None and sel.cuda_devices():
        pytest.skip("TensorRT and a CUDA GPU are present: auto picks TensorRT")
    if not (cpu.is_intel or "BF16" in caps or "avx2" in cpu.flags):
        pytest.skip(f"CPU {cpu.model!r} is neither Intel nor bf16- or AVX2-capable")
    with caplog.at_level(logging.INFO, logger="samedge.runtimes.select"):
        choice = select_backend()
    assert choice.name == "openvino"
    assert choice.device == "cpu"
    assert "OpenVINO" in choice.reason
    assert "\n" not in choice.reason
    records = [r for r in caplog.records if r.name == "samedge.runtimes.select"]
    assert len(records) == 1
    assert "openvino" in records[0].getMessage()
    assert choice.reason in records[0].getMessage()


def test_importing_runtimes_imports_no_optional_sdk() -> None:
    code = (
        "import sys, samedge.runtimes as r; r.available_backends(); "
        "assert 'tensorrt' not in sys.modules, 'tensorrt imported'; "
        "assert 'samedge.runtimes.trt' not in sys.modules, 'trt module imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


# -- auto on simulated machines --------------------------------------------------------


def test_auto_prefers_tensorrt_with_a_gpu(machine) -> None:  # type: ignore[no-untyped-def]
    machine(gpus=(GPU,), ort=ORT_GPU, ov=OV_CPU, trt=TRT, cpu=INTEL)
    choice = select_backend("auto")
    assert (choice.name, choice.device) == ("tensorrt", "cuda:0")
    assert "TensorRT 10.13.0.35" in choice.reason
    assert "sm_90" in choice.reason


def test_auto_openvino_on_intel(machine) -> None:  # type: ignore[no-untyped-def]
    machine(cpu=INTEL, ov=OV_CPU)
    choice = select_backend()
    assert (choice.name, choice.device) == ("openvino", "cpu")
    assert "Intel CPU" in choice.reason
    assert "TensorRT is not installed" in choice.reason


def test_auto_openvino_on_a_bf16_cpu_of_another_vendor(machine) -> None:  # type: ignore[no-untyped-def]
    machine(cpu=AMD, ov=OV_CPU_BF16)
    choice = select_backend()
    assert choice.name == "openvino"
    assert "native bf16" in choice.reason


def test_auto_falls_back_to_onnxruntime_without_openvino(machine) -> None:  # type: ignore[no-untyped-def]
    machine(cpu=INTEL, ov=NO_OV)
    choice = select_backend()
    assert (choice.name, choice.device) == ("onnxruntime", None)
    assert "CPUExecutionProvider" in choice.reason
    assert "OpenVINO is not installed" in choice.reason


def test_auto_skips_openvino_without_an_intel_device(machine) -> None:  # type: ignore[no-untyped-def]
    machine(cpu=AMD, ov=OV_CPU)
    choice = select_backend()
    assert choice.name == "onnxruntime"
    assert "AuthenticAMD (x86_64) without native bf16 or AVX2" in choice.reason
    assert "no Intel GPU or NPU" in choice.reason


def test_auto_picks_openvino_on_an_avx2_cpu_of_another_vendor(machine) -> None:  # type: ignore[no-untyped-def]
    machine(cpu=AMD_AVX2, ov=OV_CPU)
    choice = select_backend()
    assert (choice.name, choice.device) == ("openvino", "cpu")
    assert "AVX2" in choice.reason


def test_auto_keeps_onnxruntime_on_arm_cpus(machine) -> None:  # type: ignore[no-untyped-def]
    machine(cpu=ARM, ov=OV_CPU)
    choice = select_backend()
    assert choice.name == "onnxruntime"
    assert "(aarch64) without native bf16 or AVX2" in choice.reason


def test_auto_uses_an_intel_gpu(machine) -> None:  # type: ignore[no-untyped-def]
    machine(cpu=AMD, ov=OV_IGPU)
    choice = select_backend()
    assert (choice.name, choice.device) == ("openvino", "gpu")
    assert "Arc" in choice.reason


def test_auto_tensorrt_without_gpu_goes_on(machine) -> None:  # type: ignore[no-untyped-def]
    machine(trt=TRT, ov=NO_OV)
    choice = select_backend()
    assert choice.name == "onnxruntime"
    assert "no CUDA GPU" in choice.reason


def test_auto_onnxruntime_cuda_without_tensorrt(machine) -> None:  # type: ignore[no-untyped-def]
    machine(gpus=(GPU,), ort=ORT_GPU, ov=NO_OV)
    choice = select_backend()
    assert choice.name == "onnxruntime"
    assert "CUDAExecutionProvider" in choice.reason
    assert select_backend(device="cuda").device == "cuda:0"


def test_auto_with_a_device(machine) -> None:  # type: ignore[no-untyped-def]
    machine(cpu=INTEL, ov=OV_CPU)
    assert select_backend(device="cpu").name == "openvino"
    with pytest.raises(DeviceUnavailableError, match="no CUDA GPU"):
        select_backend(device="cuda")
    with pytest.raises(DeviceUnavailableError, match="no CUDA GPU, and OpenVINO sees no GPU"):
        select_backend(device="gpu")
    with pytest.raises(DeviceUnavailableError, match="OpenVINO sees no NPU"):
        select_backend(device="npu")
    machine(cpu=AMD, ov=OV_CPU)
    cpu = select_backend(device="cpu")
    assert (cpu.name, cpu.device) == ("onnxruntime", "cpu")


# -- explicit requests -------------------------------------------------------------------


def test_unknown_name_suggests_the_closest() -> None:
    with pytest.raises(UnknownNameError, match="Did you mean 'onnxruntime'") as info:
        select_backend("onnxruntim")
    assert isinstance(info.value, KeyError)
    assert isinstance(info.value, ValueError)
    assert "auto, onnxruntime, openvino, tensorrt" in str(info.value)
    with pytest.raises(InputError, match="expected a name"):
        select_backend(None)  # type: ignore[arg-type]


def test_tensorrt_not_installed_names_the_extra(machine) -> None:  # type: ignore[no-untyped-def]
    machine(gpus=(GPU,))
    with pytest.raises(BackendUnavailableError, match=r"pip install samedge\[tensorrt\]") as info:
        select_backend("tensorrt")
    assert isinstance(info.value, ImportError)


def test_tensorrt_on_this_machine() -> None:
    if sel._probe_tensorrt().version is not None:
        pytest.skip("TensorRT is installed here")
    with pytest.raises(BackendUnavailableError, match=r"pip install samedge\[tensorrt\]"):
        select_backend("tensorrt")


def test_openvino_not_installed_names_the_extra(machine) -> None:  # type: ignore[no-untyped-def]
    machine(ov=sel._Probe(version=None, error="libopenvino.so: cannot open"))
    with pytest.raises(BackendUnavailableError, match=r"cannot open.*samedge\[openvino\]"):
        select_backend("openvino")


def test_hardware_lacking_is_a_device_error(machine) -> None:  # type: ignore[no-untyped-def]
    machine(trt=TRT, ov=OV_CPU)
    with pytest.raises(DeviceUnavailableError, match="needs a CUDA GPU"):
        select_backend("tensorrt")
    with pytest.raises(DeviceUnavailableError, match="NVIDIA GPUs only"):
        select_backend("tensorrt", device="cpu")
    with pytest.raises(DeviceUnavailableError, match="no GPU here; it has CPU"):
        select_backend("openvino", device="gpu")
    with pytest.raises(DeviceUnavailableError, match="does not run on CUDA"):
        select_backend("openvino", device="cuda")
    with pytest.raises(DeviceUnavailableError, match="no CUDA GPU"):
        select_backend("onnxruntime", device="cuda:0")
    with pytest.raises(DeviceUnavailableError, match="use backend='openvino'"):
        select_backend("onnxruntime", device="npu")
    machine(trt=TRT, gpus=(GPU,))
    with pytest.raises(DeviceUnavailableError, match="has no CUDA provider"):
        select_backend("onnxruntime", device="cuda")
    choice = select_backend("tensorrt", device="cuda:0")
    assert (choice.name, choice.device) == ("tensorrt", "cuda:0")
    with pytest.raises(DeviceUnavailableError, match="needs a CUDA GPU"):
        select_backend("tensorrt", device="cuda:1")


def test_explicit_requests_say_requested(machine) -> None:  # type: ignore[no-untyped-def]
    machine(ov=OV_IGPU)
    assert select_backend("onnxruntime").reason.startswith("requested; ONNX Runtime 1.32.0")
    gpu = select_backend("openvino", device="gpu")
    assert (gpu.name, gpu.device) == ("openvino", "gpu")
    assert "GPU" in gpu.reason
    assert select_backend("onnxruntime", device="cpu").device == "cpu"


# -- open_backend / backend_class ------------------------------------------------------------


def test_open_backend_creates_without_loading(tmp_path: Path) -> None:
    path = matmul_add(tmp_path / "m.onnx")
    backend = open_backend(path, "onnxruntime", config=OrtConfig(intra_op_threads=1))
    assert isinstance(backend, OrtBackend)
    assert not backend.is_loaded
    assert backend.config.intra_op_threads == 1


def test_auto_with_a_config_uses_its_backend(tmp_path: Path, machine) -> None:  # type: ignore[no-untyped-def]
    machine(cpu=INTEL, ov=OV_CPU)
    path = matmul_add(tmp_path / "m.onnx")
    assert isinstance(open_backend(path), OpenVinoBackend)
    assert isinstance(open_backend(path, config=OrtConfig()), OrtBackend)
    with pytest.raises(InputError, match="belongs to no backend"):
        open_backend(path, config=object())
    with pytest.raises(InputError, match="expected OrtConfig"):
        open_backend(path, "onnxruntime", config=OpenVinoConfig())


def test_open_backend_passes_the_device(tmp_path: Path, machine) -> None:  # type: ignore[no-untyped-def]
    machine(ov=OV_IGPU)
    backend = open_backend(matmul_add(tmp_path / "m.onnx"), "openvino", device="gpu")
    assert isinstance(backend, OpenVinoBackend)
    assert backend._ov_device == "GPU"


def test_backend_class_resolves_lazily(monkeypatch: pytest.MonkeyPatch) -> None:
    assert backend_class("onnxruntime") is OrtBackend
    assert isinstance(BACKENDS["tensorrt"], str)
    monkeypatch.setitem(BACKENDS, "tensorrt", "samedge.runtimes.not_there:Nothing")
    with pytest.raises(BackendUnavailableError, match=r"samedge\[tensorrt\]"):
        backend_class("tensorrt")
    monkeypatch.setitem(BACKENDS, "tensorrt", "samedge.runtimes.base:TensorSpec")
    with pytest.raises(BackendUnavailableError, match="not a Backend class"):
        backend_class("tensorrt")
    with pytest.raises(UnknownNameError):
        backend_class("auto")
