"""The SynthFaces labels: every attribute the renderer draws (``stylelens.data.synthfaces``)
and the attribute network reads (``stylelens.networks.attributes``), with its range or classes.

Its own module so that the network does not depend on the renderer, nor the renderer on the
network: both depend on this vocabulary.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

HAIR_STYLES = ("short", "long", "bald", "curly", "bun")
GLASSES = ("none", "round", "square")
BEARDS = ("none", "stubble", "full")


@dataclass(frozen=True)
class Attribute:
    """One label: continuous values lie in ``[low, high]``; categorical ones index ``classes``."""

    name: str
    kind: Literal["continuous", "categorical"]
    description: str
    low: float = 0.0
    high: float = 1.0
    classes: tuple[str, ...] = ()


ATTRIBUTES: tuple[Attribute, ...] = (
    Attribute("yaw", "continuous", "head turn in degrees; + turns toward image right", -30, 30),
    Attribute("pitch", "continuous", "head nod in degrees; + looks down", -15, 15),
    Attribute("roll", "continuous", "head tilt in degrees; + clockwise", -15, 15),
    Attribute("smile", "continuous", "mouth-corner curvature; -1 frown, +1 broad smile", -1, 1),
    Attribute("mouth_open", "continuous", "lip gap; 0 closed, 1 wide open (teeth show)"),
    Attribute("eye_open", "continuous", "eyelid opening; 0 shut, 1 wide open"),
    Attribute("age", "continuous", "0 young; wrinkles from 0.3, greying hair and brows from 0.4"),
    Attribute("skin_tone", "continuous", "0 lightest to 1 darkest skin"),
    Attribute("hair_lightness", "continuous", "0 black to 1 blond (before greying with age)"),
    Attribute("hair_hue", "continuous", "0 auburn/red to 1 golden"),
    Attribute("face_width", "continuous", "0 narrow to 1 wide face"),
    Attribute("light", "continuous", "key light direction; -1 from image left, +1 from right", -1),
    Attribute("background_hue", "continuous", "background hue; 0 red through 1 violet"),
    Attribute("hair_style", "categorical", "hair style", classes=HAIR_STYLES),
    Attribute("glasses", "categorical", "glasses frames", classes=GLASSES),
    Attribute("beard", "categorical", "facial hair", classes=BEARDS),
)
