"""Triton Python-backend model: text_input (BYTES) -> text_output (BYTES).

Copied into <repository>/<model>/1/model.py by the builder. The dynamic batcher hands
execute() several requests at once; they are decoded together as one padded batch,
which is where batching pays off.
"""

import json
import os
import sys

import numpy as np
import triton_python_backend_utils as pb_utils

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from generation import Generator  # lives next to this file


class TritonPythonModel:
    def initialize(self, args):
        kind = args.get("model_instance_kind", "CPU")
        device_id = int(args.get("model_instance_device_id", 0) or 0)
        model_dir = os.path.dirname(os.path.abspath(__file__))
        config = json.loads(args["model_config"])
        threads = int(config.get("parameters", {}).get("intra_op_threads", {}).get("string_value", 0) or 0)
        self.generator = Generator(
            model_dir, kind="GPU" if kind == "GPU" else "CPU", device_id=device_id, threads=threads
        )

    def execute(self, requests):
        prompts, budgets, owners = [], [], []
        responses = [None] * len(requests)
        for r, request in enumerate(requests):
            try:
                text = pb_utils.get_input_tensor_by_name(request, "text_input").as_numpy()
                limit = pb_utils.get_input_tensor_by_name(request, "max_tokens")
                flat = text.reshape(-1)
                limits = (
                    limit.as_numpy().reshape(-1)
                    if limit is not None
                    else np.full(len(flat), self.generator.default_new_tokens)
                )
                if len(limits) == 1:
                    limits = np.repeat(limits, len(flat))
                for item, n in zip(flat, limits, strict=True):
                    prompts.append(item.decode("utf-8") if isinstance(item, bytes) else str(item))
                    budgets.append(int(n))
                owners.append((r, len(flat), text.shape))
            except Exception as e:  # one bad request must not fail its batch-mates
                responses[r] = pb_utils.InferenceResponse(error=pb_utils.TritonError(str(e)))
        try:
            texts = self.generator.generate(prompts, budgets)
        except Exception as e:
            # Raise rather than answer errors: Triton counts error *responses* of a python model
            # as successes, and rollout analysis reads nv_inference_request_failure.
            raise pb_utils.TritonModelException(f"generation failed: {e}") from e
        pos = 0
        for r, count, shape in owners:
            chunk = np.array([t.encode("utf-8") for t in texts[pos : pos + count]], dtype=np.object_)
            pos += count
            out = pb_utils.Tensor("text_output", chunk.reshape(shape))
            responses[r] = pb_utils.InferenceResponse(output_tensors=[out])
        return responses

    def finalize(self):
        self.generator = None
