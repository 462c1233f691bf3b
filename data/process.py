"""The generative process of workshop diagnostic sessions.

This module defines the process: the vehicle fleet, the latent faults and their
prior given the vehicle, how faults show as diagnostic trouble codes (DTCs),
symptoms and freeze-frame sensor readings, and how workshops repair them (the
warranty labels). The sampler (generator.py) and the exact posterior
(posterior.py) both read these tables, so the two cannot disagree.

The process, per session:
  1. vehicle: country, car model, engine type (given model and country), build
     year (given engine type), mileage (given age, engine, model and country);
  2. faults: independent Bernoulli per fault with a logit that depends on the
     vehicle, truncated to at most MAX_FAULTS simultaneous faults;
  3. DTCs and symptoms: each present independently, noisy-OR over the faults;
  4. sensors: Gaussian around an engine baseline plus the faults' shifts, each
     reading missing completely at random (an EV records no fuel trim at all);
  5. repair labels: each fault independently picks one repair plan (a set of
     labour operations, each bringing its parts); a small leak adds labels
     without a fault (goodwill repairs, recall campaigns).
Codes, symptoms and labels leak only on engine types where some fault can
produce them, so an EV never shows a misfire code or a spark-plug repair.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Mapping

import numpy as np

# The columns of a session, grouped by feature kind.
CATEGORICAL_FEATURES = ["car_model", "engine_type", "country"]
NUMERIC_FEATURES = ["build_year", "mileage_km", "battery_voltage", "coolant_temp_c", "fuel_trim_pct"]
MULTIVALENT_FEATURES = ["dtcs", "symptoms"]
LABEL_COLUMN = "repair_labels"

MAX_FAULTS = 3
SENSOR_MISSING_RATE = 0.15
# The calendar year the fleet is observed in: a vehicle's age is FLEET_YEAR - build_year.
FLEET_YEAR = 2026
BUILD_YEARS = range(2008, 2026)

ENGINE_TYPES = ["petrol", "diesel", "hybrid", "ev"]


# --- The vehicle fleet -----------------------------------------------------------------


@dataclass(frozen=True)
class CarModel:
    name: str
    popularity: float
    engine_mix: Mapping[str, float]  # share of each engine type before the country tilt
    annual_km_factor: float = 1.0


@dataclass(frozen=True)
class Country:
    code: str
    popularity: float
    engine_tilt: Mapping[str, float] = field(default_factory=dict)  # multiplies engine_mix
    annual_km_factor: float = 1.0


CAR_MODELS_CATALOG = [
    CarModel("city_car", 0.16, {"petrol": 0.60, "diesel": 0.05, "hybrid": 0.15, "ev": 0.20}, 0.8),
    CarModel("compact_hatch", 0.20, {"petrol": 0.50, "diesel": 0.25, "hybrid": 0.12, "ev": 0.13}),
    CarModel("midsize_sedan", 0.14, {"petrol": 0.35, "diesel": 0.35, "hybrid": 0.20, "ev": 0.10}, 1.1),
    CarModel("estate_wagon", 0.10, {"petrol": 0.25, "diesel": 0.60, "hybrid": 0.10, "ev": 0.05}, 1.2),
    CarModel("compact_suv", 0.17, {"petrol": 0.40, "diesel": 0.20, "hybrid": 0.25, "ev": 0.15}),
    CarModel("large_suv", 0.09, {"petrol": 0.30, "diesel": 0.40, "hybrid": 0.20, "ev": 0.10}, 1.1),
    CarModel("light_van", 0.10, {"petrol": 0.10, "diesel": 0.75, "ev": 0.15}, 1.6),
    CarModel("sports_coupe", 0.04, {"petrol": 0.85, "hybrid": 0.10, "ev": 0.05}, 0.7),
]

COUNTRIES_CATALOG = [
    Country("DE", 0.22, {"diesel": 1.1}, 1.05),
    Country("FR", 0.15, {"diesel": 1.3}),
    Country("IT", 0.13, {"diesel": 1.3, "ev": 0.6}, 0.85),
    Country("ES", 0.10, {"diesel": 1.3, "ev": 0.7}, 0.9),
    Country("SE", 0.06, {"ev": 2.5, "hybrid": 1.3}, 1.1),
    Country("PL", 0.09, {"diesel": 1.5, "ev": 0.4, "hybrid": 0.6}, 0.95),
    Country("GB", 0.13, {"hybrid": 1.2}),
    Country("US", 0.12, {"diesel": 0.2, "petrol": 1.4, "hybrid": 1.2}, 1.3),
]

# First build year each engine type was sold in, and how fast its fleet thins out with age.
FIRST_BUILD_YEAR = {"petrol": 2008, "diesel": 2008, "hybrid": 2010, "ev": 2014}
FLEET_AGE_SCALE_YEARS = {"petrol": 9.0, "diesel": 8.0, "hybrid": 7.0, "ev": 5.0}
ANNUAL_KM = {"petrol": 13000.0, "diesel": 18000.0, "hybrid": 13000.0, "ev": 11000.0}
ANNUAL_KM_SPREAD = 0.3  # sd of log annual km
MAX_MILEAGE_KM = 600_000

CAR_MODELS = [model.name for model in CAR_MODELS_CATALOG]
COUNTRIES = [country.code for country in COUNTRIES_CATALOG]


# --- Observations: codes, symptoms and sensors -----------------------------------------

# Probability that a code (symptom) shows up without any fault: sensor glitches,
# stale fault memory, a customer's vague complaint. A leak applies only to engine
# types on which some fault can produce the item: an EV never logs a misfire.
DTC_LEAK = {
    "P0300": 0.015, "P0301": 0.005, "P0302": 0.005, "P0303": 0.005, "P0304": 0.005,
    "P0351": 0.003, "P0352": 0.003, "P0353": 0.003, "P0354": 0.003,
    "P0171": 0.015, "P0130": 0.005, "P0133": 0.01, "P0135": 0.008, "P0420": 0.02,
    "P0562": 0.02, "P0563": 0.005, "P0620": 0.003, "P0622": 0.003, "B1318": 0.01,
    "P0128": 0.01, "P0217": 0.004, "P0116": 0.008,
    "P0234": 0.004, "P0299": 0.01, "P2563": 0.004,
    "P2002": 0.01, "P2463": 0.008, "P244A": 0.005,
    "P0401": 0.01, "P0404": 0.006,
    "C0035": 0.006, "C0040": 0.006, "C0045": 0.006, "C1111": 0.01,
    "U0001": 0.005, "U0100": 0.015, "U0121": 0.01, "U0140": 0.01, "B1000": 0.008,
    "P0A7E": 0.003, "P0A93": 0.003, "P0A80": 0.003,
}
SYMPTOM_LEAK = {
    "no_start": 0.01, "hard_start": 0.02, "rough_idle": 0.02, "reduced_power": 0.03,
    "warning_light": 0.05, "battery_light": 0.01, "overheating": 0.01, "coolant_loss": 0.01,
    "poor_fuel_economy": 0.03, "smoke_exhaust": 0.01, "noise_front": 0.03, "wheel_hum": 0.015,
    "brake_squeal": 0.02, "brake_vibration": 0.015, "electrical_glitches": 0.02,
    "range_reduced": 0.02,
}
DTCS = list(DTC_LEAK)
SYMPTOMS = list(SYMPTOM_LEAK)


@dataclass(frozen=True)
class Sensor:
    name: str
    baseline: Mapping[str, float]  # mean reading per engine type; an absent engine type never records it
    sd: float


SENSORS = [
    Sensor("battery_voltage", {"petrol": 14.1, "diesel": 14.1, "hybrid": 14.0, "ev": 13.9}, 0.45),
    # On an EV the reading is the battery thermal-management loop, not an engine.
    Sensor("coolant_temp_c", {"petrol": 90.0, "diesel": 88.0, "hybrid": 86.0, "ev": 30.0}, 6.0),
    Sensor("fuel_trim_pct", {"petrol": 0.0, "diesel": 0.0, "hybrid": 0.0}, 4.0),
]
SENSOR_NAMES = [sensor.name for sensor in SENSORS]


# --- Repairs: labour operations and the parts they use ---------------------------------

# For each operation, the probability that it replaces each part.
OPERATIONS = {
    "op:replace_ignition_coil": {"part:ignition_coil": 1.0},
    "op:replace_spark_plugs": {"part:spark_plug_set": 1.0},
    "op:replace_lambda_sensor": {"part:lambda_sensor": 1.0},
    "op:replace_catalytic_converter": {"part:catalytic_converter": 1.0, "part:gasket_set": 0.7},
    "op:replace_12v_battery": {"part:battery_12v": 1.0},
    "op:battery_charge_and_test": {},
    "op:replace_alternator": {"part:alternator": 1.0, "part:drive_belt": 0.4},
    "op:replace_thermostat": {"part:thermostat": 1.0, "part:coolant": 0.9, "part:gasket_set": 0.4},
    "op:replace_water_pump": {
        "part:water_pump": 1.0, "part:coolant": 0.95, "part:gasket_set": 0.6, "part:drive_belt": 0.3,
    },
    "op:cooling_system_pressure_test": {"part:coolant": 0.5},
    "op:replace_turbo_actuator": {"part:turbo_actuator": 1.0, "part:gasket_set": 0.15},
    "op:ecu_software_update": {},
    "op:dpf_forced_regeneration": {},
    "op:replace_dpf": {"part:dpf": 1.0, "part:gasket_set": 0.5, "part:dpf_pressure_sensor": 0.4},
    "op:clean_egr_valve": {"part:gasket_set": 0.6},
    "op:replace_egr_valve": {"part:egr_valve": 1.0, "part:gasket_set": 0.8},
    "op:replace_brake_pads": {"part:brake_pads": 1.0, "part:brake_wear_sensor": 0.4},
    "op:replace_brake_discs_and_pads": {
        "part:brake_discs": 1.0, "part:brake_pads": 1.0, "part:brake_wear_sensor": 0.4,
    },
    "op:replace_wheel_bearing": {
        "part:wheel_bearing": 1.0, "part:wheel_hub_nut": 0.7, "part:wheel_speed_sensor": 0.15,
    },
    "op:replace_wheel_speed_sensor": {"part:wheel_speed_sensor": 1.0},
    "op:replace_gateway_module": {"part:gateway_module": 1.0},
    "op:repair_wiring_harness": {"part:wiring_connector": 0.8},
    "op:replace_hv_coolant_pump": {"part:hv_coolant_pump": 1.0, "part:coolant": 0.8},
}

PARTS = list(dict.fromkeys(part for parts in OPERATIONS.values() for part in parts))
LABELS = PARTS + list(OPERATIONS)

# Labels claimed without a diagnosed fault: goodwill, customer requests, recall
# campaigns. As for codes, only on engine types where some fault leads to the label.
DEFAULT_LABEL_LEAK = 0.001
LABEL_LEAK_OVERRIDES = {
    "part:battery_12v": 0.004, "op:replace_12v_battery": 0.004, "op:battery_charge_and_test": 0.005,
    "part:brake_pads": 0.004, "op:replace_brake_pads": 0.004, "part:coolant": 0.003,
    "op:ecu_software_update": 0.01,
}


@dataclass(frozen=True)
class RepairPlan:
    """One way a workshop fixes a fault: a set of operations chosen together."""

    probability: float
    operations: tuple[str, ...]


# --- Faults ----------------------------------------------------------------------------

ALL_ENGINES = {"petrol": 0.0, "diesel": 0.0, "hybrid": 0.0, "ev": 0.0}


@dataclass(frozen=True)
class Fault:
    """A latent root cause: its prior given the vehicle, its signature and its repairs.

    base_rate is the prior for a reference vehicle (8 years old, 100,000 km, no
    model or country effect). engine_offsets are logit offsets; an engine type not
    listed cannot have the fault. age_effect is the logit change per 5 years
    beyond 8, mileage_effect per 100,000 km beyond 100,000. dtcs and symptoms give
    the probability that the fault alone produces each observation. sensor_shifts
    give, per sensor and engine type, the shift of the reading's mean. Repair plans
    are mutually exclusive; their probabilities may sum below 1 (no repair claimed).
    """

    name: str
    base_rate: float
    engine_offsets: Mapping[str, float]
    dtcs: Mapping[str, float]
    symptoms: Mapping[str, float]
    repairs: tuple[RepairPlan, ...]
    age_effect: float = 0.0
    mileage_effect: float = 0.0
    model_offsets: Mapping[str, float] = field(default_factory=dict)
    country_offsets: Mapping[str, float] = field(default_factory=dict)
    sensor_shifts: Mapping[str, Mapping[str, float]] = field(default_factory=dict)


FAULT_CATALOG = [
    Fault(
        "brake_wear", 0.30, {"petrol": 0.0, "diesel": 0.0, "hybrid": -0.5, "ev": -0.8},
        dtcs={"C1111": 0.3},
        symptoms={"brake_squeal": 0.6, "brake_vibration": 0.3, "noise_front": 0.15},
        repairs=(RepairPlan(0.6, ("op:replace_brake_pads",)),
                 RepairPlan(0.35, ("op:replace_brake_discs_and_pads",))),
        age_effect=0.1, mileage_effect=0.5,
        model_offsets={"large_suv": 0.4, "light_van": 0.5, "sports_coupe": 0.6, "city_car": -0.2},
        country_offsets={"IT": 0.3, "SE": 0.2, "US": -0.2},
    ),
    Fault(
        "battery_12v_failure", 0.22, ALL_ENGINES,
        dtcs={"P0562": 0.35, "B1318": 0.3, "U0100": 0.12, "U0140": 0.1},
        symptoms={"no_start": 0.45, "hard_start": 0.4, "electrical_glitches": 0.25, "battery_light": 0.15},
        repairs=(RepairPlan(0.75, ("op:replace_12v_battery",)),
                 RepairPlan(0.2, ("op:battery_charge_and_test",))),
        age_effect=0.5,
        model_offsets={"city_car": 0.3},
        country_offsets={"SE": 0.6, "PL": 0.4, "DE": 0.2, "ES": -0.3, "IT": -0.2},
        sensor_shifts={"battery_voltage": {"petrol": -0.9, "diesel": -0.9, "hybrid": -0.9, "ev": -0.9}},
    ),
    Fault(
        "spark_plug_wear", 0.20, {"petrol": 0.0, "hybrid": -0.3},
        dtcs={"P0300": 0.55, "P0301": 0.08, "P0302": 0.08, "P0303": 0.08, "P0304": 0.08, "P0420": 0.12},
        symptoms={"rough_idle": 0.5, "hard_start": 0.3, "poor_fuel_economy": 0.3,
                  "warning_light": 0.35, "reduced_power": 0.15},
        repairs=(RepairPlan(0.9, ("op:replace_spark_plugs",)),
                 RepairPlan(0.05, ("op:replace_spark_plugs", "op:replace_ignition_coil"))),
        age_effect=0.3, mileage_effect=0.6,
        model_offsets={"sports_coupe": 0.5},
        sensor_shifts={"fuel_trim_pct": {"petrol": 1.5, "hybrid": 1.5}},
    ),
    Fault(
        "ignition_coil_failure", 0.12, {"petrol": 0.0, "hybrid": -0.2},
        dtcs={"P0300": 0.35, "P0301": 0.2, "P0302": 0.2, "P0303": 0.2, "P0304": 0.2,
              "P0351": 0.15, "P0352": 0.15, "P0353": 0.15, "P0354": 0.15, "P0420": 0.1},
        symptoms={"rough_idle": 0.6, "warning_light": 0.55, "reduced_power": 0.25,
                  "hard_start": 0.1, "poor_fuel_economy": 0.1},
        repairs=(RepairPlan(0.85, ("op:replace_ignition_coil",)),
                 RepairPlan(0.1, ("op:replace_ignition_coil", "op:replace_spark_plugs"))),
        age_effect=0.2, mileage_effect=0.3,
        model_offsets={"compact_hatch": 0.4},
        country_offsets={"US": -0.3},
    ),
    Fault(
        "lambda_sensor_failure", 0.10, {"petrol": 0.0, "diesel": -0.7, "hybrid": -0.2},
        dtcs={"P0130": 0.35, "P0133": 0.4, "P0135": 0.3, "P0171": 0.3, "P0420": 0.3},
        symptoms={"warning_light": 0.6, "poor_fuel_economy": 0.4, "rough_idle": 0.1},
        repairs=(RepairPlan(0.9, ("op:replace_lambda_sensor",)),
                 RepairPlan(0.04, ("op:replace_lambda_sensor", "op:replace_catalytic_converter"))),
        age_effect=0.4, mileage_effect=0.3,
        sensor_shifts={"fuel_trim_pct": {"petrol": 8.0, "diesel": 8.0, "hybrid": 8.0}},
    ),
    Fault(
        "wheel_bearing_wear", 0.07, ALL_ENGINES | {"ev": 0.3},
        dtcs={"C0035": 0.15, "C0040": 0.15, "C0045": 0.1},
        symptoms={"wheel_hum": 0.65, "noise_front": 0.35, "warning_light": 0.05},
        repairs=(RepairPlan(0.92, ("op:replace_wheel_bearing",)),),
        age_effect=0.4, mileage_effect=0.4,
        model_offsets={"light_van": 0.6, "large_suv": 0.3},
        country_offsets={"SE": 0.3, "PL": 0.3, "US": -0.3},
    ),
    Fault(
        "egr_valve_fault", 0.10, {"diesel": 0.0, "petrol": -1.5},
        dtcs={"P0401": 0.5, "P0404": 0.35, "P0299": 0.1, "P2463": 0.1},
        symptoms={"rough_idle": 0.3, "reduced_power": 0.35, "smoke_exhaust": 0.35, "warning_light": 0.45},
        repairs=(RepairPlan(0.4, ("op:clean_egr_valve",)), RepairPlan(0.5, ("op:replace_egr_valve",))),
        age_effect=0.3, mileage_effect=0.5,
        model_offsets={"estate_wagon": 0.5, "light_van": 0.3},
        sensor_shifts={"fuel_trim_pct": {"petrol": -3.0, "diesel": -3.0}},
    ),
    Fault(
        "thermostat_stuck", 0.05, {"petrol": 0.0, "diesel": 0.0, "hybrid": 0.0},
        dtcs={"P0128": 0.6, "P0217": 0.15, "P0116": 0.1},
        symptoms={"overheating": 0.2, "poor_fuel_economy": 0.15, "warning_light": 0.3},
        repairs=(RepairPlan(0.92, ("op:replace_thermostat",)),),
        age_effect=0.4,
        model_offsets={"midsize_sedan": 0.6},
        country_offsets={"SE": 0.3},
        sensor_shifts={"coolant_temp_c": {"petrol": -16.0, "diesel": -16.0, "hybrid": -14.0}},
    ),
    Fault(
        "dpf_clogged", 0.12, {"diesel": 0.0},
        dtcs={"P2002": 0.45, "P2463": 0.4, "P244A": 0.15, "P0299": 0.1, "P0401": 0.08},
        symptoms={"reduced_power": 0.5, "warning_light": 0.6, "smoke_exhaust": 0.2, "poor_fuel_economy": 0.2},
        repairs=(RepairPlan(0.55, ("op:dpf_forced_regeneration",)),
                 RepairPlan(0.35, ("op:replace_dpf",)),
                 RepairPlan(0.05, ("op:dpf_forced_regeneration", "op:ecu_software_update"))),
        mileage_effect=0.3,
        # Short urban trips never reach regeneration temperature.
        model_offsets={"city_car": 0.8, "compact_hatch": 0.3, "light_van": 0.2},
        country_offsets={"IT": 0.3, "US": -0.5},
    ),
    Fault(
        "wheel_speed_sensor_fault", 0.03, ALL_ENGINES,
        dtcs={"C0035": 0.45, "C0040": 0.45, "C0045": 0.4, "U0121": 0.05},
        symptoms={"warning_light": 0.7},
        repairs=(RepairPlan(0.9, ("op:replace_wheel_speed_sensor",)),),
        age_effect=0.3,
        # Road salt corrodes the sensor connectors.
        country_offsets={"SE": 0.5, "PL": 0.4, "DE": 0.2},
    ),
    Fault(
        # Hybrids and EVs feed their 12 V net from a DC-DC converter, not an alternator.
        "alternator_failure", 0.05, {"petrol": 0.0, "diesel": 0.0},
        dtcs={"P0562": 0.5, "P0620": 0.3, "P0622": 0.25, "P0563": 0.1, "B1318": 0.2},
        symptoms={"battery_light": 0.6, "no_start": 0.2, "electrical_glitches": 0.3, "noise_front": 0.15},
        repairs=(RepairPlan(0.8, ("op:replace_alternator",)),
                 RepairPlan(0.12, ("op:replace_alternator", "op:replace_12v_battery")),
                 RepairPlan(0.05, ("op:battery_charge_and_test",))),
        age_effect=0.5, mileage_effect=0.3,
        sensor_shifts={"battery_voltage": {"petrol": -1.8, "diesel": -1.8}},
    ),
    Fault(
        "water_pump_leak", 0.035, {"petrol": 0.0, "diesel": 0.0, "hybrid": 0.0},
        dtcs={"P0217": 0.35, "P0116": 0.15},
        symptoms={"overheating": 0.55, "coolant_loss": 0.55, "noise_front": 0.2, "warning_light": 0.3},
        repairs=(RepairPlan(0.55, ("op:replace_water_pump",)),
                 RepairPlan(0.2, ("op:cooling_system_pressure_test", "op:replace_water_pump")),
                 RepairPlan(0.15, ("op:replace_water_pump", "op:replace_thermostat")),
                 RepairPlan(0.05, ("op:cooling_system_pressure_test",))),
        age_effect=0.5, mileage_effect=0.3,
        country_offsets={"ES": 0.4, "IT": 0.3, "US": 0.2},
        sensor_shifts={"coolant_temp_c": {"petrol": 12.0, "diesel": 12.0, "hybrid": 12.0}},
    ),
    Fault(
        "turbo_actuator_fault", 0.05, {"diesel": 0.0, "petrol": -1.0},
        dtcs={"P0234": 0.3, "P0299": 0.45, "P2563": 0.35},
        symptoms={"reduced_power": 0.7, "warning_light": 0.5, "smoke_exhaust": 0.15},
        repairs=(RepairPlan(0.8, ("op:replace_turbo_actuator",)),
                 RepairPlan(0.12, ("op:ecu_software_update",))),
        mileage_effect=0.4,
        model_offsets={"sports_coupe": 0.9, "large_suv": 0.3},
    ),
    Fault(
        "catalytic_converter_failure", 0.02, {"petrol": 0.0, "diesel": -0.5, "hybrid": -0.5},
        dtcs={"P0420": 0.75, "P0171": 0.05},
        symptoms={"warning_light": 0.55, "reduced_power": 0.3, "poor_fuel_economy": 0.25},
        repairs=(RepairPlan(0.9, ("op:replace_catalytic_converter",)),),
        age_effect=0.5, mileage_effect=0.5,
    ),
    Fault(
        "can_gateway_fault", 0.008, ALL_ENGINES | {"hybrid": 0.3, "ev": 0.6},
        dtcs={"U0001": 0.45, "U0100": 0.3, "U0121": 0.35, "U0140": 0.35, "B1000": 0.3},
        symptoms={"electrical_glitches": 0.55, "warning_light": 0.5, "no_start": 0.1},
        repairs=(RepairPlan(0.4, ("op:ecu_software_update",)),
                 RepairPlan(0.3, ("op:replace_gateway_module",)),
                 RepairPlan(0.25, ("op:repair_wiring_harness",))),
        # Newer vehicles carry more networked control units.
        age_effect=-0.4,
        model_offsets={"compact_suv": 0.8},
    ),
    Fault(
        "hv_battery_cooling_fault", 0.03, {"hybrid": 0.0, "ev": 0.3},
        dtcs={"P0A7E": 0.5, "P0A93": 0.3, "P0A80": 0.15},
        symptoms={"range_reduced": 0.5, "reduced_power": 0.3, "warning_light": 0.55},
        repairs=(RepairPlan(0.55, ("op:replace_hv_coolant_pump",)),
                 RepairPlan(0.3, ("op:ecu_software_update",)),
                 RepairPlan(0.1, ("op:replace_hv_coolant_pump", "op:ecu_software_update"))),
        age_effect=0.3,
        country_offsets={"ES": 0.6, "IT": 0.5, "US": 0.4, "SE": -0.4},
        sensor_shifts={"coolant_temp_c": {"hybrid": 4.0, "ev": 10.0}},
    ),
]
FAULTS = [fault.name for fault in FAULT_CATALOG]


# --- Derived arrays: the process in matrix form ----------------------------------------


def _fault_by_item(items: list[str], signature_of) -> np.ndarray:
    """[faults, items] matrix of per-fault probabilities read from each fault's signature."""
    column = {item: j for j, item in enumerate(items)}
    table = np.zeros((len(FAULT_CATALOG), len(items)))
    for k, fault in enumerate(FAULT_CATALOG):
        for item, probability in signature_of(fault).items():
            table[k, column[item]] = probability
    return table


