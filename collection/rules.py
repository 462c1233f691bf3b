"""The join and cleaning rules of the data collection job, as data.

Every rule the collection job (collection/job.py) applies to the raw
diagnostics and warranty sources is a value here, read from the configuration's
`collection.rules` section; README's "Data collection" section gives each
rule's reason. The defaults are the rules that recover the generated sessions
from `repairml data generate --raw` (data/raw_sources.py states them in prose).

This module is plain Python on purpose: the Spark job imports it on Dataproc
Serverless (Python 3.12, no TFX, no pydantic), and the job receives the rules
as JSON (CollectionRules.to_json / from_json), so local and production runs
apply the very same values.

The rules, in the order the job applies them:
  1. uploads: uploads of one VIN less than duplicate_upload_window_s apart are
     one session uploaded twice; the earliest is kept, with its DTC readouts;
  2. codes: DTC codes lose their spaces (strip_code_spaces) and are upper-cased
     (upper_case_codes); a session's dtcs are its codes as a set;
  3. units: a reading in a unit of coolant_temp_units becomes degrees Celsius
     as (value + offset) * scale; a unit not listed is a rule count
     ('unknown_unit') and the reading becomes missing;
  4. claims: claims whose status is in drop_claim_statuses are dropped; then,
     of claims equal on claim_duplicate_key, the earliest submitted one is kept;
  5. matching: a claim belongs to the session of its VIN with the latest
     session time on a date at least min_claim_delay_days and at most
     max_claim_delay_days before the repair date (the nearest session wins); a
     claim with no such session is an orphan, counted and dropped;
  6. labels: each part number is followed through superseded_by, at most
     max_supersession_steps steps, to its current number and label; each
     labour code to its label. A number or code without a label is a rule
     count ('unmapped_part_lines', 'unmapped_op_lines') and the line is
     dropped. repair_labels is the set of the session's claim labels; a session
     without a claim has none.
"""
from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from typing import Any, Mapping

__all__ = ["CollectionRules", "UnitConversion", "RulesError", "CLAIM_DUPLICATE_COLUMNS"]

# The claim columns that can make up claim_duplicate_key.
CLAIM_DUPLICATE_COLUMNS = ("vin", "workshop_id", "repair_date", "part_numbers", "labour_op_codes")


class RulesError(ValueError):
    """A rule with a value the job cannot apply; `key` is its dotted name in the rules."""

    def __init__(self, key: str, problem: str):
        super().__init__(f"{key}: {problem}")
        self.key = key
        self.problem = problem


@dataclass(frozen=True)
class UnitConversion:
    """degrees Celsius = (value + offset) * scale."""

    offset: float = 0.0
    scale: float = 1.0

    def to_celsius(self, value: float) -> float:
        return (value + self.offset) * self.scale


def _default_units() -> dict[str, UnitConversion]:
    return {"degC": UnitConversion(), "degF": UnitConversion(offset=-32.0, scale=5.0 / 9.0)}


