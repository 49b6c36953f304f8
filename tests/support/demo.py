"""UIDs of the demo data's users (messaging/demo.py), as the API tests name them."""

from __future__ import annotations

ADMIN, MOBILE, ALICE, IBRAHIM, FATMATA, MOHAMED = (
    "xE7jOejl9FI",
    "PhzytPW3g2J",
    "OYLGMiazHtW",
    "N3PZBUlN8vq",
    "awtnYWiVEd5",
    "Kh68cDMwZsg",
)

# Groups and organisation units: every id names one object only (DHIS2's doc reuses DiszpKrYNg8 for both).
FIELD_WORKERS, NGELEHUN_STAFF, FEEDBACK_GROUP = "ZoHNWQajIoe", "EzMMCXOSPpJ", "QYrzIjSfI8z"
NGELEHUN_CHC = "DiszpKrYNg8"
