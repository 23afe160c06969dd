"""Word lists and sentence templates of the generated demo corpus (written for this repo; license-clean).

Each topic has its own nouns, adjectives, verbs and places, so a document stays on one subject and a
tiny model can lower its loss quickly. English words are plain ``[a-zA-Z]+`` (no hyphens or
apostrophes) so the paper's word count (CJK characters + English words, paper.md §1.2) is unambiguous.
Verbs are (base, third person, past) triples. Chinese words carry no Latin letters or digits.
"""

from __future__ import annotations

EN_TOPICS: dict[str, dict[str, list]] = {
    "river towns": {
        "nouns": ["river", "bridge", "ferry", "harbor", "market", "boat", "dock", "mill", "willow"],
        "adjs": ["quiet", "old", "busy", "narrow", "green", "wide"],
        "verbs": [("cross", "crosses", "crossed"), ("follow", "follows", "followed"), ("feed", "feeds", "fed")],
        "places": ["the east bank", "the lower town", "the old quay", "the stone steps"],
    },
    "solar energy": {
        "nouns": ["panel", "battery", "roof", "grid", "inverter", "cell", "meter", "cable"],
        "adjs": ["bright", "efficient", "cheap", "clean", "steady", "modern"],
        "verbs": [("store", "stores", "stored"), ("charge", "charges", "charged"), ("power", "powers", "powered")],
        "places": ["the southern hills", "the school roof", "the desert farm", "the city depot"],
    },
    "bread baking": {
        "nouns": ["dough", "oven", "flour", "crust", "loaf", "yeast", "baker", "tray"],
        "adjs": ["warm", "golden", "soft", "crisp", "fresh", "heavy"],
        "verbs": [("knead", "kneads", "kneaded"), ("shape", "shapes", "shaped"), ("bake", "bakes", "baked")],
        "places": ["the corner bakery", "the village kitchen", "the night shift", "the market stall"],
    },
    "mountain trails": {
        "nouns": ["trail", "ridge", "summit", "cabin", "stream", "map", "hiker", "pass"],
        "adjs": ["steep", "rocky", "cold", "high", "winding", "silent"],
        "verbs": [("climb", "climbs", "climbed"), ("mark", "marks", "marked"), ("guard", "guards", "guarded")],
        "places": ["the north face", "the pine forest", "the upper valley", "the last camp"],
    },
    "old libraries": {
        "nouns": ["library", "shelf", "book", "reader", "lamp", "archive", "catalog", "desk"],
        "adjs": ["dusty", "calm", "vast", "ancient", "careful", "dim"],
        "verbs": [("keep", "keeps", "kept"), ("sort", "sorts", "sorted"), ("read", "reads", "read")],
        "places": ["the reading room", "the back stacks", "the old wing", "the map hall"],
    },
    "city gardens": {
        "nouns": ["garden", "bench", "rose", "path", "fountain", "gardener", "hedge", "pond"],
        "adjs": ["green", "shady", "small", "lovely", "wild", "tidy"],
        "verbs": [("plant", "plants", "planted"), ("water", "waters", "watered"), ("prune", "prunes", "pruned")],
        "places": ["the central square", "the rooftop", "the school yard", "the old park"],
    },
    "tea farming": {
        "nouns": ["tea", "leaf", "terrace", "picker", "basket", "kettle", "hill", "field"],
        "adjs": ["fragrant", "young", "bitter", "gentle", "misty", "dark"],
        "verbs": [("pick", "picks", "picked"), ("dry", "dries", "dried"), ("brew", "brews", "brewed")],
        "places": ["the eastern slopes", "the drying shed", "the high terraces", "the family farm"],
    },
    "ship building": {
        "nouns": ["ship", "hull", "mast", "sail", "keel", "shipwright", "plank", "anchor"],
        "adjs": ["strong", "long", "wooden", "sturdy", "tall", "sleek"],
        "verbs": [("build", "builds", "built"), ("launch", "launches", "launched"), ("repair", "repairs", "repaired")],
        "places": ["the dry dock", "the north harbor", "the timber yard", "the river mouth"],
    },
    "weather stations": {
        "nouns": ["station", "sensor", "cloud", "storm", "wind", "forecast", "gauge", "balloon"],
        "adjs": ["accurate", "remote", "windy", "stormy", "clear", "daily"],
        "verbs": [("measure", "measures", "measured"), ("record", "records", "recorded"), ("predict", "predicts", "predicted")],
        "places": ["the coastal cliff", "the island", "the airfield", "the high plateau"],
    },
    "honey bees": {
        "nouns": ["bee", "hive", "queen", "honey", "flower", "comb", "keeper", "meadow"],
        "adjs": ["sweet", "busy", "golden", "small", "healthy", "humming"],
        "verbs": [("visit", "visits", "visited"), ("collect", "collects", "collected"), ("protect", "protects", "protected")],
        "places": ["the clover field", "the orchard", "the hillside", "the old farm"],
    },
    "railway journeys": {
        "nouns": ["train", "station", "track", "carriage", "ticket", "conductor", "tunnel", "platform"],
        "adjs": ["slow", "crowded", "punctual", "long", "comfortable", "late"],
        "verbs": [("reach", "reaches", "reached"), ("leave", "leaves", "left"), ("carry", "carries", "carried")],
        "places": ["the border town", "the coast line", "the mountain pass", "the capital"],
    },
    "pottery making": {
        "nouns": ["clay", "wheel", "kiln", "bowl", "glaze", "potter", "vase", "studio"],
        "adjs": ["smooth", "fired", "glossy", "simple", "round", "earthy"],
        "verbs": [("throw", "throws", "threw"), ("fire", "fires", "fired"), ("paint", "paints", "painted")],
        "places": ["the river studio", "the village workshop", "the craft fair", "the back room"],
    },
}