@dataclass(frozen=True)
class CollectionRules:
    """The rules, with the defaults that recover `repairml data generate --raw`'s sessions."""

    # 1. Two uploads of one VIN closer than this are one session uploaded twice.
    duplicate_upload_window_s: int = 60
    # 2. Code normalisation.
    strip_code_spaces: bool = True
    upper_case_codes: bool = True
    # 3. Unit harmonisation of coolant_temp by coolant_temp_unit.
    coolant_temp_units: Mapping[str, UnitConversion] = field(default_factory=_default_units)
    # 4. Claims: statuses to drop, and the columns that make two claims one resubmitted claim.
    drop_claim_statuses: tuple[str, ...] = ("cancelled",)
    claim_duplicate_key: tuple[str, ...] = ("vin", "repair_date", "part_numbers", "labour_op_codes")
    # 5. Matching: the repair date is this many days after the session's date, inclusive.
    min_claim_delay_days: int = 1
    max_claim_delay_days: int = 45
    # 6. Labels: how many superseded_by steps to follow before giving up.
    max_supersession_steps: int = 5

    def __post_init__(self):
        for name in ("duplicate_upload_window_s", "max_claim_delay_days", "max_supersession_steps"):
            _check_int(name, getattr(self, name), minimum=1)
        _check_int("min_claim_delay_days", self.min_claim_delay_days, minimum=0)
        if self.min_claim_delay_days > self.max_claim_delay_days:
            raise RulesError("min_claim_delay_days", f"must not exceed max_claim_delay_days "
                             f"({self.max_claim_delay_days}), got {self.min_claim_delay_days}")
        for name in ("strip_code_spaces", "upper_case_codes"):
            if not isinstance(getattr(self, name), bool):
                raise RulesError(name, f"must be true or false, got {getattr(self, name)!r}")
        if not self.coolant_temp_units:
            raise RulesError("coolant_temp_units", "needs at least one unit, e.g. degC: {offset: 0, scale: 1}")
        for unit, conversion in self.coolant_temp_units.items():
            if not isinstance(conversion, UnitConversion):
                raise RulesError(f"coolant_temp_units.{unit}", "must be a UnitConversion")
            for part in ("offset", "scale"):
                value = getattr(conversion, part)
                if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                    raise RulesError(f"coolant_temp_units.{unit}.{part}", f"must be a finite number, got {value!r}")
            if conversion.scale == 0:
                raise RulesError(f"coolant_temp_units.{unit}.scale", "must not be 0")
        _check_strings("drop_claim_statuses", self.drop_claim_statuses)
        _check_strings("claim_duplicate_key", self.claim_duplicate_key)
        unknown = sorted(set(self.claim_duplicate_key) - set(CLAIM_DUPLICATE_COLUMNS))
        if unknown or not self.claim_duplicate_key:
            raise RulesError("claim_duplicate_key", f"must name claim columns among {list(CLAIM_DUPLICATE_COLUMNS)}"
                             + (f"; unknown: {unknown}" if unknown else ", at least one"))

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any] | None) -> "CollectionRules":
        """The rules from a plain mapping (YAML or JSON); missing keys keep their defaults."""
        raw = dict(raw or {})
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise RulesError(unknown[0], f"is not a collection rule; the rules are {sorted(known)}")
        if "coolant_temp_units" in raw:
            units = raw["coolant_temp_units"]
            if not isinstance(units, Mapping):
                raise RulesError("coolant_temp_units", "must map each unit to {offset, scale}, "
                                 f"got {units!r}")
            converted = {}
            for unit, value in units.items():
                if not isinstance(value, Mapping) or set(value) - {"offset", "scale"}:
                    raise RulesError(f"coolant_temp_units.{unit}", "must be {offset: NUMBER, scale: NUMBER}, "
                                     f"got {value!r}")
                converted[str(unit)] = UnitConversion(**value)
            raw["coolant_temp_units"] = converted
        for name in ("drop_claim_statuses", "claim_duplicate_key"):
            if name in raw:
                if not isinstance(raw[name], (list, tuple)):
                    raise RulesError(name, f"must be a list, got {raw[name]!r}")
                raw[name] = tuple(raw[name])
        return cls(**raw)

    def to_dict(self) -> dict[str, Any]:
        """Plain values: the inverse of from_dict."""
        values = dataclasses.asdict(self)
        values["drop_claim_statuses"] = list(self.drop_claim_statuses)
        values["claim_duplicate_key"] = list(self.claim_duplicate_key)
        return values

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "CollectionRules":
        return cls.from_dict(json.loads(text))


def _check_int(name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise RulesError(name, f"must be a whole number of at least {minimum}, got {value!r}")


def _check_strings(name: str, values: Any) -> None:
    if not isinstance(values, tuple) or not all(isinstance(v, str) and v for v in values):
        raise RulesError(name, f"must be a list of non-empty strings, got {values!r}")