def _label_marginals(fault: Fault) -> dict[str, float]:
    """Probability that the fault, through its repair plans, produces each label."""
    marginals: dict[str, float] = {}
    for plan in fault.repairs:
        for operation in plan.operations:
            marginals[operation] = marginals.get(operation, 0.0) + plan.probability
        parts = {part for operation in plan.operations for part in OPERATIONS[operation]}
        for part in parts:
            part_missed = np.prod([1.0 - OPERATIONS[op].get(part, 0.0) for op in plan.operations])
            marginals[part] = marginals.get(part, 0.0) + plan.probability * (1.0 - part_missed)
    return marginals


def _logit(probability: float) -> float:
    return float(np.log(probability / (1.0 - probability)))


BASE_LOGITS = np.array([_logit(fault.base_rate) for fault in FAULT_CATALOG])
AGE_EFFECTS = np.array([fault.age_effect for fault in FAULT_CATALOG])
MILEAGE_EFFECTS = np.array([fault.mileage_effect for fault in FAULT_CATALOG])
ENGINE_OFFSETS = np.array(  # [engine, fault]; -inf where the engine cannot have the fault
    [[fault.engine_offsets.get(engine, -np.inf) for fault in FAULT_CATALOG] for engine in ENGINE_TYPES]
)
MODEL_OFFSETS = np.array([[f.model_offsets.get(m, 0.0) for f in FAULT_CATALOG] for m in CAR_MODELS])
COUNTRY_OFFSETS = np.array([[f.country_offsets.get(c, 0.0) for f in FAULT_CATALOG] for c in COUNTRIES])
ENGINE_CAN_HAVE_FAULT = np.isfinite(ENGINE_OFFSETS)  # [engine, fault]

