//! Data layer against the real benchmark files: every file of `SOURCES.md` reads with its exact
//! sentence / mention / per-type counts, bytes and sha256, the paper's loader reproduces the
//! gold counts of paper.md §10, and malformed input is reported with file and line.
use std::collections::BTreeMap;
use std::io::Write;

use rner::data::formats::{self, RawSentence};
use rner::data::registry::{fraction, sample, GoldVariant};
use rner::data::{Registry, ZERO_SHOT};
use rner::Error;

use crate::util::data_dir;

fn registry() -> Registry {
    let dir = data_dir();
    assert!(dir.is_dir(), "benchmark data not found at {}: set RNER_DATA", dir.display());
    Registry::new(dir).expect("registry")
}

/// One row of the `SOURCES.md` tables (UniversalNER: `sentences` = distinct texts, `mentions` =
/// entity answers, `types` = answers per query type).
struct Row {
    name: &'static str,
    split: &'static str,
    file: &'static str,
    sentences: usize,
    mentions: usize,
    bytes: u64,
    sha256: &'static str,
    types: &'static str,
}

#[rustfmt::skip]
const ROWS: &[Row] = &[
    Row { name: "crossner-raw_ai", split: "train", file: "CrossNER/ai/train.txt", sentences: 100, mentions: 532, bytes: 40202, sha256: "484217a660f52927bd5157507c22fc103b36306364329f62f80fc8acb897b187",
          types: "algorithm (80), conference (24), country (29), field (39), location (7), metrics (27), misc (43), organisation (48), person (6), product (58), programlang (25), researcher (54), task (60), university (32)" },
    Row { name: "crossner-raw_ai", split: "dev", file: "CrossNER/ai/dev.txt", sentences: 350, mentions: 1549, bytes: 114516, sha256: "b47ffda6de5901a454a873feac1bebe782e54ce7edf9deb729cab3d769212eee",
          types: "algorithm (178), conference (89), country (44), field (178), location (42), metrics (147), misc (180), organisation (94), person (41), product (173), programlang (35), researcher (142), task (147), university (59)" },
    Row { name: "crossner-raw_ai", split: "test", file: "CrossNER/ai/test.txt", sentences: 431, mentions: 1809, bytes: 134455, sha256: "7595ad386e0a98067100fe47f86811b38867a236011fee97cfaa90f778c37bcf",
          types: "algorithm (177), conference (93), country (44), field (207), location (39), metrics (191), misc (181), organisation (145), person (67), product (198), programlang (60), researcher (160), task (219), university (28)" },
    Row { name: "crossner-raw_literature", split: "train", file: "CrossNER/literature/train.txt", sentences: 100, mentions: 541, bytes: 36623, sha256: "0647e403a85040742c2f4041cf002146a81aa2e13adda19d0e82a8bcd493c18b",
          types: "award (34), book (91), country (25), event (10), literarygenre (36), location (25), magazine (16), misc (58), organisation (18), person (48), poem (47), writer (133)" },
    Row { name: "crossner-raw_literature", split: "dev", file: "CrossNER/literature/dev.txt", sentences: 400, mentions: 2130, bytes: 142501, sha256: "99281a51943cf7e3c2a58b3dc45c0e5ab6d329624ebf2ba6b4801c428396162f",
          types: "award (124), book (336), country (127), event (65), literarygenre (152), location (111), magazine (71), misc (212), organisation (115), person (194), poem (79), writer (544)" },
    Row { name: "crossner-raw_literature", split: "test", file: "CrossNER/literature/test.txt", sentences: 416, mentions: 2266, bytes: 155256, sha256: "77267f8b3e8afe993865c64cfc605f65671f6a0ac9cba65de970f12180fed20e",
          types: "award (141), book (418), country (101), event (45), literarygenre (194), location (99), magazine (57), misc (239), organisation (110), person (175), poem (120), writer (567)" },
    Row { name: "crossner-raw_music", split: "train", file: "CrossNER/music/train.txt", sentences: 100, mentions: 648, bytes: 40997, sha256: "3774c38e0ebbeb4b98dbfae137071e4911e8764cdb7f247599009841f68d9fb5",
          types: "album (91), award (69), band (125), country (27), event (12), location (30), misc (22), musicalartist (104), musicalinstrument (2), musicgenre (88), organisation (36), person (15), song (27)" },
    Row { name: "crossner-raw_music", split: "dev", file: "CrossNER/music/dev.txt", sentences: 380, mentions: 2679, bytes: 164737, sha256: "e256f1949df52a61a3bb60095a0f41c1060843f1014b0f3d22d8371611b72e78",
          types: "album (282), award (230), band (402), country (130), event (72), location (187), misc (124), musicalartist (472), musicalinstrument (42), musicgenre (360), organisation (136), person (65), song (177)" },
    Row { name: "crossner-raw_music", split: "test", file: "CrossNER/music/test.txt", sentences: 465, mentions: 3336, bytes: 208331, sha256: "c66e345f959ac65593f76c6b1bd8c6d75f2a6f0bc197389b2e6700d101fd094c",
          types: "album (332), award (260), band (462), country (160), event (69), location (343), misc (171), musicalartist (515), musicalinstrument (22), musicgenre (487), organisation (208), person (80), song (227)" },
    Row { name: "crossner-raw_politics", split: "train", file: "CrossNER/politics/train.txt", sentences: 200, mentions: 1304, bytes: 97283, sha256: "1d8be31abb58463349496fe21b13d70114cf015294a9ff9cce77af9b83e8aa84",
          types: "country (62), election (123), event (22), location (297), misc (80), organisation (152), person (14), politicalparty (195), politician (359)" },
    Row { name: "crossner-raw_politics", split: "dev", file: "CrossNER/politics/dev.txt", sentences: 541, mentions: 3482, bytes: 300968, sha256: "4f1f30eb832f4c5fe474f67ca45e875d863bddf0bbe432262d272ef13639fa8f",
          types: "country (183), election (528), event (186), location (211), misc (193), organisation (431), person (286), politicalparty (1053), politician (411)" },
    Row { name: "crossner-raw_politics", split: "test", file: "CrossNER/politics/test.txt", sentences: 651, mentions: 4209, bytes: 325917, sha256: "05cadc5e129d394f7f92b4a052cf4b6ea4c60878d32a833e500cf046c297455f",
          types: "country (418), election (434), event (195), location (599), misc (258), organisation (513), person (354), politicalparty (953), politician (485)" },
    Row { name: "crossner-raw_science", split: "train", file: "CrossNER/science/train.txt", sentences: 200, mentions: 1075, bytes: 78701, sha256: "8f6a26096cc7be6790b5790bf5f5b5c8928d8b73d4632e7d45dc8bffad0504ac",
          types: "academicjournal (28), astronomicalobject (121), award (56), chemicalcompound (72), chemicalelement (16), country (9), discipline (22), enzyme (22), event (20), location (65), misc (169), organisation (118), person (97), protein (69), scientist (127), theory (8), university (56)" },
    Row { name: "crossner-raw_science", split: "dev", file: "CrossNER/science/dev.txt", sentences: 450, mentions: 2538, bytes: 186031, sha256: "87ec141c7b41b3b52ec861737c4030d65c6e53954ed3d8106baca8603bbf8f24",
          types: "academicjournal (149), astronomicalobject (373), award (140), chemicalcompound (193), chemicalelement (23), country (28), discipline (41), enzyme (48), event (36), location (142), misc (360), organisation (278), person (153), protein (101), scientist (328), theory (7), university (138)" },
    Row { name: "crossner-raw_science", split: "test", file: "CrossNER/science/test.txt", sentences: 543, mentions: 3089, bytes: 220459, sha256: "3616d59d4d2b9dbf4c1126f8d8ba47ff97886223c95f93649bfd527343e64ced",
          types: "academicjournal (180), astronomicalobject (337), award (146), chemicalcompound (160), chemicalelement (85), country (27), discipline (73), enzyme (80), event (31), location (170), misc (520), organisation (273), person (230), protein (156), scientist (471), theory (20), university (130)" },
    Row { name: "crossner-raw_conll2003", split: "train", file: "CrossNER/conll2003/train.txt", sentences: 14041, mentions: 23429, bytes: 1821749, sha256: "098791b165293cac55aa60ea5395b48ed441bc962c00278aa4789dce68624bf8",
          types: "location (7129), misc (3403), organisation (6297), person (6600)" },
    Row { name: "crossner-raw_conll2003", split: "dev", file: "CrossNER/conll2003/dev.txt", sentences: 3250, mentions: 5938, bytes: 456172, sha256: "c8869cec4f419e7b635843aae285990581bf4685b7193c81696d87e1939f0c63",
          types: "location (1837), misc (918), organisation (1341), person (1842)" },
    Row { name: "crossner-raw_conll2003", split: "test", file: "CrossNER/conll2003/test.txt", sentences: 3453, mentions: 5628, bytes: 416873, sha256: "18d9d738defc506ebc5d6748cb580245327ef5c4357b026d7d9ba7c6e55fe841",
          types: "location (1662), misc (693), organisation (1656), person (1617)" },
    Row { name: "mit-movie-raw", split: "train", file: "MIT-Movie/engtrain.bio", sentences: 9775, mentions: 21295, bytes: 1013492, sha256: "68d90d7b29bc7dbf54efce6dfddbcdcb685293a00eaf76cd48c3acb5d3b68fe8",
          types: "ACTOR (3220), CHARACTER (385), DIRECTOR (1720), GENRE (4354), PLOT (1927), RATING (2007), RATINGS_AVERAGE (1869), REVIEW (221), SONG (245), TITLE (2376), TRAILER (113), YEAR (2858)" },
    Row { name: "mit-movie-raw", split: "test", file: "MIT-Movie/engtest.bio", sentences: 2443, mentions: 5339, bytes: 252636, sha256: "2ba7c6da2e5c1d897ebbcbcefad9e0f03eed41b183106e7f26b7f24b704282fd",
          types: "ACTOR (812), CHARACTER (90), DIRECTOR (456), GENRE (1117), PLOT (491), RATING (500), RATINGS_AVERAGE (451), REVIEW (56), SONG (54), TITLE (562), TRAILER (30), YEAR (720)" },
    Row { name: "mit-movie-trivia", split: "train", file: "MIT-Movie/trivia10k13train.bio", sentences: 7816, mentions: 23030, bytes: 1785558, sha256: "3208087913814190b5ac6bf7a7c926d23b7cf0ab4a1734311badec4d8eaa5a82",
          types: "Actor (5010), Award (309), Character_Name (1025), Director (1787), Genre (3384), Opinion (810), Origin (779), Plot (6468), Quote (126), Relationship (580), Soundtrack (50), Year (2702)" },
    Row { name: "mit-movie-trivia", split: "test", file: "MIT-Movie/trivia10k13test.bio", sentences: 1953, mentions: 5686, bytes: 438729, sha256: "244807ba0006744a103a9449a12503641af287a869887b6d9cbb75b749e92d3d",
          types: "Actor (1274), Award (66), Character_Name (283), Director (425), Genre (789), Opinion (195), Origin (190), Plot (1577), Quote (47), Relationship (171), Soundtrack (8), Year (661)" },
    Row { name: "mit-restaurant-raw", split: "train", file: "MIT-Restaurant/restauranttrain.bio", sentences: 7660, mentions: 15363, bytes: 759757, sha256: "f51794247426c975e7701011d4dba668ac6b881358f162e2c2c10709f2d17b9b",
          types: "Amenity (2541), Cuisine (2839), Dish (1475), Hours (990), Location (3817), Price (730), Rating (1070), Restaurant_Name (1901)" },
    Row { name: "mit-restaurant-raw", split: "test", file: "MIT-Restaurant/restauranttest.bio", sentences: 1521, mentions: 3151, bytes: 155722, sha256: "09809dd126a3781c4205d06e721752054e51a10b1c98f3495ef17cd723f25ce2",
          types: "Amenity (533), Cuisine (532), Dish (288), Hours (212), Location (812), Price (171), Rating (201), Restaurant_Name (402)" },
    Row { name: "crossner_ai", split: "train", file: "InstructUIE-IE_INSTRUCTIONS-NER/CrossNER_AI/train.json", sentences: 100, mentions: 531, bytes: 61501, sha256: "d28f24116fe08680a7db6d6bb9b11605514104b2e04eb3d86dd1ecd9e73a5b32",
          types: "algorithm (80), conference (24), country (29), else (43), field (39), location (7), metrics (27), organization (48), person (6), product (58), program language (24), researcher (54), task (60), university (32)" },
    Row { name: "crossner_ai", split: "dev", file: "InstructUIE-IE_INSTRUCTIONS-NER/CrossNER_AI/dev.json", sentences: 350, mentions: 1546, bytes: 179189, sha256: "5998e17e854c0e01fb862bd33c8a1d527608449cb43f336209ef8cf22a3ae749",
          types: "algorithm (178), conference (88), country (44), else (180), field (178), location (42), metrics (146), organization (93), person (41), product (173), program language (35), researcher (142), task (147), university (59)" },
    Row { name: "crossner_ai", split: "test", file: "InstructUIE-IE_INSTRUCTIONS-NER/CrossNER_AI/test.json", sentences: 431, mentions: 1804, bytes: 209847, sha256: "3855110b08fb4b1d25fdc6526ed0fa3c098a9d69c16f3bbf79e707b9550fa0a2",
          types: "algorithm (176), conference (93), country (44), else (180), field (207), location (39), metrics (189), organization (145), person (67), product (197), program language (60), researcher (160), task (219), university (28)" },
    Row { name: "crossner_literature", split: "train", file: "InstructUIE-IE_INSTRUCTIONS-NER/CrossNER_literature/train.json", sentences: 100, mentions: 541, bytes: 58263, sha256: "0bfe17f19dedbded1ced262195fe2ff95f8c38f411117da04f18a97e6ca8ada9",
          types: "award (34), book (91), country (25), else (58), event (10), literary genre (36), location (25), magazine (16), organization (18), person (48), poem (47), writer (133)" },
    Row { name: "crossner_literature", split: "dev", file: "InstructUIE-IE_INSTRUCTIONS-NER/CrossNER_literature/dev.json", sentences: 400, mentions: 2125, bytes: 228289, sha256: "be3139664d22a7fe1755bcab235b6de181f5554f27fe7bae77b1035be817c96b",
          types: "award (123), book (336), country (127), else (211), event (65), literary genre (152), location (111), magazine (71), organization (115), person (194), poem (77), writer (543)" },
    Row { name: "crossner_literature", split: "test", file: "InstructUIE-IE_INSTRUCTIONS-NER/CrossNER_literature/test.json", sentences: 416, mentions: 2263, bytes: 245122, sha256: "a3c4abe6643b01348ca85e80df24c6a03e5020e92d1f40f8e71d3d1267dd701e",
          types: "award (141), book (418), country (101), else (238), event (45), literary genre (194), location (99), magazine (57), organization (110), person (174), poem (120), writer (566)" },
    Row { name: "crossner_music", split: "train", file: "InstructUIE-IE_INSTRUCTIONS-NER/CrossNER_music/train.json", sentences: 100, mentions: 648, bytes: 66601, sha256: "1d17c2e9d0bc818a1649298a773be7140184b683d5016aa395e31bed4e944534",
          types: "album (91), award (69), band (125), country (27), else (22), event (12), location (30), music genre (88), musical artist (104), musical instrument (2), organization (36), person (15), song (27)" },
    Row { name: "crossner_music", split: "dev", file: "InstructUIE-IE_INSTRUCTIONS-NER/CrossNER_music/dev.json", sentences: 380, mentions: 2679, bytes: 271073, sha256: "b9db4bd8c420addf6dd635dbf01566aa5a8a29f4641707611eab9b04730fc9be",
          types: "album (282), award (230), band (402), country (130), event (72), location (187), misc (124), music genre (360), musical artist (472), musical instrument (42), organisation (136), person (65), song (177)" },
    Row { name: "crossner_music", split: "test", file: "InstructUIE-IE_INSTRUCTIONS-NER/CrossNER_music/test.json", sentences: 465, mentions: 3334, bytes: 339773, sha256: "c33aa6cb212de581ce3b9c55a22a27734dd2961969041b570921f8d07a9706af",
          types: "album (331), award (260), band (462), country (160), event (68), location (343), misc (171), music genre (487), musical artist (515), musical instrument (22), organisation (208), person (80), song (227)" },
    Row { name: "crossner_politics", split: "train", file: "InstructUIE-IE_INSTRUCTIONS-NER/CrossNER_politics/train.json", sentences: 199, mentions: 1297, bytes: 144188, sha256: "14d2fc003de07ecf21723bfae3d9ff747d1dbabda9235ab6b6600ab9b3cb5701",
          types: "country (62), election (123), else (80), event (22), location (295), organization (151), person (14), political party (194), politician (356)" },
    Row { name: "crossner_politics", split: "dev", file: "InstructUIE-IE_INSTRUCTIONS-NER/CrossNER_politics/dev.json", sentences: 540, mentions: 3472, bytes: 416674, sha256: "c00afa37c52b4e9b05ec9f0bf83fe43138329962ab9d4c49d8655ed0a233680c",
          types: "country (183), election (528), else (191), event (184), location (211), organization (427), person (285), political party (1053), politician (410)" },
    Row { name: "crossner_politics", split: "test", file: "InstructUIE-IE_INSTRUCTIONS-NER/CrossNER_politics/test.json", sentences: 650, mentions: 4200, bytes: 476352, sha256: "4c03f79ee4cec9cc93eb3a859d7bc2e689001d17bd0e9d965ca216b8679b27ae",
          types: "country (418), election (434), else (257), event (195), location (599), organization (513), person (352), political party (953), politician (479)" },
    Row { name: "crossner_science", split: "train", file: "InstructUIE-IE_INSTRUCTIONS-NER/CrossNER_science/train.json", sentences: 200, mentions: 1074, bytes: 121254, sha256: "b619d1595e68b1013fbef6f8dd344e5a23298328f6aa1a8f47a1908eb3ec9a52",
          types: "academic journal (28), astronomical object (121), award (56), chemical compound (72), chemical element (16), country (9), discipline (22), else (169), enzyme (21), event (20), location (65), organization (118), person (97), protein (69), scientist (127), theory (8), university (56)" },
    Row { name: "crossner_science", split: "dev", file: "InstructUIE-IE_INSTRUCTIONS-NER/CrossNER_science/dev.json", sentences: 450, mentions: 2537, bytes: 283370, sha256: "7b587480caadbe16b44305660d1c3ee766ddeef574b9631eeea22525f6c9a2b9",
          types: "academic journal (149), astronomical object (373), award (140), chemical compound (193), chemical element (23), country (28), discipline (41), else (360), enzyme (48), event (36), location (141), organization (278), person (153), protein (101), scientist (328), theory (7), university (138)" },
    Row { name: "crossner_science", split: "test", file: "InstructUIE-IE_INSTRUCTIONS-NER/CrossNER_science/test.json", sentences: 543, mentions: 3088, bytes: 341773, sha256: "dc193df7c976ae8f35496a99bb52ea0e1b353adde64a2cf7a6bdcbc634d78563",
          types: "academic journal (180), astronomical object (337), award (146), chemical compound (159), chemical element (85), country (27), discipline (73), else (520), enzyme (80), event (31), location (170), organization (273), person (230), protein (156), scientist (471), theory (20), university (130)" },
    Row { name: "mit-movie", split: "train", file: "InstructUIE-IE_INSTRUCTIONS-NER/mit-movie/train.json", sentences: 9774, mentions: 21294, bytes: 2089934, sha256: "6e691801f3ada0902d5e6247165887286f8a0a7b68b2f342385a6a710234576c",
          types: "actor (3220), average ratings (1869), character (384), director (1720), genre (4354), plot (1927), rating (2007), review (221), song (245), title (2376), trailer (113), year (2858)" },
    Row { name: "mit-movie", split: "dev", file: "InstructUIE-IE_INSTRUCTIONS-NER/mit-movie/dev.json", sentences: 2442, mentions: 5338, bytes: 522590, sha256: "a4bab60e7af027e8839cf1f011f2e4020878e3ec9d3ca75737cc8806a9041960",
          types: "actor (812), average ratings (451), character (89), director (456), genre (1117), plot (491), rating (500), review (56), song (54), title (562), trailer (30), year (720)" },
    Row { name: "mit-movie", split: "test", file: "InstructUIE-IE_INSTRUCTIONS-NER/mit-movie/test.json", sentences: 2442, mentions: 5338, bytes: 522590, sha256: "a4bab60e7af027e8839cf1f011f2e4020878e3ec9d3ca75737cc8806a9041960",
          types: "actor (812), average ratings (451), character (89), director (456), genre (1117), plot (491), rating (500), review (56), song (54), title (562), trailer (30), year (720)" },
    Row { name: "mit-restaurant", split: "train", file: "InstructUIE-IE_INSTRUCTIONS-NER/mit-restaurant/train.json", sentences: 7659, mentions: 15363, bytes: 1540483, sha256: "ca737dc0bddef6436dc06d5496c5e1724b2fea6a815470f70ae14f9f151cc1ce",
          types: "Amenity (2541), Cuisine (2839), Dish (1475), Hours (990), Location (3817), Price (730), Rating (1070), Restaurant Name (1901)" },
    Row { name: "mit-restaurant", split: "dev", file: "InstructUIE-IE_INSTRUCTIONS-NER/mit-restaurant/dev.json", sentences: 1520, mentions: 3150, bytes: 313894, sha256: "7b4a96782e6f57f3b79307d11c7a2a9031f2c818794f15d9a4989400a48432f4",
          types: "Amenity (533), Cuisine (532), Dish (287), Hours (212), Location (812), Price (171), Rating (201), Restaurant Name (402)" },
    Row { name: "mit-restaurant", split: "test", file: "InstructUIE-IE_INSTRUCTIONS-NER/mit-restaurant/test.json", sentences: 1520, mentions: 3150, bytes: 313894, sha256: "7b4a96782e6f57f3b79307d11c7a2a9031f2c818794f15d9a4989400a48432f4",
          types: "Amenity (533), Cuisine (532), Dish (287), Hours (212), Location (812), Price (171), Rating (201), Restaurant Name (402)" },
    Row { name: "conll2003", split: "train", file: "InstructUIE-IE_INSTRUCTIONS-NER/CoNLL 2003/train.json", sentences: 14041, mentions: 23499, bytes: 2951484, sha256: "2aa7c8d7caebba499ae86df63fba9154282df23b93bc5de7c377c92f02786342",
          types: "else (3438), location (7140), organization (6321), person (6600)" },
    Row { name: "conll2003", split: "dev", file: "InstructUIE-IE_INSTRUCTIONS-NER/CoNLL 2003/dev.json", sentences: 3250, mentions: 5942, bytes: 734726, sha256: "c6d319ec4fe7241ef85e6a797898847fc8571add15189781beab5fe7669245c8",
          types: "else (922), location (1837), organization (1341), person (1842)" },
    Row { name: "conll2003", split: "test", file: "InstructUIE-IE_INSTRUCTIONS-NER/CoNLL 2003/test.json", sentences: 3453, mentions: 5648, bytes: 695478, sha256: "d9efb4ec28a654225fafefc926d5125982f40db6e1c83dde2f224aef8197eebf",
          types: "else (702), location (1668), organization (1661), person (1617)" },
    Row { name: "uniner_crossner_ai", split: "test", file: "UniversalNER-eval/CrossNER_AI.json", sentences: 430, mentions: 1624, bytes: 2340768, sha256: "23e717b8b427e96f2724c551d80079ec24eafc5bc0c25ccc6019bc5a2adc83aa",
          types: "algorithm (176), conference (93), country (44), field (207), location (39), metrics (189), organization (145), person (67), product (197), program language (60), researcher (160), task (219), university (28)" },
    Row { name: "uniner_crossner_literature", split: "test", file: "UniversalNER-eval/CrossNER_literature.json", sentences: 416, mentions: 2025, bytes: 2093528, sha256: "dd49598f0d748f0bd746abad6555163811a008174750ac957ba4b2fb1ac0ea05",
          types: "award (141), book (418), country (101), event (45), literary genre (194), location (99), magazine (57), organization (110), person (174), poem (120), writer (566)" },
    Row { name: "uniner_crossner_music", split: "test", file: "UniversalNER-eval/CrossNER_music.json", sentences: 457, mentions: 3163, bytes: 2643311, sha256: "5025ef6d885e27f04cf9a6d87a9489ba47bec56c563b125e1ff56da31d5454ab",
          types: "album (331), award (260), band (462), country (160), event (68), location (343), music genre (487), musical artist (515), musical instrument (22), organization (208), person (80), song (227)" },
    Row { name: "uniner_crossner_politics", split: "test", file: "UniversalNER-eval/CrossNER_politics.json", sentences: 650, mentions: 3943, bytes: 2620844, sha256: "57806d28d7cc7351b3821268183ab9a25c02631450ad82d4cf8603cfd8587084",
          types: "country (418), election (434), event (195), location (599), organization (513), person (352), political party (953), politician (479)" },
    Row { name: "uniner_crossner_science", split: "test", file: "UniversalNER-eval/CrossNER_science.json", sentences: 532, mentions: 2568, bytes: 3939990, sha256: "28c6a14fa12d95d048c7521d25a77725f7e36d7b3cc7fd87fb4124486b10299e",
          types: "academic journal (180), astronomical object (337), award (146), chemical compound (159), chemical element (85), country (27), discipline (73), enzyme (80), event (31), location (170), organization (273), person (230), protein (156), scientist (471), theory (20), university (130)" },
    Row { name: "uniner_mit-restaurant", split: "test", file: "UniversalNER-eval/mit-restaurant.json", sentences: 1520, mentions: 3150, bytes: 3524333, sha256: "736c0c19923b63f963abffbbcc7dc880f20f84a9f18fc539f4adeac743d8013f",
          types: "Amenity (533), Cuisine (532), Dish (287), Hours (212), Location (812), Price (171), Rating (201), Restaurant Name (402)" },
    Row { name: "conll2003-raw", split: "train", file: "CoNLL-2003/eng.train", sentences: 14041, mentions: 23499, bytes: 3281528, sha256: "eac0822f501353f265383ddf1edb0dcd42a1b6eefd3e383d7074db98c38eb41c",
          types: "LOC (7140), MISC (3438), ORG (6321), PER (6600)" },
    Row { name: "conll2003-raw", split: "dev", file: "CoNLL-2003/eng.testa", sentences: 3250, mentions: 5942, bytes: 827012, sha256: "aedc4ccbd1ae9795feaa0e86fe72d195b0258abed9d705b630d1c889276fac1e",
          types: "LOC (1837), MISC (922), ORG (1341), PER (1842)" },
    Row { name: "conll2003-raw", split: "test", file: "CoNLL-2003/eng.testb", sentences: 3453, mentions: 5648, bytes: 748096, sha256: "0632f32c090ef31c223135b7fee3187a7cf8e65c4015c7866bb7783428cdd9a6",
          types: "LOC (1668), MISC (702), ORG (1661), PER (1617)" },
    Row { name: "wnut17", split: "train", file: "WNUT-17/wnut17train.conll", sentences: 3394, mentions: 1975, bytes: 493781, sha256: "731820e13f71af324c6b55a1575ec2ce59fbaa2a0806f8f0400b98d56cd6a7a5",
          types: "corporation (221), creative-work (140), group (264), location (548), person (660), product (142)" },
    Row { name: "wnut17", split: "dev", file: "WNUT-17/emerging.dev.conll", sentences: 1009, mentions: 836, bytes: 114749, sha256: "e053b752b8155113ca66e7db08af5f2f5f43ab993694e4774f1ec5bad42312d8",
          types: "corporation (34), creative-work (105), group (39), location (74), person (470), product (114)" },
    Row { name: "wnut17", split: "test", file: "WNUT-17/emerging.test.annotated", sentences: 1287, mentions: 1079, bytes: 192425, sha256: "2aa79b764e56ec9264a1b30fdd9b70195bd00ff400b62edd8f399d5f13c178f0",
          types: "corporation (66), creative-work (142), group (165), location (150), person (429), product (127)" },
];

