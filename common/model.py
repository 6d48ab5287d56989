"""The SAM3 model at three scales, its module groups, its tokenizer, and safetensors checkpoints.

All scales are Hugging Face ``transformers.Sam3Model`` (same module names as the real model):

- ``micro``: tests; a forward in well under a second.
- ``tiny``: the embedded default (6 fusion + 6 decoder layers, presence token, small widths),
  trained by the project on the synthetic worlds (``common.worlds``).
- ``sam3``: the real 840 M model from a local directory (``from_pretrained``) or a safetensors file.

The presence logit is computed **unclamped** (as in Meta's original code, whose clamp result is
discarded): transformers' decoder clamps it to ±10, which passes no gradient outside the range
and would leave a presence retrain on a saturated fine-tune with zero gradient (Post 02 §presence_only).
"""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch
from safetensors.torch import load_file
from transformers import (
    CLIPTextConfig,
    Sam3Config,
    Sam3DETRDecoderConfig,
    Sam3DETREncoderConfig,
    Sam3GeometryEncoderConfig,
    Sam3MaskDecoderConfig,
    Sam3Model,
    Sam3VisionConfig,
    Sam3ViTConfig,
)

SCALES = ("micro", "tiny", "sam3")
UNCLAMPED = float("inf")  # presence-logit clamp bound used for every model the project builds
#: Init scale of the micro/tiny text encoder's word embeddings. The base keeps its text encoder frozen at init (a
#: from-scratch one collapsed every phrase to one in the pilot), so the init is what tells words apart, as a trained
#: CLIP does for SAM3. At CLIP's default (0.02, the size of the position embeddings) every one-word phrase came out at
#: cosine ≈ 0.94 to every other, and a frozen-TE fine-tune could not bind new words (issue #3); at 1.0 the word
#: token's output is distinct per word (mean cosine ≈ 0.2 between watch words).
TEXT_TOKEN_INIT_STD = 1.0


# --------------------------------------------------------------------------- configs
@dataclass(frozen=True)
class TinySpec:
    """Widths of a small Sam3Model; every field maps onto one Sam3Config sub-config field."""

    image_size: int
    patch_size: int
    vit_width: int
    vit_layers: int
    vit_heads: int
    window: int
    hidden: int
    heads: int
    fusion_layers: int
    decoder_layers: int
    queries: int
    text_width: int
    text_layers: int
    max_text_len: int
    #: the vision neck's FPN levels as multiples of the ViT token grid; the last is unused (SAM3 drops it), the one
    #: before it feeds the fusion encoder, the first sets the mask grid. SAM3: (4, 2, 1, 0.5).
    neck_scales: tuple[float, ...] = (4.0, 2.0, 1.0, 0.5)

    @property
    def grid(self) -> int:
        """The ViT's token grid (tokens per side)."""
        return self.image_size // self.patch_size

    @property
    def fusion_grid(self) -> int:
        """Tokens per side of the fusion encoder's image stream (the neck level before the dropped last one)."""
        return int(self.grid * self.neck_scales[-2])

    @property
    def mask_grid(self) -> int:
        """Side of the predicted masks (the neck's finest level)."""
        return int(self.grid * self.neck_scales[0])


