"""Runs mlx-lm's model files (mlx_lm/models/<arch>.py, unchanged) on tiny configs and writes
what they compute, for tests/python/test_mlx_lm_models.py.

    python mlx_lm_driver.py mlx SPEC.json OUTDIR                  (real MLX: makes the weights)
    python -m ponte.run mlx_lm_driver.py ponte SPEC.json OUTDIR   (Ponte as mlx)

SPEC.json is a list of {"arch", "config", "train", "quant"}. Per arch, the mlx side writes
OUTDIR/<arch>.weights.npz (the model's parameters after seeded init plus random noise, so no
norm weight is all ones and no bias all zeros) and, when "quant", OUTDIR/<arch>.qweights.npz
(the parameters after nn.quantize); the ponte side builds the same model and loads them. Both
write OUTDIR/<arch>.<side>.npz: the logits of a forward pass ("logits"), of a prompt and three
single-token steps through make_prompt_cache ("step0".."step3"), the loss and every gradient
of one cross-entropy step ("loss", "grad.<name>"), the quantized model's logits ("qlogits");
or OUTDIR/<arch>.<side>.err with the traceback where an arch fails.

mlx_lm/__init__.py imports transformers: the package is stubbed as an empty module whose
__path__ is the installed directory, so only mlx_lm.models.* (mlx and numpy) is imported.
This file imports nothing from mlx at module level: the test imports CONFIGS from it."""
import importlib
import importlib.util
import json
import os
import sys
import traceback
import types

import numpy as np

B, L, STEPS = 2, 16, 3
VOCAB = 128

# keys shared by most configs (ModelArgs.from_dict keeps the ones its dataclass has)
BASE = dict(
    hidden_size=64, num_hidden_layers=2, intermediate_size=128, num_attention_heads=4,
    num_key_value_heads=2, head_dim=16, vocab_size=VOCAB, rms_norm_eps=1e-5,
    layer_norm_eps=1e-5, layer_norm_epsilon=1e-5, norm_eps=1e-5, norm_epsilon=1e-5,
    rope_theta=10000.0, max_position_embeddings=256, tie_word_embeddings=False,
    attention_bias=False, mlp_bias=False, use_bias=False,
    num_experts=4, num_local_experts=4, num_experts_per_tok=2, moe_intermediate_size=32,
    n_routed_experts=4, n_shared_experts=1, shared_expert_intermediate_size=32,
    norm_topk_prob=True, decoder_sparse_step=1, mlp_only_layers=[], first_k_dense_replace=1,
    routed_scaling_factor=1.5, n_group=1, topk_group=1,
    kv_lora_rank=32, q_lora_rank=32, qk_rope_head_dim=8, qk_nope_head_dim=16, v_head_dim=16,
)


def _cfg(model_type, **kw):
    c = dict(BASE, model_type=model_type)
    c.update(kw)
    return c


# ministral3's llama-4 attention scaling and yarn RoPE, one sliding layer and one full
MINISTRAL = dict(
    layer_types=["sliding_attention", "full_attention"], sliding_window=6,
    rope_parameters=dict(rope_type="yarn", factor=4.0, original_max_position_embeddings=64,
                         llama_4_scaling_beta=0.1, rope_theta=10000.0, beta_fast=32.0,
                         beta_slow=1.0))


# arch -> (config, train, quant): the mlx-lm file mlx_lm/models/<arch>.py
CONFIGS = {
    "llama": (_cfg("llama"), True, True),
    "qwen2": (_cfg("qwen2", tie_word_embeddings=True), False, True),
    "qwen3": (_cfg("qwen3"), True, False),
    "ministral3": (_cfg("ministral3", **MINISTRAL), False, False),
    "mistral3": (dict(model_type="mistral3", text_config=_cfg("ministral3", **MINISTRAL)),
                 False, False),
    "gemma": (_cfg("gemma"), False, False),
    "gemma2": (_cfg("gemma2", sliding_window=6, query_pre_attn_scalar=16,
                    final_logit_softcapping=30.0, attn_logit_softcapping=50.0), True, False),
    "gemma3_text": (_cfg("gemma3_text", sliding_window=6, sliding_window_pattern=2,
                         query_pre_attn_scalar=16), False, True),
    "phi3": (_cfg("phi3"), False, False),
    "gpt_oss": (_cfg("gpt_oss", intermediate_size=32, sliding_window=6,
                     layer_types=["sliding_attention", "full_attention"]), True, True),
    "mixtral": (_cfg("mixtral"), True, True),
    "qwen3_moe": (_cfg("qwen3_moe"), False, True),
    "deepseek_v3": (_cfg("deepseek_v3", n_group=2, topk_group=1), True, False),
    "olmo2": (_cfg("olmo2"), False, False),
    "starcoder2": (_cfg("starcoder2"), False, False),
    "gpt2": (_cfg("gpt2", n_ctx=64, n_embd=64, n_head=4, n_layer=2, n_positions=64), False,
             False),
    "gpt_neox": (_cfg("gpt_neox", rotary_emb_base=10000, rotary_pct=0.5), False, False),
    "cohere": (_cfg("cohere", use_qk_norm=True), False, False),
    "mamba": (_cfg("mamba", state_size=8, conv_kernel=4, use_conv_bias=True,
                   time_step_rank=4), True, False),
    "mamba2": (_cfg("mamba2", num_heads=8, head_dim=16, state_size=8, conv_kernel=4, n_groups=2,
                    use_conv_bias=True, time_step_limit=(0.0, float("inf")),
                    time_step_rank=4), True, False),
    "qwen3_next": (_cfg("qwen3_next", linear_num_value_heads=4, linear_num_key_heads=2,
                        linear_key_head_dim=16, linear_value_head_dim=16,
                        linear_conv_kernel_dim=4, partial_rotary_factor=0.5,
                        full_attention_interval=2), True, False),
    "rwkv7": (_cfg("rwkv7", a_low_rank_dim=16, v_low_rank_dim=16, gate_low_rank_dim=16,
                   decay_low_rank_dim=16), False, False),
    "recurrent_gemma": (_cfg("recurrent_gemma", conv1d_width=4, logits_soft_cap=30.0,
                             attention_window_size=6,
                             block_types=["recurrent", "attention"]), False, False),
}


