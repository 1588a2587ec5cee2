#!/usr/bin/env python3
"""The yardstick for the plugin's overhead: vLLM's own ``LLM.generate``, timed by hand.

    python scripts/gpu/bare_vllm.py [--requests 256] [--prompt 128] [--output 128] [--reps 5]

Same model (the synthetic 1B), same engine knobs (the vllm-synthetic-1b profile), same
prompt token ids (the plugin's seeded workload) and the same sampling parameters as the
plugin's vLLM engine; everything at once (batch = all requests). Prints output tok/s of
each repetition after one warm-up call, and the median, as JSON on the last line.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

from pytest_batchperf.models.hf_model import hf_model_dir
from pytest_batchperf.models.shapes import shape
from pytest_batchperf.profiles import BUILTIN
from pytest_batchperf.workload import WorkloadSpec, build, fixed


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=256)
    ap.add_argument("--prompt", type=int, default=128)
    ap.add_argument("--output", type=int, default=128)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--profile", default="vllm-synthetic-1b")
    args = ap.parse_args()
    os.environ.setdefault("VLLM_USE_FLASHINFER_SAMPLER", "0")
    from vllm import LLM, SamplingParams
    from vllm.inputs import TokensPrompt

    profile = BUILTIN[args.profile]
    llm = LLM(model=str(hf_model_dir(shape(profile.model.split(":", 1)[1]))), **profile.options)
    spec = WorkloadSpec(
        num_requests=args.requests,
        prompt=fixed(args.prompt),
        output=fixed(args.output),
        seed=0,
        name="overhead",
    )
    prompts = [
        TokensPrompt(prompt_token_ids=list(r.prompt_tokens))
        for r in build(spec, llm.llm_engine.vllm_config.model_config.get_vocab_size()).requests
    ]
    params = SamplingParams(
        max_tokens=args.output,
        min_tokens=args.output,
        ignore_eos=True,
        temperature=0.0,
        detokenize=False,
    )
    llm.generate(prompts, params, use_tqdm=False)  # warm-up
    rates = []
    for _ in range(args.reps):
        llm.reset_prefix_cache()  # as the plugin does before each round
        t0 = time.perf_counter()
        outs = llm.generate(prompts, params, use_tqdm=False)
        elapsed = time.perf_counter() - t0
        tokens = sum(len(o.outputs[0].token_ids) for o in outs)
        assert tokens == args.requests * args.output, tokens
        rates.append(tokens / elapsed)
        print(
            f"bare LLM.generate: {tokens} tokens in {elapsed:.3f}s = {rates[-1]:,.0f} tok/s",
            flush=True,
        )
    print(
        json.dumps({"bare_output_tok_s": rates, "median": statistics.median(rates), **vars(args)})
    )


if __name__ == "__main__":
    main()