EN_COMMON_VERBS = [("change", "changes", "changed"), ("shape", "shapes", "shaped"), ("help", "helps", "helped"),
                   ("show", "shows", "showed"), ("need", "needs", "needed")]
EN_NAMES = ["Anna", "Tom", "Mira", "Jonas", "Lena", "Omar", "Clara", "Felix", "Nadia", "Hugo"]
EN_TIMES = ["morning", "evening", "spring", "autumn", "winter", "summer", "week", "night"]
EN_TONES = ["calm", "warm", "plain", "lively", "thoughtful"]

EN_PRESENT = [
    "The {adj} {n1} {v3} the {n2} near {place}.",
    "Every {time}, the {n1} {v3} the {adj} {n2}.",
    "In {place}, the {n1} is {adj} and the {n2} is {adj2}.",
    "People who study {topic} often say that the {n1} {v3} the {n2}.",
    "This is why the {n1} {v3} the {n2} and the {n3}.",
    "Without the {n1}, the {n2} would not be so {adj}.",
    "The {n1} is {adj}.",
    "It feels {adj} here.",
    "The {n1} and the {n2} stay {adj}.",
    "Many visitors come to {place} to see the {adj} {n1}.",
]
EN_PAST = [
    "{name} walked to {place} and {vp} the {adj} {n1}.",
    "\"The {n1} is {adj} today,\" said {name}.",
    "{name} and {name2} {vp} the {n1} until the {time} was over.",
    "Later that {time}, {name} found a {adj} {n1} beside the {n2}.",
    "{name} remembered how the {n1} {vp} the {n2} long ago.",
    "Nobody in {place} had seen such a {adj} {n1} before.",
    "{name} smiled and looked at the {n1}.",
]
EN_REPORT = [
    "The number of {n1}s rose by {pct} percent in {year}.",
    "Costs for the {n1} fell by {pct} percent compared with {year0}.",
    "Most staff in {place} rated the {n1} as {adj}.",
    "We recommend that the council {vb} the {n1} before {year1}.",
    "The survey covered {count} {n1}s across {place}.",
]
EN_PAPER = [
    "We study how the {n1} {v3} the {n2} under {adj} conditions.",
    "Our method models the {n1} as a function of the {n2}.",
    "The results show that a {adj} {n1} improves the {n2} by {pct} percent.",
    "Prior work on {topic} focused on the {n1} but ignored the {n2}.",
    "We measured {count} samples of the {n1} in {place}.",
    "This suggests that the {n2} depends on the {n1}.",
]

