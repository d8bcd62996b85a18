"""benchmarks/gpu.py in its CPU dry mode (tiny models): the script the GPU numbers come from runs."""

import json

import pytest


def test_gpu_benchmark_dry_mode_measures_every_modality(tmp_path, load_benchmark):
    bench = load_benchmark("gpu")
    out = tmp_path / "gpu.json"
    assert bench.main(["--dry", "--steps", "1", "--warmup", "1", "--out", str(out), "train.bf16=false"]) == 0
    results = json.loads(out.read_text())["results"]
    assert [r["modality"] for r in results] == ["image", "audio", "text"]
    for r in results:
        assert r["samples_per_s"] > 0 and r["tflop_per_step_per_rank"] > 0 and r["peak_memory_gib"] > 0
        assert r["mfu"] is None  # no peak is known for a CPU


def test_gpu_peaks_match_the_longest_name(load_benchmark):
    bench = load_benchmark("gpu")
    assert bench.gpu_peak_tflops("NVIDIA H100 PCIe") == 756.0
    assert bench.gpu_peak_tflops("NVIDIA H200") == 989.0
    assert bench.gpu_peak_tflops("Some Future GPU") is None
    with pytest.raises(SystemExit):
        bench.main(["--help"])
