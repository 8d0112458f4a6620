"""One class vocabulary for every dataset, with the explicit name map between datasets.

Canonical names are Sketchy's (lower case, `_` for spaces, e.g. `car_(sedan)`); the 125 Sketchy
classes come first, then every other class with real drawings here (Quick, Draw!, TU-Berlin).
A generic `bird` sits beside Sketchy's `songbird`, `owl`, ...: visitors draw "a bird".
"""
from __future__ import annotations

from pathlib import Path

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

# Every other class with real drawings here (Quick, Draw!'s 344 simplified classes, TU-Berlin's 40),
# so that the sketch classifier answers for whatever a visitor draws; appended so no index moves.
MORE_CLASSES: tuple[str, ...] = (
    "the_great_wall_of_china aircraft_carrier ambulance angel anvil arm asparagus backpack barn "
    "baseball_bat baseball basket bathtub beach beard belt bird birthday_cake blackberry blueberry "
    "bottlecap bracelet brain bridge bucket bulldozer bush cactus cake calculator calendar campfire "
    "canoe ceiling_fan cell_phone chandelier clarinet coffee_cup compass computer cooler crayon "
    "cruise_ship dishwasher diving_board dresser drill dumbbell ear elbow envelope eraser face "
    "feather fence finger fire_hydrant fireplace flamingo flashlight floor_lamp flying_saucer foot "
    "fork frying_pan garden_hose garden goatee golf_club grass helmet hockey_puck hockey_stick "
    "hospital hot_tub hurricane ice_cream jacket jail knee ladder lantern laptop leaf leg lighter "
    "lighthouse lightning lipstick lollipop mailbox map marker matches megaphone mermaid microphone "
    "microwave monkey mosquito mountain moustache mouth mug nail necklace nose ocean oven paint_can "
    "palm_tree paper_clip parachute passport peanut peas pencil picture_frame pillow police_car pond "
    "pool popsicle postcard power_outlet purse radio rain rake remote_control river roller_coaster "
    "rollerskates sandwich school_bus screwdriver see_saw shorts sink skateboard sleeping_bag "
    "snorkel snowflake sock speedboat spreadsheet stairs star steak stereo stitches stop_sign stove "
    "streetlight string_bean submarine suitcase sun sweater swing_set t-shirt telephone television "
    "tent toaster toe tooth toothbrush toothpaste tornado traffic_light trombone truck underwear van "
    "vase washing_machine watermelon waterslide wine_glass wristwatch yoga comb present tomato "
).split()

VOCABULARY: tuple[str, ...] = SKETCHY_CLASSES + EXTRA_CLASSES + MORE_CLASSES

# Other datasets' names (after normalise()) -> canonical name. None = known, deliberately unmapped.
NAME_MAP: dict[str, str | None] = {
    "car": "car_(sedan)",
    "hot_air_balloon": "hot-air_balloon",
    "hot_dog": "hotdog",
    "motorbike": "motorcycle",
    "teddy-bear": "teddy_bear",
    "crocodile": "crocodilian",
    "jack_o_lantern": "jack-o-lantern",
    "tennis_racquet": "racket",
    "lightbulb": "light_bulb",       # TU-Berlin
    "wine-bottle": "wine_bottle",    # TU-Berlin
    # Quick, Draw!'s abstract shapes and scenes: no photo can show them, and they would only take
    # probability away from objects ("a sun" drawn as a circle).
    **{n: None for n in ("circle", "line", "square", "squiggle", "triangle", "hexagon", "octagon",
                         "animal_migration", "camouflage")},
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


IMAGENET_MAP_FILE = Path(__file__).with_name("imagenet_vocabulary.tsv")


def imagenet_vocabulary() -> list[str | None]:
    """The reviewed ImageNet-1k -> vocabulary map (`imagenet_vocabulary.tsv`): for each of the 1,000
    ImageNet classes, in index order, its vocabulary class or None (nothing people draw fits it)."""
    out: list[str | None] = []
    for line in IMAGENET_MAP_FILE.read_text().splitlines():
        if line.startswith(("#", "index\t")):
            continue
        index, _, kind = line.split("\t")
        if int(index) != len(out):
            raise ValueError(f"{IMAGENET_MAP_FILE.name}: row {index} out of order")
        out.append(canonical(kind) if kind else None)
        if kind and out[-1] is None:
            raise ValueError(f"{IMAGENET_MAP_FILE.name}: {kind!r} is not a vocabulary class")
    if len(out) != 1000:
        raise ValueError(f"{IMAGENET_MAP_FILE.name}: {len(out)} rows, expected 1000")
    return out
