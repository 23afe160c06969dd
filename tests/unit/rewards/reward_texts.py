"""Hand-written answer texts for the reward tests (one topic, distinct paragraphs, and edits of them)."""

GREEN_CITY = [
    "Urban green spaces do far more than decorate a skyline. Parks, street trees and rooftop gardens "
    "absorb rainwater that would otherwise overwhelm storm drains, and they cool neighbourhoods by several "
    "degrees during summer heat waves. For residents without private gardens, a nearby park is often the "
    "only place to exercise, meet neighbours or simply sit in the shade.",
    "Planning such spaces is harder than it looks. Land in dense districts is expensive, and every hectare "
    "set aside for a meadow is a hectare not used for housing. City planners therefore experiment with "
    "pocket parks squeezed between buildings, linear greenways along old railway lines, and school yards "
    "that open to the public after classes end.",
    "Maintenance decides whether a park thrives or decays. Irrigation systems fail, benches are vandalised, "
    "and invasive plants spread when budgets shrink. Some municipalities now sign stewardship agreements "
    "with community groups, who weed flower beds and organise clean-up days in exchange for a say in how "
    "the space is designed and programmed.",
    "The benefits are not shared equally. Studies in several American and European cities found that "
    "wealthier districts enjoy more tree canopy than poorer ones, a gap that tracks historical patterns of "
    "investment. Closing it requires deliberate choices: planting first where heat and asthma rates are "
    "highest, and protecting long-term tenants from the rising rents that new parks can trigger.",
    "Looking ahead, climate adaptation will make green infrastructure a necessity rather than a luxury. "
    "Sponge-city programmes in China, Copenhagen's cloudburst plan and New York's bioswales all treat "
    "vegetation as working equipment that manages floods, filters air and stores carbon, while still "
    "giving people somewhere pleasant to walk on a Sunday afternoon.",
]

# GREEN_CITY[1] with four words changed (a near-duplicate a model could use to pad length).
GREEN_CITY_1_EDITED = (
    "Planning such areas is harder than it seems. Land in dense districts is costly, and every hectare "
    "set aside for a meadow is a hectare not used for housing. City planners therefore experiment with "
    "pocket parks squeezed between buildings, linear greenways along old railway lines, and school yards "
    "that open to the community after classes end."
)

ZH_PARAGRAPH = (
    "城市绿地不仅仅是装饰。公园、行道树和屋顶花园能够吸收雨水，在夏季高温时为街区降温。"
    "对于没有私人花园的居民来说，附近的公园往往是锻炼身体、结识邻居的唯一场所。"
)


def wrap(answer: str, think: str = "Plan: five paragraphs on urban green space.") -> str:
    """A well-formed response around ``answer``."""
    return f"<think>{think}</think>\n<answer>{answer}</answer>"