SPECS: dict[str, TinySpec] = {
    "micro": TinySpec(image_size=56, patch_size=14, vit_width=32, vit_layers=2, vit_heads=2, window=2, hidden=32,
                      heads=2, fusion_layers=2, decoder_layers=2, queries=4, text_width=32, text_layers=1,
                      max_text_len=8),
    # Base v4 (issue #15, results/diagnostics/learnability.md): a 7-px patch in a 128-d token (1.15 values per dim; SAM3
    # holds a 14-px patch in 1,024 dims, 0.6 per dim) on a 16² ViT grid, so sub-patch watch parts (hands, rings,
    # crown) survive into the tokens. The neck's levels are 2×, 1×, ½× that grid: masks stay 32², and the fusion
    # encoder and decoder keep an 8² image stream, so only the ViT pays for the finer grid (~1.2× per step).
    "tiny": TinySpec(image_size=112, patch_size=7, vit_width=128, vit_layers=4, vit_heads=4, window=8, hidden=128,
                     heads=4, fusion_layers=6, decoder_layers=6, queries=10, text_width=64, text_layers=2,
                     max_text_len=8, neck_scales=(2.0, 1.0, 0.5, 0.5)),
}
#: The tiny spec of base v3 (ViT 96-d at patch 14, an 8² grid): kept for the learnability comparison (issue #15).
TINY_V3 = TinySpec(image_size=112, patch_size=14, vit_width=96, vit_layers=4, vit_heads=4, window=4, hidden=128,
                   heads=4, fusion_layers=6, decoder_layers=6, queries=10, text_width=64, text_layers=2, max_text_len=8)


def build_config(spec: TinySpec, vocab_size: int) -> Sam3Config:
    """A Sam3Config with the widths of ``spec`` and a word-level text vocabulary of ``vocab_size``."""
    g = spec.grid
    vit = Sam3ViTConfig(
        hidden_size=spec.vit_width, intermediate_size=4 * spec.vit_width, num_hidden_layers=spec.vit_layers,
        num_attention_heads=spec.vit_heads, image_size=spec.image_size, pretrain_image_size=spec.image_size,
        patch_size=spec.patch_size, window_size=spec.window,
        global_attn_indexes=list(range(1, spec.vit_layers, 2)),
    )
    sizes = [[int(g * s)] * 2 for s in spec.neck_scales[:-1]]
    vision = Sam3VisionConfig(backbone_config=vit, fpn_hidden_size=spec.hidden, scale_factors=list(spec.neck_scales),
                              backbone_feature_sizes=sizes)
    text = CLIPTextConfig(
        vocab_size=vocab_size, hidden_size=spec.text_width, intermediate_size=4 * spec.text_width,
        projection_dim=spec.text_width, num_hidden_layers=spec.text_layers, num_attention_heads=4,
        max_position_embeddings=spec.max_text_len, hidden_act="gelu", pad_token_id=WordTokenizer.PAD,
        bos_token_id=WordTokenizer.BOS, eos_token_id=WordTokenizer.EOS,
    )
    common = dict(hidden_size=spec.hidden, num_attention_heads=spec.heads, intermediate_size=4 * spec.hidden)
    return Sam3Config(
        vision_config=vision,
        text_config=text,
        geometry_encoder_config=Sam3GeometryEncoderConfig(num_layers=1, **common),
        detr_encoder_config=Sam3DETREncoderConfig(num_layers=spec.fusion_layers, dropout=0.0, **common),
        detr_decoder_config=Sam3DETRDecoderConfig(num_layers=spec.decoder_layers, num_queries=spec.queries,
                                                  dropout=0.0, **common),
        mask_decoder_config=Sam3MaskDecoderConfig(hidden_size=spec.hidden, num_attention_heads=spec.heads,
                                                  num_upsampling_stages=3),
    )


def _unclamp(model: Sam3Model) -> Sam3Model:
    model.detr_decoder.clamp_presence_logit_max_val = UNCLAMPED
    return model


def build_model(scale: str, vocab_size: int, seed: int = 0, spec: TinySpec | None = None) -> Sam3Model:
    """A freshly initialised micro or tiny Sam3Model (seeded), or one of ``spec``'s widths; for ``sam3`` use
    :func:`load_sam3`."""
    if spec is None and scale not in SPECS:
        raise ValueError(f"build_model builds {tuple(SPECS)}; scale {scale!r} loads from a checkpoint (load_sam3)")
    torch.manual_seed(seed)
    model = Sam3Model(build_config(spec or SPECS[scale], vocab_size))
    with torch.no_grad():  # a lookup that tells words apart (see TEXT_TOKEN_INIT_STD)
        model.text_encoder.text_model.embeddings.token_embedding.weight.normal_(0.0, TEXT_TOKEN_INIT_STD)
    return _unclamp(model.eval())


