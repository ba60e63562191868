"""Export to ONNX, quantize with onnxruntime, write and verify a Triton model repository."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from llmops_common.data import load_jsonl
from llmops_common.models import load_causal_lm
from llmops_common.report import event
from llmops_common.uri import ConfigError, local_path

QUANTIZATIONS = ("None", "FP16", "Int8Dynamic", "Int8Static", "Int4WeightOnly")
ONNX_FILE = "model.onnx"
HERE = Path(__file__).parent
# Above this the graph's weights go to an external-data file (protobuf's 2 GB limit).
EXTERNAL_DATA_BYTES = 1 << 30


@dataclass
class Options:
    source: str
    quantization: str
    calibration_data: str | None
    repository: str
    model_name: str
    max_batch_size: int
    dynamic_batching: bool
    instance_kind: str
    instance_count: int
    max_new_tokens: int
    max_queue_delay_us: int


def export_onnx(source: str, path: Path) -> dict[str, Any]:
    """Export (input_ids, attention_mask) -> last-position logits, batch and length dynamic."""
    import torch

    # Eager attention exports to plain ops that every ORT quantizer understands.
    model, tokenizer = load_causal_lm(source, attn_implementation="eager")
    model = model.float().eval()

    class LastLogits(torch.nn.Module):
        def __init__(self, lm: Any) -> None:
            super().__init__()
            self.lm = lm

        def forward(self, input_ids: Any, attention_mask: Any) -> Any:
            # Left padding: positions count only real tokens, so padded and unpadded
            # prompts see the same position embeddings.
            positions = (attention_mask.cumsum(-1) - 1).clamp(min=0)
            out = self.lm(
                input_ids=input_ids,
                attention_mask=attention_mask,
                position_ids=positions,
                use_cache=False,
            )
            return out.logits[:, -1, :]

    ids = torch.tensor([[1, 2, 3, 4], [0, 0, 3, 4]], dtype=torch.long)
    mask = torch.tensor([[1, 1, 1, 1], [0, 0, 1, 1]], dtype=torch.long)
    batch, seq = torch.export.Dim("batch"), torch.export.Dim("seq")
    n_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    with torch.no_grad():
        program = torch.onnx.export(
            LastLogits(model),
            (ids, mask),
            input_names=["input_ids", "attention_mask"],
            output_names=["logits"],
            dynamic_shapes=({0: batch, 1: seq}, {0: batch, 1: seq}),
            dynamo=True,
            external_data=n_bytes > EXTERNAL_DATA_BYTES,
        )
    program.save(str(path), external_data=n_bytes > EXTERNAL_DATA_BYTES)
    if n_bytes <= EXTERNAL_DATA_BYTES:
        onnx.save(strip_metadata(onnx.load(str(path))), str(path))
    conf = model.config
    max_pos = getattr(conf, "n_positions", None) or getattr(conf, "max_position_embeddings", None)
    tok_dir = path.parent
    tokenizer.save_pretrained(tok_dir)
    if not (tok_dir / "tokenizer.json").exists():
        raise ConfigError("the model's tokenizer has no fast (tokenizer.json) form")
    return {
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
        "max_positions": max_pos,
    }


def strip_metadata(model: onnx.ModelProto) -> onnx.ModelProto:
    """Drop the exporter's per-node stack traces and docs: they are a third of a small
    model's file and would skew every size comparison."""
    for node in model.graph.node:
        del node.metadata_props[:]
        node.doc_string = ""
    del model.graph.value_info[:]
    del model.metadata_props[:]
    return model