/// `type (count), ...` sorted by type, as `SOURCES.md` writes it.
fn type_counts(sentences: &[RawSentence]) -> String {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for e in sentences.iter().flat_map(|s| &s.entities) {
        *counts.entry(e.kind.as_str()).or_default() += 1;
    }
    counts.iter().map(|(t, n)| format!("{t} ({n})")).collect::<Vec<_>>().join(", ")
}

fn check_rows(prefix: &str) {
    let reg = registry();
    let rows: Vec<&Row> = ROWS.iter().filter(|r| r.file.starts_with(prefix)).collect();
    assert!(!rows.is_empty(), "no rows for {prefix}");
    for r in rows {
        let ds = reg.dataset(r.name, r.split).unwrap();
        assert_eq!(ds.path, reg.root().join(r.file), "{} {}", r.name, r.split);
        assert_eq!(std::fs::metadata(&ds.path).unwrap().len(), r.bytes, "{}", r.file);
        assert_eq!(ds.sha256().unwrap(), r.sha256, "{}", r.file);
        let raw = ds.read_raw().unwrap_or_else(|e| panic!("{e}"));
        let mentions: usize = raw.iter().map(|s| s.entities.len()).sum();
        assert_eq!((raw.len(), mentions), (r.sentences, r.mentions), "{}", r.file);
        assert_eq!(type_counts(&raw), r.types, "{}", r.file);
        for s in &raw {
            if let Some(t) = &s.tokens {
                assert_eq!(&s.sentence, &t.join(" "), "{}", r.file);
            }
            for e in &s.entities {
                // every position (given or recovered) points at the name
                if let Some((a, b)) = e.pos {
                    let got: String = s.sentence.chars().skip(a).take(b - a).collect();
                    assert_eq!(got, e.name, "{}: {:?}", r.file, s.sentence);
                }
            }
        }
    }
}

