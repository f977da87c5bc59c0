"""Runs mlx-lm's model files (mlx_lm/models/<arch>.py, unchanged) on tiny configs and writes
what they compute, for tests/python/test_mlx_lm_models.py.

    python mlx_lm_driver.py mlx SPEC.json OUTDIR                  (real MLX: makes the weights)
    python -m ponte.run mlx_lm_driver.py ponte SPEC.json OUTDIR   (Ponte as mlx)

SPEC.json is a list of {"arch", "config", "train", "quant"}. Per arch, the mlx side writes
OUTDIR/<arch>.weights.npz (the model's parameters after seeded init plus random noise, so no
norm weight is all ones and no bias all zeros; integer ones, packed quantized weights,
random) and the parameters after each nn.quantize (OUTDIR/<arch>.qweights.npz,
OUTDIR/<arch>.<mode>.npz); the ponte side builds the same model and loads them. Both write
OUTDIR/<arch>.<side>.npz with
  "logits"                     a forward pass
  "step0".."step3"             a prompt and three single-token steps through make_prompt_cache
  "batch_step1".."batch_step3" batched steps after two prompts of different lengths were
                               prefilled alone and their caches merged (where mlx-lm merges
                               the arch's caches)
  "qkv_step1".."qkv_step3"     (KV_QUANT) steps after the prompt's caches became
                               QuantizedKVCache
  "half", "bf16"               the forward with float16 / bfloat16 parameters, the logits'
                               dtype in "half_dtype", "bf16_dtype" (where MLX's CPU runs it)
  "loss", "grad.<name>"        (train) one cross-entropy step's loss and every gradient
  "ctrain_loss<i>", "ctrain.<name>"  (COMPILED_TRAIN) three compiled AdamW steps' losses and
                               the parameters after them
  "q_mxfp4", "q_nvfp4", "q_mxfp8"  (FP_QUANT_ARCHS) the forward after nn.quantize in that mode
  "qlogits"                    (quant) the forward after nn.quantize(group_size=32, bits=4)
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
from functools import partial

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
# more keys for the rest of the zoo (other names for the same sizes, MoE and window knobs)
MORE = dict(
    num_shared_experts=1, sliding_window=6, sliding_window_pattern=2, num_layers=2, n_layers=2,
    n_heads=4, d_model=64, hidden_dim=64, num_heads=4, num_kv_heads=2, n_kv_heads=2,
    rope_scaling=None, layer_group_size=2, group_norm_size=1, moe_num_experts=4, moe_topk=2,
    num_shared_expert=1, use_qk_norm=True, moe_layer_freq=1, topk_method="noaux_tc",
    scoring_func="sigmoid", moe_k=2, partial_rotary_factor=0.5)
SWA = ["sliding_attention", "full_attention"]
YARN = dict(rope_type="yarn", factor=4.0, original_max_position_embeddings=64,
            llama_4_scaling_beta=0.1, rope_theta=10000.0, beta_fast=32.0, beta_slow=1.0,
            mscale=1.0, mscale_all_dim=1.0)
# ministral3's llama-4 attention scaling and yarn RoPE, one sliding layer and one full
MINISTRAL = dict(layer_types=SWA, sliding_window=6, rope_parameters=YARN)
MULT = dict(logits_scaling=2.0, attention_multiplier=0.1, embedding_multiplier=2.0,
            residual_multiplier=0.5)
QWEN35 = dict(model_type="qwen3_5_text", num_experts=0, linear_num_value_heads=4,
              linear_num_key_heads=2, linear_key_head_dim=16, linear_value_head_dim=16,
              full_attention_interval=2,
              rope_parameters=dict(type="default", mrope_section=[2, 1, 1], rope_theta=10000.0,
                                   partial_rotary_factor=0.5))


def _cfg(model_type, **kw):
    c = dict(BASE, model_type=model_type)
    c.update(kw)
    return c


def _more(model_type, **kw):
    return _cfg(model_type, **{**MORE, **kw})


def _text(arch, text_config):
    """A multimodal wrapper's config: the text model's under text_config."""
    return dict(model_type=arch, vocab_size=VOCAB, text_config={**BASE, **MORE, **text_config})


# arch -> (config, train, quant): the mlx-lm file mlx_lm/models/<arch>.py; train: one
# cross-entropy step's loss and gradients; quant: the forward after nn.quantize
CONFIGS = {
    "llama": (_cfg("llama", hidden_size=128, head_dim=32), True, True),
    "qwen2": (_cfg("qwen2", tie_word_embeddings=True), True, True),
    "qwen3": (_cfg("qwen3", head_dim=32), True, True),
    "ministral3": (_cfg("ministral3", **MINISTRAL), True, True),
    "mistral3": (dict(model_type="mistral3", text_config=_cfg("ministral3", **MINISTRAL)),
                 True, True),
    "gemma": (_cfg("gemma"), True, True),
    "gemma2": (_cfg("gemma2", sliding_window=6, query_pre_attn_scalar=16,
                    final_logit_softcapping=30.0, attn_logit_softcapping=50.0), True, True),
    "gemma3_text": (_cfg("gemma3_text", sliding_window=6, sliding_window_pattern=2,
                         query_pre_attn_scalar=16), True, True),
    "phi3": (_cfg("phi3"), True, True),
    "gpt_oss": (_cfg("gpt_oss", intermediate_size=32, sliding_window=6,
                     layer_types=SWA), True, True),
    "mixtral": (_cfg("mixtral", hidden_size=128), True, True),
    "qwen3_moe": (_cfg("qwen3_moe"), True, True),
    "deepseek_v3": (_cfg("deepseek_v3", n_group=2, topk_group=1), True, True),
    "olmo2": (_cfg("olmo2"), True, True),
    "starcoder2": (_cfg("starcoder2"), True, True),
    "gpt2": (_cfg("gpt2", n_ctx=64, n_embd=64, n_head=4, n_layer=2, n_positions=64), True,
             True),
    "gpt_neox": (_cfg("gpt_neox", rotary_emb_base=10000, rotary_pct=0.5), True, True),
    "cohere": (_cfg("cohere", use_qk_norm=True), True, True),
    "mamba": (_cfg("mamba", state_size=8, conv_kernel=4, use_conv_bias=True,
                   time_step_rank=4), True, True),
    "mamba2": (_cfg("mamba2", num_heads=8, head_dim=16, state_size=8, conv_kernel=4, n_groups=2,
                    use_conv_bias=True, time_step_limit=(0.0, float("inf")),
                    time_step_rank=4), True, True),
    "qwen3_next": (_cfg("qwen3_next", linear_num_value_heads=4, linear_num_key_heads=2,
                        linear_key_head_dim=16, linear_value_head_dim=16,
                        linear_conv_kernel_dim=4, partial_rotary_factor=0.5,
                        full_attention_interval=2), True, True),
    "rwkv7": (_cfg("rwkv7", a_low_rank_dim=16, v_low_rank_dim=16, gate_low_rank_dim=16,
                   decay_low_rank_dim=16), True, True),
    "recurrent_gemma": (_cfg("recurrent_gemma", conv1d_width=4, logits_soft_cap=30.0,
                             attention_window_size=6,
                             block_types=["recurrent", "attention"]),
                        False, True),  # MLX: its Model has no _no_grad (no Module.__init__)
}

# the rest of the zoo: arch -> its keys beyond BASE + MORE (every one trains and quantizes
# unless NO_TRAIN / NO_QUANT say why not)
ZOO = {
    "Klear": {}, "bailing_hybrid": {}, "bailing_moe": {}, "bailing_moe_linear": {},
    "bailing_moe_v3": {}, "cohere2": {}, "deepseek": {}, "deepseek_v32": {},
    "deepseek_v41": {}, "dots1": {}, "ernie4_5": {}, "ernie4_5_moe": {}, "exaone": {},
    "falcon_h1": {}, "glm": {}, "glm4": {}, "glm4_moe": {}, "glm4_moe_lite": {}, "helium": {},
    "hunyuan_v1_dense": {}, "internlm2": {}, "internlm3": {}, "iquestloopcoder": {},
    "laguna": {}, "mimo": {}, "muse_glimmer": {}, "nanbeige": {}, "nanochat": {}, "olmoe": {},
    "phi": {}, "phimoe": {}, "plamo2": {}, "plamo3": {}, "qwen2_moe": {}, "qwen2_vl": {},
    "qwen3_vl": {}, "seed_oss": {}, "smollm3": {}, "solar_open": {}, "talkie": {},
    "telechat3": {}, "youtu_llm": {},
    "afm7": dict(num_kv_reuse_layers=1),
    "afmoe": dict(layer_types=SWA, num_dense_layers=1),
    "apertus": dict(post_norm=False, qk_norm=True),
    "baichuan_m1": dict(sliding_window_layers=[0], conv_window=2),
    "dbrx": dict(ffn_config=dict(ffn_hidden_size=64, moe_num_experts=4, moe_top_k=2),
                 attn_config=dict(kv_n_heads=2, clip_qkv=8.0, rope_theta=10000.0)),
    "deepseek_v2": dict(rope_scaling=dict(YARN, type="yarn"), topk_method="greedy"),
    "exaone4": dict(sliding_window_pattern="LG"),
    "exaone_moe": dict(layer_types=SWA, is_moe_layer=[False, True]),
    "gear": dict(layer_types=SWA),
    "gemma4_text": dict(global_head_dim=32, vocab_size_per_layer_input=VOCAB,
                        num_kv_shared_layers=0, hidden_size_per_layer_input=16,
                        layer_types=SWA),
    "glm_moe_dsa": dict(index_head_dim=16, index_n_heads=2, index_topk=4,
                        rope_parameters=dict(rope_theta=10000.0, rope_type="default")),
    "gpt_bigcode": dict(n_embd=64, n_layer=2, n_inner=128, n_head=4, n_positions=64),
    "gptj": dict(n_embd=64, n_layer=2, n_head=4, n_positions=64, rotary_dim=8),
    "granite": MULT, "granitemoe": MULT,
    "granitemoehybrid": dict(MULT, layer_types=["mamba", "attention"], mamba_n_heads=8,
                             mamba_d_head=16, mamba_proj_bias=False, mamba_d_state=8,
                             mamba_d_conv=4, mamba_n_groups=2, mamba_conv_bias=True,
                             shared_intermediate_size=32),
    "hunyuan": dict(use_mixed_mlp_moe=True, use_cla=False, cla_share_factor=1,
                    rope_scaling=dict(alpha=1000.0, factor=1.0, type="dynamic")),
    "jamba": dict(attn_layer_offset=1, attn_layer_period=2, expert_layer_offset=1,
                  expert_layer_period=2, mamba_d_conv=4, mamba_d_state=8, mamba_expand=2),
    "kimi_linear": dict(linear_attn_config=dict(kda_layers=[1], full_attn_layers=[2],
                                                head_dim=16, num_heads=4,
                                                short_conv_kernel_size=4),
                        model_max_length=256, num_experts_per_token=2),
    "lfm2": dict(conv_bias=False, conv_L_cache=3, block_dim=64, block_multiple_of=32,
                 block_ffn_dim_multiplier=1.0, block_auto_adjust_ff_dim=True,
                 layer_types=["conv", "full_attention"]),
    "lfm2_moe": dict(use_expert_bias=True, num_dense_layers=1, conv_bias=False,
                     conv_L_cache=3, layer_types=["conv", "full_attention"]),
    "lille-130m": dict(block_size=64, n_embd=64, n_head=4, n_layer=2),
    "llama4_text": dict(intermediate_size_mlp=128, no_rope_layers=[1, 0]),
    "longcat_flash": dict(attention_method="MLA", zero_expert_type="identity",
                          ffn_hidden_size=128, expert_ffn_hidden_size=32, zero_expert_num=2,
                          mla_scale_q_lora=True, mla_scale_kv_lora=True),
    "longcat_flash_ngram": dict(ffn_hidden_size=128, expert_ffn_hidden_size=32,
                                zero_expert_num=2, mla_scale_q_lora=True,
                                mla_scale_kv_lora=True),
    "mellum": dict(layer_types=SWA, rope_parameters=dict(
        sliding_attention=dict(rope_theta=10000.0),
        full_attention=dict(YARN, factor=4.0))),
    "mimo_v2_flash": dict(hybrid_layer_pattern=[1, 0], moe_layer_freq=[0, 1],
                          add_swa_attention_sink_bias=True, add_full_attention_sink_bias=False,
                          sliding_window_size=6, layernorm_epsilon=1e-5,
                          swa_rope_theta=10000.0, swa_num_attention_heads=4,
                          swa_num_key_value_heads=2, swa_head_dim=16, swa_v_head_dim=16,
                          partial_rotary_factor=1),
    "minicpm": dict(dim_model_base=32, scale_depth=1.4, scale_emb=2.0),
    "minicpm3": dict(dim_model_base=32, scale_depth=1.4, scale_emb=2.0, rope_scaling=dict(
        original_max_position_embeddings=64, short_factor=[1.0, 1.1, 1.2, 1.3],
        long_factor=[1.5, 2.0, 2.5, 3.0])),
    "minimax": dict(shared_intermediate_size=32, rotary_dim=8),
    "mistral4": dict(rope_parameters=YARN),
    "nemotron": dict(hidden_act="relu2"),
    "nemotron-nas": dict(num_hidden_layers=3, block_configs=[
        dict(attention=dict(n_heads_in_group=2), ffn=dict(ffn_mult=2.0)),
        dict(attention=dict(no_op=True), ffn=dict(replace_with_linear=True)),
        dict(attention=dict(replace_with_linear=True), ffn=dict(ffn_mult=1.5))]),
    "nemotron_h": dict(mamba_num_heads=8, mamba_head_dim=16, mamba_proj_bias=False,
                       ssm_state_size=8, conv_kernel=4, n_groups=2, use_conv_bias=True,
                       hybrid_override_pattern=["M", "*", "-"]),
    "olmo3": dict(layer_types=SWA),
    "olmo_hybrid": dict(linear_num_key_heads=2, linear_num_value_heads=4,
                        linear_key_head_dim=16, linear_value_head_dim=16,
                        linear_conv_kernel_dim=4, linear_allow_neg_eigval=True,
                        layer_types=["linear_attention", "full_attention"]),
    "openelm": dict(num_transformer_layers=2, model_dim=64, ffn_dim_divisor=32,
                    num_query_heads=[4, 4], num_kv_heads=[2, 2], ffn_multipliers=[2.0, 2.0]),
    "phixtral": dict(num_vocab=VOCAB, model_dim=64, num_layers=2, rotary_dim=8),
    "plamo": dict(n_shared_head=2),
    "qwen": dict(kv_channels=16, intermediate_size=256),
    "spark2_5": dict(layer_types=SWA, rope_parameters=dict(
        sliding_attention=dict(rope_theta=10000.0, rope_type="default"),
        full_attention=dict(rope_theta=10000.0, rope_type="default",
                            partial_rotary_factor=0.5))),
    "stablelm": dict(use_qkv_bias=True),
    "step3p5": dict(num_attention_groups=2, moe_num_experts=4, moe_top_k=2,
                    moe_intermediate_size=32, share_expert_dim=32, layer_types=SWA),
}
# multimodal wrappers and text_config models: arch -> its text_config
TEXT = {
    "gemma3": _cfg("gemma3_text", sliding_window=6, sliding_window_pattern=2,
                   query_pre_attn_scalar=16),
    "gemma3n": dict(
        model_type="gemma3n_text", num_hidden_layers=4, num_kv_shared_layers=2,
        vocab_size_per_layer_input=VOCAB, rope_local_base_freq=10000.0,
        final_logit_softcapping=30.0, layer_types=SWA * 2,
        activation_sparsity_pattern=[0.95, 0.0, 0.0, 0.0], hidden_size_per_layer_input=16,
        altup_num_inputs=4, altup_coef_clip=120.0, altup_correct_scale=True,
        altup_active_idx=0, laurel_rank=16),
    "gemma4": _more("gemma4_text", **ZOO["gemma4_text"]),
    "kimi_k25": CONFIGS["deepseek_v3"][0], "kimi_vl": CONFIGS["deepseek_v3"][0],
    "kimi_k3": _more("kimi_linear", **ZOO["kimi_linear"], hidden_act="situ",
                     activation_situ_beta=1.0, activation_situ_linear_beta=0.5),
    "lfm2-vl": _more("lfm2", **ZOO["lfm2"]),
    "llama4": _more("llama4_text", num_hidden_layers=4, intermediate_size_mlp=128,
                    no_rope_layers=[1, 1, 1, 0], num_experts_per_tok=1,
                    attention_chunk_size=4, interleave_moe_layer_step=2),
    "minimax_m3_vl": dict(model_type="minimax_m3", intermediate_size=32,
                          dense_intermediate_size=128, mlp_layer_types=["dense", "sparse"]),
    "pixtral": _cfg("llama"),
    "qwen3_5": QWEN35,
    "qwen3_5_moe": dict(QWEN35, num_experts=4, num_experts_per_tok=2),
    "qwen3_vl_moe": _cfg("qwen3_moe"),
}
# archs (head_dim 32) whose decoding also runs with the prompt's KVCaches turned into
# QuantizedKVCache (4-bit keys and values, quantized_matmul attention), as mlx_lm's
# generate(kv_bits=4) does
KV_QUANT = {"llama", "qwen3", "mixtral"}
# archs whose training also runs as mlx_lm's trainer does it: three AdamW steps compiled
# with the model's and the optimizer's state as inputs and outputs
COMPILED_TRAIN = {"llama", "gpt_oss", "mixtral", "deepseek_v3", "mamba2", "qwen3_next",
                  "gemma2"}
# nn.quantize's floating-point modes (mode, group_size, bits), for FP_QUANT_ARCHS
FP_QUANT = [("mxfp4", 32, 4), ("nvfp4", 16, 4), ("mxfp8", 32, 8)]
FP_QUANT_ARCHS = {"llama", "gpt_oss", "mixtral", "qwen3_moe", "deepseek_v3"}
NO_TRAIN = {
    # MLX: "[gather_axis] Cannot calculate VJP with respect to indices"
    "deepseek_v41": "MLX cannot differentiate it (take_along_axis's indices)",
}
NO_QUANT = {
    "afm7": "mlx-lm's FusedLinear.to_quantized takes no mode= (MLX 0.32's nn.quantize passes it)",
}
for _a, _kw in ZOO.items():
    CONFIGS[_a] = (_more(_a, **_kw), _a not in NO_TRAIN, _a not in NO_QUANT)
for _a, _tc in TEXT.items():
    CONFIGS[_a] = (_text(_a, _tc), True, True)
# qwen3_5 with 2-bit affine layers (group 128, frozen) behind blockwise Hadamard rotations
CONFIGS["prism_hadamard_qwen35"] = (dict(
    _text("prism_hadamard_qwen35", dict(QWEN35, hidden_size=512)), schema_version=1,
    tensor_namespace="mlx-lm-text", quantization=dict(bits=2, group_size=128, mode="affine"),
    modules=[dict(path="model.embed_tokens", embedding=True, dtype="float16", block=512),
             dict(path="model.layers.0.mlp.gate_proj", embedding=False, dtype="float16",
                  block=512),
             dict(path="model.layers.1.mlp.down_proj", embedding=False, dtype="float16",
                  block=0)]), True, False)
# mlx_lm/models files that are shared code, not architectures
HELPERS = {"__init__", "activations", "base", "bitlinear_layers", "cache", "gated_delta", "mla",
           "pipeline", "rope_utils", "ssm", "switch_layers"}
# mlx-lm files that cannot run against MLX on its CPU here (not in CONFIGS)
EXCLUDED = {
    "bitnet": "mlx-lm's BitLinear calls mx.fast.metal_kernel (MLX's CPU: no Metal back-end)",
    "muse_spark": "calls mx.fast.metal_kernel (MLX's CPU: no Metal back-end)",
    "olmo": "imports hf_olmo (the ai2-olmo package), outside mlx",
    "phi3small": "MLX 0.32.4 on the CPU segfaults in mx.fast.rope on its strided q/k "
                 "(Ponte runs it)",
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
        flat = {k: (rng.integers(0, np.iinfo(v.dtype).max, v.shape, v.dtype, endpoint=True)
                    if v.dtype.kind in "ui" else
                    (v + 0.05 * rng.standard_normal(v.shape)).astype(np.float32))
                for k, v in flat.items()}
        np.savez(wpath, **flat)

    def load(path):
        with np.load(path) as f:
            model.load_weights([(k, mx.array(f[k])) for k in f.files])
        mx.eval(model.parameters())

    load(wpath)
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

    # batch_generate's path: each prompt (lengths L and L - 5) prefilled alone, the caches
    # merged (BatchKVCache, BatchRotatingKVCache, ArraysCache with left padding), then batched
    # steps; where mlx-lm merges the arch's caches (the ponte side follows the mlx side's file)
    mlx_out = None if side == "mlx" else np.load(os.path.join(outdir, arch + ".mlx.npz")).files
    if side == "mlx" or "batch_step1" in mlx_out:
        try:
            caches = []
            for b, n in enumerate((L, L - 5)):
                caches.append(cache_mod.make_prompt_cache(model))
                model(mx.array(tokens[b:b + 1, :n]), cache=caches[-1])
            merged = [c.merge([c, d]) for c, d in zip(*caches)]
            for s in range(STEPS):
                y = model(mx.array(tokens[:, L + s:L + s + 1]), cache=merged)
                out["batch_step%d" % (s + 1)] = _np(y)
        except (AttributeError, NotImplementedError, RuntimeError, ValueError, TypeError):
            if side != "mlx":
                raise
            for s in range(STEPS):
                out.pop("batch_step%d" % (s + 1), None)

    if arch in KV_QUANT:
        cache = cache_mod.make_prompt_cache(model)
        model(x, cache=cache)
        cache = [c.to_quantized(group_size=32, bits=4) for c in cache]
        for s in range(STEPS):
            y = model(mx.array(tokens[:, L + s:L + s + 1]), cache=cache)
            out["qkv_step%d" % (s + 1)] = _np(y)

    # float16 and bfloat16 parameters (the forward in half precision), where MLX's CPU runs it
    # (its GatherMM takes float32 only: the MoE archs); the ponte side follows the mlx side's file
    if side == "mlx" or "half" in mlx_out:
        for name, dt in (("half", mx.float16), ("bf16", mx.bfloat16)):
            model.set_dtype(dt)
            try:
                y = model(x)
                out[name] = _np(y)
                out[name + "_dtype"] = np.array(str(y.dtype).split(".")[-1])
            except (RuntimeError, ValueError):
                if side != "mlx":
                    raise
            model.set_dtype(mx.float32)
            load(wpath)

    def loss_fn(m, inp, tgt):
        return nn.losses.cross_entropy(m(inp), tgt).mean()

    target = mx.array(tokens[:, 1:L + 1])
    if train:
        model.train()
        loss, grads = nn.value_and_grad(model, loss_fn)(model, x, target)
        out["loss"] = _np(loss)
        for k, g in tree_flatten(grads):
            out["grad." + k] = _np(g)
        model.eval()

    if arch in COMPILED_TRAIN:  # mlx_lm.tuner.trainer's step: compiled over model and
        import mlx.optimizers as optim  # optimizer state, AdamW updating in place
        model.train()
        opt = optim.AdamW(learning_rate=1e-2, eps=1e-3, weight_decay=0.05)
        state = [model.state, opt.state]

        @partial(mx.compile, inputs=state, outputs=state)
        def step(inp, tgt):
            loss, grads = nn.value_and_grad(model, loss_fn)(model, inp, tgt)
            opt.update(model, grads)
            return loss

        for i in range(3):
            out["ctrain_loss%d" % i] = _np(step(x, target))
            mx.eval(state)
        for k, v in tree_flatten(model.trainable_parameters()):
            out["ctrain." + k] = _np(v)
        model.eval()
        load(wpath)

    def pred(_, m):
        w = getattr(m, "weight", None)
        return hasattr(m, "to_quantized") and w is not None and w.shape[-1] % 32 == 0

    # the floating-point modes (gpt-oss ships mxfp4): each quantizes the float weights afresh
    for mode, group, bits in FP_QUANT if arch in FP_QUANT_ARCHS else ():
        nn.quantize(model, group_size=group, bits=bits, mode=mode, class_predicate=pred)
        qpath = os.path.join(outdir, "%s.%s.npz" % (arch, mode))
        if side == "mlx":
            np.savez(qpath, **{k: np.array(v) for k, v in tree_flatten(model.parameters())})
        load(qpath)
        out["q_" + mode] = _np(model(x))
        model = mod.Model(args)
        load(wpath)
        model.eval()

    if quant:
        nn.quantize(model, group_size=32, bits=4, class_predicate=pred)
        qpath = os.path.join(outdir, arch + ".qweights.npz")
        if side == "mlx":
            np.savez(qpath, **{k: np.array(v) for k, v in tree_flatten(model.parameters())})
        load(qpath)
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
