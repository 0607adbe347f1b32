"""The augmentation policies training may use, and --augment's values; torch-free, so
that the cards, the configuration checks and `bench list` read them without a runtime.

A policy is stated where its dataset is described: the generated data's in
bench.data.synthetic (`AUGMENT`), each on-disk format's on its class (`Format.augment`),
a card's `augment` key over its format's. `--augment` overrides it (`dataset` takes the
dataset's; `none` turns augmentation off). The policies:

  * `none`: the images as they are;
  * `upright`: anatomy with a side (chest radiographs: the heart is on the left), so no
    flip: a small affine (rotation up to 5 degrees, translation up to 5% of the side,
    scale 0.95-1.05) and intensity jitter (brightness +-0.1 and contrast x(1 +- 0.1), in
    the standardised units the images are in);
  * `any-orientation`: images with no preferred orientation (skin lesions, blood smears,
    pathology tiles): horizontal and vertical flips, a rotation up to 15 degrees, the
    same translation, scale and intensity jitter.

bench.modelling.augment applies them.
"""

from __future__ import annotations

from dataclasses import dataclass

#: --augment's value that takes the dataset's own policy
DATASET = "dataset"


@dataclass(frozen=True)
class Policy:
    name: str
    flips: bool = False  # horizontal and vertical flips, each with probability 1/2
    degrees: float = 0.0  # rotation drawn uniformly in [-degrees, degrees]
    translate: float = 0.0  # shift in each axis, up to this fraction of the side
    scale: tuple[float, float] = (1.0, 1.0)
    brightness: float = 0.0  # additive shift, up to this many standard deviations
    contrast: float = 0.0  # about each image's mean, by a factor 1 +- contrast

    @property
    def active(self) -> bool:
        return self != Policy(self.name)

    def describe(self) -> str:
        if not self.active:
            return "none"
        parts = (["horizontal and vertical flips"] if self.flips else ["no flips"]) + [
            f"rotation +-{self.degrees:g} deg, translation +-{self.translate:g}, scale "
            f"{self.scale[0]:g}-{self.scale[1]:g}, brightness +-{self.brightness:g}, contrast "
            f"x(1+-{self.contrast:g})"]
        return f"{self.name}: " + "; ".join(parts)


_JITTER = dict(translate=0.05, scale=(0.95, 1.05), brightness=0.1, contrast=0.1)
POLICIES = {
    "none": Policy("none"),
    "upright": Policy("upright", degrees=5.0, **_JITTER),
    "any-orientation": Policy("any-orientation", flips=True, degrees=15.0, **_JITTER),
}
#: what --augment takes
CHOICES = (DATASET, *POLICIES)


def check(option: str) -> None:
    """--augment's value, before anything trains: a one-line ValueError."""
    if option not in CHOICES:
        raise ValueError(f"--augment {option!r}: unknown; choose from {', '.join(CHOICES)}")


def resolve(option: str, dataset_policy: str) -> str:
    """The policy a run trains with: --augment's, or the dataset's for `dataset`."""
    check(option)
    name = dataset_policy if option == DATASET else option
    if name not in POLICIES:
        raise ValueError(f"augmentation policy {name!r}: unknown; known: {', '.join(POLICIES)}")
    return name


