"""One class vocabulary for every dataset, with the explicit name map between datasets.

Canonical names are Sketchy's (lower case, `_` for spaces, e.g. `car_(sedan)`); the 125 Sketchy
classes come first, then Quick, Draw! classes that Sketchy lacks and that do not overlap one of
its classes (a generic `bird` would fight `songbird`, `owl`, ... so it stays out).
"""
from __future__ import annotations

SKETCHY_CLASSES: tuple[str, ...] = (
    "airplane alarm_clock ant ape apple armor axe banana bat bear bee beetle bell bench bicycle "
    "blimp bread butterfly cabin camel candle cannon car_(sedan) castle cat chair chicken church "
    "couch cow crab crocodilian cup deer dog dolphin door duck elephant eyeglasses fan fish flower "
    "frog geyser giraffe guitar hamburger hammer harp hat hedgehog helicopter hermit_crab horse "
    "hot-air_balloon hotdog hourglass jack-o-lantern jellyfish kangaroo knife lion lizard lobster "
    "motorcycle mouse mushroom owl parrot pear penguin piano pickup_truck pig pineapple pistol pizza "
    "pretzel rabbit raccoon racket ray rhinoceros rifle rocket sailboat saw saxophone scissors "
    "scorpion sea_turtle seagull seal shark sheep shoe skyscraper snail snake songbird spider spoon "
    "squirrel starfish strawberry swan sword table tank teapot teddy_bear tiger tree trumpet turtle "
    "umbrella violin volcano wading_bird wheelchair windmill window wine_bottle zebra"
).split()

# Quick, Draw! classes with real drawings here that Sketchy does not have.
EXTRA_CLASSES: tuple[str, ...] = (
    "bed book boomerang bowtie broom clock cloud cookie crown diamond donut dragon eye flip_flops "
    "hand headphones house house_plant key keyboard moon octopus panda pants rainbow skull "
    "smiley_face snowman the_eiffel_tower the_mona_lisa tractor train "
    # Quick, Draw! classes (simplified strokes here) that the bundled demo gallery's photos need;
    # appended last so that no earlier class index moves.
    "grapes carrot broccoli onion potato light_bulb toilet stethoscope syringe binoculars camera "
    "drums cello basketball soccer_ball bus firetruck whale pliers paintbrush wheel shovel "
    "bandage"
).split()

VOCABULARY: tuple[str, ...] = SKETCHY_CLASSES + EXTRA_CLASSES

# Other datasets' names (after normalise()) -> canonical name. None = known, deliberately unmapped.
NAME_MAP: dict[str, str | None] = {
    "car": "car_(sedan)",
    "hot_air_balloon": "hot-air_balloon",
    "hot_dog": "hotdog",
    "motorbike": "motorcycle",
    "teddy-bear": "teddy_bear",
    "crocodile": "crocodilian",
    "jack_o_lantern": "jack-o-lantern",
    "bird": None,          # generic; Sketchy splits birds into songbird, seagull, owl, ...
    "police_car": None,    # a different drawing from a sedan
}


def normalise(name: str) -> str:
    """Lower case, spaces to underscores: the form every dataset's names are compared in."""
    return name.strip().lower().replace(" ", "_")


def canonical(name: str) -> str | None:
    """Map any dataset's class name to the vocabulary, or None when it has no place there."""
    key = normalise(name)
    if key in NAME_MAP:
        return NAME_MAP[key]
    return key if key in _INDEX else None


def display(name: str) -> str:
    """A class name as people read it: `car_(sedan)` -> `car (sedan)`."""
    return name.replace("_", " ")


_INDEX = {c: i for i, c in enumerate(VOCABULARY)}


def class_index(name: str) -> int:
    """Position of a canonical class in VOCABULARY; KeyError names the unknown class."""
    try:
        return _INDEX[name]
    except KeyError:
        raise KeyError(f"unknown class {name!r}; not in the project's vocabulary") from None
