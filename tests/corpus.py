"""Real, varied sentences for reference comparisons: short and long, several languages and scripts."""
# ruff: noqa: RUF001  (real text in other scripts is the point of this corpus)

LONG_PARAGRAPH = (
    "The river had been rising for three days before anyone in the valley thought to move the livestock. "
    "By the time the first fields went under, the old stone bridge at the mill was already shuddering, and "
    "the miller's children stood on the bank counting the branches that swept past. Their grandmother, who "
    "remembered the flood of her own childhood, said that water always finds the shortest way home, and that "
    "a village built in its path has only borrowed the land. The council met that evening in the school hall. "
    "Some wanted to raise the levee, others to dig a relief channel through the south meadow, and a few said "
    "nothing at all, because they had already decided to leave. In the end they did both, badly and too late, "
    "and the water took the meadow anyway. Years later, when the new road was built on higher ground, the "
    "engineers found the remains of an older channel beneath the grass: someone, centuries before, had tried "
    "the very same thing, and the river had filled it in with patient, careful silt."
)

SENTENCES = [
    "a cat sits on the mat",
    "Hi",
    "OK.",
    "The quick brown fox jumps over the lazy dog.",
    "Where is the nearest train station?",
    "Photosynthesis converts light energy into chemical energy stored in glucose.",
    "She sold seashells by the seashore, but nobody was buying.",
    "The central bank raised interest rates by a quarter of a percentage point on Wednesday.",
    "Gradient descent updates parameters in the direction of the negative gradient of the loss.",
    "My grandmother's recipe calls for two cups of flour, three eggs and a pinch of salt.",
    "Sentinel-2 carries a multispectral instrument with thirteen bands from 443 nm to 2190 nm.",
    "Please return the library books before the end of the month.",
    "The committee postponed its decision until further evidence could be reviewed.",
    "Error 404: the page you requested could not be found on this server.",
    "def add(a, b):\n    return a + b",
    "SELECT name, count(*) FROM users GROUP BY name HAVING count(*) > 1;",
    "In 1969, Apollo 11 landed on the Moon and Neil Armstrong stepped onto the surface.",
    "Rain is expected tomorrow afternoon, clearing by the evening with light winds from the west.",
    "The violinist tuned her instrument while the audience slowly found their seats.",
    "Mitochondria are often described as the powerhouse of the cell.",
    "I can't believe it's already December — where did the year go?!",
    "Prices: $3.99 per pound, €4.50 per kilo, ¥600 per pack.",
    "🙂🚀 launch day! 🎉",
    "   leading and trailing spaces   ",
    "UPPERCASE TEXT SHOULD BE HANDLED THE SAME WAY AS LOWERCASE TEXT",
    "Die Katze sitzt auf der Matte und schaut aus dem Fenster.",
    "Wir treffen uns morgen um halb neun vor dem Hauptbahnhof.",
    "Le chat est assis sur le tapis près de la cheminée.",
    "Les élèves ont présenté leurs projets scientifiques devant le jury.",
    "El perro corre por el parque todas las mañanas con su dueño.",
    "¿Dónde está la biblioteca más cercana?",
    "O gato está dormindo no sofá da sala.",
    "Il treno per Milano parte dal binario sette alle diciotto.",
    "De fiets staat achter het huis tegen de schuur.",
    "Кошка сидит на коврике у двери.",
    "Москва является столицей Российской Федерации.",
    "猫がマットの上に座っています。",
    "東京は日本の首都で、人口が最も多い都市です。",
    "猫坐在垫子上。",
    "北京是中华人民共和国的首都。",
    "고양이가 매트 위에 앉아 있습니다.",
    "القطة تجلس على السجادة.",
    "החתול יושב על השטיח.",
    "Η γάτα κάθεται στο χαλί.",
    "बिल्ली चटाई पर बैठी है।",
    "Kedi paspasın üzerinde oturuyor.",
    "Kot siedzi na macie w kuchni.",
    "Mèo đang ngồi trên tấm thảm.",
    "The results, summarised in Table 3, show a consistent improvement across all five benchmarks, "
    "although the gains on the smallest datasets are within the margin of error and should be read with care.",
    "When the committee finally published its report, it recommended that the city invest in flood defences, "
    "expand its public transport network, and create a fund to help small businesses recover from the storm.",
    "Although the expedition had prepared for months, nobody anticipated how quickly the weather would turn, "
    "and within hours the climbers were forced to abandon their camp and descend in near-zero visibility.",
    "Machine learning models trained on satellite imagery can estimate crop yields weeks before harvest, "
    "giving farmers and governments time to plan for shortages.",
    LONG_PARAGRAPH,
    LONG_PARAGRAPH + " " + LONG_PARAGRAPH,
    "word " * 400,
    "1 2 3 4 5 6 7 8 9 10",
    "https://example.org/path?query=embedding&lang=en",
    "e = mc^2",
    "Thank you very much for your help yesterday!",
    "Can you recommend a good book about the history of mathematics?",
]
