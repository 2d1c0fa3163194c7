"""Factories that write real model files for tests: valid headers, real formats, small sizes."""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import numpy as np

_DTYPE_SIZES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "F8_E4M3": 1, "F8_E5M2": 1, "I8": 1,
                "U8": 1, "I32": 4, "I64": 8}


def make_safetensors(
    path: Path,
    tensors: dict[str, tuple[str, list[int]]] | None = None,
    metadata: dict[str, str] | None = None,
    fill: bytes = b"\x00",
    padding: int = 0,
    header_size: int | None = None,
) -> Path:
    """Write a valid safetensors file: `tensors` maps name -> (dtype, shape).

    `fill` patterns the tensor bytes so files with equal headers can still differ;
    `padding` adds that many bytes to the file to reach a wanted size, as one more tensor of
    the last tensor's dtype (data outside every tensor would make the file invalid);
    `header_size` pads the JSON header with spaces to exactly that many bytes (as the
    safetensors writer pads to a multiple of 8).
    """
    tensors = dict(tensors or {"weight": ("F16", [4, 4])})
    header_extra = 0
    if padding:
        dtype = list(tensors.values())[-1][0]
        tensors["padding"] = (dtype, [padding // _DTYPE_SIZES[dtype]])
        header_extra = padding % _DTYPE_SIZES[dtype]
    header: dict[str, object] = {}
    offset = 0
    for name, (dtype, shape) in tensors.items():
        count = int(np.prod(shape)) if shape else 1
        nbytes = count * _DTYPE_SIZES[dtype]
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    if metadata:
        header["__metadata__"] = metadata
    raw = json.dumps(header).encode()
    if header_size is not None:
        assert len(raw) <= header_size, f"header needs {len(raw)} bytes"
        raw += b" " * (header_size - len(raw))
    else:
        raw += b" " * (-len(raw) % 8 + header_extra)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        fh.write(struct.pack("<Q", len(raw)))
        fh.write(raw)
        if fill.strip(b"\x00"):
            fh.write((fill * (offset // len(fill) + 1))[:offset])
        else:  # zeros: a hole, so real shapes (a 4096 x 32128 embedding) cost no disk
            fh.truncate(fh.tell() + offset)
    return path


def make_big_safetensors(path: Path, size: int) -> Path:
    """A valid safetensors file of exactly `size` bytes: one U8 tensor filling it, whose first
    KiB is random (two such files differ) and the rest a hole (cheap to make at any size)."""
    header_bytes = 96  # one tensor's entry, padded with spaces as the safetensors writer pads
    count = size - 8 - header_bytes
    raw = json.dumps({"w": {"dtype": "U8", "shape": [count], "data_offsets": [0, count]}})
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        fh.write(struct.pack("<Q", header_bytes) + raw.encode().ljust(header_bytes))
        fh.write(os.urandom(min(1024, count)))
        fh.truncate(size)
    return path


def make_gguf(
    path: Path,
    arch: str = "llama",
    name: str | None = None,
    kv: dict[str, object] | None = None,
    tensors: dict[str, list[int]] | None = None,
    quant: str | None = None,
) -> Path:
    """Write a valid GGUF file with llama.cpp's own writer; `quant` ("Q8_0", "Q4_0", ...)
    stores 2-D tensors quantised with llama.cpp's own quantiser, as city96's GGUFs do."""
    import gguf

    path.parent.mkdir(parents=True, exist_ok=True)
    writer = gguf.GGUFWriter(str(path), arch)
    if name:
        writer.add_name(name)
    for key, value in (kv or {}).items():
        if isinstance(value, bool):
            writer.add_bool(key, value)
        elif isinstance(value, int):
            writer.add_uint32(key, value)
        elif isinstance(value, float):
            writer.add_float32(key, value)
        else:
            writer.add_string(key, str(value))
    for tname, shape in (tensors or {"token_embd.weight": [8, 4]}).items():
        data = np.ones(shape, dtype=np.float32)
        if quant and len(shape) >= 2:
            qtype = gguf.GGMLQuantizationType[quant]
            writer.add_tensor(tname, gguf.quants.quantize(data, qtype), raw_dtype=qtype)
        else:
            writer.add_tensor(tname, data)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def make_sharded_safetensors(folder: Path, total: int = 3, stem: str = "model") -> list[Path]:
    """A complete sharded set with its `*.safetensors.index.json`; returns every file."""
    files = []
    weight_map = {}
    for i in range(1, total + 1):
        name = f"{stem}-{i:05d}-of-{total:05d}.safetensors"
        tensor = f"layers.{i}.weight"
        files.append(make_safetensors(folder / name, {tensor: ("F16", [8, 8])}, fill=bytes([i])))
        weight_map[tensor] = name
    index = folder / f"{stem}.safetensors.index.json"
    body = {"metadata": {"total_size": 128 * total}, "weight_map": weight_map}
    index.write_text(json.dumps(body))
    return [*files, index]


# --- PyTorch pickles, written opcode by opcode: torch is never imported, nothing is unpickled.

_STORAGE_CLASSES = {"F32": "FloatStorage", "F16": "HalfStorage", "BF16": "BFloat16Storage",
                    "I64": "LongStorage", "I32": "IntStorage", "I8": "CharStorage",
                    "U8": "ByteStorage", "F64": "DoubleStorage"}


def _p_str(text: str) -> bytes:
    raw = text.encode()
    return b"X" + struct.pack("<I", len(raw)) + raw  # BINUNICODE


def _p_int(value: int) -> bytes:
    return b"J" + struct.pack("<i", value)  # BININT


def _p_global(module: str, name: str) -> bytes:
    return b"c" + f"{module}\n{name}\n".encode()  # GLOBAL


def _p_tuple(items: list[bytes]) -> bytes:
    return b"(" + b"".join(items) + b"t"  # MARK ... TUPLE


def torch_state_dict_pickle(
    tensors: dict[str, tuple[str, list[int]]], wrap: str | None = None, first_storage: int = 0
) -> bytes:
    """The bytes `torch.save(state_dict)` puts in data.pkl (protocol 2, persistent storages)."""
    out = [b"\x80\x02"]
    if wrap:
        out += [b"}", _p_str(wrap)]  # {wrap: OrderedDict(...)}
    out += [_p_global("collections", "OrderedDict"), b")R(" ]
    for index, (name, (dtype, shape)) in enumerate(tensors.items()):
        numel = int(np.prod(shape)) if shape else 1
        stride, acc = [], 1
        for dim in reversed(shape):
            stride.insert(0, acc)
            acc *= dim
        pid = _p_tuple([_p_str("storage"), _p_global("torch", _STORAGE_CLASSES[dtype]),
                        _p_str(str(first_storage + index)), _p_str("cpu"), _p_int(numel)])
        out += [
            _p_str(name),
            _p_global("torch._utils", "_rebuild_tensor_v2"),
            _p_tuple([pid + b"Q", _p_int(0), _p_tuple([_p_int(d) for d in shape]),
                      _p_tuple([_p_int(s) for s in stride]), b"\x89",
                      _p_global("collections", "OrderedDict") + b")R"]),
            b"R",
        ]
    out.append(b"u")  # SETITEMS
    if wrap:
        out.append(b"s")  # SETITEM into the wrapper dict
    out.append(b".")
    return b"".join(out)


def nested_state_dict_pickle(groups: dict[str, dict[str, tuple[str, list[int]]]]) -> bytes:
    """`torch.save({"image_proj": sd1, "ip_adapter": sd2})`: named state dicts in one dict, as
    IP-Adapter .bin files hold them."""
    out, first = [b"\x80\x02}("], 0
    for group, tensors in groups.items():
        out += [_p_str(group), torch_state_dict_pickle(tensors, first_storage=first)[2:-1]]
        first += len(tensors)
    return b"".join([*out, b"u."])


def _p_numpy_scalar() -> bytes:
    """numpy.float64 as pickled by numpy: scalar(dtype('f8') + BUILD state, raw bytes)."""
    dtype = (_p_global("numpy", "dtype") + _p_tuple([_p_str("f8"), b"\x89", b"\x88"]) + b"R"
             + _p_tuple([_p_int(3), _p_str("<"), b"N", b"N", b"N", _p_int(-1), _p_int(-1),
                         _p_int(0)]) + b"b")
    raw = _p_global("_codecs", "encode") + _p_tuple([_p_str("\x00" * 8), _p_str("latin1")])
    return _p_global("numpy.core.multiarray", "scalar") + _p_tuple([dtype, raw + b"R"]) + b"R"


def lightning_checkpoint_pickle(tensors: dict[str, tuple[str, list[int]]]) -> bytes:
    """data.pkl of a PyTorch Lightning checkpoint as Stable Diffusion 1.x's sd-v1-4.ckpt holds
    it: epoch, global_step, the Lightning version, the state dict, and "callbacks" keyed by
    the ModelCheckpoint class itself (its state holds numpy scores)."""
    state_dict = torch_state_dict_pickle(tensors)[2:-1]  # without PROTO and STOP
    callback_state = (b"}(" + _p_str("monitor") + b"N" + _p_str("best_model_score")
                      + _p_numpy_scalar() + _p_str("best_model_path")
                      + _p_str("/fsx/stable-diffusion/logs/checkpoints/last.ckpt")
                      + _p_str("current_score") + _p_numpy_scalar()
                      + _p_str("dirpath") + _p_str("/fsx/stable-diffusion/logs/checkpoints")
                      + b"u")
    callbacks = (b"}" + _p_global("pytorch_lightning.callbacks.model_checkpoint",
                                  "ModelCheckpoint") + callback_state + b"s")
    return b"".join([
        b"\x80\x02}(",
        _p_str("epoch"), _p_int(6),
        _p_str("global_step"), _p_int(470000),
        _p_str("pytorch-lightning_version"), _p_str("1.4.2"),
        _p_str("state_dict"), state_dict,
        _p_str("callbacks"), callbacks,
        b"u.",
    ])


def make_torch_zip(
    path: Path,
    tensors: dict[str, tuple[str, list[int]]] | None = None,
    wrap: str | None = None,
    pickle_bytes: bytes | None = None,
) -> Path:
    """A ZIP checkpoint laid out as torch.save writes it: archive/data.pkl, data/N, version."""
    import zipfile

    tensors = tensors or {"weight": ("F16", [4, 4])}
    data_pkl = pickle_bytes if pickle_bytes is not None else torch_state_dict_pickle(tensors, wrap)
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as zf:
        zf.writestr("archive/data.pkl", data_pkl)
        for index, (dtype, shape) in enumerate(tensors.values()):
            numel = int(np.prod(shape)) if shape else 1
            zf.writestr(f"archive/data/{index}", b"\x00" * numel * _DTYPE_SIZES[dtype])
        zf.writestr("archive/version", "3\n")
    return path


def evil_pickle_bytes(command: str = "echo pwned", stack_global: bool = False) -> bytes:
    """A checkpoint (one real tensor) whose "x" entry would be os.system(command) if loaded, as
    an attacker hides a payload in a working model. Only ever written, never loaded here."""
    state = torch_state_dict_pickle({"weight": ("F16", [4, 4])})
    if stack_global:  # protocol 4 spelling
        call = b"\x8c\x02os\x8c\x06system\x93"
        state = b"\x80\x04" + state[2:]
    else:
        call = _p_global("os", "system")
    return state[:-2] + _p_str("x") + call + _p_str(command) + b"\x85Ru."


def make_evil_pickle(path: Path, stack_global: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(evil_pickle_bytes(stack_global=stack_global))
    return path


def make_legacy_torch(path: Path, tensors: dict[str, tuple[str, list[int]]]) -> Path:
    """Pre-1.6 torch.save: magic, protocol, sys info and state pickles, keys, raw storages."""
    magic = b"\x80\x02\x8a\x0a" + (0x1950A86A20F9469CFC6C).to_bytes(10, "little") + b"."
    protocol = b"\x80\x02" + _p_int(1001) + b"."
    sys_info = b"\x80\x02}" + _p_str("little_endian") + b"\x88s."
    keys = b"\x80\x02(" + b"".join(_p_str(str(i)) for i in range(len(tensors))) + b"l."
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        fh.write(magic + protocol + sys_info + torch_state_dict_pickle(tensors) + keys)
        for dtype, shape in tensors.values():
            numel = int(np.prod(shape)) if shape else 1
            fh.write(struct.pack("<q", numel) + b"\x00" * numel * _DTYPE_SIZES[dtype])
    return path


# --- Folders that are one model (bundles), laid out as diffusers / hf download write them.

_CLIP_TOKENIZER = {
    "vocab.json": json.dumps({"<|startoftext|>": 0, "<|endoftext|>": 1, "a": 2, "cat": 3}),
    "merges.txt": "#version: 0.2\nc a\nca t\n",
    "special_tokens_map.json": json.dumps(
        {"bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>", "pad_token": "!"}
    ),
    "tokenizer_config.json": json.dumps(
        {"model_max_length": 77, "tokenizer_class": "CLIPTokenizer", "do_lower_case": True}
    ),
}


def _write_json(path: Path, data: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n")
    return path


def make_diffusers_sdxl(root: Path) -> list[Path]:
    """A Stable Diffusion XL pipeline folder as `save_pretrained` writes it: model_index.json,
    component folders with their real config keys, safetensors weights whose tensor names
    and key shapes are SDXL's (UNet cross-attention 2048, CLIP-L and OpenCLIP-bigG encoders),
    scaled down. Returns every file written."""
    files = [
        _write_json(root / "model_index.json", {
            "_class_name": "StableDiffusionXLPipeline", "_diffusers_version": "0.30.0",
            "feature_extractor": [None, None], "force_zeros_for_empty_prompt": True,
            "image_encoder": [None, None],
            "scheduler": ["diffusers", "EulerDiscreteScheduler"],
            "text_encoder": ["transformers", "CLIPTextModel"],
            "text_encoder_2": ["transformers", "CLIPTextModelWithProjection"],
            "tokenizer": ["transformers", "CLIPTokenizer"],
            "tokenizer_2": ["transformers", "CLIPTokenizer"],
            "unet": ["diffusers", "UNet2DConditionModel"],
            "vae": ["diffusers", "AutoencoderKL"],
        }),
        _write_json(root / "scheduler" / "scheduler_config.json", {
            "_class_name": "EulerDiscreteScheduler", "_diffusers_version": "0.30.0",
            "beta_end": 0.012, "beta_schedule": "scaled_linear", "beta_start": 0.00085,
            "num_train_timesteps": 1000, "prediction_type": "epsilon",
            "timestep_spacing": "leading", "steps_offset": 1,
        }),
        _write_json(root / "unet" / "config.json", {
            "_class_name": "UNet2DConditionModel", "_diffusers_version": "0.30.0",
            "addition_embed_type": "text_time", "addition_time_embed_dim": 256,
            "block_out_channels": [320, 640, 1280], "cross_attention_dim": 2048,
            "in_channels": 4, "out_channels": 4, "sample_size": 128,
            "transformer_layers_per_block": [1, 2, 10],
        }),
        make_safetensors(root / "unet" / "diffusion_pytorch_model.safetensors", {
            "down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k.weight": (
                "F16", [640, 2048]),
            "down_blocks.1.attentions.0.proj_in.weight": ("F16", [640, 640]),
            "add_embedding.linear_1.weight": ("F16", [1280, 2816]),
        }, fill=b"\x01\x3c"),
        _write_json(root / "vae" / "config.json", {
            "_class_name": "AutoencoderKL", "_diffusers_version": "0.30.0",
            "block_out_channels": [128, 256, 512, 512], "in_channels": 3,
            "latent_channels": 4, "out_channels": 3, "sample_size": 1024,
            "scaling_factor": 0.13025, "force_upcast": True,
        }),
        make_safetensors(root / "vae" / "diffusion_pytorch_model.safetensors", {
            "encoder.down_blocks.0.resnets.0.conv1.weight": ("F16", [128, 128, 3, 3]),
            "quant_conv.weight": ("F16", [8, 8, 1, 1]),
            "decoder.conv_in.weight": ("F16", [512, 4, 3, 3]),
        }, fill=b"\x02\x3c"),
    ]
    for folder, width, arch in (("text_encoder", 768, "CLIPTextModel"),
                                ("text_encoder_2", 1280, "CLIPTextModelWithProjection")):
        files.append(_write_json(root / folder / "config.json", {
            "architectures": [arch], "model_type": "clip_text_model", "hidden_size": width,
            "num_hidden_layers": 1, "projection_dim": width, "torch_dtype": "float16",
        }))
        files.append(make_safetensors(root / folder / "model.safetensors", {
            "text_model.encoder.layers.0.self_attn.q_proj.weight": ("F16", [width, width]),
            "text_model.embeddings.token_embedding.weight": ("F16", [64, width]),
        }, fill=bytes([width % 251, 0x3c])))
    for folder in ("tokenizer", "tokenizer_2"):
        for name, text in _CLIP_TOKENIZER.items():
            path = root / folder / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            files.append(path)
    return files


def make_lora_with_sidecars(folder: Path, stem: str = "add_detail") -> list[Path]:
    """A kohya SD1.5 LoRA with the sidecars CivitAI helpers and Stability Matrix leave."""
    lora = make_safetensors(folder / f"{stem}.safetensors", {
        "lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight": ("F16", [4, 320]),
        "lora_unet_down_blocks_0_attentions_0_proj_in.lora_up.weight": ("F16", [320, 4]),
    }, metadata={"ss_base_model_version": "sd_v1"}, fill=b"\x07")
    info = _write_json(folder / f"{stem}.civitai.info", {
        "id": 62833, "modelId": 58390, "name": "v1.0", "baseModel": "SD 1.5",
        "trainedWords": ["detailed"], "files": [{"name": f"{stem}.safetensors"}],
    })
    preview = folder / f"{stem}.preview.png"
    # A real 1x1 PNG: signature, IHDR, IDAT, IEND.
    preview.write_bytes(bytes.fromhex(
        "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
        "1f15c4890000000d49444154789c6360f8cfc0f01f0005000201e221bc33"
        "0000000049454e44ae426082"
    ))
    return [lora, info, preview]