DTC_GIVEN_FAULT = _fault_by_item(DTCS, lambda fault: fault.dtcs)
SYMPTOM_GIVEN_FAULT = _fault_by_item(SYMPTOMS, lambda fault: fault.symptoms)
LABEL_GIVEN_FAULT = _fault_by_item(LABELS, _label_marginals)


def _leak_by_engine(leak: np.ndarray, given_fault: np.ndarray) -> np.ndarray:
    """[engine, items] leak: the item's leak where some fault possible on the engine produces it, else 0."""
    reachable = (ENGINE_CAN_HAVE_FAULT.astype(float) @ (given_fault > 0)) > 0
    return np.where(reachable, leak, 0.0)


DTC_LEAK_BY_ENGINE = _leak_by_engine(np.array([DTC_LEAK[code] for code in DTCS]), DTC_GIVEN_FAULT)
SYMPTOM_LEAK_BY_ENGINE = _leak_by_engine(np.array([SYMPTOM_LEAK[s] for s in SYMPTOMS]), SYMPTOM_GIVEN_FAULT)
LABEL_LEAK_BY_ENGINE = _leak_by_engine(
    np.array([LABEL_LEAK_OVERRIDES.get(label, DEFAULT_LABEL_LEAK) for label in LABELS]), LABEL_GIVEN_FAULT
)