ZH_TOPICS: dict[str, dict[str, list]] = {
    "河边小镇": {"nouns": ["河流", "石桥", "渡船", "码头", "集市", "小船", "磨坊", "柳树"],
              "adjs": ["安静", "古老", "热闹", "狭窄", "清澈", "宽阔"],
              "verbs": ["穿过", "守护", "连接", "装点"], "places": ["东岸", "老街", "下游", "渡口"]},
    "太阳能": {"nouns": ["电池", "屋顶", "电网", "面板", "电线", "仪表", "阳光", "电站"],
            "adjs": ["明亮", "高效", "便宜", "干净", "稳定", "现代"],
            "verbs": ["储存", "照亮", "驱动", "改变"], "places": ["南山", "学校", "沙漠", "城郊"]},
    "面包烘焙": {"nouns": ["面团", "烤箱", "面粉", "面包", "酵母", "师傅", "烤盘", "香气"],
             "adjs": ["温暖", "金黄", "松软", "香脆", "新鲜", "厚实"],
             "verbs": ["揉捏", "烘烤", "分享", "准备"], "places": ["街角", "厨房", "夜班", "集市"]},
    "山间小路": {"nouns": ["小路", "山脊", "山顶", "木屋", "溪水", "地图", "游客", "山口"],
             "adjs": ["陡峭", "崎岖", "寒冷", "高远", "曲折", "寂静"],
             "verbs": ["攀登", "标记", "守护", "走过"], "places": ["北坡", "松林", "山谷", "营地"]},
    "古老图书馆": {"nouns": ["图书馆", "书架", "书本", "读者", "台灯", "档案", "目录", "书桌"],
              "adjs": ["安静", "宽敞", "古老", "整洁", "昏暗", "温和"],
              "verbs": ["保存", "整理", "阅读", "借出"], "places": ["阅览室", "书库", "旧楼", "地图馆"]},
    "城市花园": {"nouns": ["花园", "长椅", "玫瑰", "小径", "喷泉", "园丁", "树篱", "池塘"],
             "adjs": ["翠绿", "阴凉", "小巧", "可爱", "茂盛", "整齐"],
             "verbs": ["种植", "浇灌", "修剪", "照料"], "places": ["广场", "屋顶", "校园", "公园"]},
    "茶园": {"nouns": ["茶叶", "梯田", "茶农", "竹篮", "茶壶", "山坡", "嫩芽", "茶香"],
           "adjs": ["清香", "嫩绿", "微苦", "柔和", "湿润", "浓郁"],
           "verbs": ["采摘", "晾晒", "冲泡", "炒制"], "places": ["东坡", "晒场", "高山", "农家"]},
    "蜜蜂": {"nouns": ["蜜蜂", "蜂巢", "蜂王", "蜂蜜", "花朵", "蜂房", "蜂农", "草地"],
           "adjs": ["甜美", "忙碌", "金黄", "微小", "健康", "勤劳"],
           "verbs": ["采集", "守护", "拜访", "酿造"], "places": ["花田", "果园", "山坡", "农场"]},
}

ZH_NAMES = ["李明", "王芳", "张伟", "陈静", "刘洋", "赵雪", "周燕", "孙浩"]
ZH_TIMES = ["清晨", "傍晚", "春天", "秋天", "周末", "夜里", "冬天", "夏天"]
ZH_TONES = ["平和", "温暖", "朴素", "活泼", "认真"]

ZH_PRESENT = [
    "{place}的{n1}十分{adj}，它{v}着{n2}。",
    "每到{time}，人们都会来到{n1}旁边，看那{adj}的{n2}。",
    "研究{topic}的人常说，{n1}{v}了{n2}。",
    "如果没有{n1}，{n2}就不会这样{adj}。",
    "{n1}很{adj}。",
    "这里的{n1}和{n2}都很{adj}。",
    "许多人来到{place}，只为看一看{adj}的{n1}。",
    "真{adj}。",
]
ZH_PAST = [
    "{name}走到{place}，{v}了那个{adj}的{n1}。",
    "{name}说：“今天的{n1}很{adj}。”",
    "{name}和{name2}一起{v}{n1}，直到{time}过去。",
    "那天{time}，{name}在{n2}旁边发现了一个{adj}的{n1}。",
    "{name}笑了笑，看着远处的{n1}。",
]
ZH_REPORT = [
    "{year}年，{n1}的数量增长了百分之{pct}。",
    "与{year0}年相比，{n1}的成本下降了百分之{pct}。",
    "{place}的大多数员工认为{n1}很{adj}。",
    "我们建议在{year1}年之前{v}{n1}。",
]
ZH_PAPER = [
    "本文研究{n1}如何在{adj}的条件下{v}{n2}。",
    "我们的方法把{n1}看作{n2}的函数。",
    "结果表明，{adj}的{n1}使{n2}提高了百分之{pct}。",
    "以往关于{topic}的研究关注{n1}，却忽略了{n2}。",
]