def load_sam3(path: str | Path) -> Sam3Model:
    """The real SAM3 from a local ``from_pretrained`` directory (config.json + weights)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(
            f"SAM3 checkpoint not found at {path}. The sam3 scale needs the real model on disk: a directory "
            "with config.json and model.safetensors (e.g. a local copy of facebook/sam3); nothing is downloaded."
        )
    if path.is_file():
        raise ValueError(f"{path} is a file; pass the directory holding config.json and the safetensors weights")
    return _unclamp(Sam3Model.from_pretrained(str(path), local_files_only=True).eval())


def save_random_sam3(directory: str | Path, config: Sam3Config, seed: int = 0) -> Path:
    """A randomly initialised SAM3 directory laid out as the real one (``save_pretrained`` weights + a tokenizer), for
    running the ``sam3`` code path without Meta's weights: tests (a micro config) and the full-size GPU check
    (``Sam3Config()``, 840 M). The tokenizer is word-level over the synthetic worlds' words (the real model's CLIP BPE
    needs its vocabulary files), with the same ``<bos> … <eos>`` framing."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    from common.worlds import vocabulary

    words = WordTokenizer(vocabulary(), 8).words
    if len(words) > config.text_config.vocab_size:
        raise ValueError(f"the worlds' {len(words)} words exceed the text encoder's vocabulary "
                         f"({config.text_config.vocab_size})")
    tk = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Whitespace()
    tk.post_processor = processors.TemplateProcessing(single="<bos> $A <eos>", special_tokens=[("<bos>", 1), ("<eos>", 2)])
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, pad_token="<pad>", unk_token="<unk>", bos_token="<bos>",
                                  eos_token="<eos>")
    directory = Path(directory)
    torch.manual_seed(seed)
    Sam3Model(config).save_pretrained(str(directory))
    tok.save_pretrained(str(directory))
    return directory


