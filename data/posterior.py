"""The exact posterior of the repair labels under the generative process.

posterior(frame) is the Bayes-optimal prediction: for each session, P(label = 1 |
vehicle, DTCs, symptoms, sensor readings). It enumerates every fault set the
truncated prior allows for the vehicle's engine type, weighs each by prior times
likelihood, and averages the labels' noisy-OR probabilities under those weights.
It is the ceiling any model trained on the generated data is measured against.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from data.process import (
    CAR_MODELS,
    COUNTRIES,
    DTC_GIVEN_FAULT,
    DTC_LEAK_BY_ENGINE,
    DTCS,
    ENGINE_CAN_HAVE_FAULT,
    ENGINE_TYPES,
    FAULT_CONFIGURATIONS,
    LABEL_GIVEN_FAULT,
    LABEL_LEAK_BY_ENGINE,
    LABELS,
    SENSOR_BASELINES,
    SENSOR_NAMES,
    SENSOR_SDS,
    SENSOR_SHIFTS,
    SYMPTOM_GIVEN_FAULT,
    SYMPTOM_LEAK_BY_ENGINE,
    SYMPTOMS,
    fault_logits,
    noisy_or,
)

# Rows per chunk: bounds the [rows, fault configurations] work arrays to about 30 MB each.
CHUNK_ROWS = 5000


@dataclass(frozen=True)
class _EngineModel:
    """The process for one engine type: its possible fault sets and what each one predicts.

    Codes and symptoms the engine type can never show are left out of the
    likelihood (they are absent with probability 1); observing one is an error.
    """

    possible_faults: np.ndarray  # [faults] bool
    configurations: np.ndarray  # [configs, possible faults] 0/1
    dtc_possible: np.ndarray  # [DTCS] bool
    dtc_present: np.ndarray  # [configs, possible DTCs]
    symptom_possible: np.ndarray  # [SYMPTOMS] bool
    symptom_present: np.ndarray  # [configs, possible symptoms]
    sensor_means: np.ndarray  # [sensors, configs]
    label_present: np.ndarray  # [configs, LABELS]

    @classmethod
    def for_engine(cls, engine: int) -> "_EngineModel":
        possible_faults = ENGINE_CAN_HAVE_FAULT[engine]
        configurations = FAULT_CONFIGURATIONS[FAULT_CONFIGURATIONS[:, ~possible_faults].sum(axis=1) == 0]
        dtc_possible = DTC_LEAK_BY_ENGINE[engine] > 0
        symptom_possible = SYMPTOM_LEAK_BY_ENGINE[engine] > 0
        return cls(
            possible_faults=possible_faults,
            configurations=configurations[:, possible_faults],
            dtc_possible=dtc_possible,
            dtc_present=noisy_or(
                configurations, DTC_GIVEN_FAULT, DTC_LEAK_BY_ENGINE[engine])[:, dtc_possible],
            symptom_possible=symptom_possible,
            symptom_present=noisy_or(
                configurations, SYMPTOM_GIVEN_FAULT, SYMPTOM_LEAK_BY_ENGINE[engine])[:, symptom_possible],
            sensor_means=SENSOR_BASELINES[:, engine, None] + SENSOR_SHIFTS[:, engine] @ configurations.T,
            label_present=noisy_or(configurations, LABEL_GIVEN_FAULT, LABEL_LEAK_BY_ENGINE[engine]),
        )

    def configuration_weights(self, logits, dtcs, symptoms, readings) -> np.ndarray:
        """Posterior probability of each fault configuration, [rows, configurations]."""
        # Truncated independent-Bernoulli prior, up to a per-row constant:
        # the sum of the present faults' logits.
        log_joint = logits[:, self.possible_faults] @ self.configurations.T
        log_joint += _binary_log_likelihood(dtcs[:, self.dtc_possible], self.dtc_present)
        log_joint += _binary_log_likelihood(symptoms[:, self.symptom_possible], self.symptom_present)
        for s, sd in enumerate(SENSOR_SDS):
            recorded = ~np.isnan(readings[:, s])
            z = (readings[recorded, s, None] - self.sensor_means[s]) / sd
            log_joint[recorded] -= 0.5 * z**2
        log_joint -= log_joint.max(axis=1, keepdims=True)
        weights = np.exp(log_joint)
        return weights / weights.sum(axis=1, keepdims=True)


_ENGINE_MODELS = [_EngineModel.for_engine(engine) for engine in range(len(ENGINE_TYPES))]


def posterior(frame: pd.DataFrame) -> np.ndarray:
    """P(label_j = 1 | observed session) for every row, [rows, len(LABELS)] in LABELS order.

    Accepts a frame from generate_sessions or read back from its parquet files
    (lists as numpy arrays, missing readings as NaN or None). The label column,
    if present, is ignored. Missing sensor readings are missing completely at
    random, so they drop out of the likelihood.
    """
    car_model = _category_codes(frame, "car_model", CAR_MODELS)
    engine_type = _category_codes(frame, "engine_type", ENGINE_TYPES)
    country = _category_codes(frame, "country", COUNTRIES)
    build_year, mileage_km = (frame[column].to_numpy(dtype=float) for column in ("build_year", "mileage_km"))
    logits = fault_logits(car_model, engine_type, country, build_year, mileage_km)
    dtcs = _multi_hot(frame, "dtcs", DTCS)
    symptoms = _multi_hot(frame, "symptoms", SYMPTOMS)
    readings = np.column_stack([pd.to_numeric(frame[name]).to_numpy(dtype=float) for name in SENSOR_NAMES])

    probabilities = np.empty((len(frame), len(LABELS)))
    for engine, model in enumerate(_ENGINE_MODELS):
        rows = np.flatnonzero(engine_type == engine)
        _reject_impossible(rows, dtcs, model.dtc_possible, DTCS, engine)
        _reject_impossible(rows, symptoms, model.symptom_possible, SYMPTOMS, engine)
        recorded, recordable = ~np.isnan(readings), ~np.isnan(SENSOR_BASELINES[:, engine])
        _reject_impossible(rows, recorded, recordable, SENSOR_NAMES, engine)
        for start in range(0, len(rows), CHUNK_ROWS):
            chunk = rows[start:start + CHUNK_ROWS]
            weights = model.configuration_weights(
                logits[chunk], dtcs[chunk], symptoms[chunk], readings[chunk])
            probabilities[chunk] = weights @ model.label_present
    return probabilities


def _binary_log_likelihood(observed: np.ndarray, present_probability: np.ndarray) -> np.ndarray:
    """log P(observed 0/1 items | configuration) for independent items, [rows, configurations]."""
    return observed @ np.log(present_probability).T + (1.0 - observed) @ np.log1p(-present_probability).T


def _reject_impossible(rows: np.ndarray, observed: np.ndarray, possible: np.ndarray, names: list[str],
                       engine: int) -> None:
    """Raises if any of these rows (all of one engine type) shows an item that engine type never produces."""
    impossible = np.asarray(observed[rows][:, ~possible], dtype=bool)
    if impossible.any():
        row, item = np.argwhere(impossible)[0]
        name = np.array(names)[~possible][item]
        raise ValueError(f"row {rows[row]}: {name!r} never occurs on a {ENGINE_TYPES[engine]} vehicle "
                         f"under the generating process, so its posterior is undefined")


def _category_codes(frame: pd.DataFrame, column: str, vocabulary: list[str]) -> np.ndarray:
    codes = pd.Categorical(frame[column], categories=vocabulary).codes.astype(np.int64)
    if (codes < 0).any():
        unknown = sorted(set(frame[column][codes < 0].astype(str)))
        raise ValueError(f"column {column!r} has values the process never generates: {unknown}; "
                         f"expected one of {vocabulary}")
    return codes


def _multi_hot(frame: pd.DataFrame, column: str, vocabulary: list[str]) -> np.ndarray:
    """[rows, vocabulary] 0/1 matrix from a column of lists (or arrays; None reads as empty)."""
    position = {name: j for j, name in enumerate(vocabulary)}
    matrix = np.zeros((len(frame), len(vocabulary)))
    for i, items in enumerate(frame[column]):
        if items is None:
            continue
        for item in items:
            if item not in position:
                raise ValueError(f"row {i}: {column!r} holds {item!r}, which the process never generates")
            matrix[i, position[item]] = 1.0
    return matrix