SENSOR_BASELINES = np.array(  # [sensor, engine]; NaN where the engine type never records the sensor
    [[sensor.baseline.get(engine, np.nan) for engine in ENGINE_TYPES] for sensor in SENSORS]
)
SENSOR_SHIFTS = np.array(  # [sensor, engine, fault]
    [[[fault.sensor_shifts.get(sensor.name, {}).get(engine, 0.0) for fault in FAULT_CATALOG]
      for engine in ENGINE_TYPES] for sensor in SENSORS]
)
SENSOR_SDS = np.array([sensor.sd for sensor in SENSORS])

# Every fault set the truncated prior allows, as a [configurations, faults] 0/1 matrix.
FAULT_CONFIGURATIONS = np.array(
    [[1.0 if k in chosen else 0.0 for k in range(len(FAULTS))]
     for size in range(MAX_FAULTS + 1) for chosen in itertools.combinations(range(len(FAULTS)), size)]
)


def _check_consistency() -> None:
    """Fail at import if the tables contradict each other, naming the offending entry."""
    for fault in FAULT_CATALOG:
        unknown = (set(fault.dtcs) - set(DTCS)) | (set(fault.symptoms) - set(SYMPTOMS))
        unknown |= {op for plan in fault.repairs for op in plan.operations} - set(OPERATIONS)
        unknown |= set(fault.engine_offsets) - set(ENGINE_TYPES)
        unknown |= set(fault.model_offsets) - set(CAR_MODELS)
        unknown |= set(fault.country_offsets) - set(COUNTRIES)
        unknown |= set(fault.sensor_shifts) - set(SENSOR_NAMES)
        if unknown:
            raise ValueError(f"fault {fault.name!r} refers to unknown names {sorted(unknown)}")
        if sum(plan.probability for plan in fault.repairs) > 1.0:
            raise ValueError(f"fault {fault.name!r}: repair plan probabilities sum above 1")
    tables = ((DTCS, DTC_GIVEN_FAULT), (SYMPTOMS, SYMPTOM_GIVEN_FAULT), (LABELS, LABEL_GIVEN_FAULT))
    for items, table in tables:
        if table.max() >= 1.0:
            raise ValueError("a per-fault observation or label probability reaches 1; keep it below 1")
        orphans = [item for item, produced in zip(items, table.max(axis=0) > 0) if not produced]
        if orphans:
            raise ValueError(f"no fault produces {orphans}; attach them to a fault or remove them")
    if NUMERIC_FEATURES[2:] != SENSOR_NAMES:
        raise ValueError("NUMERIC_FEATURES must end with the sensors in SENSORS order")


