"""Unit conversion: length, mass, time and volume, one or two steps, to larger or smaller units.

Levels: 1 one step to a smaller unit (5 km -> m), value 1-30; 2 the same with 21-99;
3 to a larger unit, whole result (3000 m -> km); 4 to a larger unit, decimal result (2500 m -> 2.5 km);
5 two steps (km -> cm, hours -> seconds).
"""

from __future__ import annotations

import random
from fractions import Fraction

from dsforge.tasks.base import Family, Item, number_text

# (larger, smaller, how many smaller in one larger): one step
STEPS = [("kilometers", "meters", 1000), ("meters", "centimeters", 100), ("centimeters", "millimeters", 10),
         ("kilograms", "grams", 1000), ("hours", "minutes", 60), ("minutes", "seconds", 60),
         ("liters", "milliliters", 1000), ("days", "hours", 24)]
TWO_STEPS = [("kilometers", "centimeters", 100_000), ("meters", "millimeters", 1000),
             ("hours", "seconds", 3600), ("days", "minutes", 1440)]
LEVELS = {
    "1": {"steps": 1, "direction": "down", "values": [1, 30]},
    "2": {"steps": 1, "direction": "down", "values": [21, 99]},
    "3": {"steps": 1, "direction": "up", "values": [1, 20]},
    "4": {"steps": 1, "direction": "up", "values": [1, 20], "decimal": True},
    "5": {"steps": 2, "direction": "down", "values": [1, 20]},
}
SUFFIX = "Answer with just the number."


def generate(rng: random.Random, params: dict) -> Item:
    """One question 'Convert 5 kilometers to meters. Answer with just the number.' and its value."""
    big, small, factor = rng.choice(STEPS if params["steps"] == 1 else TWO_STEPS)
    lo, hi = params["values"]
    k = rng.randint(lo, hi)
    if params["direction"] == "down":
        amount, src, dst, value = k, big, small, Fraction(k * factor)
    else:
        # up: an amount of the smaller unit; decimal levels add half or a tenth of the larger unit
        frac = Fraction(rng.choice([1, 2, 3, 4, 5, 6, 7, 8, 9]), 10) if params.get("decimal") else Fraction(0)
        if params.get("decimal") and (frac * factor).denominator != 1:
            frac = Fraction(1, 2) if factor % 2 == 0 else Fraction(0)
        value = k + frac
        amount, src, dst = number_text(value * factor), small, big
    extra = {"from": src, "to": dst, "factor": factor, "amount": str(amount)}
    return f"Convert {amount} {src} to {dst}. {SUFFIX}", number_text(value), extra, "number"


FAMILY = Family("units", "unit conversion (km/m/cm/mm, kg/g, days/hours/minutes/seconds, L/mL)", LEVELS, generate,
                default_level="1")