def gemm_to_matmul(model: onnx.ModelProto) -> onnx.ModelProto:
    """Rewrite Gemm(x, W, b) as MatMul + Add.

    GPT-2's Conv1D layers export as Gemm, which onnxruntime's dynamic int8 and int4
    weight-only quantizers skip; as MatMul they are quantized.
    """
    from onnx import helper, numpy_helper

    inits = {i.name: i for i in model.graph.initializer}
    nodes = []
    for node in model.graph.node:
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        if (
            node.op_type != "Gemm"
            or node.input[1] not in inits
            or attrs.get("transA", 0)
            or attrs.get("alpha", 1.0) != 1.0
            or attrs.get("beta", 1.0) != 1.0
        ):
            nodes.append(node)
            continue
        w_name = node.input[1]
        if attrs.get("transB", 0):
            w = numpy_helper.to_array(inits[w_name]).T.copy()
            w_name = f"{w_name}_T"
            model.graph.initializer.append(numpy_helper.from_array(w, w_name))
        has_bias = len(node.input) > 2 and node.input[2]
        mm_out = f"{node.output[0]}_mm" if has_bias else node.output[0]
        nodes.append(helper.make_node("MatMul", [node.input[0], w_name], [mm_out], name=f"{node.name}_mm"))
        if has_bias:
            nodes.append(helper.make_node("Add", [mm_out, node.input[2]], [node.output[0]], name=f"{node.name}_add"))
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    _drop_unused_initializers(model)
    return model


def _drop_unused_initializers(model: onnx.ModelProto) -> None:
    used = {i for n in model.graph.node for i in n.input}
    keep = [i for i in model.graph.initializer if i.name in used]
    del model.graph.initializer[:]
    model.graph.initializer.extend(keep)


class PromptReader:
    """Calibration batches for static int8: the JSONL prompts, one at a time."""

    def __init__(self, prompts: list[str], tokenizer_file: Path) -> None:
        from tokenizers import Tokenizer

        tok = Tokenizer.from_file(str(tokenizer_file))
        self._it: Iterator[dict[str, np.ndarray]] = iter(
            [
                {
                    "input_ids": np.array([ids], dtype=np.int64),
                    "attention_mask": np.ones((1, len(ids)), dtype=np.int64),
                }
                for ids in (tok.encode(p).ids for p in prompts)
                if ids
            ]
        )

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._it, None)

    def rewind(self) -> None:  # the ORT CalibrationDataReader interface
        pass


def quantize(src: Path, dst: Path, mode: str, prompts: list[str] | None) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic, quantize_static

    if mode == "None":
        shutil.copyfile(src, dst)
        return
    if mode == "FP16":
        from onnxruntime.transformers.float16 import convert_float_to_float16

        # keep_io_types: clients and the generation loop keep int64 ids and fp32 logits.
        model = convert_float_to_float16(onnx.load(str(src)), keep_io_types=True)
        onnx.save(model, str(dst))
        return
    prepared = dst.with_name("prepared.onnx")
    onnx.save(gemm_to_matmul(onnx.load(str(src))), str(prepared))
    try:
        if mode == "Int8Dynamic":
            quantize_dynamic(prepared, dst, weight_type=QuantType.QInt8, per_channel=True)
        elif mode == "Int8Static":
            if not prompts:
                raise ConfigError("Int8Static needs --calibration-data with at least one prompt")
            reader = PromptReader(prompts, src.parent / "tokenizer.json")
            # Only the matrix multiplies: quantizing LayerNorm/Softmax activations of a
            # transformer costs accuracy for no size gain.
            quantize_static(
                prepared,
                dst,
                reader,
                op_types_to_quantize=["MatMul"],
                per_channel=True,
                weight_type=QuantType.QInt8,
                activation_type=QuantType.QUInt8,
            )
        elif mode == "Int4WeightOnly":
            from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

            q = MatMulNBitsQuantizer(onnx.load(str(prepared)), block_size=32, is_symmetric=True)
            q.process()
            q.model.save_model_to_file(str(dst), use_external_data_format=False)
        else:
            raise ConfigError(f"unknown quantization {mode!r}")
    finally:
        prepared.unlink(missing_ok=True)