#[test]
fn crossner_bio_counts() {
    check_rows("CrossNER/");
}

#[test]
fn mit_bio_counts() {
    check_rows("MIT-");
}

#[test]
fn conll2003_counts() {
    check_rows("CoNLL-2003/");
}

#[test]
fn wnut17_counts() {
    check_rows("WNUT-17/");
}

#[test]
fn instructuie_counts() {
    check_rows("InstructUIE-IE_INSTRUCTIONS-NER/");
}

#[test]
fn universal_ner_counts() {
    check_rows("UniversalNER-eval/");
}

#[test]
fn every_registered_split_is_in_sources() {
    for name in Registry::names() {
        for split in Registry::splits(name).unwrap() {
            assert!(ROWS.iter().any(|r| r.name == name && r.split == split), "{name}/{split} not checked");
        }
    }
}

/// paper.md §10: gold mention counts of the zero-shot test sets after the paper's loader.
#[test]
fn paper_loader_gold_counts() {
    let reg = registry();
    let want = [5338, 3150, 1624, 2025, 2955, 3943, 2568];
    for (name, want) in ZERO_SHOT.iter().zip(want) {
        let ex = reg.load(name, "test").unwrap();
        let n: usize = ex.iter().map(|e| e.gold.len()).sum();
        assert_eq!(n, want, "{name}");
        for (i, e) in ex.iter().enumerate() {
            assert_eq!(e.id, format!("{name}/test/{i}"));
            assert_eq!(e.index, i);
            assert!(e.gold.iter().all(|g| e.labels.binary_search(&g.label).is_ok()), "{}", e.id);
            assert!(!e.labels.iter().any(|l| l == "else" || l == "misc"), "{}", e.id);
            assert_eq!(e.tokens.as_ref().unwrap().join(" "), e.text);
        }
    }
    let music = reg.load_variant("crossner_music", "test", GoldVariant::Corrected).unwrap();
    assert_eq!(music.iter().map(|e| e.gold.len()).sum::<usize>(), 3163);
    // the corrected variant only adds the `organisation` mentions back, under the schema's name
    let paper = reg.load("crossner_music", "test").unwrap();
    let orgs =
        |ex: &[rner::data::Example]| ex.iter().flat_map(|e| &e.gold).filter(|g| g.label == "organization").count();
    assert_eq!(orgs(&music) - orgs(&paper), 208);
}

#[test]
fn instructuie_examples_follow_the_file() {
    let reg = registry();
    let ex = reg.load("crossner_ai", "test").unwrap();
    assert_eq!(ex.len(), 431);
    let first = &ex[0];
    assert!(first.text.starts_with("Typical generative model approaches include naive Bayes classifier s"));
    assert_eq!(first.gold[0].text, "naive Bayes classifier");
    assert_eq!(first.gold[0].label, "algorithm");
    assert_eq!(first.gold[0].span, Some((44, 66)));
    assert_eq!(
        first.labels,
        [
            "algorithm",
            "conference",
            "country",
            "field",
            "location",
            "metrics",
            "organization",
            "person",
            "product",
            "program language",
            "researcher",
            "task",
            "university"
        ]
    );
}

#[test]
fn raw_formats_use_natural_labels() {
    let reg = registry();
    let conll = reg.load("conll2003-raw", "test").unwrap();
    assert_eq!(conll.len(), 3453);
    assert_eq!(conll[0].labels, ["location", "organization", "person"]);
    // MISC (702) is dropped as invalid
    assert_eq!(conll.iter().map(|e| e.gold.len()).sum::<usize>(), 5648 - 702);
    let movie = reg.load("mit-movie-raw", "test").unwrap();
    assert!(movie[0].labels.contains(&"average ratings".to_string()));
    assert_eq!(movie.iter().map(|e| e.gold.len()).sum::<usize>(), 5339);
    let ai = reg.load("crossner-raw_ai", "test").unwrap();
    assert!(ai[0].labels.contains(&"program language".to_string()));
    assert_eq!(ai.iter().map(|e| e.gold.len()).sum::<usize>(), 1809 - 181);
    let wnut = reg.load("wnut17", "dev").unwrap();
    assert_eq!(wnut[0].labels, ["corporation", "creative work", "group", "location", "person", "product"]);
    // the BOM glued to `Dubbz` in emerging.dev.conll is removed
    assert!(wnut.iter().flat_map(|e| &e.gold).any(|g| g.text == "Dubbz"));
    assert!(!wnut.iter().any(|e| e.text.contains('\u{feff}')));
    let uni = reg.load("uniner_crossner_music", "test").unwrap();
    assert_eq!(uni.iter().map(|e| e.gold.len()).sum::<usize>(), 3163);
}

