"""Writes this folder's self-made, tweet-like stance dataset (deterministic: same files every run).

Three local-policy targets, each a task of schema.yaml: protected bike lanes, a four-day work week and
a phone ban in schools. Every post is written from templates for one target and one stance (favor,
against, none) and is labelled for that target only, as in public stance datasets (partial labels).

    python examples/stance_tweets/make_data.py   # -> posts.csv, labels.csv, test.csv
"""

from __future__ import annotations

import csv
import random
from pathlib import Path

HERE = Path(__file__).resolve().parent

TARGETS = {
    "bike_lanes": {
        "topic": ["the new bike lanes", "protected bike lanes", "the Main Street cycle track", "the bike lane plan"],
        "favor": ["finally feel safe riding to work thanks to {t}", "{t} made my commute calmer and faster",
                  "more of this please: {t} are saving lives", "kids can cycle to school now because of {t}",
                  "shops on the corner report more customers since {t} opened"],
        "against": ["{t} took every parking space on my block", "traffic is gridlocked since {t} went in",
                    "nobody uses {t}, a total waste of road space", "deliveries are a nightmare because of {t}",
                    "{t} were forced on us without a real consultation"],
        "none": ["the council meets tonight to discuss {t}", "a report on {t} is due next spring",
                 "read the full document on {t} at city hall", "anyone know when the vote on {t} happens",
                 "photos from the opening of {t} are online"],
    },
    "four_day_week": {
        "topic": ["the four-day week", "a 4-day work week", "the four day week trial", "a shorter work week"],
        "favor": ["our team got more done after moving to {t}", "{t} gave me my life back, I sleep properly now",
                  "burnout dropped in every firm that tried {t}", "productivity up and sick days down with {t}",
                  "every company should copy {t}, staff are happier"],
        "against": ["{t} would wreck small businesses like mine", "customers hate waiting an extra day because of {t}",
                    "{t} just squeezes five days of stress into four", "{t} is a fantasy that costs jobs",
                    "we tried {t} and deadlines slipped every month"],
        "none": ["a survey about {t} closes on Friday", "the union and employers will debate {t} on radio",
                 "here is how {t} works in other countries", "panel on {t} at the library next week",
                 "new figures on {t} are published tomorrow"],
    },
    "school_phones": {
        "topic": ["the school phone ban", "banning phones in class", "phone-free schools", "the mobile ban at school"],
        "favor": ["teachers say pupils listen again since {t}", "{t} brought back conversations at lunch",
                  "bullying reports fell after {t}, good call", "my son reads more thanks to {t}",
                  "grades improved in the first term of {t}"],
        "against": ["{t} leaves parents unable to reach kids in an emergency", "{t} treats teenagers like toddlers",
                    "{t} ignores how students actually learn today", "{t} is unenforceable and a waste of staff time",
                    "{t} punishes every pupil for a few bad apples"],
        "none": ["the ministry will publish guidance on {t}", "open evening tonight includes a talk on {t}",
                 "researchers are surveying schools about {t}", "what time is the meeting on {t}",
                 "a podcast episode on {t} is out"],
    },
}
OPENERS = ["", "Honestly, ", "Hot take: ", "Update: ", "So ", "Well, ", "Just saying, ", "FYI "]
TAGS = ["", " #localnews", " #ourcity", " #thread", " #debate", ""]
STANCES = ("favor", "against", "none")


def posts(seed: int = 7) -> list[dict]:
    """About 230 unique posts: (id, text, target, stance)."""
    rng = random.Random(seed)
    rows, seen = [], set()
    for target, parts in TARGETS.items():
        for stance in STANCES:
            wanted = 28 if stance != "none" else 21
            while sum(1 for r in rows if r["target"] == target and r["stance"] == stance) < wanted:
                body = rng.choice(parts[stance]).format(t=rng.choice(parts["topic"]))
                text = f"{rng.choice(OPENERS)}{body}{rng.choice(TAGS)}"
                text = text[0].upper() + text[1:]
                if text not in seen:
                    seen.add(text)
                    rows.append({"id": f"t{len(rows) + 1:04d}", "text": text, "target": target, "stance": stance})
    rng.shuffle(rows)
    return rows


def main() -> None:
    rows = posts()
    test, train = rows[:30], rows[30:]
    with open(HERE / "posts.csv", "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["id", "text", "target"])
        writer.writerows([r["id"], r["text"], r["target"]] for r in sorted(train, key=lambda r: r["id"]))
    with open(HERE / "labels.csv", "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["id", "task", "label"])  # upper-case classes, as public datasets write them
        writer.writerows([r["id"], r["target"], r["stance"].upper()] for r in sorted(train, key=lambda r: r["id"]))
    with open(HERE / "test.csv", "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["id", "text", "target", "stance"])
        writer.writerows([r["id"], r["text"], r["target"], r["stance"]] for r in sorted(test, key=lambda r: r["id"]))


if __name__ == "__main__":
    main()