def config_pbtxt(opts: Options) -> str:
    kind = "KIND_GPU" if opts.instance_kind == "GPU" else "KIND_CPU"
    lines = [
        f'name: "{opts.model_name}"',
        'backend: "python"',
        f"max_batch_size: {opts.max_batch_size}",
        "input [",
        '  { name: "text_input" data_type: TYPE_STRING dims: [ 1 ] },',
        '  { name: "max_tokens" data_type: TYPE_INT32 dims: [ 1 ] optional: true }',
        "]",
        "output [",
        '  { name: "text_output" data_type: TYPE_STRING dims: [ 1 ] }',
        "]",
        f"instance_group [ {{ count: {opts.instance_count} kind: {kind} }} ]",
    ]
    if opts.dynamic_batching:
        lines.append(f"dynamic_batching {{ max_queue_delay_microseconds: {opts.max_queue_delay_us} }}")
    return "\n".join(lines) + "\n"


def digest_and_size(model_dir: Path) -> tuple[str, int]:
    """sha256 over (relative path, content) of every file, in a stable order."""
    h = hashlib.sha256()
    size = 0
    for p in sorted(model_dir.rglob("*")):
        if not p.is_file() or p.name == "manifest.json" or "__pycache__" in p.parts:
            continue
        h.update(str(p.relative_to(model_dir)).encode() + b"\0")
        with open(p, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        size += p.stat().st_size
    return "sha256:" + h.hexdigest(), size


def verify(version_dir: Path, kind: str) -> str:
    """Load the version directory the way model.py will, and generate a few tokens."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("repo_generation", version_dir / "generation.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    gen = mod.Generator(str(version_dir), kind="GPU" if kind == "GPU" else "CPU")
    return str(gen.generate(["hello"], [4])[0])


def build(opts: Options) -> dict[str, Any]:
    if opts.quantization not in QUANTIZATIONS:
        raise ConfigError(f"--quantization must be one of {QUANTIZATIONS}")
    prompts = None
    if opts.calibration_data:
        prompts = [c["prompt"] for c in load_jsonl(opts.calibration_data)]
    elif opts.quantization == "Int8Static":
        raise ConfigError("Int8Static needs --calibration-data")
    repo = local_path(opts.repository, must_exist=False)
    repo.mkdir(parents=True, exist_ok=True)
    model_dir = repo / opts.model_name
    # Build next to the target, then swap: a crash never leaves a half-written model.
    staging = Path(tempfile.mkdtemp(prefix=f".{opts.model_name}-", dir=repo))
    try:
        version = staging / "1"
        version.mkdir()
        event("progress", stage="export", source=opts.source)
        fp32 = version / "fp32.onnx"
        gen_conf = export_onnx(opts.source, fp32)
        event("progress", stage="quantize", quantization=opts.quantization)
        quantize(fp32, version / ONNX_FILE, opts.quantization, prompts)
        fp32.unlink()
        for leftover in version.glob("*.data"):  # external data of the fp32 export
            if leftover.name != ONNX_FILE + ".data":
                leftover.unlink()
        gen_conf.update({"onnx_file": ONNX_FILE, "max_new_tokens": opts.max_new_tokens})
        (version / "generation.json").write_text(json.dumps(gen_conf, indent=2) + "\n")
        shutil.copyfile(HERE / "generation.py", version / "generation.py")
        shutil.copyfile(HERE / "triton_model.py", version / "model.py")
        (staging / "config.pbtxt").write_text(config_pbtxt(opts))
        event("progress", stage="verify")
        sample = verify(version, opts.instance_kind)
        staging.chmod(0o755)  # mkdtemp makes it private; the server may run as another user
        if model_dir.exists():
            shutil.rmtree(model_dir)
        os.replace(staging, model_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    digest, size = digest_and_size(model_dir)
    uri = opts.repository if "://" in opts.repository else f"file://{repo.resolve()}"
    manifest = {
        "uri": uri.rstrip("/") + "/" + opts.model_name,
        "digest": digest,
        "sizeBytes": size,
        "onnxSizeBytes": (model_dir / "1" / ONNX_FILE).stat().st_size,
        "quantization": opts.quantization,
        "modelName": opts.model_name,
        "maxBatchSize": opts.max_batch_size,
        "sample": sample[:64],
    }
    (model_dir / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest
