"""Sensor that waits until what a run sent to Adobe Experience Platform has landed."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import (
    AirflowSensorTimeout,
    BaseSensorOperator,
    PokeReturnValue,
    conf,
)

from airflow_provider_capillary.exceptions import AEPAuthError, AEPError
from airflow_provider_capillary.hooks.aep import AEPHook
from airflow_provider_capillary.triggers.aep import (
    AEPIngestionTrigger,
    IngestionResult,
    LandingCheck,
    assess_batches,
    profile_outcome,
)

if TYPE_CHECKING:
    from airflow.sdk import Context

#: Epoch values below this (before 1973-03-03 in milliseconds) are almost certainly seconds.
_MIN_EPOCH_MS = 100_000_000_000


class AEPIngestionFailedError(AEPError):
    """AEP reported a failed batch (or one stalled, aborted or abandoned) for a watched dataset."""


def to_epoch_ms(value: int | float | str | datetime | date) -> int:
    """An instant given as epoch milliseconds (number or digits) or ISO 8601 text/datetime, as epoch milliseconds.

    Naive datetimes are taken as UTC.

    :raises ValueError: when the value is neither, or looks like epoch seconds.
    """
    if isinstance(value, bool):
        raise ValueError(f"since must be epoch milliseconds or an ISO 8601 instant, not {value!r}")
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        value = int(value.strip())
    if isinstance(value, int | float):
        if value < _MIN_EPOCH_MS:
            raise ValueError(
                f"since={value!r} looks like epoch seconds; AEP Catalog filters on epoch milliseconds "
                f"(e.g. {int(value * 1000)})"
            )
        return int(value)
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(
                f"since={value!r} is neither epoch milliseconds nor an ISO 8601 instant (2025-06-01T02:00:00Z)"
            ) from None
    if isinstance(value, datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=UTC)
        return int(moment.timestamp() * 1000)
    if isinstance(value, date):
        return int(datetime(value.year, value.month, value.day, tzinfo=UTC).timestamp() * 1000)
    raise ValueError(f"since must be epoch milliseconds or an ISO 8601 instant, not {type(value).__name__}")


def _as_list(value: Any, name: str) -> list[Any]:
    """A templated list argument: a list, or its JSON text (as Jinja renders it without native objects)."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                value = json.loads(text)
            except json.JSONDecodeError:
                raise ValueError(f"{name} is not a JSON list: {text[:80]!r}") from None
        else:
            return [text] if text else []
    if not isinstance(value, Sequence):
        raise ValueError(f"{name} must be a list, not {type(value).__name__}")
    return list(value)


class AEPIngestionSensor(BaseSensorOperator):
    """Wait until the records a run sent to AEP have landed in their datasets (Catalog batches), optionally
    confirmed by a Profile look-up of sampled identities.

    The dataset's Catalog batches created after ``since`` are watched (streamed records land in system-created
    batches, up to about an hour later; Batch Ingestion batches are the run's own). The sensor succeeds once they
    succeeded, fails as soon as one failed (showing each failed batch's error codes and descriptions), and with
    ``expected_records`` waits until the successful batches' ``recordCount`` adds up to it. Any failed batch of
    the datasets created after ``since`` fails it, whoever sent it. The full rules are in
    :mod:`airflow_provider_capillary.triggers.aep`.

    Sampled identities are then looked up with the Profile Access API, which is best effort (aep-api.md §7): an
    identity not found (404) keeps the sensor waiting until its timeout, because merging into Profile is
    eventually consistent; if AEP refuses the API (403: not licensed or not permitted) the look-up is skipped
    with a warning and the result says ``"available": false``.

    :param dataset_ids: Catalog dataset id, or a list of them. (templated)
    :param since: Only batches created after this instant count: epoch milliseconds (int or digits) or ISO 8601
        text or datetime (naive = UTC). Default: the DAG run's start. (templated)
    :param expected_records: Records that must have landed, e.g. the streaming operator's ``accepted`` count: an
        int (or its text) totalled over all datasets, or a dict of dataset id to count. Default: none, i.e. every
        batch created since then succeeded and there is at least one per dataset. (templated)
    :param sample_identities: Identities the Profile look-up must find, as ``{"id": ..., "namespace": ...}``
        dicts (namespace code, e.g. ``CAPLOYALTY``), or their JSON text. Keep it to a handful. Default: none.
        (templated)
    :param aep_conn_id: Connection of type ``adobe_experience_platform``. Default ``aep_default``. (templated)
    :param deferrable: Wait in the triggerer instead of a worker slot. Default: the ``[operators]
        default_deferrable`` setting (False).
    :param poke_interval: Seconds between checks (also the trigger's poll interval). Default 60.
    :param timeout: Seconds to wait before failing with ``AirflowSensorTimeout``. Default 3 hours.
    :return: ``{"since": epoch ms, "records": total landed, "datasets": {id: {"batches", "records",
        "failed_records"}}}``, plus ``"profiles": {"sampled", "found", "available"}`` with sample identities.
    """

    template_fields: Sequence[str] = (
        "dataset_ids",
        "since",
        "expected_records",
        "sample_identities",
        "aep_conn_id",
    )
    template_fields_renderers = {"sample_identities": "json", "expected_records": "json"}
    ui_color = "#fa0f00"

    def __init__(
        self,
        *,
        dataset_ids: str | Sequence[str],
        since: int | str | datetime | None = None,
        expected_records: int | str | Mapping[str, int | str] | None = None,
        sample_identities: Sequence[Mapping[str, str]] | str | None = None,
        aep_conn_id: str = AEPHook.default_conn_name,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        poke_interval: float = 60,
        timeout: float = 3 * 60 * 60,
        **kwargs: Any,
    ) -> None:
        super().__init__(poke_interval=poke_interval, timeout=timeout, **kwargs)
        self.dataset_ids = dataset_ids
        self.since = since
        self.expected_records = expected_records
        self.sample_identities = sample_identities
        self.aep_conn_id = aep_conn_id
        self.deferrable = deferrable

    @cached_property
    def hook(self) -> AEPHook:
        return AEPHook(self.aep_conn_id)

    # ------------------------------------------------------------------ rendered arguments

    def _dataset_ids(self) -> list[str]:
        ids = [str(item).strip() for item in _as_list(self.dataset_ids, "dataset_ids")]
        if not ids or not all(ids):
            raise ValueError(f"dataset_ids must name at least one dataset, got {self.dataset_ids!r}")
        return ids

    def _since(self, context: Context) -> int:
        if self.since not in (None, ""):
            return to_epoch_ms(self.since)
        dag_run = context.get("dag_run")
        started = getattr(dag_run, "start_date", None)
        if started is None:
            raise ValueError("since is not set and the DAG run has no start date: pass since (epoch ms or ISO 8601)")
        return to_epoch_ms(started)

    def _expected_records(self) -> int | dict[str, int] | None:
        value = self.expected_records
        if value is None or value == "":
            return None
        if isinstance(value, str) and value.strip().startswith("{"):
            value = json.loads(value)
        try:
            if isinstance(value, Mapping):
                counts = {str(key): int(count) for key, count in value.items()}
                if any(count < 0 for count in counts.values()):
                    raise ValueError
                return counts
            total = int(value)
        except (TypeError, ValueError):
            raise ValueError(
                f"expected_records must be a non-negative int or a dict of dataset id to count, got {value!r}"
            ) from None
        if total < 0:
            raise ValueError(f"expected_records must be a non-negative int, got {total}")
        return total

    def _sample_identities(self) -> list[dict[str, str]]:
        if self.sample_identities in (None, ""):
            return []
        identities = _as_list(self.sample_identities, "sample_identities")
        checked: list[dict[str, str]] = []
        for index, identity in enumerate(identities):
            if not (
                isinstance(identity, Mapping)
                and isinstance(identity.get("id"), str)
                and identity["id"]
                and isinstance(identity.get("namespace"), str)
                and identity["namespace"]
            ):
                raise ValueError(
                    f"sample_identities[{index}] must be a dict with non-empty string 'id' and 'namespace' "
                    f"(the identity namespace code)"
                )
            checked.append({"id": identity["id"], "namespace": identity["namespace"]})
        return checked

    # ------------------------------------------------------------------ checking

    def _landing(self, context: Context) -> LandingCheck:
        """Apply the landing rules once: list the batches, then (once they landed) look up the sample."""
        since = self._since(context)
        batches = {
            dataset_id: list(self.hook.iter_batches(dataset_id, created_after=since))
            for dataset_id in self._dataset_ids()
        }
        check = assess_batches(batches, self._expected_records(), since=since)
        sample = self._sample_identities()
        if check.state != "success" or not sample:
            return check
        missing: list[int] = []
        for index, identity in enumerate(sample):
            try:
                found = self.hook.lookup_profile(identity["id"], identity["namespace"])
            except AEPAuthError as error:
                if error.status != 403:
                    raise
                return profile_outcome(check, len(sample), [], available=False)
            if found is None:
                missing.append(index)
        return profile_outcome(check, len(sample), missing, available=True)

    def _check(self, context: Context) -> PokeReturnValue:
        check = self._landing(context)
        if check.state == "failed":
            raise AEPIngestionFailedError(check.message)
        profiles = check.result.get("profiles")
        if profiles is not None and not profiles["available"]:
            self.log.warning("%s", check.message)
        else:
            self.log.info("%s", check.message)
        return PokeReturnValue(is_done=check.state == "success", xcom_value=dict(check.result))

    def poke(self, context: Context) -> PokeReturnValue:
        return self._check(context)

    def execute(self, context: Context) -> IngestionResult | None:
        if not self.deferrable:
            return super().execute(context)
        first = self._check(context)
        if first.is_done:
            return first.xcom_value
        trigger = AEPIngestionTrigger(
            dataset_ids=self._dataset_ids(),
            since=self._since(context),
            end_time=time.time() + self.timeout,
            expected_records=self._expected_records(),
            sample_identities=self._sample_identities(),
            aep_conn_id=self.aep_conn_id,
            poll_interval=self.poke_interval,
        )
        # The trigger reports its own timeout (with what is still missing); the deferral timeout is a backstop.
        self.defer(
            trigger=trigger,
            method_name="execute_complete",
            timeout=timedelta(seconds=self.timeout + self.poke_interval + 60),
        )
        return None

    def execute_complete(self, context: Context, event: Mapping[str, Any]) -> IngestionResult:
        """Resume after the trigger fired: return its result, or raise what its status means."""
        status = event.get("status")
        message = str(event.get("message") or "no message")
        if status == "success":
            self.log.info("%s", message)
            return IngestionResult(**event.get("result", {}))
        if status == "failed":
            raise AEPIngestionFailedError(message)
        if status == "timeout":
            raise AirflowSensorTimeout(message)
        raise AEPError(f"Waiting for AEP ingestion failed ({status}): {message}")