def config_hash(obj: object) -> str:
    """Short stable hash of a JSON-able config (dataclasses allowed); keys sorted."""
    if hasattr(obj, "__dataclass_fields__"):
        obj = asdict(obj)  # type: ignore[arg-type]
    blob = json.dumps(obj, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


# --------------------------------------------------------------------------- tokenizer
class WordTokenizer:
    """Word-level tokenizer for the tiny/micro text encoder: ``<pad>=0, <bos>=1, <eos>=2, <unk>=3``.

    The vocabulary is the sorted set of words in the worlds' phrases, so it is fixed by the code.
    Phrases longer than ``max_len - 2`` words raise (a silent truncation would change a concept).
    """

    PAD, BOS, EOS, UNK = 0, 1, 2, 3
    SPECIAL = ("<pad>", "<bos>", "<eos>", "<unk>")

    def __init__(self, words: Iterable[str], max_len: int):
        self.words = list(self.SPECIAL) + sorted(set(words) - set(self.SPECIAL))
        self.index = {w: i for i, w in enumerate(self.words)}
        self.max_len = max_len

    def __len__(self) -> int:
        return len(self.words)

    def __call__(self, phrases: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Token ids and attention mask, both ``[len(phrases), max_len]`` int64."""
        ids = torch.full((len(phrases), self.max_len), self.PAD, dtype=torch.long)
        mask = torch.zeros((len(phrases), self.max_len), dtype=torch.long)
        for i, p in enumerate(phrases):
            toks = [self.BOS] + [self.index.get(w, self.UNK) for w in p.lower().split()] + [self.EOS]
            if len(toks) > self.max_len:
                raise ValueError(f"phrase {p!r} has {len(toks) - 2} words; the tokenizer holds {self.max_len - 2}")
            ids[i, : len(toks)] = torch.tensor(toks)
            mask[i, : len(toks)] = 1
        return ids, mask


class PhraseTokenizer:
    """A Hugging Face tokenizer (the real SAM3's CLIP tokenizer, from its directory) behind :class:`WordTokenizer`'s
    interface: phrases → ids and attention mask ``[len(phrases), max_len]``, padded to the text encoder's context."""

    def __init__(self, tokenizer, max_len: int):
        self.tok, self.max_len = tokenizer, max_len

    def __len__(self) -> int:
        return len(self.tok)

    def __call__(self, phrases: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        enc = self.tok(list(phrases), padding="max_length", max_length=self.max_len, truncation=True, return_tensors="pt")
        return enc["input_ids"].long(), enc["attention_mask"].long()


# --------------------------------------------------------------------------- pixels
def to_pixels(images: Sequence[np.ndarray], size: int) -> torch.Tensor:
    """uint8 HxWx3 images -> float ``[B,3,size,size]``: resize (bilinear), scale to [0,1], normalise mean=std=0.5.

    Done in the project because the transformers image processor needs torchvision (no CPU build here).
    """
    batch = []
    for im in images:
        if im.ndim != 3 or im.shape[2] != 3 or im.dtype != np.uint8:
            raise ValueError(f"expected uint8 HxWx3 image, got dtype {im.dtype} shape {im.shape}")
        t = torch.from_numpy(np.array(im, copy=True)).permute(2, 0, 1).float().div_(255.0)
        if t.shape[1] != size or t.shape[2] != size:
            t = torch.nn.functional.interpolate(t[None], size=(size, size), mode="bilinear", align_corners=False,
                                                antialias=True)[0]
        batch.append(t)
    return (torch.stack(batch) - 0.5) / 0.5


# --------------------------------------------------------------------------- devices
def pick_device(spec: str = "auto") -> torch.device:
    """The device a command runs on: ``auto`` = this process's GPU (``cuda:$LOCAL_RANK`` under torchrun) when CUDA is
    available, else the CPU; or an explicit ``cpu``, ``cuda`` (this process's GPU) or ``cuda:N``. Asking for CUDA
    without it is an error."""
    import os

    local = f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
    if spec == "auto":
        spec = local if torch.cuda.is_available() else "cpu"
    elif spec == "cuda":  # under torchrun, each process its own GPU
        spec = local
    try:
        dev = torch.device(spec)
    except RuntimeError as e:
        raise ValueError(f"device {spec!r}: expected auto, cpu, cuda or cuda:N") from e
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"device {spec!r}: expected auto, cpu, cuda or cuda:N")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {spec!r}: CUDA is not available on this machine (use cpu or auto)")
        if (dev.index or 0) >= torch.cuda.device_count():
            raise ValueError(f"device {spec!r}: this machine has {torch.cuda.device_count()} GPU(s)")
    return dev


#: The environment variable naming the device every model the project builds is placed on (``--device`` of the CLI
#: sets it; unset = the CPU, where every published number here was made).
DEVICE_ENV = "SAM3_REPRO_DEVICE"


def run_device() -> torch.device:
    """The device models are built on: :func:`pick_device` of ``$SAM3_REPRO_DEVICE`` (default ``cpu``)."""
    import os

    return pick_device(os.environ.get(DEVICE_ENV, "cpu"))


def device_of(model: torch.nn.Module) -> torch.device:
    """The device of a model's parameters (the CPU for a model without any)."""
    p = next(model.parameters(), None)
    return torch.device("cpu") if p is None else p.device


# --------------------------------------------------------------------------- module groups
#: The posts' four modules (Post 01 §2 swap matrix). Every parameter belongs to exactly one.
MODULES = {
    "T": ("text_encoder.", "text_projection."),
    "V": ("vision_encoder.",),
    "F": ("detr_encoder.",),
    "D": ("detr_decoder.", "mask_decoder.", "dot_product_scoring.", "geometry_encoder."),
}

#: The finer Fig 1.1 groups, as (group, regex) in first-match order; together they partition the model.
FINE_GROUPS: tuple[tuple[str, str], ...] = (
    ("vision_trunk", r"^vision_encoder\.backbone\."),
    ("vision_neck", r"^vision_encoder\.neck\."),
    ("text_encoder", r"^text_encoder\."),
    ("text_resizer", r"^text_projection\."),
    ("fusion_encoder", r"^detr_encoder\."),
    ("presence_head", r"^detr_decoder\.presence_(token|head|layer_norm)\."),
    ("decoder_self_attn", r"^detr_decoder\.layers\.\d+\.self_attn"),
    ("decoder_ca_text", r"^detr_decoder\.layers\.\d+\.text_cross_attn"),
    ("decoder_cross_attn_image", r"^detr_decoder\.layers\.\d+\.vision_cross_attn"),
    ("transformer_decoder", r"^detr_decoder\."),
    ("geometry_encoder", r"^geometry_encoder\."),
    ("cross_attend_prompt", r"^mask_decoder\.prompt_cross_attn"),
    ("mask_predictor", r"^mask_decoder\."),
    ("dot_prod_scoring", r"^dot_product_scoring\."),
)

#: The presence gate of Post 02 §presence_only: token + LayerNorm + 3 linears (9 tensors).
PRESENCE_PREFIXES = ("detr_decoder.presence_token.", "detr_decoder.presence_layer_norm.", "detr_decoder.presence_head.")


def module_of(name: str) -> str:
    """The Post 01 module letter (T/V/F/D) of a parameter name."""
    for letter, prefixes in MODULES.items():
        if name.startswith(prefixes):
            return letter
    raise KeyError(f"parameter {name!r} belongs to no module group")


def hybrid_state(donor: dict[str, torch.Tensor], rest: dict[str, torch.Tensor], modules: Iterable[str]
                 ) -> dict[str, torch.Tensor]:
    """A state dict taking the tensors of the named modules (letters of :data:`MODULES`: ``"VF"`` = vision + fusion)
    from ``donor`` and every other tensor from ``rest`` (Post 01 §2's swap matrix: cell C = T from the fine-tune,
    the rest from base). Both states must hold the same tensor names and shapes."""
    modules = set(modules)
    unknown = modules - set(MODULES)
    if unknown:
        raise ValueError(f"unknown module(s) {sorted(unknown)}; expected letters of {sorted(MODULES)}")
    if set(donor) != set(rest):
        odd = sorted(set(donor) ^ set(rest))
        raise KeyError(f"the two states differ in tensor names: {odd[:5]}{' ...' if len(odd) > 5 else ''}")
    out = {}
    for k in rest:
        if donor[k].shape != rest[k].shape:
            raise ValueError(f"tensor {k!r}: shape {tuple(donor[k].shape)} vs {tuple(rest[k].shape)}")
        out[k] = donor[k] if module_of(k) in modules else rest[k]
    return out


def fine_group_of(name: str) -> str:
    """The Fig 1.1 group of a parameter name."""
    for group, pattern in FINE_GROUPS:
        if re.match(pattern, name):
            return group
    raise KeyError(f"parameter {name!r} belongs to no fine group")


def fusion_layer_prefixes(layers: Iterable[int]) -> tuple[str, ...]:
    """Parameter-name prefixes of fusion layers F[i] (``detr_encoder.layers.i.``)."""
    return tuple(f"detr_encoder.layers.{i}." for i in layers)


#: HF name fragment -> Meta's original name fragment, applied in order (ARCHITECTURE.md name map).
_TO_ORIGINAL: tuple[tuple[str, str], ...] = (
    (r"^detr_encoder\.layers\.", "transformer.encoder.layers."),
    (r"^detr_decoder\.presence_layer_norm", "transformer.decoder.presence_token_out_norm"),
    (r"^detr_decoder\.presence_head\.layer(\d)", lambda m: f"transformer.decoder.presence_token_head.layers.{int(m.group(1)) - 1}"),  # type: ignore[list-item]
    (r"^detr_decoder\.presence_token", "transformer.decoder.presence_token"),
    (r"^detr_decoder\.layers\.", "transformer.decoder.layers."),
    (r"^detr_decoder\.", "transformer.decoder."),
    (r"\.text_cross_attn\.", ".ca_text."),
    (r"\.vision_cross_attn\.", ".cross_attn."),
    (r"^dot_product_scoring\.query_proj", "dot_prod_scoring.hs_proj"),
    (r"^dot_product_scoring\.text_proj", "dot_prod_scoring.prompt_proj"),
    (r"^dot_product_scoring\.text_mlp\.", "dot_prod_scoring.prompt_mlp."),
    (r"^vision_encoder\.backbone\.layers\.(\d+)\.attention\.[qkv]_proj", lambda m: f"backbone.vision_backbone.trunk.blocks.{m.group(1)}.attn.qkv"),  # type: ignore[list-item]
    (r"^vision_encoder\.backbone\.layers\.", "backbone.vision_backbone.trunk.blocks."),
)


def original_name(hf_name: str) -> str:
    """Translate an HF Sam3Model parameter name to the name the posts (Meta's code) use.

    Meta fuses q/k/v into one ``attn.qkv``; HF splits them, so all three map to the same name.
    """
    out = hf_name
    for pattern, repl in _TO_ORIGINAL:
        out = re.sub(pattern, repl, out)
    return out


def count_params(model: torch.nn.Module, names: Iterable[str] | None = None) -> int:
    """Number of scalar parameters (of ``names`` if given)."""
    params = dict(model.named_parameters())
    return sum(params[n].numel() for n in (params if names is None else names))


# --------------------------------------------------------------------------- checkpoints
def save_checkpoint(state: dict[str, torch.Tensor], path: str | Path, metadata: dict[str, str] | None = None,
                    dtype: torch.dtype | None = None) -> Path:
    """Save a state dict as safetensors atomically (optionally cast floating tensors to ``dtype``)."""
    from common.io import atomic_write_bytes
    from safetensors.torch import save

    out = {}
    for k, v in state.items():
        v = v.detach().cpu()
        if dtype is not None and v.is_floating_point():
            v = v.to(dtype)
        out[k] = v.contiguous()
    return atomic_write_bytes(path, save(out, metadata=metadata))


def load_state(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a safetensors state dict, with a clear error if the file is missing or unreadable."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"missing checkpoint: {path}")
    try:
        state = load_file(str(path))
    except Exception as e:  # safetensors raises its own error types
        raise ValueError(f"unreadable safetensors checkpoint {path}: {e}") from e
    bad = [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise ValueError(f"checkpoint {path}: tensor(s) with NaN/inf values {bad[:5]}{' ...' if len(bad) > 5 else ''}")
    return state


def load_into(model: torch.nn.Module, state: dict[str, torch.Tensor], source: str = "checkpoint",
              strict: bool = True) -> None:
    """Copy ``state`` into ``model``; a missing/unexpected key or a shape mismatch names the tensor."""
    own = model.state_dict()
    unexpected = sorted(set(state) - set(own))
    missing = sorted(set(own) - set(state)) if strict else []
    if unexpected:
        raise KeyError(f"{source}: unexpected tensor(s) {unexpected[:5]}{' ...' if len(unexpected) > 5 else ''}")
    if missing:
        raise KeyError(f"{source}: missing tensor(s) {missing[:5]}{' ...' if len(missing) > 5 else ''}")
    for k, v in state.items():
        if own[k].shape != v.shape:
            raise ValueError(f"{source}: tensor {k!r} has shape {tuple(v.shape)}, model expects {tuple(own[k].shape)}")
    with torch.no_grad():
        for k, v in state.items():
            own[k].copy_(v.to(own[k].dtype))


def save_model(model: torch.nn.Module, path: str | Path, dtype: torch.dtype | None = None,
               metadata: dict[str, str] | None = None) -> Path:
    """Save a model's full state dict (safetensors)."""
    return save_checkpoint(model.state_dict(), path, metadata=metadata, dtype=dtype)
