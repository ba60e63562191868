"""Workload benchmark: one run, one table, one JSON file (.bench/workloads.json).

    make bench-workloads

Measures, on the tiny reversal model the workload tests use (CPU, one thread per process
so numbers are comparable on a shared machine):
  - the trainer: tokens/s, and held-out exact match before and after a full fine-tune;
  - the builder's fp32 vs dynamic-int8 ONNX: file size, latency of one request, batch
    throughput, and exact match;
  - serving: tritonserver with dynamic batching vs the same repository without it vs a
    naive loop of transformers generate() calls, one request at a time.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
WORKLOAD_PATH = [ROOT / "images" / n for n in ("trainer", "builder", "evaluator", "common")]
sys.path[:0] = [str(ROOT / "tests" / "workload"), *map(str, WORKLOAD_PATH)]
os.environ.setdefault("OMP_NUM_THREADS", "1")

import tinymodel  # noqa: E402
import tritonlocal  # noqa: E402

FULL_STEPS = 700
MAX_NEW = 8
N_REQUESTS = 96
CONCURRENCY = 16


def run(module: str, *args: Any) -> dict[str, Any]:
    env = os.environ.copy()
    env["PYTHONPATH"] = os.pathsep.join(map(str, WORKLOAD_PATH))
    env["HF_HUB_OFFLINE"] = "1"
    proc = subprocess.run(
        [sys.executable, "-m", module, *map(str, args)],
        env=env,
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    if proc.returncode != 0:
        raise SystemExit(f"{module} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def ort_numbers(version_dir: Path, cases: list[dict[str, str]]) -> dict[str, float]:
    from llmops_builder.generation import Generator

    gen = Generator(str(version_dir), kind="CPU", threads=1)
    prompts = [c["prompt"] for c in cases]
    gen.generate(prompts[:4], [MAX_NEW] * 4)  # warm-up
    singles = []
    for p in prompts[:50]:
        t = time.perf_counter()
        gen.generate([p], [MAX_NEW])
        singles.append(time.perf_counter() - t)
    t = time.perf_counter()
    outs = gen.generate(prompts, [MAX_NEW] * len(prompts))
    batch_s = time.perf_counter() - t
    hits = sum(o.strip() == c["completion"].strip() for o, c in zip(outs, cases, strict=True))
    return {
        "latency_p50_s": statistics.median(singles),
        "throughput_rps": len(prompts) / batch_s,
        "exact_match": hits / len(cases),
        "size_bytes": (version_dir / "model.onnx").stat().st_size,
    }


def triton_rps(server: Any, model: str, prompts: list[str]) -> float:
    import numpy as np
    import tritonclient.http as httpclient

    queue = list(prompts)
    lock = threading.Lock()

    def worker() -> None:
        c = httpclient.InferenceServerClient(f"127.0.0.1:{server.http_port}")
        while True:
            with lock:
                if not queue:
                    break
                p = queue.pop()
            x = httpclient.InferInput("text_input", [1, 1], "BYTES")
            x.set_data_from_numpy(np.array([[p.encode()]], dtype=np.object_))
            c.infer(model, [x])
        c.close()

    # Warm-up, then the timed run.
    warm = [threading.Thread(target=worker) for _ in range(2)]
    queue[:] = prompts[:8]
    for t in warm:
        t.start()
    for t in warm:
        t.join()
    queue[:] = prompts
    threads = [threading.Thread(target=worker) for _ in range(CONCURRENCY)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return len(prompts) / (time.perf_counter() - start)


def naive_transformers_rps(model_dir: Path, prompts: list[str]) -> float:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(1)
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    start = time.perf_counter()
    with torch.no_grad():
        for p in prompts:
            ids = tok(p, return_tensors="pt")
            model.generate(
                **ids,
                max_new_tokens=MAX_NEW,
                do_sample=False,
                pad_token_id=tok.pad_token_id,
                eos_token_id=tok.eos_token_id,
            )
    return len(prompts) / (time.perf_counter() - start)


def wide_int8_speedup(work: Path, train: list[dict[str, str]], cases: list[dict[str, str]]) -> dict:
    """The tiny model is all overhead; a wider random one shows where int8 kernels pay off."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    tok = tinymodel.make_tokenizer([c["prompt"] + c["completion"] for c in train])
    conf = GPT2Config(
        vocab_size=len(tok), n_positions=64, n_embd=512, n_layer=4, n_head=8,
        bos_token_id=tok.eos_token_id, eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )  # fmt: skip
    src = work / "wide"
    GPT2LMHeadModel(conf).save_pretrained(src)
    tok.save_pretrained(src)
    repo = work / "repo-wide"
    for name, quant in (("fp32", "None"), ("int8", "Int8Dynamic")):
        run(
            "llmops_builder", "--source", src, "--quantization", quant, "--repository", repo,
            "--model-name", name, "--max-new-tokens", MAX_NEW,
        )  # fmt: skip
    fp32 = ort_numbers(repo / "fp32" / "1", cases)
    int8 = ort_numbers(repo / "int8" / "1", cases)
    return {
        "wide_params": sum(p.numel() for p in GPT2LMHeadModel(conf).parameters()),
        "wide_int8_size_ratio": round(int8["size_bytes"] / fp32["size_bytes"], 4),
        "wide_fp32_latency_p50_s": round(fp32["latency_p50_s"], 6),
        "wide_int8_latency_p50_s": round(int8["latency_p50_s"], 6),
        "wide_int8_latency_speedup": round(fp32["latency_p50_s"] / int8["latency_p50_s"], 3),
        "wide_int8_throughput_speedup": round(int8["throughput_rps"] / fp32["throughput_rps"], 3),
    }