_check_consistency()


# --- The process's conditional distributions -------------------------------------------


def fault_logits(car_model: np.ndarray, engine_type: np.ndarray, country: np.ndarray,
                 build_year: np.ndarray, mileage_km: np.ndarray) -> np.ndarray:
    """Prior logit of each fault before truncation, [sessions, faults].

    The categorical arguments are integer codes into CAR_MODELS, ENGINE_TYPES and
    COUNTRIES. A fault the engine type cannot have gets -inf.
    """
    age_beyond_reference = (FLEET_YEAR - np.asarray(build_year, dtype=float) - 8.0) / 5.0
    # Beyond 400,000 km more wear adds no risk: the vehicle has had its repairs.
    mileage_beyond_reference = np.minimum(np.asarray(mileage_km, dtype=float) / 1e5, 4.0) - 1.0
    return (
        BASE_LOGITS
        + ENGINE_OFFSETS[engine_type]
        + MODEL_OFFSETS[car_model]
        + COUNTRY_OFFSETS[country]
        + age_beyond_reference[:, None] * AGE_EFFECTS
        + mileage_beyond_reference[:, None] * MILEAGE_EFFECTS
    )


def noisy_or(faults: np.ndarray, given_fault: np.ndarray, leak: np.ndarray) -> np.ndarray:
    """P(item present | fault set) = 1 - (1 - leak) * prod over present faults (1 - p).

    faults is a 0/1 matrix [rows, faults]; leak is [items] or [rows, items];
    the result is [rows, items].
    """
    log_absent = np.log1p(-leak) + faults @ np.log1p(-given_fault)
    return -np.expm1(log_absent)


def sensor_means(faults: np.ndarray, engine_type: np.ndarray) -> np.ndarray:
    """Mean sensor readings [rows, sensors] for 0/1 fault sets [rows, faults] and engine codes [rows]."""
    shifts = np.einsum("rk,srk->rs", faults, SENSOR_SHIFTS[:, engine_type, :])
    return SENSOR_BASELINES[:, engine_type].T + shifts
