"""The built-in caption vocabulary of the tiny tokenizers: CHAIR COCO-80 words, template and caption words."""

from __future__ import annotations

__all__ = ["DEFAULT_WORDS"]

# COCO-80 CHAIR word lists (spec §1.5), multi-word entries split into words below.
_CHAIR_WORDS = """
person girl boy man woman kid child chef baker people adult rider children baby worker passenger sister
biker policeman cop officer lady cowboy bride groom male female guy traveler mother father gentleman
pitcher player skier snowboarder skater skateboarder foreigner caller offender coworker trespasser patient
politician soldier grandchild serviceman walker drinker doctor bicyclist thief buyer teenager student camper
driver solider hunter shopper villager
bicycle bike unicycle minibike trike
car automobile van minivan sedan suv hatchback cab jeep coupe taxicab limo taxi
motorcycle scooter motor bike cycle motorbike moped
airplane jetliner plane air monoplane aircraft jet airbus biplane seaplane
bus minibus trolley
train locomotive tramway caboose
truck pickup lorry hauler firetruck
boat ship liner sailboat motorboat dinghy powerboat speedboat canoe skiff yacht kayak catamaran pontoon
houseboat vessel rowboat trawler ferryboat watercraft tugboat schooner barge ferry sailboard paddleboat
lifeboat freighter steamboat riverboat battleship steamship
traffic light street signal stop streetlight stoplight
fire hydrant sign parking meter bench pew
bird ostrich owl seagull goose duck parakeet falcon robin pelican waterfowl heron hummingbird mallard finch
pigeon sparrow seabird osprey blackbird fowl shorebird woodpecker egret chickadee quail bluebird kingfisher
buzzard willet gull swan bluejay flamingo cormorant parrot loon gosling waterbird pheasant rooster sandpiper
crow raven turkey oriole cowbird warbler magpie peacock cockatiel lorikeet puffin vulture condor macaw
peafowl cockatoo songbird
cat kitten feline tabby
dog puppy beagle pup chihuahua schnauzer dachshund rottweiler canine pitbull collie pug terrier poodle
labrador doggie doberman mutt doggy spaniel bulldog sheepdog weimaraner corgi cocker greyhound retriever
brindle hound whippet husky
horse colt pony racehorse stallion equine mare foal palomino mustang clydesdale bronc bronco
sheep lamb ram goat ewe
cow cattle oxen ox calf holstein heifer buffalo bull zebu bison
elephant bear panda zebra giraffe backpack knapsack umbrella handbag wallet purse briefcase tie bow
suitcase suit case luggage frisbee skis ski snowboard sports ball kite baseball bat glove skateboard
surfboard longboard skimboard shortboard wakeboard tennis racket bottle wine glass cup fork knife
pocketknife knive spoon bowl container banana apple sandwich burger sub cheeseburger hamburger orange
broccoli carrot hot pizza donut doughnut bagel cake cheesecake cupcake shortcake coffeecake pancake
chair seat stool couch sofa recliner futon loveseat settee chesterfield potted plant houseplant bed dining
table desk toilet urinal commode lavatory potty tv monitor televison television laptop computer notebook
netbook lenovo macbook mouse remote keyboard cell phone mobile cellphone telephone phon smartphone iphone
microwave oven stovetop stove top toaster sink refrigerator fridge freezer book clock vase scissors teddy
teddybear hair drier hairdryer toothbrush
"""

# Words of the 80 prompt templates (spec §2.9).
_TEMPLATE_WORDS = """
a bad photo of many sculpture the hard to see low resolution rendering graffiti cropped tattoo embroidered
bright clean dirty dark drawing my plastic cool close up black and white painting pixelated jpeg corrupted
blurry good in video game one doodle origami sketch toy rendition large nice weird cartoon art itap plushie
small
"""

# Articles, numerals, colours, common verbs, prepositions and scene words of captions.
_CAPTION_WORDS = """
an some two three four five six seven eight nine ten several few group pair couple lot lots single
red green blue yellow brown gray grey pink purple striped spotted colorful colored
is are was were be being has have had with on at by near next beside behind front inside outside into onto
over under above below across along around through from for its their his her while other another
sitting standing walking running riding holding playing eating looking flying chasing catching jumping
swimming sailing parked driving waiting lying laying carrying throwing wearing watching crossing resting
grazing perched floating surfing skiing skating posing together each same
field grass grassy road beach water ocean sea lake river sand snow sky park city yard lawn forest tree trees
building sidewalk shore waves wave land bamboo background landbird photograph picture image scene view
of this that there it he she they them day night sunny cloudy top bottom left right middle side
shape shapes circle square triangle star disc ring object objects round
big little tiny huge medium dotted checkered plain textured patterned place
"""


def _word_list() -> tuple[str, ...]:
    words: dict[str, None] = {}
    for block in (_CHAIR_WORDS, _TEMPLATE_WORDS, _CAPTION_WORDS):
        for w in block.split():
            words.setdefault(w.lower(), None)
    # Plurals of the nouns make "two dogs" two tokens instead of a byte soup.
    for w in list(words):
        if w.isalpha() and len(w) > 2 and not w.endswith("s"):
            words.setdefault(w + "s", None)
    return tuple(words)


DEFAULT_WORDS: tuple[str, ...] = _word_list()
"""Built-in caption vocabulary: CHAIR COCO-80 words, template words, articles, numerals, colours, verbs."""