def main() -> int:
    out_file = ROOT / ".bench" / "workloads.json"
    work = Path(tempfile.mkdtemp(prefix="bench-workloads-"))
    train, heldout = tinymodel.task_cases()
    train_file = tinymodel.write_jsonl(work / "train.jsonl", train)
    tiny = tinymodel.make_tiny_model(work / "tiny", train)
    em_before = tinymodel.exact_match_transformers(tiny, heldout)

    t0 = time.perf_counter()
    trained = run(
        "llmops_trainer",
        "--base-model", tiny, "--dataset", train_file, "--method", "Full",
        "--output", work / "ft", "--max-steps", FULL_STEPS, "--batch-size", 32,
        "--learning-rate", "3e-3", "--log-every", 100,
    )  # fmt: skip
    train_s = time.perf_counter() - t0
    em_after = tinymodel.exact_match_transformers(work / "ft", heldout)

    repo = work / "repo"
    for name, quant, batching in (
        ("fp32", "None", "--dynamic-batching"),
        ("int8", "Int8Dynamic", "--dynamic-batching"),
        ("fp32-nobatch", "None", "--no-dynamic-batching"),
    ):
        run(
            "llmops_builder", "--source", work / "ft", "--quantization", quant,
            "--repository", repo, "--model-name", name, "--max-batch-size", CONCURRENCY,
            "--max-new-tokens", MAX_NEW, batching,
        )  # fmt: skip
    fp32 = ort_numbers(repo / "fp32" / "1", heldout)
    int8 = ort_numbers(repo / "int8" / "1", heldout)

    prompts = [heldout[i % len(heldout)]["prompt"] for i in range(N_REQUESTS)]
    server = tritonlocal.start(repo, work)
    try:
        batched = triton_rps(server, "fp32", prompts)
        unbatched = triton_rps(server, "fp32-nobatch", prompts)
    finally:
        server.stop()
    naive = naive_transformers_rps(work / "ft", prompts)
    wide = wide_int8_speedup(work, train, heldout[:50])

    figures = {
        "finetune_exact_match_before": round(em_before, 4),
        "finetune_exact_match_after": round(em_after, 4),
        "trainer_tokens_per_s": trained["tokens_per_s"],
        "trainer_steps": trained["steps"],
        "trainer_wall_s": round(train_s, 2),
        "fp32_size_bytes": fp32["size_bytes"],
        "int8_size_bytes": int8["size_bytes"],
        "int8_size_ratio": round(int8["size_bytes"] / fp32["size_bytes"], 4),
        "fp32_latency_p50_s": round(fp32["latency_p50_s"], 6),
        "int8_latency_p50_s": round(int8["latency_p50_s"], 6),
        "int8_latency_speedup": round(fp32["latency_p50_s"] / int8["latency_p50_s"], 3),
        "fp32_batch_throughput_rps": round(fp32["throughput_rps"], 2),
        "int8_batch_throughput_rps": round(int8["throughput_rps"], 2),
        "fp32_exact_match": round(fp32["exact_match"], 4),
        "int8_exact_match": round(int8["exact_match"], 4),
        "int8_score_delta": round(int8["exact_match"] - fp32["exact_match"], 4),
        "triton_dynamic_batching_rps": round(batched, 2),
        "triton_no_batching_rps": round(unbatched, 2),
        "naive_transformers_rps": round(naive, 2),
        "triton_batching_speedup": round(batched / naive, 3),
        "triton_batching_vs_unbatched": round(batched / unbatched, 3),
        **wide,
        "requests": N_REQUESTS,
        "concurrency": CONCURRENCY,
        "max_new_tokens": MAX_NEW,
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
    }
    rows = [
        ("trainer (full FT, CPU)", f"{figures['trainer_tokens_per_s']:.0f} tokens/s",
         f"{FULL_STEPS} steps in {train_s:.1f}s"),
        ("held-out exact match", f"{em_before:.2f} -> {em_after:.2f}", "before -> after FT"),
        ("ORT fp32", f"{fp32['latency_p50_s'] * 1e3:.2f} ms p50",
         f"{fp32['throughput_rps']:.0f} req/s batched, EM {fp32['exact_match']:.2f}, "
         f"{fp32['size_bytes'] / 1024:.0f} KiB"),
        ("ORT int8 (dynamic)", f"{int8['latency_p50_s'] * 1e3:.2f} ms p50",
         f"{int8['throughput_rps']:.0f} req/s batched, EM {int8['exact_match']:.2f}, "
         f"{int8['size_bytes'] / 1024:.0f} KiB"),
        ("int8 vs fp32", f"x{figures['int8_latency_speedup']:.2f} latency",
         f"size x{figures['int8_size_ratio']:.2f}, EM delta {figures['int8_score_delta']:+.2f}"),
        (f"int8 vs fp32, wide ({wide['wide_params'] / 1e6:.1f}M params)",
         f"x{wide['wide_int8_latency_speedup']:.2f} latency",
         f"throughput x{wide['wide_int8_throughput_speedup']:.2f}, "
         f"size x{wide['wide_int8_size_ratio']:.2f} (random init, no EM)"),
        ("Triton, dynamic batching", f"{batched:.1f} req/s", f"{CONCURRENCY} concurrent clients"),
        ("Triton, no batching", f"{unbatched:.1f} req/s", f"{CONCURRENCY} concurrent clients"),
        ("transformers loop", f"{naive:.1f} req/s", "one request at a time"),
        ("Triton batching speedup", f"x{figures['triton_batching_speedup']:.2f}",
         "vs the transformers loop"),
    ]  # fmt: skip
    width = max(len(r[0]) for r in rows)
    print(f"\n{'workload':<{width}}  {'figure':<22}  detail")
    print("-" * (width + 60))
    for name, fig, detail in rows:
        print(f"{name:<{width}}  {fig:<22}  {detail}")
    out_file.parent.mkdir(parents=True, exist_ok=True)
    out_file.write_text(json.dumps(figures, indent=2) + "\n")
    print(f"\nwrote {out_file.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