#[test]
fn unknown_names_and_splits() {
    let reg = registry();
    match reg.load("crossner_ml", "test") {
        Err(Error::Config { flag, msg }) => {
            assert_eq!(flag, "--datasets");
            assert!(msg.contains("crossner_ai") && msg.contains("wnut17"), "{msg}");
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(reg.load("mit-movie-raw", "dev"), Err(Error::Config { .. })));
    assert!(matches!(reg.load("uniner_crossner_ai", "train"), Err(Error::Config { .. })));
}

#[test]
fn malformed_line_names_file_and_line() {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    write!(f, "EU\tB-ORG\nrejects\tO\nGerman B-MISC\ncall\tO\n").unwrap();
    let err = formats::read_token_tag(f.path()).unwrap_err();
    assert!(matches!(err, Error::Data { line: 3, .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.starts_with(&f.path().display().to_string()) && msg.contains(":3:"), "{msg}");

    let mut f = tempfile::NamedTempFile::new().unwrap();
    write!(f, "O\tfind\nB-ACTOR\tbruce\nX-ACTOR\twillis\n").unwrap();
    let msg = formats::read_tag_token(f.path()).unwrap_err().to_string();
    assert!(msg.contains(":3:") && msg.contains("X-ACTOR"), "{msg}");
}

#[test]
fn malformed_json_names_file_and_record() {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    write!(f, r#"[{{"sentence": "a b", "entities": []}}, {{"sentence": "c", "entities": [{{"name": "c"}}]}}]"#)
        .unwrap();
    let err = formats::read_instructuie(f.path()).unwrap_err().to_string();
    assert!(
        err.starts_with(&f.path().display().to_string()) && err.contains("record 1") && err.contains("type"),
        "{err}"
    );

    let mut f = tempfile::NamedTempFile::new().unwrap();
    let conv = r#"[{"id": "x_0", "conversations": [{"from": "human", "value": "Text: a b"}, {"from": "gpt", "value": "ok"},
        {"from": "human", "value": "Which type?"}, {"from": "gpt", "value": "[]"}]}]"#;
    write!(f, "{conv}").unwrap();
    let err = formats::read_universal_ner(f.path()).unwrap_err().to_string();
    assert!(err.contains("record 0") && err.contains("Which type?"), "{err}");

    // broken JSON inside a record still names the record; outside any record it is a JSON error
    let mut f = tempfile::NamedTempFile::new().unwrap();
    write!(f, r#"[{{"sentence": "a", "entities": []}}, {{"sentence": "#).unwrap();
    let err = formats::read_instructuie(f.path()).unwrap_err().to_string();
    assert!(err.contains("record 1: invalid JSON"), "{err}");
    let mut f = tempfile::NamedTempFile::new().unwrap();
    write!(f, "nope").unwrap();
    assert!(matches!(formats::read_instructuie(f.path()), Err(Error::Json { .. })));
    let mut f = tempfile::NamedTempFile::new().unwrap();
    write!(f, "{{}}").unwrap();
    let err = formats::read_instructuie(f.path()).unwrap_err().to_string();
    assert!(err.contains("expected a JSON list of records"), "{err}");
}

#[test]
fn samplers_are_reproducible() {
    let reg = registry();
    let ex = reg.load("crossner_politics", "test").unwrap();
    let a = sample(&ex, 50, 42);
    assert_eq!(a, sample(&ex, 50, 42));
    assert!(a.windows(2).all(|w| w[0].index < w[1].index));
    assert_eq!(fraction(&ex, 0.1, 42).len(), 65);
}

#[test]
fn missing_data_dir_is_a_clear_error() {
    let err = Registry::new("/nonexistent/rner-data").unwrap_err().to_string();
    assert!(err.contains("--data-dir") && err.contains("RNER_DATA"), "{err}");
}
