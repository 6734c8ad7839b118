"""What each supported dataset is: classes, palette, label splits, default locations and evaluation mode."""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Callable, Optional

from datasets import animals
from datasets.draws import DrawRecord
from datasets.errors import DataError
from datasets.palette import voc_palette


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    class_names: tuple[str, ...]
    splits: tuple[str, ...]          # label splits, lowest label count first
    default_root: str               # relative paths are relative to the repository root (datasets.REPO_ROOT)
    default_split_dir: str          # "" for a generated dataset: each draw folder holds its own split lists
    # The one home of these two facts: the config's dataset layer takes them from here (benchmark.train.config).
    crop_size: int
    eval_mode: str                  # "whole" | "center_crop" | "sliding"
    description: str = ""
    # Generated datasets make a draw available on first use (idempotent) and check its digest:
    # (root, generator seed, draw design, custom data accepted) -> (draw folder, DrawRecord).
    # Real datasets are prepared by hand and have one draw: their split lists.
    ensure_draw: Optional[Callable[[Path, int, str, bool], tuple[Path, DrawRecord]]] = None

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def palette(self) -> list[int]:
        return voc_palette()


PASCAL_CLASSES = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)
CITYSCAPES_CLASSES = (
    "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign", "vegetation",
    "terrain", "sky", "person", "rider", "car", "truck", "bus", "train", "motorcycle", "bicycle",
)
# UniMatch's COCO: mask value 0 + the 80 COCO "thing" categories in category-id order (util/classes.py, first 81
# entries). UniMatch names entry 0 "void", but it is a trained class (ignore is 255), i.e. background.
COCO_CLASSES = (
    "background", "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat",
    "traffic light", "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse", "sheep",
    "cow", "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella", "handbag", "tie", "suitcase", "frisbee",
    "skis", "snowboard", "sports ball", "kite", "baseball bat", "baseball glove", "skateboard", "surfboard",
    "tennis racket", "bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple", "sandwich",
    "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch", "potted plant", "bed",
    "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard", "cell phone", "microwave", "oven",
    "toaster", "sink", "refrigerator", "book", "clock", "vase", "scissors", "teddy bear", "hair drier",
    "toothbrush",
)

_SPECS: dict[str, DatasetSpec] = {}


def register_spec(spec: DatasetSpec) -> DatasetSpec:
    if spec.name in _SPECS:
        raise DataError(f"dataset {spec.name!r} is registered twice")
    _SPECS[spec.name] = spec
    return spec


register_spec(DatasetSpec(
    name="pascal", class_names=PASCAL_CLASSES,
    splits=("92", "183", "366", "732", "1464", "1_16", "1_8", "1_4", "u2pl_1_16", "u2pl_1_8", "u2pl_1_4"),
    default_root="data/VOC2012", default_split_dir="data/splits/pascal", crop_size=321, eval_mode="whole",
    description="Pascal VOC 2012 (classic 1464 high-quality labels; blended with SBD for 1_16..1_4)",
))
register_spec(DatasetSpec(
    name="cityscapes", class_names=CITYSCAPES_CLASSES, splits=("1_30", "1_16", "1_8", "1_4", "1_2"),
    default_root="data/cityscapes", default_split_dir="data/splits/cityscapes", crop_size=801,
    eval_mode="sliding",   # crop-size windows, stride int(2/3 crop), summed softmax
    description="Cityscapes fine annotations, 19 train ids",
))
# UniMatch evaluates COCO like Pascal, on the whole image ("original"); only Cityscapes uses sliding windows.
register_spec(DatasetSpec(
    name="coco", class_names=COCO_CLASSES, splits=("1_512", "1_256", "1_128", "1_64", "1_32"),
    default_root="data/coco", default_split_dir="data/splits/coco", crop_size=513, eval_mode="whole",
    description="COCO 2017, 80 thing classes + background (UniMatch's masks); unlabeled = rest of train2017",
))

# The embedded dataset, one entry per generator variant; its facts are the generator's (datasets/animals.py).
for _name, _variant in animals.DATASET_VARIANTS.items():
    _params = animals.VARIANTS[_variant]
    register_spec(DatasetSpec(
        name=_name, class_names=animals.CLASS_NAMES, splits=tuple(split for split, _ in animals.LABEL_SPLITS),
        default_root=f"data/{_name}", default_split_dir="", crop_size=_params.image_size,
        eval_mode="whole", ensure_draw=partial(animals.ensure_draw, variant=_variant),
        description=f"embedded offline composed scenes ({_variant} variant: {_params.image_size}px, "
                    f"{_params.num_train} train / {_params.num_val} val); generated by datasets.animals",
    ))


def get_spec(name: str) -> DatasetSpec:
    if name not in _SPECS:
        raise DataError(f"unknown dataset {name!r}; known datasets: {', '.join(sorted(_SPECS))}")
    return _SPECS[name]


def all_specs() -> dict[str, DatasetSpec]:
    return dict(_SPECS)