def import_models(name):
    """mlx_lm.models.<name> without running mlx_lm/__init__.py."""
    if "mlx_lm" not in sys.modules:
        spec = importlib.util.find_spec("mlx_lm")
        if spec is None or not spec.submodule_search_locations:
            raise ImportError("mlx_lm is not installed")
        pkg = types.ModuleType("mlx_lm")
        pkg.__path__ = list(spec.submodule_search_locations)
        sys.modules["mlx_lm"] = pkg
    return importlib.import_module("mlx_lm.models." + name)


def _np(a):
    import mlx.core as mx
    if a.dtype == mx.bfloat16 or a.dtype == mx.float16:
        a = a.astype(mx.float32)
    return np.array(a)


def run_arch(side, arch, cfg, train, quant, outdir):
    import mlx.core as mx
    import mlx.nn as nn
    from mlx.utils import tree_flatten

    if (mx.__name__.split(".")[0] == "ponte") != (side == "ponte"):
        raise RuntimeError("the %s side runs on %s" % (side, mx.__name__))
    mod = import_models(arch)
    cache_mod = import_models("cache")
    args = mod.ModelArgs.from_dict(json.loads(json.dumps(cfg)))
    mx.random.seed(0)
    model = mod.Model(args)
    wpath = os.path.join(outdir, arch + ".weights.npz")
    if side == "mlx":
        rng = np.random.default_rng(7)
        flat = {k: _np(v) for k, v in tree_flatten(model.parameters())}
        flat = {k: (v + 0.05 * rng.standard_normal(v.shape)).astype(np.float32)
                for k, v in flat.items()}
        np.savez(wpath, **flat)
    with np.load(wpath) as f:
        model.load_weights([(k, mx.array(f[k])) for k in f.files])
    mx.eval(model.parameters())
    model.eval()

    rng = np.random.default_rng(11)
    tokens = rng.integers(0, VOCAB, size=(B, L + STEPS)).astype(np.int32)
    out = {}
    x = mx.array(tokens[:, :L])
    out["logits"] = _np(model(x))

    cache = cache_mod.make_prompt_cache(model)
    out["step0"] = _np(model(x, cache=cache))
    for s in range(STEPS):
        y = model(mx.array(tokens[:, L + s:L + s + 1]), cache=cache)
        out["step%d" % (s + 1)] = _np(y)

    if train:
        model.train()

        def loss_fn(m, inp, tgt):
            return nn.losses.cross_entropy(m(inp), tgt).mean()

        loss, grads = nn.value_and_grad(model, loss_fn)(
            model, mx.array(tokens[:, :L]), mx.array(tokens[:, 1:L + 1]))
        out["loss"] = _np(loss)
        for k, g in tree_flatten(grads):
            out["grad." + k] = _np(g)
        model.eval()

    if quant:
        def pred(_, m):
            w = getattr(m, "weight", None)
            return hasattr(m, "to_quantized") and w is not None and w.shape[-1] % 32 == 0

        nn.quantize(model, group_size=32, bits=4, class_predicate=pred)
        qpath = os.path.join(outdir, arch + ".qweights.npz")
        if side == "mlx":
            np.savez(qpath, **{k: np.array(v) for k, v in tree_flatten(model.parameters())})
        with np.load(qpath) as f:
            model.load_weights([(k, mx.array(f[k])) for k in f.files])
        out["qlogits"] = _np(model(x))

    np.savez(os.path.join(outdir, "%s.%s.npz" % (arch, side)), **out)


def main(argv):
    side, spec_path, outdir = argv
    with open(spec_path) as f:
        spec = json.load(f)
    for item in spec:
        arch = item["arch"]
        try:
            run_arch(side, arch, item["config"], item["train"], item["quant"], outdir)
        except Exception:
            with open(os.path.join(outdir, "%s.%s.err" % (arch, side)), "w") as f:
                f.write(traceback.format_exc())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
