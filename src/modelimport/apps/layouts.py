"""Where each app expects each model type: one table per app kind, as data.

Each table maps a library `model_type` to the folders (relative to the app's folder) that
the app reads for it, newest name first. The first one that already exists in a target is
used, so an older install that only has the legacy name still gets its links; a fresh
install gets the current name.

Checked against the apps' own sources:
- ComfyUI `folder_paths.py`: checkpoints, loras, vae, text_encoders (+ legacy clip),
  diffusion_models (+ legacy unet), clip_vision, style_models, embeddings, diffusers,
  vae_approx, controlnet (+ t2i_adapter), gligen, upscale_models, hypernetworks,
  photomaker; `ipadapter` is the folder of the ComfyUI_IPAdapter_plus nodes.
- AUTOMATIC1111 / Forge (`modules/paths_internal.py`, `modules_forge/shared.py`):
  models/Stable-diffusion (checkpoints; Forge also loads Flux/SD3 diffusion models there),
  models/Lora, models/VAE, embeddings/ (beside models/, not in it), models/ESRGAN,
  models/ControlNet, models/hypernetworks, models/text_encoder (Forge).
- LM Studio: `<models dir>/<publisher>/<repo>/<file>.gguf`, every file of a split set and
  its mmproj in the same folder (see `lmstudio_folder`); only GGUF files.
- Stability Matrix (LykosAI/StabilityMatrix): its shared `Models/` folder in its data folder
  (`SettingsManager.ModelsDirectory` = `<data>/Models`), one subfolder per `SharedFolderType`
  named exactly as the enum member (`StabilityMatrix.Core/Models/SharedFolderType.cs`, named by
  `EnumAttributes.GetStringValue`: no member carries a StringValue). It migrates the legacy
  names (`SharedFolders.cs`: CLIP, Unet, TextualInversion) itself, so only the current ones.
- SwarmUI (mcmonkeyprojects/SwarmUI): its `Models/` folder (`Paths.ModelRoot`) in its install
  folder; the first of each default in `src/Core/Settings.cs` (SDModelFolder Stable-Diffusion,
  SDLoraFolder Lora, SDVAEFolder VAE, SDEmbeddingFolder Embeddings, SDControlNetsFolder
  controlnet, SDClipFolder text_encoders;clip, SDClipVisionFolder clip_vision); `src/Core/
  Program.cs` adds diffusion_models (+ unet) to its models and creates upscale_models;
  hypernetworks, gligen, ipadapter, style_models are the folders it hands to its ComfyUI
  backend (`ComfyUISelfStartBackend.cs`).
- folder: no table; the user's `--map TYPE=SUBDIR` is the whole layout.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from modelimport.probe.tables import MODEL_TYPES

KINDS = ("comfyui", "a1111", "stabilitymatrix", "swarmui", "lmstudio", "folder")

COMFYUI: dict[str, tuple[str, ...]] = {
    "checkpoint": ("models/checkpoints",),
    "diffusion_model": ("models/diffusion_models", "models/unet"),
    "lora": ("models/loras",),
    "vae": ("models/vae",),
    "vae_approx": ("models/vae_approx",),
    "text_encoder": ("models/text_encoders", "models/clip"),
    "clip_vision": ("models/clip_vision",),
    "controlnet": ("models/controlnet",),
    "t2i_adapter": ("models/t2i_adapter", "models/controlnet"),
    "style_model": ("models/style_models",),
    "embedding": ("models/embeddings",),
    "upscaler": ("models/upscale_models",),
    "hypernetwork": ("models/hypernetworks",),
    "gligen": ("models/gligen",),
    "photomaker": ("models/photomaker",),
    "ipadapter": ("models/ipadapter",),
    # A diffusers pipeline folder is read as a whole (linked as one directory).
    "diffusers": ("models/diffusers",),
}

A1111: dict[str, tuple[str, ...]] = {
    "checkpoint": ("models/Stable-diffusion",),
    "diffusion_model": ("models/Stable-diffusion",),
    "lora": ("models/Lora",),
    "vae": ("models/VAE",),
    "vae_approx": ("models/VAE-approx",),
    "text_encoder": ("models/text_encoder",),
    "controlnet": ("models/ControlNet",),
    "t2i_adapter": ("models/ControlNet",),
    "embedding": ("embeddings",),
    "upscaler": ("models/ESRGAN",),
    "hypernetwork": ("models/hypernetworks",),
}

# From StabilityMatrix.Core/Models/SharedFolderType.cs (folder = enum member name).
STABILITY_MATRIX: dict[str, tuple[str, ...]] = {
    "checkpoint": ("Models/StableDiffusion",),
    "diffusion_model": ("Models/DiffusionModels",),
    "lora": ("Models/Lora",),
    "vae": ("Models/VAE",),
    "vae_approx": ("Models/ApproxVAE",),
    "text_encoder": ("Models/TextEncoders",),
    "clip_vision": ("Models/ClipVision",),
    "controlnet": ("Models/ControlNet",),
    "t2i_adapter": ("Models/T2IAdapter",),
    "style_model": ("Models/StyleModels",),
    "embedding": ("Models/Embeddings",),
    # ESRGAN, RealESRGAN and SwinIR all feed ComfyUI's upscale_models; ESRGAN is the one
    # every package (A1111's models/ESRGAN too) reads.
    "upscaler": ("Models/ESRGAN",),
    "hypernetwork": ("Models/Hypernetwork",),
    "gligen": ("Models/GLIGEN",),
    "ipadapter": ("Models/IpAdapter",),
    "diffusers": ("Models/Diffusers",),
}

# From SwarmUI src/Core/Settings.cs (PathsData defaults), src/Core/Program.cs and
# src/BuiltinExtensions/ComfyUIBackend/ComfyUISelfStartBackend.cs.
SWARMUI: dict[str, tuple[str, ...]] = {
    "checkpoint": ("Models/Stable-Diffusion",),
    # GGUF and other backbone-only models must be in diffusion_models, not Stable-Diffusion.
    "diffusion_model": ("Models/diffusion_models", "Models/unet"),
    "lora": ("Models/Lora",),
    "vae": ("Models/VAE",),
    "text_encoder": ("Models/text_encoders", "Models/clip"),
    "clip_vision": ("Models/clip_vision",),
    "controlnet": ("Models/controlnet",),
    "t2i_adapter": ("Models/controlnet",),
    "style_model": ("Models/style_models",),
    "embedding": ("Models/Embeddings",),
    "upscaler": ("Models/upscale_models",),
    "hypernetwork": ("Models/hypernetworks",),
    "gligen": ("Models/gligen",),
    "ipadapter": ("Models/ipadapter",),
}

TABLES: dict[str, dict[str, tuple[str, ...]]] = {
    "comfyui": COMFYUI,
    "a1111": A1111,
    "stabilitymatrix": STABILITY_MATRIX,
    "swarmui": SWARMUI,
}

# The folder an app's FOLDER must hold for its table to land where the app reads: the
# install folder's models/ (ComfyUI, A1111), the data or install folder's Models/.
MODELS_FOLDER = {"comfyui": "models", "a1111": "models", "stabilitymatrix": "Models",
                 "swarmui": "Models"}

# Bundle kinds (issue 9: whole folders) that an app reads as one folder, and the table key
# of the folder that holds them. Other bundles are linked by their model type.
BUNDLE_FOLDER_KEYS = {"diffusers": "diffusers"}

# LM Studio reads these as model files; everything else in a GGUF model is left out.
LMSTUDIO_EXTENSIONS = (".gguf",)
LOCAL_PUBLISHER = "local"


def folder_for(kind: str, model_type: str, app_path: Path, mapping: dict[str, str]) -> str | None:
    """The folder (relative, posix) for `model_type` in this app, or None if it has none.
    A user's mapping wins over the kind's table."""
    if model_type in mapping:
        return mapping[model_type]
    candidates = TABLES.get(kind, {}).get(model_type)
    if not candidates:
        return None
    for candidate in candidates:
        if (app_path / candidate).is_dir():
            return candidate
    return candidates[0]


def is_relative_subdir(text: str) -> bool:
    """A user-given SUBDIR stays inside the app's folder: relative, no `..`, not empty."""
    path = PurePosixPath(text.replace("\\", "/"))
    return bool(text.strip()) and not path.is_absolute() and ".." not in path.parts


def model_types_named(name: str) -> tuple[str, ...]:
    """The model types a person may mean by `name`: a type itself (`lora`), its plural
    (`loras`), or the folder an app keeps it in (ComfyUI's `loras`, `unet`, `clip`; A1111's
    `Lora`, `Stable-diffusion`, `ESRGAN`). Case is ignored; () when nothing matches. A folder
    shared by several types (`Stable-diffusion`) names them all."""
    word = name.strip().lower().rstrip("/")
    if not word:
        return ()
    found = [t for t in sorted(MODEL_TYPES) if word in (t, t + "s")]
    for table in TABLES.values():
        for model_type, folders in table.items():
            names = {model_type, model_type + "s"} | {
                PurePosixPath(f).name.lower() for f in folders
            }
            if word in names and model_type not in found:
                found.append(model_type)
    return tuple(found)
